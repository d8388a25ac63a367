"""The operations ChatLifecycle.bpmn calls; the diagram decides their order.

Each works on the chat row under a lock, records what it did and why in the chat's
history, and returns plain data the diagram can branch and time on.
"""
from functools import partial

from sqlalchemy import select

from app import job_names
from app.chats import live, routing, settings
from app.engine.errors import NotFound
from app.engine.tx import after_commit
from app.extensions import db
from app.models.chat import Chat, ChatEvent
from app.models.states import ChatState, OperatorStatus
from app.models.types import utcnow


def lock_chat(chat_id: int) -> Chat:
    chat = db.session.execute(select(Chat).where(Chat.id == chat_id).with_for_update()
                              .execution_options(populate_existing=True)).scalar_one_or_none()
    if chat is None:
        raise NotFound(f"no chat {chat_id}", code="chat_not_found")
    return chat


def lock_chat_and_process(chat_id: int, engine) -> Chat:
    """Lock the chat's lifecycle instance first, then the chat (operators' rows after that).

    The order the engine's own steps take them in: a firing timer holds its instance when its
    operations lock the chat and users, so an operator's action locking the chat first could
    deadlock with it.
    """
    instance_id = db.session.scalar(select(Chat.process_instance_id).where(Chat.id == chat_id))
    if instance_id is not None:
        engine.lock(instance_id)
    return lock_chat(chat_id)


def record(chat: Chat, event: str, **details) -> None:
    db.session.add(ChatEvent(chat_id=chat.id, event=event, details=details or None))


def _timeouts(chat: Chat) -> dict:
    completion = chat.queue.completion_timeout_minutes
    return {"rule": chat.queue.routing_rule,
            "accept_timeout_seconds": round(settings.get("OmniChatOperatorAcceptChatTimeout") * 60, 3),
            "completion_timeout_seconds": None if completion is None else round(completion * 60, 3)}


def route_chat(chat_id: int) -> dict:
    """First routing of a new chat: `all` makes it visible, `least_busy` offers it."""
    chat = lock_chat(chat_id)
    result = _timeouts(chat)
    if chat.state == ChatState.QUEUED and chat.queue.routing_rule == "least_busy":
        result["offered_to"] = _offer(chat)
    else:
        record(chat, "queued", rule=chat.queue.routing_rule)
        result["offered_to"] = chat.offered_to_id
        if chat.state == ChatState.QUEUED:
            live.chat_visible(chat)
    return result


def offer_chat(chat_id: int) -> dict:
    """Offer a waiting least_busy chat to the best eligible operator, if there is one."""
    chat = lock_chat(chat_id)
    if chat.state == ChatState.QUEUED and chat.queue.routing_rule == "least_busy":
        return {"offered_to": _offer(chat)}
    return {"offered_to": chat.offered_to_id}


def offer_timed_out(chat_id: int) -> dict:
    """The offered operator did not accept in time: they become inactive; offer to the next."""
    chat = lock_chat(chat_id)
    if chat.state == ChatState.OFFERED and chat.offered_to_id is not None:
        missed = routing.lock_user(chat.offered_to_id)
        missed.status = OperatorStatus.INACTIVE
        missed.chats_offered = max(0, missed.chats_offered - 1)
        record(chat, "offer_timed_out", operator_id=missed.id, offered_at=chat.offered_at.isoformat(),
               operator_now=OperatorStatus.INACTIVE)
        chat.state, chat.offered_to_id, chat.offered_at = ChatState.QUEUED, None, None
        live.chat_withdrawn(chat, missed.id, "accept_timeout")
        live.status_changed(missed.id, OperatorStatus.INACTIVE)
        return {"offered_to": _offer(chat, exclude=missed.id)}
    if chat.state == ChatState.QUEUED and chat.queue.routing_rule == "least_busy":
        return {"offered_to": _offer(chat)}
    return {"offered_to": chat.offered_to_id}


def complete_chat(chat_id: int, reason: str = "operator", *, jobs=None) -> dict:
    """Complete the chat and free its operator's capacity (which may take a waiting chat)."""
    chat = lock_chat(chat_id)
    if chat.state == ChatState.COMPLETED:
        return {"completed": False, "reason": chat.completion_reason}
    freed = []
    concerned = [chat.operator_id, chat.offered_to_id]
    if chat.state == ChatState.QUEUED and chat.queue.routing_rule == "all":
        concerned += live.queue_operators(chat.queue_id)
    if chat.operator_id is not None and chat.state == ChatState.IN_WORK:
        operator = routing.lock_user(chat.operator_id)
        operator.chats_in_work = max(0, operator.chats_in_work - 1)
        freed.append(operator.id)
    if chat.offered_to_id is not None and chat.state == ChatState.OFFERED:
        offered = routing.lock_user(chat.offered_to_id)
        offered.chats_offered = max(0, offered.chats_offered - 1)
        freed.append(offered.id)
    chat.state, chat.completion_reason, chat.completed_at = ChatState.COMPLETED, reason, utcnow()
    chat.offered_to_id = None
    record(chat, "completed", reason=reason)
    live.chat_completed(chat, concerned)
    if jobs is not None:
        for user_id in freed:
            after_commit(db.session, jobs.enqueue, job_names.DRAIN_OPERATOR, user_id)
    return {"completed": True, "reason": reason}


def _offer(chat: Chat, exclude: int | None = None) -> int | None:
    """Offer to the least busy eligible operator; stays queued when nobody is eligible."""
    limit = settings.get("SimultaneousChats")
    for _ in range(3):  # a candidate may fill up between the query and the lock
        candidates = routing.least_busy_candidates(chat.queue_id, limit, exclude)
        if not candidates:
            chat.state, chat.offered_to_id, chat.offered_at = ChatState.QUEUED, None, None
            record(chat, "waiting_for_operator", rule="least_busy", reason="no eligible operator")
            return None
        chosen = routing.lock_user(candidates[0].id)
        if routing.has_capacity(chosen, limit):
            chosen.chats_offered += 1
            chat.state, chat.offered_to_id, chat.offered_at = ChatState.OFFERED, chosen.id, utcnow()
            record(chat, "offered", operator_id=chosen.id, rule="least_busy",
                   candidates=[{"operator_id": c.id, "chats_in_work": c.chats_in_work,
                                "chats_offered": c.chats_offered,
                                "last_accepted_at": c.last_accepted_at.isoformat() if c.last_accepted_at else None}
                               for c in candidates],
                   why="fewest chats in work, then longest since last accepted")
            live.chat_offered(chat)
            return chosen.id
    chat.state, chat.offered_to_id, chat.offered_at = ChatState.QUEUED, None, None
    record(chat, "waiting_for_operator", rule="least_busy",
           reason="each candidate became busy or inactive while being offered the chat")
    return None


def register(operations, jobs) -> None:
    """Offer these operations to diagrams."""
    operations.register("route_chat", "Route a new chat by its queue's rule: `all` makes it visible to every "
                        "eligible operator, `least_busy` offers it to one.", {"chat_id": "the chat (ChatId)"},
                        "{rule, offered_to, accept_timeout_seconds, completion_timeout_seconds}")(route_chat)
    operations.register("offer_chat", "Offer a waiting least_busy chat to the best eligible operator.",
                        {"chat_id": "the chat (ChatId)"}, "{offered_to}: operator id or null")(offer_chat)
    operations.register("offer_timed_out", "The offered operator missed the acceptance timeout: set them "
                        "inactive and offer the chat to the next eligible operator.",
                        {"chat_id": "the chat (ChatId)"}, "{offered_to}")(offer_timed_out)
    operations.register("complete_chat", "Complete the chat with a reason (operator, timeout, admin).",
                        {"chat_id": "the chat (ChatId)", "reason": "operator | timeout | admin"},
                        "{completed, reason}")(partial(complete_chat, jobs=jobs))
