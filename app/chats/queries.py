"""What the API reads about chats and their setup: one function per read, each rule once.

Lists are paged with `limit` and `offset`, oldest first. A missing row is 404 with a code
naming it; a chat the user may not see is 403.
"""
from sqlalchemy import select
from sqlalchemy.orm import selectinload

from app.chats import decisions, inbox, presence, routing, service, settings
from app.engine.errors import Forbidden, NotFound, get_or_404
from app.extensions import db
from app.models import User
from app.models.types import utcnow
from app.models.chat import (Attachment, Case, Channel, Chat, ChatAction, ChatEvent, Contact, Message, Queue,
                             QueueOperator)
from app.models.states import ChatState


def _page(query, limit: int, offset: int) -> list:
    return db.session.scalars(query.limit(limit).offset(offset)).all()


# -- operators ---------------------------------------------------------------------------------
def profile(user: User, admin: bool) -> dict:
    """An operator as they see themselves: status, queues, load and limit."""
    return {"id": user.id, "login": user.login, "name": user.name, **presence.describe(user),
            "queues": routing.queues_of(user.id), "chats_in_work": user.chats_in_work,
            "chats_offered": user.chats_offered, "simultaneous_chats_limit": settings.get("SimultaneousChats"),
            "last_accepted_at": user.last_accepted_at, "is_admin": admin}


def operators_overview() -> list[dict]:
    """Everyone who serves a queue or holds chats: status, presence, chats in work and offered against the limit."""
    limit, now = settings.get("SimultaneousChats"), utcnow()
    out = []
    for user in db.session.scalars(select(User).order_by(User.name, User.id)):
        queues = routing.queues_of(user.id)
        if queues or user.chats_in_work:
            connected = decisions.is_connected(user.connected_until, now)
            out.append({"id": user.id, "login": user.login, "name": user.name, "status": user.status,
                        "presence": decisions.presence(user.status, connected),
                        "active": user.active, "queues": queues, "chats_in_work": user.chats_in_work,
                        "chats_offered": user.chats_offered, "simultaneous_chats_limit": limit})
    return out


# -- chats -------------------------------------------------------------------------------------
def chats_for(user: User, admin: bool, filters: inbox.Filters, *, as_operator: bool = False, limit: int = 100,
              offset: int = 0) -> list[Chat]:
    """The chats a user lists: an admin every chat, unless asking for the operator's view; an
    operator those they may see now (service.visible_chats); both narrowed by `filters`."""
    among = None
    if not admin or as_operator:
        among = [c.id for c in service.visible_chats(user, limit=1000)]
    return inbox.chats(filters, among=among, limit=limit, offset=offset)


def with_summaries(chats: list[Chat], user_id: int) -> list[tuple[Chat, dict]]:
    """Each chat with what its list row shows: last message, waiting time, the user's unread count."""
    extra = inbox.summaries([c.id for c in chats], user_id)
    return [(c, extra[c.id]) for c in chats]


def visible_chat(user: User, admin: bool, chat_id: int) -> Chat:
    """A chat the user may act on: admins any; operators those of their queues and their own."""
    chat = db.session.get(Chat, chat_id)
    if chat is None:
        raise NotFound(f"no chat {chat_id}", code="chat_not_found")
    if not admin and chat.operator_id != user.id and not routing.serves(user.id, chat.queue_id):
        raise Forbidden("this chat is not in one of your queues")
    return chat


def readable_chat(user: User, admin: bool, chat_id: int) -> Chat:
    """A chat the user may read: one they may act on, or an earlier chat of a client they hold now."""
    chat = db.session.get(Chat, chat_id)
    if chat is not None and not admin and db.session.scalars(
            select(Chat.id).where(Chat.contact_id == chat.contact_id, Chat.operator_id == user.id,
                                  Chat.state == ChatState.IN_WORK).limit(1)).first():
        return chat
    return visible_chat(user, admin, chat_id)


def readable_file(user: User, admin: bool, file_id: int) -> Attachment:
    """A message's file, for admins, the chat's operator and operators of its queue."""
    attachment = db.session.get(Attachment, file_id)
    if attachment is None:
        raise NotFound(f"no file {file_id}", code="file_not_found")
    chat = attachment.message.chat
    if not admin and (chat is None or chat.operator_id != user.id and not routing.serves(user.id, chat.queue_id)):
        raise Forbidden("this file's chat is not in one of your queues")
    return attachment


def chat_events(chat_id: int, limit: int, offset: int) -> list[ChatEvent]:
    return _page(select(ChatEvent).where(ChatEvent.chat_id == chat_id).order_by(ChatEvent.id), limit, offset)


def messages(chat_id: int, limit: int, offset: int) -> list[Message]:
    """The chat's messages, oldest first, with their attachments."""
    return _page(select(Message).where(Message.chat_id == chat_id).order_by(Message.id)
                 .options(selectinload(Message.attachments)), limit, offset)


# -- actions, cases, contacts ------------------------------------------------------------------
def actions(limit: int, offset: int) -> list[ChatAction]:
    return _page(select(ChatAction).order_by(ChatAction.id), limit, offset)


def action(action_id: int) -> ChatAction:
    return get_or_404(ChatAction, action_id, "action")


def cases(limit: int, offset: int) -> list[Case]:
    return _page(select(Case).order_by(Case.id), limit, offset)


def case(case_id: int) -> Case:
    return get_or_404(Case, case_id, "case")


def contact(contact_id: int) -> Contact:
    return get_or_404(Contact, contact_id, "contact")


# -- queues and channels -----------------------------------------------------------------------
def queues(limit: int, offset: int) -> list[Queue]:
    return _page(select(Queue).order_by(Queue.id), limit, offset)


def queue(queue_id: int) -> Queue:
    return get_or_404(Queue, queue_id)


def operator_entries(queue_id: int, limit: int, offset: int) -> list[QueueOperator]:
    queue(queue_id)
    return _page(select(QueueOperator).where(QueueOperator.queue_id == queue_id).order_by(QueueOperator.id),
                 limit, offset)


def operator_entry(queue_id: int, entry_id: int) -> QueueOperator:
    entry = get_or_404(QueueOperator, entry_id)
    if entry.queue_id != queue_id:
        raise NotFound(f"queue {queue_id} has no operator entry {entry_id}")
    return entry


def channels(limit: int, offset: int) -> list[Channel]:
    return _page(select(Channel).order_by(Channel.id), limit, offset)


def channel(channel_id: int) -> Channel:
    return get_or_404(Channel, channel_id)


def channel_of(provider: str, channel_id: int) -> Channel | None:
    found = db.session.get(Channel, channel_id)
    return found if found is not None and found.provider == provider else None


def facebook_channel(page_id: str) -> Channel | None:
    return db.session.scalars(select(Channel).where(Channel.provider == "facebook",
                                                    Channel.page_id == page_id)).first()
