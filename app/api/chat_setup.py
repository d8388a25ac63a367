"""Admin: queues and their operators, channels, settings."""
from typing import Annotated, Any, Literal

from urllib.parse import urlsplit

from flask import Blueprint, request
from pydantic import AfterValidator, ConfigDict, Field, StrictFloat, model_serializer, model_validator

from pydantic_core import PydanticCustomError

from app import channels
from app.channels.web import WIDGET_DEFAULTS, widget_setting
from app.api.auth import admin, authenticate
from app.api.contract import Answer, Body, Bool, Int, Name, Page, Text, Timestamp, contract, partial
from app.api.errors import ApiError
from app.chats import admin as setup
from app.chats import preview, queries, settings
from app.extensions import db
from app.services import services

bp = Blueprint("chat_setup", __name__, url_prefix="/api")
bp.before_request(authenticate)

SOUND_TYPES = ("audio/mpeg", "audio/ogg", "audio/wav", "audio/x-wav", "audio/webm", "audio/aac", "audio/mp4")
SOUND_MAX_BYTES = 2 * 1024 * 1024
MAX_MINUTES = 30 * 24 * 60


def _minutes(value: float) -> float:
    if not 0 < value <= MAX_MINUTES:
        raise PydanticCustomError("out_of_range", "must be above 0 and at most 30 days")
    return value


Minutes = Annotated[StrictFloat, AfterValidator(_minutes),
                    Field(allow_inf_nan=False, json_schema_extra={"exclusiveMinimum": 0, "maximum": MAX_MINUTES})]


def jobs():
    return services().jobs


class QueueIn(Body):
    name: Name()
    routing_rule: Literal["all", "least_busy"]
    completion_timeout_minutes: Minutes | None = Field(
        None, description="minutes after the last outgoing message, above 0 and at most 30 days; null = never")
    lifecycle_process: Text(description="BPMN process key; default ChatLifecycle") = "ChatLifecycle"


QueueChange = partial(QueueIn)


class QueueOut(Answer):
    id: int
    name: str
    routing_rule: str
    completion_timeout_minutes: float | None
    lifecycle_process: str
    created_at: Timestamp


class OperatorIn(Body):
    """Exactly one of the two."""
    user_id: Int | None = None
    role_id: Int | None = None


class OperatorOut(Answer):
    id: int
    queue_id: int
    user_id: int | None
    role_id: int | None


def _origin(value: str) -> str:
    parts = urlsplit(value)
    if parts.scheme not in ("http", "https") or not parts.hostname or parts.path not in ("", "/") \
            or parts.query or parts.fragment or parts.username:
        raise PydanticCustomError("invalid_origin", "must be an origin: scheme://host[:port], no path")
    return f"{parts.scheme}://{parts.netloc}".lower()


Origin = Annotated[str, Field(max_length=300, examples=["https://shop.example.com"]), AfterValidator(_origin)]


class ChannelFields(Body):
    name: Name()
    token: Text(300, description="Telegram bot token") = None
    page_id: Text(100, description="Facebook page id") = None
    page_access_token: Text(1000, description="Facebook page access token") = None
    active: Bool = True
    queue_id: Int
    allowed_origins: list[Origin] = Field(None, max_length=50, description="web: sites that may show the widget")
    title: Text(100, description="web: the widget's title") = None
    welcome_text: Text(1000, description="web: the first words a visitor reads") = None
    ask_contact: Bool = Field(None, description="web: ask the visitor's name and e-mail before the chat")


class ChannelIn(ChannelFields):
    provider: Literal["telegram", "facebook", "web"]


ChannelChange = partial(ChannelFields)


class ChannelOut(Answer):
    """Never the token, page token or webhook secret."""
    id: int
    provider: str
    name: str
    active: bool
    queue_id: int
    created_at: Timestamp
    status: Literal["ok", "refused", "needs_reconnect"] = Field(
        description="ok; refused: the provider would not connect it (kept inactive); needs_reconnect: its access "
                    "token stopped working (Facebook: run the login again)")
    status_reason: str | None = Field(description="why not ok, in the provider's words")
    bot_username: str | None = Field(None, description="Telegram channels")
    page_id: str | None = Field(None, description="Facebook channels")
    widget_key: str | None = Field(None, description="web: the widget's public key (not a secret)")
    snippet: str | None = Field(None, description="web: the <script> tag for the site's pages")
    allowed_origins: list[str] | None = None
    title: str | None = None
    welcome_text: str | None = None
    ask_contact: bool | None = None

    @model_validator(mode="before")
    @classmethod
    def _web_settings(cls, channel):
        if isinstance(channel, dict) or getattr(channel, "provider", None) != "web":
            return channel
        site = (settings.get("SiteUrl") or request.host_url).rstrip("/")
        return {**{name: getattr(channel, name) for name in ("id", "provider", "name", "active", "queue_id",
                                                             "created_at", "widget_key", "status",
                                                             "status_reason")},
                **{name: widget_setting(channel, name) for name in WIDGET_DEFAULTS},
                "snippet": f'<script src="{site}/widget/{channel.widget_key}.js" async></script>'}

    @model_serializer(mode="wrap")
    def _own_provider_fields(self, write):
        out = write(self)
        own = {"telegram": ("bot_username",), "facebook": ("page_id",),
               "web": ("widget_key", "snippet", *WIDGET_DEFAULTS)}.get(self.provider, ())
        return {k: v for k, v in out.items() if k in own or k not in _PROVIDER_FIELDS}


_PROVIDER_FIELDS = {"bot_username", "page_id", "widget_key", "snippet", *WIDGET_DEFAULTS}


class FacebookPagesIn(Body):
    user_access_token: Name(1000)
    page_ids: list[Text()] | None = Field(None, description="pages to connect; absent = only list the pages")
    queue_id: Int | None = Field(None, description="queue of the new channels (needed with page_ids)")
    active: Bool = True


class FacebookPage(Answer):
    """A page the user manages; the page's access token it comes with is never answered."""
    model_config = ConfigDict(extra="ignore")
    id: str
    name: str
    channel_id: int | None = Field(description="the channel serving the page already, if any")


class SettingIn(Body):
    value: Text(500) | Int | Annotated[StrictFloat, Field(allow_inf_nan=False)] | Bool | None = Field(
        description="checked by the setting's type; null restores the default")


class WebhookResult(Answer):
    channel_id: int
    ok: bool
    error: str | None = None


class SettingOut(Answer):
    code: str
    value: Any = Field(description="secrets masked")
    default: Any
    description: str
    webhooks: list[WebhookResult] | None = Field(None, description="SiteUrl: each active channel's webhook "
                                                                   "registered anew, or why not")


class PreviewOperator(Answer):
    id: int
    login: str
    name: str
    status: str
    connected: bool
    presence: str = Field(description="available, away (active, not connected) or inactive")
    chats_in_work: int
    chats_offered: int
    holds: int = Field(description="chats in work plus chats offered: what least_busy counts")
    limit: int = Field(description="SimultaneousChats")
    last_accepted_at: Timestamp | None
    eligible: bool
    reason: str = Field(description="why they would be chosen, where they rank, or why they are left out")


class RoutingPreview(Answer):
    queue_id: int
    rule: str
    chosen: int | None = Field(description="least_busy: who a new chat would be offered to now")
    eligible: list[int] = Field(description="who would see (all) or be offered (least_busy, best first) a new chat")
    why: str
    operators: list[PreviewOperator]


@bp.post("/queues")
@admin
@contract(body=QueueIn, answer=QueueOut, status=201)
def create_queue(body: QueueIn):
    """Create a queue with its routing rule and completion timeout."""
    queue = setup.create_queue(body.model_dump(exclude_unset=True))
    db.session.commit()
    return queue, 201


@bp.get("/queues")
@admin
@contract(query=Page, answer=list[QueueOut])
def list_queues(query: Page):
    """List queues."""
    return queries.queues(query.limit, query.offset)


@bp.get("/queues/<int:queue_id>")
@admin
@contract(answer=QueueOut)
def get_queue(queue_id):
    """One queue."""
    return queries.queue(queue_id)


@bp.get("/queues/<int:queue_id>/routing-preview")
@admin
@contract(answer=RoutingPreview)
def routing_preview(queue_id):
    """Who would get a new chat of this queue now, and why (no side effect): each operator with
    status, presence, chats held, the limit, last accept and the reason they would or would not."""
    return preview.routing_preview(queries.queue(queue_id))


@bp.patch("/queues/<int:queue_id>")
@admin
@contract(body=QueueChange, answer=QueueOut)
def update_queue(queue_id, body: QueueChange):
    """Change a queue; running chats keep the process version they started on."""
    queue = setup.update_queue(queries.queue(queue_id), body.model_dump(exclude_unset=True))
    db.session.commit()
    return queue


@bp.delete("/queues/<int:queue_id>")
@admin
@contract(status=204)
def delete_queue(queue_id):
    """Delete a queue no channel or chat uses (409 queue_in_use otherwise)."""
    setup.delete_queue(queries.queue(queue_id))
    db.session.commit()
    return "", 204


@bp.post("/queues/<int:queue_id>/operators")
@admin
@contract(body=OperatorIn, answer=OperatorOut, status=201)
def add_operator(queue_id, body: OperatorIn):
    """Add a user, or every member of a role, as operators of the queue."""
    entry = setup.add_operator(queries.queue(queue_id), body.user_id, body.role_id, jobs())
    db.session.commit()
    return entry, 201


@bp.get("/queues/<int:queue_id>/operators")
@admin
@contract(query=Page, answer=list[OperatorOut])
def list_operators(queue_id, query: Page):
    """The queue's operator entries (users and roles)."""
    return queries.operator_entries(queue_id, query.limit, query.offset)


@bp.delete("/queues/<int:queue_id>/operators/<int:entry_id>")
@admin
@contract(status=204)
def remove_operator(queue_id, entry_id):
    """Remove an operator entry: chats in work stay with them; chats offered to them go to others."""
    setup.remove_operator(queries.operator_entry(queue_id, entry_id), jobs())
    db.session.commit()
    return "", 204


@bp.post("/channels")
@admin
@contract(body=ChannelIn, answer=ChannelOut, status=201)
def create_channel(body: ChannelIn):
    """Create a channel; an active Telegram channel checks its token and sets its webhook."""
    fields = _widget_fields(body.model_dump(exclude_unset=True), body.provider)
    required = {"telegram": ("token",), "facebook": ("page_id", "page_access_token"), "web": ()}[body.provider]
    missing = [name for name in required if not fields.get(name)]
    if missing:
        raise ApiError(422, "invalid_value", "; ".join(f"{name}: is required for {body.provider}" for name in missing),
                       {"field": missing[0], "fields": missing})
    channel = setup.create_channel({**fields, "active": body.active})
    db.session.commit()
    return channel, 201


def _widget_fields(fields: dict, provider: str, widget: dict | None = None) -> dict:
    """The widget settings of a web channel go into its `widget` column; other providers have none."""
    given = {name: fields.pop(name) for name in WIDGET_DEFAULTS if name in fields}
    if provider == "web":
        return {**fields, "widget": {**WIDGET_DEFAULTS, **(widget or {}), **given}} if given or widget is None \
            else fields
    if given:
        name = next(iter(given))
        raise ApiError(422, "invalid_value", f"{name}: only website chat (provider web) has it", {"field": name})
    return fields


@bp.post("/channels/facebook/pages")
@admin
@contract(body=FacebookPagesIn, answer=list[FacebookPage] | list[ChannelOut], status=(200, 201))
def facebook_pages(body: FacebookPagesIn):
    """With a user access token: list the user's pages (200), or (with page_ids and queue_id) make each a channel (201)."""
    graph = channels.adapter("facebook").client
    if body.page_ids is None:
        return setup.facebook_pages(graph, body.user_access_token)
    if body.queue_id is None:
        raise ApiError(422, "invalid_value", "queue_id: is required to connect pages", {"field": "queue_id"})
    made = setup.make_page_channels(setup.facebook_pages(graph, body.user_access_token), body.page_ids,
                                    body.queue_id, body.active)
    db.session.commit()
    return made, 201


@bp.get("/channels")
@admin
@contract(query=Page, answer=list[ChannelOut])
def list_channels(query: Page):
    """List channels (secrets are never returned)."""
    return queries.channels(query.limit, query.offset)


@bp.get("/channels/<int:channel_id>")
@admin
@contract(answer=ChannelOut)
def get_channel(channel_id):
    """One channel."""
    return queries.channel(channel_id)


@bp.patch("/channels/<int:channel_id>")
@admin
@contract(body=ChannelChange, answer=ChannelOut)
def update_channel(channel_id, body: ChannelChange):
    """Change a channel; activating a Telegram channel sets its webhook again."""
    channel = queries.channel(channel_id)
    fields = _widget_fields(body.model_dump(exclude_unset=True), channel.provider, channel.widget)
    channel = setup.update_channel(channel, fields)
    db.session.commit()
    return channel


@bp.delete("/channels/<int:channel_id>")
@admin
@contract(status=204)
def delete_channel(channel_id):
    """Delete a channel without chats (409 channel_has_chats otherwise: deactivate it)."""
    setup.delete_channel(queries.channel(channel_id))
    db.session.commit()
    return "", 204


@bp.get("/settings")
@admin
@contract(answer=list[SettingOut])
def list_settings():
    """Every setting with its value (secrets masked) and default."""
    return settings.all_settings()


@bp.get("/settings/<code>")
@admin
@contract(answer=SettingOut)
def get_setting(code):
    """One setting."""
    return settings.describe(code)


@bp.put("/settings/<code>")
@admin
@contract(body=SettingIn, answer=SettingOut)
def put_setting(code, body: SettingIn):
    """Set a setting's value, validated by its type (null restores the default). A new SiteUrl
    re-registers every active Telegram channel's webhook; `webhooks` says how each went."""
    before = settings.get(code)
    settings.put(code, body.value)
    db.session.commit()
    if code == "SiteUrl" and settings.get(code) and settings.get(code) != before:
        return {**settings.describe(code), "webhooks": setup.reconnect_all()}
    return settings.describe(code)


@bp.put("/settings/OmniChatNotificationSound/file")
@admin
@contract(files=("an audio file of at most 2 MiB", False), answer=SettingOut)
def upload_sound():
    """Upload the notification sound (multipart part `file`, an audio file of at most 2 MiB)."""
    upload = request.files.get("file")
    if upload is None:
        raise ApiError(400, "no_file", "send the audio file as a multipart part named 'file'")
    content = upload.read(SOUND_MAX_BYTES + 1)
    content_type = (upload.mimetype or "").lower()
    if content_type not in SOUND_TYPES:
        raise ApiError(422, "invalid_value", f"file: must be audio ({', '.join(SOUND_TYPES)})", {"field": "file"})
    if not content or len(content) > SOUND_MAX_BYTES:
        raise ApiError(422, "invalid_value", "file: must be 1 byte to 2 MiB", {"field": "file"})
    settings.store_upload("OmniChatNotificationSound", upload.filename or "sound", content_type, content)
    db.session.commit()
    return settings.describe("OmniChatNotificationSound")


@bp.delete("/settings/OmniChatNotificationSound/file")
@admin
@contract(status=204)
def clear_sound():
    """Remove the uploaded notification sound: panels play the console's built-in one."""
    settings.clear_file("OmniChatNotificationSound")
    db.session.commit()
    return "", 204


@bp.get("/settings/OmniChatNotificationSound/file")
@contract(media_type="audio/*")
def get_sound():
    """The notification sound, for any signed-in user's panel."""
    stored = settings.stored_file("OmniChatNotificationSound")
    if stored is None:
        raise ApiError(404, "not_found", "no notification sound is uploaded")
    return stored.content, 200, {"Content-Type": stored.content_type,
                                 "Content-Disposition": f'inline; filename="{stored.filename}"'}
