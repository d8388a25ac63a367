"""Who hears what on `/api/events` (README, "Live events").

Each call names the users a chat change concerns; the event goes out only once the
transaction commits, so nobody hears of a change that was rolled back.
"""
from sqlalchemy import select

from app.channels.web import visitor_key
from app.chats import routing
from app.chats.messages import message_json
from app.engine.tx import after_commit
from app.extensions import db
from app.models.auth import User
from app.models.chat import Chat, Message
from app.models.states import ChatState
from app.services import services


# Not a user (ids start at 1): every change is told here too, for the Reports page's live figures.
SUPERVISORS = 0


def tell(user_ids, event: str, **data) -> None:
    bus = services().events
    recipients = sorted({user_id for user_id in user_ids if user_id is not None} | {SUPERVISORS})
    if recipients:
        after_commit(db.session, bus.publish, recipients, {"type": event, **data})


def queue_operators(queue_id: int) -> list[int]:
    ops = routing.operator_ids(queue_id)
    return list(db.session.scalars(select(ops.c[0])))


def chat_offered(chat: Chat) -> None:
    tell([chat.offered_to_id], "chat_offered", chat_id=chat.id, queue_id=chat.queue_id)


def chat_visible(chat: Chat) -> None:
    """A chat queued in an `all` queue: every operator who may take it now sees it."""
    tell(routing.eligible_operators(chat.queue_id), "chat_visible", chat_id=chat.id, queue_id=chat.queue_id)


def chat_withdrawn(chat: Chat, user_id: int, reason: str) -> None:
    tell([user_id], "chat_withdrawn", chat_id=chat.id, reason=reason)


def chat_taken(chat: Chat, queue_operators: list[int]) -> None:
    """Everyone serving the queue (`queue_operators`) drops it from their list; the taker's other
    tabs move it to work; a website visitor learns who answers."""
    tell(queue_operators, "chat_taken", chat_id=chat.id, operator_id=chat.operator_id)
    if chat.channel.provider == "web":
        operator = db.session.get(User, chat.operator_id) if chat.operator_id else None
        tell_visitor(chat, "operator_joined", operator_name=operator.name if operator else "")


def chat_completed(chat: Chat, concerned) -> None:
    tell(concerned, "chat_completed", chat_id=chat.id, reason=chat.completion_reason)
    tell_visitor(chat, "chat_completed")


def tell_visitor(chat: Chat, event: str, **data) -> None:
    """A website chat's visitor hears of their chat on their own stream (after commit)."""
    bus = services().events
    if bus is not None and chat.channel.provider == "web":
        after_commit(db.session, bus.publish, [visitor_key(chat.channel_id, chat.address)],
                     {"type": event, "chat_id": chat.id, **data})


def chat_message(chat: Chat, message: Message) -> None:
    """A client's message reaches the operator working the chat, or the one it is offered to."""
    tell([chat.operator_id if chat.state == ChatState.IN_WORK else chat.offered_to_id], "chat_message",
         chat_id=chat.id, message=message_json(message))


def message_changed(chat: Chat, message: Message) -> None:
    """An edit, a file fetched, a receipt: whoever has the chat open redraws the message."""
    tell([chat.operator_id if chat.state == ChatState.IN_WORK else chat.offered_to_id, message.author_id],
         "message_updated", chat_id=chat.id, message=message_json(message))


def message_status(message: Message) -> None:
    tell([message.author_id], "message_status", chat_id=message.chat_id, message_id=message.id,
         status=message.status)


def status_changed(user_id: int, status: str) -> None:
    tell([user_id], "status_changed", status=status)


def channel_status(channel, admins) -> None:
    """A channel stopped working (needs_reconnect, refused) or works again: admins see it at once."""
    tell(admins, "channel_status", channel_id=channel.id, name=channel.name, provider=channel.provider,
         status=channel.status, reason=channel.status_reason, active=channel.active)
