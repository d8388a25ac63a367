"""Facebook Messenger channels over HTTP against the fake Graph API: the subscription
check, signed webhooks in Facebook's real format (batches, echoes, receipts, odd bodies,
idempotency on `mid`), replies through the Send API with retries, the external bot
(Handover Protocol: standby, pass_thread_control, take_thread_control) and channel setup
from a user access token or the single-page form."""
import hashlib
import hmac
import json

import pytest
from sqlalchemy import select

from app.models.chat import Channel, Chat, Contact, Message
from chat_helpers import (at_work, count, error, get_chat, history, instance, ok, pending_jobs, rows, set_at,
                          settled, wait_chat)
from app.services import services
from conftest import ROOT, Api, wait_for
from fakes.facebook import batch, message_event, pass_thread_control, sign, take_thread_control

LIFECYCLE = ROOT / "processes" / "ChatLifecycle.bpmn"
APP_SECRET = "fb-app-secret-0123456789"
VERIFY_TOKEN = "meatyhamhock"
USER_TOKEN = "user-token"
PAGE_TOKENS = {"111": "page-token-111", "222": "page-token-222"}
PSID, OTHER_PSID = "1254459154682919", "1254459154682920"
SECRET_FIELDS = {"token", "webhook_secret", "secret", "page_access_token", "access_token", "user_access_token"}


# -- helpers ------------------------------------------------------------------------------
def nothing_stored(api):
    return (count(api, Message), count(api, Contact), count(api, Chat)) == (0, 0, 0)


def assert_no_secrets(resp):
    text = resp.get_data(as_text=True)
    for secret in (*PAGE_TOKENS.values(), USER_TOKEN, APP_SECRET):
        assert secret not in text, text
    body = resp.get_json()
    for item in body if isinstance(body, list) else [body]:
        if isinstance(item, dict):
            assert not SECRET_FIELDS & set(item), item


def setting(api, code, value):
    ok(api.put(f"/api/settings/{code}", {"value": value}))


def queue(api, rule="least_busy", name=None):
    return ok(api.post("/api/queues", {"name": name or f"FB {rule}", "routing_rule": rule}), 201)


def operator(api, login, *queue_ids):
    user = ok(api.post("/api/users", {"login": login, "name": login.title()}), 201)
    at_work(api.as_user(user["token"]))
    for queue_id in queue_ids:
        ok(api.post(f"/api/queues/{queue_id}/operators", {"user_id": user["id"]}), 201)
    return user["id"], api.as_user(user["token"])


def page_channel(api, queue_id, page_id="111", name=None, **fields):
    resp = api.post("/api/channels", {"provider": "facebook", "name": name or f"Page {page_id}",
                                      "page_id": page_id, "page_access_token": PAGE_TOKENS.get(page_id, "t"),
                                      "queue_id": queue_id, **fields})
    body = ok(resp, 201)
    assert_no_secrets(resp)
    return body


def post_raw(api, raw: bytes, signature=..., headers=None):
    """POST exactly these bytes; `signature` defaults to a valid X-Hub-Signature-256 over them."""
    headers = dict(headers or {})
    if signature is ...:
        signature = sign(raw, APP_SECRET)
    if signature is not None:
        headers["X-Hub-Signature-256"] = signature
    return api.client.post("/webhooks/facebook", data=raw, content_type="application/json", headers=headers)


def post_signed(api, body, **kw):
    raw = body if isinstance(body, bytes) else json.dumps(body).encode()
    return post_raw(api, raw, **kw)


def msg(page_id, mid, text="hello, world!", psid=PSID):
    return batch((page_id, [message_event(psid, page_id, mid, text)], None))


def standby(page_id, mid, text="hi bot", psid=PSID):
    return batch((page_id, None, [message_event(psid, page_id, mid, text)]))


def handover(page_id, event):
    return batch((page_id, [event], None))


def chat_of(api, psid=PSID, page_id="111"):
    """The admin's view of the contact's single chat on that page's channel."""
    (channel,) = [c for c in ok(api.get("/api/channels")) if c.get("page_id") == page_id]
    chats = [c for c in ok(api.get("/api/chats?limit=1000")) if c["channel_id"] == channel["id"]
             and c["contact"]["name"].endswith(psid)]
    assert len(chats) == 1, chats
    return chats[0]


def routed(api, chat_id):
    """Wait until the lifecycle has routed the chat (offered or queued with a process instance)."""
    return wait_chat(api, chat_id, lambda c: c["process_instance_id"] and c["state"] in ("offered", "queued")
                     and any(e["event"] in ("offered", "queued", "waiting_for_operator")
                             for e in history(api, chat_id)), "the chat to be routed")


def messages(api, chat_id):
    return ok(api.get(f"/api/chats/{chat_id}/messages"))


def wait_status(api, chat_id, text, statuses=("sent", "failed"), timeout=10):
    def check():
        found = [m for m in messages(api, chat_id) if m["text"] == text]
        assert len(found) == 1, found
        return found[0] if found[0]["status"] in statuses else None
    return wait_for(check, timeout=timeout, message=f"{text!r} to be {'/'.join(statuses)}")


@pytest.fixture
def api(make_app):
    """An app with the shipped lifecycle deployed: a queue needs its lifecycle process."""
    api = Api(make_app())
    assert api.deploy(ROOT / "processes" / "ChatLifecycle.bpmn").status_code == 201
    return api


class Setup:
    pass


def _setup(api, graph, rule):
    assert api.deploy(LIFECYCLE).status_code in (200, 201)
    setting(api, "FacebookAppSecret", APP_SECRET)
    setting(api, "FacebookVerifyToken", VERIFY_TOKEN)
    s = Setup()
    s.api, s.graph, s.queue = api, graph, queue(api, rule)
    s.op_id, s.op = operator(api, "op", s.queue["id"])
    s.channel = page_channel(api, s.queue["id"], "111", name="Acme Support")
    graph.calls.clear()
    return s


@pytest.fixture
def fb(api, graph):
    """Lifecycle deployed, app secret and verify token set, a least_busy queue with one active
    operator, and a channel for page 111."""
    return _setup(api, graph, "least_busy")


def open_chat(s, mid="mid.1457764197618:41d102a3e1ae206a38", psid=PSID, text="hello, world!"):
    """A client writes to page 111; the lifecycle offers the chat and the operator accepts it."""
    ok(post_signed(s.api, msg("111", mid, text, psid)))
    chat = routed(s.api, chat_of(s.api, psid)["id"])
    assert chat["state"] == "offered" and chat["offered_to_id"] == s.op_id
    accepted = ok(s.op.post(f"/api/chats/{chat['id']}/accept"))
    assert accepted["state"] == "in_work" and accepted["operator_id"] == s.op_id
    return chat["id"]


# -- subscription check -------------------------------------------------------------------
def test_verification_answers_the_challenge(fb):
    resp = fb.api.client.get("/webhooks/facebook?hub.mode=subscribe&hub.challenge=1158201444"
                             f"&hub.verify_token={VERIFY_TOKEN}")
    assert resp.status_code == 200
    assert resp.get_data(as_text=True) == "1158201444"


@pytest.mark.parametrize("query", [
    f"hub.mode=subscribe&hub.challenge=1158201444&hub.verify_token=wrong-{VERIFY_TOKEN}",
    "hub.mode=subscribe&hub.challenge=1158201444&hub.verify_token=",
    "hub.mode=subscribe&hub.challenge=1158201444",
    f"hub.mode=unsubscribe&hub.challenge=1158201444&hub.verify_token={VERIFY_TOKEN}",
    f"hub.challenge=1158201444&hub.verify_token={VERIFY_TOKEN}",
    "",
])
def test_verification_refused(fb, query):
    resp = fb.api.client.get(f"/webhooks/facebook?{query}")
    assert resp.status_code == 403
    assert "1158201444" not in resp.get_data(as_text=True)


def test_verification_refused_without_a_verify_token_setting(api, graph):
    for query in ("hub.mode=subscribe&hub.challenge=1158201444&hub.verify_token=",
                  "hub.mode=subscribe&hub.challenge=1158201444&hub.verify_token=None",
                  "hub.mode=subscribe&hub.challenge=1158201444"):
        assert api.client.get(f"/webhooks/facebook?{query}").status_code == 403, query


# -- a message, routed and answered -------------------------------------------------------
def test_signed_message_is_routed_and_the_reply_goes_to_the_graph_api(fb):
    resp = post_signed(fb.api, msg("111", "mid.1457764197618:41d102a3e1ae206a38", "hello, world!"))
    assert ok(resp)["ok"] is True
    chat = routed(fb.api, chat_of(fb.api)["id"])
    assert chat["channel_id"] == fb.channel["id"] and chat["queue_id"] == fb.queue["id"]
    assert chat["state"] == "offered" and chat["offered_to_id"] == fb.op_id and chat["operator_id"] is None
    proc = instance(fb.api, chat["process_instance_id"])
    assert proc["process"] == "ChatLifecycle" and proc["data"]["ChatId"] == chat["id"]
    assert [c["id"] for c in ok(fb.op.get("/api/chats"))] == [chat["id"]]
    (contact,) = rows(fb.api, select(Contact))
    assert PSID in contact.name
    # the operator accepts and answers
    assert ok(fb.op.post(f"/api/chats/{chat['id']}/accept"))["state"] == "in_work"
    resp = fb.op.post(f"/api/chats/{chat['id']}/messages", {"text": "Hello, how can I help?"})
    reply = ok(resp, 201)
    assert reply["status"] == "pending"
    assert wait_status(fb.op, chat["id"], "Hello, how can I help?")["status"] == "sent"
    sends = [(m, p, t, b) for m, p, t, b in fb.graph.calls if p.endswith("/messages")]
    # the metadata marks the echo Messenger sends back as ours
    assert sends == [("POST", "/v25.0/me/messages", "page-token-111",
                      {"recipient": {"id": PSID}, "messaging_type": "RESPONSE",
                       "message": {"text": "Hello, how can I help?", "metadata": f"chatflow:{reply['id']}"}})]
    assert [(m["direction"], m["text"], m["status"]) for m in messages(fb.op, chat["id"])] == [
        ("in", "hello, world!", "received"), ("out", "Hello, how can I help?", "sent")]
    # the client writes again: the message joins the open chat
    ok(post_signed(fb.api, msg("111", "mid.1457764197618:second", "thanks")))
    assert count(fb.api, Chat) == 1
    assert [m["text"] for m in messages(fb.op, chat["id"])][-1] == "thanks"


def test_all_queue_message_is_queued_for_every_operator(api, graph):
    s = _setup(api, graph, "all")
    ok(post_signed(api, msg("111", "mid.all.1")))
    chat = routed(api, chat_of(api)["id"])
    assert chat["state"] == "queued" and chat["offered_to_id"] is None
    assert [c["id"] for c in ok(s.op.get("/api/chats"))] == [chat["id"]]
    assert ok(s.op.post(f"/api/chats/{chat['id']}/accept"))["state"] == "in_work"


def test_graph_500s_mark_the_reply_failed_after_retries(fb):
    chat_id = open_chat(fb)
    fb.graph.fail_sends = 100
    ok(fb.op.post(f"/api/chats/{chat_id}/messages", {"text": "lost reply"}), 201)
    failed = wait_status(fb.op, chat_id, "lost reply", ("failed",))
    assert failed["error"] and "page-token" not in json.dumps(failed)
    retries = len(fb.api.app.config["OUTBOUND_RETRY_DELAYS"])
    assert len([b for _, b in fb.graph.sent() if b["message"]["text"] == "lost reply"]) == retries + 1
    wait_for(lambda: "app.jobs.deliver_message" not in pending_jobs(fb.api.app), message="scheduled deliveries to run")
    settled(fb.api.app)
    assert len([b for _, b in fb.graph.sent() if b["message"]["text"] == "lost reply"]) == retries + 1
    chat = get_chat(fb.op, chat_id)
    assert chat["state"] == "in_work" and chat["completed_at"] is None
    fb.graph.fail_sends = 0
    ok(fb.op.post(f"/api/chats/{chat_id}/messages", {"text": "back again"}), 201)
    assert wait_status(fb.op, chat_id, "back again")["status"] == "sent"


def test_graph_down_marks_the_reply_failed_and_the_chat_stays(fb):
    chat_id = open_chat(fb)
    fb.graph.down = True
    ok(fb.op.post(f"/api/chats/{chat_id}/messages", {"text": "into the void"}), 201)
    assert wait_status(fb.op, chat_id, "into the void", ("failed",))["error"]
    retries = len(fb.api.app.config["OUTBOUND_RETRY_DELAYS"])
    assert len([b for _, b in fb.graph.sent() if b["message"]["text"] == "into the void"]) == retries + 1
    assert get_chat(fb.op, chat_id)["state"] == "in_work"
    # clients can still write meanwhile
    ok(post_signed(fb.api, msg("111", "mid.while-down", "hello?")))
    fb.graph.down = False
    ok(fb.op.post(f"/api/chats/{chat_id}/messages", {"text": "we are back"}), 201)
    assert wait_status(fb.op, chat_id, "we are back")["status"] == "sent"
    assert [m["text"] for m in messages(fb.op, chat_id)] == ["hello, world!", "into the void", "hello?",
                                                              "we are back"]


def test_an_expired_page_token_fails_the_reply_and_marks_the_channel_needs_reconnect(fb):
    chat_id = open_chat(fb)
    admin_id = next(u["id"] for u in ok(fb.api.get("/api/users")) if u["login"] == "admin")
    events = services(fb.api.app).events.subscribe(admin_id)
    fb.graph.expire("page-token-111")
    ok(fb.op.post(f"/api/chats/{chat_id}/messages", {"text": "are you there?"}), 201)
    failed = wait_status(fb.op, chat_id, "are you there?", ("failed",))
    assert "reconnect" in failed["error"] and "Session has expired" in failed["error"]
    assert "page-token" not in json.dumps(failed)
    # one attempt: no retry can help a refused token
    assert len([b for _, b in fb.graph.sent() if b["message"]["text"] == "are you there?"]) == 1
    channel = ok(fb.api.get(f"/api/channels/{fb.channel['id']}"))
    assert (channel["status"], channel["active"]) == ("needs_reconnect", True)
    assert "190" in channel["status_reason"] and "Session has expired" in channel["status_reason"]
    told = wait_for(lambda: next((e for e in iter(lambda: events.get(0.2), None) if e["type"] == "channel_status"),
                                 None), message="the admins' channel_status event")
    assert (told["channel_id"], told["status"]) == (fb.channel["id"], "needs_reconnect")
    events.close()
    # clients still reach the chat meanwhile; a second reply fails the same way, once
    ok(post_signed(fb.api, msg("111", "mid.after-expiry", "hello?")))
    ok(fb.op.post(f"/api/chats/{chat_id}/messages", {"text": "second try"}), 201)
    assert "reconnect" in wait_status(fb.op, chat_id, "second try", ("failed",))["error"]
    assert len([b for _, b in fb.graph.sent() if b["message"]["text"] == "second try"]) == 1


def test_an_expired_page_token_met_while_naming_a_new_client_marks_the_channel(fb):
    fb.graph.expire("page-token-111")
    ok(post_signed(fb.api, msg("111", "mid.new-client", "hi", psid=OTHER_PSID)))
    channel = wait_for(lambda: (c := ok(fb.api.get(f"/api/channels/{fb.channel['id']}")))["status"]
                       == "needs_reconnect" and c, message="the channel to need a reconnect")
    assert "Session has expired" in channel["status_reason"]
    assert chat_of(fb.api, OTHER_PSID)["contact"]["name"] == f"Facebook user {OTHER_PSID}"


def test_one_graph_500_then_recovery_sends_once(fb):
    chat_id = open_chat(fb)
    fb.graph.fail_sends = 1
    ok(fb.op.post(f"/api/chats/{chat_id}/messages", {"text": "second try"}), 201)
    assert wait_status(fb.op, chat_id, "second try")["status"] == "sent"
    wait_for(lambda: "app.jobs.deliver_message" not in pending_jobs(fb.api.app), message="scheduled deliveries to run")
    settled(fb.api.app)
    assert len([b for _, b in fb.graph.sent() if b["message"]["text"] == "second try"]) == 2


# -- signatures ---------------------------------------------------------------------------
RAW = json.dumps(msg("111", "mid.signed.1", "hello, world!")).encode()


@pytest.mark.parametrize("signature", [
    None, "", "sha256=", "sha256=" + "0" * 64, "sha256=deadbeef", sign(RAW, "another-secret"),
    sign(RAW, APP_SECRET)[len("sha256="):],            # no algorithm prefix
    "sha1=" + sign(RAW, APP_SECRET)[len("sha256="):],  # right digest, wrong algorithm
    sign(RAW, APP_SECRET) + "00", "sha256=" + "é" * 64,
])
def test_wrong_or_missing_signature_is_refused_and_nothing_stored(fb, signature):
    error(post_raw(fb.api, RAW, signature=signature), 403)
    assert nothing_stored(fb.api)


def test_signature_over_other_bytes_is_refused(fb):
    signature = sign(RAW, APP_SECRET)
    tampered = RAW.replace(b"hello, world!", b"hello, WORLD!")
    assert len(tampered) == len(RAW) and tampered != RAW
    error(post_raw(fb.api, tampered, signature=signature), 403)
    # the same JSON, spaced differently, is different bytes
    respaced = json.dumps(json.loads(RAW), indent=1).encode()
    error(post_raw(fb.api, respaced, signature=signature), 403)
    error(post_raw(fb.api, RAW + b" ", signature=signature), 403)
    assert nothing_stored(fb.api)
    # the exact signed bytes pass
    ok(post_raw(fb.api, RAW, signature=signature))
    assert count(fb.api, Message) == 1


def test_signature_is_checked_on_the_raw_bytes_not_the_reparsed_json(fb):
    raw = b'{"object": "page",  "entry": [{"id": "111", "time": 1458692752478, "messaging": [' \
          b'{"sender": {"id": "' + PSID.encode() + b'"}, "recipient": {"id": "111"}, "timestamp": 1,' \
          b' "message": {"mid": "mid.odd-spacing", "text": "caf\\u00e9 \xe2\x98\x95"}}]}]}'
    ok(post_raw(fb.api, raw))
    (message,) = rows(fb.api, select(Message))
    assert message.text == "café ☕"


def test_legacy_sha1_signature_is_accepted(fb):
    legacy = "sha1=" + hmac.new(APP_SECRET.encode(), RAW, hashlib.sha1).hexdigest()
    ok(post_raw(fb.api, RAW, signature=None, headers={"X-Hub-Signature": legacy}))
    assert count(fb.api, Message) == 1
    # a wrong sha1 is refused
    bad = "sha1=" + hmac.new(b"other", RAW, hashlib.sha1).hexdigest()
    other = json.dumps(msg("111", "mid.signed.2")).encode()
    error(post_raw(fb.api, other, signature=None, headers={"X-Hub-Signature": bad}), 403)
    assert count(fb.api, Message) == 1
    # with both headers, a wrong sha256 is not rescued by a right sha1
    right_sha1 = "sha1=" + hmac.new(APP_SECRET.encode(), other, hashlib.sha1).hexdigest()
    error(post_raw(fb.api, other, signature=sign(other, "wrong"), headers={"X-Hub-Signature": right_sha1}), 403)
    assert count(fb.api, Message) == 1


def test_uppercase_hex_signature_is_accepted(fb):
    prefix, digest = sign(RAW, APP_SECRET).split("=")
    ok(post_raw(fb.api, RAW, signature=f"{prefix}={digest.upper()}"))
    assert count(fb.api, Message) == 1


def test_no_app_secret_set_refuses_everything(api, graph):
    q = queue(api)
    page_channel(api, q["id"])
    error(post_raw(api, RAW), 403)
    error(post_raw(api, RAW, signature=sign(RAW, "")), 403)
    assert nothing_stored(api)


# -- batches, skipped events, odd bodies --------------------------------------------------
def test_one_post_with_two_pages_reaches_two_channels(api, graph):
    fb = _setup(api, graph, "all")
    other = page_channel(fb.api, fb.queue["id"], "222", name="Acme Sales")
    body = batch(("111", [message_event(PSID, "111", "mid.p111.a", "to support")], None),
                 ("222", [message_event(PSID, "222", "mid.p222.a", "to sales"),
                          message_event(OTHER_PSID, "222", "mid.p222.b", "also sales")], None))
    resp = ok(post_signed(fb.api, body))
    assert resp["events"] == 3 and resp["stored"] == 3
    chats = rows(fb.api, select(Chat).order_by(Chat.id))
    assert sorted((c.channel_id, c.address) for c in chats) == sorted([
        (fb.channel["id"], PSID), (other["id"], PSID), (other["id"], OTHER_PSID)])
    by_text = {m.text: m for m in rows(fb.api, select(Message))}
    assert by_text["to support"].channel_id == fb.channel["id"]
    assert by_text["to sales"].channel_id == other["id"] and by_text["also sales"].channel_id == other["id"]
    # one contact per page identity: the same PSID on two pages is two identities
    assert count(fb.api, Contact) == 3
    # a reply on page 222's chat goes out with page 222's token
    chat_222 = routed(fb.api, chat_of(fb.api, PSID, "222")["id"])
    routed(fb.api, chat_of(fb.api, PSID, "111")["id"])
    assert chat_222["channel_id"] == other["id"]
    assert ok(fb.op.post(f"/api/chats/{chat_222['id']}/accept"))["state"] == "in_work"
    ok(fb.op.post(f"/api/chats/{chat_222['id']}/messages", {"text": "sales here"}), 201)
    assert wait_status(fb.op, chat_222["id"], "sales here")["status"] == "sent"
    assert [(t, b["recipient"]["id"]) for t, b in fb.graph.sent()] == [("page-token-222", PSID)]


def _echo():
    event = message_event("111", PSID, "mid.echo.1", "our own reply")
    event["message"].update({"is_echo": True, "app_id": 1517776481860111, "metadata": "x"})
    return event


def _delivery():
    return {"sender": {"id": PSID}, "recipient": {"id": "111"}, "timestamp": 1458668856463,
            "delivery": {"mids": ["mid.1458668856218:ed81099e15d3f4f233"], "watermark": 1458668856253}}


def _read():
    return {"sender": {"id": PSID}, "recipient": {"id": "111"}, "timestamp": 1458668856463,
            "read": {"watermark": 1458668856253}}


def test_our_echoes_and_receipts_without_messages_store_nothing(fb):
    ours = _echo()
    ours["message"]["metadata"] = "chatflow:7"   # what our Send API calls carry
    resp = ok(post_signed(fb.api, batch(("111", [ours, _delivery(), _read()], None))))
    assert resp["stored"] == 0 and resp["skipped"] == 1
    assert nothing_stored(fb.api)
    # mixed with a real message: only the message is stored
    body = batch(("111", [_delivery(), message_event(PSID, "111", "mid.real", "real one"), ours, _read()],
                  None))
    resp = ok(post_signed(fb.api, body))
    assert resp["stored"] == 1
    assert [m.text for m in rows(fb.api, select(Message))] == ["real one"]
    # an echo in standby is skipped too
    ok(post_signed(fb.api, batch(("111", None, [ours]))))
    assert count(fb.api, Message) == 1


def test_unknown_page_is_skipped_without_error(fb):
    resp = ok(post_signed(fb.api, msg("999999", "mid.unknown.1")))
    assert resp["stored"] == 0
    assert nothing_stored(fb.api)
    body = batch(("999999", [message_event(PSID, "999999", "mid.unknown.2", "lost")], None),
                 ("111", [message_event(PSID, "111", "mid.known.1", "found")], None))
    assert ok(post_signed(fb.api, body))["stored"] == 1
    assert [m.text for m in rows(fb.api, select(Message))] == ["found"]
    # handover events for an unknown page are skipped too
    ok(post_signed(fb.api, handover("999999", pass_thread_control(PSID, "999999"))))
    ok(post_signed(fb.api, handover("999999", take_thread_control(PSID, "999999"))))


def test_page_id_as_a_number_is_routed(fb):
    body = msg("111", "mid.numeric-page")
    body["entry"][0]["id"] = 111
    assert ok(post_signed(fb.api, body))["stored"] == 1


def test_inactive_channel_stores_messages_in_an_unrouted_chat(fb):
    ok(fb.api.patch(f"/api/channels/{fb.channel['id']}", {"active": False}))
    ok(post_signed(fb.api, msg("111", "mid.inactive")))
    assert count(fb.api, Message) == 1
    (chat,) = rows(fb.api, select(Chat))
    assert (chat.state, chat.process_instance_id) == ("unrouted", None)


def _entry_with(**fields):
    return {"object": "page", "entry": [{"id": "111", "time": 1, **fields}]}


def _event_with(path, value):
    return batch(("111", [set_at(message_event(PSID, "111", "mid.odd", "odd"), path, value)], None))


ODD_BODIES = {
    "not_json": b"object=page&entry=1",
    "malformed_json": b'{"object": "page", "entry": [',
    "empty": b"",
    "null": b"null",
    "number": b"12",
    "string": b'"page"',
    "array": json.dumps([msg("111", "mid.a")]).encode(),
    "object_user": json.dumps({**msg("111", "mid.b"), "object": "user"}).encode(),
    "no_object": json.dumps({"entry": msg("111", "mid.c")["entry"]}).encode(),
    "entry_missing": b'{"object": "page"}',
    "entry_object": json.dumps({"object": "page", "entry": {"id": "111"}}).encode(),
    "entry_null": b'{"object": "page", "entry": null}',
    "entry_items_strings": b'{"object": "page", "entry": ["111", 5, null, true]}',
    "entry_without_id": json.dumps({"object": "page", "entry": [{"messaging": []}]}).encode(),
    "entry_id_bool": json.dumps(_entry_with(messaging=[]) | {"entry": [{"id": True, "messaging": []}]}).encode(),
    "entry_id_object": json.dumps({"object": "page", "entry": [{"id": {"a": 1}, "messaging": []}]}).encode(),
    "entry_id_huge": json.dumps({"object": "page", "entry": [{"id": 10**400, "messaging": []}]}).encode(),
    "messaging_object": json.dumps(_entry_with(messaging={"sender": {"id": PSID}})).encode(),
    "messaging_string": json.dumps(_entry_with(messaging="hello")).encode(),
    "standby_number": json.dumps(_entry_with(standby=7)).encode(),
    "messaging_items_odd": json.dumps(_entry_with(messaging=[None, 1, "x", [], {}])).encode(),
    "no_sender": json.dumps(_event_with(("sender",), KeyError)).encode(),
    "sender_string": json.dumps(_event_with(("sender",), PSID)).encode(),
    "sender_id_null": json.dumps(_event_with(("sender", "id"), None)).encode(),
    "sender_id_letters": json.dumps(_event_with(("sender", "id"), "abc")).encode(),
    "sender_id_bool": json.dumps(_event_with(("sender", "id"), True)).encode(),
    "sender_id_float": json.dumps(_event_with(("sender", "id"), 12.5)).encode(),
    "sender_id_huge": json.dumps(_event_with(("sender", "id"), "9" * 500)).encode(),
    "sender_id_superscript": json.dumps(_event_with(("sender", "id"), "\u00b2\u00b3")).encode(),
    "sender_id_arabic_digits": json.dumps(_event_with(("sender", "id"), "\u0661\u0662")).encode(),
    "message_string": json.dumps(_event_with(("message",), "hi")).encode(),
    "message_null": json.dumps(_event_with(("message",), None)).encode(),
    "no_mid": json.dumps(_event_with(("message", "mid"), KeyError)).encode(),
    "mid_number": json.dumps(_event_with(("message", "mid"), 12345)).encode(),
    "mid_huge": json.dumps(_event_with(("message", "mid"), "m" * 5000)).encode(),
    "text_number": json.dumps(_event_with(("message", "text"), 42)).encode(),
    "text_list": json.dumps(_event_with(("message", "text"), ["a"])).encode(),
    "text_empty": json.dumps(_event_with(("message", "text"), "   ")).encode(),
    "pass_not_object": json.dumps(batch(("111", [{**pass_thread_control(PSID, "111"),
                                                  "pass_thread_control": "yes"}], None))).encode(),
    "take_without_sender": json.dumps(batch(("111", [{k: v for k, v in take_thread_control(PSID, "111").items()
                                                      if k != "sender"}], None))).encode(),
    "nul_in_text": json.dumps(_event_with(("message", "text"), "a\x00b")).encode(),
    "lone_surrogate": json.dumps(msg("111", "mid.surrogate", "x")).replace('"x"', '"bad \\udc00"').encode(),
    "invalid_utf8": json.dumps(msg("111", "mid.badutf", "x")).encode().replace(b'"x"', b'"\xff\xfe"'),
    "deep_nesting": b"[" * 5000 + b"]" * 5000,
    "huge_text": json.dumps(msg("111", "mid.huge", "x" * 300_000)).encode(),
}


@pytest.mark.parametrize("name", list(ODD_BODIES))
def test_odd_bodies_never_500(fb, name):
    resp = post_raw(fb.api, ODD_BODIES[name])
    assert resp.status_code in (200, 400, 413), (name, resp.status_code, resp.get_data(as_text=True)[:300])
    if resp.status_code != 200:
        assert resp.get_json()["error"]["code"]
    assert count(fb.api, Chat) <= 1
    # the webhook still works afterwards
    ok(post_signed(fb.api, msg("111", "mid.after", "after", OTHER_PSID)))
    assert count(fb.api, Message, Message.text == "after") == 1
    for m in rows(fb.api, select(Message)):
        assert "\x00" not in m.text
        m.text.encode("utf-8")


@pytest.mark.parametrize("name", ["messaging_items_odd", "no_sender", "sender_id_letters", "sender_id_superscript",
                                  "sender_id_arabic_digits", "message_null", "no_mid", "entry_without_id"])
def test_unroutable_events_are_skipped_with_200(fb, name):
    resp = ok(post_raw(fb.api, ODD_BODIES[name]))
    assert resp["stored"] == 0 and resp["skipped"] >= 1
    assert nothing_stored(fb.api)


# -- idempotency --------------------------------------------------------------------------
def test_repeated_mid_stores_one_message(fb):
    body = batch(("111", [message_event(PSID, "111", "mid.dup", "hello"),
                          message_event(PSID, "111", "mid.dup", "hello")], None))
    ok(post_signed(fb.api, body))
    assert count(fb.api, Message) == 1
    raw = json.dumps(msg("111", "mid.dup2", "again")).encode()
    first, second = ok(post_raw(fb.api, raw)), ok(post_raw(fb.api, raw))
    assert first["stored"] == 1 and second["stored"] == 0
    assert count(fb.api, Message) == 2 and count(fb.api, Chat) == 1 and count(fb.api, Contact) == 1
    # the same mid arriving in standby later is still one message
    ok(post_signed(fb.api, standby("111", "mid.dup2", "again")))
    assert count(fb.api, Message) == 2


def test_simultaneous_identical_posts_store_one_message(fb):
    import threading
    raw = json.dumps(msg("111", "mid.race", "at once")).encode()
    barrier, answers = threading.Barrier(3), []

    def post():
        client = fb.api.app.test_client()
        barrier.wait()
        answers.append(client.post("/webhooks/facebook", data=raw, content_type="application/json",
                                   headers={"X-Hub-Signature-256": sign(raw, APP_SECRET)}).status_code)

    threads = [threading.Thread(target=post) for _ in range(3)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert answers == [200, 200, 200]
    assert count(fb.api, Message) == 1 and count(fb.api, Chat) == 1 and count(fb.api, Contact) == 1


# -- the external bot (Handover Protocol) -------------------------------------------------
def bot_chat(s, mids=("mid.bot.1", "mid.bot.2"), psid=PSID):
    for i, mid in enumerate(mids):
        ok(post_signed(s.api, standby("111", mid, f"bot talk {i}", psid)))
    chat = chat_of(s.api, psid)
    assert chat["state"] == "bot"
    return chat


def test_standby_messages_make_a_bot_chat_with_no_operator(fb):
    chat = bot_chat(fb)
    assert chat["operator_id"] is None and chat["offered_to_id"] is None
    assert chat["process_instance_id"] is None
    assert count(fb.api, Chat) == 1
    assert [(m["direction"], m["text"]) for m in messages(fb.api, chat["id"])] == [
        ("in", "bot talk 0"), ("in", "bot talk 1")]
    settled(fb.api.app)  # no lifecycle starts behind our back
    chat = get_chat(fb.api, chat["id"])
    assert chat["state"] == "bot" and chat["process_instance_id"] is None
    assert ok(fb.api.get("/api/process-instances?process=ChatLifecycle")) == []
    # invisible to operators, who cannot take it
    assert ok(fb.op.get("/api/chats")) == []
    assert ok(fb.op.get("/api/me"))["chats_offered"] == 0
    error(fb.op.post(f"/api/chats/{chat['id']}/accept"), 409)
    assert get_chat(fb.api, chat["id"])["state"] == "bot"
    assert fb.graph.sent() == []


def test_pass_thread_control_routes_the_chat(fb):
    chat = bot_chat(fb)
    resp = ok(post_signed(fb.api, handover("111", pass_thread_control(PSID, "111"))))
    assert resp["stored"] == 1
    chat = routed(fb.api, chat["id"])
    assert chat["state"] == "offered" and chat["offered_to_id"] == fb.op_id
    assert instance(fb.api, chat["process_instance_id"])["process"] == "ChatLifecycle"
    assert [c["id"] for c in ok(fb.op.get("/api/chats"))] == [chat["id"]]
    assert any(e["event"] == "passed_by_bot" for e in history(fb.api, chat["id"]))
    # the operator sees the bot-time messages and can take over
    assert ok(fb.op.post(f"/api/chats/{chat['id']}/accept"))["state"] == "in_work"
    assert [m["text"] for m in messages(fb.op, chat["id"])] == ["bot talk 0", "bot talk 1"]
    # messages now arrive in `messaging` and join the same chat
    ok(post_signed(fb.api, msg("111", "mid.after-pass", "human please")))
    assert count(fb.api, Chat) == 1
    assert [m["text"] for m in messages(fb.op, chat["id"])][-1] == "human please"
    # a repeated pass is harmless
    ok(post_signed(fb.api, handover("111", pass_thread_control(PSID, "111"))))
    assert get_chat(fb.api, chat["id"])["state"] == "in_work"


def test_pass_thread_control_in_an_all_queue_makes_it_queued(api, graph):
    s = _setup(api, graph, "all")
    chat = bot_chat(s)
    ok(post_signed(api, handover("111", pass_thread_control(PSID, "111"))))
    chat = routed(api, chat["id"])
    assert chat["state"] == "queued"
    assert [c["id"] for c in ok(s.op.get("/api/chats"))] == [chat["id"]]
    # the bot takes it back: it disappears from the operator's list
    ok(post_signed(api, handover("111", take_thread_control(PSID, "111"))))
    chat = get_chat(api, chat["id"])
    assert chat["state"] == "bot" and chat["process_instance_id"] is None
    assert ok(s.op.get("/api/chats")) == []
    error(s.op.post(f"/api/chats/{chat['id']}/accept"), 409)


def test_take_thread_control_withdraws_an_offer(fb):
    chat = bot_chat(fb)
    ok(post_signed(fb.api, handover("111", pass_thread_control(PSID, "111"))))
    chat = routed(fb.api, chat["id"])
    assert chat["state"] == "offered"
    instance_id = chat["process_instance_id"]
    assert ok(fb.op.get("/api/me"))["chats_offered"] == 1
    resp = ok(post_signed(fb.api, handover("111", take_thread_control(PSID, "111"))))
    assert resp["stored"] == 1
    chat = get_chat(fb.api, chat["id"])
    assert chat["state"] == "bot" and chat["offered_to_id"] is None and chat["operator_id"] is None
    assert chat["process_instance_id"] is None
    assert ok(fb.op.get("/api/me"))["chats_offered"] == 0
    assert ok(fb.op.get("/api/chats")) == []
    error(fb.op.post(f"/api/chats/{chat['id']}/accept"), 409)
    assert instance(fb.api, instance_id)["state"] == "cancelled"
    (withdrawn,) = [e for e in history(fb.api, chat["id"]) if e["event"] == "withdrawn_by_bot"]
    assert withdrawn["details"]["offered_to"] == fb.op_id
    # the bot keeps talking in standby: same chat, still `bot`
    ok(post_signed(fb.api, standby("111", "mid.bot.3", "bot again")))
    assert count(fb.api, Chat) == 1 and get_chat(fb.api, chat["id"])["state"] == "bot"
    settled(fb.api.app)
    assert get_chat(fb.api, chat["id"])["state"] == "bot"
    # a second pass routes it again with a fresh lifecycle instance
    ok(post_signed(fb.api, handover("111", pass_thread_control(PSID, "111"))))
    chat = routed(fb.api, chat["id"])
    assert chat["state"] == "offered" and chat["process_instance_id"] not in (None, instance_id)
    assert ok(fb.op.get("/api/me"))["chats_offered"] == 1
    assert ok(fb.op.post(f"/api/chats/{chat['id']}/accept"))["state"] == "in_work"


def test_take_thread_control_leaves_a_chat_in_work_with_its_operator(fb):
    chat = bot_chat(fb)
    ok(post_signed(fb.api, handover("111", pass_thread_control(PSID, "111"))))
    chat = routed(fb.api, chat["id"])
    ok(fb.op.post(f"/api/chats/{chat['id']}/accept"))
    ok(post_signed(fb.api, handover("111", take_thread_control(PSID, "111"))))
    after = get_chat(fb.api, chat["id"])
    assert after["state"] == "in_work" and after["operator_id"] == fb.op_id
    assert after["process_instance_id"] == chat["process_instance_id"]
    assert instance(fb.api, chat["process_instance_id"])["state"] not in ("cancelled", "completed", "error")
    (event,) = [e for e in history(fb.api, chat["id"]) if e["event"] == "bot_took_thread"]
    assert event["details"]["kept_by_operator"] == fb.op_id
    assert ok(fb.op.get("/api/me"))["chats_in_work"] == 1
    # the operator still answers through the page and completes it
    ok(fb.op.post(f"/api/chats/{chat['id']}/messages", {"text": "still here"}), 201)
    assert wait_status(fb.op, chat["id"], "still here")["status"] == "sent"
    ok(fb.op.post(f"/api/chats/{chat['id']}/complete"))
    assert get_chat(fb.api, chat["id"])["state"] == "completed"


def test_handover_events_without_a_chat_are_harmless(fb):
    for event in (pass_thread_control(PSID, "111"), take_thread_control(PSID, "111")):
        resp = ok(post_signed(fb.api, handover("111", event)))
        assert resp["stored"] == 0
    assert nothing_stored(fb.api)
    # take on a chat that is already `bot` changes nothing
    chat = bot_chat(fb)
    ok(post_signed(fb.api, handover("111", take_thread_control(PSID, "111"))))
    assert get_chat(fb.api, chat["id"])["state"] == "bot"


def test_a_direct_message_on_a_bot_chat_hands_it_to_the_queue(fb):
    chat = bot_chat(fb)
    ok(post_signed(fb.api, msg("111", "mid.direct", "to chatflow")))
    chat = routed(fb.api, chat["id"])
    assert chat["state"] == "offered" and count(fb.api, Chat) == 1


def test_pass_then_take_in_one_post_leaves_the_chat_with_the_bot(fb):
    """The bot passes and at once takes the thread back, before the lifecycle job ran."""
    chat = bot_chat(fb)
    body = batch(("111", [pass_thread_control(PSID, "111"), take_thread_control(PSID, "111")], None))
    ok(post_signed(fb.api, body))
    settled(fb.api.app)  # the lifecycle job the pass enqueued has run
    chat = get_chat(fb.api, chat["id"])
    assert chat["state"] == "bot", chat
    assert chat["process_instance_id"] is None and chat["offered_to_id"] is None
    assert ok(fb.op.get("/api/me"))["chats_offered"] == 0
    assert ok(fb.op.get("/api/chats")) == []


# -- channels -----------------------------------------------------------------------------
def test_pages_of_a_user_are_listed(api, graph):
    resp = api.post("/api/channels/facebook/pages", {"user_access_token": USER_TOKEN})
    assert ok(resp) == [{"id": "111", "name": "Acme Support", "channel_id": None},
                        {"id": "222", "name": "Acme Sales", "channel_id": None}]
    assert_no_secrets(resp)
    assert [(m, p, t) for m, p, t, _ in graph.calls] == [("GET", "/v25.0/me/accounts", USER_TOKEN)]
    assert count(api, Channel) == 0


def test_selected_pages_become_channels_named_after_them(api, graph):
    assert api.deploy(LIFECYCLE).status_code in (200, 201)
    setting(api, "FacebookAppSecret", APP_SECRET)
    q = queue(api, "all")
    op_id, op = operator(api, "op", q["id"])
    resp = api.post("/api/channels/facebook/pages", {"user_access_token": USER_TOKEN, "page_ids": ["111", "222"],
                                                     "queue_id": q["id"]})
    created = ok(resp, 201)
    assert_no_secrets(resp)
    assert [(c["provider"], c["name"], c["page_id"], c["queue_id"], c["active"]) for c in created] == [
        ("facebook", "Acme Support", "111", q["id"], True), ("facebook", "Acme Sales", "222", q["id"], True)]
    tokens = {c.page_id: c.page_access_token for c in rows(api, select(Channel))}
    assert tokens == PAGE_TOKENS
    listed = api.post("/api/channels/facebook/pages", {"user_access_token": USER_TOKEN})
    assert ok(listed) == [{"id": "111", "name": "Acme Support", "channel_id": created[0]["id"]},
                          {"id": "222", "name": "Acme Sales", "channel_id": created[1]["id"]}]
    # selecting a page again refreshes it, never a second channel
    again = ok(api.post("/api/channels/facebook/pages", {"user_access_token": USER_TOKEN, "page_ids": ["222"],
                                                         "queue_id": q["id"]}), 201)
    assert [c["id"] for c in again] == [created[1]["id"]]
    assert count(api, Channel) == 2
    # duplicates in one selection make one channel
    assert len(ok(api.post("/api/channels/facebook/pages", {"user_access_token": USER_TOKEN,
                                                            "page_ids": ["111", "111"], "queue_id": q["id"]}),
                  201)) == 1
    assert count(api, Channel) == 2
    # a reply on page 222 uses that page's token
    ok(post_signed(api, msg("222", "mid.sales.1", "quote please")))
    chat = routed(api, chat_of(api, PSID, "222")["id"])
    ok(op.post(f"/api/chats/{chat['id']}/accept"))
    graph.calls.clear()
    reply = ok(op.post(f"/api/chats/{chat['id']}/messages", {"text": "here is your quote"}), 201)
    assert wait_status(op, chat["id"], "here is your quote")["status"] == "sent"
    assert graph.sent() == [("page-token-222", {"recipient": {"id": PSID}, "messaging_type": "RESPONSE",
                                                 "message": {"text": "here is your quote",
                                                             "metadata": f"chatflow:{reply['id']}"}})]


def test_bad_user_token_is_422(api, graph):
    q = queue(api)
    error(api.post("/api/channels/facebook/pages", {"user_access_token": "bad-token"}), 422,
          field="user_access_token")
    error(api.post("/api/channels/facebook/pages", {"user_access_token": "bad-token", "page_ids": ["111"],
                                                    "queue_id": q["id"]}), 422, field="user_access_token")
    assert count(api, Channel) == 0


@pytest.mark.parametrize("body", [{}, {"user_access_token": ""}, {"user_access_token": 12},
                                  {"user_access_token": USER_TOKEN, "page_ids": "111", "queue_id": 0},
                                  {"user_access_token": USER_TOKEN, "page_ids": [111], "queue_id": 0},
                                  {"user_access_token": USER_TOKEN, "page_ids": ["111"]}])
def test_pages_request_validation(api, graph, body):
    q = queue(api)
    body = {**body, **({"queue_id": q["id"]} if body.get("queue_id") == 0 else {})}
    resp = api.post("/api/channels/facebook/pages", body)
    assert resp.status_code in (400, 422), (resp.status_code, resp.get_data(as_text=True))
    assert count(api, Channel) == 0


def test_graph_down_is_409_provider_unavailable(api, graph):
    q = queue(api)
    graph.down = True
    error(api.post("/api/channels/facebook/pages", {"user_access_token": USER_TOKEN}), 409, "provider_unavailable")
    error(api.post("/api/channels/facebook/pages", {"user_access_token": USER_TOKEN, "page_ids": ["111"],
                                                    "queue_id": q["id"]}), 409, "provider_unavailable")
    assert count(api, Channel) == 0


def test_graph_unreachable_is_409(make_app, graph):
    api = Api(make_app(FACEBOOK_GRAPH_BASE="http://127.0.0.1:9"))  # nothing listens there
    resp = api.post("/api/channels/facebook/pages", {"user_access_token": USER_TOKEN})
    error(resp, 409, "provider_unavailable")
    assert USER_TOKEN not in resp.get_data(as_text=True)


def test_page_not_among_the_users_is_422(api, graph):
    q = queue(api)
    error(api.post("/api/channels/facebook/pages", {"user_access_token": USER_TOKEN, "page_ids": ["111", "333"],
                                                    "queue_id": q["id"]}), 422, field="page_ids")
    assert count(api, Channel) == 0


def test_unknown_queue_for_pages_is_refused(api, graph):
    resp = api.post("/api/channels/facebook/pages", {"user_access_token": USER_TOKEN, "page_ids": ["111"],
                                                     "queue_id": 999})
    assert resp.status_code in (404, 422)
    assert count(api, Channel) == 0


def test_single_page_form_and_page_taken(api, graph):
    q = queue(api)
    ch = page_channel(api, q["id"], "111", name="Support page")
    assert (ch["provider"], ch["name"], ch["page_id"], ch["active"]) == ("facebook", "Support page", "111", True)
    (row,) = rows(api, select(Channel))
    assert row.page_access_token == "page-token-111"
    # the page is subscribed to the app's webhook, with every field Chatflow handles
    assert [(m, p, t) for m, p, t, _ in graph.calls] == [("POST", "/v25.0/111/subscribed_apps", "page-token-111")]
    assert graph.subscribed() == {"111": ["messages", "messaging_postbacks", "message_echoes", "message_deliveries",
                                          "message_reads", "message_edits", "messaging_handovers", "standby"]}
    resp = api.post("/api/channels", {"provider": "facebook", "name": "Again", "page_id": "111",
                                      "page_access_token": "page-token-111", "queue_id": q["id"]})
    error(resp, 409, "page_taken")
    assert_no_secrets(resp)
    assert count(api, Channel) == 1
    # nor by renaming another channel's page id onto it
    other = page_channel(api, q["id"], "222")
    error(api.patch(f"/api/channels/{other['id']}", {"page_id": "111"}), 409, "page_taken")
    # the page listing knows which channel serves a page
    assert [p["channel_id"] for p in ok(api.post("/api/channels/facebook/pages",
                                                 {"user_access_token": USER_TOKEN}))] == [ch["id"], other["id"]]


@pytest.mark.parametrize("fields,field", [
    ({"page_access_token": "t"}, "page_id"),
    ({"page_id": "111"}, "page_access_token"),
    ({"page_id": "", "page_access_token": "t"}, "page_id"),
    ({"page_id": "111", "page_access_token": ""}, "page_access_token"),
    ({"page_id": "abc", "page_access_token": "t"}, "page_id"),
    ({"page_id": 111, "page_access_token": "t"}, "page_id"),
    ({"page_id": "\u0661\u0661\u0661", "page_access_token": "t"}, "page_id"),  # Arabic-Indic digits
    ({"page_id": "\u00b2\u00b3", "page_access_token": "t"}, "page_id"),  # superscripts
])
def test_single_page_form_validation(api, graph, fields, field):
    q = queue(api)
    error(api.post("/api/channels", {"provider": "facebook", "name": "X", "queue_id": q["id"], **fields}), 422,
          field=field)
    assert count(api, Channel) == 0


def test_channel_routes_never_return_tokens(api, graph):
    q = queue(api)
    created = ok(api.post("/api/channels/facebook/pages", {"user_access_token": USER_TOKEN,
                                                           "page_ids": ["111", "222"], "queue_id": q["id"]}), 201)
    ch = created[0]
    for resp in (api.get("/api/channels"), api.get(f"/api/channels/{ch['id']}"),
                 api.patch(f"/api/channels/{ch['id']}", {"name": "Renamed"}),
                 api.patch(f"/api/channels/{ch['id']}", {"page_access_token": "page-token-111"}),
                 api.patch(f"/api/channels/{ch['id']}", {"active": False}),
                 api.patch(f"/api/channels/{ch['id']}", {"active": True}),
                 api.post("/api/channels/facebook/pages", {"user_access_token": USER_TOKEN}),
                 api.get("/api/channels?limit=1")):
        assert resp.status_code == 200, resp.get_json()
        assert_no_secrets(resp)
    assert ok(api.get(f"/api/channels/{ch['id']}"))["name"] == "Renamed"
    # refusals do not echo tokens either
    resp = api.post("/api/channels/facebook/pages", {"user_access_token": "secret-user-token-xyz"})
    assert resp.status_code == 422 and "secret-user-token-xyz" not in resp.get_data(as_text=True)
    # the app secret setting is masked
    setting(api, "FacebookAppSecret", APP_SECRET)
    assert APP_SECRET not in api.get("/api/settings/FacebookAppSecret").get_data(as_text=True)
    assert APP_SECRET not in api.get("/api/settings").get_data(as_text=True)
