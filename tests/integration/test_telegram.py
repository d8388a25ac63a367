"""Telegram channels over HTTP against the fake Bot API: channel setup (getMe, setWebhook), the webhook
(secret, idempotency, odd updates), reply delivery with retries, and the Update parser."""
import json
import re

import pytest
from sqlalchemy import func, select

from app.channels.base import InboundEdit, InboundMessage, UnsupportedUpdate
from app.channels.telegram import parse_update
from app.extensions import db
from app.models.chat import Channel, Chat, Contact, Message
from app.services import services
from chat_helpers import at_work, count, error, pending_jobs, rows, set_at, settled
from conftest import ROOT, Api, wait_for
from fakes.telegram import update

LIFECYCLE = ROOT / "processes" / "ChatLifecycle.bpmn"
SITE = "https://chat.example.com"
TOKEN, OTHER_TOKEN = "123:good-token", "456:other-token"
SECRET_RE = re.compile(r"^[A-Za-z0-9_-]{1,256}$")
SECRET_HEADER = "X-Telegram-Bot-Api-Secret-Token"


@pytest.fixture
def api(make_app):
    """An app with the shipped lifecycle deployed: a queue needs its lifecycle process."""
    api = Api(make_app())
    assert api.deploy(ROOT / "processes" / "ChatLifecycle.bpmn").status_code == 201
    return api




def calls(telegram, method):
    return [(t, p) for t, m, p in telegram.calls if m == method]


def site(api, url=SITE):
    assert api.put("/api/settings/SiteUrl", {"value": url}).status_code == 200


def queue(api, name="Support", **fields):
    resp = api.post("/api/queues", {"name": name, "routing_rule": "all", **fields})
    assert resp.status_code == 201, resp.get_json()
    return resp.get_json()


def channel(api, queue_id, token=TOKEN, **fields):
    resp = api.post("/api/channels", {"provider": "telegram", "name": "Bot", "token": token, "queue_id": queue_id,
                                      **fields})
    assert resp.status_code == 201, resp.get_json()
    assert_no_secrets(resp)
    return resp.get_json()


def secret_of(api, channel_id):
    with api.app.app_context():
        return db.session.get(Channel, channel_id).webhook_secret






def assert_no_secrets(resp, *extra):
    text = resp.get_data(as_text=True)
    for secret in (TOKEN, OTHER_TOKEN, "good-token", "other-token", *extra):
        assert secret not in text, text
    body = resp.get_json()
    for item in body if isinstance(body, list) else [body]:
        if isinstance(item, dict):
            assert not {"token", "webhook_secret", "secret", "page_access_token"} & set(item), item


def post_update(api, channel_id, body, secret):
    headers = {SECRET_HEADER: secret} if secret is not None else {}
    if not isinstance(body, str):
        body = json.dumps(body)
    return api.client.post(f"/webhooks/telegram/{channel_id}", data=body, headers=headers,
                           content_type="application/json")


@pytest.fixture
def tg(api, telegram):
    """A deployed lifecycle, an `all` queue with one active operator, and a Telegram channel."""
    assert api.deploy(LIFECYCLE).status_code in (200, 201)
    site(api)
    q = queue(api)
    op = api.post("/api/users", {"login": "op"}).get_json()
    at_work(api.as_user(op["token"]))
    assert api.post(f"/api/queues/{q['id']}/operators", {"user_id": op["id"]}).status_code == 201
    ch = channel(api, q["id"])
    telegram.calls.clear()

    class Setup:
        pass
    s = Setup()
    s.api, s.queue, s.channel, s.op = api, q, ch, api.as_user(op["token"])
    s.secret, s.fake = secret_of(api, ch["id"]), telegram
    s.send = lambda body, secret=s.secret: post_update(api, ch["id"], body, secret)
    return s


def open_chat(s, update_id=1, user_id=555, text="hello"):
    """A client writes; the operator accepts the chat once its lifecycle runs."""
    resp = s.send(update(update_id, user_id, text))
    assert resp.status_code == 200, resp.get_json()
    chat = wait_for(lambda: next((c for c in s.op.get("/api/chats").get_json()), None),
                    message="the chat to be visible to the operator")
    resp = s.op.post(f"/api/chats/{chat['id']}/accept")
    assert resp.status_code == 200, resp.get_json()
    assert resp.get_json()["state"] == "in_work"
    return chat["id"]


def message_status(s, chat_id, text):
    msgs = [m for m in s.op.get(f"/api/chats/{chat_id}/messages").get_json() if m["text"] == text]
    assert len(msgs) == 1, msgs
    return msgs[0]


def wait_status(s, chat_id, text, statuses=("sent", "failed"), timeout=10):
    return wait_for(lambda: (m := message_status(s, chat_id, text))["status"] in statuses and m,
                    timeout=timeout, message=f"message {text!r} to be {'/'.join(statuses)}")


# -- channels -----------------------------------------------------------------------------
def test_channel_create_checks_the_token_and_sets_the_webhook(api, telegram):
    site(api, SITE + "/")
    q = queue(api)
    ch = channel(api, q["id"])
    assert ch["id"] and ch["provider"] == "telegram" and ch["active"] is True and ch["queue_id"] == q["id"]
    assert ch["bot_username"] == "chatflow_test_bot"
    assert [t for t, _ in calls(telegram, "getMe")] == [TOKEN]
    (token, hook), = calls(telegram, "setWebhook")
    assert token == TOKEN
    assert hook["url"] == f"{SITE}/webhooks/telegram/{ch['id']}"
    assert SECRET_RE.match(hook["secret_token"]), hook["secret_token"]
    assert hook["secret_token"] == secret_of(api, ch["id"])
    # each channel gets its own secret
    ch2 = channel(api, q["id"], OTHER_TOKEN, name="Other bot")
    assert calls(telegram, "setWebhook")[-1][1]["url"] == f"{SITE}/webhooks/telegram/{ch2['id']}"
    assert calls(telegram, "setWebhook")[-1][1]["secret_token"] != hook["secret_token"]


def test_channel_routes_never_return_secrets(api, telegram):
    site(api)
    q = queue(api)
    ch = channel(api, q["id"])
    secret = secret_of(api, ch["id"])
    for resp in (api.get("/api/channels"), api.get(f"/api/channels/{ch['id']}"),
                 api.patch(f"/api/channels/{ch['id']}", {"name": "Renamed"}),
                 api.patch(f"/api/channels/{ch['id']}", {"active": False}),
                 api.patch(f"/api/channels/{ch['id']}", {"active": True}),
                 api.patch(f"/api/channels/{ch['id']}", {"token": OTHER_TOKEN}),
                 api.get("/api/channels?limit=1")):
        assert resp.status_code == 200, resp.get_json()
        assert_no_secrets(resp, secret, secret_of(api, ch["id"]))
    assert api.get(f"/api/channels/{ch['id']}").get_json()["name"] == "Renamed"
    # refusals do not echo the token either
    resp = api.post("/api/channels", {"provider": "telegram", "name": "X", "token": "999:refused-token",
                                      "queue_id": q["id"]})
    assert resp.status_code == 422
    assert "refused-token" not in resp.get_data(as_text=True)


def test_refused_token_is_422_and_creates_nothing(api, telegram):
    site(api)
    q = queue(api)
    error(api.post("/api/channels", {"provider": "telegram", "name": "X", "token": "999:unknown",
                                     "queue_id": q["id"]}), 422, field="token")
    assert calls(telegram, "setWebhook") == []
    assert api.get("/api/channels").get_json() == []
    assert count(api, Channel) == 0


@pytest.mark.parametrize("body,field", [
    ({"provider": "telegram", "name": "X", "queue_id": None}, "queue_id"),
    ({"provider": "telegram", "name": "X"}, "queue_id"),
    ({"provider": "telegram", "name": "X", "token": "", "queue_id": 0}, "token"),
    ({"provider": "telegram", "name": "X", "token": 123, "queue_id": 0}, "token"),
    ({"provider": "telegram", "name": "X", "token": TOKEN, "queue_id": 0, "active": "yes"}, "active"),
    ({"provider": "whatsapp", "name": "X", "token": TOKEN, "queue_id": 0}, "provider"),
    ({"provider": "telegram", "token": TOKEN, "queue_id": 0}, "name"),
])
def test_channel_validation(api, telegram, body, field):
    site(api)
    q = queue(api)
    body = {**body, **({"queue_id": q["id"]} if body.get("queue_id") == 0 else {})}
    error(api.post("/api/channels", body), 422, field=field)
    assert api.get("/api/channels").get_json() == []


def test_channel_unknown_queue_is_refused(api, telegram):
    site(api)
    resp = api.post("/api/channels", {"provider": "telegram", "name": "X", "token": TOKEN, "queue_id": 999})
    assert resp.status_code in (404, 422)
    assert api.get("/api/channels").get_json() == []


def test_missing_site_url_is_422(api, telegram):
    q = queue(api)
    error(api.post("/api/channels", {"provider": "telegram", "name": "X", "token": TOKEN, "queue_id": q["id"]}),
          422, field="SiteUrl")
    assert calls(telegram, "setWebhook") == []
    assert api.get("/api/channels").get_json() == []
    # an inactive channel needs no webhook yet; activating it does
    ch = channel(api, q["id"], active=False)
    assert telegram.calls == [] and ch["active"] is False
    error(api.patch(f"/api/channels/{ch['id']}", {"active": True}), 422, field="SiteUrl")
    assert api.get(f"/api/channels/{ch['id']}").get_json()["active"] is False
    site(api)
    assert api.patch(f"/api/channels/{ch['id']}", {"active": True}).get_json()["active"] is True
    assert calls(telegram, "setWebhook")[-1][1]["url"] == f"{SITE}/webhooks/telegram/{ch['id']}"


def test_telegram_down_at_create_is_a_clear_conflict(api, telegram):
    site(api)
    q = queue(api)
    telegram.down = True
    resp = api.post("/api/channels", {"provider": "telegram", "name": "X", "token": TOKEN, "queue_id": q["id"]})
    assert resp.status_code == 409, resp.get_json()
    assert resp.get_json()["error"]["code"] == "provider_unavailable"
    assert api.get("/api/channels").get_json() == []
    telegram.down = False
    channel(api, q["id"])


def test_telegram_unreachable_is_a_clear_conflict(make_app, telegram):
    api = Api(make_app(TELEGRAM_API_BASE="http://127.0.0.1:9"))  # nothing listens there
    assert api.deploy(LIFECYCLE).status_code == 201
    site(api)
    q = queue(api)
    resp = api.post("/api/channels", {"provider": "telegram", "name": "X", "token": TOKEN, "queue_id": q["id"]})
    error(resp, 409, "provider_unavailable")
    assert TOKEN not in resp.get_data(as_text=True)


def test_set_webhook_down_is_a_conflict_not_a_refused_token(api, telegram, monkeypatch):
    from app.channels.base import ProviderError
    site(api)
    q = queue(api)
    client = services(api.app).channels["telegram"].client

    def down(*args, **kwargs):
        raise ProviderError("Telegram setWebhook: 502 Bad Gateway", retryable=True)
    monkeypatch.setattr(client, "set_webhook", down)
    error(api.post("/api/channels", {"provider": "telegram", "name": "X", "token": TOKEN, "queue_id": q["id"]}),
          409, "provider_unavailable")
    assert api.get("/api/channels").get_json() == []


def test_reactivating_sets_the_webhook_again(api, telegram):
    site(api)
    q = queue(api)
    ch = channel(api, q["id"])
    first = calls(telegram, "setWebhook")[-1][1]
    telegram.calls.clear()
    assert api.patch(f"/api/channels/{ch['id']}", {"active": False}).get_json()["active"] is False
    assert calls(telegram, "setWebhook") == []
    resp = api.patch(f"/api/channels/{ch['id']}", {"active": True})
    assert resp.status_code == 200 and resp.get_json()["active"] is True
    (token, hook), = calls(telegram, "setWebhook")
    assert token == TOKEN and hook["url"] == first["url"]
    assert SECRET_RE.match(hook["secret_token"]) and hook["secret_token"] == secret_of(api, ch["id"])
    # already active: nothing to do
    telegram.calls.clear()
    assert api.patch(f"/api/channels/{ch['id']}", {"active": True}).status_code == 200
    assert calls(telegram, "setWebhook") == []
    # a new token on an active channel is checked and its webhook set
    assert api.patch(f"/api/channels/{ch['id']}", {"token": OTHER_TOKEN}).status_code == 200
    assert [t for t, _ in calls(telegram, "setWebhook")] == [OTHER_TOKEN]
    error(api.patch(f"/api/channels/{ch['id']}", {"token": "999:refused"}), 422, field="token")


def test_reactivating_with_telegram_down_keeps_the_channel_inactive(api, telegram):
    site(api)
    q = queue(api)
    ch = channel(api, q["id"], active=False)
    telegram.down = True
    error(api.patch(f"/api/channels/{ch['id']}", {"active": True}), 409, "provider_unavailable")
    assert api.get(f"/api/channels/{ch['id']}").get_json()["active"] is False


def test_channel_with_chats_cannot_be_deleted_but_can_be_deactivated(tg):
    api = tg.api
    tg.send(update(1, 555, "hello"))
    assert count(api, Chat) == 1
    error(api.delete(f"/api/channels/{tg.channel['id']}"), 409, "channel_has_chats")
    assert api.get(f"/api/channels/{tg.channel['id']}").status_code == 200
    resp = api.patch(f"/api/channels/{tg.channel['id']}", {"active": False})
    assert resp.status_code == 200 and resp.get_json()["active"] is False
    # a channel without chats can go
    other = channel(api, tg.queue["id"], OTHER_TOKEN, name="Spare")
    assert api.delete(f"/api/channels/{other['id']}").status_code == 204
    error(api.get(f"/api/channels/{other['id']}"), 404)
    error(api.delete(f"/api/channels/{other['id']}"), 404)


def test_inactive_channel_stores_messages_in_an_unrouted_chat_until_an_admin_routes_it(tg):
    api = tg.api
    tg.fake.calls.clear()
    assert api.patch(f"/api/channels/{tg.channel['id']}", {"active": False}).status_code == 200
    assert [c[1] for c in tg.fake.calls] == ["deleteWebhook"]     # Telegram keeps the updates
    resp = tg.send(update(1, 555, "anyone there?"))
    assert resp.status_code == 200
    tg.send(update(2, 555, "hello?"))
    (chat,) = api.get("/api/chats").get_json()
    assert (chat["state"], chat["process_instance_id"]) == ("unrouted", None)
    assert [m["text"] for m in api.get(f"/api/chats/{chat['id']}/messages").get_json()] == ["anyone there?", "hello?"]
    assert tg.op.get("/api/chats").get_json() == []                    # operators do not see it
    error(api.post(f"/api/chats/{chat['id']}/route"), 409, "channel_inactive")
    error(tg.op.post(f"/api/chats/{chat['id']}/route"), 403)
    # the channel holds a chat: deleting it answers a conflict, never a 500
    error(api.delete(f"/api/channels/{tg.channel['id']}"), 409, "channel_has_chats")

    tg.fake.calls.clear()
    assert api.patch(f"/api/channels/{tg.channel['id']}", {"active": True}).status_code == 200
    assert "setWebhook" in [c[1] for c in tg.fake.calls]
    routed = api.post(f"/api/chats/{chat['id']}/route").get_json()
    assert routed["state"] == "queued"
    wait_for(lambda: [c["id"] for c in tg.op.get("/api/chats").get_json()] == [chat["id"]], timeout=10,
             message="the routed chat to reach the queue's operator")
    error(api.post(f"/api/chats/{chat['id']}/route"), 409, "chat_not_unrouted")


def test_a_chat_in_work_keeps_receiving_after_its_channel_is_deactivated(tg):
    api = tg.api
    tg.send(update(1, 555, "hello"))
    chat = wait_for(lambda: [c for c in tg.op.get("/api/chats").get_json()], timeout=10,
                    message="the chat to be visible")[0]
    assert tg.op.post(f"/api/chats/{chat['id']}/accept").status_code == 200
    assert api.patch(f"/api/channels/{tg.channel['id']}", {"active": False}).status_code == 200
    tg.send(update(2, 555, "are you still there?"))
    texts = [m["text"] for m in tg.op.get(f"/api/chats/{chat['id']}/messages").get_json()]
    assert texts == ["hello", "are you still there?"]
    assert api.get(f"/api/chats/{chat['id']}").get_json()["state"] == "in_work"


# -- webhook ------------------------------------------------------------------------------
@pytest.mark.parametrize("secret", [None, "", "wrong-secret", "x" * 300])
def test_wrong_or_missing_secret_is_refused_and_nothing_stored(tg, secret):
    resp = tg.send(update(1, 555, "hello"), secret=secret)
    error(resp, 403)
    assert count(tg.api, Message) == 0 and count(tg.api, Contact) == 0 and count(tg.api, Chat) == 0


def test_secret_of_another_channel_is_refused(tg):
    other = channel(tg.api, tg.queue["id"], OTHER_TOKEN, name="Other")
    other_secret = secret_of(tg.api, other["id"])
    error(tg.send(update(1, 555, "hello"), secret=other_secret), 403)
    error(post_update(tg.api, 9999, update(1, 555, "hello"), tg.secret), 403)
    assert count(tg.api, Message) == 0 and count(tg.api, Contact) == 0


def test_repeated_update_id_stores_one_message(tg):
    for _ in range(3):
        resp = tg.send(update(7, 555, "hello"))
        assert resp.status_code == 200
    assert count(tg.api, Message) == 1 and count(tg.api, Chat) == 1 and count(tg.api, Contact) == 1
    assert resp.get_json()["duplicate"] is True


def test_same_update_id_on_two_channels_is_two_messages(tg):
    other = channel(tg.api, tg.queue["id"], OTHER_TOKEN, name="Other")
    assert tg.send(update(7, 555, "hello")).status_code == 200
    assert post_update(tg.api, other["id"], update(7, 555, "hello"), secret_of(tg.api, other["id"])).status_code == 200
    assert count(tg.api, Message) == 2


def test_contact_is_created_from_the_sender(tg):
    assert tg.send(update(1, 777, "hi", first_name="Maria", last_name="Lopez")).status_code == 200
    (contact,) = rows(tg.api, select(Contact))
    assert contact.name == "Maria Lopez"
    chat = wait_for(lambda: tg.api.get("/api/chats").get_json(), message="the chat")[0]
    assert chat["contact"]["name"] == "Maria Lopez"
    resp = tg.api.get(f"/api/contacts/{contact.id}")
    if resp.status_code == 200:
        assert {"provider": "telegram", "external_id": "777"} in [
            {k: i[k] for k in ("provider", "external_id")} for i in resp.get_json()["identities"]]
    # only a first name, only a username
    body = update(2, 778, "hi")
    body["message"]["from"] = {"id": 778, "is_bot": False, "first_name": "Solo"}
    assert tg.send(body).status_code == 200
    body = update(3, 779, "hi")
    body["message"]["from"] = {"id": 779, "is_bot": False, "first_name": "", "username": "nick"}
    assert tg.send(body).status_code == 200
    names = sorted(c.name for c in rows(tg.api, select(Contact)))
    assert names == ["Maria Lopez", "Solo", "nick"]


def test_second_message_joins_the_open_chat(tg):
    assert tg.send(update(1, 555, "hello")).status_code == 200
    assert tg.send(update(2, 555, "are you there?")).status_code == 200
    assert tg.send(update(3, 556, "another client")).status_code == 200
    assert count(tg.api, Chat) == 2 and count(tg.api, Contact) == 2
    chats = rows(tg.api, select(Chat).order_by(Chat.id))
    texts = [m.text for m in rows(tg.api, select(Message).where(Message.chat_id == chats[0].id).order_by(Message.id))]
    assert texts == ["hello", "are you there?"]
    chat = wait_for(lambda: tg.op.get("/api/chats").get_json(), message="chats visible")[0]
    msgs = tg.op.get(f"/api/chats/{chat['id']}/messages").get_json()
    assert [(m["direction"], m["text"], m["status"]) for m in msgs] == [
        ("in", "hello", "received"), ("in", "are you there?", "received")]


def _sticker(uid):
    body = update(uid, 555, "x")
    del body["message"]["text"]
    body["message"]["sticker"] = {"file_id": "abc", "file_unique_id": "u", "width": 512, "height": 512,
                                  "is_animated": False, "is_video": False, "type": "regular"}
    return body


def _edited(uid):
    body = update(uid, 555, "edited")
    body["edited_message"] = body.pop("message")
    body["edited_message"]["edit_date"] = 1700000100
    return body


def _callback(uid):
    return {"update_id": uid, "callback_query": {"id": "42", "from": {"id": 555, "is_bot": False,
                                                                       "first_name": "Ann"},
                                                  "chat_instance": "1", "data": "yes"}}


def _group(uid, kind="group"):
    body = update(uid, 555, "hello group")
    body["message"]["chat"] = {"id": -100123, "type": kind, "title": "A group"}
    return body


def _with(uid, path, value):
    return set_at(update(uid, 555, "hello"), path, value)


ODD_UPDATES = {
    "sticker": _sticker(11),
    "edited_message": _edited(12),
    "callback_query": _callback(13),
    "group": _group(14),
    "supergroup": _group(15, "supergroup"),
    "channel_post": {"update_id": 16, "channel_post": {"message_id": 1, "chat": {"id": -1001, "type": "channel"},
                                                       "date": 1700000000, "text": "news"}},
    "photo_with_caption": _with(17, ("message", "text"), KeyError) | {},
    "empty_text": _with(18, ("message", "text"), ""),
    "text_not_string": _with(19, ("message", "text"), 12345),
    "text_list": _with(20, ("message", "text"), ["a", "b"]),
    "no_update_id": {"message": update(1, 555, "x")["message"]},
    "update_id_string": _with(21, ("update_id",), "21"),
    "update_id_float": _with(22, ("update_id",), 22.5),
    "update_id_bool": _with(23, ("update_id",), True),
    "update_id_null": _with(24, ("update_id",), None),
    "update_id_huge": _with(25, ("update_id",), 10**400),
    "message_not_object": {"update_id": 26, "message": "hello"},
    "message_null": {"update_id": 27, "message": None},
    "no_from": _with(28, ("message", "from"), KeyError),
    "from_not_object": _with(29, ("message", "from"), "Ann"),
    "from_id_string": _with(30, ("message", "from", "id"), "555"),
    "from_id_float": _with(31, ("message", "from", "id"), 555.5),
    "from_id_huge": _with(32, ("message", "from", "id"), 10**120),
    "no_chat": _with(33, ("message", "chat"), KeyError),
    "chat_id_null": _with(34, ("message", "chat", "id"), None),
    "chat_id_huge": _with(35, ("message", "chat", "id"), -10**150),
    "chat_type_list": _with(36, ("message", "chat", "type"), ["private"]),
    "first_name_number": _with(37, ("message", "from", "first_name"), 42),
    "names_objects": _with(38, ("message", "from"), {"id": 555, "is_bot": False, "first_name": {"a": 1},
                                                      "last_name": [1], "username": {"b": 2}}),
    "only_update_id": {"update_id": 39},
    "array": [update(40, 555, "x")],
    "string": "just a string",
    "number": 12,
    "null": None,
    "nul_in_text": _with(41, ("message", "text"), "a\x00b"),
    "nul_in_name": _with(42, ("message", "from", "first_name"), "An\x00n"),
    "lone_surrogate": "{\"update_id\": 43, \"message\": {\"message_id\": 1, \"from\": {\"id\": 555, "
                      "\"is_bot\": false, \"first_name\": \"\\ud800\"}, \"chat\": {\"id\": 555, \"type\": "
                      "\"private\"}, \"date\": 1, \"text\": \"bad \\udc00 text\"}}",
    "malformed_json": "{\"update_id\": 44, \"message\": {",
    "not_json": "update_id=45&text=hi",
    "empty_body": "",
    "deep_nesting": "[" * 5000 + "]" * 5000,
}


@pytest.mark.parametrize("name", list(ODD_UPDATES))
def test_odd_updates_never_500(tg, name):
    resp = tg.send(ODD_UPDATES[name])
    assert resp.status_code in (200, 400), (name, resp.status_code, resp.get_data(as_text=True))
    if resp.status_code == 400:
        assert resp.get_json()["error"]["code"]
    assert count(tg.api, Chat) <= 1
    # the webhook still works afterwards
    assert tg.send(update(1000, 999, "after")).status_code == 200
    assert count(tg.api, Message, Message.text == "after") == 1


@pytest.mark.parametrize("name", ["group", "supergroup", "channel_post"])
def test_unrouted_kinds_are_skipped_with_200(tg, name):
    resp = tg.send(ODD_UPDATES[name])
    assert resp.status_code == 200
    assert resp.get_json().get("skipped")
    assert count(tg.api, Chat) == 0


def test_huge_text_never_500(tg):
    for i, size in enumerate((4096, 4097, 100_000, 2_000_000)):
        resp = tg.send(update(100 + i, 555, "x" * size))
        assert resp.status_code in (200, 400, 413), (size, resp.status_code)
    assert count(tg.api, Chat) <= 1
    assert tg.send(update(200, 555, "normal")).status_code == 200


def test_long_names_are_cut_not_500(tg):
    body = update(1, 555, "hi", first_name="A" * 5000, last_name="B" * 5000)
    body["message"]["from"]["username"] = "u" * 5000
    assert tg.send(body).status_code == 200
    (contact,) = rows(tg.api, select(Contact))
    assert 0 < len(contact.name) <= 300


# -- replies ------------------------------------------------------------------------------
def test_reply_is_delivered_with_send_message(tg):
    chat_id = open_chat(tg, user_id=555)
    resp = tg.op.post(f"/api/chats/{chat_id}/messages", {"text": "Hello, how can I help?"})
    assert resp.status_code == 201
    assert resp.get_json()["status"] == "pending" and resp.get_json()["direction"] == "out"
    assert wait_status(tg, chat_id, "Hello, how can I help?")["status"] == "sent"
    sends = calls(tg.fake, "sendMessage")
    assert sends == [(TOKEN, {"chat_id": 555, "text": "Hello, how can I help?"})]


def test_telegram_500s_mark_the_message_failed_after_retries(tg):
    chat_id = open_chat(tg)
    tg.fake.fail_sends = 100
    tg.op.post(f"/api/chats/{chat_id}/messages", {"text": "lost reply"})
    msg = wait_status(tg, chat_id, "lost reply", ("failed",))
    assert msg["error"] and "500" in msg["error"]
    assert TOKEN not in json.dumps(msg)
    retries = len(tg.api.app.config["OUTBOUND_RETRY_DELAYS"])
    assert len([p for p in tg.fake.sent() if p["text"] == "lost reply"]) == retries + 1
    (row,) = rows(tg.api, select(Message).where(Message.text == "lost reply"))
    assert row.attempts == retries + 1 and row.sent_at is None
    # no more attempts after failing: every job due has run and no delivery is scheduled
    wait_for(lambda: "app.jobs.deliver_message" not in pending_jobs(tg.api.app), message="scheduled deliveries to run")
    settled(tg.api.app)
    assert len([p for p in tg.fake.sent() if p["text"] == "lost reply"]) == retries + 1
    # the chat is unharmed and a later reply goes out once Telegram is back
    assert tg.op.get(f"/api/chats/{chat_id}").get_json()["state"] == "in_work"
    tg.fake.fail_sends = 0
    assert tg.op.post(f"/api/chats/{chat_id}/messages", {"text": "back again"}).status_code == 201
    assert wait_status(tg, chat_id, "back again")["status"] == "sent"
    assert len([p for p in tg.fake.sent() if p["text"] == "back again"]) == 1
    assert message_status(tg, chat_id, "lost reply")["status"] == "failed"


def test_telegram_down_marks_the_message_failed_and_the_chat_stays(tg):
    chat_id = open_chat(tg)
    tg.fake.down = True
    tg.op.post(f"/api/chats/{chat_id}/messages", {"text": "into the void"})
    msg = wait_status(tg, chat_id, "into the void", ("failed",))
    assert msg["error"]
    retries = len(tg.api.app.config["OUTBOUND_RETRY_DELAYS"])
    assert len([p for p in tg.fake.sent() if p["text"] == "into the void"]) == retries + 1
    chat = tg.op.get(f"/api/chats/{chat_id}").get_json()
    assert chat["state"] == "in_work" and chat["completed_at"] is None
    # clients can still write while it is down; their messages join the chat
    assert tg.send(update(2, 555, "hello?")).status_code == 200
    tg.fake.down = False
    tg.op.post(f"/api/chats/{chat_id}/messages", {"text": "sorry, we are back"})
    assert wait_status(tg, chat_id, "sorry, we are back")["status"] == "sent"
    texts = [m["text"] for m in tg.op.get(f"/api/chats/{chat_id}/messages").get_json()]
    assert texts == ["hello", "into the void", "hello?", "sorry, we are back"]


def test_one_500_then_recovery_sends_exactly_once(tg):
    chat_id = open_chat(tg)
    tg.fake.fail_sends = 1
    tg.op.post(f"/api/chats/{chat_id}/messages", {"text": "second try"})
    msg = wait_status(tg, chat_id, "second try")
    assert msg["status"] == "sent" and "error" not in msg
    wait_for(lambda: "app.jobs.deliver_message" not in pending_jobs(tg.api.app), message="scheduled deliveries to run")
    settled(tg.api.app)
    attempts = [p for p in tg.fake.sent() if p["text"] == "second try"]
    assert len(attempts) == 2  # one refused with 500, one delivered
    (row,) = rows(tg.api, select(Message).where(Message.text == "second try"))
    assert row.attempts == 2 and row.sent_at is not None


def test_refused_send_is_not_retried(tg):
    """A 4xx from Telegram (here: the bot's token revoked) will not pass on retry: failed at once."""
    chat_id = open_chat(tg)
    tg.fake.tokens.discard(TOKEN)
    try:
        tg.op.post(f"/api/chats/{chat_id}/messages", {"text": "nobody hears"})
        msg = wait_status(tg, chat_id, "nobody hears", ("failed",))
        assert "401" in msg["error"]
        assert len([p for p in tg.fake.sent() if p["text"] == "nobody hears"]) == 1
    finally:
        tg.fake.tokens.add(TOKEN)
    assert tg.op.get(f"/api/chats/{chat_id}").get_json()["state"] == "in_work"


def test_several_replies_are_each_sent_once(tg):
    chat_id = open_chat(tg)
    texts = [f"reply {i}" for i in range(5)]
    for text in texts:
        assert tg.op.post(f"/api/chats/{chat_id}/messages", {"text": text}).status_code == 201
    for text in texts:
        wait_status(tg, chat_id, text, ("sent",))
    assert sorted(p["text"] for p in tg.fake.sent()) == sorted(texts)


# -- the parser ---------------------------------------------------------------------------
def test_parse_update_text_message():
    got = parse_update(update(10000, 1111111, "/start", first_name="Test Firstname", last_name="Test Lastname"))
    assert got == InboundMessage(external_id="10000", user_id="1111111", address="1111111",
                                 name="Test Firstname Test Lastname", text="/start", provider_message_id="100000")


def test_parse_update_guide_sample():
    sample = {"update_id": 10000, "message": {
        "message_id": 1365,
        "from": {"id": 1111111, "is_bot": False, "first_name": "Test Firstname", "last_name": "Test Lastname",
                 "username": "Testusername"},
        "chat": {"id": 1111111, "type": "private", "first_name": "Test Firstname", "last_name": "Test Lastname",
                 "username": "Testusername"},
        "date": 1441645532, "text": "/start"}}
    got = parse_update(sample)
    assert (got.user_id, got.address, got.text, got.name) == ("1111111", "1111111", "/start",
                                                              "Test Firstname Test Lastname")
    del sample["message"]["from"]["is_bot"]  # the guide's own sample omits it
    assert parse_update(sample).text == "/start"


def test_parse_update_names():
    body = update(1, 5, "hi")
    body["message"]["from"] = {"id": 5, "is_bot": False, "first_name": "Ann"}
    assert parse_update(body).name == "Ann"
    body["message"]["from"] = {"id": 5, "is_bot": False, "first_name": "", "username": "ann_c"}
    assert parse_update(body).name == "ann_c"
    body["message"]["from"] = {"id": 5, "is_bot": False}
    assert parse_update(body).name == "5"
    body["message"]["from"] = {"id": 5, "is_bot": False, "first_name": "N" * 1000}
    assert len(parse_update(body).name) <= 300


@pytest.mark.parametrize("name", ["group", "supergroup", "channel_post", "only_update_id"])
def test_parse_update_unsupported(name):
    with pytest.raises(UnsupportedUpdate):
        parse_update(ODD_UPDATES[name])


@pytest.mark.parametrize("name, kind", [("sticker", "sticker"), ("callback_query", "button"),
                                        ("photo_with_caption", "system"), ("empty_text", "system"),
                                        ("text_not_string", "system")])
def test_parse_update_keeps_what_is_not_text(name, kind):
    """Nothing a client sends is dropped: what cannot be shown becomes a `system` message."""
    got = parse_update(ODD_UPDATES[name])
    assert isinstance(got, InboundMessage) and got.kind == kind, got


def test_parse_update_edit():
    got = parse_update(ODD_UPDATES["edited_message"])
    assert got == InboundEdit(user_id="555", provider_message_id="120", text="edited")


@pytest.mark.parametrize("name", ["no_update_id", "update_id_string", "update_id_float", "update_id_bool",
                                  "update_id_null", "message_not_object", "no_from", "from_not_object",
                                  "from_id_string", "from_id_float", "no_chat", "chat_id_null", "array",
                                  "string", "number", "null", "update_id_huge", "from_id_huge", "chat_id_huge"])
def test_parse_update_malformed(name):
    with pytest.raises(ValueError):
        parse_update(ODD_UPDATES[name])
    assert not issubclass(UnsupportedUpdate, ValueError)


def test_parse_update_message_not_object_is_not_a_crash():
    with pytest.raises((ValueError, UnsupportedUpdate)):
        parse_update({"update_id": 1, "message": None})


def test_parse_update_cleans_text_the_database_cannot_store():
    got = parse_update(_with(1, ("message", "text"), "a\x00b"))
    assert "\x00" not in got.text and got.text.startswith("a")
    got = parse_update(json.loads(ODD_UPDATES["lone_surrogate"]))
    got.text.encode("utf-8")
    got.name.encode("utf-8")


def test_simultaneous_first_messages_of_one_contact_make_one_chat(api, telegram):
    """Two webhook deliveries at the same moment (one a repeat) never answer 500 nor split the chat."""
    import threading
    site(api)
    q = queue(api)
    ch = channel(api, q["id"])
    secret = secret_of(api, ch["id"])
    barrier, answers = threading.Barrier(3), []

    def post(update_id):
        client = api.app.test_client()
        barrier.wait()
        answers.append(client.post(f"/webhooks/telegram/{ch['id']}", json=update(update_id, 777, f"hi {update_id}"),
                                   headers={SECRET_HEADER: secret}).status_code)

    threads = [threading.Thread(target=post, args=(n,)) for n in (901, 902, 902)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert sorted(answers) == [200, 200, 200]
    with api.app.app_context():
        assert db.session.scalar(select(func.count()).select_from(Chat)) == 1
        texts = sorted(db.session.scalars(select(Message.text)))
    assert texts == ["hi 901", "hi 902"]
