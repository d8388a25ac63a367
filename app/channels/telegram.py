"""Telegram Bot API: the calls we make, and the Updates its webhook sends turned into channel events.

The base URL comes from TELEGRAM_API_BASE so tests talk to a local fake that speaks the
real format. Tokens are part of the request path (file downloads included): never log a URL
built here.
"""
import secrets

from app.channels.base import (ChannelAdapter, InboundEdit, InboundFile, InboundMessage, OutboundFile,
                               ProviderError, UnsupportedUpdate, provider_call)
from app.channels.download import read_capped

DEFAULT_BASE = "https://api.telegram.org"
ALLOWED_UPDATES = ["message", "edited_message", "callback_query"]
CAPTION_MAX = 1024

# Message fields that carry something we cannot show, named for the system message.
UNSHOWABLE = {"poll": "a poll", "game": "a game", "dice": "a dice roll", "invoice": "an invoice",
              "story": "a story", "paid_media": "paid media", "giveaway": "a giveaway",
              "successful_payment": "a payment", "checklist": "a checklist"}


class TelegramClient:
    def __init__(self, base_url: str = DEFAULT_BASE, timeout: float = 10.0):
        self.base_url, self.timeout = base_url.rstrip("/"), timeout

    def _call(self, token: str, method: str, payload: dict | None = None, files: dict | None = None):
        url = f"{self.base_url}/bot{token}/{method}"
        sent = {"data": payload, "files": files, "timeout": self.timeout * 6} if files \
            else {"json": payload or {}, "timeout": self.timeout}
        response, body = provider_call(f"Telegram {method}", "POST", url, **sent)
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
                                         "allowed_updates": ALLOWED_UPDATES})

    def delete_webhook(self, token: str) -> None:
        self._call(token, "deleteWebhook")

    def send_message(self, token: str, chat_id: str, text: str) -> dict:
        return self._call(token, "sendMessage", {"chat_id": _chat_id(chat_id), "text": text})

    def send_file(self, token: str, chat_id: str, file: OutboundFile, caption: str = "") -> dict:
        """sendPhoto for images, sendDocument for anything else (multipart, the part named as the parameter)."""
        method, part = ("sendPhoto", "photo") if file.is_image else ("sendDocument", "document")
        form = {"chat_id": str(chat_id), **({"caption": caption} if caption else {})}
        return self._call(token, method, form, files={part: (file.name, file.content, file.content_type)})

    def answer_callback_query(self, token: str, callback_query_id: str) -> None:
        self._call(token, "answerCallbackQuery", {"callback_query_id": callback_query_id})

    def download(self, token: str, file_id: str, max_bytes: int) -> bytes:
        """getFile, then the file path; bots may download 20 MB at most ("file is too big")."""
        try:
            info = self._call(token, "getFile", {"file_id": file_id})
        except ProviderError as e:
            if "too big" in str(e):
                raise ProviderError(str(e), retryable=False, code="file_too_large") from None
            raise
        if (info or {}).get("file_size") and info["file_size"] > max_bytes:
            raise ProviderError(f"Telegram file of {info['file_size']} bytes", retryable=False, code="file_too_large")
        if not (info or {}).get("file_path"):
            raise ProviderError("Telegram getFile: no file_path", retryable=False)
        return read_capped(f"{self.base_url}/file/bot{token}/{info['file_path']}", max_bytes, self.timeout,
                           "Telegram file")


def _chat_id(chat_id: str):
    return int(chat_id) if chat_id.lstrip("-").isdigit() else chat_id


class TelegramChannel(ChannelAdapter):
    names_from_profile = False
    needs_site_url = True

    def __init__(self, config):
        self.client = TelegramClient(config["TELEGRAM_API_BASE"], config["PROVIDER_TIMEOUT_SECONDS"])

    def parse(self, body, channel=None, app_id=None):
        try:
            return [parse_update(body)], []
        except UnsupportedUpdate as e:
            return [], [str(e)]

    def register_webhook(self, channel, site_url):
        """getMe checks the token (refused: token_refused), then setWebhook with a fresh secret."""
        try:
            me = self.client.get_me(channel.token)
        except ProviderError as e:
            raise ProviderError(f"token: Telegram refused it ({e})" if not e.retryable
                                else f"Telegram did not answer; try again ({e})", e.retryable,
                                code="token_refused") from None
        channel.bot_username = (me or {}).get("username")
        if not channel.webhook_secret:
            channel.webhook_secret = secrets.token_urlsafe(32)
        try:
            self.client.set_webhook(channel.token, f"{site_url}/webhooks/telegram/{channel.id}", channel.webhook_secret)
        except ProviderError as e:
            raise ProviderError(f"Telegram refused the webhook: {e}" if not e.retryable
                                else f"Telegram did not answer; try again ({e})", e.retryable,
                                code="webhook_refused") from None

    def unregister_webhook(self, channel):
        """deleteWebhook: Telegram keeps the bot's updates (24 h) until a webhook is set again."""
        if channel.token:
            self.client.delete_webhook(channel.token)

    def send(self, channel, address, text, file, reference):
        if file is None:
            return str(self.client.send_message(channel.token, address, text)["message_id"])
        caption = text if len(text) <= CAPTION_MAX else ""
        result = self.client.send_file(channel.token, address, file, caption)
        if text and not caption:
            self.client.send_message(channel.token, address, text)
        return str(result["message_id"])

    def fetch_file(self, channel, ref, max_bytes):
        return self.client.download(channel.token, ref["file_id"], max_bytes)

    def acknowledge(self, channel, ack):
        self.client.answer_callback_query(channel.token, ack["callback_query_id"])

    def profile_name(self, channel, user_id):
        return None  # names come with every update


# -- parsing ----------------------------------------------------------------------------------
def parse_update(update):
    """A Telegram Update as one channel event (InboundMessage or InboundEdit).

    ValueError when malformed; UnsupportedUpdate for well-formed updates with nothing for an
    operator (group chats, the bot being blocked).
    """
    if not isinstance(update, dict) or not _is_id(update.get("update_id")):
        raise ValueError("an Update is an object with an integer update_id")
    for key in ("message", "edited_message", "callback_query"):
        if key in update and not isinstance(update[key], dict):
            raise ValueError(f"{key} must be an object")
    update_id = str(update["update_id"])
    if "callback_query" in update:
        return _callback_query(update_id, update["callback_query"])
    message = update.get("message") or update.get("edited_message")
    if message is None:
        kinds = sorted(k for k in update if k != "update_id")
        raise UnsupportedUpdate(f"update kind {', '.join(kinds) or 'empty'} is not routed")
    sender, chat = _sender_and_chat(message)
    if "edited_message" in update and "message" not in update:
        text = _text(message.get("text")) or _text(message.get("caption"))
        return InboundEdit(user_id=str(sender["id"]), provider_message_id=_message_id(message) or "",
                           text=text or None, payload=_location(message.get("location")))
    kind, text, payload, files = _content(message)
    return InboundMessage(external_id=update_id, user_id=str(sender["id"]), address=str(chat["id"]),
                          name=_name(sender), kind=kind, text=text, payload=payload, files=files,
                          provider_message_id=_message_id(message))


def _sender_and_chat(message: dict) -> tuple[dict, dict]:
    sender, chat = message.get("from"), message.get("chat")
    if not isinstance(sender, dict) or not _is_id(sender.get("id")) \
            or not isinstance(chat, dict) or not _is_id(chat.get("id")):
        raise ValueError("message.from.id and message.chat.id must be integers")
    if chat.get("type", "private") != "private":
        raise UnsupportedUpdate(f"messages from {chat.get('type')} chats are not routed")
    return sender, chat


def _message_id(message: dict) -> str | None:
    return str(message["message_id"]) if _is_id(message.get("message_id")) else None


def _callback_query(update_id: str, query: dict) -> InboundMessage:
    """A press on an inline button: a `button` message, acknowledged with answerCallbackQuery."""
    sender, query_id = query.get("from"), query.get("id")
    if not isinstance(sender, dict) or not _is_id(sender.get("id")) or not isinstance(query_id, str):
        raise ValueError("callback_query.id and callback_query.from.id are required")
    message = query.get("message") if isinstance(query.get("message"), dict) else {}
    chat = message.get("chat") if isinstance(message.get("chat"), dict) else {}
    if chat.get("type", "private") != "private":
        raise UnsupportedUpdate(f"button presses in {chat.get('type')} chats are not routed")
    data = _text(query.get("data")) or _text(query.get("game_short_name"))
    title = _button_title(message, data) or data
    return InboundMessage(external_id=update_id, user_id=str(sender["id"]),
                          address=str(chat["id"]) if _is_id(chat.get("id")) else str(sender["id"]),
                          name=_name(sender), kind="button", text=title, payload={"title": title, "data": data},
                          ack={"callback_query_id": query_id[:200]})


def _button_title(message: dict, data: str) -> str:
    """The label of the pressed button, from the keyboard of the message it was under."""
    rows = ((message.get("reply_markup") or {}) if isinstance(message.get("reply_markup"), dict) else {}) \
        .get("inline_keyboard")
    for row in rows if isinstance(rows, list) else []:
        for button in row if isinstance(row, list) else []:
            if isinstance(button, dict) and button.get("callback_data") == data:
                return _text(button.get("text"))
    return ""


def _file(obj, name: str, content_type: str) -> InboundFile | None:
    if not isinstance(obj, dict) or not isinstance(obj.get("file_id"), str):
        return None
    size = obj.get("file_size")
    return InboundFile(ref={"file_id": obj["file_id"][:500]}, name=_text(obj.get("file_name"))[:300] or name,
                       content_type=_text(obj.get("mime_type"))[:100] or content_type,
                       size=size if _is_id(size) and size >= 0 else None)


def _largest(sizes) -> dict | None:
    """Telegram does not promise an order of photo sizes: the largest by area."""
    sizes = [s for s in sizes if isinstance(s, dict)] if isinstance(sizes, list) else []
    return max(sizes, key=lambda s: (s.get("width") or 0) * (s.get("height") or 0), default=None)


def _content(message: dict) -> tuple[str, str, dict | None, tuple]:
    """(kind, text or caption, payload, files) of a Message. Order matters: `animation` also
    sets `document`, `venue` also sets `location`."""
    caption = _text(message.get("text")) or _text(message.get("caption"))
    media = [("animation", "video", "animation.mp4", "video/mp4"),
             ("video", "video", "video.mp4", "video/mp4"),
             ("video_note", "video", "video_note.mp4", "video/mp4"),
             ("voice", "voice", "voice.ogg", "audio/ogg"),
             ("audio", "audio", "audio.mp3", "audio/mpeg"),
             ("document", "document", "document", "application/octet-stream")]
    if "photo" in message:
        file = _file(_largest(message["photo"]), "photo.jpg", "image/jpeg")
        return ("image", caption, None, (file,)) if file else _unshowable("a photo")
    for field_name, kind, name, content_type in media:
        if field_name in message:
            file = _file(message[field_name], name, content_type)
            return (kind, caption, None, (file,)) if file else _unshowable(f"a {field_name.replace('_', ' ')}")
    if "sticker" in message:
        sticker = message["sticker"] if isinstance(message["sticker"], dict) else {}
        fmt = ("sticker.tgs", "application/x-tgsticker") if sticker.get("is_animated") else \
            ("sticker.webm", "video/webm") if sticker.get("is_video") else ("sticker.webp", "image/webp")
        file = _file(sticker, *fmt)
        emoji = _text(sticker.get("emoji"))[:20]
        return ("sticker", emoji, {"emoji": emoji}, (file,)) if file else _unshowable("a sticker")
    if isinstance(message.get("venue"), dict):
        venue = message["venue"]
        place = _location(venue.get("location"))
        if place:
            return "location", caption, {**place, "title": _text(venue.get("title"))[:300],
                                         "address": _text(venue.get("address"))[:500]}, ()
    if "location" in message:
        place = _location(message["location"])
        return ("location", caption, place, ()) if place else _unshowable("a location")
    if isinstance(message.get("contact"), dict):
        contact = message["contact"]
        name = " ".join(n for n in (_text(contact.get("first_name")), _text(contact.get("last_name"))) if n)
        return "contact", "", {"name": name[:300], "phone": _text(contact.get("phone_number"))[:50]}, ()
    if caption:
        return "text", caption, None, ()
    what = next((label for key, label in UNSHOWABLE.items() if key in message), None)
    return _unshowable(what or "a kind of message")


def _unshowable(what: str):
    return "system", f"The client sent {what}, which cannot be shown here", {"unsupported": what}, ()


def _location(value) -> dict | None:
    if not isinstance(value, dict):
        return None
    lat, lon = value.get("latitude"), value.get("longitude")
    if not all(isinstance(v, (int, float)) and not isinstance(v, bool) for v in (lat, lon)) \
            or not (-90 <= lat <= 90 and -180 <= lon <= 180):
        return None
    return {"latitude": lat, "longitude": lon}


def _name(sender: dict) -> str:
    names = [sender.get("first_name"), sender.get("last_name")]
    name = " ".join(n for n in names if isinstance(n, str) and n) or sender.get("username") or str(sender["id"])
    return _text(str(name))[:300]


def _is_id(value) -> bool:
    """Telegram ids fit in 64 bits; anything larger is not an id (and would not fit our columns)."""
    return isinstance(value, int) and not isinstance(value, bool) and -2**63 <= value < 2**63


def _text(value) -> str:
    """A string a database can store (no NUL characters, no lone surrogates), or ''."""
    if not isinstance(value, str):
        return ""
    return value.replace("\x00", "").encode("utf-8", "replace").decode("utf-8")
