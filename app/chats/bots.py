"""An external chat bot that holds conversations before operators
(README, "Facebook Messenger and an external bot").

Providers speak to this module in three calls, whatever their protocol: Facebook's
Handover Protocol today, its successor Conversation Routing tomorrow.

The rule when the bot takes a thread back: a chat still waiting for an operator (queued or
offered) is withdrawn: its lifecycle instance is cancelled, an offer is released and the chat
goes back to `bot`. A chat already in work stays with its operator until completed; the
event is written to its history.
"""
from functools import partial

from sqlalchemy import select

from app import job_names
from app.chats import live, routing
from app.chats.lifecycle import lock_chat, lock_chat_and_process, record
from app.engine.errors import Conflict
from app.engine.tx import after_commit
from app.extensions import db
from app.models.chat import Channel, Chat, ContactIdentity
from app.models.states import ChatState


def open_chat(channel: Channel, user_id: str, engine=None) -> Chat | None:
    """The contact's open chat on this channel, locked (with its process first, given the engine)."""
    contact_ids = select(ContactIdentity.contact_id).where(ContactIdentity.channel_id == channel.id,
                                                           ContactIdentity.external_id == user_id)
    chat = db.session.scalars(select(Chat).where(Chat.channel_id == channel.id, Chat.contact_id.in_(contact_ids),
                                                 Chat.state != ChatState.COMPLETED)).first()
    if chat is None:
        return None
    return lock_chat_and_process(chat.id, engine) if engine is not None else lock_chat(chat.id)


def hand_to_queue(chat: Chat, jobs, why: str) -> None:
    """The bot is done with the chat: it enters its queue's lifecycle."""
    if chat.state != ChatState.BOT:
        return
    chat.state = ChatState.QUEUED
    record(chat, "passed_by_bot", why=why)
    after_commit(db.session, partial(jobs.enqueue, job_names.START_CHAT, chat.id))


def bot_passed_thread(channel: Channel, user_id: str, jobs) -> Chat | None:
    chat = open_chat(channel, user_id)
    if chat is not None:
        hand_to_queue(chat, jobs, "the bot passed the conversation to Chatflow")
    return chat


def bot_took_thread(channel: Channel, user_id: str, engine) -> Chat | None:
    chat = open_chat(channel, user_id, engine)
    if chat is None or chat.state == ChatState.BOT:
        return chat
    if chat.state == ChatState.IN_WORK:
        record(chat, "bot_took_thread", kept_by_operator=chat.operator_id,
               rule="a chat in work stays with its operator until completed")
        return chat
    if chat.process_instance_id is not None:
        try:
            engine.cancel(chat.process_instance_id)
        except Conflict:
            pass
    if chat.state == ChatState.OFFERED and chat.offered_to_id is not None:
        operator = routing.lock_user(chat.offered_to_id)
        operator.chats_offered = max(0, operator.chats_offered - 1)
    record(chat, "withdrawn_by_bot", was=chat.state, offered_to=chat.offered_to_id)
    if chat.state == ChatState.OFFERED:
        live.chat_withdrawn(chat, chat.offered_to_id, "taken_by_bot")
    elif chat.queue.routing_rule == "all":
        live.tell(live.queue_operators(chat.queue_id), "chat_withdrawn", chat_id=chat.id, reason="taken_by_bot")
    chat.state, chat.offered_to_id, chat.offered_at, chat.process_instance_id = ChatState.BOT, None, None, None
    return chat
