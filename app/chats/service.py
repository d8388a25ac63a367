"""What operators, admins and clients do to chats. Callers commit.

Operator actions that move the lifecycle are delivered to the chat's process as BPMN
messages in the same transaction as the row changes, so a chat is never half-moved.
"""
from functools import partial

from sqlalchemy import or_, select

from app import job_names
from app.channels.base import InboundMessage, OutboundFile
from app.chats import bots, lifecycle, live, messages, routing, settings
from app.chats.lifecycle import lock_chat_and_process, record
from app.engine.errors import Conflict, Invalid
from app.engine.tx import after_commit
from app.extensions import db
from app.models import User
from app.models.chat import Channel, Chat, ChatEvent, Contact, ContactIdentity, Message
from app.models.states import ChatState, MessageStatus, OperatorStatus
from app.models.types import utcnow

MAX_TEXT = 4096  # Telegram's limit for one message


# -- clients ------------------------------------------------------------------------------
def receive(channel: Channel, inbound: InboundMessage, jobs, bot_holds: bool = False) -> Message | None:
    """Store a client's message of any kind once (None if already stored); a new chat starts its lifecycle.

    With `bot_holds` an external bot owns the conversation: a new chat is `bot`, with no
    operator and no lifecycle, until the bot passes it on. A message sent to us while the
    chat is `bot` means the bot let go of it: it enters its queue.
    """
    if db.session.scalars(select(Message.id).where(Message.channel_id == channel.id,
                                                   Message.external_id == inbound.external_id)).first():
        return None
    contact = _contact(channel, inbound)
    chat = None
    if channel.active:
        # Locked: a chat completing at this moment must not take the message with it.
        chat = db.session.scalars(select(Chat).where(Chat.channel_id == channel.id, Chat.contact_id == contact.id,
                                                     Chat.state != ChatState.COMPLETED).with_for_update()
                                  .execution_options(populate_existing=True)).first()
        if chat is not None and chat.state == ChatState.COMPLETED:
            chat = None
        if chat is None:
            chat = Chat(channel_id=channel.id, contact_id=contact.id, queue_id=channel.queue_id,
                        state=ChatState.BOT if bot_holds else ChatState.QUEUED, address=inbound.address)
            db.session.add(chat)
            db.session.flush()
            record(chat, "created", channel_id=channel.id, queue_id=channel.queue_id, bot=bot_holds)
            if not bot_holds:
                after_commit(db.session, partial(jobs.enqueue, job_names.START_CHAT, chat.id))
        elif chat.state == ChatState.BOT and not bot_holds:
            bots.hand_to_queue(chat, jobs, "the client wrote to Chatflow directly")
    message = messages.store(channel, contact.id, chat, inbound, jobs)
    if chat is not None:
        live.chat_message(chat, message)
    return message


def _contact(channel: Channel, inbound: InboundMessage) -> Contact:
    identity = db.session.scalars(select(ContactIdentity).where(ContactIdentity.channel_id == channel.id,
                                                                ContactIdentity.external_id == inbound.user_id)).first()
    if identity is not None:
        contact = db.session.get(Contact, identity.contact_id)
        if inbound.name and contact.name != inbound.name:
            contact.name = inbound.name
        return contact
    contact = Contact(name=inbound.name or f"{channel.provider.capitalize()} user {inbound.user_id}")
    db.session.add(contact)
    db.session.flush()
    db.session.add(ContactIdentity(contact_id=contact.id, channel_id=channel.id, provider=channel.provider,
                                   external_id=inbound.user_id))
    return contact


# -- operators ----------------------------------------------------------------------------
def visible_chats(user: User, state: str | None = None, limit: int = 100, offset: int = 0) -> list[Chat]:
    """Offered to them, queued in their `all` queues while they are eligible, in work by them."""
    conditions = [(Chat.offered_to_id == user.id) & (Chat.state == ChatState.OFFERED),
                  (Chat.operator_id == user.id) & (Chat.state == ChatState.IN_WORK)]
    if routing.has_capacity(user):
        all_queues = routing.queues_of(user.id, rule="all")
        if all_queues:
            conditions.append((Chat.state == ChatState.QUEUED) & Chat.queue_id.in_(all_queues)
                              & Chat.process_instance_id.is_not(None))
    query = select(Chat).where(or_(*conditions))
    if state:
        query = query.where(Chat.state == state)
    return list(db.session.scalars(query.order_by(Chat.id).limit(limit).offset(offset)))


def accept(chat_id: int, user: User, engine) -> Chat:
    """First to accept wins; the others get 409 (chat_taken, not_offered_to_you, limit_reached)."""
    chat = lock_chat_and_process(chat_id, engine)
    if chat.state in (ChatState.IN_WORK, ChatState.COMPLETED):
        raise Conflict(f"chat {chat_id} is already {chat.state.replace('_', ' ')}", code="chat_taken")
    if chat.process_instance_id is None or chat.state == ChatState.BOT:
        raise Conflict(f"chat {chat_id} is not waiting for an operator yet", code="not_offered_to_you")
    if chat.state == ChatState.OFFERED and chat.offered_to_id != user.id:
        raise Conflict(f"chat {chat_id} is offered to another operator", code="not_offered_to_you")
    if chat.state == ChatState.QUEUED \
            and (chat.queue.routing_rule != "all" or not routing.serves(user.id, chat.queue_id)):
        raise Conflict(f"chat {chat_id} is not offered to you", code="not_offered_to_you")
    operator = routing.lock_user(user.id)
    limit = settings.get("SimultaneousChats")
    was_offered = chat.state == ChatState.OFFERED
    if operator.chats_in_work >= limit or (not was_offered and not routing.has_capacity(operator, limit)):
        raise Conflict(f"you have {operator.chats_in_work} chats in work, the limit is {limit}",
                       code="limit_reached")
    if was_offered:
        operator.chats_offered = max(0, operator.chats_offered - 1)
    operator.chats_in_work += 1
    operator.last_accepted_at = utcnow()
    chat.state, chat.operator_id, chat.accepted_at, chat.offered_to_id = ChatState.IN_WORK, operator.id, utcnow(), None
    record(chat, "accepted", operator_id=operator.id)
    live.chat_taken(chat)
    engine.deliver_message(chat.process_instance_id, "chat_accepted", {"OperatorId": operator.id})
    return chat


def reply(chat_id: int, user: User, text: str, engine, jobs, file: OutboundFile | None = None) -> Message:
    """Store the reply (text, a file, or a file with its caption) as pending (a worker delivers
    it) and restart the completion timer."""
    if not text.strip() and file is None:
        raise Invalid("text: must not be empty", details={"field": "text"})
    if len(text) > MAX_TEXT:
        raise Invalid(f"text: at most {MAX_TEXT} characters", details={"field": "text"})
    chat = lock_chat_and_process(chat_id, engine)
    if chat.state != ChatState.IN_WORK or chat.operator_id != user.id:
        raise Conflict(f"chat {chat_id} is not in work by you", code="chat_not_in_work")
    message = Message(channel_id=chat.channel_id, contact_id=chat.contact_id, chat_id=chat.id, direction="out",
                      text=text, status=MessageStatus.PENDING, author_id=user.id, next_attempt_at=utcnow())
    if file is not None:
        messages.attach(message, file)
    db.session.add(message)
    chat.last_outgoing_at = utcnow()
    db.session.flush()
    engine.deliver_message(chat.process_instance_id, "operator_replied", {}, if_waiting=True)
    after_commit(db.session, partial(jobs.enqueue, job_names.DELIVER_MESSAGE, message.id, job_id=f"send-{message.id}-1"))
    return message


def complete(chat_id: int, user: User, reason: str, engine, jobs) -> Chat:
    """Complete through the lifecycle; an admin can also end a chat whose process is stuck."""
    chat = lock_chat_and_process(chat_id, engine)
    if chat.state == ChatState.COMPLETED:
        raise Conflict(f"chat {chat_id} is already completed", code="chat_completed")
    if reason == "operator" and (chat.state != ChatState.IN_WORK or chat.operator_id != user.id):
        raise Conflict(f"chat {chat_id} is not in work by you", code="chat_not_in_work")
    if chat.process_instance_id is not None:
        try:
            engine.deliver_message(chat.process_instance_id, "chat_completed", {"Reason": reason, "By": user.id})
        except Conflict:
            if reason != "admin":
                raise
    db.session.refresh(chat)
    if chat.state != ChatState.COMPLETED:  # the process did not complete it (stuck, or not started yet)
        if chat.process_instance_id is not None:
            try:
                engine.cancel(chat.process_instance_id)
            except Conflict:
                pass
        lifecycle.complete_chat(chat.id, reason, jobs=jobs)
        record(chat, "completed_outside_process", by=user.id)
    return chat


def set_status(user: User, status: str, jobs) -> User:
    operator = routing.lock_user(user.id)
    if operator.status != status:
        operator.status = status
        live.status_changed(operator.id, status)
        if status == OperatorStatus.ACTIVE:
            after_commit(db.session, partial(jobs.enqueue, job_names.DRAIN_OPERATOR, operator.id))
    return operator


def waiting_chat_for(user_id: int) -> Chat | None:
    """The oldest queued least_busy chat this operator could be offered now."""
    queues = routing.queues_of(user_id, rule="least_busy")
    if not queues:
        return None
    return db.session.scalars(select(Chat).where(Chat.queue_id.in_(queues), Chat.state == ChatState.QUEUED,
                                                 Chat.process_instance_id.is_not(None))
                              .order_by(Chat.created_at, Chat.id).limit(1)).first()


def unstarted_chats(cutoff, limit: int = 200) -> list[int]:
    """Chats older than `cutoff` whose lifecycle never started (the start job was lost)."""
    failed = select(ChatEvent.chat_id).where(ChatEvent.event == "lifecycle_not_started")
    return list(db.session.scalars(select(Chat.id).where(Chat.process_instance_id.is_(None),
                                                         Chat.state == ChatState.QUEUED,
                                                         Chat.created_at <= cutoff, Chat.id.not_in(failed))
                                   .order_by(Chat.id).limit(limit)))


def overdue_replies(cutoff, limit: int = 200) -> list[int]:
    """Pending replies whose next attempt is overdue (their delivery job was lost)."""
    return list(db.session.scalars(select(Message.id).where(Message.status == MessageStatus.PENDING,
                                                            Message.next_attempt_at <= cutoff)
                                   .order_by(Message.next_attempt_at).limit(limit)))
