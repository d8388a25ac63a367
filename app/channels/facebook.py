"""Facebook Messenger: webhook signatures and page events turned into channel events, the Graph
API calls we make.

The Graph base URL comes from FACEBOOK_GRAPH_BASE so tests talk to a local fake that speaks
the real format. Access tokens travel as the `access_token` query parameter: never log a
URL built here.
"""
import hashlib
import hmac
import json
import mimetypes
from datetime import datetime, timezone
from urllib.parse import urlencode

from app.channels.base import (ChannelAdapter, InboundEdit, InboundFile, InboundMessage, ProviderError, Receipt,
                               ThreadControl, provider_call)
from app.channels.download import read_capped

DEFAULT_BASE = "https://graph.facebook.com/v25.0"
# Our Send API calls carry this metadata; Messenger echoes it back, so we know our own echoes.
ECHO_MARK = "chatflow:"
# Attachment type -> (message kind, file name, content type) for files we download.
FILE_TYPES = {"image": ("image", "image.jpg", "image/jpeg"), "video": ("video", "video.mp4", "video/mp4"),
              "audio": ("audio", "audio.mp4", "audio/mp4"), "file": ("document", "file", "application/octet-stream"),
              "sticker": ("sticker", "sticker.png", "image/png")}
# Shares that arrive as a link: shown as text with their URL.
LINK_TYPES = {"fallback": "a link", "share": "a link", "reel": "a reel", "ig_reel": "a reel",
              "post": "a post", "ig_post": "a post", "story_mention": "a story"}
LIKE_STICKER = 369239263222822


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


# Page events Chatflow handles (README, "Facebook Messenger"): a page is subscribed to these.
SUBSCRIBED_FIELDS = ("messages", "messaging_postbacks", "message_echoes", "message_deliveries", "message_reads",
                     "message_edits", "messaging_handovers", "standby")
# What the login dialog asks for: list the user's pages, message as them, subscribe them to our webhook.
LOGIN_SCOPES = ("pages_show_list", "pages_messaging", "pages_manage_metadata")
TOKEN_INVALID = 190   # OAuthException: the token expired, was revoked or is otherwise invalid (any subcode)


def dialog_url(dialog_base: str, app_id: str, redirect_uri: str, state: str) -> str:
    """The OAuth login dialog the admin's browser is sent to (response_type=code is the default)."""
    return f"{dialog_base.rstrip('/')}/dialog/oauth?" + urlencode(
        {"client_id": app_id, "redirect_uri": redirect_uri, "state": state, "scope": ",".join(LOGIN_SCOPES)})


class GraphClient:
    def __init__(self, base_url: str = DEFAULT_BASE, timeout: float = 10.0):
        self.base_url, self.timeout = base_url.rstrip("/"), timeout

    def _call(self, method: str, path: str, token: str | None, json: dict | None = None, params: dict | None = None,
              data: dict | None = None, files: dict | None = None) -> dict:
        auth = {"access_token": token} if token is not None else {}
        response, body = provider_call(f"Graph {path}", method, f"{self.base_url}/{path}",
                                       params={**auth, **(params or {})}, json=json, data=data, files=files,
                                       timeout=self.timeout * (6 if files else 1))
        if response.status_code == 200 and "error" not in body:
            return body
        error = body.get("error") if isinstance(body.get("error"), dict) else {}
        message = error.get("message") or f"HTTP {response.status_code}"
        # 5xx, rate limits (4, 17, 32, 613) and transient errors pass; token and permission errors will not.
        retryable = response.status_code >= 500 or error.get("code") in (1, 2, 4, 17, 32, 613) \
            or bool(error.get("is_transient"))
        raise ProviderError(f"Graph {path}: {error.get('code', response.status_code)} {message}", retryable,
                            code="token_invalid" if error.get("code") == TOKEN_INVALID else None)

    # -- login (Meta "Manually Build a Login Flow", "Long-Lived Access Tokens") --------------------
    def user_token(self, app_id: str, app_secret: str, redirect_uri: str, code: str) -> str:
        """The dialog's `code` for a (short-lived) user token; redirect_uri must be the dialog's."""
        return self._call("GET", "oauth/access_token", None, params={
            "client_id": app_id, "client_secret": app_secret, "redirect_uri": redirect_uri, "code": code})["access_token"]

    def long_lived_token(self, app_id: str, app_secret: str, user_token: str) -> str:
        """A user token that lasts about 60 days; the page tokens listed with it do not expire."""
        return self._call("GET", "oauth/access_token", None, params={
            "grant_type": "fb_exchange_token", "client_id": app_id, "client_secret": app_secret,
            "fb_exchange_token": user_token})["access_token"]

    # -- pages (Graph "Page Subscribed Apps") -----------------------------------------------------
    def subscribe(self, page_id: str, page_access_token: str) -> None:
        """Have Meta send this page's events to our app's webhook (the full list: a POST may replace it)."""
        self._call("POST", f"{page_id}/subscribed_apps", page_access_token,
                   params={"subscribed_fields": ",".join(SUBSCRIBED_FIELDS)})

    def unsubscribe(self, page_id: str, page_access_token: str) -> None:
        self._call("DELETE", f"{page_id}/subscribed_apps", page_access_token)

    def send_message(self, page_access_token: str, psid: str, text: str, metadata: str = "") -> dict:
        message = {"text": text, **({"metadata": metadata} if metadata else {})}
        return self._call("POST", "me/messages", page_access_token,
                          {"recipient": {"id": psid}, "messaging_type": "RESPONSE", "message": message})

    def send_attachment(self, page_access_token: str, psid: str, file, metadata: str = "") -> dict:
        """One file, uploaded with the message (multipart `filedata`): an image, or any file."""
        message = {"attachment": {"type": "image" if file.is_image else "file", "payload": {"is_reusable": False}},
                   **({"metadata": metadata} if metadata else {})}
        return self._call("POST", "me/messages", page_access_token,
                          data={"recipient": json.dumps({"id": psid}), "messaging_type": "RESPONSE",
                                "message": json.dumps(message)},
                          files={"filedata": (file.name, file.content, file.content_type)})

    def profile(self, page_access_token: str, psid: str) -> dict:
        return self._call("GET", psid, page_access_token, params={"fields": "first_name,last_name"})

    def pages(self, user_access_token: str, most: int = 1000) -> list[dict]:
        """The pages a user manages: [{id, name, access_token}] (GET /me/accounts, every page of the list)."""
        pages, params = [], {"fields": "id,name,access_token,tasks", "limit": 100}
        while len(pages) < most:
            body = self._call("GET", "me/accounts", user_access_token, params=params)
            pages += [{"id": str(p["id"]), "name": p.get("name") or str(p["id"]), "access_token": p.get("access_token")}
                      for p in body.get("data", []) if isinstance(p, dict) and p.get("id")]
            after = ((body.get("paging") or {}).get("cursors") or {}).get("after")
            if not (body.get("paging") or {}).get("next") or not after:
                return pages
            params = {**params, "after": after}
        return pages


class FacebookChannel(ChannelAdapter):
    names_from_profile = True
    needs_site_url = False   # the webhook URL is set once for the app, in Meta's dashboard

    def __init__(self, config):
        self.client = GraphClient(config["FACEBOOK_GRAPH_BASE"], config["PROVIDER_TIMEOUT_SECONDS"])
        self.dialog_base = config["FACEBOOK_DIALOG_BASE"]

    def parse(self, body, channel=None, app_id=None):
        return parse_webhook(body, app_id or "")

    def register_webhook(self, channel, site_url):
        """The app's webhook URL is set once in Meta's dashboard; each page must be subscribed to it."""
        try:
            self.client.subscribe(channel.page_id, channel.page_access_token)
        except ProviderError as e:
            raise ProviderError(f"Facebook refused to subscribe page {channel.page_id}: {e}" if not e.retryable
                                else f"Facebook did not answer; try again ({e})", e.retryable,
                                code=e.code or "subscription_refused") from None

    def unregister_webhook(self, channel):
        self.client.unsubscribe(channel.page_id, channel.page_access_token)

    def send(self, channel, address, text, file, reference):
        """Messenger has no captions: a file and its text are two messages, the file first."""
        metadata = f"{ECHO_MARK}{reference}"
        message_id = None
        if file is not None:
            message_id = self.client.send_attachment(channel.page_access_token, address, file, metadata)["message_id"]
        if text:
            sent = self.client.send_message(channel.page_access_token, address, text, metadata)
            message_id = message_id or sent["message_id"]
        return message_id

    def fetch_file(self, channel, ref, max_bytes):
        # CDN links need no token and expire on Meta's schedule: fetched at once.
        return read_capped(ref["url"], max_bytes, self.client.timeout, "Messenger attachment")

    def acknowledge(self, channel, ack):
        return None

    def profile_name(self, channel, user_id):
        body = self.client.profile(channel.page_access_token, user_id)
        name = " ".join(str(body[k]) for k in ("first_name", "last_name") if body.get(k))
        return _text(name)[:300] or None


# -- parsing ----------------------------------------------------------------------------------
def parse_webhook(body, our_app_id: str = "") -> tuple[list[tuple[str, object]], list[str]]:
    """((page id, event) pairs, skipped reasons) of a webhook POST body; ValueError if it is not
    a page event batch."""
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
                event, reason = _parse_item(item, standby, our_app_id)
                if event is not None:
                    events.append((page_id, event))
                else:
                    skipped.append(reason)
    return events, skipped


def _psid(party) -> str | None:
    value = party.get("id") if isinstance(party, dict) else None
    if not isinstance(value, (str, int)) or isinstance(value, bool) or not str(value).isascii() \
            or not str(value).isdigit() or len(str(value)) > 64:
        return None
    return str(value)


def _parse_item(item, standby: bool, our_app_id: str):
    if not isinstance(item, dict):
        return None, "an event that is not an object"
    message = item.get("message") if isinstance(item.get("message"), dict) else None
    echo = bool(message and message.get("is_echo"))
    # An echo goes from the page to the client: the client is its recipient.
    psid = _psid(item.get("recipient") if echo else item.get("sender"))
    if psid is None:
        return None, "an event without a sender id"
    if isinstance(item.get("pass_thread_control"), dict):
        return ThreadControl(psid, passed=True), ""
    if isinstance(item.get("take_thread_control"), dict):
        return ThreadControl(psid, passed=False), ""
    for key, status in (("delivery", "delivered"), ("read", "read")):
        if isinstance(item.get(key), dict):
            watermark = item[key].get("watermark")
            if not isinstance(watermark, int) or isinstance(watermark, bool) or not 0 <= watermark < 2**53:
                return None, f"a {key} without a watermark"
            return Receipt(psid, status, datetime.fromtimestamp(watermark / 1000, timezone.utc)), ""
    if isinstance(item.get("message_edit"), dict):
        edit = item["message_edit"]
        if not isinstance(edit.get("mid"), str) or not isinstance(edit.get("text"), str):
            return None, "a message_edit without mid and text"
        return InboundEdit(psid, edit["mid"][:200], text=_text(edit["text"])), ""
    if isinstance(item.get("postback"), dict):
        return _postback(item, psid, standby)
    if message is None:
        kinds = sorted(k for k in item if k not in ("sender", "recipient", "timestamp"))
        return None, f"{', '.join(kinds) or 'empty'} events are not routed"
    mid = message.get("mid")
    if not isinstance(mid, str) or not mid or len(mid) > 200:
        return None, "a message without a mid"
    if echo:
        metadata, app_id = message.get("metadata"), str(message.get("app_id") or "")
        if isinstance(metadata, str) and metadata.startswith(ECHO_MARK) or (our_app_id and app_id == our_app_id):
            return None, "echo of our own message"
    kind, text, payload, files = _content(message)
    return InboundMessage(external_id=mid, user_id=psid, address=psid, kind=kind, text=text, payload=payload,
                          files=files, provider_message_id=mid, bot_holds=standby and not echo,
                          direction="out" if echo else "in",
                          origin=(f"app {message['app_id']}" if message.get("app_id") else "page") if echo else None
                          ), ""


def _postback(item: dict, psid: str, standby: bool):
    postback = item["postback"]
    title, data = _text(postback.get("title"))[:300], _text(postback.get("payload"))[:1000]
    mid = postback.get("mid") if isinstance(postback.get("mid"), str) else None
    stamp = item.get("timestamp")
    if not mid and not isinstance(stamp, int):
        return None, "a postback without mid or timestamp"
    return InboundMessage(external_id=(mid or f"postback:{psid}:{stamp}")[:200], user_id=psid, address=psid,
                          kind="button", text=title or data, payload={"title": title, "data": data},
                          bot_holds=standby), ""


def _content(message: dict) -> tuple[str, str, dict | None, tuple]:
    """(kind, text, payload, files) of a message: its text and every attachment, one message."""
    text = _text(message.get("text"))
    quick_reply = message.get("quick_reply")
    if isinstance(quick_reply, dict):
        return "button", text, {"title": text, "data": _text(quick_reply.get("payload"))[:1000]}, ()
    attachments = [a for a in message.get("attachments") or [] if isinstance(a, dict)] \
        if isinstance(message.get("attachments"), list) else []
    if any(a.get("type") == "sticker" for a in attachments):
        # During Meta's sticker transition one sticker arrives as a `sticker` and an `image`.
        attachments = [a for a in attachments if a.get("type") != "image"]
    kinds, files, payload, lines, unknown = [], [], None, [], []
    for attachment in attachments:
        kind_of, body = attachment.get("type"), attachment.get("payload")
        body = body if isinstance(body, dict) else {}
        url = body.get("url") if isinstance(body.get("url"), str) and body["url"].startswith("http") else None
        if kind_of == "image" and (body.get("sticker_id") or message.get("sticker_id")):
            kind_of = "sticker"
        if kind_of in FILE_TYPES and url:
            kind, name, content_type = FILE_TYPES[kind_of]
            name = _file_name(url) or name
            if kind_of == "file":   # Messenger gives no type; the CDN's file name usually tells it
                content_type = mimetypes.guess_type(name)[0] or content_type
            kinds.append(kind)
            files.append(InboundFile(ref={"url": url[:2000]}, name=name, content_type=content_type))
            if kind == "sticker":
                payload = {"sticker_id": body.get("sticker_id") or message.get("sticker_id"),
                           "like": (body.get("sticker_id") or message.get("sticker_id")) == LIKE_STICKER}
        elif kind_of == "location" and isinstance(body.get("coordinates"), dict):
            place = body["coordinates"]
            lat, lon = place.get("lat"), place.get("long")
            if all(isinstance(v, (int, float)) and not isinstance(v, bool) for v in (lat, lon)):
                kinds.append("location")
                payload = {"latitude": lat, "longitude": lon, "title": _text(attachment.get("title"))[:300],
                           "address": ""}
        elif kind_of in LINK_TYPES:
            title = _text(attachment.get("title") or body.get("title"))[:300]
            link = url or (attachment.get("url") if isinstance(attachment.get("url"), str) else "")
            lines.append(" ".join(p for p in (f"Shared {LINK_TYPES[kind_of]}:", title, _text(link)[:2000]) if p))
        else:
            unknown.append(str(kind_of)[:40])
    if lines:
        text = "\n".join([text, *lines] if text else lines)
    if not (files or kinds or text):
        what = f"an attachment of type {', '.join(unknown)}" if unknown else "an empty message"
        return "system", f"The client sent {what}, which cannot be shown here", {"unsupported": what}, ()
    kind = next((k for k in ("location", "image", "video", "audio", "sticker", "document") if k in kinds), "text")
    if len(set(kinds)) > 1 and "location" not in kinds:
        kind = "document" if "document" in kinds else kind
    return kind, text, payload, tuple(files)


def _file_name(url: str) -> str:
    """The last path segment of a CDN URL when it looks like a file name."""
    name = url.split("?")[0].rstrip("/").rsplit("/", 1)[-1]
    return name[:300] if "." in name and len(name) <= 300 else ""


def _text(value) -> str:
    if not isinstance(value, str):
        return ""
    return value.replace("\x00", "").encode("utf-8", "replace").decode("utf-8")
