"""The visitor protocol of website chat (docs/api.md, "Website chat"): the widget script, and the
routes a visitor's browser calls with `Authorization: Visitor <token>`.

Console bearer tokens open nothing here and visitor tokens nothing under /api (they are not
bearer tokens). Browsers may call from the channel's allowed origins only: any other Origin is
refused (403) before anything runs and gets no CORS headers.
"""
import io
import json
from pathlib import Path
from typing import Annotated
from urllib.parse import urlsplit

from flask import Blueprint, Response, current_app, g, request, send_file
from pydantic import AfterValidator, Field

from app.api import rate_limits, uploads
from app.api.contract import Answer, Body, Text, contract
from app.api.errors import ApiError
from app.api.events import _frame, event_stream
from app.channels.web import visitor_key, widget_setting
from app.chats import service, visitors
from app.extensions import db
from app.services import services

bp = Blueprint("widget", __name__, url_prefix="/widget")
# `chatflow serve --demo`'s shop page (a page, not part of the API).
demo = Blueprint("demo", __name__)
ASSETS = Path(__file__).resolve().parent.parent / "widget"
SCRIPT = ASSETS / "widget.js"


def _email(value: str | None) -> str | None:
    if value and ("@" not in value or value.startswith("@") or value.endswith("@") or " " in value.strip()):
        raise ValueError("must be an e-mail address")
    return value.strip() if value else None


class SessionIn(Body):
    name: Text(200, description="the visitor's name (the channel's ask_contact form)") = None
    email: Annotated[Text(254, description="the visitor's e-mail address"), AfterValidator(_email)] = None


class SessionOut(Answer):
    token: str = Field(description="send as Authorization: Visitor <token>; kept by the widget in localStorage")
    contact_id: int


class VisitorText(Body):
    text: Text(service.MAX_TEXT, min_length=1, pattern=r"\S")


class VisitorFile(Answer):
    id: int
    name: str
    content_type: str
    size: int | None


class VisitorMessage(Answer):
    id: int
    direction: str = Field(description="in: the visitor's; out: the operator's")
    kind: str
    text: str
    created_at: str
    attachments: list[VisitorFile]


class Conversation(Answer):
    chat_id: int | None = Field(description="null until the visitor's first message")
    state: str | None = Field(description="the chat's state; completed: the widget offers a new conversation")
    operator_name: str | None
    messages: list[VisitorMessage]


# -- the channel, its origins, the visitor ---------------------------------------------------------
def _origin(url: str) -> str:
    parts = urlsplit(url)
    return f"{parts.scheme}://{parts.netloc}".lower()


def _channel(widget_key: str):
    channel = visitors.channel_by_key(widget_key)
    if channel is None:
        raise ApiError(404, "not_found", "no website chat has this widget key")
    return channel


def allowed(channel, origin: str | None) -> bool:
    """No Origin (not a browser's cross-origin call), our own, or one the channel allows."""
    if not origin:
        return True
    own = _origin(request.host_url)
    return origin.lower() in {own, *(o.lower() for o in widget_setting(channel, "allowed_origins"))}


@bp.before_request
def _check_origin():
    widget_key = (request.view_args or {}).get("widget_key")
    if request.endpoint == "widget.script" or widget_key is None:
        return None
    g.web_channel = channel = _channel(widget_key)
    if not allowed(channel, request.headers.get("Origin")):
        raise ApiError(403, "origin_not_allowed", "this website may not use this chat widget "
                       "(add its origin to the channel's allowed_origins)")
    return None


@bp.after_request
def _cors(response):
    origin = request.headers.get("Origin")
    channel = g.get("web_channel")
    if origin and channel is not None and allowed(channel, origin):
        response.headers["Access-Control-Allow-Origin"] = origin
        response.headers["Access-Control-Allow-Headers"] = "Authorization, Content-Type"
        response.headers["Access-Control-Allow-Methods"] = "GET, POST, OPTIONS"
        response.headers["Access-Control-Max-Age"] = "600"
    response.headers["Vary"] = "Origin"
    return response


def _limit(name: str, key: str, config_key: str) -> None:
    extensions = current_app.extensions
    if "chatflow.rate_limits" not in extensions:   # one set of counters (one Redis client) per app
        extensions["chatflow.rate_limits"] = rate_limits.build(current_app.config)
    counters = extensions["chatflow.rate_limits"]
    retry_after = rate_limits.check(counters, f"{name}:{key}", current_app.config[config_key])
    if retry_after is not None:
        error = ApiError(429, "too_many_requests", f"too many requests ({name.replace('_', ' ')}); "
                         f"try again in {retry_after} s", {"retry_after": retry_after})
        error.headers = {"Retry-After": str(retry_after)}
        raise error


def _visitor(channel):
    scheme, _, token = request.headers.get("Authorization", "").partition(" ")
    if scheme.lower() != "visitor" or not token.strip():
        raise ApiError(401, "unauthorized", "send Authorization: Visitor <token> (console tokens are not accepted)")
    session = visitors.session_for(channel, token.strip())
    if session is None:
        raise ApiError(401, "unauthorized", "the visitor token is not valid for this widget; start a new session")
    return session


# -- routes -----------------------------------------------------------------------------------------
@bp.get("/<widget_key>.js")
@contract(media_type="text/javascript")
def script(widget_key):
    """The widget script for a page: `<script src=".../widget/{widget_key}.js" async></script>`."""
    channel = _channel(widget_key)
    config = {"key": channel.widget_key, "base": request.host_url.rstrip("/"),
              "title": widget_setting(channel, "title"), "welcome": widget_setting(channel, "welcome_text"),
              "askContact": bool(widget_setting(channel, "ask_contact"))}
    body = f"(function(CONFIG){{\n{SCRIPT.read_text()}\n}})({json.dumps(config)});\n"
    return Response(body, mimetype="text/javascript",
                    headers={"Cache-Control": "public, max-age=60", "X-Content-Type-Options": "nosniff"})


@bp.post("/api/<widget_key>/sessions")
@contract(body=SessionIn, body_optional=True, answer=SessionOut, status=201)
def start_session(widget_key, body: SessionIn | None):
    """Start a visitor session: a random token (stored hashed) bound to this channel; the visitor becomes a contact."""
    channel = g.web_channel
    _limit("sessions_per_ip", f"{channel.id}:{request.remote_addr}", "VISITOR_SESSIONS_PER_IP")
    token, session = visitors.start_session(channel, body.name if body else None, body.email if body else None)
    db.session.commit()
    return {"token": token, "contact_id": session.contact_id}, 201


@bp.get("/api/<widget_key>/messages")
@contract(answer=Conversation, headers={"Authorization": "Visitor <token>"})
def conversation(widget_key):
    """The visitor's current conversation: their open chat, else their latest one."""
    return visitors.conversation(_visitor(g.web_channel))


@bp.post("/api/<widget_key>/messages")
@contract(body=VisitorText, files=("a file (part `file`) with an optional text (`text`)", False,
                                   {"text": {"type": "string", "maxLength": service.MAX_TEXT}}),
          answer=VisitorMessage, status=201, headers={"Authorization": "Visitor <token>"})
def write(widget_key, body: VisitorText | None):
    """The visitor writes (JSON text, or a multipart file with an optional text); a first message,
    or one after a completed chat, starts a new chat routed like any channel's."""
    channel = g.web_channel
    session = _visitor(channel)
    _limit("messages_per_visitor", str(session.id), "VISITOR_MESSAGES_PER_VISITOR")
    _limit("messages_per_ip", f"{channel.id}:{request.remote_addr}", "VISITOR_MESSAGES_PER_IP")
    if body is None:
        text, file = uploads.reply_upload(current_app.config["MAX_FILE_BYTES"], service.MAX_TEXT)
    else:
        text, file = body.text, None
    message = visitors.write(channel, session, text, file, services().jobs)
    answer = visitors.visitor_message(message)
    db.session.commit()
    return answer, 201


@bp.get("/api/<widget_key>/files/<int:file_id>")
@contract(media_type="application/octet-stream", headers={"Authorization": "Visitor <token>"})
def file(widget_key, file_id):
    """A file of the visitor's own conversation (404 for any other), always as a download."""
    attachment = visitors.attachment_of(_visitor(g.web_channel), file_id)
    content = services().files.get(attachment.storage_key or "") \
        if attachment is not None and attachment.status == "stored" else None
    if content is None:
        raise ApiError(404, "not_found", f"your conversation has no file {file_id}")
    response = send_file(io.BytesIO(content), mimetype="application/octet-stream", as_attachment=True,
                         download_name=attachment.name or f"file-{file_id}", max_age=0)
    response.headers["X-Content-Type-Options"] = "nosniff"
    return response


@bp.get("/api/<widget_key>/events")
@contract(media_type="text/event-stream", headers={"Authorization": "Visitor <token>"})
def events(widget_key):
    """The visitor's live events (Server-Sent Events): `message` (a reply: read the conversation
    again), `operator_joined` (with operator_name), `chat_completed`."""
    channel = g.web_channel
    session = _visitor(channel)
    app = current_app._get_current_object()
    subscription = services(app).events.subscribe(visitor_key(channel.id, session.visitor_id))
    keepalive = app.config["EVENTS_KEEPALIVE_SECONDS"]
    db.session.close()  # a stream may last long: it holds no database connection

    def stream():
        yield "retry: 2000\n" + _frame("ready", {"type": "ready"})
        while not subscription.ended:
            event = subscription.get(timeout=keepalive)
            yield _frame(event["type"], event) if event is not None else ": keep-alive\n\n"

    return event_stream(stream(), subscription)


@demo.get("/demo")
def demo_page():
    """A pretend shop page with the demo web channel's widget on it."""
    channel = visitors.demo_channel()
    if channel is None:
        raise ApiError(404, "not_found", "no demo website chat: start with `chatflow serve --demo`")
    page = (ASSETS / "demo.html").read_text().replace("{{SCRIPT}}", f"/widget/{channel.widget_key}.js")
    return Response(page, mimetype="text/html")
