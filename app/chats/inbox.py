"""The operator's chat lists: filters, search, last activity, waiting time and read markers.

A list is one query for the chats (filtered, by id or by last activity) and three grouped
queries for what each row shows, whatever the number of rows.
"""
from dataclasses import dataclass

from sqlalchemy import and_, exists, func, or_, select
from sqlalchemy.orm import aliased

from app.extensions import db
from app.models.chat import Chat, Contact, Message
from app.models.types import utcnow
from app.models.workspace import ReadMarker

PREVIEW = 140  # characters of the last message a list row shows


@dataclass(frozen=True)
class Filters:
    state: str | None = None
    queue_id: int | None = None
    channel_id: int | None = None
    operator_id: int | None = None
    q: str | None = None  # part of the contact's name or of any message's text
    by_activity: bool = False  # most recently active first (else oldest chat first)


def last_activity():
    """When the chat last moved: its newest message, else its creation."""
    newest = select(func.max(Message.created_at)).where(Message.chat_id == Chat.id).correlate(Chat).scalar_subquery()
    return func.coalesce(newest, Chat.created_at)


def chats(filters: Filters, among=None, limit: int = 100, offset: int = 0) -> list[Chat]:
    """Chats matching `filters` (within the ids `among`, when given)."""
    query = select(Chat)
    if among is not None:
        query = query.where(Chat.id.in_(among))
    for column, value in ((Chat.state, filters.state), (Chat.queue_id, filters.queue_id),
                          (Chat.channel_id, filters.channel_id), (Chat.operator_id, filters.operator_id)):
        if value is not None:
            query = query.where(column == value)
    if filters.q:
        name = select(Contact.id).where(Contact.id == Chat.contact_id, Contact.name.icontains(filters.q, autoescape=True))
        text = select(Message.id).where(Message.chat_id == Chat.id, Message.text.icontains(filters.q, autoescape=True))
        query = query.where(or_(exists(name.correlate(Chat)), exists(text.correlate(Chat))))
    order = (last_activity().desc(), Chat.id.desc()) if filters.by_activity else (Chat.id,)
    query = query.order_by(*order).limit(limit).offset(offset)
    return list(db.session.scalars(query))


def summaries(chat_ids: list[int], user_id: int) -> dict[int, dict]:
    """Per chat: last message preview, last activity, since when the client waits, unread for `user_id`."""
    out = {i: {"last_message": None, "waiting_since": None, "unread": 0} for i in chat_ids}
    if not chat_ids:
        return out
    newest = select(func.max(Message.id)).where(Message.chat_id.in_(chat_ids)).group_by(Message.chat_id)
    for m in db.session.scalars(select(Message).where(Message.id.in_(newest))):
        out[m.chat_id]["last_message"] = {"id": m.id, "direction": m.direction, "text": m.text[:PREVIEW],
                                          "created_at": m.created_at.isoformat()}
    # The client waits since their first message after our last reply.
    answered = aliased(Message)
    last_out = (select(func.coalesce(func.max(answered.id), 0))
                .where(answered.chat_id == Message.chat_id, answered.direction == "out").scalar_subquery())
    waiting = (select(Message.chat_id, func.min(Message.created_at))
               .where(Message.chat_id.in_(chat_ids), Message.direction == "in", Message.id > last_out)
               .group_by(Message.chat_id))
    for chat_id, since in db.session.execute(waiting):
        out[chat_id]["waiting_since"] = since.isoformat()
    unread = (select(Message.chat_id, func.count())
              .outerjoin(ReadMarker, and_(ReadMarker.chat_id == Message.chat_id, ReadMarker.user_id == user_id))
              .where(Message.chat_id.in_(chat_ids), Message.direction == "in",
                     Message.id > func.coalesce(ReadMarker.message_id, 0))
              .group_by(Message.chat_id))
    for chat_id, n in db.session.execute(unread):
        out[chat_id]["unread"] = n
    return out


def mark_read(chat: Chat, user_id: int, message_id: int | None) -> ReadMarker:
    """Move the user's marker to `message_id` (default: the newest message); it never moves back."""
    if message_id is None:
        message_id = db.session.scalar(select(func.coalesce(func.max(Message.id), 0))
                                       .where(Message.chat_id == chat.id))
    marker = db.session.get(ReadMarker, (user_id, chat.id), with_for_update=True)
    if marker is None:
        marker = ReadMarker(user_id=user_id, chat_id=chat.id, message_id=0)
        db.session.add(marker)
    if message_id > marker.message_id:
        marker.message_id, marker.updated_at = message_id, utcnow()
    db.session.flush()
    return marker
