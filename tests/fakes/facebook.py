"""A local fake of the Facebook Graph API (the calls Chatflow makes) and webhook payload builders."""
import hashlib
import hmac
import json
import threading
from urllib.parse import parse_qs, urlparse

from fakes import JsonApiServer, Upload


class FakeGraph(JsonApiServer):
    """Pages with tokens; a user token that manages them; user profiles; attachment files on a
    CDN path (GET /cdn/<name>, no token, as Meta's CDN links); records every call; can fail sends."""

    def __init__(self):
        self.pages = {"111": {"name": "Acme Support", "access_token": "page-token-111"},
                      "222": {"name": "Acme Sales", "access_token": "page-token-222"}}
        self.user_tokens = {"user-token": ["111", "222"]}
        self.calls: list[tuple[str, str, str, dict]] = []   # (method, path, access_token, body)
        self.profiles: dict[str, dict] = {}     # psid -> {first_name, last_name}
        self.cdn: dict[str, bytes] = {}          # name -> bytes, at {url}/cdn/<name>
        self.fail_sends = 0
        self.fail_profiles = 0
        self.down = False
        self._next = 0
        self._lock = threading.Lock()
        super().__init__(path_prefix="/v25.0")

    def cdn_url(self, name: str, content: bytes) -> str:
        """Serve `content` as an attachment URL of the CDN."""
        self.cdn[name] = content
        return f"{self.url}/cdn/{name}?_nc_sig=fake"

    def answer(self, method: str, raw_path: str, body: dict):
        url = urlparse(raw_path)
        if url.path.startswith("/v25.0/cdn/"):
            name = url.path.rsplit("/", 1)[-1]
            with self._lock:
                self.calls.append((method, url.path, "", {}))
                if name in self.cdn and not self.down:
                    return 200, self.cdn[name], "application/octet-stream"
            return 403, b"URL signature expired", "text/plain"
        token = (parse_qs(url.query).get("access_token") or [""])[0]
        return self.handle(method, url.path, token, body)

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

    @staticmethod
    def _error(status, code, message, kind="OAuthException"):
        return status, {"error": {"message": message, "type": kind, "code": code, "fbtrace_id": "FAKE"}}

    def handle(self, method, path, token, body):
        with self._lock:
            self.calls.append((method, path, token, body))
            if self.down:
                return self._error(503, 2, "Service temporarily unavailable", "FacebookApiException")
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
                self._next += 1
                return 200, {"recipient_id": recipient, "message_id": f"m_fake{self._next}"}
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
