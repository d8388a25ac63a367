"""Faults, each a test: a worker killed mid-step, Redis restarted empty, a database
failure inside one instance's transaction, a provider's 500, and the database going away.

Each test checks the outcome in the database: the right final state, reached exactly once,
and nothing half-written on the way.
"""
import os
import signal
import socket
import sqlite3
import threading
from contextlib import contextmanager
from pathlib import Path

import pytest
from redis import Redis
from rq.registry import StartedJobRegistry
from sqlalchemy import create_engine, event, func, select, text
from sqlalchemy.engine import make_url
from sqlalchemy.exc import OperationalError

from app.engine.instances import current_instance
from app.extensions import db
from app.models import InstanceEvent, ProcessInstance, User
from app.models.types import utcnow
from app.models.chat import Chat, ChatEvent, Contact, Message
from chat_helpers import (configure, deploy_lifecycle, error_code, make_channel, make_operator, make_queue,
                          new_chat, ok, pending_jobs, settled)
from conftest import DATA, Api, wait_for
from fakes.telegram import update

# A timer that fires, then a script that computes for a few seconds (scripts have no `time`):
# long enough to kill the worker while it holds the instance's row lock inside the step.
SLOW_ROUNDS = 200  # about 3 s here; each round sums 999 numbers 999 times
SLOW_AFTER_TIMER = f"""<?xml version="1.0" encoding="UTF-8"?>
<bpmn:definitions xmlns:bpmn="http://www.omg.org/spec/BPMN/20100524/MODEL" id="Definitions_1"
    targetNamespace="http://bpmn.io/schema/bpmn">
  <bpmn:process id="SlowAfterTimer" isExecutable="true">
    <bpmn:startEvent id="start"><bpmn:outgoing>f1</bpmn:outgoing></bpmn:startEvent>
    <bpmn:sequenceFlow id="f1" sourceRef="start" targetRef="approve" />
    <bpmn:userTask id="approve"><bpmn:incoming>f1</bpmn:incoming><bpmn:outgoing>f2</bpmn:outgoing></bpmn:userTask>
    <bpmn:sequenceFlow id="f2" sourceRef="approve" targetRef="approved" />
    <bpmn:endEvent id="approved"><bpmn:incoming>f2</bpmn:incoming></bpmn:endEvent>
    <bpmn:boundaryEvent id="too_late" attachedToRef="approve">
      <bpmn:outgoing>f3</bpmn:outgoing>
      <bpmn:timerEventDefinition id="too_late_timer"><bpmn:timeDuration>PT1S</bpmn:timeDuration></bpmn:timerEventDefinition>
    </bpmn:boundaryEvent>
    <bpmn:sequenceFlow id="f3" sourceRef="too_late" targetRef="slow_work" />
    <bpmn:scriptTask id="slow_work"><bpmn:incoming>f3</bpmn:incoming><bpmn:outgoing>f4</bpmn:outgoing>
      <bpmn:script>n = 0
for a in range({SLOW_ROUNDS}):
    for b in range(999):
        n = n + sum(range(999))
worked = n</bpmn:script></bpmn:scriptTask>
    <bpmn:sequenceFlow id="f4" sourceRef="slow_work" targetRef="expired" />
    <bpmn:endEvent id="expired"><bpmn:incoming>f4</bpmn:incoming></bpmn:endEvent>
  </bpmn:process>
</bpmn:definitions>
"""
SLOW_RESULT = SLOW_ROUNDS * 999 * sum(range(999))


# -- helpers ------------------------------------------------------------------------------
def get_instance(api, instance_id):
    return ok(api.get(f"/api/process-instances/{instance_id}"))


def named(history, event, task=None):
    return [e for e in history if e["event"] == event and (task is None or e["task"] == task)]


def instance_row(app, instance_id) -> dict:
    with app.app_context():
        i = db.session.get(ProcessInstance, instance_id)
        row = {"state": i.state, "revision": i.revision, "error": i.error,
               "events": db.session.scalar(select(func.count()).select_from(InstanceEvent)
                                           .where(InstanceEvent.instance_id == instance_id)),
               "timers": int(i.next_timer_at is not None)}  # the sweep sees a due timer (1) or none (0)
        db.session.remove()
    return row


def row_lock_held(db_url, instance_id) -> bool:
    """Is someone else inside a transaction that locked this instance? (SQLite: any writer.)"""
    url = make_url(db_url)
    if url.get_backend_name() == "sqlite":
        conn = sqlite3.connect(url.database, timeout=0, isolation_level=None)
        try:
            conn.execute("BEGIN IMMEDIATE")
            conn.execute("ROLLBACK")
            return False
        except sqlite3.OperationalError as e:
            assert "locked" in str(e), e
            return True
        finally:
            conn.close()
    # Without taking the lock: a probe holding it even briefly makes a worker's claim (SKIP LOCKED)
    # pass the instance over. A row locked FOR UPDATE carries its locker's transaction id in xmax.
    engine = create_engine(db_url, poolclass=None)
    try:
        with engine.connect() as conn:
            return bool(conn.scalar(text(
                "SELECT EXISTS (SELECT 1 FROM process_instances p JOIN pg_stat_activity a ON a.backend_xid = p.xmax"
                " WHERE p.id = :id AND a.pid <> pg_backend_pid())"), {"id": instance_id}))
    finally:
        engine.dispose()


@contextmanager
def database_fails(app, when, times=1):
    """The database answers the first `times` statements of this thread for which `when(statement)`
    holds with an OperationalError, as a server restarting or a lost connection would.

    Yields a record of the statements run before the failure (to show it struck mid-transaction).
    """
    with app.app_context():
        engine = db.engine
    dbapi = engine.dialect.loaded_dbapi
    me = threading.get_ident()
    record = {"failed": 0, "before": []}

    def before_cursor_execute(conn, cursor, statement, params, context, executemany):
        if threading.get_ident() != me:
            return
        if record["failed"] < times and when(statement):
            record["failed"] += 1
            # as SQLAlchemy wraps the driver's error when a statement fails
            raise OperationalError(statement, params, dbapi.OperationalError("injected fault: the server went away"))
        if not record["failed"]:
            record["before"].append(" ".join(statement.split())[:80])

    event.listen(engine, "before_cursor_execute", before_cursor_execute)
    try:
        yield record
    finally:
        event.remove(engine, "before_cursor_execute", before_cursor_execute)


def writes(statements):
    return [s for s in statements if s.split()[0].upper() in ("INSERT", "UPDATE", "DELETE")]


def assert_unavailable(response):
    assert response.status_code == 503, (response.status_code, response.get_data(as_text=True)[:500])
    assert error_code(response) == "service_unavailable"
    assert int(response.headers["Retry-After"]) > 0


# -- 1. the worker is killed mid-step -------------------------------------------------------
def test_worker_killed_mid_step_the_timer_fires_again_exactly_once(make_app, db_url, redis_url, start_worker,
                                                                   monkeypatch):
    # The slow script may take longer than an advance's default time budget on a busy machine.
    monkeypatch.setenv("CHATFLOW_ENGINE_TIME_LIMIT_SECONDS", "120")
    app = make_app(redis_url=redis_url)
    api = Api(app)
    assert api.deploy(("slow_after_timer.bpmn", SLOW_AFTER_TIMER)).status_code == 201
    first = start_worker(sweep_seconds=600, grace_seconds=600)  # only its RQ timer job advances the instance
    instance_id = ok(api.post("/api/processes/SlowAfterTimer/instances", {"data": {}}), 201)["id"]
    with app.app_context():
        due_at = db.session.get(ProcessInstance, instance_id).next_timer_at
        db.session.remove()

    # The timer job runs the slow script while holding the instance's row lock: kill it there.
    # Its alarm may wake it up to a second early, and on SQLite a look for the due timer then
    # writes too: only a lock held once the timer is due is the firing's.
    wait_for(lambda: utcnow() >= due_at and row_lock_held(db_url, instance_id), timeout=20, interval=0.02,
             message="the worker to lock the instance inside its timer job")
    started = StartedJobRegistry("chatflow", connection=Redis.from_url(redis_url)).get_job_ids()
    assert any(job.startswith("timers-at-") for job in started), started
    os.killpg(first.pid, signal.SIGKILL)
    first.wait(timeout=10)

    # The database rolled the dead worker's transaction back: the lock is free, nothing moved.
    wait_for(lambda: not row_lock_held(db_url, instance_id), timeout=10, message="the dead worker's lock to go")
    after_kill = instance_row(app, instance_id)
    assert after_kill == {"state": "waiting", "revision": 1, "error": None, "events": after_kill["events"],
                          "timers": 1}
    assert not named(get_instance(api, instance_id)["history"], "timer_fired")

    # Its RQ job is lost with it (left in the started registry); a new worker's sweep finds the
    # overdue timer row in the database and fires it.
    start_worker(sweep_seconds=0.3, grace_seconds=0.5)
    done = wait_for(lambda: (i := get_instance(api, instance_id))["state"] == "completed" and i, timeout=30,
                    message="the new worker to fire the timer")
    settled(app)  # no late second firing: every job due has run
    done = get_instance(api, instance_id)
    assert done["state"] == "completed" and done["data"]["worked"] == SLOW_RESULT
    assert len(named(done["history"], "timer_fired", "too_late")) == 1
    assert len(named(done["history"], "completed", "slow_work")) == 1
    assert len(named(done["history"], "completed", "expired")) == 1
    final = instance_row(app, instance_id)
    assert (final["revision"], final["timers"]) == (2, 0)  # one save at start, one for the firing


# -- 2. Redis restarts empty while timers wait -----------------------------------------------
def test_every_waiting_timer_fires_after_redis_is_emptied(make_app, redis_url, start_worker):
    api = Api(make_app(redis_url=redis_url))
    worker = start_worker(sweep_seconds=0.3, grace_seconds=0.5)
    assert api.deploy(DATA / "user_task_timeout.bpmn").status_code == 201  # a 2 s boundary timer
    ids = [ok(api.post("/api/processes/UserTaskTimeout/instances", {"data": {}}), 201)["id"] for _ in range(6)]
    redis = Redis.from_url(redis_url)
    assert 1 <= redis.zcard("rq:scheduled:chatflow") <= len(ids)  # the alarms of their due seconds wait in RQ
    redis.flushdb()  # Redis restarted empty: every wake-up job, the worker's registration, all gone

    def all_done():
        found = [get_instance(api, i) for i in ids]
        return found if all(i["state"] == "completed" for i in found) else None

    done = wait_for(all_done, timeout=20, message="every timer to fire")
    settled(api.app)  # no late second firing: every job due has run
    for instance in done:
        instance = get_instance(api, instance["id"])
        assert instance["data"]["timed_out"] is True
        assert len(named(instance["history"], "timer_fired", "too_late")) == 1, instance["history"]
    assert worker.poll() is None, "the worker died when Redis was emptied"


# -- 3. a database failure inside one instance's transaction ----------------------------------
@pytest.fixture
def in_all_queue(make_app):
    """An `all` queue with four operators and one chat waiting in it (embedded jobs)."""
    app = make_app()
    api = Api(app)
    deploy_lifecycle(api)
    configure(api, simultaneous_chats=3)
    queue = make_queue(api, rule="all")
    operators = [make_operator(api, f"op{n}", queue["id"]) for n in range(4)]
    channel = make_channel(api, queue["id"])
    waiting = new_chat(api, channel.client())
    return app, api, operators, waiting


def chat_state(app, chat_id) -> dict:
    """The chat, its history and every operator's count of chats in work."""
    with app.app_context():
        c = db.session.get(Chat, chat_id)
        events = [e.event for e in db.session.scalars(select(ChatEvent).where(ChatEvent.chat_id == chat_id)
                                                      .order_by(ChatEvent.id))]
        in_work = {u.id: u.chats_in_work for u in db.session.scalars(select(User))}
        state = {"state": c.state, "operator_id": c.operator_id, "events": events, "in_work": in_work}
        db.session.remove()
    return state


def test_accept_failing_mid_transaction_writes_nothing_and_racing_accepts_get_409(in_all_queue):
    app, api, operators, waiting = in_all_queue
    chat_id, instance_id = waiting["id"], waiting["process_instance_id"]
    before, instance_before = chat_state(app, chat_id), instance_row(app, instance_id)
    assert before["state"] == "queued"

    # The database fails as the instance row is written, after the chat row and its history were.
    with database_fails(app, lambda s: s.lstrip().upper().startswith("UPDATE PROCESS_INSTANCES")) as fault:
        response = operators[0].accept(chat_id)
    assert fault["failed"] == 1
    assert_unavailable(response)
    assert any("chat" in s for s in writes(fault["before"])), fault["before"]  # it struck mid-transaction
    assert chat_state(app, chat_id) == before
    assert instance_row(app, instance_id) == instance_before

    # Then all four accept at once: exactly one wins, the others get 409.
    barrier, answers = threading.Barrier(len(operators)), {}

    def accept(operator):
        client = app.test_client()
        barrier.wait()
        answers[operator.id] = client.post(f"/api/chats/{chat_id}/accept",
                                           headers={"Authorization": f"Bearer {operator.token}"})

    threads = [threading.Thread(target=accept, args=(op,)) for op in operators]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    statuses = sorted(r.status_code for r in answers.values())
    assert statuses == [200, 409, 409, 409], {k: r.get_data(as_text=True)[:200] for k, r in answers.items()}
    assert {error_code(r) for r in answers.values() if r.status_code == 409} == {"chat_taken"}
    (winner,) = [op for op, r in answers.items() if r.status_code == 200]
    after = chat_state(app, chat_id)
    assert (after["state"], after["operator_id"]) == ("in_work", winner)
    assert after["events"] == before["events"] + ["accepted"]
    assert sum(after["in_work"].values()) == 1 and after["in_work"][winner] == 1
    instance = instance_row(app, instance_id)
    assert (instance["state"], instance["revision"]) == ("waiting", instance_before["revision"] + 1)
    history = get_instance(api, instance_id)["history"]
    assert [e["details"]["name"] for e in named(history, "message_received")] == ["chat_accepted"]


@pytest.mark.parametrize("failing", ["flush", "query"])
def test_database_failing_inside_a_service_task_rolls_back_instead_of_failing_the_instance(in_all_queue, failing):
    """A database fault while the diagram's operation runs is the database's, not the diagram's: the
    step is rolled back whole (503, retry), and the instance is not left in `error`.

    `query`: the operation's own read fails (accept_chat, a service task of ChatLifecycle.bpmn, reads
    whom to tell); `flush`: the first write of a completion's step fails (the engine writes the step's
    rows when it saves).
    """
    app, api, operators, waiting = in_all_queue
    chat_id, instance_id = waiting["id"], waiting["process_instance_id"]
    if failing == "query":
        action = operators[0].accept

        def failing_statement(s):
            return current_instance.get() is not None and s.split()[0].upper() == "SELECT"
    else:
        assert operators[0].accept(chat_id).status_code == 200
        action = operators[0].complete

        def failing_statement(s):
            return s.split()[0].upper() in ("INSERT", "UPDATE")
    before, instance_before = chat_state(app, chat_id), instance_row(app, instance_id)
    with database_fails(app, failing_statement) as fault:
        response = action(chat_id)
    assert fault["failed"] == 1
    assert_unavailable(response)
    assert chat_state(app, chat_id) == before
    assert instance_row(app, instance_id) == instance_before
    assert not named(get_instance(api, instance_id)["history"], "error")

    # The operator tries again: accepted and completed exactly once.
    if failing == "query":
        assert ok(operators[0].accept(chat_id))["state"] == "in_work"
    assert ok(operators[0].complete(chat_id))["state"] == "completed"
    after = chat_state(app, chat_id)
    assert after["events"].count("accepted") == 1 and after["events"].count("completed") == 1
    assert after["in_work"][operators[0].id] == 0
    instance = instance_row(app, instance_id)
    steps = 2 if failing == "query" else 1
    assert (instance["state"], instance["revision"]) == ("completed", instance_before["revision"] + steps)
    history = get_instance(api, instance_id)["history"]
    assert len(named(history, "completed", "complete")) == 1 and not named(history, "error")


# -- 4. the provider answers 500, then recovers ---------------------------------------------
def test_reply_after_a_provider_500_goes_out_exactly_once_through_the_worker(make_app, redis_url, start_worker,
                                                                             telegram):
    app = make_app(redis_url=redis_url)
    api = Api(app)
    # A short grace: the sweep races the scheduled retry job for the same message.
    start_worker(sweep_seconds=0.3, grace_seconds=0.5)
    deploy_lifecycle(api)
    configure(api)
    queue = make_queue(api, rule="all")
    operator = make_operator(api, "op", queue["id"])
    channel = make_channel(api, queue["id"])
    waiting = new_chat(api, channel.client(), timeout=20)  # the worker started its lifecycle
    assert ok(operator.accept(waiting["id"]))["state"] == "in_work"

    telegram.fail_sends = 1
    assert operator.reply(waiting["id"], "sent once").status_code == 201

    def status():
        (message,) = [m for m in ok(operator.api.get(f"/api/chats/{waiting['id']}/messages"))
                      if m["text"] == "sent once"]
        return message["status"] in ("sent", "failed") and message

    message = wait_for(status, timeout=20, message="the reply to be sent")
    assert message["status"] == "sent"
    wait_for(lambda: "app.jobs.deliver_message" not in pending_jobs(app), message="scheduled deliveries to run")
    settled(app)
    attempts = [p for p in telegram.sent() if p["text"] == "sent once"]
    assert len(attempts) == 2 and telegram.fail_sends == 0  # one answered 500, one delivered
    with app.app_context():
        row = db.session.scalars(select(Message).where(Message.text == "sent once")).one()
        assert (row.status, row.attempts, row.error) == ("sent", 2, None) and row.sent_at is not None
        db.session.remove()


# -- 5. the database is briefly unreachable ---------------------------------------------------
class TcpProxy:
    """A TCP forwarder to PostgreSQL that can be cut (connections dropped, new ones refused)."""

    def __init__(self, host, port):
        self.target, self.port = (host, port), 0
        self._sockets, self._lock, self._stop = [], threading.Lock(), threading.Event()

    def up(self):
        listener = socket.socket()
        listener.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        listener.bind(("127.0.0.1", self.port))
        listener.listen(32)
        listener.settimeout(0.05)
        self.port, self._stop = listener.getsockname()[1], threading.Event()
        self._acceptor = threading.Thread(target=self._accept, args=(listener, self._stop), daemon=True)
        self._acceptor.start()

    def down(self):
        self._stop.set()
        self._acceptor.join()  # the port is closed: new connections are refused
        with self._lock:
            sockets, self._sockets = self._sockets, []
        for s in sockets:
            try:
                s.shutdown(socket.SHUT_RDWR)
            except OSError:
                pass
            s.close()

    def _accept(self, listener, stop):
        with listener:
            while not stop.is_set():
                try:
                    client, _ = listener.accept()
                except (TimeoutError, socket.timeout):
                    continue
                if stop.is_set():
                    client.close()
                    break
                client.settimeout(None)
                upstream = socket.create_connection(self.target)
                with self._lock:
                    self._sockets += [client, upstream]
                for a, b in ((client, upstream), (upstream, client)):
                    threading.Thread(target=self._pump, args=(a, b), daemon=True).start()

    @staticmethod
    def _pump(src, dst):
        try:
            while data := src.recv(65536):
                dst.sendall(data)
        except OSError:
            pass
        try:
            dst.shutdown(socket.SHUT_WR)
        except OSError:
            pass


class Outage:
    """Takes the database away from the app and brings it back.

    PostgreSQL: the app talks to it through a TcpProxy, which is cut. SQLite: the database's
    folder is moved away and the app's pooled connections are closed, so opening fails.
    """

    def __init__(self, db_url):
        self.db_url = db_url
        url = make_url(db_url)
        self.sqlite = url.get_backend_name() == "sqlite"
        if self.sqlite:
            self.url, self.folder = db_url, Path(url.database).parent
        else:
            self.proxy = TcpProxy(url.host or "127.0.0.1", url.port or 5432)
            self.proxy.up()
            self.url = url.set(host="127.0.0.1", port=self.proxy.port).render_as_string(hide_password=False)
        self.away = False

    def down(self, app):
        self.away = True
        if self.sqlite:
            self.folder.rename(self.folder.with_name(self.folder.name + ".away"))
            with app.app_context():
                db.engine.dispose()
        else:
            self.proxy.down()

    def up(self):
        if self.away and self.sqlite:
            self.folder.with_name(self.folder.name + ".away").rename(self.folder)
        elif self.away:
            self.proxy.up()
        self.away = False


@pytest.fixture
def outage(db_url):
    o = Outage(db_url)
    yield o
    o.up()
    if not o.sqlite:
        o.proxy.down()


def stored(db_url) -> dict:
    """Rows as the database holds them, read directly (not through the app)."""
    engine = create_engine(db_url)
    try:
        with engine.connect() as conn:
            return {model.__tablename__: conn.scalar(select(func.count()).select_from(model))
                    for model in (Contact, Chat, ChatEvent, Message)}
    finally:
        engine.dispose()


def test_database_away_webhooks_answer_503_and_nothing_is_half_stored(make_app, db_url, outage, telegram):
    app = make_app(SQLALCHEMY_DATABASE_URI=outage.url)
    api = Api(app)
    deploy_lifecycle(api)  # a queue needs its lifecycle
    configure(api)
    channel = make_channel(api, make_queue(api, rule="all")["id"])
    headers = {"X-Telegram-Bot-Api-Secret-Token": channel.secret}

    def deliver(update_id, text):
        return api.client.post(f"/webhooks/telegram/{channel.id}", json=update(update_id, 4242, text),
                               headers=headers)

    def provider_retries(update_id, text, tries=3):
        """Telegram sends an update again until it gets a 2xx; every refusal must be a 503."""
        for _ in range(tries):
            response = deliver(update_id, text)
            if response.status_code == 200:
                return response.get_json()
            assert_unavailable(response)
        raise AssertionError(f"update {update_id} still refused after {tries} tries")

    empty = stored(db_url)
    assert empty == {"contacts": 0, "chats": 0, "chat_events": 0, "messages": 0}

    # The connection dies as the message row is written, after the contact and the chat were.
    with database_fails(app, lambda s: s.lstrip().upper().startswith("INSERT INTO MESSAGES")) as fault:
        assert_unavailable(deliver(1, "first"))
    assert fault["failed"] == 1
    assert {"INSERT INTO contacts", "INSERT INTO chats"} <= {" ".join(s.split()[:3]) for s in writes(fault["before"])}
    assert stored(db_url) == empty
    assert provider_retries(1, "first") == {"ok": True, "duplicate": False}
    assert deliver(1, "first").get_json() == {"ok": True, "duplicate": True}
    assert stored(db_url)["messages"] == 1

    # The database goes away altogether: webhooks and the API answer 503, /healthz says why.
    outage.down(app)
    try:
        for _ in range(2):  # the first finds a dead pooled connection, the next cannot connect
            assert_unavailable(deliver(2, "while away"))
        assert_unavailable(api.get("/api/chats"))
        health = api.client.get("/healthz")
        assert health.status_code == 503
        assert health.get_json()["checks"]["database"]["ok"] is False
    finally:
        outage.up()
    assert stored(db_url)["messages"] == 1

    # It is back: the provider's retry stores the message once, a repeat is a duplicate.
    assert provider_retries(2, "while away") == {"ok": True, "duplicate": False}
    assert deliver(2, "while away").get_json() == {"ok": True, "duplicate": True}
    with app.app_context():
        texts = sorted(db.session.scalars(select(Message.text)))
        chats = db.session.scalar(select(func.count()).select_from(Chat))
        db.session.remove()
    assert texts == ["first", "while away"] and chats == 1
    wait_for(lambda: api.client.get("/healthz").status_code == 200, timeout=10, message="/healthz to recover")
