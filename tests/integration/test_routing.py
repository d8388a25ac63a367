"""Routing of chats to operators (docs/api.md, "The chat lifecycle"), on the embedded default:
SimultaneousChats, nobody eligible, the least-busy tie-break, no completion timeout, two
accepts at once, 500 replies, 50 offer timeouts in a row, and a changed ChatLifecycle.bpmn.

Everything runs over HTTP against an app with its in-process job thread (which also fires
timers), except the 500 replies, which call the service directly to stay fast.
"""
import threading
import time
from datetime import datetime

import pytest

from app.chats import decisions, lifecycle, routing, service
from app.extensions import db
from app.jobs import drain_operator, fire_timers
from app.models import User
from app.models.types import utcnow
from app.services import services
from chat_helpers import (ACCEPT_TIMER, LIFECYCLE, configure, deploy_lifecycle, error_code, events,
                          instance, make_channel, make_operator, make_queue, new_chat, ok, wait_chat,
                          settled, workflow_shape)
from conftest import Api, wait_for


# -- SimultaneousChats ------------------------------------------------------------------
def fill_ann_to_the_limit(api):
    """least_busy, SimultaneousChats 2: ann accepts two chats, then two more wait queued."""
    configure(api, accept_timeout_minutes=5, simultaneous_chats=2)
    queue = make_queue(api, "least_busy")
    ann = make_operator(api, "ann", queue["id"])
    channel = make_channel(api, queue["id"])
    first, second = new_chat(api, channel.client()), new_chat(api, channel.client())
    for c in (first, second):
        assert (c["state"], c["offered_to_id"]) == ("offered", ann.id)
        ok(ann.accept(c["id"]))
    third, fourth = new_chat(api, channel.client()), new_chat(api, channel.client())
    return ann, [first, second, third, fourth]


def test_least_busy_operator_at_the_limit_is_neither_offered_nor_shown_new_chats(chat_api):
    ann, (first, second, third, fourth) = fill_ann_to_the_limit(chat_api)
    assert ann.me()["chats_in_work"] == 2
    for c in (third, fourth):
        assert (c["state"], c["offered_to_id"]) == ("queued", None)
        assert events(chat_api, c["id"], "waiting_for_operator")
        assert not events(chat_api, c["id"], "offered")
    assert ann.chat_ids() == [first["id"], second["id"]]
    assert ann.me()["chats_offered"] == 0
    r = ann.accept(third["id"])
    assert (r.status_code, error_code(r)) == (409, "not_offered_to_you")
    assert ok(chat_api.get(f"/api/chats/{third['id']}"))["state"] == "queued"


def test_freed_capacity_takes_the_oldest_waiting_chat(chat_api):
    ann, (first, second, third, fourth) = fill_ann_to_the_limit(chat_api)
    # Completing one frees capacity: the drain job offers the OLDEST waiting chat (third), not the newer one.
    ok(ann.complete(first["id"]))
    offered = wait_chat(chat_api, third["id"], lambda c: c["state"] == "offered", timeout=5,
                        message="the oldest waiting chat to be offered once capacity is freed")
    assert offered["offered_to_id"] == ann.id
    settled(chat_api.app)  # the drain stopped at the limit (in work + offered): the fourth chat still waits
    assert ok(chat_api.get(f"/api/chats/{fourth['id']}"))["state"] == "queued"
    assert ann.chat_ids() == [second["id"], third["id"]]
    ok(ann.accept(third["id"]))
    me = ann.me()
    assert (me["chats_in_work"], me["chats_offered"]) == (2, 0)


def test_all_operator_at_limit_is_not_shown_new_chats_and_cannot_accept_them(chat_api):
    configure(chat_api, simultaneous_chats=1)
    queue = make_queue(chat_api, "all")
    ann, bob = make_operator(chat_api, "ann", queue["id"]), make_operator(chat_api, "bob", queue["id"])
    channel = make_channel(chat_api, queue["id"])

    first = new_chat(chat_api, channel.client())
    assert first["state"] == "queued" and first["offered_to_id"] is None
    assert ann.chat_ids() == [first["id"]] and bob.chat_ids() == [first["id"]]
    ok(ann.accept(first["id"]))
    r = bob.accept(first["id"])
    assert (r.status_code, error_code(r)) == (409, "chat_taken")

    second = new_chat(chat_api, channel.client())
    assert ann.chat_ids() == [first["id"]]          # at the limit: not shown the new chat
    assert bob.chat_ids() == [second["id"]]
    r = ann.accept(second["id"])
    assert (r.status_code, error_code(r)) == (409, "limit_reached")
    assert ok(chat_api.get(f"/api/chats/{second['id']}"))["state"] == "queued"

    ok(ann.complete(first["id"]))                   # capacity freed: she sees it again
    assert ann.chat_ids() == [second["id"]]
    ok(ann.accept(second["id"]))
    assert [ann.me()["chats_in_work"], bob.me()["chats_in_work"]] == [1, 0]


# -- nobody eligible --------------------------------------------------------------------
def two_chats_nobody_can_take(api):
    # A long acceptance timeout: only the drain job (not a timer retry) can offer a waiting chat in time.
    configure(api, accept_timeout_minutes=5, simultaneous_chats=1)
    queue = make_queue(api, "least_busy")
    ann = make_operator(api, "ann", queue["id"], status="inactive")
    bob = make_operator(api, "bob", queue["id"], status="inactive")
    channel = make_channel(api, queue["id"])
    older, newer = new_chat(api, channel.client()), new_chat(api, channel.client())
    return ann, bob, older, newer


def test_nobody_eligible_the_chat_waits_queued(chat_api):
    ann, bob, older, newer = two_chats_nobody_can_take(chat_api)
    settled(chat_api.app)
    for c in (older, newer):
        c = ok(chat_api.get(f"/api/chats/{c['id']}"))
        assert (c["state"], c["offered_to_id"]) == ("queued", None)
        assert events(chat_api, c["id"], "waiting_for_operator")[0]["details"]["reason"] == "no eligible operator"
        assert not events(chat_api, c["id"], "offered")
        proc = instance(chat_api, c["process_instance_id"])
        assert proc["state"] == "waiting" and "wait_offered" in [w["task"] for w in proc["waiting_for"]]
    assert ann.chats() == [] and bob.chats() == []


def test_nobody_eligible_then_the_first_operator_who_sets_active_gets_the_oldest_chat(chat_api):
    ann, bob, older, newer = two_chats_nobody_can_take(chat_api)
    started = time.monotonic()
    assert bob.set_status("active")["status"] == "active"
    chat = wait_chat(chat_api, older["id"], lambda c: c["state"] == "offered", timeout=5,
                     message="the oldest waiting chat to be offered to bob, who set himself active")
    assert chat["offered_to_id"] == bob.id
    assert time.monotonic() - started < 5
    assert bob.chat_ids() == [older["id"]]
    settled(chat_api.app)
    assert ok(chat_api.get(f"/api/chats/{newer['id']}"))["state"] == "queued"   # bob is at his limit

    ann.set_status("active")
    assert wait_chat(chat_api, newer["id"], lambda c: c["state"] == "offered", timeout=5)["offered_to_id"] == ann.id
    ok(bob.accept(older["id"]))
    ok(ann.accept(newer["id"]))


# -- tie-break ----------------------------------------------------------------------------
def test_tie_break_goes_to_the_longest_idle_operator_and_history_records_why(chat_api):
    configure(chat_api, accept_timeout_minutes=5, simultaneous_chats=3)
    queue = make_queue(chat_api, "least_busy")
    ann = make_operator(chat_api, "ann", queue["id"])
    bob = make_operator(chat_api, "bob", queue["id"], status="inactive")
    cid = make_operator(chat_api, "cid", queue["id"], status="inactive")   # will never have accepted
    channel = make_channel(chat_api, queue["id"])

    def take_and_finish(operator):
        c = new_chat(chat_api, channel.client())
        assert c["offered_to_id"] == operator.id
        ok(operator.accept(c["id"]))
        ok(operator.complete(c["id"]))

    take_and_finish(ann)                       # ann accepted first ...
    ann.set_status("inactive")
    bob.set_status("active")
    take_and_finish(bob)                       # ... then bob
    ann.set_status("active")
    cid.set_status("active")
    ann_at, bob_at = ann.me()["last_accepted_at"], bob.me()["last_accepted_at"]
    assert ann_at < bob_at and cid.me()["last_accepted_at"] is None
    assert [o.me()["chats_in_work"] for o in (ann, bob, cid)] == [0, 0, 0]

    # Equal load: never accepted is the longest idle of all.
    third = new_chat(chat_api, channel.client())
    assert third["offered_to_id"] == cid.id
    (offer,) = events(chat_api, third["id"], "offered")
    assert offer["details"]["operator_id"] == cid.id and offer["details"]["rule"] == "least_busy"
    assert [(c["operator_id"], c["chats_in_work"], c["last_accepted_at"]) for c in offer["details"]["candidates"]] \
        == [(cid.id, 0, None), (ann.id, 0, ann_at), (bob.id, 0, bob_at)]
    r = ann.accept(third["id"])
    assert (r.status_code, error_code(r)) == (409, "not_offered_to_you")
    ok(cid.accept(third["id"]))
    ok(cid.complete(third["id"]))

    # Equal load again: ann's accept is now the oldest.
    fourth = new_chat(chat_api, channel.client())
    assert fourth["offered_to_id"] == ann.id
    ok(ann.accept(fourth["id"]))               # ann keeps it: one chat in work

    # Fewest in work beats longest idle: bob (0, older than cid) first, ann (1 in work) last.
    fifth = new_chat(chat_api, channel.client())
    assert fifth["offered_to_id"] == bob.id
    (offer,) = events(chat_api, fifth["id"], "offered")
    cid_at = cid.me()["last_accepted_at"]
    assert [(c["operator_id"], c["chats_in_work"], c["last_accepted_at"]) for c in offer["details"]["candidates"]] \
        == [(bob.id, 0, bob_at), (cid.id, 0, cid_at), (ann.id, 1, ann.me()["last_accepted_at"])]


# -- no completion timeout ----------------------------------------------------------------
def test_queue_without_completion_timeout_never_auto_completes(chat_api, telegram):
    configure(chat_api, simultaneous_chats=2)
    never = make_queue(chat_api, "all", None, name="never")
    short = make_queue(chat_api, "all", 0.02, name="short")           # 1.2 s: proves timers do fire meanwhile
    ann = make_operator(chat_api, "ann", never["id"], short["id"])
    never_chat = new_chat(chat_api, make_channel(chat_api, never["id"]).client())
    short_chat = new_chat(chat_api, make_channel(chat_api, short["id"], token="456:other-token").client())
    for c in (never_chat, short_chat):
        ok(ann.accept(c["id"]))
        ok(ann.reply(c["id"], "hello, how can I help?"), 201)

    done = wait_chat(chat_api, short_chat["id"], lambda c: c["state"] == "completed", timeout=10)
    assert done["completion_reason"] == "timeout"

    # The other chat has no timer that could complete it: it waits for a message only.
    c = ok(chat_api.get(f"/api/chats/{never_chat['id']}"))
    assert (c["state"], c["completion_reason"]) == ("in_work", None)
    proc = instance(chat_api, c["process_instance_id"])
    assert proc["state"] == "waiting"
    assert [(w["task"], w["kind"]) for w in proc["waiting_for"]] == [("in_work", "message"), ("transferred", "message")]
    assert proc["data"]["routing"]["completion_timeout_seconds"] is None
    ok(ann.complete(c["id"]))
    c = ok(chat_api.get(f"/api/chats/{never_chat['id']}"))
    assert (c["state"], c["completion_reason"]) == ("completed", "operator")


# -- two accepts at once ------------------------------------------------------------------
def test_two_accepts_at_once_exactly_one_wins(chat_app, chat_api):
    configure(chat_api, simultaneous_chats=10)
    queue = make_queue(chat_api, "all")
    ann, bob = make_operator(chat_api, "ann", queue["id"]), make_operator(chat_api, "bob", queue["id"])
    channel = make_channel(chat_api, queue["id"])
    wins = {ann.id: 0, bob.id: 0}

    for _ in range(5):
        chat = new_chat(chat_api, channel.client())
        barrier, results = threading.Barrier(2), {}

        def accept(operator):
            client = Api(chat_app, operator.token)             # its own test client, in its own thread
            barrier.wait()
            r = client.post(f"/api/chats/{chat['id']}/accept")
            results[operator.id] = (r.status_code, error_code(r))

        threads = [threading.Thread(target=accept, args=(o,)) for o in (ann, bob)]
        for t in threads:
            t.start()
        for t in threads:
            t.join(timeout=30)
        assert sorted(results.values(), key=str) == [(200, None), (409, "chat_taken")], results
        (winner,) = [uid for uid, (status, _) in results.items() if status == 200]
        wins[winner] += 1
        c = ok(chat_api.get(f"/api/chats/{chat['id']}"))
        assert (c["state"], c["operator_id"]) == ("in_work", winner)
        assert len(events(chat_api, chat["id"], "accepted")) == 1

    assert {ann.id: ann.me()["chats_in_work"], bob.id: bob.me()["chats_in_work"]} == wins
    assert sum(wins.values()) == 5


# -- 500 replies ---------------------------------------------------------------------------
def test_500_replies_keep_the_state_flat_and_the_chat_still_completes_by_timeout(chat_app, chat_api, telegram):
    configure(chat_api, simultaneous_chats=2)
    # Long enough that no pause of a loaded machine between two of the replies ends the chat;
    # the last reply re-arms the timer with the queue's timeout shortened to 3 s.
    queue = make_queue(chat_api, "least_busy", 30)
    ann = make_operator(chat_api, "ann", queue["id"])
    chat = new_chat(chat_api, make_channel(chat_api, queue["id"]).client())
    ok(ann.accept(chat["id"]))
    instance_id = chat["process_instance_id"]
    engine, jobs = services(chat_app).engine, services(chat_app).jobs

    shapes = {}
    with chat_app.app_context():
        user = db.session.get(User, ann.id)
        for n in range(1, 501):
            if n == 500:
                ok(chat_api.patch(f"/api/queues/{queue['id']}", {"completion_timeout_minutes": 0.05}))
                last_reply = time.monotonic()
            service.reply(chat["id"], user, f"reply {n}", engine, jobs)
            db.session.commit()
            if n in (10, 500):
                shapes[n] = workflow_shape(chat_app, instance_id)
        db.session.remove()

    assert shapes[500]["tasks"] == shapes[10]["tasks"], shapes
    assert shapes[500]["depth"] == shapes[10]["depth"], shapes
    assert shapes[500]["subprocesses"] == shapes[10]["subprocesses"], shapes
    assert shapes[500]["size"] <= shapes[10]["size"] + 200, shapes
    assert ok(chat_api.get(f"/api/chats/{chat['id']}"))["state"] == "in_work"

    # each reply commits its attempt before the call and its outcome after: give a loaded machine
    # time (the embedded job thread delivers them one by one, the completion timer's job after them)
    wait_for(lambda: len(telegram.sent()) == 500, timeout=60, message="500 replies delivered")
    done = wait_chat(chat_api, chat["id"], lambda c: c["state"] == "completed", timeout=15,
                     message="the completion timeout after 500 replies")
    assert done["completion_reason"] == "timeout"
    assert time.monotonic() - last_reply >= 2.5                 # timed from the LAST reply
    proc = instance(chat_api, instance_id)
    assert proc["state"] == "completed"
    assert [e["details"]["reason"] for e in events(chat_api, chat["id"], "completed")] == ["timeout"]
    assert ann.me()["chats_in_work"] == 0


# -- 50 offer timeouts in a row -----------------------------------------------------------
def let_offers_time_out(app, api, count, checkpoints=()):
    """least_busy, 0.06 s to accept, ann and bob never accept but set themselves active again.

    Returns the operators by id, the chat and the instance's shape at each checkpoint."""
    configure(api, accept_timeout_minutes=0.001, simultaneous_chats=2)
    queue = make_queue(api, "least_busy")
    ann, bob = make_operator(api, "ann", queue["id"]), make_operator(api, "bob", queue["id"])
    operators = {ann.id: ann, bob.id: bob}
    chat = new_chat(api, make_channel(api, queue["id"]).client())
    shapes = {}
    deadline = time.monotonic() + 40
    while True:
        timeouts = len(events(api, chat["id"], "offer_timed_out"))
        for n in checkpoints:
            if timeouts >= n and n not in shapes:
                shapes[n] = workflow_shape(app, chat["process_instance_id"])
        if timeouts >= count:
            break
        assert time.monotonic() < deadline, f"only {timeouts} offer timeouts"
        for operator in operators.values():          # operators set themselves active again
            if operator.me()["status"] == "inactive":
                operator.set_status("active")
        time.sleep(0.02)
    return operators, chat, shapes


def test_50_offer_timeouts_in_a_row_then_the_chat_is_still_offered_and_accepted(chat_app, chat_api):
    operators, chat, shapes = let_offers_time_out(chat_app, chat_api, 50, checkpoints=(10, 50))
    timed_out = events(chat_api, chat["id"], "offer_timed_out")
    assert {e["details"]["operator_id"] for e in timed_out} == set(operators)
    assert all(e["details"]["operator_now"] == "inactive" for e in timed_out)
    assert len(events(chat_api, chat["id"], "offered")) >= 50

    # Still offered, and the operator it is offered to can accept it. An accept over HTTP cannot
    # be sure to beat a 0.06 s timer on a loaded machine: the job thread is stopped and the test
    # drains the operators itself, so an offer it sees stays until accepted.
    jobs = services(chat_app).jobs
    jobs.stop()
    wait_for(lambda: not jobs.health()["ok"], message="the job thread to stop")
    c = ok(chat_api.get(f"/api/chats/{chat['id']}"))
    if c["state"] != "offered":  # both missed it last: one comes back, drained as her job would
        first = operators[min(operators)]
        first.set_status("active")
        with chat_app.app_context():
            drain_operator(first.id)
        c = ok(chat_api.get(f"/api/chats/{chat['id']}"))
    assert c["state"] == "offered", c
    ok(operators[c["offered_to_id"]].accept(chat["id"]))
    c = ok(chat_api.get(f"/api/chats/{chat['id']}"))
    assert c["state"] == "in_work", c
    proc = instance(chat_api, chat["process_instance_id"])
    assert proc["state"] == "waiting"
    assert [(w["task"], w["kind"]) for w in proc["waiting_for"]] == [("in_work", "message"), ("transferred", "message")]
    loads = [o.me() for o in operators.values()]
    assert sorted(m["chats_in_work"] for m in loads) == [0, 1]
    assert [m["chats_offered"] for m in loads] == [0, 0]

    # Re-offering through the non-interrupting cycle timer keeps the task tree flat.
    assert shapes[50]["depth"] == shapes[10]["depth"], shapes


def test_re_offers_keep_the_stored_workflow_state_bounded(chat_app, chat_api):
    """Hundreds of re-offers (a chat nobody takes, re-offered every acceptance timeout) must not grow
    the instance's stored state: every message and timer of the chat re-reads and re-writes it."""
    _, chat, shapes = let_offers_time_out(chat_app, chat_api, 30, checkpoints=(10, 30))
    assert shapes[30]["depth"] == shapes[10]["depth"], shapes
    # Past timer firings (~1.5 KB each) and finished `operator_available` event-subprocess runs
    # (~3 KB each, started by drains racing the re-offers) must leave nothing behind.
    assert shapes[30]["subprocesses"] == shapes[10]["subprocesses"] == 0, shapes
    assert shapes[30]["tasks"] <= shapes[10]["tasks"] + 6, shapes
    assert shapes[30]["size"] <= shapes[10]["size"] * 1.3, shapes


# -- a changed diagram --------------------------------------------------------------------
def test_a_changed_lifecycle_diagram_changes_new_chats_while_running_ones_keep_their_version(chat_api):
    configure(chat_api, accept_timeout_minutes=5, simultaneous_chats=2)
    queue = make_queue(chat_api, "least_busy")
    ann, bob = make_operator(chat_api, "ann", queue["id"]), make_operator(chat_api, "bob", queue["id"])
    channel = make_channel(chat_api, queue["id"])

    running = new_chat(chat_api, channel.client())
    assert running["offered_to_id"] == ann.id
    assert instance(chat_api, running["process_instance_id"])["version"] == 1

    # The analyst's change: a fixed one-second acceptance timer instead of the setting. No Python changes.
    xml = LIFECYCLE.read_text()
    assert xml.count(ACCEPT_TIMER) == 1
    variant = xml.replace(ACCEPT_TIMER, "R/PT1S").replace('name="Acceptance timeout"',
                                                          'name="Acceptance timeout (1 s)"')
    deployed = deploy_lifecycle(chat_api, variant)
    assert (deployed["version"], deployed["new"]) == (2, True)
    r = chat_api.get("/api/processes/ChatLifecycle/versions/2/bpmn")
    assert r.status_code == 200 and b"R/PT1S" in r.data

    fresh = new_chat(chat_api, channel.client())
    assert fresh["offered_to_id"] == bob.id           # ann holds the running chat's offer
    assert instance(chat_api, fresh["process_instance_id"])["version"] == 2

    # New chat: bob misses the 1 s acceptance, becomes inactive, ann gets it.
    moved = wait_chat(chat_api, fresh["id"], lambda c: c["offered_to_id"] == ann.id, timeout=6,
                      message="the new chat to be re-offered after 1 s")
    assert moved["state"] == "offered"
    assert events(chat_api, fresh["id"], "offer_timed_out")[0]["details"]["operator_id"] == bob.id
    assert bob.me()["status"] == "inactive"

    # The running chat keeps version 1 and its 5-minute acceptance timeout.
    kept = ok(chat_api.get(f"/api/chats/{running['id']}"))
    assert (kept["state"], kept["offered_to_id"]) == ("offered", ann.id)
    assert not events(chat_api, running["id"], "offer_timed_out")
    proc = instance(chat_api, running["process_instance_id"])
    assert proc["version"] == 1
    (timer,) = [w for w in proc["waiting_for"] if w["task"] == "acceptance_timeout"]
    assert timer["kind"] == "timer"
    ok(ann.accept(running["id"]))
    ok(ann.accept(fresh["id"]))
    assert instance(chat_api, running["process_instance_id"])["version"] == 1


# -- lock order -------------------------------------------------------------------------------
def test_an_accept_waits_for_a_firing_timer_instead_of_deadlocking(make_app, db_url, monkeypatch):
    """A timer firing holds the chat's instance, then its operation locks the chat (and users).
    An operator's accept must take the same order (instance, then chat): taking the chat first,
    it would hold what the firing waits for while waiting for what the firing holds.

    The job a worker runs fires the acceptance timer; only its lock of the chat is held back
    until the accept waits, so the two collide every time."""
    if not db_url.startswith("postgresql"):
        pytest.skip("SQLite has one writer at a time: nothing to deadlock")
    app = make_app()
    api = Api(app)
    deploy_lifecycle(api)
    configure(api, accept_timeout_minutes=0.01)
    queue = make_queue(api, "least_busy")
    anna = make_operator(api, "anna", queue["id"])
    chat = new_chat(api, make_channel(api, queue["id"]).client())
    assert chat["offered_to_id"] == anna.id
    services(app).jobs.stop()  # from here on only this test fires the timer
    (timer,) = [w for w in instance(api, chat["process_instance_id"])["waiting_for"] if w["kind"] == "timer"]
    wait_for(lambda: utcnow() >= datetime.fromisoformat(timer["due_at"]), message="the timeout to be due")
    lock_chat, locked, outcome = lifecycle.lock_chat, threading.Event(), {}

    def lock_chat_once_the_accept_waits(chat_id):
        if threading.current_thread() is firing:  # the instance is locked by now: the accept runs into it
            locked.set()
            wait_for(lambda: _waiting_on_locks(db) >= 1, timeout=10, message="the accept to wait")
        return lock_chat(chat_id)

    def fire():
        with app.app_context():
            try:
                outcome["fired"] = fire_timers(chat["process_instance_id"])
            except Exception as e:  # a deadlock victim
                outcome["error"] = e
            finally:
                db.session.remove()

    monkeypatch.setattr(lifecycle, "lock_chat", lock_chat_once_the_accept_waits)
    firing = threading.Thread(target=fire)
    firing.start()
    assert locked.wait(10)
    accepted = anna.accept(chat["id"])   # waits for the instance until the firing commits
    firing.join(20)
    assert outcome == {"fired": True}
    assert [e["details"]["operator_id"] for e in events(api, chat["id"], "offer_timed_out")] == [anna.id]
    assert accepted.status_code == 409, accepted.get_json()  # the offer was withdrawn first: a clean refusal


def _waiting_on_locks(db) -> int:
    """Backends of this database waiting for a row lock, seen from a connection of its own."""
    with db.engine.connect() as conn:
        return conn.exec_driver_sql("SELECT count(*) FROM pg_stat_activity WHERE datname = current_database() "
                                    "AND wait_event_type = 'Lock'").scalar()


def test_an_offer_whose_candidates_all_fill_up_meanwhile_says_why_the_chat_waits(chat_app, chat_api, monkeypatch):
    """The candidates query saw someone eligible, but under the row lock nobody had room any more
    (another chat was offered to them, or they went inactive): the chat waits, and says so."""
    configure(chat_api)
    queue = make_queue(chat_api, "least_busy")
    anna = make_operator(chat_api, "anna", queue["id"], status="inactive")
    chat = new_chat(chat_api, make_channel(chat_api, queue["id"]).client())
    assert chat["state"] == "queued"
    with chat_app.app_context():
        seen_eligible = [decisions.OperatorView(anna.id)]  # as a query a moment earlier saw her
        monkeypatch.setattr(routing, "candidates", lambda *args, **kw: seen_eligible)
        assert lifecycle.offer_chat(chat["id"]) == {"offered_to": None}
        db.session.commit()
        db.session.remove()
    last = events(chat_api, chat["id"], "waiting_for_operator")[-1]
    assert "became busy or inactive" in last["details"]["reason"]
    assert ok(chat_api.get(f"/api/chats/{chat['id']}"))["state"] == "queued"
