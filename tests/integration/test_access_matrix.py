"""Access matrix (docs/api.md, "Access"): every route of the live /openapi.json, called by
{no token, bad token, operator of another queue, operator of the chat's queue, admin}, answers the
status its row in MATRIX names.

- A route in /openapi.json without a row fails `test_every_route_has_a_row`, and so does a row whose
  route no longer exists: adding a route means deciding, here, who may call it.
- One world is built for the module (one app, embedded jobs): admin, operator A serving queue QA
  (`all` routing) with chat C in work by A, operator B serving only QB, a chat action on QA, a case
  made by it, C's contact, deployed processes with instances, a Telegram channel, a role, a user.
- Principals call in the order of PRINCIPALS; denied principals come first, so the object a route
  changes is still intact when the allowed principals call. Where two principals are allowed to
  change something (operator A and admin on chat routes; DELETEs), the row's `params` hands each
  the object it needs (a fresh queued chat, a fresh chat in work, a fresh user to delete ...).
- Public routes (webhooks, /healthz, /openapi.json) take no bearer token: a bearer token, even the
  admin's, neither helps nor hurts. Webhooks then answer 403 to every principal (none carries the
  provider's credentials) and their `provider` cases prove the provider's own authentication.
"""
import io
import itertools
import json
from dataclasses import dataclass, field
from typing import Callable
from urllib.parse import parse_qs, urlsplit

import pytest
from sqlalchemy import func, select

from app.extensions import db
from app.models.chat import Channel, FacebookLogin, Message
from app.services import services
from chat_helpers import ok
from conftest import ADMIN_TOKEN, ROOT, Api, DATA, _empty_tables, wait_for
from fakes.facebook import batch, message_event, sign
from fakes.telegram import update

PRINCIPALS = ("none", "bad", "other_op", "queue_op", "admin")
BAD_TOKEN = "not-a-valid-token"
APP_SECRET = "matrix-app-secret"
VERIFY_TOKEN = "matrix-verify-token"
SHIPPED = sorted((ROOT / "processes").glob("*.bpmn"))
APPROVAL = DATA / "api" / "approval_v1.bpmn"        # ApiApproval: user task `review`, needs data.amount
WAIT_PAYMENT = DATA / "api" / "wait_payment.bpmn"   # ApiWaitPayment: waits for message PaymentReceived
DIVIDE = DATA / "api" / "divide.bpmn"               # ApiDivide: 10 / divisor (0 = error)
SOUND = b"ID3" + b"\x00" * 64

_names = itertools.count(1)


def uniq(prefix: str) -> str:
    return f"{prefix}-{next(_names)}"


# -- the world ------------------------------------------------------------------------------------
class World:
    def __init__(self, app):
        self.app = app
        self.admin = Api(app)
        self._update_ids = itertools.count(1)
        self._client_ids = itertools.count(90_001)
        ok(self.admin.deploy(*SHIPPED, APPROVAL, WAIT_PAYMENT, DIVIDE), 201)
        for code, value in (("SiteUrl", "https://chat.example.com"), ("SimultaneousChats", 100),
                            ("FacebookAppSecret", APP_SECRET), ("FacebookVerifyToken", VERIFY_TOKEN),
                            ("FacebookAppId", "4815162342")):
            ok(self.admin.put(f"/api/settings/{code}", {"value": value}))
        ok(self.upload_sound(ADMIN_TOKEN))
        self.qa = self.queue("QA")
        self.qb = self.queue("QB")
        self.op_a = self.user("op-a", self.qa)
        self.op_b = self.user("op-b", self.qb)
        self.tokens = {"none": None, "bad": BAD_TOKEN, "other_op": self.op_b["token"],
                       "queue_op": self.op_a["token"], "admin": ADMIN_TOKEN}
        self.channel = ok(self.admin.post("/api/channels", {"provider": "telegram", "name": "QA bot",
                                                            "token": "123:good-token", "queue_id": self.qa,
                                                            "active": True}), 201)
        with app.app_context():
            self.secret = db.session.get(Channel, self.channel["id"]).webhook_secret
            db.session.remove()
        self.action = ok(self.admin.post("/api/chat-actions", {"name": "Create case", "queue_id": self.qa,
                                                               "process": "CreateCaseFromChat"}), 201)
        self.chat = self.chat_in_work()                     # C: in work by operator A
        started = ok(self.as_("queue_op").post(f"/api/chats/{self.chat['id']}/actions/{self.action['id']}"), 201)
        self.case_id = started["data"]["CaseId"]
        sent = ok(self.as_("queue_op").post(f"/api/chats/{self.chat['id']}/messages",
                                            data={"file": (io.BytesIO(b"the file"), "note.txt", "text/plain")},
                                            content_type="multipart/form-data"), 201)
        self.file_id = sent["attachments"][0]["id"]
        self.role = ok(self.admin.post("/api/roles", {"name": "Agents"}), 201)
        self.plain = self.user("plain")
        self.canned = ok(self.admin.post("/api/canned-responses", {"shortcut": "hello", "text": "Hello!"}), 201)
        self.instance = self.start("ApiApproval", {"amount": 1})
        self.errored = self.start("ApiDivide", {"divisor": 0})
        assert self.errored["state"] == "error"
        # Website chat: a web channel on QA, a visitor with a file, and a second web channel.
        self.web = ok(self.admin.post("/api/channels", {"provider": "web", "name": "QA site", "queue_id": self.qa,
                                                        "allowed_origins": ["https://shop.example.com"]}), 201)
        self.other_web = ok(self.admin.post("/api/channels", {"provider": "web", "name": "QB site",
                                                              "queue_id": self.qb}), 201)
        self.visitor = self.visitor_session(self.web)
        self.visitor_file = ok(self.admin.client.post(
            f"/widget/api/{self.web['widget_key']}/messages", headers=visitor(self.visitor),
            data={"file": (io.BytesIO(b"visitor file"), "v.txt", "text/plain")},
            content_type="multipart/form-data"), 201)["attachments"][0]["id"]
        self.params = {"widget_key": self.web["widget_key"], "chat_id": self.chat["id"], "action_id": self.action["id"], "case_id": self.case_id,
                       "contact_id": self.chat["contact"]["id"], "channel_id": self.channel["id"],
                       "queue_id": self.qa, "user_id": self.plain["id"], "role_id": self.role["id"],
                       "instance_id": self.instance["id"], "key": "ApiApproval", "number": 1,
                       "task": "review", "code": "SiteUrl", "canned_id": self.canned["id"], "file_id": self.file_id}

    def visitor_session(self, channel) -> str:
        return ok(self.admin.client.post(f"/widget/api/{channel['widget_key']}/sessions", json={}), 201)["token"]

    def as_(self, who: str) -> Api:
        return self.admin.as_user(self.tokens[who])

    # builders (all through the admin API, as a script would)
    def queue(self, name=None) -> int:
        return ok(self.admin.post("/api/queues", {"name": name or uniq("queue"), "routing_rule": "all",
                                                  "completion_timeout_minutes": None}), 201)["id"]

    def user(self, login=None, *queue_ids) -> dict:
        user = ok(self.admin.post("/api/users", {"login": login or uniq("user")}), 201)
        ok(self.admin.as_user(user["token"]).put("/api/me/status", {"status": "active"}))  # users start inactive
        for queue_id in queue_ids:
            ok(self.admin.post(f"/api/queues/{queue_id}/operators", {"user_id": user["id"]}), 201)
        return user

    def start(self, key, data) -> dict:
        return ok(self.admin.post(f"/api/processes/{key}/instances", {"data": data}), 201)

    def upload_sound(self, token):
        return self.admin.call("PUT", "/api/settings/OmniChatNotificationSound/file", token=token,
                               data={"file": (io.BytesIO(SOUND), "ding.mp3", "audio/mpeg")},
                               content_type="multipart/form-data")

    def client_writes(self, user_id, text="hello", secret=None, token=None):
        return self.admin.client.post(f"/webhooks/telegram/{self.channel['id']}",
                                      json=update(next(self._update_ids), user_id, text),
                                      headers={"X-Telegram-Bot-Api-Secret-Token": secret or self.secret,
                                               **({"Authorization": f"Bearer {token}"} if token else {})})

    def queued_chat(self) -> dict:
        """A new client writes on QA's channel; their chat, once its lifecycle queued it."""
        before = {c["id"] for c in ok(self.admin.get(f"/api/chats?queue_id={self.qa}&limit=1000"))}
        ok(self.client_writes(next(self._client_ids)))

        def queued():
            new = [c for c in ok(self.admin.get(f"/api/chats?queue_id={self.qa}&limit=1000"))
                   if c["id"] not in before]
            return new[0] if new and new[0]["state"] == "queued" and new[0]["process_instance_id"] else None
        return wait_for(queued, message="the new chat to be queued")

    def chat_in_work(self) -> dict:
        chat = self.queued_chat()
        return ok(self.as_("queue_op").post(f"/api/chats/{chat['id']}/accept"))


@pytest.fixture(scope="module")
def world(db_url, telegram_server, graph_server):
    """One app for the module, configured as conftest's make_app does (embedded jobs)."""
    from app import create_app
    _empty_tables(db_url)
    app = create_app({"SQLALCHEMY_DATABASE_URI": db_url, "REDIS_URL": None, "TESTING": True,
                      "AUTO_MIGRATE": False, "BOOTSTRAP_ADMIN_TOKEN": ADMIN_TOKEN,
                      "EMBEDDED_SWEEP_SECONDS": 0.2, "TELEGRAM_API_BASE": telegram_server.url,
                      "FACEBOOK_GRAPH_BASE": graph_server.url, "OUTBOUND_RETRY_DELAYS": [0.2, 0.4]})
    try:
        yield World(app)
    finally:
        services(app).jobs.stop()
        with app.app_context():
            db.session.remove()
            db.engine.dispose()


# -- per-route objects and bodies ----------------------------------------------------------------
# A `params` function answers path parameters for one principal: (world, principal, shared) -> dict,
# `shared` living for one route's test. A `send` function answers the request's keyword arguments.
def once(make):
    """One object for every principal of the route (denied ones call first, then the one allowed)."""
    def params(w, who, shared):
        if "once" not in shared:
            shared["once"] = make(w)
        return shared["once"]
    return params


def once_and_fresh_for_admin(make):
    """One object for the denied principals and operator A (in that order), a fresh one for the admin."""
    def params(w, who, shared):
        key = "admin" if who == "admin" else "others"
        if key not in shared:
            shared[key] = make(w)
        return shared[key]
    return params


def js(body_or_fn):
    """A JSON body, or a function (world) -> JSON body evaluated for each call."""
    return lambda w: {"json": body_or_fn(w) if callable(body_or_fn) else body_or_fn}


def multipart(name, content, content_type=None):
    return lambda w: {"data": {"file": (io.BytesIO(content), name, *([content_type] if content_type else []))},
                      "content_type": "multipart/form-data"}


def fb_signed(w):
    raw = json.dumps(batch(("999", [message_event("42", "999", uniq("mid"), "hi")], None))).encode()
    return {"data": raw, "content_type": "application/json", "headers": {"X-Hub-Signature-256": sign(raw, APP_SECRET)}}


def fb_badly_signed(w):
    raw = json.dumps(batch(("999", [message_event("42", "999", uniq("mid"), "hi")], None))).encode()
    return {"data": raw, "content_type": "application/json",
            "headers": {"X-Hub-Signature-256": sign(raw, "not-the-app-secret")}}


def tg_update(w):
    return {"json": update(next(w._update_ids), next(w._client_ids), "hello")}


def with_header(send, **headers):
    def call(w):
        kw = send(w)
        kw["headers"] = {**kw.get("headers", {}), **{k.replace("_", "-"): v for k, v in headers.items()}}
        return kw
    return call


def visitor(token: str) -> dict:
    return {"Authorization": f"Visitor {token}"}


def as_visitor(send=None, token=lambda w: w.visitor):
    """Called as the widget calls: the visitor's token, no bearer token."""
    return lambda w: {**(send(w) if send else {}), "headers": visitor(token(w))}


def another_visitor(send=None):
    """A visitor of another web channel: their token names no session here."""
    return as_visitor(send, token=lambda w: w.visitor_session(w.other_web))


def tg_secret(w):
    return {"X-Telegram-Bot-Api-Secret-Token": w.secret}


@dataclass(frozen=True)
class Row:
    """Expected status per principal (an int, or a tuple of acceptable ones); how to call."""
    none: int | tuple
    bad: int | tuple
    other_op: int | tuple
    queue_op: int | tuple
    admin: int | tuple
    params: Callable | None = None        # (world, principal, shared) -> path parameters
    send: Callable | None = None          # (world) -> client.open keyword arguments
    query: str = ""
    # public routes only: (label, expected, send) called with no bearer token, as the provider calls
    provider: tuple = field(default_factory=tuple)
    content_type: str | None = None       # the media type of a 2xx answer, when it is not JSON


def admin_only(ok_status, **how) -> Row:
    return Row(401, 401, 403, 403, ok_status, **how)


def any_user(ok_status=200, **how) -> Row:
    return Row(401, 401, ok_status, ok_status, ok_status, **how)


def chat_scoped(queue_op, admin, **how) -> Row:
    return Row(401, 401, 403, queue_op, admin, **how)


def public(status, **how) -> Row:
    return Row(status, status, status, status, status, **how)


def _uncertain_reply(w):
    """A reply in chat C, delivered, then marked uncertain as the sweep would after a lost answer."""
    chat_id = w.chat["id"]
    reply = ok(w.as_("queue_op").post(f"/api/chats/{chat_id}/messages", {"text": uniq("reply")}), 201)
    wait_for(lambda: any(m["id"] == reply["id"] and m["status"] == "sent"
                         for m in ok(w.admin.get(f"/api/chats/{chat_id}/messages?limit=1000"))),
             message="the reply to be sent")
    with w.app.app_context():
        db.session.get(Message, reply["id"]).status = "uncertain"
        db.session.commit()
        db.session.remove()
    return {"chat_id": chat_id, "message_id": reply["id"]}


new_queued_chat = once_and_fresh_for_admin(lambda w: {"chat_id": w.queued_chat()["id"]})
new_chat_in_work = once_and_fresh_for_admin(lambda w: {"chat_id": w.chat_in_work()["id"]})


def _fresh_entry(w):
    queue_id, user = w.queue(), w.user()
    entry = ok(w.admin.post(f"/api/queues/{queue_id}/operators", {"user_id": user["id"]}), 201)
    return {"queue_id": queue_id, "entry_id": entry["id"]}


def _fresh_channel(w):
    return {"channel_id": ok(w.admin.post("/api/channels", {
        "provider": "telegram", "name": uniq("bot"), "token": "123:good-token", "queue_id": w.qb,
        "active": False}), 201)["id"]}


def _fb_state(w) -> str:
    """A Facebook login run the admin started in this test client (its cookie kept): its state."""
    url = ok(w.admin.post("/api/channels/facebook/login"))["url"]
    return parse_qs(urlsplit(url).query)["state"][0]


def _fb_login(w):
    _fb_state(w)
    with w.app.app_context():
        login_id = db.session.scalar(select(func.max(FacebookLogin.id)))
        db.session.remove()
    return {"login_id": login_id}


def _fresh_action(w):
    return {"action_id": ok(w.admin.post("/api/chat-actions", {"name": uniq("action"), "queue_id": w.qb,
                                                               "process": "CreateCaseFromChat"}), 201)["id"]}


def _fresh_instance(key, data):
    return once(lambda w: {"instance_id": w.start(key, data)["id"], "task": "review"})


# The table: (method, path template as /openapi.json names it) -> expectations per principal:
#            none bad  other_op queue_op admin
MATRIX: dict[tuple[str, str], Row] = {
    # --- users and roles (admin)
    ("POST", "/api/users"): admin_only(201, send=js(lambda w: {"login": uniq("login")})),
    ("GET", "/api/users"): admin_only(200),
    ("GET", "/api/users/{user_id}"): admin_only(200),
    ("PATCH", "/api/users/{user_id}"): admin_only(200, send=js({"name": "Plain User"})),
    ("DELETE", "/api/users/{user_id}"): admin_only(204, params=once(lambda w: {"user_id": w.user()["id"]})),
    ("POST", "/api/roles"): admin_only(201, send=js(lambda w: {"name": uniq("role")})),
    ("GET", "/api/roles"): admin_only(200),
    ("POST", "/api/users/{user_id}/token"): admin_only(201),
    ("PATCH", "/api/roles/{role_id}"): admin_only(200, send=js({"permissions": []})),
    ("DELETE", "/api/roles/{role_id}"): admin_only(204, params=once(
        lambda w: {"role_id": ok(w.admin.post("/api/roles", {"name": uniq("role")}), 201)["id"]})),
    ("DELETE", "/api/roles/{role_id}/members/{user_id}"): admin_only(204),
    ("POST", "/api/roles/{role_id}/members"): admin_only(201, send=js(lambda w: {"user_id": w.plain["id"]})),
    # --- queues and their operators (admin)
    ("POST", "/api/queues"): admin_only(201, send=js(lambda w: {"name": uniq("queue"), "routing_rule": "all"})),
    ("GET", "/api/queues"): admin_only(200),
    ("GET", "/api/queues/{queue_id}/routing-preview"): admin_only(200),
    ("GET", "/api/queues/{queue_id}"): admin_only(200),
    ("PATCH", "/api/queues/{queue_id}"): admin_only(200, send=js({"name": "QA"})),
    ("DELETE", "/api/queues/{queue_id}"): admin_only(204, params=once(lambda w: {"queue_id": w.queue()})),
    ("POST", "/api/queues/{queue_id}/operators"): admin_only(
        201, params=once(lambda w: {"queue_id": w.queue()}), send=js(lambda w: {"user_id": w.plain["id"]})),
    ("GET", "/api/queues/{queue_id}/operators"): admin_only(200),
    ("DELETE", "/api/queues/{queue_id}/operators/{entry_id}"): admin_only(204, params=once(_fresh_entry)),
    # --- channels (admin)
    ("POST", "/api/channels"): admin_only(201, send=js(lambda w: {
        "provider": "telegram", "name": uniq("bot"), "token": "123:good-token", "queue_id": w.qb,
        "active": False})),
    ("GET", "/api/channels"): admin_only(200),
    ("POST", "/api/channels/facebook/pages"): admin_only(200, send=js({"user_access_token": "user-token"})),
    ("POST", "/api/channels/facebook/login"): admin_only(200),
    ("GET", "/api/channels/facebook/logins/{login_id}"): admin_only(200, params=once(_fb_login)),
    # the run has not come back from Facebook: nothing to pick yet
    ("POST", "/api/channels/facebook/logins/{login_id}/pages"): admin_only(
        409, params=once(_fb_login), send=js(lambda w: {"page_ids": ["111"], "queue_id": w.qb})),
    ("GET", "/api/channels/{channel_id}"): admin_only(200),
    ("PATCH", "/api/channels/{channel_id}"): admin_only(200, send=js({"name": "QA bot"})),
    ("DELETE", "/api/channels/{channel_id}"): admin_only(204, params=once(_fresh_channel)),
    # --- settings (admin; the sound file is read by any user)
    ("GET", "/api/settings"): admin_only(200),
    ("GET", "/api/settings/{code}"): admin_only(200),
    ("PUT", "/api/settings/{code}"): admin_only(200, send=js({"value": "https://chat.example.com"})),
    ("PUT", "/api/settings/OmniChatNotificationSound/file"): admin_only(
        200, send=multipart("ding.mp3", SOUND, "audio/mpeg")),
    ("GET", "/api/settings/OmniChatNotificationSound/file"): any_user(200),
    # each principal finds a sound to remove (the admin's call removes it; GET above has run)
    ("DELETE", "/api/settings/OmniChatNotificationSound/file"): admin_only(
        204, send=lambda w: (ok(w.upload_sound(ADMIN_TOKEN)), {})[1]),
    # --- chat actions (admin setup)
    ("POST", "/api/chat-actions"): admin_only(201, send=js(lambda w: {
        "name": uniq("action"), "queue_id": w.qa, "process": "CreateCaseFromChat"})),
    ("GET", "/api/chat-actions"): admin_only(200),
    ("GET", "/api/chat-actions/{action_id}"): admin_only(200),
    ("PATCH", "/api/chat-actions/{action_id}"): admin_only(200, send=js({"name": "Create case"})),
    ("DELETE", "/api/chat-actions/{action_id}"): admin_only(204, params=once(_fresh_action)),
    # --- cases and contacts (admin)
    ("GET", "/api/cases"): admin_only(200),
    ("GET", "/api/cases/{case_id}"): admin_only(200),
    ("GET", "/api/contacts/{contact_id}"): admin_only(200),
    # --- processes and instances (admin; the operation catalogue is for any user)
    ("POST", "/api/processes"): admin_only(200, send=multipart("approval_v1.bpmn", APPROVAL.read_bytes())),
    ("GET", "/api/processes"): admin_only(200),
    ("GET", "/api/processes/{key}"): admin_only(200),
    ("GET", "/api/processes/{key}/versions/{number}/bpmn"): admin_only(200),
    ("POST", "/api/processes/{key}/instances"): admin_only(201, send=js({"data": {"amount": 1}})),
    ("GET", "/api/process-instances"): admin_only(200),
    ("GET", "/api/process-instances/{instance_id}"): admin_only(200),
    ("GET", "/api/process-instances/{instance_id}/diagram"): admin_only(200),
    ("POST", "/api/process-instances/{instance_id}/cancel"): admin_only(
        200, params=_fresh_instance("ApiApproval", {"amount": 1})),
    ("POST", "/api/process-instances/{instance_id}/messages"): admin_only(
        200, params=_fresh_instance("ApiWaitPayment", {}),
        send=js({"name": "PaymentReceived", "data": {"paid_amount": 1}})),
    ("POST", "/api/process-instances/{instance_id}/retry"): admin_only(
        200, params=lambda w, who, shared: {"instance_id": w.errored["id"]}),
    ("POST", "/api/process-instances/{instance_id}/tasks/{task}/complete"): admin_only(
        200, params=_fresh_instance("ApiApproval", {"amount": 1}), send=js({"data": {"approved": True}})),
    ("GET", "/api/process-operations"): any_user(200),
    # --- the operator's own state (any user)
    ("GET", "/api/me"): any_user(200),
    ("PUT", "/api/me/status"): any_user(200, send=js({"status": "active"})),
    ("PUT", "/api/me/presence"): any_user(200),
    ("GET", "/api/me/chats"): any_user(200),
    ("GET", "/api/chats"): any_user(200),
    # the live events stream (an endless response: `test_access` closes it unread)
    ("GET", "/api/events"): any_user(200, content_type="text/event-stream"),
    # --- one chat (operators of its queue; admins any). Admin conflicts: an admin who does not serve
    # QA cannot accept (409 not_offered_to_you) nor reply to a chat in work by A (409 chat_not_in_work).
    ("GET", "/api/chats/{chat_id}"): chat_scoped(200, 200),
    ("GET", "/api/chats/{chat_id}/history"): chat_scoped(200, 200),
    ("GET", "/api/chats/{chat_id}/messages"): chat_scoped(200, 200),
    ("POST", "/api/chats/{chat_id}/messages"): chat_scoped(201, 409, send=js({"text": "an operator's answer"})),
    # only the operator working the chat decides to send a reply again (an admin: 409 chat_not_in_work)
    ("POST", "/api/chats/{chat_id}/messages/{message_id}/send-again"): chat_scoped(200, 409,
                                                                                params=once(_uncertain_reply)),
    ("POST", "/api/chats/{chat_id}/accept"): chat_scoped(200, 409, params=new_queued_chat),
    ("POST", "/api/chats/{chat_id}/complete"): chat_scoped(200, 200, params=new_chat_in_work),
    ("POST", "/api/chats/{chat_id}/route"): admin_only(409),  # the chat is in work: not unrouted
    ("POST", "/api/chats/{chat_id}/transfer"): chat_scoped(200, 200, params=new_chat_in_work,
                                                           send=js(lambda w: {"queue_id": w.qb})),
    ("GET", "/api/chats/{chat_id}/transfer-targets"): chat_scoped(200, 200),
    ("GET", "/api/chats/{chat_id}/actions"): chat_scoped(200, 200),
    ("POST", "/api/chats/{chat_id}/actions/{action_id}"): chat_scoped(201, 201),
    # --- the operator workspace: read markers, private notes, the client's context (chat-scoped)
    ("PUT", "/api/chats/{chat_id}/read"): chat_scoped(200, 200, send=js({})),
    ("GET", "/api/chats/{chat_id}/notes"): chat_scoped(200, 200),
    ("POST", "/api/chats/{chat_id}/notes"): chat_scoped(201, 201, send=js({"text": "a private note"})),
    ("GET", "/api/chats/{chat_id}/context"): chat_scoped(200, 200),
    # canned responses: every user reads (global ones and their queues'), admins manage
    ("GET", "/api/canned-responses"): any_user(200),
    ("GET", "/api/canned-responses/{canned_id}"): any_user(200),
    ("POST", "/api/canned-responses"): admin_only(201, send=js(lambda w: {"shortcut": uniq("greet"), "text": "Hi"})),
    ("PATCH", "/api/canned-responses/{canned_id}"): admin_only(200, send=js({"text": "Hello there!"})),
    ("DELETE", "/api/canned-responses/{canned_id}"): admin_only(204, params=once(lambda w: {"canned_id": ok(
        w.admin.post("/api/canned-responses", {"shortcut": uniq("bye"), "text": "Bye"}), 201)["id"]})),
    # the supervisor's view of operators
    ("GET", "/api/operators"): admin_only(200),
    # a message's file: who may see its chat
    ("GET", "/api/files/{file_id}"): chat_scoped(200, 200, content_type="text/plain"),
    # --- reports (admin)
    ("GET", "/api/reports/overview"): admin_only(200),
    ("GET", "/api/reports/queues"): admin_only(200, query="tz=Europe/Berlin"),
    ("GET", "/api/reports/operators"): admin_only(200),
    ("GET", "/api/reports/timeline"): admin_only(200, query="bucket=day&format=csv", content_type="text/csv"),
    ("GET", "/api/reports/now"): admin_only(200),
    ("GET", "/api/reports/live"): admin_only(200, content_type="text/event-stream"),
    # --- public: no bearer token needed, none helps
    ("GET", "/healthz"): public(200),
    ("GET", "/openapi.json"): public(200),
    # from loopback (the test client's address) without a token; tests/e2e/test_metrics.py covers the rest
    ("GET", "/metrics"): public(200, content_type="text/plain"),
    # --- website chat: visitor routes take a Visitor token; no bearer token, even the admin's, opens them
    ("GET", "/widget/{widget_key}.js"): public(200, content_type="text/javascript"),
    ("POST", "/widget/api/{widget_key}/sessions"): public(201, send=js({})),
    ("GET", "/widget/api/{widget_key}/messages"): public(401, provider=(
        ("the visitor's token", 200, as_visitor()),
        ("another channel's visitor token", 401, another_visitor()),
    )),
    ("POST", "/widget/api/{widget_key}/messages"): public(401, send=js({"text": "hello"}), provider=(
        ("the visitor's token", 201, as_visitor(js({"text": "hello"}))),
        ("another channel's visitor token", 401, another_visitor(js({"text": "hello"}))),
    )),
    ("GET", "/widget/api/{widget_key}/files/{file_id}"): public(
        401, params=lambda w, who, shared: {"file_id": w.visitor_file}, provider=(
            ("an operator's file of another chat", 404, as_visitor()),   # world.params' file_id
            ("another visitor of the channel", 404,
             as_visitor(token=lambda w: w.visitor_session(w.web))),
        )),
    ("GET", "/widget/api/{widget_key}/events"): public(401, provider=(
        ("the visitor's token", 200, as_visitor()),
        ("another channel's visitor token", 401, another_visitor()),
    )),
    ("POST", "/webhooks/telegram/{channel_id}"): public(403, send=tg_update, provider=(
        ("the secret setWebhook set", 200, lambda w: with_header(tg_update, **tg_secret(w))(w)),
        ("a wrong secret", 403, with_header(tg_update, **{"X-Telegram-Bot-Api-Secret-Token": "wrong"})),
        ("the admin's bearer token as secret", 403,
         with_header(tg_update, **{"X-Telegram-Bot-Api-Secret-Token": ADMIN_TOKEN})),
    )),
    ("GET", "/webhooks/facebook"): public(403, query="hub.mode=subscribe&hub.challenge=c1", provider=(
        ("the verify token", 200,
         lambda w: {"query_string": f"hub.mode=subscribe&hub.challenge=c1&hub.verify_token={VERIFY_TOKEN}"}),
        ("a wrong verify token", 403,
         lambda w: {"query_string": "hub.mode=subscribe&hub.challenge=c1&hub.verify_token=wrong"}),
    )),
    # Facebook's dialog sends the browser back: the state of a run this browser started, once
    ("GET", "/oauth/facebook/callback"): public(400, query="code=c1&state=forged", provider=(
        ("the state of a run this browser started", 303,
         lambda w: {"query_string": f"code=c1&state={_fb_state(w)}"}),
        ("no state", 400, lambda w: {"query_string": "code=c1"}),
    )),
    ("POST", "/webhooks/facebook"): public(403, send=lambda w: {
        "json": batch(("999", [message_event("42", "999", uniq("mid"), "hi")], None))}, provider=(
        ("signed with the app secret", 200, fb_signed),
        ("signed with another secret", 403, fb_badly_signed),
    )),
}


# -- the tests ------------------------------------------------------------------------------------
def live_routes(app) -> dict[tuple[str, str], dict]:
    spec = app.test_client().get("/openapi.json").get_json()
    return {(method.upper(), path): op for path, ops in spec["paths"].items() for method, op in ops.items()}


def test_every_route_has_a_row(world):
    routes = live_routes(world.app)
    missing = sorted(set(routes) - set(MATRIX))
    stale = sorted(set(MATRIX) - set(routes))
    assert not missing, f"routes in /openapi.json without a row in MATRIX: {missing}"
    assert not stale, f"rows in MATRIX for routes no longer in /openapi.json: {stale}"
    for key, op in routes.items():
        row = MATRIX[key]
        if key[1].startswith("/api"):
            assert (row.none, row.bad) == (401, 401), key
            # x-access admin <=> both operators are refused with 403
            assert (op.get("x-access") == "admin") == (row.other_op == row.queue_op == 403), (key, op.get("x-access"))
        else:
            assert "x-access" not in op and "security" not in op, key


def _expected(row: Row, who: str) -> tuple:
    value = getattr(row, who)
    return value if isinstance(value, tuple) else (value,)


def _body(resp) -> str:
    """The start of an answer's body for a failure message; an event stream never ends, so not read."""
    return f"<{resp.mimetype} stream>" if resp.mimetype == "text/event-stream" else resp.get_data(as_text=True)[:300]


def _call(w: World, method, path, token, send_kwargs, query=""):
    kw = dict(send_kwargs)
    if query and "query_string" not in kw:
        kw["query_string"] = query
    return w.admin.call(method, path, token=token, **kw)


@pytest.mark.parametrize("key", list(MATRIX), ids=[f"{m} {p}" for m, p in MATRIX])
def test_access(world, key):
    method, template = key
    row = MATRIX[key]
    shared: dict = {}
    failures = []
    for who in PRINCIPALS:
        params = {**world.params, **(row.params(world, who, shared) if row.params else {})}
        path = template.format(**params)
        send = row.send(world) if row.send else {}
        resp = _call(world, method, path, world.tokens[who], send, row.query)
        expected = _expected(row, who)
        with resp:  # closed, and a streamed answer never read to its (absent) end
            if resp.status_code not in expected:
                failures.append(f"{who}: {method} {path} answered {resp.status_code}, expected {expected}: "
                                f"{_body(resp)}")
                continue
            if resp.status_code in (401, 403) and resp.is_json:
                code = resp.get_json()["error"]["code"]
                if code != ("unauthorized" if resp.status_code == 401 else "forbidden"):
                    failures.append(f"{who}: {method} {path} answered {resp.status_code} with code {code}")
            if row.content_type and resp.status_code < 300 and resp.mimetype != row.content_type:
                failures.append(f"{who}: {method} {path} answered {resp.content_type}, expected {row.content_type}")
    for label, expected, send in row.provider:
        with _call(world, method, template.format(**world.params), None, send(world), row.query) as resp:
            if resp.status_code != expected:
                failures.append(f"provider ({label}): answered {resp.status_code}, expected {expected}: "
                                f"{_body(resp)}")
    assert not failures, "\n".join(failures)


def test_operator_lists_hold_only_their_own_queues(world):
    """Lists are not path-scoped, so the matrix alone cannot see a leak through them."""
    qa_chats = {c["id"] for c in ok(world.admin.get(f"/api/chats?queue_id={world.qa}&limit=1000"))}
    assert world.chat["id"] in qa_chats
    for path in ("/api/chats", "/api/me/chats", "/api/chats?view=operator", "/api/chats?state=in_work",
                 f"/api/chats?queue_id={world.qa}"):
        seen = {c["id"] for c in ok(world.as_("other_op").get(path))}
        assert not seen & qa_chats, (path, seen & qa_chats)
    assert world.chat["id"] in {c["id"] for c in ok(world.as_("queue_op").get("/api/chats"))}
    me = ok(world.as_("other_op").get("/api/me"))
    assert me["queues"] == [world.qb] and me["is_admin"] is False


def test_a_deleted_users_token_no_longer_opens_anything(world):
    user = world.user()
    api = world.admin.as_user(user["token"])
    ok(api.get("/api/me"))
    assert world.admin.delete(f"/api/users/{user['id']}").status_code == 204
    for method, path in (("GET", "/api/me"), ("GET", "/api/chats"), ("GET", "/api/process-operations")):
        resp = api.call(method, path)
        assert resp.status_code == 401 and resp.get_json()["error"]["code"] == "unauthorized", (path, resp.status_code)
