"""When workers wake for timers (app.engine.alarms)."""
from datetime import datetime, timedelta, timezone

from app.engine import alarms

T = datetime(2026, 12, 2, 12, 0, 0, tzinfo=timezone.utc)


def test_an_alarm_rings_at_the_whole_second_of_its_timers():
    assert alarms.alarm_at(T + timedelta(seconds=5.999)) == T + timedelta(seconds=5)
    assert alarms.alarm_at(T + timedelta(seconds=5)) == T + timedelta(seconds=5)
    assert alarms.alarm_id(T) == f"timers-at-{int(T.timestamp())}"
    assert alarms.alarm_id(T + timedelta(seconds=0.7)) != alarms.alarm_id(T + timedelta(seconds=1))


def test_a_woken_worker_waits_only_for_a_timer_due_within_the_lookahead_and_its_time():
    assert alarms.wait_before(None, T, 10) is None
    assert alarms.wait_before(T + timedelta(seconds=0.4), T, 10) == 0.4
    assert alarms.wait_before(T + timedelta(seconds=alarms.LOOKAHEAD_SECONDS + 0.01), T, 10) is None
    assert alarms.wait_before(T + timedelta(seconds=0.4), T, 0.3) is None  # the job's time is up first


def test_a_due_timer_someone_else_holds_is_looked_at_again_shortly_not_left_to_the_sweep():
    for overdue in (0, 0.001, 30):
        assert alarms.wait_before(T - timedelta(seconds=overdue), T, 10) == alarms.HELD_RETRY_SECONDS
    assert alarms.wait_before(T - timedelta(seconds=1), T, alarms.HELD_RETRY_SECONDS / 2) is None  # time is up


def test_an_alarm_is_scheduled_once_while_it_is_far_and_again_once_it_is_near():
    scheduled = alarms.Scheduled()
    far, near = T + timedelta(seconds=30), T + timedelta(seconds=1)
    assert scheduled.needed(far, T) and scheduled.needed(near, T)
    scheduled.add(far, T)
    scheduled.add(near, T)
    assert not scheduled.needed(far, T)  # cannot have rung yet
    assert scheduled.needed(near, T)  # may have rung already: a timer due in it needs a new one
    assert scheduled.needed(far, far - timedelta(seconds=1))  # the far one came near


def test_the_memory_of_alarms_stays_bounded():
    scheduled = alarms.Scheduled()
    for i in range(5000):
        scheduled.add(T + timedelta(seconds=i), T + timedelta(seconds=i))
    assert len(scheduled._seconds) <= 1001
