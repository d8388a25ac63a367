"""Secrets: bearer tokens are stored hashed; bot tokens, page tokens, the Facebook app
secret and verify token, webhook secrets and bearer tokens are never returned nor logged.

One full scenario runs once for the module over real HTTP (the app behind werkzeug's server, as
`chatflow serve` runs it, so werkzeug's request log is real too) with every log record captured at
DEBUG (root, werkzeug, the app's loggers): a Telegram channel with a distinctive bot token, Facebook
page channels with distinctive page tokens (one through a user access token, one by hand), the app
secret and verify token, users and their tokens, client messages on both providers, accept, replies
delivered and replies failing after retries, refused tokens, a chat action making a case, completion.
Then the tests grep the answers (every body the scenario received) and the log output for each secret.
The one exemption: the answer of POST /api/users, which carries the new user's token once.
"""
import hashlib
import json
import logging
import re
import threading

import pytest
import requests
from sqlalchemy import select
from werkzeug.serving import make_server

from app.extensions import db
from app.models import ApiToken
from app.models.chat import Channel
from app.services import services
from conftest import ADMIN_TOKEN, ROOT, _empty_tables, wait_for
from fakes.facebook import batch, message_event, sign
from fakes.telegram import update

TG_TOKEN = "123:SECRET-TELEGRAM-TOKEN"
REFUSED_TG_TOKEN = "999:SECRET-REFUSED-TELEGRAM-TOKEN"
USER_ACCESS_TOKEN = "SECRET-FB-USER-ACCESS-TOKEN"
PAGE_TOKEN_LISTED = "SECRET-PAGE-TOKEN-333"     # page 333, connected through the user access token
PAGE_TOKEN_TYPED = "SECRET-PAGE-TOKEN-444"      # page 444, typed into POST /api/channels
APP_SECRET = "SECRET-FB-APP-SECRET"
VERIFY_TOKEN = "SECRET-FB-VERIFY-TOKEN"
SHIPPED = sorted((ROOT / "processes").glob("*.bpmn"))
PSID = "4815162342"


class Records(logging.Handler):
    """Every record, formatted with its traceback, as a log file would hold it."""

    def __init__(self):
        super().__init__(logging.DEBUG)
        self.setFormatter(logging.Formatter("%(asctime)s %(levelname)s %(name)s: %(message)s"))
        self.records: list[logging.LogRecord] = []
        self.lines: list[tuple[str, str]] = []   # (logger name, formatted text)
        self._lock = threading.Lock()

    def emit(self, record):
        try:
            text = self.format(record)
        except Exception as e:  # a record that cannot be formatted still counts, raw
            text = f"{record.msg!r} {record.args!r} ({e})"
        with self._lock:
            self.records.append(record)
            self.lines.append((record.name, text))


class Http:
    """A bearer-token client over real HTTP that keeps every answer it receives."""

    def __init__(self, base, answers, token=None):
        self.base, self.answers, self.token = base, answers, token
        self.session = requests.Session()

    def as_user(self, token):
        return Http(self.base, self.answers, token)

    def call(self, method, path, json_body=None, exempt=False, token=..., **kw):
        headers = dict(kw.pop("headers", {}))
        token = self.token if token is ... else token
        if token:
            headers["Authorization"] = f"Bearer {token}"
        resp = self.session.request(method, self.base + path, json=json_body, headers=headers, timeout=30, **kw)
        self.answers.append({"request": f"{method} {path}", "status": resp.status_code, "exempt": exempt,
                             "headers": dict(resp.headers), "body": resp.text})
        return resp

    def ok(self, method, path, json_body=None, status=200, **kw):
        resp = self.call(method, path, json_body, **kw)
        assert resp.status_code == status, (method, path, resp.status_code, resp.text[:500])
        return resp.json() if resp.content and resp.headers.get("Content-Type", "").startswith("application/json") \
            else resp.text


class Scenario:
    def __init__(self, app, base, telegram, graph):
        self.app, self.telegram, self.graph = app, telegram, graph
        self.answers: list[dict] = []
        self.admin = Http(base, self.answers, ADMIN_TOKEN)
        self.user_tokens: dict[str, str] = {}
        self.webhook_secrets: list[str] = []
        self._update = 0

    def new_user(self, login, **fields):
        """The one answer allowed to carry a token: POST /api/users, for the new user's token."""
        user = self.admin.ok("POST", "/api/users", {"login": login, **fields}, status=201, exempt=True)
        self.user_tokens[login] = user["token"]
        return user, self.admin.as_user(user["token"])

    def messages(self, api, chat_id):
        return api.ok("GET", f"/api/chats/{chat_id}/messages")

    def wait_message(self, api, chat_id, text, statuses):
        def check():
            found = [m for m in self.messages(api, chat_id) if m["text"] == text]
            return found[0] if found and found[0]["status"] in statuses else None
        return wait_for(check, timeout=15, message=f"{text!r} to be {statuses}")

    def run(self):
        admin, tg, graph = self.admin, self.telegram, self.graph
        admin.ok("GET", "/healthz")
        admin.ok("GET", "/openapi.json")
        admin.ok("POST", "/api/processes", status=201,
                 files=[("file", (p.name, p.read_bytes(), "application/xml")) for p in SHIPPED])
        for code, value in (("SiteUrl", "https://chat.example.com"), ("SimultaneousChats", 5),
                            ("FacebookAppSecret", APP_SECRET), ("FacebookVerifyToken", VERIFY_TOKEN)):
            admin.ok("PUT", f"/api/settings/{code}", {"value": value})
        # refused setting values must not be echoed either
        assert admin.call("PUT", "/api/settings/FacebookVerifyToken", {"value": VERIFY_TOKEN * 40}).status_code == 422
        assert admin.call("PUT", "/api/settings/FacebookAppSecret", {"value": [APP_SECRET]}).status_code in (400, 422)
        admin.ok("GET", "/api/settings")
        admin.ok("GET", "/api/settings/FacebookAppSecret")
        admin.ok("GET", "/api/settings/FacebookVerifyToken")
        queue = admin.ok("POST", "/api/queues", {"name": "Secrets", "routing_rule": "all"}, status=201)
        op_user, op = self.new_user("op-secret", name="Operator")
        self.new_user("admin-two", permissions=["CanManageChats"])
        admin.ok("POST", f"/api/queues/{queue['id']}/operators", {"user_id": op_user["id"]}, status=201)
        admin.ok("GET", "/api/users")
        admin.ok("GET", f"/api/users/{op_user['id']}")
        op.ok("GET", "/api/me")
        op.ok("PUT", "/api/me/status", {"status": "active"})  # users start inactive
        admin.as_user(self.user_tokens["admin-two"]).ok("GET", "/api/me")

        # Telegram: a refused token, then the distinctive one; reconnects on PATCH
        refused = admin.call("POST", "/api/channels", {"provider": "telegram", "name": "Refused bot",
                                                       "token": REFUSED_TG_TOKEN, "queue_id": queue["id"]})
        assert refused.status_code == 422, refused.text
        bot = admin.ok("POST", "/api/channels", {"provider": "telegram", "name": "Secret bot", "token": TG_TOKEN,
                                                 "queue_id": queue["id"], "active": True}, status=201)
        admin.ok("PATCH", f"/api/channels/{bot['id']}", {"active": False})
        admin.ok("PATCH", f"/api/channels/{bot['id']}", {"active": True, "token": TG_TOKEN})
        admin.ok("GET", f"/api/channels/{bot['id']}")
        with self.app.app_context():
            secret = db.session.get(Channel, bot["id"]).webhook_secret
            db.session.remove()
        self.webhook_secrets.append(secret)
        assert any(m == "setWebhook" and p.get("secret_token") == secret for t, m, p in tg.calls if t == TG_TOKEN)

        # Facebook: a page through the user access token, a page typed in
        admin.ok("POST", "/api/channels/facebook/pages", {"user_access_token": USER_ACCESS_TOKEN})
        (page_a,) = admin.ok("POST", "/api/channels/facebook/pages",
                             {"user_access_token": USER_ACCESS_TOKEN, "page_ids": ["333"], "queue_id": queue["id"]},
                             status=201)
        page_b = admin.ok("POST", "/api/channels", {"provider": "facebook", "name": "Typed page", "page_id": "444",
                                                    "page_access_token": PAGE_TOKEN_TYPED, "queue_id": queue["id"]},
                          status=201)
        admin.ok("PATCH", f"/api/channels/{page_b['id']}", {"page_access_token": PAGE_TOKEN_TYPED})
        admin.ok("GET", "/api/channels")
        refused_fb = admin.call("POST", "/api/channels/facebook/pages", {"user_access_token": "SECRET-BAD-USER-TOKEN"})
        assert refused_fb.status_code == 422, refused_fb.text

        # the providers call in: subscription check, signed events, Telegram updates (and impostors)
        assert admin.call("GET", "/webhooks/facebook", token=None,
                          params={"hub.mode": "subscribe", "hub.verify_token": VERIFY_TOKEN,
                                  "hub.challenge": "1158201444"}).text == "1158201444"
        assert admin.call("GET", "/webhooks/facebook", token=None,
                          params={"hub.mode": "subscribe", "hub.verify_token": "wrong",
                                  "hub.challenge": "x"}).status_code == 403
        for page_id, mid in (("333", "mid.secret.1"), ("444", "mid.secret.2")):
            raw = json.dumps(batch((page_id, [message_event(PSID, page_id, mid, "hello from facebook")], None))).encode()
            admin.ok("POST", "/webhooks/facebook", token=None, data=raw,
                     headers={"Content-Type": "application/json", "X-Hub-Signature-256": sign(raw, APP_SECRET)})
            bad = admin.call("POST", "/webhooks/facebook", token=None, data=raw,
                             headers={"Content-Type": "application/json", "X-Hub-Signature-256": sign(raw, "x")})
            assert bad.status_code == 403
        self._update += 1
        admin.ok("POST", f"/webhooks/telegram/{bot['id']}", token=None,
                 data=json.dumps(update(self._update, 555, "hello from telegram")),
                 headers={"Content-Type": "application/json", "X-Telegram-Bot-Api-Secret-Token": secret})
        assert admin.call("POST", f"/webhooks/telegram/{bot['id']}", token=None,
                          data=json.dumps(update(99, 555, "impostor")),
                          headers={"Content-Type": "application/json",
                                   "X-Telegram-Bot-Api-Secret-Token": "wrong"}).status_code == 403

        # the operator accepts the three chats and replies; deliveries succeed, then fail with retries
        def queued():
            chats = [c for c in op.ok("GET", "/api/chats") if c["state"] == "queued"]
            return chats if len(chats) == 3 else None
        chats = {c["channel_id"]: c for c in wait_for(queued, timeout=15, message="three queued chats")}
        for chat in chats.values():
            op.ok("POST", f"/api/chats/{chat['id']}/accept")
            op.ok("GET", f"/api/chats/{chat['id']}")
            op.ok("GET", f"/api/chats/{chat['id']}/history")
            op.ok("POST", f"/api/chats/{chat['id']}/messages", {"text": "How can I help?"}, status=201)
            self.wait_message(op, chat["id"], "How can I help?", ("sent",))
        tg.fail_sends, graph.fail_sends = 100, 100
        for chat in chats.values():
            op.ok("POST", f"/api/chats/{chat['id']}/messages", {"text": "this one fails"}, status=201)
        for chat in chats.values():
            failed = self.wait_message(op, chat["id"], "this one fails", ("failed",))
            assert failed["error"], failed
        tg.fail_sends, graph.fail_sends = 0, 0
        tg.down = True
        tg_chat = chats[bot["id"]]
        op.ok("POST", f"/api/chats/{tg_chat['id']}/messages", {"text": "telegram is down"}, status=201)
        self.wait_message(op, tg_chat["id"], "telegram is down", ("failed",))
        tg.down = False
        # Telegram now refuses the token (revoked at BotFather): not retryable, and never echoed
        tg.tokens.discard(TG_TOKEN)
        try:
            op.ok("POST", f"/api/chats/{tg_chat['id']}/messages", {"text": "token revoked"}, status=201)
            self.wait_message(op, tg_chat["id"], "token revoked", ("failed",))
            admin.ok("PATCH", f"/api/channels/{bot['id']}", {"active": False})
            refused = admin.call("PATCH", f"/api/channels/{bot['id']}", {"active": True})
            assert refused.status_code == 422, refused.text
        finally:
            tg.tokens.add(TG_TOKEN)
        admin.ok("PATCH", f"/api/channels/{bot['id']}", {"active": True})

        # chat actions and cases; process instances (their data is returned to admins)
        action = admin.ok("POST", "/api/chat-actions", {"name": "Create case", "queue_id": queue["id"],
                                                        "process": "CreateCaseFromChat"}, status=201)
        op.ok("GET", f"/api/chats/{tg_chat['id']}/actions")
        started = op.ok("POST", f"/api/chats/{tg_chat['id']}/actions/{action['id']}", status=201)
        admin.ok("GET", f"/api/cases/{started['data']['CaseId']}")
        admin.ok("GET", "/api/cases")
        admin.ok("GET", f"/api/contacts/{tg_chat['contact']['id']}")
        for instance in admin.ok("GET", "/api/process-instances?limit=1000"):
            admin.ok("GET", f"/api/process-instances/{instance['id']}")
        admin.ok("GET", f"/api/process-instances/{tg_chat['process_instance_id']}/diagram")
        for chat in chats.values():
            op.ok("POST", f"/api/chats/{chat['id']}/complete")
            self.messages(admin, chat["id"])
        admin.ok("GET", "/api/chats?limit=1000")
        # an unauthenticated and a wrongly authenticated call
        assert admin.call("GET", "/api/me", token=None).status_code == 401
        assert admin.call("GET", "/api/me", token="SECRET-NOT-A-TOKEN").status_code == 401
        assert op.call("GET", "/api/settings").status_code == 403
        return self

    def secrets(self) -> dict[str, str]:
        out = {"Telegram bot token": TG_TOKEN, "refused Telegram bot token": REFUSED_TG_TOKEN,
               "Facebook user access token": USER_ACCESS_TOKEN, "page token (listed)": PAGE_TOKEN_LISTED,
               "page token (typed)": PAGE_TOKEN_TYPED, "Facebook app secret": APP_SECRET,
               "Facebook verify token": VERIFY_TOKEN, "admin bearer token": ADMIN_TOKEN,
               "a wrong bearer token": "SECRET-NOT-A-TOKEN"}
        out.update({f"webhook secret {i}": s for i, s in enumerate(self.webhook_secrets)})
        out.update({f"bearer token of {login}": t for login, t in self.user_tokens.items()})
        return out


def forms(secret: str) -> set[str]:
    """The secret and the part of it after a `123:` bot id, raw and URL-encoded."""
    from urllib.parse import quote, quote_plus
    parts = {secret, secret.split(":", 1)[-1]}
    return {form for p in parts for form in (p, quote(p, safe=""), quote_plus(p))}


def leaks(texts, secrets) -> list[str]:
    found = []
    for where, text in texts:
        for name, secret in secrets.items():
            if any(form in text for form in forms(secret)):
                found.append(f"{name} in {where}: {text[:300]}")
    return found


@pytest.fixture(scope="module")
def scenario(db_url, telegram_server, graph_server):
    from app import create_app
    _empty_tables(db_url)
    telegram_server.calls.clear()
    telegram_server.fail_sends, telegram_server.down = 0, False
    graph_server.calls.clear()
    graph_server.fail_sends, graph_server.down = 0, False
    telegram_server.tokens.add(TG_TOKEN)
    graph_server.pages["333"] = {"name": "Secret page", "access_token": PAGE_TOKEN_LISTED}
    graph_server.pages["444"] = {"name": "Typed page", "access_token": PAGE_TOKEN_TYPED}
    graph_server.user_tokens[USER_ACCESS_TOKEN] = ["333"]

    handler = Records()
    loggers = [logging.getLogger(), logging.getLogger("werkzeug"), logging.getLogger("app")]
    levels = [lg.level for lg in loggers]
    for lg in loggers:
        lg.setLevel(logging.DEBUG)
    logging.getLogger().addHandler(handler)
    app = server = None
    try:
        app = create_app({"SQLALCHEMY_DATABASE_URI": db_url, "REDIS_URL": None, "TESTING": True,
                          "AUTO_MIGRATE": False, "BOOTSTRAP_ADMIN_TOKEN": ADMIN_TOKEN, "LOG_LEVEL": "DEBUG",
                          "EMBEDDED_SWEEP_SECONDS": 0.2, "TELEGRAM_API_BASE": telegram_server.url,
                          "FACEBOOK_GRAPH_BASE": graph_server.url, "OUTBOUND_RETRY_DELAYS": [0.2, 0.4]})
        assert app.logger.name == "app"
        server = make_server("127.0.0.1", 0, app, threaded=True)
        threading.Thread(target=server.serve_forever, daemon=True).start()
        s = Scenario(app, f"http://127.0.0.1:{server.server_port}", telegram_server, graph_server).run()
        s.log, s.server_port = handler, server.server_port
        yield s
    finally:
        if server is not None:
            server.shutdown()
            server.server_close()
        if app is not None:
            services(app).jobs.stop()
            with app.app_context():
                db.session.remove()
                db.engine.dispose()
        logging.getLogger().removeHandler(handler)
        for lg, level in zip(loggers, levels):
            lg.setLevel(level)
        telegram_server.tokens.discard(TG_TOKEN)
        for page in ("333", "444"):
            graph_server.pages.pop(page, None)
        graph_server.user_tokens.pop(USER_ACCESS_TOKEN, None)
        telegram_server.fail_sends, telegram_server.down = 0, False
        graph_server.fail_sends, graph_server.down = 0, False


# -- the scenario did what it says (else "nothing leaked" proves nothing) -------------------------
def test_the_scenario_used_every_secret(scenario):
    tg, graph = scenario.telegram, scenario.graph
    sends = [(t, m) for t, m, p in tg.calls if m == "sendMessage"]
    assert (TG_TOKEN, "sendMessage") in sends
    assert any(t == REFUSED_TG_TOKEN for t, m, p in tg.calls)
    graph_tokens = {t for m, p, t, b in graph.calls}
    assert {USER_ACCESS_TOKEN, PAGE_TOKEN_LISTED, PAGE_TOKEN_TYPED} <= graph_tokens
    statuses = [a["status"] for a in scenario.answers]
    assert 500 not in statuses
    assert len(scenario.user_tokens) == 2 and len(scenario.webhook_secrets) == 1
    records = scenario.log.records
    assert any(r.name == "werkzeug" for r in records), "werkzeug's request log was not captured"
    assert any(r.name.startswith("app.") and "retrying" in r.getMessage() for r in records)
    assert any(r.name.startswith("app.") and "failed after" in r.getMessage() for r in records)


# -- answers ------------------------------------------------------------------------------------
def test_no_answer_carries_a_secret(scenario):
    texts = [(f"answer to {a['request']} ({a['status']})", a["body"] + json.dumps(a["headers"]))
             for a in scenario.answers if not a["exempt"]]
    assert not leaks(texts, scenario.secrets())


def test_only_post_users_returns_the_new_token_once(scenario):
    for login, token in scenario.user_tokens.items():
        carrying = [a for a in scenario.answers if token in a["body"]]
        assert len(carrying) == 1, (login, [a["request"] for a in carrying])
        assert carrying[0]["request"] == "POST /api/users" and carrying[0]["status"] == 201
        assert json.loads(carrying[0]["body"])["login"] == login


# -- logs ---------------------------------------------------------------------------------------
def _log_texts(scenario, keep):
    return [(f"log {name}", text) for name, text in scenario.log.lines if keep(name)]


def test_the_apps_own_logs_carry_no_secret(scenario):
    """Everything Chatflow and its libraries log, except the two noted below (each its own test)."""
    texts = _log_texts(scenario, lambda name: not name.startswith("urllib3") and name != "werkzeug")
    assert texts, "no log records captured"
    assert not leaks(texts, scenario.secrets())


def test_http_client_debug_log_carries_no_provider_token(scenario):
    """urllib3 as Chatflow's outbound client; this test's own requests to the server are left out."""
    ours = f"127.0.0.1:{scenario.server_port}"
    texts = [(w, t) for w, t in _log_texts(scenario, lambda name: name.startswith("urllib3")) if ours not in t]
    assert texts, "no outbound request was logged at DEBUG"
    assert not leaks(texts, scenario.secrets())


def test_werkzeug_request_log_carries_no_secret(scenario):
    """`chatflow serve` runs werkzeug, which logs each request line (path and query string)."""
    texts = _log_texts(scenario, lambda name: name == "werkzeug")
    assert texts
    assert not leaks(texts, scenario.secrets())


# -- storage ------------------------------------------------------------------------------------
def test_bearer_tokens_are_stored_as_sha256_only(scenario):
    tokens = [ADMIN_TOKEN, *scenario.user_tokens.values()]
    with scenario.app.app_context():
        rows = db.session.scalars(select(ApiToken)).all()
        stored = [r.token_hash for r in rows]
        raw_columns = [{c.name: getattr(r, c.key) for c in ApiToken.__table__.columns} for r in rows]
        db.session.remove()
    assert len(stored) == len(tokens)
    assert all(re.fullmatch(r"[0-9a-f]{64}", h) for h in stored), stored
    assert sorted(stored) == sorted(hashlib.sha256(t.encode()).hexdigest() for t in tokens)
    dump = json.dumps(raw_columns, default=str)
    assert not any(t in dump for t in tokens)
