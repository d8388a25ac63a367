"""The operations ChatLifecycle.bpmn calls; the diagram decides their order.

Each works on the chat row under a lock, records what it did and why in the chat's
history, and returns plain data the diagram can branch and time on.
"""
from functools import partial

from sqlalchemy import func, select
from sqlalchemy.orm import joinedload

from app import job_names
from app.chats import decisions, live, routing, settings
from app.engine import deployed, tx
from app.engine.errors import NotFound
from app.engine.tx import after_commit
from app.extensions import db
from app.models import User
from app.models.chat import Chat, ChatEvent, Queue
from app.models.states import WAITING, ChatState, OperatorStatus
from app.models.types import utcnow


def _chat_row(chat_id: int):
    """The chat with its queue and channel (its operations read both), the settings' revision and
    the number of deployed versions (so that the cached settings and latest versions are checked
    without statements of their own): one statement."""
    return (select(Chat, settings.REVISION, deployed.COUNT).where(Chat.id == chat_id)
            .options(joinedload(Chat.queue, innerjoin=True), joinedload(Chat.channel, innerjoin=True)))


def lock_chat(chat_id: int) -> Chat:
    """The chat's row, locked until commit. Locked once per transaction: the operations a message
    runs reuse the lock (and the row) the action took before delivering it."""
    held = tx.locked_rows(db.session)
    chat = held.get(("chat", chat_id))
    if chat is None:
        row = db.session.execute(_chat_row(chat_id).with_for_update(of=Chat)
                                 .execution_options(populate_existing=True)).first()
        if row is None:
            raise NotFound(f"no chat {chat_id}", code="chat_not_found")
        chat = held[("chat", chat_id)] = row[0]
        _seen(row)
    return chat


def lock_chat_and_process(chat_id: int, engine, operator_id: int | None = None) -> Chat:
    """Lock the chat's lifecycle instance first, then the chat, then (with `operator_id`) that
    operator's row: in one statement, each row loaded.

    The order the engine's own steps take them in: a firing timer holds its instance when its
    operations lock the chat and users, so an operator's action locking the chat first could
    deadlock with it.
    """
    held = tx.locked_rows(db.session)
    chat = held.get(("chat", chat_id))
    if chat is not None:
        if chat.process_instance_id is not None:
            engine.lock(chat.process_instance_id)
        return chat
    query = _chat_row(chat_id)
    if operator_id is not None:
        query = query.add_columns(User).join_from(Chat, User, User.id == operator_id)
    row = engine.lock_with(query, Chat.process_instance_id)
    if row is None:  # no lifecycle yet (or no such chat): the chat alone
        return lock_chat(chat_id)
    held[("chat", chat_id)] = chat = row[0]
    _seen(row)
    if operator_id is not None:
        held[("user", operator_id)] = row[3]
    return chat


def _seen(row) -> None:
    settings.seen(row[1])
    deployed.seen(row[2])


def record(chat: Chat, event: str, **details) -> None:
    recorded = ChatEvent(chat_id=chat.id, event=event, details=details or None)
    db.session.add(recorded)
    # Its latest event, while the chat's lock is held (_wait need not read it back).
    tx.locked_rows(db.session)[("last_event", chat.id)] = recorded


def timeouts(chat: Chat) -> dict:
    """The routing rule and timeouts of the chat's queue as they are now (timers read them when armed)."""
    return {"rule": chat.queue.routing_rule,
            "accept_timeout_seconds": decisions.seconds(settings.get("OmniChatOperatorAcceptChatTimeout")),
            "completion_timeout_seconds": decisions.seconds(chat.queue.completion_timeout_minutes)}


def route_chat(chat_id: int) -> dict:
    """First routing of a new chat: `all` makes it visible, `least_busy` offers it."""
    chat = lock_chat(chat_id)
    result = timeouts(chat)
    if chat.state == ChatState.QUEUED and chat.queue.routing_rule == decisions.LEAST_BUSY:
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
    if chat.state == ChatState.QUEUED and chat.queue.routing_rule == decisions.LEAST_BUSY:
        return {"offered_to": _offer(chat)}
    return {"offered_to": chat.offered_to_id}


def offer_timed_out(chat_id: int, stop_after: int | None = None, *, jobs=None) -> dict:
    """The offered operator did not accept in time: they become inactive; offer to the next.

    `missed_offers` counts the chat's offers that timed out since it was last accepted; with
    `stop_after`, once that many are missed the chat is not offered again (the diagram escalates).
    """
    chat = lock_chat(chat_id)
    if chat.state == ChatState.OFFERED and chat.offered_to_id is not None:
        missed = routing.lock_user(chat.offered_to_id)
        count = missed_offers(chat.id) + 1  # read before the writes: the one recorded below counts too
        missed.status = OperatorStatus.INACTIVE
        missed.chats_offered = max(0, missed.chats_offered - 1)
        record(chat, "offer_timed_out", operator_id=missed.id, offered_at=chat.offered_at.isoformat(),
               operator_now=OperatorStatus.INACTIVE)
        chat.state, chat.offered_to_id, chat.offered_at = ChatState.QUEUED, None, None
        live.chat_withdrawn(chat, missed.id, "accept_timeout")
        live.status_changed(missed.id, OperatorStatus.INACTIVE)
        if jobs is not None and missed.chats_offered:  # their other offers go to others too
            after_commit(db.session, jobs.enqueue, job_names.WITHDRAW_OFFERS, missed.id)
        if not decisions.keeps_offering(count, stop_after):
            return {"offered_to": None, "missed_offers": count}
        if chat.queue.routing_rule == decisions.LEAST_BUSY:
            # Its reads need none of the writes above (the operator who missed it is excluded): they
            # do not flush them, so the step's writes go out once, at its end, with no savepoint.
            with db.session.no_autoflush:
                return {"offered_to": _offer(chat, exclude=(missed.id,)), "missed_offers": count}
        # A chat transferred to one operator of an `all` queue becomes visible to all again.
        return {"offered_to": _route(chat, exclude=(missed.id,)), "missed_offers": count}
    count = missed_offers(chat.id)
    if chat.state == ChatState.QUEUED and chat.queue.routing_rule == decisions.LEAST_BUSY \
            and decisions.keeps_offering(count, stop_after):
        return {"offered_to": _offer(chat), "missed_offers": count}
    return {"offered_to": chat.offered_to_id, "missed_offers": count}


def missed_offers(chat_id: int) -> int:
    """Offers of the chat that timed out since it was last accepted (ever, if never)."""
    accepted = select(func.coalesce(func.max(ChatEvent.id), 0)).where(ChatEvent.chat_id == chat_id,
                                                                      ChatEvent.event == "accepted")
    return db.session.scalar(select(func.count(ChatEvent.id)).where(
        ChatEvent.chat_id == chat_id, ChatEvent.event == "offer_timed_out",
        ChatEvent.id > accepted.scalar_subquery()))


def accept_chat(chat_id: int, operator_id: int) -> dict:
    """The operator accepted (`service.accept` allowed it under the locks): the chat is theirs, in work."""
    chat = lock_chat(chat_id)
    if chat.state not in WAITING:
        return {"accepted": False, "state": chat.state}
    # Read before the writes: a query after them would flush them first, in the step's own savepoint.
    concerned = live.queue_operators(chat.queue_id)
    operator = routing.lock_user(operator_id)
    if chat.state == ChatState.OFFERED and chat.offered_to_id is not None:
        offered = routing.lock_user(chat.offered_to_id)
        offered.chats_offered = max(0, offered.chats_offered - 1)
    now = utcnow()
    operator.chats_in_work += 1
    operator.last_accepted_at = now
    chat.state, chat.operator_id, chat.accepted_at, chat.offered_to_id = ChatState.IN_WORK, operator.id, now, None
    record(chat, "accepted", operator_id=operator.id)
    live.chat_taken(chat, concerned)
    return {"accepted": True, "operator_id": operator.id}


def note_reply(chat_id: int) -> dict:
    """The operator replied (the reply is stored; a worker sends it): the chat's last outgoing
    message is now, which the completion timeout counts from."""
    chat = lock_chat(chat_id)
    chat.last_outgoing_at = utcnow()
    return {"replied_at": chat.last_outgoing_at.isoformat()}


def transfer_chat(chat_id: int, transfer: dict) -> dict:
    """Hand a chat in work to another operator of its queue (offered to them, with the acceptance
    timeout) or to another queue (routed by that queue's rule). Answers like `route_chat`."""
    chat = lock_chat(chat_id)
    if chat.state != ChatState.IN_WORK:
        return {**timeouts(chat), "offered_to": chat.offered_to_id}
    previous = routing.lock_user(chat.operator_id)
    previous.chats_in_work = max(0, previous.chats_in_work - 1)
    target_id, queue_id = transfer.get("operator_id"), transfer.get("queue_id")
    record(chat, "transferred", from_operator_id=previous.id, to_operator_id=target_id,
           from_queue_id=chat.queue_id, to_queue_id=queue_id, note=transfer.get("note"), by=transfer.get("by"))
    live.chat_withdrawn(chat, previous.id, "transferred")
    chat.state, chat.operator_id, chat.accepted_at, chat.last_outgoing_at = ChatState.QUEUED, None, None, None
    if queue_id is not None:
        chat.queue_id = queue_id
        db.session.flush()
        db.session.refresh(chat, ["queue"])
    result = timeouts(chat)
    limit = settings.get("SimultaneousChats")
    if target_id is not None:
        target = routing.lock_user(target_id)
        why_not = decisions.ineligible_because(routing.view(target, routing.serves(target.id, chat.queue_id)), limit)
        if why_not is None:  # still available (checked when asked, and again under the lock)
            target.chats_offered += 1
            chat.state, chat.offered_to_id, chat.offered_at = ChatState.OFFERED, target.id, utcnow()
            record(chat, "offered", operator_id=target.id, rule="transfer", why="transferred to them")
            live.chat_offered(chat)
            return {**result, "offered_to": target.id}
        record(chat, "transfer_target_unavailable", operator_id=target.id, reason=why_not)
    return {**result, "offered_to": _route(chat)}


def move_to_queue(chat_id: int, queue, reason: str | None = None) -> dict:
    """Move a waiting chat (queued or offered) to another queue, named or by id, and route it by
    that queue's rule; an offer it had is withdrawn. Answers like `route_chat`, with `moved`,
    `queue_id`, `missed_offers` and `waited_minutes` (since the chat was created)."""
    chat = lock_chat(chat_id)
    target = _queue(queue)
    facts = {"missed_offers": missed_offers(chat.id),
             "waited_minutes": round((utcnow() - chat.created_at).total_seconds() / 60, 1)}
    if chat.state not in WAITING or target.id == chat.queue_id:
        return {**timeouts(chat), "offered_to": chat.offered_to_id, "queue_id": chat.queue_id, "moved": False,
                **facts}
    withdraw_offer(chat, "moved_to_queue", to_queue_id=target.id)
    if chat.queue.routing_rule == decisions.ALL:  # every operator who saw it in the old queue drops it
        live.tell(live.queue_operators(chat.queue_id), "chat_withdrawn", chat_id=chat.id, reason="moved_to_queue")
    record(chat, "moved_to_queue", from_queue_id=chat.queue_id, to_queue_id=target.id, reason=reason, **facts)
    chat.queue_id = target.id
    db.session.flush()
    db.session.refresh(chat, ["queue"])
    return {**timeouts(chat), "offered_to": _route(chat), "queue_id": target.id, "moved": True, **facts}


def _queue(ref) -> Queue:
    """A queue by id (a number) or by name (text, as an analyst writes it in a diagram)."""
    found = db.session.get(Queue, ref) if isinstance(ref, int) else \
        db.session.scalars(select(Queue).where(Queue.name == str(ref))).first()
    if found is None:
        raise NotFound(f"move_to_queue: no queue {ref!r}", code="queue_not_found")
    return found


def _route(chat: Chat, exclude=()) -> int | None:
    """Route a queued chat by its queue's rule: `least_busy` offers it, `all` shows it to every eligible
    operator. Returns the operator it was offered to."""
    if chat.queue.routing_rule == decisions.LEAST_BUSY:
        return _offer(chat, exclude)
    record(chat, "queued", rule="all")
    live.chat_visible(chat)
    return None


def complete_chat(chat_id: int, reason: str = "operator", *, jobs=None) -> dict:
    """Complete the chat and free its operator's capacity (which may take a waiting chat)."""
    chat = lock_chat(chat_id)
    if chat.state == ChatState.COMPLETED:
        return {"completed": False, "reason": chat.completion_reason}
    freed = []
    concerned = [chat.operator_id, chat.offered_to_id]
    if chat.state == ChatState.QUEUED and chat.queue.routing_rule == decisions.ALL:
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


def _offer(chat: Chat, exclude=()) -> int | None:
    """Offer to the least busy eligible operator; stays queued when nobody is eligible."""
    limit = settings.get("SimultaneousChats")
    for _ in range(3):  # a candidate may fill up or leave between the query and the lock
        decision = decisions.decide(decisions.LEAST_BUSY, routing.candidates(chat.queue_id, limit), limit, exclude)
        if decision.chosen is None:
            return _wait(chat, "no eligible operator")
        chosen = routing.lock_user(decision.chosen)
        if decisions.ineligible_because(routing.view(chosen), limit, exclude) is None:
            chosen.chats_offered += 1
            chat.state, chat.offered_to_id, chat.offered_at = ChatState.OFFERED, chosen.id, utcnow()
            record(chat, "offered", operator_id=chosen.id, rule="least_busy",
                   candidates=[_candidate(a.operator) for a in decision.assessments[:routing.CANDIDATES_RECORDED]
                               if a.eligible],
                   why=decisions.LEAST_BUSY_RULE)
            live.chat_offered(chat)
            return chosen.id
    return _wait(chat, "each candidate became busy or inactive while being offered the chat")


def _candidate(op: decisions.OperatorView) -> dict:
    return {"operator_id": op.id, "chats_in_work": op.chats_in_work, "chats_offered": op.chats_offered,
            "last_accepted_at": op.last_accepted_at.isoformat() if op.last_accepted_at else None}


def _wait(chat: Chat, reason: str) -> None:
    """Nobody can take the chat now: it waits queued. Its history says so once, not at every re-check."""
    chat.state, chat.offered_to_id, chat.offered_at = ChatState.QUEUED, None, None
    last = tx.locked_rows(db.session).get(("last_event", chat.id))
    if last is None or last not in db.session:  # none recorded in this transaction (or undone with a savepoint)
        last = db.session.scalars(select(ChatEvent).where(ChatEvent.chat_id == chat.id)
                                  .order_by(ChatEvent.id.desc()).limit(1)).first()
    if last is None or last.event != "waiting_for_operator" or (last.details or {}).get("reason") != reason:
        record(chat, "waiting_for_operator", rule="least_busy", reason=reason)
    return None


def withdraw_offer(chat: Chat, reason: str, **details) -> int | None:
    """Take an offer back from its operator (who is told why); the chat is queued again.

    Returns the operator it was offered to. The caller routes it again.
    """
    if chat.state != ChatState.OFFERED or chat.offered_to_id is None:
        return None
    operator = routing.lock_user(chat.offered_to_id)
    operator.chats_offered = max(0, operator.chats_offered - 1)
    record(chat, "offer_withdrawn", operator_id=operator.id, reason=reason,
           offered_at=chat.offered_at.isoformat() if chat.offered_at else None, **details)
    chat.state, chat.offered_to_id, chat.offered_at = ChatState.QUEUED, None, None
    live.chat_withdrawn(chat, operator.id, reason)
    return operator.id


def register(operations, jobs) -> None:
    """Offer these operations to diagrams."""
    operations.register("route_chat", "Route a new chat by its queue's rule: `all` makes it visible to every "
                        "eligible operator, `least_busy` offers it to one.", {"chat_id": "the chat (ChatId)"},
                        "{rule, offered_to, accept_timeout_seconds, completion_timeout_seconds}")(route_chat)
    operations.register("offer_chat", "Offer a waiting least_busy chat to the best eligible operator.",
                        {"chat_id": "the chat (ChatId)"}, "{offered_to}: operator id or null")(offer_chat)
    operations.register("offer_timed_out", "The offered operator missed the acceptance timeout: set them "
                        "inactive and offer the chat to the next eligible operator.",
                        {"chat_id": "the chat (ChatId)",
                         "stop_after": "optional: once this many offers are missed, offer no more"},
                        "{offered_to, missed_offers}: missed since the chat was last accepted")(
        partial(offer_timed_out, jobs=jobs))
    operations.register("move_to_queue", "Move a waiting chat to another queue (by name or id) and route it "
                        "by that queue's rule; its offer, if any, is withdrawn.",
                        {"chat_id": "the chat (ChatId)", "queue": "the target queue's name or id",
                         "reason": "optional, recorded in the chat's history"},
                        "{rule, offered_to, accept_timeout_seconds, completion_timeout_seconds, queue_id, moved, "
                        "missed_offers, waited_minutes}")(move_to_queue)
    operations.register("accept_chat", "The operator accepted the chat (Chatflow checked they may): it is "
                        "in work by them.", {"chat_id": "the chat (ChatId)",
                                             "operator_id": "who accepted (OperatorId, from chat_accepted)"},
                        "{accepted, operator_id}")(accept_chat)
    operations.register("note_reply", "The operator replied: the chat's last outgoing message is now (the "
                        "completion timeout counts from it).", {"chat_id": "the chat (ChatId)"},
                        "{replied_at}")(note_reply)
    operations.register("transfer_chat", "Hand a chat in work to another operator of its queue (offered to "
                        "them) or to another queue (routed by its rule).",
                        {"chat_id": "the chat (ChatId)",
                         "transfer": "the chat_transferred message's data: {operator_id | queue_id, note, by}"},
                        "{rule, offered_to, accept_timeout_seconds, completion_timeout_seconds}")(transfer_chat)
    operations.register("complete_chat", "Complete the chat with a reason (operator, timeout, admin).",
                        {"chat_id": "the chat (ChatId)", "reason": "operator | timeout | admin"},
                        "{completed, reason}")(partial(complete_chat, jobs=jobs))
