"""Private notes: staff write them into a chat; they are never messages, so nothing delivers them."""
from sqlalchemy import select

from app.chats import live
from app.engine.errors import Invalid
from app.extensions import db
from app.models import User
from app.models.chat import Chat
from app.models.workspace import ChatNote

MAX_TEXT = 4096


def add(chat: Chat, author: User, text: str) -> ChatNote:
    if not text.strip():
        raise Invalid("text: must not be empty", details={"field": "text"})
    note = ChatNote(chat_id=chat.id, author_id=author.id, text=text)
    db.session.add(note)
    db.session.flush()
    # The chat's operator (or whoever it is offered to) sees it appear, like a message.
    live.tell([chat.operator_id, chat.offered_to_id, author.id], "chat_note", chat_id=chat.id, note=note_json(note))
    return note


def of_chat(chat_id: int) -> list[ChatNote]:
    return list(db.session.scalars(select(ChatNote).where(ChatNote.chat_id == chat_id).order_by(ChatNote.id)))


def note_json(n: ChatNote) -> dict:
    author = db.session.get(User, n.author_id) if n.author_id else None
    return {"id": n.id, "chat_id": n.chat_id, "text": n.text, "created_at": n.created_at.isoformat(),
            "author": {"id": author.id, "name": author.name} if author else None}
