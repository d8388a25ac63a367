"""The operator workspace's routes: read markers, private notes, client context, canned responses,
and the supervisor's view of operators (docs/api.md, "Operator routes")."""
from flask import Blueprint, g
from pydantic import Field

from app.api.auth import admin, authenticate, is_admin
from app.api.chats import readable_chat, visible_chat
from app.api.contract import Answer, Body, Filter, Int, Name, Query, Text, Timestamp, contract, partial
from app.chats import canned, context, inbox, notes, queries, routing
from app.extensions import db

bp = Blueprint("workspace", __name__, url_prefix="/api")
bp.before_request(authenticate)


class ReadIn(Body):
    message_id: Int | None = Field(None, description="the newest message read; default the chat's newest")


class ReadOut(Answer):
    chat_id: int
    message_id: int
    unread: int


class NoteIn(Body):
    text: Name(notes.MAX_TEXT)


class Person(Answer):
    id: int
    name: str


class NoteOut(Answer):
    id: int
    chat_id: int
    text: str
    created_at: str
    author: Person | None


class Identity(Answer):
    provider: str
    external_id: str
    channel_id: int
    channel_name: str | None


class ContactOut(Answer):
    id: int
    name: str
    created_at: str
    identities: list[Identity]


class EarlierChat(Answer):
    id: int
    state: str
    queue_name: str
    channel_id: int
    created_at: str
    completed_at: str | None
    completion_reason: str | None
    operator: Person | None


class CaseRow(Answer):
    id: int
    number: str | None
    subject: str
    status: str
    chat_id: int | None
    created_at: str


class ContextOut(Answer):
    contact: ContactOut
    earlier_chats: list[EarlierChat]
    cases: list[CaseRow]


class CannedIn(Body):
    shortcut: Name(50, description="typed after / in the reply box: letters, digits, - and _")
    text: Name(4096)
    queue_id: Int | None = Field(None, description="null: every queue")


class CannedOut(Answer):
    id: int
    shortcut: str
    text: str
    queue_id: int | None
    created_at: Timestamp


class CannedQuery(Query):
    queue_id: Filter(int, ge=0, le=2**31 - 1, description="global ones and this queue's") = None
    prefix: Filter(str, max_length=50, description="shortcuts starting with this") = None


class OperatorOut(Answer):
    id: int
    login: str
    name: str
    status: str
    presence: str = Field(description="available (gets chats), away (active, not connected) or inactive")
    active: bool
    queues: list[int]
    chats_in_work: int
    chats_offered: int
    simultaneous_chats_limit: int


@bp.put("/chats/<int:chat_id>/read")
@contract(body=ReadIn, answer=ReadOut)
def mark_read(chat_id, body: ReadIn):
    """Move your read marker in a chat (never backwards); answers your unread count."""
    chat = readable_chat(chat_id)
    marker = inbox.mark_read(chat, g.user.id, body.message_id)
    db.session.commit()
    return {"chat_id": chat.id, "message_id": marker.message_id,
            "unread": inbox.summaries([chat.id], g.user.id)[chat.id]["unread"]}


@bp.get("/chats/<int:chat_id>/notes")
@contract(answer=list[NoteOut])
def list_notes(chat_id):
    """The chat's private notes, oldest first (staff only; never sent to the client)."""
    readable_chat(chat_id)
    return [notes.note_json(n) for n in notes.of_chat(chat_id)]


@bp.post("/chats/<int:chat_id>/notes")
@contract(body=NoteIn, answer=NoteOut, status=201)
def add_note(chat_id, body: NoteIn):
    """Write a private note into the chat: staff see it, the client never does."""
    note = notes.add(visible_chat(chat_id), g.user, body.text)
    answer = notes.note_json(note)
    db.session.commit()
    return answer, 201


@bp.get("/chats/<int:chat_id>/context")
@contract(answer=ContextOut)
def chat_context(chat_id):
    """The client of a chat: contact and identities, their earlier chats, their cases."""
    return context.of_chat(readable_chat(chat_id))


# -- canned responses ----------------------------------------------------------------------
def _my_queues() -> list[int] | None:
    """The queues whose canned responses the user sees: admins every queue (None)."""
    return None if is_admin(g.user) else routing.queues_of(g.user.id)


@bp.get("/canned-responses")
@contract(query=CannedQuery, answer=list[CannedOut])
def list_canned(query: CannedQuery):
    """Canned responses: global ones and those of ?queue_id= (operators: of their queues only)."""
    mine = _my_queues()
    if query.queue_id is not None:
        mine = [query.queue_id] if mine is None or query.queue_id in mine else []
    return canned.visible(mine, query.prefix or "")


@bp.post("/canned-responses")
@admin
@contract(body=CannedIn, answer=CannedOut, status=201)
def create_canned(body: CannedIn):
    """Create a canned response (global when queue_id is null or absent)."""
    row = canned.save(None, body.model_dump())
    db.session.commit()
    return row, 201


@bp.get("/canned-responses/<int:canned_id>")
@contract(answer=CannedOut)
def get_canned(canned_id):
    """One canned response."""
    return canned.one(canned_id, _my_queues())


@bp.patch("/canned-responses/<int:canned_id>")
@admin
@contract(body=partial(CannedIn), answer=CannedOut)
def update_canned(canned_id, body):
    """Change a canned response's shortcut, text or queue."""
    row = canned.save(canned.one(canned_id), body.model_dump(exclude_unset=True))
    db.session.commit()
    return row


@bp.delete("/canned-responses/<int:canned_id>")
@admin
@contract(status=204)
def delete_canned(canned_id):
    """Delete a canned response."""
    canned.delete(canned.one(canned_id))
    db.session.commit()
    return "", 204


# -- supervisor --------------------------------------------------------------------------------
@bp.get("/operators")
@admin
@contract(answer=list[OperatorOut])
def list_operators():
    """Everyone who serves a queue: status, chats in work and offered against the limit."""
    return queries.operators_overview()
