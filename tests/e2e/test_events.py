"""Live events (`GET /api/events`, Server-Sent Events) and the buses that carry them.

- The buses: `LocalEvents` (embedded default, in this process) and `RedisEvents` (pub/sub on a
  real Redis) deliver to the named users' subscribers only, stop at `close()`, and the local
  backlog drops its oldest events for a slow reader.
- The stream over real HTTP: 401 without a valid token, `ready` first, keep-alive comments when
  idle, and a client that hangs up releases its subscription.
- Who hears what, on the embedded app: each chat change reaches the operators it concerns and
  nobody else; a transaction that rolls back tells nobody.
- The production shape: two gunicorn web processes and one `chatflow worker` on one Redis; an
  operator connected to web B hears what web A and the worker did.

Streams are read with blocking reads bounded by a deadline (the apps send keep-alives every
fraction of a second, so a read never waits long). Absence is proven with a marker: the test
publishes a `test_marker` event to the user after the change; events to one user arrive in
order, so anything the change told that user arrives before the marker.
"""
import itertools
import json
import threading
import time
from dataclasses import dataclass, replace
from urllib.parse import urlsplit

import pytest
import requests
from sqlalchemy import text

from app.adapters.events import LocalEvents, RedisEvents
from app.chats import live
from app.extensions import db
from app.services import install, services
from chat_helpers import configure, deploy_lifecycle, make_channel, make_operator, make_queue, new_chat, ok
from conftest import Api, wait_for
from fakes.telegram import update

KEEPALIVE = 0.1          # seconds between keep-alive comments in these tests' apps
READ_TIMEOUT = 5.0       # seconds a socket read may block (keep-alives come far more often)
WAIT = 5.0               # seconds to wait for an expected event
_markers = itertools.count(1)


# -- reading a stream -----------------------------------------------------------------------------
@dataclass
class Frame:
    event: str | None = None
    data: dict | None = None
    comment: str | None = None
    retry: int | None = None


def parse_frame(text: str) -> Frame:
    """One SSE frame (the lines between blank lines): `event:`, `data:`, `retry:`, `:comment`."""
    frame, data = Frame(), []
    for line in text.split("\n"):
        field, _, value = line.partition(":")
        value = value[1:] if value.startswith(" ") else value
        if field == "":
            frame.comment = value
        elif field == "event":
            frame.event = value
        elif field == "data":
            data.append(value)
        elif field == "retry":
            frame.retry = int(value)
    if data:
        frame.data = json.loads("\n".join(data))
    return frame


class Stream:
    """`GET /api/events` held open over real HTTP, read frame by frame."""

    def __init__(self, base: str, token: str | None):
        headers = {"Authorization": f"Bearer {token}"} if token else {}
        self.response = requests.get(f"{base}/api/events", headers=headers, stream=True,
                                     timeout=(5, READ_TIMEOUT))
        self._chunks = None
        self._buffer = ""
        self.seen: list[dict] = []   # events read so far (keep-alives left out)

    def close(self):
        self.response.close()

    def frame(self) -> Frame:
        """The next frame, waiting at most READ_TIMEOUT (a read timeout fails the test)."""
        if self._chunks is None:
            # chunk_size=None: each HTTP chunk as soon as it arrives, never waiting to fill a size
            self._chunks = self.response.iter_content(chunk_size=None, decode_unicode=False)
        while "\n\n" not in self._buffer:
            chunk = next(self._chunks, None)
            if chunk is None:
                raise AssertionError(f"the server ended the stream; seen: {self.seen}")
            self._buffer += chunk.decode()
        text, self._buffer = self._buffer.split("\n\n", 1)
        return parse_frame(text)

    def event(self, deadline: float) -> dict:
        """The next event (keep-alives skipped) before `deadline` (time.monotonic())."""
        while time.monotonic() < deadline:
            frame = self.frame()
            if frame.event is not None:
                assert frame.data["type"] == frame.event, frame
                self.seen.append(frame.data)
                return frame.data
        raise AssertionError(f"no event before the deadline; seen so far: {self.seen}")

    def expect(self, type_: str, timeout: float = WAIT, **fields) -> dict:
        """Read until an event of this type with these fields; fail after `timeout` seconds."""
        deadline = time.monotonic() + timeout
        while True:
            try:
                event = self.event(deadline)
            except AssertionError:
                raise AssertionError(f"no {type_} {fields} within {timeout}s; seen: {self.seen}") from None
            if event["type"] == type_ and all(event.get(k) == v for k, v in fields.items()):
                return event

    def rest(self, bus, user_id: int) -> list[dict]:
        """Every event not read yet that was told to this user before now (see the module doc)."""
        marker = next(_markers)
        bus.publish([user_id], {"type": "test_marker", "n": marker})
        before = []
        deadline = time.monotonic() + WAIT
        while (event := self.event(deadline)) != {"type": "test_marker", "n": marker}:
            before.append(event)
        self.seen.pop()
        return before


def kinds(events: list[dict]) -> list[tuple]:
    """(type, chat_id) of each event: enough to say who heard of which chat."""
    return [(e["type"], e.get("chat_id")) for e in events]


@pytest.fixture
def streams():
    """Open streams with `streams(base, token)`; all are closed after the test."""
    opened = []

    def open_stream(base, token):
        stream = Stream(base, token)
        opened.append(stream)
        return stream

    yield open_stream
    for stream in opened:
        stream.close()


# -- 1. the buses ---------------------------------------------------------------------------------
# Users no app of a concurrent run has: Redis pub/sub is shared by the whole server.
U1, U2, U3 = 900_001, 900_002, 900_003


@pytest.fixture(params=["local", "redis"])
def bus(request):
    if request.param == "local":
        yield LocalEvents()
        return
    url = request.getfixturevalue("redis_url")
    bus = RedisEvents(url)
    yield bus
    bus.redis.close()


def test_a_bus_delivers_only_to_the_named_users(bus):
    """Two tabs of user U1 both hear U1's event; U2 does not, until named."""
    tab1, tab2, other = bus.subscribe(U1), bus.subscribe(U1), bus.subscribe(U2)
    try:
        bus.publish([U1], {"type": "chat_offered", "chat_id": 10})
        bus.publish([U2], {"type": "test_marker"})
        assert tab1.get(WAIT) == {"type": "chat_offered", "chat_id": 10}
        assert tab2.get(WAIT) == {"type": "chat_offered", "chat_id": 10}
        # U2's first event is the marker published after U1's event: nothing of U1's reached it
        assert other.get(WAIT) == {"type": "test_marker"}
        bus.publish([U1, U2], {"type": "chat_taken", "chat_id": 10, "operator_id": U1})
        for subscription in (tab1, tab2, other):
            assert subscription.get(WAIT) == {"type": "chat_taken", "chat_id": 10, "operator_id": U1}
        assert other.get(0.05) is None
    finally:
        for subscription in (tab1, tab2, other):
            subscription.close()


def test_a_closed_subscription_hears_nothing_more(bus):
    """After close() the bus no longer holds the subscriber; the other tab still hears."""
    closed, open_ = bus.subscribe(U3), bus.subscribe(U3)
    closed.close()
    try:
        bus.publish([U3], {"type": "status_changed", "status": "inactive"})
        assert open_.get(WAIT) == {"type": "status_changed", "status": "inactive"}
        if isinstance(bus, LocalEvents):
            assert bus._queues[U3] == {open_.q}
            assert closed.get(0.05) is None
        else:
            assert dict(bus.redis.pubsub_numsub(bus.channel(U3))) == {bus.channel(U3).encode(): 1}
    finally:
        open_.close()
    if isinstance(bus, LocalEvents):
        assert U3 not in bus._queues
    else:
        assert wait_for(lambda: dict(bus.redis.pubsub_numsub(bus.channel(U3))) == {bus.channel(U3).encode(): 0})


def test_stopping_a_bus_wakes_its_subscriptions_and_waits_until_they_close(bus):
    """`stop` wakes an idle reader at once (not at its minute's end), waits for its close, and
    names one never closed; a subscription opened after `stop` starts ended."""
    idle, abandoned = bus.subscribe(U1), bus.subscribe(U2)

    def stream():  # as a stream does: read until ended, then close
        while not idle.ended:
            idle.get(timeout=60)
        idle.close()

    reader = threading.Thread(target=stream)
    reader.start()
    assert bus.stop(timeout=1) == 1  # the abandoned one
    reader.join(timeout=WAIT)
    assert not reader.is_alive()
    late = bus.subscribe(U3)
    assert late.ended and late.get(timeout=60) is None
    for subscription in (abandoned, late):
        subscription.close()
    assert bus.stop(timeout=1) == 0


def test_redis_installations_on_other_databases_do_not_hear_each_other(redis_url):
    """Pub/sub channels ignore the database number: two Chatflows sharing one Redis server
    (databases 9 and 10, say) must not tell one's user 1 what the other's user 1 hears."""
    ours = RedisEvents(redis_url)
    theirs = RedisEvents(urlsplit(redis_url)._replace(path=f"/{(ours.db + 1) % 16}").geturl())
    assert theirs.db != ours.db
    mine, foreign = ours.subscribe(U1), theirs.subscribe(U1)
    try:
        theirs.publish([U1], {"type": "chat_message", "chat_id": 1, "message": {"text": "their secret"}})
        ours.publish([U1], {"type": "test_marker"})
        assert mine.get(WAIT) == {"type": "test_marker"}
        assert foreign.get(WAIT)["message"]["text"] == "their secret"
    finally:
        for closable in (mine, foreign, ours.redis, theirs.redis):
            closable.close()


def test_a_change_is_told_only_once_its_transaction_commits(make_app):
    """`live.tell` waits for the commit: a rollback drops what it would have told."""
    app = make_app()
    bus = services(app).events
    subscription = bus.subscribe(42)
    try:
        with app.app_context():
            # as in the app, the change comes first (a transaction is open), then what tells of it
            db.session.execute(text("select 1"))
            live.tell([42], "status_changed", status="inactive")
            assert subscription.get(0.05) is None          # not before the commit
            db.session.rollback()
            db.session.execute(text("select 1"))
            live.tell([42], "status_changed", status="active")
            db.session.commit()
            db.session.remove()
        assert subscription.get(WAIT) == {"type": "status_changed", "status": "active"}
        assert subscription.get(0.05) is None              # the rolled-back one never comes
    finally:
        subscription.close()


def test_a_rollback_before_any_sql_drops_what_was_told(make_app):
    """Told, then rolled back before the transaction reached the database: still never sent."""
    app = make_app()
    subscription = services(app).events.subscribe(42)
    try:
        with app.app_context():
            live.tell([42], "status_changed", status="inactive")
            db.session.rollback()
            db.session.execute(text("select 1"))
            db.session.commit()
            db.session.remove()
        assert subscription.get(0.2) is None
    finally:
        subscription.close()


# -- 2. the stream --------------------------------------------------------------------------------
@pytest.fixture
def embedded(make_app, serve, telegram):
    """The embedded app (in-process jobs, LocalEvents) served over HTTP, the lifecycle deployed."""
    app = make_app(EVENTS_KEEPALIVE_SECONDS=KEEPALIVE)
    api = Api(app)
    deploy_lifecycle(api)
    return app, api, serve(app), services(app).events


def test_the_stream_needs_a_valid_token(embedded):
    _, _, base, _ = embedded
    for headers in ({}, {"Authorization": "Bearer not-a-token"}, {"Authorization": "Basic x"}):
        response = requests.get(f"{base}/api/events", headers=headers, timeout=5)
        assert response.status_code == 401, headers
        assert response.json()["error"]["code"] == "unauthorized"


def test_the_stream_starts_with_ready_then_keeps_alive(embedded, streams):
    """Headers for an event stream, `retry` and `ready` (the user's id and status) first, then
    keep-alive comments while nothing happens."""
    _, api, base, _ = embedded
    queue = make_queue(api)
    ann = make_operator(api, "ann", queue["id"], status="inactive")
    stream = streams(base, ann.token)
    assert stream.response.status_code == 200
    assert stream.response.headers["Content-Type"].startswith("text/event-stream")
    assert stream.response.headers["Cache-Control"] == "no-cache"
    first = stream.frame()
    assert first.retry == 2000
    assert (first.event, first.data) == ("ready", {"type": "ready", "user_id": ann.id, "status": "inactive"})
    started = time.monotonic()
    assert [stream.frame().comment for _ in range(3)] == ["keep-alive"] * 3
    assert time.monotonic() - started < 3  # they come every KEEPALIVE seconds, not every 15


def test_hanging_up_releases_the_subscription(embedded, streams):
    """The server notices the closed connection at its next write and unsubscribes the user."""
    _, api, base, bus = embedded
    ann = make_operator(api, "ann")
    first, second = streams(base, ann.token), streams(base, ann.token)
    for stream in (first, second):
        assert stream.frame().event == "ready"
    assert len(bus._queues[ann.id]) == 2
    first.close()
    wait_for(lambda: len(bus._queues.get(ann.id, ())) == 1, timeout=WAIT, message="one subscription left")
    second.close()
    wait_for(lambda: ann.id not in bus._queues, timeout=WAIT, message="no subscription left")


def test_a_revoked_token_ends_its_stream(embedded, streams):
    """A deleted user's open stream ends at the next keep-alive instead of hearing on."""
    _, api, base, _ = embedded
    ann = make_operator(api, "ann")
    stream = streams(base, ann.token)
    assert stream.frame().event == "ready"
    assert stream.frame().comment == "keep-alive"
    assert api.delete(f"/api/users/{ann.id}").status_code == 204
    with pytest.raises(AssertionError, match="the server ended the stream"):
        while True:
            stream.frame()


def test_stopping_the_app_ends_its_streams_once_they_record_the_disconnect(make_app, serve, streams):
    """An idle stream (15 s keep-alive) ends when its app stops, its user's disconnect recorded
    before `stop` returns: the test fixtures stop each app so that no stream writes into the
    next test's tables (on PostgreSQL such a late write deadlocked with its TRUNCATE)."""
    app = make_app()
    api = Api(app)
    ann = make_operator(api, "ann", connected=False)
    stream = streams(serve(app), ann.token)
    assert stream.frame().event == "ready"
    assert ann.me()["connected"] is True
    assert services(app).events.stop(timeout=WAIT) == 0
    assert ann.me()["connected"] is False
    with pytest.raises(AssertionError, match="the server ended the stream"):
        stream.frame()


def test_the_stream_answers_503_while_redis_is_away(embedded, streams):
    app, api, base, _ = embedded
    install(app, replace(services(app), events=RedisEvents("redis://127.0.0.1:1/0")))  # nothing listens there
    ann = make_operator(api, "ann")
    response = requests.get(f"{base}/api/events", headers={"Authorization": f"Bearer {ann.token}"}, timeout=10)
    assert response.status_code == 503
    assert response.json()["error"]["code"] == "service_unavailable"


# -- 3. who hears what ----------------------------------------------------------------------------
def test_least_busy_chat_from_offer_to_completion(embedded, streams, telegram):
    """An offer reaches the chosen operator only; the accept reaches the queue's operators; the
    client's message, the reply's delivery and the completion reach the chat's operator only;
    a status change reaches its operator only."""
    _, api, base, bus = embedded
    configure(api, accept_timeout_minutes=5, simultaneous_chats=2)
    queue = make_queue(api, "least_busy")
    ann, bob = make_operator(api, "ann", queue["id"]), make_operator(api, "bob", queue["id"])
    client = make_channel(api, queue["id"]).client()
    s_ann, s_bob = streams(base, ann.token), streams(base, bob.token)
    for stream in (s_ann, s_bob):
        stream.expect("ready")

    chat = new_chat(api, client, "hello")
    assert chat["offered_to_id"] == ann.id  # equally idle: the lowest id is chosen
    assert s_ann.expect("chat_offered", chat_id=chat["id"]) == {
        "type": "chat_offered", "chat_id": chat["id"], "queue_id": queue["id"]}
    assert kinds(s_bob.rest(bus, bob.id)) == []

    ok(ann.accept(chat["id"]))
    for stream in (s_ann, s_bob):
        assert stream.expect("chat_taken", chat_id=chat["id"])["operator_id"] == ann.id

    client.writes("where is my order?")
    event = s_ann.expect("chat_message", chat_id=chat["id"])
    assert event["message"]["text"] == "where is my order?"
    assert event["message"]["direction"] == "in" and event["message"]["id"]

    reply = ok(ann.reply(chat["id"], "on its way"), 201)
    assert s_ann.expect("message_status", message_id=reply["id"]) == {
        "type": "message_status", "chat_id": chat["id"], "message_id": reply["id"], "status": "sent"}

    ok(ann.complete(chat["id"]))
    assert s_ann.expect("chat_completed", chat_id=chat["id"])["reason"] == "operator"

    bob.set_status("inactive")
    assert s_bob.expect("status_changed") == {"type": "status_changed", "status": "inactive"}

    assert kinds(s_ann.rest(bus, ann.id)) == []
    assert kinds(s_bob.rest(bus, bob.id)) == []
    assert kinds(s_bob.seen) == [("ready", None), ("chat_taken", chat["id"]), ("status_changed", None)]


def test_all_queue_chat_is_visible_to_eligible_operators_only(embedded, streams):
    """A chat queued in an `all` queue is shown to its active operators with room, not to an
    inactive one, one at the limit or another queue's operator; the accept is told to the
    queue's operators once (the loser's 409 tells nobody)."""
    _, api, base, bus = embedded
    configure(api, simultaneous_chats=1)
    queue, other_queue = make_queue(api, "all", name="QA"), make_queue(api, "all", name="QB")
    ann, bob = make_operator(api, "ann", queue["id"]), make_operator(api, "bob", queue["id"])
    idle = make_operator(api, "idle", queue["id"], status="inactive")
    busy = make_operator(api, "busy", queue["id"])
    outsider = make_operator(api, "outsider", other_queue["id"])
    channel = make_channel(api, queue["id"])
    # `busy` takes a first chat: at SimultaneousChats=1 they are at the limit
    first = new_chat(api, channel.client())
    ok(busy.accept(first["id"]))

    ops = {"ann": ann, "bob": bob, "idle": idle, "busy": busy, "outsider": outsider}
    s = {name: streams(base, op.token) for name, op in ops.items()}
    for stream in s.values():
        stream.expect("ready")

    chat = new_chat(api, channel.client())
    assert chat["state"] == "queued"
    for name in ("ann", "bob"):
        assert s[name].expect("chat_visible", chat_id=chat["id"]) == {
            "type": "chat_visible", "chat_id": chat["id"], "queue_id": queue["id"]}
    for name in ("idle", "busy", "outsider"):
        assert kinds(s[name].rest(bus, ops[name].id)) == [], name

    ok(bob.accept(chat["id"]))
    response = ann.accept(chat["id"])
    assert response.status_code == 409 and response.get_json()["error"]["code"] == "chat_taken"
    for name in ("ann", "bob", "idle", "busy"):
        assert s[name].expect("chat_taken", chat_id=chat["id"])["operator_id"] == bob.id, name
        assert kinds(s[name].rest(bus, ops[name].id)) == [], name  # one chat_taken, nothing more
    assert kinds(s["outsider"].rest(bus, outsider.id)) == []


def test_an_accept_that_rolls_back_tells_nobody(embedded, streams):
    """The accept tells `chat_taken`, then fails to move the chat's process (cancelled by an
    admin): 409, the transaction rolls back, and the queue's operators hear nothing."""
    _, api, base, bus = embedded
    configure(api)
    queue = make_queue(api, "all")
    ann, bob = make_operator(api, "ann", queue["id"]), make_operator(api, "bob", queue["id"])
    chat = new_chat(api, make_channel(api, queue["id"]).client())
    s_ann, s_bob = streams(base, ann.token), streams(base, bob.token)
    for stream in (s_ann, s_bob):
        stream.expect("ready")
    ok(api.post(f"/api/process-instances/{chat['process_instance_id']}/cancel"))

    response = ann.accept(chat["id"])
    assert response.status_code == 409, response.get_json()
    assert ok(api.get(f"/api/chats/{chat['id']}"))["state"] == "queued"  # rolled back
    assert kinds(s_ann.rest(bus, ann.id)) == []
    assert kinds(s_bob.rest(bus, bob.id)) == []


def test_a_missed_offer_is_withdrawn_and_its_operator_set_inactive(embedded, streams):
    """The acceptance timeout passes: the missed operator hears `chat_withdrawn` (accept_timeout)
    and `status_changed` inactive; the chat is offered to the next operator."""
    _, api, base, bus = embedded
    configure(api, accept_timeout_minutes=0.01)  # 0.6 s
    queue = make_queue(api, "least_busy")
    ann, bob = make_operator(api, "ann", queue["id"]), make_operator(api, "bob", queue["id"])
    s_ann, s_bob = streams(base, ann.token), streams(base, bob.token)
    for stream in (s_ann, s_bob):
        stream.expect("ready")
    chat = new_chat(api, make_channel(api, queue["id"]).client())

    s_ann.expect("chat_offered", chat_id=chat["id"])
    assert s_ann.expect("chat_withdrawn", chat_id=chat["id"])["reason"] == "accept_timeout"
    assert s_ann.expect("status_changed") == {"type": "status_changed", "status": "inactive"}
    s_bob.expect("chat_offered", chat_id=chat["id"])
    assert kinds(s_ann.seen) == [("ready", None), ("chat_offered", chat["id"]), ("chat_withdrawn", chat["id"]),
                                 ("status_changed", None)]


# -- 4. the production shape ----------------------------------------------------------------------
def test_two_web_processes_and_a_worker_share_events_through_redis(make_app, redis_url, start_worker,
                                                                   start_web, streams, telegram):
    """Operators connected to web B hear, within a couple of seconds, what the worker did for a
    webhook posted to web A (offer, visibility) and what another operator did through web A."""
    setup = Api(make_app(redis_url=redis_url))  # setup through the API on the same database and Redis
    deploy_lifecycle(setup)
    configure(setup)
    all_queue, lb_queue = make_queue(setup, "all", name="All"), make_queue(setup, "least_busy", name="LB")
    ann, bob = make_operator(setup, "ann", all_queue["id"]), make_operator(setup, "bob", all_queue["id"])
    carl = make_operator(setup, "carl", lb_queue["id"])
    all_channel, lb_channel = make_channel(setup, all_queue["id"]), make_channel(setup, lb_queue["id"])
    web_a, web_b = start_web(2, meanwhile=start_worker)
    assert web_a != web_b
    bus = RedisEvents(redis_url)  # for the markers, as the web processes and the worker publish

    def webhook(channel, client_id, text):
        """A client's message, as Telegram posts it, to web A."""
        response = requests.post(f"{web_a}/webhooks/telegram/{channel.id}", timeout=10,
                                 json=update(client_id, client_id, text),
                                 headers={"X-Telegram-Bot-Api-Secret-Token": channel.secret})
        assert response.status_code == 200, response.text

    s_ann, s_carl = streams(web_b, ann.token), streams(web_b, carl.token)
    assert s_ann.expect("ready")["user_id"] == ann.id
    assert s_carl.expect("ready")["user_id"] == carl.id

    started = time.monotonic()
    webhook(all_channel, 9101, "hello")
    visible = s_ann.expect("chat_visible", queue_id=all_queue["id"])
    visible_after = time.monotonic() - started

    started = time.monotonic()
    response = requests.post(f"{web_a}/api/chats/{visible['chat_id']}/accept", timeout=10,
                             headers={"Authorization": f"Bearer {bob.token}"})
    assert response.status_code == 200, response.text
    assert s_ann.expect("chat_taken", chat_id=visible["chat_id"])["operator_id"] == bob.id
    taken_after = time.monotonic() - started

    started = time.monotonic()
    webhook(lb_channel, 9102, "hello")
    offered = s_carl.expect("chat_offered", queue_id=lb_queue["id"])
    offered_after = time.monotonic() - started
    assert kinds(s_ann.rest(bus, ann.id)) == []  # the other queue's offer is carl's alone

    print(f"\nweb A -> web B through Redis: chat_visible {visible_after:.2f}s, chat_taken {taken_after:.2f}s,"
          f" chat_offered {offered_after:.2f}s")
    assert max(visible_after, taken_after, offered_after) < 2.5
    assert ok(setup.get(f"/api/chats/{offered['chat_id']}"))["offered_to_id"] == carl.id
