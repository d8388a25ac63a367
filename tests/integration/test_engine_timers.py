"""Timers on the embedded default (no Redis): the in-process job thread, the database sweep,
idempotent firing and cycle timers."""
import threading
import time
from datetime import datetime, timedelta

import pytest
from sqlalchemy import select

import SpiffWorkflow.bpmn.specs.event_definitions.timer as spiff_timer
from app.adapters.inprocess import InProcessJobQueue
from app.extensions import db
from app.models import InstanceEvent, ProcessInstance
from app.models.types import utcnow
from app.services import services
from chat_helpers import deploy, start
from conftest import wait_for


def snapshot(app, instance_id) -> dict:
    """The instance row, its history and its timers (element, due), read in a transaction of their own:
    on PostgreSQL a repeatable-read one, or (read committed) a firing committed between the row's read
    and the history's would show in the history only."""
    with app.app_context():
        if db.engine.dialect.name == "postgresql":
            db.session.connection(execution_options={"isolation_level": "REPEATABLE READ"})
        instance = db.session.get(ProcessInstance, instance_id)
        history = db.session.scalars(select(InstanceEvent).where(InstanceEvent.instance_id == instance_id)
                                     .order_by(InstanceEvent.id)).all()
        timers = sorted((w["task"], datetime.fromisoformat(w["due_at"])) for w in instance.waiting_for
                        if w["kind"] == "timer")
        # The sweep's index is the earliest of them, or nothing.
        assert instance.next_timer_at == (min(due for _, due in timers) if timers else None)
        return {"state": instance.state, "error": instance.error, "data": dict(instance.data),
                "revision": instance.revision, "waiting_for": list(instance.waiting_for),
                "history": [(e.task, e.event, e.at) for e in history],
                "timers": timers}


def fired(snap) -> list[tuple[str, datetime]]:
    return [(task, at) for task, event, at in snap["history"] if event == "timer_fired"]


def quiet_app(make_app):
    """An embedded app whose job thread is stopped: only the test fires timers."""
    app = make_app()
    services(app).jobs.stop()
    return app


@pytest.fixture
def clock(monkeypatch):
    """Move SpiffWorkflow's clock (its timers read only timer.datetime.now) ahead of real time."""
    class Clock:
        offset = timedelta(0)

        def advance(self, **kw):
            self.offset += timedelta(**kw)

        def now(self):
            return utcnow() + self.offset

    moved = Clock()

    class MovedDatetime(datetime):
        @classmethod
        def now(cls, tz=None):
            return datetime.now(tz) + moved.offset

    monkeypatch.setattr(spiff_timer, "datetime", MovedDatetime)
    return moved


# -- the embedded job thread and sweep ----------------------------------------------------

def test_job_thread_fires_short_timer_without_redis(make_app):
    app = make_app(EMBEDDED_SWEEP_SECONDS=3600)  # the sweep ran once, at start: the job must fire it
    assert app.config["REDIS_URL"] is None
    assert isinstance(services(app).jobs, InProcessJobQueue)
    assert services(app).health()["jobs"]["ok"]
    deploy(app, "short_timer.bpmn")
    instance_id = start(app, "ShortTimer")
    started = snapshot(app, instance_id)
    assert started["state"] == "waiting"
    ((element, due),) = started["timers"]
    assert element == "too_late"

    done = wait_for(lambda: (s := snapshot(app, instance_id))["state"] == "completed" and s, timeout=5,
                    message="the job thread to fire the timer")
    assert done["data"]["timed_out"] is True
    ((task, at),) = fired(done)
    assert task == "too_late"
    assert 0 <= (at - due).total_seconds() <= 1.0
    assert done["timers"] == []


def test_embedded_sweep_fires_timer_whose_job_was_lost(make_app):
    first = make_app(EMBEDDED_SWEEP_SECONDS=3600)
    deploy(first, "short_timer.bpmn")
    instance_id = start(first, "ShortTimer")
    jobs = services(first).jobs
    jobs.stop()  # the process died: its in-memory wake-up job is gone with it
    with jobs._cond:
        assert [job[2] for job in jobs._heap] == ["app.jobs.fire_due_timers"]
        jobs._heap.clear()
    ((_, due),) = snapshot(first, instance_id)["timers"]
    time.sleep(max(0.0, (due - utcnow()).total_seconds()) + 0.5)
    assert snapshot(first, instance_id)["state"] == "waiting"  # overdue, and nothing fired it

    make_app()  # a fresh process on the same database: its sweep finds the overdue timer row
    done = wait_for(lambda: (s := snapshot(first, instance_id))["state"] == "completed" and s, timeout=5,
                    message="the sweep to fire the timer")
    assert done["data"]["timed_out"] is True
    assert [task for task, _ in fired(done)] == ["too_late"]
    assert done["timers"] == []


def test_job_thread_fires_cycle_timer_repeatedly(make_app):
    app = make_app(EMBEDDED_SWEEP_SECONDS=3600)
    deploy(app, "reminder_fast.bpmn")  # R3/PT0.6S on a user task, non-interrupting
    instance_id = start(app, "ReminderFast")
    dues = []

    def three_fires():
        snap = snapshot(app, instance_id)
        for _, due in snap["timers"]:
            if due not in dues:
                dues.append(due)
        return len(fired(snap)) == 3 and snap

    done = wait_for(three_fires, timeout=8, interval=0.02, message="three reminders")
    assert [task for task, _ in fired(done)] == ["remind"] * 3
    assert len(dues) == 3  # one timer row, rescheduled after each fire
    # Each next firing is one period after the previous one actually fired: never sooner than a
    # period after the previous due time, and counted from the firing's instant (which the history
    # row, written within the same step, follows). How late a firing is is a timing goal (bench/).
    fire_times = [at for _, at in fired(done)]
    for fired_at, previous_due, next_due in zip(fire_times, dues, dues[1:]):
        assert (next_due - previous_due).total_seconds() >= 0.6 - 0.001
        assert (next_due - fired_at).total_seconds() <= 0.6 + 0.001
    for (_, at), due in zip(fired(done), dues):
        assert at >= due  # never early
    assert done["timers"] == []  # the cycles are used up
    assert done["state"] == "waiting"
    assert [w["task"] for w in done["waiting_for"]] == ["answer"]
    reminders = [e for e in done["history"] if e[:2] == ("send_reminder", "completed")]
    assert len(reminders) == 3


# -- fire_timers is idempotent ---------------------------------------------------------------

def test_fire_timers_before_due_changes_nothing(make_app):
    app = quiet_app(make_app)
    deploy(app, "hour_timer.bpmn")
    instance_id = start(app, "HourTimer")
    before = snapshot(app, instance_id)
    with app.app_context():
        assert services(app).engine.fire_timers(instance_id) is False
        db.session.commit()
    assert snapshot(app, instance_id) == before


def test_fire_timers_twice_when_due_fires_once(make_app, clock):
    app = quiet_app(make_app)
    deploy(app, "hour_timer.bpmn")
    instance_id = start(app, "HourTimer")
    before = snapshot(app, instance_id)
    ((_, due),) = before["timers"]
    assert timedelta(minutes=59) < due - utcnow() <= timedelta(hours=1)

    clock.advance(hours=1, seconds=1)
    with app.app_context():
        engine = services(app).engine
        assert engine.fire_timers(instance_id, now=clock.now()) is True
        db.session.commit()
        assert engine.fire_timers(instance_id, now=clock.now()) is False
        db.session.commit()
    after = snapshot(app, instance_id)
    assert [task for task, _ in fired(after)] == ["hour_passed"]
    assert after["revision"] == before["revision"] + 1
    assert after["data"]["escalated"] is True
    assert [w["task"] for w in after["waiting_for"]] == ["supervisor"]
    assert after["timers"] == []


def in_two_threads_at_once(work) -> list:
    """What `work()` answered in each of two threads started together; fails on any error."""
    barrier, results, errors = threading.Barrier(2), [], []

    def run():
        try:
            barrier.wait()
            results.append(work())
        except Exception as e:  # pragma: no cover - reported below
            errors.append(e)

    threads = [threading.Thread(target=run) for _ in range(2)]
    for t in threads:
        t.start()
    for t in threads:
        t.join(timeout=120)
    assert errors == []
    return results


def test_fire_timers_from_two_threads_at_once_fires_once(make_app, clock):
    app = quiet_app(make_app)
    deploy(app, "hour_timer.bpmn")
    instance_id = start(app, "HourTimer")
    clock.advance(hours=1, seconds=1)
    def fire():
        with app.app_context():  # a session (and connection) of its own
            fired_now = services(app).engine.fire_timers(instance_id, now=clock.now())
            db.session.commit()
            return fired_now

    assert sorted(in_two_threads_at_once(fire)) == [False, True]
    after = snapshot(app, instance_id)
    assert [task for task, _ in fired(after)] == ["hour_passed"]
    assert [w["task"] for w in after["waiting_for"]] == ["supervisor"]


def test_cycle_timer_fires_each_cycle_and_reschedules_its_row(make_app, clock):
    app = quiet_app(make_app)
    deploy(app, "reminder_cycle.bpmn")  # R3/PT1H on a user task, non-interrupting
    instance_id = start(app, "ReminderCycle")
    ((element, _),) = snapshot(app, instance_id)["timers"]
    assert element == "remind"

    with app.app_context():
        engine = services(app).engine
        for cycle in (1, 2, 3):
            assert engine.fire_timers(instance_id, now=clock.now()) is False  # not due yet
            db.session.commit()
            clock.advance(hours=1, seconds=1)
            before = clock.now()
            assert engine.fire_timers(instance_id, now=clock.now()) is True
            db.session.commit()
            after = clock.now()
            snap = snapshot(app, instance_id)
            assert [t for t, _ in fired(snap)] == ["remind"] * cycle
            assert len([e for e in snap["history"] if e[:2] == ("send_reminder", "completed")]) == cycle
            assert snap["state"] == "waiting"
            if cycle < 3:  # the same row, moved on to one period after this firing
                ((timer, next_due),) = snap["timers"]
                assert timer == "remind"
                # (timed by the clock around the firing, not by how fast a loaded machine got here)
                assert before + timedelta(hours=1) <= next_due <= after + timedelta(hours=1)
            else:
                assert snap["timers"] == []
        clock.advance(hours=2)
        assert engine.fire_timers(instance_id, now=clock.now()) is False  # nothing left to fire
        db.session.commit()
        engine.complete_user_task(instance_id, "answer", {"answered": True})
        db.session.commit()
    done = snapshot(app, instance_id)
    assert done["state"] == "completed"
    assert len(fired(done)) == 3


# -- workers claim due instances (app.jobs.fire_due_timers) ------------------------------------

def test_two_workers_claiming_at_once_fire_every_due_instance_exactly_once(make_app, clock):
    from app import jobs
    app = quiet_app(make_app)
    deploy(app, "hour_timer.bpmn")
    ids = [start(app, "HourTimer") for _ in range(30)]
    clock.advance(hours=1, seconds=1)
    counts = in_two_threads_at_once(
        lambda: jobs._fire_due(app, grace=0, seconds=60, wait_ahead=False, clock=clock.now))
    assert sum(count for count, _ in counts) == 30
    assert all(more is False for _, more in counts)
    for instance_id in ids:
        after = snapshot(app, instance_id)
        assert [task for task, _ in fired(after)] == ["hour_passed"], instance_id
        assert after["revision"] == 2 and after["timers"] == []


def test_an_instance_whose_firing_fails_is_passed_over_and_the_others_fire(make_app, clock, monkeypatch):
    from app import jobs
    app = quiet_app(make_app)
    deploy(app, "hour_timer.bpmn")
    broken, *others = [start(app, "HourTimer") for _ in range(3)]
    clock.advance(hours=1, seconds=1)
    engine = services(app).engine
    fire = engine.fire

    def fire_but_one(instance, now):
        if instance.id == broken:
            raise RuntimeError("a bug in firing")
        return fire(instance, now)

    monkeypatch.setattr(engine, "fire", fire_but_one)
    assert jobs._fire_due(app, grace=0, seconds=60, wait_ahead=False, clock=clock.now) == (2, False)
    assert [task for task, _ in fired(snapshot(app, broken))] == []  # still due, for the next run
    assert snapshot(app, broken)["timers"]
    for instance_id in others:
        assert [task for task, _ in fired(snapshot(app, instance_id))] == ["hour_passed"]


def test_an_alarm_past_its_time_hands_the_rest_to_a_new_job(make_app, clock, monkeypatch):
    from app import jobs
    app = quiet_app(make_app)
    app.config["TIMER_BATCH_SECONDS"] = 0
    deploy(app, "hour_timer.bpmn")
    ids = [start(app, "HourTimer") for _ in range(2)]
    clock.advance(hours=1, seconds=1)
    monkeypatch.setattr(jobs, "utcnow", clock.now)
    queue = services(app).jobs
    with queue._cond:
        queue._heap.clear()
    with app.app_context():
        assert jobs.fire_due_timers() == 1
    assert queue.waiting() == ["app.jobs.fire_due_timers"]  # the other is left to the next job
    assert sum(len(fired(snapshot(app, i))) for i in ids) == 1


def test_timers_due_in_one_second_share_one_alarm(make_app):
    app = quiet_app(make_app)
    services(app).jobs.whole_seconds = True  # as RQ's: alarms ring at whole seconds
    deploy(app, "hour_timer.bpmn")
    ids = [start(app, "HourTimer") for _ in range(20)]
    seconds = {due.replace(microsecond=0) for i in ids for _, due in snapshot(app, i)["timers"]}
    alarms = [job for job in services(app).jobs.waiting() if job == "app.jobs.fire_due_timers"]
    assert len(alarms) == len(seconds) < len(ids)
