"""A local fake of the Facebook Graph API and login dialog (the calls Chatflow makes) and webhook
payload builders.

Wire formats (Meta's docs; see also README "Facebook Messenger"): the login dialog and code
exchange from "Manually Build a Login Flow" (the dialog sends the browser back to redirect_uri
with `code` and `state`, or `error_reason=user_denied&error=access_denied&error_description=...`
when the person cancels); `grant_type=fb_exchange_token` and its answer `{access_token,
token_type: "bearer", expires_in}` from "Long-Lived Access Tokens"; `/me/accounts` from "Page
Access Tokens"; `POST|DELETE /{page-id}/subscribed_apps` answering `{"success": true}` from
Graph "Page Subscribed Apps"; the expired-token error (HTTP 400, OAuthException code 190,
subcode 463) from "Access Tokens: Debugging and Error Handling". The texts of the code-exchange
refusals (used code, redirect_uri mismatch) are as commonly reported, not from Meta's pages.
"""
import hashlib
import hmac
import html
import json
import threading
from itertools import count
from urllib.parse import parse_qs, urlencode, urlparse

from fakes import JsonApiServer, Upload

APP_ID = "4815162342"
APP_SECRET = "fb-app-secret-0123456789"
EXPIRED = "Error validating access token: Session has expired on Wednesday, 02-Dec-26 10:00:00 PST. " \
          "The current time is Wednesday, 02-Dec-26 11:00:00 PST."


class FakeGraph(JsonApiServer):
    """Pages with tokens; a user token that manages them; user profiles; attachment files on a
    CDN path (GET /cdn/<name>, no token, as Meta's CDN links); records every call; can fail sends.

    Facebook Login: GET /dialog/oauth shows a consent page for `app_id` whose links go back to
    the redirect_uri; codes are single-use and tied to that redirect_uri; user tokens come short-
    or long-lived (`token_kinds`); `subscriptions` holds each page's subscribed fields;
    `refuse_subscription[page]` makes Graph refuse it with that message; `expired` tokens are
    answered with error 190."""

    def __init__(self):
        self.app_id, self.app_secret = APP_ID, APP_SECRET
        self.dialog_pages = ["111", "222"]    # the pages of whoever signs in at the dialog
        self.calls: list[tuple[str, str, str, dict]] = []   # (method, path, access_token, body or query)
        self.profiles: dict[str, dict] = {}     # psid -> {first_name, last_name}
        self.cdn: dict[str, bytes] = {}          # name -> bytes, at {url}/cdn/<name>
        self._next = count(1)
        self._lock = threading.Lock()
        self.reset()
        super().__init__(path_prefix="/v25.0")

    def reset(self):
        self.calls.clear()
        self.profiles.clear()
        self.cdn.clear()
        self.fail_sends, self.fail_profiles, self.down = 0, 0, False
        self.pages = {"111": {"name": "Acme Support", "access_token": "page-token-111"},
                      "222": {"name": "Acme Sales", "access_token": "page-token-222"}}
        self.user_tokens = {"user-token": ["111", "222"]}   # user token -> page ids
        self.token_kinds: dict[str, str] = {}                # minted user token -> short | long
        self.codes: dict[str, dict] = {}                     # code -> {redirect_uri, pages, used}
        self.subscriptions: dict[str, list[str]] = {}        # page id -> subscribed fields
        self.refuse_subscription: dict[str, str] = {}        # page id -> Graph's message
        self.expired: set[str] = set()

    def cdn_url(self, name: str, content: bytes) -> str:
        """Serve `content` as an attachment URL of the CDN."""
        self.cdn[name] = content
        return f"{self.url}/cdn/{name}?_nc_sig=fake"

    def answer(self, method: str, raw_path: str, body: dict):
        url = urlparse(raw_path)
        if url.path == "/v25.0/dialog/oauth":
            return self.dialog({k: v[0] for k, v in parse_qs(url.query).items()})
        if url.path.startswith("/v25.0/cdn/"):
            name = url.path.rsplit("/", 1)[-1]
            with self._lock:
                self.calls.append((method, url.path, "", {}))
                if name in self.cdn and not self.down:
                    return 200, self.cdn[name], "application/octet-stream"
            return 403, b"URL signature expired", "text/plain"
        query = {k: v[0] for k, v in parse_qs(url.query).items()}
        if url.path == "/v25.0/oauth/access_token":
            with self._lock:
                self.calls.append((method, url.path, "", {k: v for k, v in query.items() if k != "client_secret"}))
                return self.access_token(query)
        return self.handle(method, url.path, query.get("access_token", ""), body or query)

    # -- Facebook Login ---------------------------------------------------------------------
    def dialog(self, query: dict):
        """The login dialog: a consent page (or Meta's error page for a wrong app id)."""
        if query.get("client_id") != self.app_id or not query.get("redirect_uri", "").startswith("http"):
            return 200, b"<!doctype html><title>Error</title><h1>Invalid App ID</h1>", "text/html"
        with self._lock:
            code = f"code-{next(self._next)}"
            self.codes[code] = {"redirect_uri": query["redirect_uri"], "pages": list(self.dialog_pages), "used": False}
            self.calls.append(("GET", "/v25.0/dialog/oauth", "", query))
        back = query["redirect_uri"] + ("&" if "?" in query["redirect_uri"] else "?")
        state = {"state": query["state"]} if "state" in query else {}
        granted = html.escape(", ".join(query.get("scope", "").split(",")))
        pages = html.escape(", ".join(self.pages[p]["name"] for p in self.dialog_pages))
        ok = html.escape(back + urlencode({"code": code, **state}))
        cancel = html.escape(back + urlencode({"error_reason": "user_denied", "error": "access_denied",
                                               "error_description": "Permissions error.", **state}))
        page = (f"<!doctype html><title>Log in with Facebook</title><h1>Fake Facebook</h1>"
                f"<p>App {html.escape(self.app_id)} asks for: <span id=scope>{granted}</span></p>"
                f"<p>Pages: {pages}</p><a href=\"{ok}\">Continue as Test User</a> <a href=\"{cancel}\">Cancel</a>")
        return 200, page.encode(), "text/html; charset=utf-8"

    def access_token(self, query: dict):
        """GET /oauth/access_token: a dialog code, or (fb_exchange_token) a user token, for a user token."""
        if query.get("client_id") != self.app_id:
            return self._error(400, 101, "Error validating application. Invalid application ID.")
        if query.get("client_secret") != self.app_secret:
            return self._error(400, 100, "Error validating client secret.")
        if query.get("grant_type") == "fb_exchange_token":
            short = query.get("fb_exchange_token", "")
            if short not in self.user_tokens or short in self.expired:
                return self._error(400, 190, "Invalid OAuth access token - Cannot parse access token")
            return 200, self._mint("long", self.user_tokens[short], expires_in=5183944)
        grant = self.codes.get(query.get("code", ""))
        if grant is None:
            return self._error(400, 100, "Invalid verification code format.")
        if grant["used"]:
            return 400, {"error": {"message": "This authorization code has been used.", "type": "OAuthException",
                                   "code": 100, "error_subcode": 36009, "fbtrace_id": "FAKE"}}
        if query.get("redirect_uri") != grant["redirect_uri"]:
            return self._error(400, 100, "Error validating verification code. Please make sure your redirect_uri "
                                         "is identical to the one you used in the OAuth dialog request")
        grant["used"] = True
        return 200, self._mint("short", grant["pages"], expires_in=5400)

    def _mint(self, kind: str, pages: list[str], expires_in: int) -> dict:
        token = f"EAAB{kind}{next(self._next)}"
        self.user_tokens[token], self.token_kinds[token] = list(pages), kind
        return {"access_token": token, "token_type": "bearer", "expires_in": expires_in}

    def expire(self, token: str):
        """From now on Graph answers this token with error 190 (expired)."""
        self.expired.add(token)

    def subscribed(self) -> dict[str, list[str]]:
        with self._lock:
            return dict(self.subscriptions)

    def sent(self) -> list[tuple[str, dict]]:
        """(page access token, body) of every Send API call."""
        return [(t, b) for m, p, t, b in self.calls if m == "POST" and p.endswith("/me/messages")]

    def profile_of(self, psid: str, token: str):
        if token not in {p["access_token"] for p in self.pages.values()}:
            return self._error(400, 190, "Invalid OAuth access token.")
        if self.fail_profiles > 0:
            self.fail_profiles -= 1
            return self._error(500, 2, "Service temporarily unavailable", "FacebookApiException")
        if psid not in self.profiles:
            return 400, {"error": {"message": "No profile available for this user.", "type": "OAuthException",
                                   "code": 100, "error_subcode": 2018218, "fbtrace_id": "FAKE"}}
        return 200, {"id": psid, **self.profiles[psid]}

    def subscription(self, method, page_id, token, query):
        page = self.pages.get(page_id)
        if page is None or token != page["access_token"]:
            return self._error(400, 190, "Invalid OAuth access token.")
        if method == "DELETE":
            self.subscriptions.pop(page_id, None)
            return 200, {"success": True}
        if page_id in self.refuse_subscription:
            return self._error(403, 200, self.refuse_subscription[page_id])
        fields = [f for f in (query.get("subscribed_fields") or "").split(",") if f]
        if not fields:
            return self._error(400, 100, "(#100) The parameter subscribed_fields is required.")
        self.subscriptions[page_id] = fields
        return 200, {"success": True}

    @staticmethod
    def _error(status, code, message, kind="OAuthException"):
        return status, {"error": {"message": message, "type": kind, "code": code, "fbtrace_id": "FAKE"}}

    def handle(self, method, path, token, body):
        with self._lock:
            self.calls.append((method, path, token, body))
            if self.down:
                return self._error(503, 2, "Service temporarily unavailable", "FacebookApiException")
            if token in self.expired:
                return 400, {"error": {"message": EXPIRED, "type": "OAuthException", "code": 190,
                                       "error_subcode": 463, "fbtrace_id": "FAKE"}}
            if path.endswith("/subscribed_apps") and method in ("POST", "DELETE"):
                return self.subscription(method, path.split("/")[-2], token, body)
            if method == "GET" and path.endswith("/me/accounts"):
                if token not in self.user_tokens:
                    return self._error(400, 190, "Invalid OAuth access token.")
                return 200, {"data": [{"id": pid, "name": self.pages[pid]["name"], "category": "Company",
                                       "access_token": self.pages[pid]["access_token"],
                                       "tasks": ["ANALYZE", "ADVERTISE", "MESSAGING", "MODERATE"]}
                                      for pid in self.user_tokens[token]],
                             "paging": {"cursors": {"before": "b", "after": "a"}}}
            if method == "POST" and path.endswith("/me/messages"):
                if token not in {p["access_token"] for p in self.pages.values()}:
                    return self._error(400, 190, "Invalid OAuth access token.")
                if self.fail_sends > 0:
                    self.fail_sends -= 1
                    return self._error(500, 1, "An unknown error has occurred.", "FacebookApiException")
                if isinstance(body.get("filedata"), Upload):   # an upload: JSON fields as form fields
                    body = {**body, "recipient": json.loads(body.get("recipient") or "{}"),
                            "message": json.loads(body.get("message") or "{}")}
                    self.calls[-1] = (method, path, token, body)
                recipient = (body.get("recipient") or {}).get("id")
                message = body.get("message") or {}
                attachment = message.get("attachment") or {}
                has_file = attachment.get("type") in ("image", "audio", "video", "file") \
                    and (isinstance(body.get("filedata"), Upload) or (attachment.get("payload") or {}).get("url"))
                if not recipient or body.get("messaging_type") != "RESPONSE" or not (message.get("text") or has_file):
                    return self._error(400, 100, "(#100) Invalid parameter")
                return 200, {"recipient_id": recipient, "message_id": f"m_fake{next(self._next)}"}
            if method == "GET" and path.count("/") == 2 and path.rsplit("/", 1)[-1].isdigit():
                return self.profile_of(path.rsplit("/", 1)[-1], token)
            return self._error(400, 100, f"Unsupported {method} request {path}", "GraphMethodException")


def sign(raw: bytes, app_secret: str) -> str:
    return "sha256=" + hmac.new(app_secret.encode(), raw, hashlib.sha256).hexdigest()


def message_event(psid: str, page_id: str, mid: str, text: str) -> dict:
    return {"sender": {"id": psid}, "recipient": {"id": page_id}, "timestamp": 1457764197627,
            "message": {"mid": mid, "text": text}}


def pass_thread_control(psid: str, page_id: str, new_owner_app_id: str = "1517776481860111") -> dict:
    return {"sender": {"id": psid}, "recipient": {"id": page_id}, "timestamp": 1458692752478,
            "pass_thread_control": {"previous_owner_app_id": "263902037430900",
                                    "new_owner_app_id": new_owner_app_id, "metadata": "Additional content"}}


def take_thread_control(psid: str, page_id: str) -> dict:
    return {"sender": {"id": psid}, "recipient": {"id": page_id}, "timestamp": 1458692752478,
            "take_thread_control": {"previous_owner_app_id": "1517776481860111",
                                    "new_owner_app_id": "263902037430900", "metadata": "bot takes over"}}


def batch(*entries) -> dict:
    """entries: (page_id, messaging list, standby list)."""
    return {"object": "page", "entry": [
        {"id": page_id, "time": 1458692752478, **({"messaging": messaging} if messaging else {}),
         **({"standby": standby} if standby else {})} for page_id, messaging, standby in entries]}
