"""Job functions run by RQ workers (or the embedded job thread). They take ids only.

Each runs inside an app context and commits at its own edge.
"""
import logging
from datetime import timedelta
from functools import partial

from flask import current_app, has_app_context

from app.engine.tx import after_commit
from app.extensions import db
from app.models.types import utcnow

log = logging.getLogger(__name__)
_worker_app = None


def _app():
    """The current app, or one built once per worker process (RQ jobs run outside Flask)."""
    global _worker_app
    if has_app_context():
        return current_app._get_current_object()
    if _worker_app is None:
        from app import create_app
        _worker_app = create_app(start_jobs=False)
    return _worker_app


def _engine(app):
    return app.extensions["chatflow.engine"]


def fire_timers(instance_id: int) -> bool:
    """Wake an instance at its timer's due time; a stale wake-up does nothing."""
    app = _app()
    with app.app_context():
        try:
            fired = _engine(app).fire_timers(instance_id)
            db.session.commit()
            return fired
        except Exception:
            db.session.rollback()
            raise


def sweep(grace_seconds: float | None = None) -> dict:
    """Catch up on work whose job was lost (Redis restarted empty) or is late.

    The database is the truth: timers overdue, chats whose lifecycle never started and
    replies still pending past their next attempt are all found and handled here.
    """
    app = _app()
    with app.app_context():
        grace = app.config["TIMER_SWEEP_GRACE_SECONDS"] if grace_seconds is None else grace_seconds
        cutoff = utcnow() - timedelta(seconds=grace)
        engine = _engine(app)
        done = {"timers": 0, "chats": 0, "messages": 0, "offers": 0}
        for instance_id in engine.due_instances(cutoff):
            # An instance a worker is advancing right now is left to it, never waited for.
            done["timers"] += _safely(lambda: engine.fire_timers(instance_id, skip_locked=True),
                                      "fire timers of instance", instance_id)
        db.session.remove()
    from app.chats import service
    with app.app_context():
        chat_ids, message_ids = service.unstarted_chats(cutoff), service.overdue_replies(cutoff)
        from app.chats import presence
        operator_ids = presence.holding_lost_offers()
        db.session.remove()
    for user_id in operator_ids:  # their check job was lost, or their web process died
        try:
            done["offers"] += withdraw_offers(user_id)
        except Exception:
            log.exception("sweep could not withdraw the offers of user %s", user_id)
    for chat_id in chat_ids:
        start_chat_lifecycle(chat_id)
        done["chats"] += 1
    for message_id in message_ids:
        deliver_message(message_id)
        done["messages"] += 1
    return done


def _safely(work, what: str, ident) -> int:
    try:
        result = work()
        db.session.commit()
        return int(bool(result))
    except Exception:
        db.session.rollback()
        log.exception("sweep could not %s %s", what, ident)
        return 0


def start_chat_lifecycle(chat_id: int) -> None:
    """Start the queue's lifecycle process for a new chat (once)."""
    from app.chats import lifecycle
    from app.engine.errors import NotFound
    app = _app()
    with app.app_context():
        try:
            chat = lifecycle.lock_chat(chat_id)
            if chat.process_instance_id is None and chat.state == "queued":  # not bot, not completed
                key = chat.queue.lifecycle_process
                try:
                    instance = _engine(app).start(key, {"ChatId": chat.id, "ContactId": chat.contact_id,
                                                        "QueueId": chat.queue_id}, business_key=f"chat:{chat.id}")
                except NotFound as e:
                    lifecycle.record(chat, "lifecycle_not_started", error=e.message)
                    log.error("chat %s: %s", chat_id, e.message)
                else:
                    chat.process_instance_id = instance.id
            db.session.commit()
        except Exception:
            db.session.rollback()
            raise


def drain_operator(user_id: int) -> int:
    """An operator became eligible: offer them waiting least_busy chats, oldest first.

    Each waiting chat's process is told `operator_available`; its diagram decides to offer.
    Returns how many chats were offered.
    """
    from app.chats import routing, service
    from app.models import User
    app = _app()
    offered = 0
    with app.app_context():
        try:
            for _ in range(100):  # bounded: the operator's capacity ends it far sooner
                user = db.session.get(User, user_id)
                chat = service.waiting_chat_for(user_id) if user and routing.may_take(user) else None
                if chat is None:
                    break
                _engine(app).deliver_message(chat.process_instance_id, "operator_available", {}, if_waiting=True)
                db.session.commit()
                db.session.refresh(chat)
                if chat.state != "offered":
                    break
                offered += 1
        except Exception:
            db.session.rollback()
            raise
        finally:
            db.session.remove()
    return offered


def withdraw_offers(user_id: int) -> int:
    """Chats offered to an operator who may no longer hold them (inactive, gone past the grace,
    out of the queue) are withdrawn one by one and offered anew at once; returns how many.

    Each chat's process is told `operator_available`, as when someone becomes eligible: its
    diagram offers the chat to the next operator and restarts the acceptance timeout.
    """
    from sqlalchemy import select

    from app.chats import decisions, lifecycle, presence, routing
    from app.models import Chat, User
    app = _app()
    engine = _engine(app)
    withdrawn = 0
    with app.app_context():
        try:
            chat_ids = db.session.scalars(select(Chat.id).where(Chat.offered_to_id == user_id,
                                                                Chat.state == "offered").order_by(Chat.id)).all()
            for chat_id in chat_ids:
                chat = lifecycle.lock_chat_and_process(chat_id, engine)
                user = db.session.get(User, user_id)
                if chat.state != "offered" or chat.offered_to_id != user_id or user is None:
                    db.session.rollback()
                    continue
                lapsed = decisions.presence_lapsed(user.connected_until, utcnow(), presence.grace_seconds())
                reason = decisions.offer_lost_because(
                    routing.view(user, serves_queue=routing.serves(user_id, chat.queue_id)), lapsed)
                if reason is None:
                    db.session.rollback()
                    continue
                lifecycle.withdraw_offer(chat, reason)
                if chat.process_instance_id is not None:
                    _engine(app).deliver_message(chat.process_instance_id, "operator_available", {},
                                                 if_waiting=True)
                db.session.commit()
                withdrawn += 1
        except Exception:
            db.session.rollback()
            raise
        finally:
            db.session.remove()
    return withdrawn


def deliver_message(message_id: int) -> str:
    """Send an operator's reply through its channel; retry with backoff, then mark it failed.

    The message row is locked while sending, and only a pending message whose next attempt
    is due is sent, so a job and the sweep never both send it.
    """
    from app.adapters.telegram import ProviderError
    from app.chats import live
    from app.models import Message
    app = _app()
    with app.app_context():
        message = db.session.execute(db.select(Message).where(Message.id == message_id).with_for_update()
                                     .execution_options(populate_existing=True)).scalar_one_or_none()
        if message is None or message.status != "pending" or message.next_attempt_at is None \
                or message.next_attempt_at > utcnow() + timedelta(seconds=1):
            db.session.rollback()
            return message.status if message else "missing"
        channel, chat = message.chat.channel, message.chat
        attempt = message.attempts + 1
        try:
            if channel.provider == "telegram":
                app.extensions["chatflow.telegram"].send_message(channel.token, chat.address, message.text)
            elif channel.provider == "facebook":
                app.extensions["chatflow.graph"].send_message(channel.page_access_token, chat.address, message.text)
            else:
                raise ProviderError(f"no sender for provider {channel.provider}", retryable=False)
        except ProviderError as e:
            delays = app.config["OUTBOUND_RETRY_DELAYS"]
            message.attempts, message.error = attempt, str(e)
            if e.retryable and attempt <= len(delays):
                message.next_attempt_at = utcnow() + timedelta(seconds=delays[attempt - 1])
                after_commit(db.session, partial(app.extensions["chatflow.jobs"].enqueue_at, message.next_attempt_at,
                                                 "app.jobs.deliver_message", message_id,
                                                 job_id=f"send-{message_id}-{attempt + 1}"))
                log.warning("message %s: attempt %s failed (%s); retrying", message_id, attempt, e)
            else:
                message.status, message.next_attempt_at = "failed", None
                log.error("message %s failed after %s attempts: %s", message_id, attempt, e)
        else:
            message.status, message.attempts, message.sent_at = "sent", attempt, utcnow()
            message.error, message.next_attempt_at = None, None
        if message.status != "pending":
            live.message_status(message)
        db.session.commit()
        return message.status
