"""Operators (and admins) working chats (docs/api.md, "Operator routes")."""
from flask import Blueprint, current_app, g, request
from sqlalchemy import select
from sqlalchemy.orm import selectinload

from app.api import uploads
from app.api.auth import PAGE, accepts, accepts_files, admin, authenticate, is_admin, reads
from app.api.errors import ApiError
from app.api.validation import Field, Schema, id_arg, page_args, parse
from app.chats import decisions, delivery, presence, routing, service, settings
from app.chats.live import message_json
from app.extensions import db
from app.models import User
from app.models.chat import Chat, ChatEvent, Message, Queue

bp = Blueprint("chats", __name__, url_prefix="/api")
bp.before_request(authenticate)

STATUS = Schema({"status": Field(str, required=True, choices=("active", "inactive"))})
TRANSFER = Schema({"operator_id": Field(int, nullable=True, description="another operator of the chat's queue"),
                   "queue_id": Field(int, nullable=True, description="another queue"),
                   "note": Field(str, nullable=True, max_length=500, description="for the history")})
REPLY = Schema({"text": Field(str, required=True, max_length=service.MAX_TEXT)})
CHAT_STATES = ("bot", "unrouted", "queued", "offered", "in_work", "completed")


def engine():
    return current_app.extensions["chatflow.engine"]


def jobs():
    return current_app.extensions["chatflow.jobs"]


def chat_json(c: Chat, problem: str | None = None) -> dict:
    """`lifecycle_problem`: why its lifecycle has not started (the sweep starts it once it can)."""
    return {"lifecycle_problem": problem, "id": c.id, "state": c.state, "queue_id": c.queue_id, "queue_name": c.queue.name,
            "channel_id": c.channel_id, "contact": {"id": c.contact.id, "name": c.contact.name},
            "operator_id": c.operator_id, "offered_to_id": c.offered_to_id,
            "process_instance_id": c.process_instance_id, "created_at": c.created_at.isoformat(),
            "accepted_at": _iso(c.accepted_at),
            "completed_at": _iso(c.completed_at), "completion_reason": c.completion_reason}


def _iso(value):
    return value.isoformat() if value else None


def me_json(user) -> dict:
    return {"id": user.id, "login": user.login, "name": user.name, **presence.describe(user),
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


@bp.put("/me/presence")
def heartbeat():
    """For API clients without an open /api/events stream: call at least every 60 s to count as
    connected (routing offers chats only to operators who are active and connected)."""
    user = presence.seen(g.user.id, current_app.config["PRESENCE_HEARTBEAT_SECONDS"], jobs())
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
    chats = db.session.scalars(query.limit(limit).offset(offset)).all()
    problems = service.lifecycle_problems(chats)
    return [chat_json(c, problems.get(c.id)) for c in chats]


@bp.get("/me/chats")
@reads({**PAGE, "state": {"enum": list(CHAT_STATES)}})
def my_chats():
    """The chats you may see now as an operator (also for admins who are operators)."""
    return _operator_view()


@bp.get("/chats/<int:chat_id>")
def get_chat(chat_id):
    """One chat."""
    chat = visible_chat(chat_id)
    return chat_json(chat, service.lifecycle_problems([chat]).get(chat.id))


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


@bp.post("/chats/<int:chat_id>/transfer")
@accepts(TRANSFER)
def transfer(chat_id):
    """Hand a chat in work to another operator of its queue (offered to them) or to another queue
    (routed by its rule); 409 operator_unavailable, chat_not_in_work, action_not_in_lifecycle."""
    visible_chat(chat_id)
    chat = service.transfer(chat_id, g.user, is_admin(g.user), parse(TRANSFER), engine())
    db.session.commit()
    return chat_json(chat)


@bp.get("/chats/<int:chat_id>/transfer-targets")
def transfer_targets(chat_id):
    """Whom a chat could be transferred to now: the queue's other operators (with presence and
    whether they can take it) and the other queues."""
    chat = visible_chat(chat_id)
    limit = settings.get("SimultaneousChats")
    users = {u.id: u for u in db.session.scalars(select(User).where(User.id.in_(
        [o.id for o in routing.operators(chat.queue_id)])))}
    operators = []
    for view in routing.operators(chat.queue_id):
        if view.id == chat.operator_id:
            continue
        why_not = decisions.ineligible_because(view, limit)
        operators.append({"id": view.id, "name": users[view.id].name or users[view.id].login,
                          "presence": decisions.presence(view.status, view.connected), "holds": view.holds,
                          "available": why_not is None, "reason": why_not})
    queues = [{"id": q.id, "name": q.name} for q in db.session.scalars(
        select(Queue).where(Queue.id != chat.queue_id).order_by(Queue.name))]
    return {"operators": operators, "queues": queues}


@bp.post("/chats/<int:chat_id>/route")
@admin
def route_now(chat_id):
    """Route a chat that opened while its channel was inactive (409 chat_not_unrouted, channel_inactive)."""
    visible_chat(chat_id)
    chat = service.route_now(chat_id, jobs())
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
