"""What a channel's webhook delivered, applied to chats: messages, echoes, edits, receipts,
handovers. Every channel speaks these events (app/channels/base.py). Callers commit."""
import logging
from functools import partial

from sqlalchemy import select

from app import channels, job_names
from app.channels.base import InboundEdit, InboundMessage, Receipt, ThreadControl
from app.chats import bots, live, messages, service
from app.engine.tx import after_commit
from app.extensions import db
from app.models.chat import Channel, Chat, ContactIdentity, Message
from app.models.states import ChatState

log = logging.getLogger(__name__)


def handle(channel: Channel, event, jobs, engine) -> bool:
    """Apply one event; True when it changed something (False: a repeat, or nothing to change)."""
    if isinstance(event, ThreadControl):
        if event.passed:
            return bots.bot_passed_thread(channel, event.user_id, jobs) is not None
        return bots.bot_took_thread(channel, event.user_id, engine) is not None
    if isinstance(event, InboundEdit):
        message = messages.edit(channel, event)
        if message is not None and message.chat is not None:
            live.message_changed(message.chat, message)
        return message is not None
    if isinstance(event, Receipt):
        moved = messages.receipt(channel, event)
        for message in moved:
            live.message_status(message)
        return bool(moved)
    if isinstance(event, InboundMessage):
        if event.ack:
            after_commit(db.session, partial(jobs.enqueue, job_names.ACKNOWLEDGE, channel.id, event.ack))
        if event.direction == "out":
            return _outgoing(channel, event, jobs)
        message = service.receive(channel, event, jobs, bot_holds=event.bot_holds)
        if message is not None:
            _name_from_profile(channel, event.user_id, jobs)
        return message is not None
    raise TypeError(f"not a channel event: {type(event).__name__}")


def _outgoing(channel: Channel, event: InboundMessage, jobs) -> bool:
    """A message a person sent the client from the provider's own tools: stored as outgoing,
    marked with its origin, in the client's open chat."""
    if db.session.scalars(select(Message.id).where(Message.channel_id == channel.id,
                                                   Message.external_id == event.external_id)).first():
        return False
    identity = db.session.scalars(select(ContactIdentity).where(ContactIdentity.channel_id == channel.id,
                                                                ContactIdentity.external_id == event.user_id)).first()
    if identity is None:
        log.info("channel %s: a message to client %s, who never wrote to us: skipped", channel.id, event.user_id)
        return False
    chat = db.session.scalars(select(Chat).where(Chat.channel_id == channel.id, Chat.contact_id == identity.contact_id,
                                                 Chat.state != ChatState.COMPLETED)).first()
    message = messages.store(channel, identity.contact_id, chat, event, jobs)
    if chat is not None:
        live.chat_message(chat, message)
    return True


def _name_from_profile(channel: Channel, user_id: str, jobs) -> None:
    """Channels whose updates carry no name (Messenger) ask the profile API until it answers."""
    if not channels.adapter(channel.provider).names_from_profile:
        return
    identity = db.session.scalars(select(ContactIdentity).where(ContactIdentity.channel_id == channel.id,
                                                                ContactIdentity.external_id == user_id)).first()
    if identity is not None and identity.profile_named_at is None:
        after_commit(db.session, partial(jobs.enqueue, job_names.NAME_CONTACT, identity.id))
