"""Facebook Messenger: webhook signatures and events, the Graph API calls we make.

The Graph base URL comes from FACEBOOK_GRAPH_BASE so tests talk to a local fake that speaks
the real format. Access tokens travel as the `access_token` query parameter: never log a
URL built here.
"""
import hashlib
import hmac
from dataclasses import dataclass

import requests

from app.adapters.telegram import InboundText, ProviderError, transport_error

DEFAULT_BASE = "https://graph.facebook.com/v25.0"


def signature_valid(raw_body: bytes, app_secret: str | None, sha256_header: str | None,
                    sha1_header: str | None = None) -> bool:
    """X-Hub-Signature-256 (or the legacy X-Hub-Signature) against the raw body, in constant time."""
    if not app_secret:
        return False
    for header, algorithm, prefix in ((sha256_header, hashlib.sha256, "sha256="),
                                      (sha1_header, hashlib.sha1, "sha1=")):
        if header and header.startswith(prefix):
            expected = hmac.new(app_secret.encode(), raw_body, algorithm).hexdigest()
            return hmac.compare_digest(header[len(prefix):].strip().lower().encode(), expected.encode())
    return False


@dataclass(frozen=True)
class PageEvent:
    """One thing that happened on a page, as Chatflow cares about it.

    kind: `message` (a client's text, to us), `standby_message` (a client's text while a bot
    platform owns the thread), `pass_thread_control` (the bot passed the thread to us),
    `take_thread_control` (the bot took it back).
    """

    page_id: str
    kind: str
    psid: str
    message: InboundText | None = None


def parse_webhook(body) -> tuple[list[PageEvent], list[str]]:
    """(events, skipped reasons) of a webhook POST body; ValueError if it is not a page event batch."""
    if not isinstance(body, dict) or body.get("object") != "page" or not isinstance(body.get("entry"), list):
        raise ValueError('a Messenger webhook body is {"object": "page", "entry": [...]}')
    events, skipped = [], []
    for entry in body["entry"]:
        if not isinstance(entry, dict) or not isinstance(entry.get("id"), (str, int)) \
                or isinstance(entry.get("id"), bool):
            skipped.append("entry without a page id")
            continue
        page_id = str(entry["id"])
        for feed, standby in (("messaging", False), ("standby", True)):
            items = entry.get(feed, [])
            if not isinstance(items, list):
                skipped.append(f"{feed} is not a list")
                continue
            for item in items:
                event, reason = _parse_item(page_id, item, standby)
                if event is not None:
                    events.append(event)
                else:
                    skipped.append(reason)
    return events, skipped


def _parse_item(page_id: str, item, standby: bool) -> tuple[PageEvent | None, str]:
    if not isinstance(item, dict):
        return None, "an event that is not an object"
    sender = item.get("sender")
    psid = sender.get("id") if isinstance(sender, dict) else None
    if not isinstance(psid, (str, int)) or isinstance(psid, bool) or not str(psid).isascii() \
            or not str(psid).isdigit() or len(str(psid)) > 64:
        return None, "an event without a sender id"
    psid = str(psid)
    if isinstance(item.get("pass_thread_control"), dict):
        return PageEvent(page_id, "pass_thread_control", psid), ""
    if isinstance(item.get("take_thread_control"), dict):
        return PageEvent(page_id, "take_thread_control", psid), ""
    message = item.get("message")
    if not isinstance(message, dict):
        kinds = sorted(k for k in item if k not in ("sender", "recipient", "timestamp"))
        return None, f"{', '.join(kinds) or 'empty'} events are not routed"
    if message.get("is_echo"):
        return None, "echo of our own message"
    mid, text = message.get("mid"), message.get("text")
    if not isinstance(mid, str) or not mid or len(mid) > 200:
        return None, "a message without a mid"
    if not isinstance(text, str) or not text.strip():
        return None, "messages without text (attachments, stickers) are not routed"
    inbound = InboundText(external_id=mid, user_id=psid, address=psid, name="", text=_clean(text))
    return PageEvent(page_id, "standby_message" if standby else "message", psid, inbound), ""


def _clean(text: str) -> str:
    return text.replace("\x00", "").encode("utf-8", "replace").decode("utf-8")


class GraphClient:
    def __init__(self, base_url: str = DEFAULT_BASE, timeout: float = 10.0):
        self.base_url, self.timeout = base_url.rstrip("/"), timeout

    def _call(self, method: str, path: str, token: str, json: dict | None = None) -> dict:
        try:
            response = requests.request(method, f"{self.base_url}/{path}", params={"access_token": token},
                                        json=json, timeout=self.timeout)
        except requests.RequestException as e:
            raise transport_error(f"Graph {path}", e) from None
        try:
            body = response.json()
        except ValueError:
            body = {}
        if response.status_code == 200 and "error" not in body:
            return body
        error = body.get("error") if isinstance(body.get("error"), dict) else {}
        message = error.get("message") or f"HTTP {response.status_code}"
        # 5xx, rate limits (4, 17, 32, 613) and transient errors pass; token and permission errors will not.
        retryable = response.status_code >= 500 or error.get("code") in (1, 2, 4, 17, 32, 613) \
            or bool(error.get("is_transient"))
        raise ProviderError(f"Graph {path}: {error.get('code', response.status_code)} {message}", retryable)

    def send_message(self, page_access_token: str, psid: str, text: str) -> dict:
        return self._call("POST", "me/messages", page_access_token,
                          {"recipient": {"id": psid}, "messaging_type": "RESPONSE", "message": {"text": text}})

    def pages(self, user_access_token: str) -> list[dict]:
        """The pages a user manages: [{id, name, access_token}] (GET /me/accounts)."""
        body = self._call("GET", "me/accounts", user_access_token)
        return [{"id": str(p["id"]), "name": p.get("name") or str(p["id"]), "access_token": p.get("access_token")}
                for p in body.get("data", []) if isinstance(p, dict) and p.get("id")]
