"""Job functions run by RQ workers (or the embedded job thread). They take ids only.

Each runs inside an app context and commits at its own edge.
"""
import logging
import time
from datetime import timedelta
from functools import partial, wraps

from flask import current_app, has_app_context

from app import metrics
from app.engine.tx import after_commit
from app.extensions import db
from app.models.types import utcnow
from app.outages import is_transient, retrying

log = logging.getLogger(__name__)
_worker_app = None
LOST_JOB_SECONDS = 10  # a chat not started or a reply not tried for this long: its job was lost
CATCH_UP_SECONDS = 1.0


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


def _rides_out_outages(job):
    """A job meeting a lost Redis or database connection waits for it (app.outages) instead of failing."""
    @wraps(job)
    def run(*args):
        return retrying(lambda: job(*args))
    return run


@_rides_out_outages
def fire_timers(instance_id: int) -> bool:
    """Wake an instance at its timer's due time; a stale wake-up does nothing."""
    app = _app()
    with app.app_context():
        try:
            fired = _fire_timers(_engine(app), instance_id)
            db.session.commit()
            return fired
        except Exception:
            db.session.rollback()
            raise


def _fire_timers(engine, instance_id: int, **kw) -> bool:
    """Fire an instance's due timers; once committed, how late they fired is measured."""
    from app.models import ProcessInstance
    due_at = db.session.scalar(db.select(ProcessInstance.next_timer_at).where(ProcessInstance.id == instance_id))
    fired = engine.fire_timers(instance_id, **kw)
    if fired and due_at is not None:
        after_commit(db.session, lambda: metrics.timer_fired(due_at, utcnow()))
    return fired


def sweep(grace_seconds: float | None = None, between=None) -> dict:
    """Catch up on work whose job was lost (Redis restarted empty) or is late.

    The database is the truth: timers overdue, chats whose lifecycle never started, replies
    still pending past their next attempt and attempts nobody answered are all handled here.
    `between()` is called between items (a worker beats there while a long sweep runs).
    """
    between = between or (lambda: None)
    app = _app()
    with app.app_context():
        grace = app.config["TIMER_SWEEP_GRACE_SECONDS"] if grace_seconds is None else grace_seconds
        cutoff = utcnow() - timedelta(seconds=grace)
        engine = _engine(app)
        done = {"timers": 0, "chats": 0, "messages": 0}
        for instance_id in engine.due_instances(cutoff):
            between()
            # An instance a worker is advancing right now is left to it, never waited for.
            done["timers"] += _safely(lambda: _fire_timers(engine, instance_id, skip_locked=True),
                                      "fire timers of instance", instance_id)
        db.session.remove()
    from app.chats import delivery, service
    with app.app_context():
        # A chat's start or a reply's delivery is not late as a timer is: its job may only be queued
        # behind others. Taken here when its job looks lost, so the sweep stays short for timers.
        lost = utcnow() - timedelta(seconds=max(grace, LOST_JOB_SECONDS))
        chat_ids, message_ids = service.unstarted_chats(lost), service.overdue_replies(lost)
        # No provider call outlasts its timeout: an attempt older than that will never be answered.
        unanswered = utcnow() - timedelta(seconds=app.config["PROVIDER_TIMEOUT_SECONDS"] + grace)
        done["uncertain"] = sum(_safely(lambda: delivery.mark_uncertain(message_id, unanswered),
                                        "mark uncertain the reply", message_id)
                                for message_id in delivery.unanswered_attempts(unanswered))
        db.session.remove()
    # At most a second of catching up per sweep (a reply takes the provider's time): the next
    # sweep goes on with the rest, and due timers are never kept waiting behind it.
    until = time.monotonic() + CATCH_UP_SECONDS
    for kind, job, ids in (("chats", start_chat_lifecycle, chat_ids), ("messages", deliver_message, message_ids)):
        for ident in ids:
            if time.monotonic() > until:
                return done
            between()
            job(ident)
            done[kind] += 1
    return done


def _safely(work, what: str, ident) -> int:
    """One item of the sweep; its failure skips it, but a lost connection ends the sweep."""
    try:
        result = work()
        db.session.commit()
        return int(bool(result))
    except Exception as e:
        db.session.rollback()
        if is_transient(e):
            raise
        log.exception("sweep could not %s %s", what, ident)
        return 0


@_rides_out_outages
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


@_rides_out_outages
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
                chat = service.waiting_chat_for(user_id) if user and routing.has_capacity(user) else None
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


@_rides_out_outages
def deliver_message(message_id: int) -> str:
    """Send an operator's reply through its channel (app.chats.delivery says how faults end).

    The attempt is committed before the provider is called, and no transaction is open during
    the call; its outcome is then written, retried while the database is away.
    """
    from app.adapters.telegram import ProviderError
    from app.chats import delivery
    app = _app()
    with app.app_context():
        try:
            message = delivery.begin_attempt(message_id)
            if message is None:
                db.session.rollback()
                return "not due"
            attempt, send, provider = message.attempts, _sender(app, message), message.chat.channel.provider
            db.session.commit()
        except Exception:
            db.session.rollback()
            raise
        try:
            if send is None:
                raise ProviderError("no sender for this channel's provider", retryable=False)
            send()
            outcome = delivery.Outcome(sent=True)
        except ProviderError as e:
            outcome = delivery.Outcome(sent=False, error=str(e), retryable=e.retryable,
                                       maybe_delivered=e.maybe_delivered)
            log.warning("message %s: attempt %s failed: %s", message_id, attempt, e)

        def record():
            try:
                status = delivery.record_outcome(message_id, attempt, outcome, app.config["OUTBOUND_RETRY_DELAYS"],
                                                 app.extensions["chatflow.jobs"])
                db.session.commit()
                return status
            except Exception:
                db.session.rollback()
                raise
        status = retrying(record)
        metrics.delivery(provider, status)
        return status


def _sender(app, message):
    """The provider call for this reply, every value read now: the call itself needs no database."""
    channel, chat = message.chat.channel, message.chat
    if channel.provider == "telegram":
        return partial(app.extensions["chatflow.telegram"].send_message, channel.token, chat.address, message.text)
    if channel.provider == "facebook":
        return partial(app.extensions["chatflow.graph"].send_message, channel.page_access_token, chat.address,
                       message.text)
    return None
