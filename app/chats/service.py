"""What operators, admins and clients do to chats. Callers commit.

Operator actions that move the lifecycle are delivered to the chat's process as BPMN
messages in the same transaction as the row changes, so a chat is never half-moved.
"""
from functools import partial

from sqlalchemy import or_, select

from app import job_names
from app.channels.base import InboundMessage, OutboundFile
from app.chats import bots, decisions, lifecycle, live, messages, routing, settings
from app.chats.lifecycle import lock_chat_and_process, record
from app.engine.errors import Conflict, Invalid
from app.engine.tx import after_commit
from app.extensions import db
from app.models import ProcessInstance, ProcessVersion, User
from app.models.chat import Channel, Chat, ChatEvent, Contact, ContactIdentity, Message, Queue
from app.models.states import ChatState, MessageStatus, OperatorStatus
from app.models.types import utcnow

MAX_TEXT = 4096  # Telegram's limit for one message


# -- clients ------------------------------------------------------------------------------
def receive(channel: Channel, inbound: InboundMessage, jobs, bot_holds: bool = False) -> Message | None:
    """Store a client's message of any kind once (None if already stored); a new chat starts its lifecycle.

    With `bot_holds` an external bot owns the conversation: a new chat is `bot`, with no
    operator and no lifecycle, until the bot passes it on. A message sent to us while the
    chat is `bot` means the bot let go of it: it enters its queue. On an inactive channel
    nothing is lost: a message joins the open chat as usual, and one that would open a chat
    opens it `unrouted` (no lifecycle) until an admin routes it once the channel is active.
    """
    if db.session.scalars(select(Message.id).where(Message.channel_id == channel.id,
                                                   Message.external_id == inbound.external_id)).first():
        return None
    contact = _contact(channel, inbound)
    # Locked: a chat completing at this moment must not take the message with it.
    chat = db.session.scalars(select(Chat).where(Chat.channel_id == channel.id, Chat.contact_id == contact.id,
                                                 Chat.state != ChatState.COMPLETED).with_for_update()
                              .execution_options(populate_existing=True)).first()
    if chat is not None and chat.state == ChatState.COMPLETED:
        chat = None
    if chat is None:
        state = ChatState.BOT if bot_holds else ChatState.QUEUED if channel.active else ChatState.UNROUTED
        chat = Chat(channel_id=channel.id, contact_id=contact.id, queue_id=channel.queue_id, state=state,
                    address=inbound.address)
        db.session.add(chat)
        db.session.flush()
        record(chat, "created", channel_id=channel.id, queue_id=channel.queue_id, bot=bot_holds,
               **({} if channel.active else {"unrouted": "the channel is inactive"}))
        if state == ChatState.QUEUED:
            after_commit(db.session, partial(jobs.enqueue, job_names.START_CHAT, chat.id))
    elif chat.state == ChatState.BOT and not bot_holds and channel.active:
        bots.hand_to_queue(chat, jobs, "the client wrote to Chatflow directly")
    message = messages.store(channel, contact.id, chat, inbound, jobs)
    live.chat_message(chat, message)
    return message


def route_now(chat_id: int, jobs) -> Chat:
    """An admin routes a chat that opened while its channel was inactive (its lifecycle starts now)."""
    chat = lifecycle.lock_chat(chat_id)
    if chat.state != ChatState.UNROUTED:
        raise Conflict(f"chat {chat_id} is {chat.state}, not unrouted", code="chat_not_unrouted")
    if not chat.channel.active:
        raise Conflict(f"channel {chat.channel_id} is inactive: activate it first", code="channel_inactive")
    chat.state, chat.queue_id = ChatState.QUEUED, chat.channel.queue_id
    record(chat, "routed_by_admin", queue_id=chat.queue_id)
    after_commit(db.session, partial(jobs.enqueue, job_names.START_CHAT, chat.id))
    return chat


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
    if routing.may_take(user, connected=True):  # asking is a sign of life
        all_queues = routing.queues_of(user.id, rule="all")
        if all_queues:
            conditions.append((Chat.state == ChatState.QUEUED) & Chat.queue_id.in_(all_queues)
                              & Chat.process_instance_id.is_not(None))
    query = select(Chat).where(or_(*conditions))
    if state:
        query = query.where(Chat.state == state)
    return list(db.session.scalars(query.order_by(Chat.id).limit(limit).offset(offset)))


def accept(chat_id: int, user: User, engine) -> Chat:
    """First to accept wins; the others get 409 (chat_taken, not_offered_to_you, operator_inactive,
    limit_reached). Allowed, it is the message `chat_accepted` to the lifecycle, whose diagram
    makes the chat theirs (operation `accept_chat`)."""
    chat = lock_chat_and_process(chat_id, engine, operator_id=user.id)
    serves = chat.state == ChatState.QUEUED and routing.serves(user.id, chat.queue_id)
    operator = routing.lock_user(user.id)  # locked with the chat
    _refuse(decisions.accept_refusal(_view(chat), routing.view(operator, serves_queue=serves, connected=True),
                                     settings.get("SimultaneousChats")))
    _tell_lifecycle(chat, engine, "chat_accepted", {"OperatorId": operator.id}, "accepting the chat")
    return chat


def reply(chat_id: int, user: User, text: str, engine, jobs, file: OutboundFile | None = None) -> Message:
    """Store the reply (text, a file, or a file with its caption) as pending (a worker delivers
    it) and tell the lifecycle (`operator_replied`: its diagram notes the reply and restarts the
    completion timer)."""
    if not text.strip() and file is None:
        raise Invalid("text: must not be empty", details={"field": "text"})
    if len(text) > MAX_TEXT:
        raise Invalid(f"text: at most {MAX_TEXT} characters", details={"field": "text"})
    chat = lock_chat_and_process(chat_id, engine)
    _refuse(decisions.work_refusal(_view(chat), user.id))
    # attachments=[]: a new message's files are known, so its answer reads none back.
    message = Message(channel_id=chat.channel_id, contact_id=chat.contact_id, chat_id=chat.id, direction="out",
                      text=text, status=MessageStatus.PENDING, author_id=user.id, next_attempt_at=utcnow(),
                      attachments=[])
    if file is not None:
        messages.attach(message, file)
    db.session.add(message)
    db.session.flush()
    # The queue's timeouts as they are now: the completion timer re-armed by this reply reads them.
    timeouts = lifecycle.timeouts(chat)
    fresh = {"routing": timeouts} if timeouts["completion_timeout_seconds"] is not None else {}
    _tell_lifecycle(chat, engine, "operator_replied", fresh, "replies")
    after_commit(db.session, partial(jobs.enqueue, job_names.DELIVER_MESSAGE, message.id, job_id=f"send-{message.id}-1"))
    return message


def complete(chat_id: int, user: User, reason: str, engine, jobs) -> Chat:
    """Complete through the lifecycle (`chat_completed`: its diagram calls `complete_chat`).

    An admin (reason `admin`) can also end a chat whose process is stuck or never started: the
    process is cancelled and the chat completed here, recorded as `completed_outside_process`.
    """
    admin = reason == "admin"
    # Their row too: completing frees their capacity (an admin's own row is not concerned).
    chat = lock_chat_and_process(chat_id, engine, operator_id=None if admin else user.id)
    _refuse(decisions.complete_refusal(_view(chat), user.id, admin))
    if not admin:
        _tell_lifecycle(chat, engine, "chat_completed", {"Reason": reason, "By": user.id}, "completing the chat")
        return chat
    if chat.process_instance_id is not None:
        try:
            engine.deliver_message(chat.process_instance_id, "chat_completed", {"Reason": reason, "By": user.id})
        except Conflict:
            pass  # not waiting for it, or stopped: forced below
    if chat.state != ChatState.COMPLETED:  # the process did not complete it (stuck, or not started yet)
        if chat.process_instance_id is not None:
            try:
                engine.cancel(chat.process_instance_id)
            except Conflict:
                pass
        lifecycle.complete_chat(chat.id, reason, jobs=jobs)
        record(chat, "completed_outside_process", by=user.id)
    return chat


def transfer(chat_id: int, user: User, admin: bool, target: dict, engine) -> Chat:
    """Hand a chat in work to another operator of its queue or to another queue, through the
    lifecycle (message `chat_transferred`): the diagram decides what a transfer does."""
    chat = lock_chat_and_process(chat_id, engine)
    _refuse(decisions.work_refusal(_view(chat), user.id, admin))
    operator_id, queue_id = target.get("operator_id"), target.get("queue_id")
    if (operator_id is None) == (queue_id is None):
        raise Invalid("give exactly one of operator_id and queue_id", details={"field": "operator_id"})
    if operator_id is not None:
        if operator_id == chat.operator_id:
            raise Invalid("operator_id: the chat is already theirs", details={"field": "operator_id"})
        other = db.session.get(User, operator_id)
        if other is None or not routing.serves(operator_id, chat.queue_id):
            raise Invalid("operator_id: not an operator of this chat's queue", details={"field": "operator_id"})
        why_not = decisions.ineligible_because(routing.view(other), settings.get("SimultaneousChats"))
        if why_not is not None:
            raise Conflict(f"{other.name or other.login} cannot take the chat now: {why_not}",
                           code="operator_unavailable", details={"field": "operator_id"})
    elif queue_id == chat.queue_id or db.session.get(Queue, queue_id) is None:
        raise Invalid("queue_id: another existing queue, please", details={"field": "queue_id"})
    payload = {"operator_id": operator_id, "queue_id": queue_id, "note": target.get("note"), "by": user.id}
    _tell_lifecycle(chat, engine, "chat_transferred", {"transfer": payload}, "transfers")
    return chat


def _view(chat: Chat) -> decisions.ChatView:
    return decisions.ChatView(chat.id, chat.state, chat.queue.routing_rule, chat.process_instance_id is not None,
                              chat.offered_to_id, chat.operator_id)


def _refuse(refusal: decisions.Refusal | None) -> None:
    if refusal is not None:
        raise Conflict(refusal.message, code=refusal.code)


def _tell_lifecycle(chat: Chat, engine, message: str, data: dict, action: str) -> None:
    """Deliver an operator's action to the chat's lifecycle, whose diagram changes the chat (the
    caller's `chat` shows the state after the step). A lifecycle that does not wait for the
    message now answers 409 action_not_in_lifecycle, naming the process and the message, and the
    chat stays as it was."""
    if chat.process_instance_id is not None:
        try:
            engine.deliver_message(chat.process_instance_id, message, data)
            return
        except Conflict as e:
            if e.code != "not_waiting_for_message":
                raise
    raise Conflict(f"this chat's lifecycle ({_lifecycle_of(chat, engine)}) does not handle {action} at this "
                   f"point: it does not wait for the message {message}", code="action_not_in_lifecycle")


def _lifecycle_of(chat: Chat, engine) -> str:
    """The process a chat's lifecycle runs, for people: key and version (running chats keep theirs)."""
    instance = db.session.get(ProcessInstance, chat.process_instance_id) if chat.process_instance_id else None
    if instance is None:
        return "none is running"
    return (f"{instance.process_key} version {engine.specs.version_number(instance.process_version_id)}, "
            "as deployed when the chat started")


def transfer_targets(chat: Chat) -> dict:
    """Whom a chat could go to now: its queue's other operators (each with presence, load and
    whether they may take it, or why not) and the other queues."""
    limit = settings.get("SimultaneousChats")
    operators = [o for o in routing.operators(chat.queue_id) if o.id != chat.operator_id]
    users = {u.id: u for u in db.session.scalars(select(User).where(User.id.in_([o.id for o in operators])))}
    out = []
    for op in operators:
        why_not = decisions.ineligible_because(op, limit)
        out.append({"id": op.id, "name": users[op.id].name or users[op.id].login,
                    "presence": decisions.presence(op.status, op.connected), "holds": op.holds,
                    "available": why_not is None, "reason": why_not})
    queues = db.session.scalars(select(Queue).where(Queue.id != chat.queue_id).order_by(Queue.name)).all()
    return {"operators": out, "queues": [{"id": q.id, "name": q.name} for q in queues]}


def set_status(user: User, status: str, jobs) -> User:
    """Active takes chats (once connected); inactive hands back every chat offered to them at once."""
    operator = routing.lock_user(user.id)
    if operator.status != status:
        operator.status = status
        live.status_changed(operator.id, status)
        if status == OperatorStatus.ACTIVE:
            after_commit(db.session, partial(jobs.enqueue, job_names.DRAIN_OPERATOR, operator.id))
        elif operator.chats_offered:
            after_commit(db.session, partial(jobs.enqueue, job_names.WITHDRAW_OFFERS, operator.id))
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
    """Chats older than `cutoff` whose lifecycle never started: the start job was lost, or the
    queue's process was not deployed then and is now (one that is still missing is not retried)."""
    failed = select(ChatEvent.chat_id).where(ChatEvent.event == "lifecycle_not_started")
    deployed = select(Queue.id).where(Queue.lifecycle_process.in_(select(ProcessVersion.key)))
    lost = (Chat.created_at <= cutoff) & Chat.id.not_in(failed)
    now_startable = Chat.id.in_(failed) & Chat.queue_id.in_(deployed)  # at once, whatever its age
    return list(db.session.scalars(select(Chat.id).where(
        Chat.process_instance_id.is_(None), Chat.state == ChatState.QUEUED, lost | now_startable)
        .order_by(Chat.id).limit(limit)))


def lifecycle_problems(chats) -> dict[int, str]:
    """Why these chats' lifecycles did not start (the last failure of each chat still without one)."""
    ids = [c.id for c in chats if c.process_instance_id is None and c.state not in (ChatState.BOT, ChatState.COMPLETED)]
    if not ids:
        return {}
    rows = db.session.execute(select(ChatEvent.chat_id, ChatEvent.details).where(
        ChatEvent.chat_id.in_(ids), ChatEvent.event == "lifecycle_not_started").order_by(ChatEvent.id))
    return {chat_id: (details or {}).get("error", "the lifecycle process could not start") for chat_id, details in rows}


def overdue_replies(cutoff, limit: int = 200) -> list[int]:
    """Pending replies whose next attempt is overdue (their delivery job was lost)."""
    return list(db.session.scalars(select(Message.id).where(Message.status == "pending",
                                                            Message.next_attempt_at <= cutoff)
                                   .order_by(Message.next_attempt_at).limit(limit)))
