"""Website chat over HTTP: the `web` channel's setup, the visitor protocol (sessions, messages,
isolation, tokens kept apart from console tokens), CORS by allowed_origins, rate limits, body
limits, and a conversation that runs the same lifecycle as any channel's."""
import io

import pytest
from sqlalchemy import select

from app.api.rate_limits import verdict
from app.extensions import db
from app.models.chat import ContactIdentity, VisitorSession
from chat_helpers import error, make_operator, make_queue, ok, wait_chat
from conftest import ROOT, Api, wait_for

SHOP = "https://shop.example.com"


@pytest.fixture
def api(make_app):
    api = Api(make_app(VISITOR_SESSIONS_PER_IP=3, VISITOR_MESSAGES_PER_VISITOR=4))
    assert api.deploy(ROOT / "processes" / "ChatLifecycle.bpmn").status_code == 201
    return api


def web_channel(api, queue_id=None, **fields):
    queue_id = queue_id or make_queue(api, rule="all", name=f"web queue {fields.get('name', '')}")["id"]
    return ok(api.post("/api/channels", {"provider": "web", "name": "Shop chat", "queue_id": queue_id,
                                         "allowed_origins": [SHOP], "title": "Shop help",
                                         "welcome_text": "Hello!", **fields}), 201)


class Visitor:
    def __init__(self, api, key, origin=SHOP, ip="10.0.0.1"):
        self.client, self.key, self.origin, self.ip, self.token = api.app.test_client(), key, origin, ip, None

    def call(self, method, path, token=..., **kw):
        headers = {"Origin": self.origin, **kw.pop("headers", {})}
        token = self.token if token is ... else token
        if token:
            headers["Authorization"] = f"Visitor {token}"
        return self.client.open(f"/widget/api/{self.key}{path}", method=method, headers=headers,
                                environ_base={"REMOTE_ADDR": self.ip}, **kw)

    def start(self, **details):
        self.token = ok(self.call("POST", "/sessions", json=details), 201)["token"]
        return self

    def writes(self, text="hello"):
        return ok(self.call("POST", "/messages", json={"text": text}), 201)

    def conversation(self):
        return ok(self.call("GET", "/messages"))


def test_a_web_channel_gives_a_widget_key_and_snippet(api):
    channel = web_channel(api)
    assert channel["provider"] == "web" and len(channel["widget_key"]) >= 16
    assert channel["snippet"] == f'<script src="http://localhost/widget/{channel["widget_key"]}.js" async></script>'
    assert channel["allowed_origins"] == [SHOP] and channel["title"] == "Shop help"
    assert "token" not in channel and "bot_username" not in channel
    script = api.client.get(f"/widget/{channel['widget_key']}.js")
    assert script.status_code == 200 and script.mimetype == "text/javascript"
    assert b"attachShadow" in script.data and b'"Shop help"' in script.data
    assert api.client.get("/widget/nope.js").status_code == 404
    changed = ok(api.patch(f"/api/channels/{channel['id']}", {"welcome_text": "Hi there", "ask_contact": True}))
    assert changed["welcome_text"] == "Hi there" and changed["ask_contact"] and changed["title"] == "Shop help"


def test_channel_validation(api):
    queue_id = make_queue(api, rule="all")["id"]
    error(api.post("/api/channels", {"provider": "web", "name": "W", "queue_id": queue_id,
                                     "allowed_origins": ["https://shop.example.com/page"]}), 422,
          "invalid_value", "allowed_origins")
    error(api.post("/api/channels", {"provider": "web", "name": "W", "queue_id": queue_id,
                                     "allowed_origins": ["javascript:alert(1)"]}), 422, "invalid_value")
    error(api.post("/api/channels", {"provider": "telegram", "name": "T", "queue_id": queue_id, "token": "123:good-token",
                                     "welcome_text": "hi"}), 422, "invalid_value", "welcome_text")


def test_a_visitor_talks_with_an_operator_through_the_lifecycle(api):
    channel = web_channel(api)
    operator = make_operator(api, "ann", channel["queue_id"])
    visitor = Visitor(api, channel["widget_key"]).start(name="Vera", email="vera@example.com")
    assert visitor.conversation() == {"chat_id": None, "state": None, "operator_name": None, "messages": []}
    first = visitor.writes("Where is my order?")
    assert first["direction"] == "in" and first["text"] == "Where is my order?"
    chat_id = wait_for(lambda: visitor.conversation()["chat_id"], message="the chat")
    wait_for(lambda: chat_id in operator.chat_ids(), message="the operator to see the chat")
    chat = ok(operator.accept(chat_id))
    assert chat["contact"]["name"] == "Vera <vera@example.com>" if "contact" in chat else True
    ok(operator.reply(chat_id, "On its way"), 201)
    talk = wait_for(lambda: (lambda c: c if len(c["messages"]) == 2 else None)(visitor.conversation()),
                    message="the reply in the visitor's conversation")
    assert [m["direction"] for m in talk["messages"]] == ["in", "out"] and talk["operator_name"] == "Ann"
    wait_chat(api, chat_id, lambda c: all(m["status"] == "sent" for m in
                                          ok(api.get(f"/api/chats/{chat_id}/messages"))
                                          if m["direction"] == "out"), "the reply delivered")
    ok(operator.complete(chat_id))
    assert visitor.conversation()["state"] == "completed"
    visitor.writes("One more thing")
    again = wait_for(lambda: (lambda c: c if c["chat_id"] != chat_id else None)(visitor.conversation()),
                     message="a new chat after completion")
    assert [m["text"] for m in again["messages"]] == ["One more thing"]


def test_a_visitor_sends_a_file_only_they_and_operators_can_read(api):
    channel = web_channel(api)
    visitor = Visitor(api, channel["widget_key"]).start()
    sent = ok(visitor.call("POST", "/messages", data={"file": (io.BytesIO(b"%PDF-1 receipt"), "receipt.pdf"),
                                                      "text": "my receipt"}, content_type="multipart/form-data"), 201)
    assert sent["kind"] == "document" and sent["attachments"][0]["name"] == "receipt.pdf"
    file_id = sent["attachments"][0]["id"]
    got = visitor.call("GET", f"/files/{file_id}")
    assert got.status_code == 200 and got.data == b"%PDF-1 receipt"
    assert api.get(f"/api/files/{file_id}").data == b"%PDF-1 receipt"
    stranger = Visitor(api, channel["widget_key"], ip="10.0.0.2").start()
    error(stranger.call("GET", f"/files/{file_id}"), 404, "not_found")


def test_visitors_are_isolated_and_tokens_never_cross(api):
    channel, other = web_channel(api), web_channel(api, name="Other")
    alice = Visitor(api, channel["widget_key"]).start()
    alice.writes("alice's secret")
    bob = Visitor(api, channel["widget_key"], ip="10.0.0.2").start()
    assert bob.conversation()["messages"] == []
    # Alice's token names no session on another widget.
    error(Visitor(api, other["widget_key"]).call("GET", "/messages", token=alice.token), 401, "unauthorized")
    # A console token opens nothing on visitor routes, a visitor token nothing under /api.
    error(alice.call("GET", "/messages", token=None, headers={"Authorization": f"Bearer {api.token}"}), 401)
    error(api.get("/api/chats", token=None, headers={"Authorization": f"Visitor {alice.token}"}), 401)
    error(api.get("/api/me", token=alice.token), 401)
    with api.app.app_context():   # only the token's hash is kept; the visitor is a contact on the channel
        session = db.session.scalars(select(VisitorSession)).first()
        assert alice.token not in (session.token_hash, session.visitor_id) and len(session.token_hash) == 64
        assert db.session.scalars(select(ContactIdentity).where(ContactIdentity.external_id == session.visitor_id)
                                  ).one().provider == "web"
        db.session.remove()


def test_cors_follows_allowed_origins(api):
    channel = web_channel(api)
    allowed = Visitor(api, channel["widget_key"])
    preflight = allowed.call("OPTIONS", "/sessions", headers={"Access-Control-Request-Method": "POST",
                                                              "Access-Control-Request-Headers": "content-type"})
    assert preflight.headers["Access-Control-Allow-Origin"] == SHOP
    assert "Authorization" in preflight.headers["Access-Control-Allow-Headers"]
    created = allowed.call("POST", "/sessions", json={})
    assert created.status_code == 201 and created.headers["Access-Control-Allow-Origin"] == SHOP
    evil = Visitor(api, channel["widget_key"], origin="https://evil.example.net")
    refused = evil.call("POST", "/sessions", json={})
    error(refused, 403, "origin_not_allowed")
    assert "Access-Control-Allow-Origin" not in refused.headers
    assert "Access-Control-Allow-Origin" not in evil.call("OPTIONS", "/sessions").headers
    error(Visitor(api, "no-such-key").call("POST", "/sessions", json={}), 404, "not_found")


def test_validation_of_sessions_and_messages(api):
    channel = web_channel(api)
    visitor = Visitor(api, channel["widget_key"])
    error(visitor.call("POST", "/sessions", json={"email": "not-an-address"}), 422, "invalid_value", "email")
    error(visitor.call("POST", "/sessions", json={"name": "x" * 201}), 422, "invalid_value", "name")
    error(visitor.call("POST", "/sessions", json={"role": "admin"}), 422, "unknown_field", "role")
    error(visitor.call("POST", "/messages", json={"text": "hi"}), 401, "unauthorized")
    visitor.start()
    error(visitor.call("POST", "/messages", json={"text": "   "}), 422, "invalid_value", "text")
    error(visitor.call("POST", "/messages", json={"text": "x" * 4097}), 422, "invalid_value", "text")
    error(visitor.call("POST", "/messages", json={}), 422, "invalid_value", "text")
    big = visitor.call("POST", "/messages", data=b'{"text": "' + b"x" * (6 * 1024 * 1024) + b'"}',
                       content_type="application/json")
    assert big.status_code == 413
    assert visitor.conversation()["messages"] == []


def test_rate_limits_answer_429_with_retry_after(api):
    channel = web_channel(api)
    for _ in range(3):
        Visitor(api, channel["widget_key"], ip="10.9.9.9").start()
    refused = Visitor(api, channel["widget_key"], ip="10.9.9.9").call("POST", "/sessions", json={})
    error(refused, 429, "too_many_requests")
    assert 1 <= int(refused.headers["Retry-After"]) <= 60
    Visitor(api, channel["widget_key"], ip="10.9.9.10").start()   # another address is not held back
    chatty = Visitor(api, channel["widget_key"], ip="10.1.1.1").start()
    for n in range(4):
        chatty.writes(f"message {n}")
    too_many = chatty.call("POST", "/messages", json={"text": "one more"})
    error(too_many, 429, "too_many_requests")
    assert int(too_many.headers["Retry-After"]) >= 1
    assert len(chatty.conversation()["messages"]) == 4


def test_the_rate_limit_verdict():
    assert verdict(5, 5, now=120.0) is None
    assert verdict(6, 5, now=121.5) == 59
    assert verdict(6, 5, now=179.9) == 1
