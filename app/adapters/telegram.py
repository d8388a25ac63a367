"""Telegram Bot API: the calls we make, and parsing the Updates its webhook sends.

The base URL comes from TELEGRAM_API_BASE so tests talk to a local fake that speaks the
real format. Tokens are part of the request path: never log a URL built here.
"""
from dataclasses import dataclass

import requests
import urllib3

DEFAULT_BASE = "https://api.telegram.org"


class ProviderError(Exception):
    """A provider call failed. `retryable` says whether trying again later may succeed;
    `maybe_delivered` that the request may have reached the provider all the same (no answer
    came), so sending it again could deliver it twice."""

    def __init__(self, message: str, retryable: bool, maybe_delivered: bool = False):
        super().__init__(message)
        self.retryable, self.maybe_delivered = retryable, maybe_delivered


def transport_error(what: str, error: requests.RequestException) -> ProviderError:
    """No answer: known not delivered only when no connection was made (refused, connect timeout)."""
    cause = getattr(error.args[0], "reason", None) if error.args else None
    not_sent = isinstance(error, requests.ConnectTimeout) or (
        isinstance(error, requests.ConnectionError)
        and isinstance(cause, (urllib3.exceptions.NewConnectionError, urllib3.exceptions.ConnectTimeoutError)))
    return ProviderError(f"{what}: {type(error).__name__}{'' if not_sent else ' (no answer: may have been delivered)'}",
                         retryable=True, maybe_delivered=not not_sent)


class TelegramClient:
    def __init__(self, base_url: str = DEFAULT_BASE, timeout: float = 10.0):
        self.base_url, self.timeout = base_url.rstrip("/"), timeout

    def _call(self, token: str, method: str, payload: dict | None = None) -> dict:
        try:
            response = requests.post(f"{self.base_url}/bot{token}/{method}", json=payload or {}, timeout=self.timeout)
        except requests.RequestException as e:
            raise transport_error(f"Telegram {method}", e) from None
        try:
            body = response.json()
        except ValueError:
            body = {}
        if response.status_code == 200 and body.get("ok"):
            return body.get("result")
        code = body.get("error_code", response.status_code)
        description = body.get("description") or f"HTTP {response.status_code}"
        # 429 (flood control) and 5xx pass; 400/401/403/404 will not.
        raise ProviderError(f"Telegram {method}: {code} {description}", retryable=code == 429 or code >= 500)

    def get_me(self, token: str) -> dict:
        return self._call(token, "getMe")

    def set_webhook(self, token: str, url: str, secret_token: str) -> None:
        self._call(token, "setWebhook", {"url": url, "secret_token": secret_token,
                                         "allowed_updates": ["message"]})

    def send_message(self, token: str, chat_id: str, text: str) -> dict:
        return self._call(token, "sendMessage", {"chat_id": int(chat_id) if chat_id.lstrip("-").isdigit()
                                                 else chat_id, "text": text})


@dataclass(frozen=True)
class InboundText:
    """A client's text message, as any channel delivers it."""

    external_id: str   # for idempotency (Telegram update_id, Facebook mid)
    user_id: str       # the provider's id of the client
    address: str       # where replies go
    name: str
    text: str


class UnsupportedUpdate(Exception):
    """A well-formed update we do not route (a sticker, an edit, a group): logged and skipped."""


def parse_update(update) -> InboundText:
    """Parse a Telegram Update; raise ValueError if malformed, UnsupportedUpdate if not a text message."""
    if not isinstance(update, dict) or not isinstance(update.get("update_id"), int) \
            or isinstance(update.get("update_id"), bool):
        raise ValueError("an Update is an object with an integer update_id")
    if not _is_id(update["update_id"]):
        raise ValueError("update_id is out of range")
    message = update.get("message")
    if "message" in update and not isinstance(message, dict):
        raise ValueError("message must be an object")
    if not isinstance(message, dict):
        kinds = sorted(k for k in update if k != "update_id")
        raise UnsupportedUpdate(f"update kind {', '.join(kinds) or 'empty'} is not routed")
    sender, chat, text = message.get("from"), message.get("chat"), message.get("text")
    if not isinstance(sender, dict) or not _is_id(sender.get("id")) \
            or not isinstance(chat, dict) or not _is_id(chat.get("id")):
        raise ValueError("message.from.id and message.chat.id must be integers")
    if chat.get("type", "private") != "private":
        raise UnsupportedUpdate(f"messages from {chat.get('type')} chats are not routed")
    if not isinstance(text, str) or not text:
        raise UnsupportedUpdate("messages without text (stickers, photos, ...) are not routed")
    names = [sender.get("first_name"), sender.get("last_name")]
    name = " ".join(n for n in names if isinstance(n, str) and n) or sender.get("username") or str(sender["id"])
    return InboundText(external_id=str(update["update_id"]), user_id=str(sender["id"]), address=str(chat["id"]),
                       name=_clean(str(name))[:300], text=_clean(text))


def _is_id(value) -> bool:
    """Telegram ids fit in 64 bits; anything larger is not an id (and would not fit our columns)."""
    return isinstance(value, int) and not isinstance(value, bool) and -2**63 <= value < 2**63


def _clean(text: str) -> str:
    """What a database can store: no NUL characters, no lone surrogates (JSON allows both)."""
    return text.replace("\x00", "").encode("utf-8", "replace").decode("utf-8")
