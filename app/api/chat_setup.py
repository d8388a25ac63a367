"""Admin: queues and their operators, channels, settings (docs/api.md, "Admin routes")."""
from flask import Blueprint, current_app, request

from app.api.auth import PAGE, accepts, accepts_files, admin, answers, authenticate, reads
from app.api.errors import ApiError
from app.api.validation import Field, Schema, page_args, parse
from app.chats import admin as setup
from app.chats import settings
from app.engine.errors import get_or_404
from app.extensions import db
from app.models.chat import Channel, Queue, QueueOperator, StoredFile

bp = Blueprint("chat_setup", __name__, url_prefix="/api")
bp.before_request(authenticate)

QUEUE = Schema({
    "name": Field(str, required=True),
    "routing_rule": Field(str, required=True, choices=("all", "least_busy")),
    "completion_timeout_minutes": Field((int, float), nullable=True,
                                        description="minutes after the last outgoing message; null = never"),
    "lifecycle_process": Field(str, description="BPMN process key; default ChatLifecycle"),
})
OPERATOR = Schema({"user_id": Field(int, nullable=True), "role_id": Field(int, nullable=True)})
CHANNEL = Schema({
    "provider": Field(str, required=True, choices=("telegram", "facebook")),
    "name": Field(str, required=True),
    "token": Field(str, max_length=300, description="Telegram bot token"),
    "page_id": Field(str, max_length=100, description="Facebook page id"),
    "page_access_token": Field(str, max_length=1000, description="Facebook page access token"),
    "active": Field(bool),
    "queue_id": Field(int, required=True),
})
CHANNEL_CHANGE = Schema({k: v for k, v in CHANNEL.fields.items() if k != "provider"})
SETTING = Schema({"value": Field((str, int, float, bool), nullable=True, max_length=500)})
SOUND_TYPES = ("audio/mpeg", "audio/ogg", "audio/wav", "audio/x-wav", "audio/webm", "audio/aac", "audio/mp4")
SOUND_MAX_BYTES = 2 * 1024 * 1024


def jobs():
    return current_app.extensions["chatflow.jobs"]


def telegram():
    return current_app.extensions["chatflow.telegram"]


def queue_json(q: Queue) -> dict:
    return {"id": q.id, "name": q.name, "routing_rule": q.routing_rule,
            "completion_timeout_minutes": q.completion_timeout_minutes, "lifecycle_process": q.lifecycle_process,
            "created_at": q.created_at.isoformat()}


def channel_json(c: Channel) -> dict:
    """Never the token, page token or webhook secret."""
    out = {"id": c.id, "provider": c.provider, "name": c.name, "active": c.active, "queue_id": c.queue_id,
           "created_at": c.created_at.isoformat()}
    if c.provider == "telegram":
        out["bot_username"] = c.bot_username
    else:
        out["page_id"] = c.page_id
    return out


def operator_json(o: QueueOperator) -> dict:
    return {"id": o.id, "queue_id": o.queue_id, "user_id": o.user_id, "role_id": o.role_id}


def _page(query):
    limit, offset = page_args()
    return db.session.scalars(query.limit(limit).offset(offset)).all()


@bp.post("/queues")
@admin
@accepts(QUEUE)
def create_queue():
    """Create a queue with its routing rule and completion timeout."""
    fields = parse(QUEUE)
    _check_timeout(fields)
    queue = setup.create_queue(fields)
    db.session.commit()
    return queue_json(queue), 201


def _check_timeout(fields):
    minutes = fields.get("completion_timeout_minutes")
    if minutes is not None and not 0 < minutes <= 30 * 24 * 60:
        raise ApiError(422, "invalid_value", "completion_timeout_minutes: must be above 0 and at most 30 days",
                       {"field": "completion_timeout_minutes"})


@bp.get("/queues")
@admin
@reads(PAGE)
def list_queues():
    """List queues."""
    return [queue_json(q) for q in _page(db.select(Queue).order_by(Queue.id))]


@bp.get("/queues/<int:queue_id>")
@admin
def get_queue(queue_id):
    """One queue."""
    return queue_json(get_or_404(Queue, queue_id))


@bp.patch("/queues/<int:queue_id>")
@admin
@accepts(QUEUE, partial=True)
def update_queue(queue_id):
    """Change a queue; running chats keep the process version they started on."""
    fields = parse(QUEUE, partial=True)
    _check_timeout(fields)
    queue = setup.update_queue(get_or_404(Queue, queue_id), fields)
    db.session.commit()
    return queue_json(queue)


@bp.delete("/queues/<int:queue_id>")
@admin
def delete_queue(queue_id):
    """Delete a queue no channel or chat uses (409 queue_in_use otherwise)."""
    setup.delete_queue(get_or_404(Queue, queue_id))
    db.session.commit()
    return "", 204


@bp.post("/queues/<int:queue_id>/operators")
@admin
@accepts(OPERATOR)
def add_operator(queue_id):
    """Add a user, or every member of a role, as operators of the queue."""
    body = parse(OPERATOR)
    entry = setup.add_operator(get_or_404(Queue, queue_id), body.get("user_id"), body.get("role_id"), jobs())
    db.session.commit()
    return operator_json(entry), 201


@bp.get("/queues/<int:queue_id>/operators")
@admin
@reads(PAGE)
def list_operators(queue_id):
    """The queue's operator entries (users and roles)."""
    get_or_404(Queue, queue_id)
    return [operator_json(o) for o in _page(db.select(QueueOperator).where(QueueOperator.queue_id == queue_id)
                                            .order_by(QueueOperator.id))]


@bp.delete("/queues/<int:queue_id>/operators/<int:entry_id>")
@admin
def remove_operator(queue_id, entry_id):
    """Remove an operator entry; chats they already have stay with them."""
    entry = get_or_404(QueueOperator, entry_id)
    if entry.queue_id != queue_id:
        raise ApiError(404, "not_found", f"queue {queue_id} has no operator entry {entry_id}")
    db.session.delete(entry)
    db.session.commit()
    return "", 204


@bp.post("/channels")
@admin
@accepts(CHANNEL)
def create_channel():
    """Create a channel; an active Telegram channel checks its token and sets its webhook."""
    fields = parse(CHANNEL)
    required = ("token",) if fields["provider"] == "telegram" else ("page_id", "page_access_token")
    for name in required:
        if not fields.get(name):
            raise ApiError(422, "invalid_value", f"{name}: is required for {fields['provider']}", {"field": name})
    fields.setdefault("active", True)
    channel = setup.create_channel(fields, telegram())
    db.session.commit()
    return channel_json(channel), 201


FACEBOOK_PAGES = Schema({
    "user_access_token": Field(str, required=True, max_length=1000),
    "page_ids": Field(list, items=str, description="pages to connect; absent = only list the pages"),
    "queue_id": Field(int, description="queue of the new channels (needed with page_ids)"),
    "active": Field(bool),
})


@bp.post("/channels/facebook/pages")
@admin
@accepts(FACEBOOK_PAGES)
def facebook_pages():
    """With a user access token: list the user's pages, or (with page_ids and queue_id) make each a channel."""
    body = parse(FACEBOOK_PAGES)
    graph = current_app.extensions["chatflow.graph"]
    if "page_ids" not in body:
        return [{"id": p["id"], "name": p["name"], "channel_id": p["channel_id"]}
                for p in setup.facebook_pages(graph, body["user_access_token"])]
    if body.get("queue_id") is None:
        raise ApiError(422, "invalid_value", "queue_id: is required to connect pages", {"field": "queue_id"})
    channels = setup.add_facebook_pages(graph, body["user_access_token"], body["page_ids"], body["queue_id"],
                                        body.get("active", True))
    db.session.commit()
    return [channel_json(c) for c in channels], 201


@bp.get("/channels")
@admin
@reads(PAGE)
def list_channels():
    """List channels (secrets are never returned)."""
    return [channel_json(c) for c in _page(db.select(Channel).order_by(Channel.id))]


@bp.get("/channels/<int:channel_id>")
@admin
def get_channel(channel_id):
    """One channel."""
    return channel_json(get_or_404(Channel, channel_id))


@bp.patch("/channels/<int:channel_id>")
@admin
@accepts(CHANNEL_CHANGE, partial=True)
def update_channel(channel_id):
    """Change a channel; activating a Telegram channel sets its webhook again."""
    channel = setup.update_channel(get_or_404(Channel, channel_id), parse(CHANNEL_CHANGE, partial=True), telegram())
    db.session.commit()
    return channel_json(channel)


@bp.delete("/channels/<int:channel_id>")
@admin
def delete_channel(channel_id):
    """Delete a channel without chats (409 channel_has_chats otherwise: deactivate it)."""
    setup.delete_channel(get_or_404(Channel, channel_id))
    db.session.commit()
    return "", 204


@bp.get("/settings")
@admin
def list_settings():
    """Every setting with its value (secrets masked) and default."""
    return settings.all_settings()


@bp.get("/settings/<code>")
@admin
def get_setting(code):
    """One setting."""
    return settings.describe(code)


@bp.put("/settings/<code>")
@admin
@accepts(SETTING)
def put_setting(code):
    """Set a setting's value, validated by its type (null restores the default)."""
    settings.put(code, parse(SETTING).get("value"))
    db.session.commit()
    return settings.describe(code)


@bp.put("/settings/OmniChatNotificationSound/file")
@admin
@accepts_files("an audio file of at most 2 MiB")
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
    stored = StoredFile(filename=upload.filename or "sound", content_type=content_type, content=content)
    db.session.add(stored)
    db.session.flush()
    settings.store_file("OmniChatNotificationSound", stored.id)
    db.session.commit()
    return settings.describe("OmniChatNotificationSound")


@bp.delete("/settings/OmniChatNotificationSound/file")
@admin
def clear_sound():
    """Remove the uploaded notification sound: panels play the console's built-in one."""
    stored = settings.stored_file("OmniChatNotificationSound")
    settings.put("OmniChatNotificationSound", None)
    if stored is not None:
        db.session.delete(stored)
    db.session.commit()
    return "", 204


@bp.get("/settings/OmniChatNotificationSound/file")
@answers("audio/*")
def get_sound():
    """The notification sound, for any signed-in user's panel."""
    stored = settings.stored_file("OmniChatNotificationSound")
    if stored is None:
        raise ApiError(404, "not_found", "no notification sound is uploaded")
    return stored.content, 200, {"Content-Type": stored.content_type,
                                 "Content-Disposition": f'inline; filename="{stored.filename}"'}
