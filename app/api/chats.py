"""Operators (and admins) working chats (docs/api.md, "Operator routes")."""
from flask import Blueprint, current_app, g, request
from sqlalchemy import select
from sqlalchemy.orm import selectinload

from app.api import uploads
from app.api.auth import PAGE, accepts, accepts_files, authenticate, is_admin, reads
from app.api.errors import ApiError
from app.api.validation import Field, Schema, id_arg, page_args, parse
from app.chats import delivery, routing, service, settings
from app.chats.live import message_json
from app.extensions import db
from app.models.chat import Chat, ChatEvent, Message

bp = Blueprint("chats", __name__, url_prefix="/api")
bp.before_request(authenticate)

STATUS = Schema({"status": Field(str, required=True, choices=("active", "inactive"))})
REPLY = Schema({"text": Field(str, required=True, max_length=service.MAX_TEXT)})
CHAT_STATES = ("bot", "queued", "offered", "in_work", "completed")


def engine():
    return current_app.extensions["chatflow.engine"]


def jobs():
    return current_app.extensions["chatflow.jobs"]


def chat_json(c: Chat) -> dict:
    return {"id": c.id, "state": c.state, "queue_id": c.queue_id, "queue_name": c.queue.name,
            "channel_id": c.channel_id, "contact": {"id": c.contact.id, "name": c.contact.name},
            "operator_id": c.operator_id, "offered_to_id": c.offered_to_id,
            "process_instance_id": c.process_instance_id, "created_at": c.created_at.isoformat(),
            "accepted_at": _iso(c.accepted_at),
            "completed_at": _iso(c.completed_at), "completion_reason": c.completion_reason}


def _iso(value):
    return value.isoformat() if value else None


def me_json(user) -> dict:
    return {"id": user.id, "login": user.login, "name": user.name, "status": user.status,
            "queues": routing.queues_of(user.id), "chats_in_work": user.chats_in_work,
            "chats_offered": user.chats_offered, "simultaneous_chats_limit": settings.get("SimultaneousChats"),
            "last_accepted_at": _iso(user.last_accepted_at), "is_admin": is_admin(user)}


def visible_chat(chat_id: int) -> Chat:
    """A chat the user may act on: admins any; operators those of their queues."""
    chat = db.session.get(Chat, chat_id)
    if chat is None:
        raise ApiError(404, "chat_not_found", f"no chat {chat_id}")
    if not is_admin(g.user) and chat.operator_id != g.user.id and not routing.serves(g.user.id, chat.queue_id):
        raise ApiError(403, "forbidden", "this chat is not in one of your queues")
    return chat


@bp.get("/me")
def me():
    """The signed-in operator: status, queues, load and limit."""
    return me_json(g.user)


@bp.put("/me/status")
@accepts(STATUS)
def set_status():
    """Set yourself active (take chats) or inactive."""
    user = service.set_status(g.user, parse(STATUS)["status"], jobs())
    db.session.commit()
    return me_json(user)


def _operator_view():
    limit, offset = page_args()
    state = request.args.get("state")
    return [chat_json(c) for c in service.visible_chats(g.user, state, limit, offset)]


@bp.get("/chats")
@reads({**PAGE, "state": {"enum": list(CHAT_STATES)}, "queue_id": {"type": "integer", "minimum": 0},
        "view": {"enum": ["operator"]}})
def list_chats():
    """Admins: all chats (?state=, ?queue_id=). Operators: the chats they may see now."""
    if not is_admin(g.user) or request.args.get("view") == "operator":
        return _operator_view()
    query = select(Chat).order_by(Chat.id)
    state = request.args.get("state")
    if state:
        if state not in CHAT_STATES:
            raise ApiError(400, "bad_query", f"state must be one of {', '.join(CHAT_STATES)}", {"field": "state"})
        query = query.where(Chat.state == state)
    queue_id = id_arg("queue_id")
    if queue_id is not None:
        query = query.where(Chat.queue_id == queue_id)
    limit, offset = page_args()
    return [chat_json(c) for c in db.session.scalars(query.limit(limit).offset(offset))]


@bp.get("/me/chats")
@reads({**PAGE, "state": {"enum": list(CHAT_STATES)}})
def my_chats():
    """The chats you may see now as an operator (also for admins who are operators)."""
    return _operator_view()


@bp.get("/chats/<int:chat_id>")
def get_chat(chat_id):
    """One chat."""
    return chat_json(visible_chat(chat_id))


@bp.get("/chats/<int:chat_id>/history")
@reads(PAGE)
def chat_history(chat_id):
    """What happened to the chat: offers (with candidates and why), accepts, completion."""
    visible_chat(chat_id)
    limit, offset = page_args()
    events = db.session.scalars(select(ChatEvent).where(ChatEvent.chat_id == chat_id).order_by(ChatEvent.id)
                                .limit(limit).offset(offset))
    return [{"at": e.at.isoformat(), "event": e.event, "details": e.details or {}} for e in events]


@bp.post("/chats/<int:chat_id>/accept")
def accept(chat_id):
    """Accept an offered or visible chat; 409 chat_taken, not_offered_to_you or limit_reached."""
    visible_chat(chat_id)
    chat = service.accept(chat_id, g.user, engine())
    db.session.commit()
    return chat_json(chat)


@bp.get("/chats/<int:chat_id>/messages")
@reads(PAGE)
def list_messages(chat_id):
    """The chat's messages, oldest first, with delivery status."""
    visible_chat(chat_id)
    limit, offset = page_args()
    messages = db.session.scalars(select(Message).where(Message.chat_id == chat_id).order_by(Message.id)
                                  .options(selectinload(Message.attachments)).limit(limit).offset(offset))
    return [message_json(m) for m in messages]


@bp.post("/chats/<int:chat_id>/messages")
@accepts(REPLY)
@accepts_files("a file for the client (part `file`) with an optional caption (`text`)",
               fields={"text": {"type": "string", "maxLength": service.MAX_TEXT}})
def send_message(chat_id):
    """Reply (JSON text, or a multipart file with an optional caption): stored at once as
    pending, delivered by a worker with retries."""
    visible_chat(chat_id)
    if request.mimetype == "multipart/form-data":
        text, file = uploads.reply_upload(current_app.config["MAX_FILE_BYTES"], service.MAX_TEXT)
    else:
        text, file = parse(REPLY)["text"], None
    message = service.reply(chat_id, g.user, text, engine(), jobs(), file)
    answer = message_json(message)  # as stored: a worker may have sent it by the time we answer
    db.session.commit()
    return answer, 201


@bp.post("/chats/<int:chat_id>/messages/<int:message_id>/send-again")
def send_again(chat_id, message_id):
    """Send again a reply that is uncertain (may have been delivered) or failed: the operator's decision."""
    visible_chat(chat_id)
    message = delivery.send_again(chat_id, message_id, g.user, jobs())
    answer = message_json(message)
    db.session.commit()
    return answer


@bp.post("/chats/<int:chat_id>/complete")
def complete(chat_id):
    """Complete a chat: its operator (reason operator) or an admin (reason admin)."""
    chat = visible_chat(chat_id)
    reason = "operator" if chat.operator_id == g.user.id and chat.state == "in_work" else "admin"
    if reason == "admin" and not is_admin(g.user):
        raise ApiError(409, "chat_not_in_work", f"chat {chat_id} is not in work by you")
    chat = service.complete(chat_id, g.user, reason, engine(), jobs())
    db.session.commit()
    return chat_json(chat)
