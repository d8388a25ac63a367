"""Operators (and admins) working chats (docs/api.md, "Operator routes")."""
from flask import Blueprint, current_app, g, request
from sqlalchemy import select
from sqlalchemy.orm import selectinload

from app.api import uploads
from app.api.auth import PAGE, accepts, accepts_files, authenticate, is_admin, reads
from app.api.errors import ApiError
from app.api.validation import Field, Schema, id_arg, page_args, parse
from app.chats import delivery, inbox, routing, service, settings
from app.chats.live import message_json
from app.extensions import db
from app.models.chat import Chat, ChatEvent, Message
from app.services import services

bp = Blueprint("chats", __name__, url_prefix="/api")
bp.before_request(authenticate)

STATUS = Schema({"status": Field(str, required=True, choices=("active", "inactive"))})
REPLY = Schema({"text": Field(str, required=True, max_length=service.MAX_TEXT)})
CHAT_STATES = ("bot", "queued", "offered", "in_work", "completed")


def engine():
    return services().engine


def jobs():
    return services().jobs


def chat_json(c: Chat) -> dict:
    return {"id": c.id, "state": c.state, "queue_id": c.queue_id, "queue_name": c.queue.name,
            "channel_id": c.channel_id, "channel": {"name": c.channel.name, "provider": c.channel.provider},
            "contact": {"id": c.contact.id, "name": c.contact.name},
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


def readable_chat(chat_id: int) -> Chat:
    """A chat the user may read: one they may act on, or an earlier chat of a client they hold now."""
    chat = db.session.get(Chat, chat_id)
    if chat is not None and not is_admin(g.user) and db.session.scalars(
            select(Chat.id).where(Chat.contact_id == chat.contact_id, Chat.operator_id == g.user.id,
                                  Chat.state == "in_work").limit(1)).first():
        return chat
    return visible_chat(chat_id)


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


def _filters() -> inbox.Filters:
    state = request.args.get("state") or None
    if state is not None and state not in CHAT_STATES:
        raise ApiError(400, "bad_query", f"state must be one of {', '.join(CHAT_STATES)}", {"field": "state"})
    return inbox.Filters(state=state, queue_id=id_arg("queue_id"), channel_id=id_arg("channel_id"),
                         operator_id=id_arg("operator_id"), q=request.args.get("q", "").strip()[:200] or None,
                         by_activity=request.args.get("sort") == "activity")


def _listed(chats) -> list[dict]:
    """Chats as lists show them: with last message, waiting time and your unread count."""
    extra = inbox.summaries([c.id for c in chats], g.user.id)
    return [{**chat_json(c), **extra[c.id]} for c in chats]


def _operator_view():
    limit, offset = page_args()
    mine = [c.id for c in service.visible_chats(g.user, limit=1000)]
    return _listed(inbox.chats(_filters(), among=mine, limit=limit, offset=offset))


LIST_QUERY = {**PAGE, "state": {"enum": list(CHAT_STATES)}, "queue_id": {"type": "integer", "minimum": 0},
              "channel_id": {"type": "integer", "minimum": 0}, "operator_id": {"type": "integer", "minimum": 0},
              "q": {"type": "string", "maxLength": 200, "description": "part of the contact's name or a message"},
              "sort": {"enum": ["id", "activity"], "default": "id", "description": "activity: most recently active first"}}


@bp.get("/chats")
@reads({**LIST_QUERY, "view": {"enum": ["operator"]}})
def list_chats():
    """Admins: all chats. Operators (or ?view=operator): the chats they may see now. Filtered by
    ?state=, ?queue_id=, ?channel_id=, ?operator_id= and ?q= (search); ?sort=activity: latest first."""
    if not is_admin(g.user) or request.args.get("view") == "operator":
        return _operator_view()
    limit, offset = page_args()
    return _listed(inbox.chats(_filters(), limit=limit, offset=offset))


@bp.get("/me/chats")
@reads(LIST_QUERY)
def my_chats():
    """The chats you may see now as an operator (also for admins who are operators)."""
    return _operator_view()


@bp.get("/chats/<int:chat_id>")
def get_chat(chat_id):
    """One chat, with its last message, waiting time and your unread count."""
    return _listed([readable_chat(chat_id)])[0]


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
    readable_chat(chat_id)
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
