"""The operator workspace's routes: read markers, private notes, client context, canned responses,
and the supervisor's view of operators (docs/api.md, "Operator workspace")."""
from flask import Blueprint, g, request
from sqlalchemy import select

from app.api.auth import accepts, admin, authenticate, is_admin, reads
from app.api.chats import readable_chat, visible_chat
from app.api.errors import ApiError
from app.api.validation import Field, Schema, id_arg, parse
from app.chats import canned, context, inbox, notes, routing, settings
from app.engine.errors import get_or_404
from app.extensions import db
from app.models import User
from app.models.workspace import CannedResponse

bp = Blueprint("workspace", __name__, url_prefix="/api")
bp.before_request(authenticate)

READ = Schema({"message_id": Field(int, description="the newest message read; default the chat's newest")})
NOTE = Schema({"text": Field(str, required=True, max_length=notes.MAX_TEXT)})
CANNED = Schema({"shortcut": Field(str, required=True, max_length=50, description="typed after / in the reply box"),
                 "text": Field(str, required=True, max_length=4096),
                 "queue_id": Field(int, nullable=True, description="null: every queue")})


@bp.put("/chats/<int:chat_id>/read")
@accepts(READ)
def mark_read(chat_id):
    """Move your read marker in a chat (never backwards); answers your unread count."""
    chat = readable_chat(chat_id)
    marker = inbox.mark_read(chat, g.user.id, parse(READ).get("message_id"))
    db.session.commit()
    return {"chat_id": chat.id, "message_id": marker.message_id,
            "unread": inbox.summaries([chat.id], g.user.id)[chat.id]["unread"]}


@bp.get("/chats/<int:chat_id>/notes")
def list_notes(chat_id):
    """The chat's private notes, oldest first (staff only; never sent to the client)."""
    readable_chat(chat_id)
    return [notes.note_json(n) for n in notes.of_chat(chat_id)]


@bp.post("/chats/<int:chat_id>/notes")
@accepts(NOTE)
def add_note(chat_id):
    """Write a private note into the chat: staff see it, the client never does."""
    note = notes.add(visible_chat(chat_id), g.user, parse(NOTE)["text"])
    answer = notes.note_json(note)
    db.session.commit()
    return answer, 201


@bp.get("/chats/<int:chat_id>/context")
def chat_context(chat_id):
    """The client of a chat: contact and identities, their earlier chats, their cases."""
    return context.of_chat(readable_chat(chat_id))


# -- canned responses ----------------------------------------------------------------------
def _visible_canned(c: CannedResponse) -> CannedResponse:
    if not is_admin(g.user) and c.queue_id is not None and c.queue_id not in routing.queues_of(g.user.id):
        raise ApiError(404, "canned_response_not_found", f"no canned response {c.id}")
    return c


@bp.get("/canned-responses")
@reads({"queue_id": {"type": "integer", "minimum": 0},
        "prefix": {"type": "string", "maxLength": 50, "description": "shortcuts starting with this"}})
def list_canned():
    """Canned responses: global ones and those of ?queue_id= (operators: of their queues only)."""
    queue_id = id_arg("queue_id")
    mine = None if is_admin(g.user) else routing.queues_of(g.user.id)
    if queue_id is not None:
        mine = [queue_id] if mine is None or queue_id in mine else []
    return [canned.canned_json(c) for c in canned.visible(mine, request.args.get("prefix", ""))]


@bp.post("/canned-responses")
@admin
@accepts(CANNED)
def create_canned():
    """Create a canned response (global when queue_id is null or absent)."""
    answer = canned.canned_json(canned.save(None, parse(CANNED)))
    db.session.commit()
    return answer, 201


@bp.get("/canned-responses/<int:canned_id>")
def get_canned(canned_id):
    """One canned response."""
    return canned.canned_json(_visible_canned(get_or_404(CannedResponse, canned_id, "canned_response")))


@bp.patch("/canned-responses/<int:canned_id>")
@admin
@accepts(CANNED, partial=True)
def update_canned(canned_id):
    """Change a canned response's shortcut, text or queue."""
    answer = canned.canned_json(canned.save(get_or_404(CannedResponse, canned_id, "canned_response"),
                                            parse(CANNED, partial=True)))
    db.session.commit()
    return answer


@bp.delete("/canned-responses/<int:canned_id>")
@admin
def delete_canned(canned_id):
    """Delete a canned response."""
    db.session.delete(get_or_404(CannedResponse, canned_id, "canned_response"))
    db.session.commit()
    return "", 204


# -- supervisor --------------------------------------------------------------------------------
@bp.get("/operators")
@admin
def list_operators():
    """Everyone who serves a queue: status, chats in work and offered against the limit."""
    limit = settings.get("SimultaneousChats")
    out = []
    for user in db.session.scalars(select(User).order_by(User.name, User.id)):
        queues = routing.queues_of(user.id)
        if queues or user.chats_in_work:
            out.append({"id": user.id, "login": user.login, "name": user.name, "status": user.status,
                        "active": user.active, "queues": queues, "chats_in_work": user.chats_in_work,
                        "chats_offered": user.chats_offered, "simultaneous_chats_limit": limit})
    return out
