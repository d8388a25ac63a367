"""Job functions run by RQ workers (or the embedded job thread). They take ids only.

Each runs inside the app context its runner enters (`chatflow worker` around every job, the
embedded thread likewise) and commits at its own edge.
"""
import logging
import time
from contextlib import contextmanager
from datetime import timedelta
from functools import partial, wraps

from flask import current_app

from app import job_names, metrics
from app.engine import alarms
from app.engine.tx import after_commit
from app.extensions import db
from app.models import ProcessInstance
from app.models.states import ChatState
from app.models.types import utcnow
from app.outages import is_transient, retrying
from app.services import services

log = logging.getLogger(__name__)
LOST_JOB_SECONDS = 10  # a chat not started or a reply not tried for this long: its job was lost
CATCH_UP_SECONDS = 1.0
SWEEP_TIMER_SECONDS = 5.0  # a sweep's firing of overdue timers, at most, before the rest of its work


def _app():
    """The app whose context the runner entered (a job's own transactions open contexts of it)."""
    return current_app._get_current_object()


def _engine(app):
    return services(app).engine


def _rides_out_outages(job):
    """A job meeting a lost Redis or database connection waits for it (app.outages) instead of failing."""
    @wraps(job)
    def run(*args):
        return retrying(lambda: job(*args))
    return run


@_rides_out_outages
def fire_timers(instance_id: int) -> bool:
    """Wake one instance at its timer's due time (the wake-ups scheduled before the alarms)."""
    app = _app()
    with app.app_context(), _session_ends():
        due_at = db.session.scalar(db.select(ProcessInstance.next_timer_at).where(ProcessInstance.id == instance_id))
        return _committed(lambda: _measured(_engine(app).fire_timers(instance_id), due_at))


@_rides_out_outages
def fire_due_timers() -> int:
    """An alarm (app.engine.alarms): fire the timers due now (on RQ also those falling due within
    the next second: its alarms ring at whole seconds), for at most TIMER_BATCH_SECONDS; what is
    left is handed to a new job, so that other jobs do not wait behind a backlog. Returns how many
    instances fired."""
    app = _app()
    fired, more = _fire_due(app, grace=0.0, seconds=app.config["TIMER_BATCH_SECONDS"],
                            wait_ahead=services(app).jobs.whole_seconds)
    if more:
        services(app).jobs.enqueue(job_names.FIRE_DUE_TIMERS)
    return fired


def _fire_due(app, grace: float, seconds: float, wait_ahead: bool, between=lambda: None,
              clock=None) -> tuple[int, bool]:
    """Claim and fire due instances one by one, each in its own transaction, for about `seconds`:
    workers doing this at once each claim another instance (SKIP LOCKED). An instance whose firing
    fails is passed over for the rest of the run. Returns (fired, whether due timers are left)."""
    engine, until, clock = _engine(app), time.monotonic() + seconds, clock or utcnow
    fired, passed_over = 0, set()
    with app.app_context(), _session_ends():
        while True:
            now = clock()
            instance = engine.claim_due(now - timedelta(seconds=grace), passed_over)
            if instance is None:
                wait = alarms.wait_before(engine.next_due(passed_over), now, until - time.monotonic()) \
                    if wait_ahead else None
                db.session.rollback()
                if wait is None:
                    return fired, False
                time.sleep(wait)
                continue
            instance_id, due_at = instance.id, instance.next_timer_at
            try:
                fired += _committed(lambda: _measured(engine.fire(instance, now), due_at))
            except Exception as e:
                if is_transient(e):
                    raise
                log.exception("could not fire the timers of instance %s", instance_id)
                passed_over.add(instance_id)
            between()
            if time.monotonic() >= until:
                return fired, True


def _measured(fired: bool, due_at) -> bool:
    """Once a firing is committed, how late it fired is measured."""
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
    grace = app.config["TIMER_SWEEP_GRACE_SECONDS"] if grace_seconds is None else grace_seconds
    done = {"timers": 0, "chats": 0, "messages": 0, "files": 0, "offers": 0}
    # Timers overdue by more than the grace: their alarm was lost, or every worker is busy (then
    # this claims alongside them, never the same instance).
    done["timers"], _ = _fire_due(app, grace, SWEEP_TIMER_SECONDS, wait_ahead=False, between=between)
    from app.chats import delivery, files, presence, service
    with app.app_context():
        # A chat's start, a reply's delivery or a file's fetch is not late as a timer is: its job may
        # only be queued behind others. Taken here when its job looks lost, so the sweep stays short.
        lost = utcnow() - timedelta(seconds=max(grace, LOST_JOB_SECONDS))
        chat_ids, message_ids = service.unstarted_chats(lost), service.overdue_replies(lost)
        attachment_ids = files.overdue(lost)
        operator_ids = presence.holding_lost_offers()
        # No provider call outlasts its timeout: an attempt older than that will never be answered.
        unanswered = utcnow() - timedelta(seconds=app.config["PROVIDER_TIMEOUT_SECONDS"] + grace)
        done["uncertain"] = sum(_safely(lambda: delivery.mark_uncertain(message_id, unanswered),
                                        "mark uncertain the reply", message_id)
                                for message_id in delivery.unanswered_attempts(unanswered))
        db.session.remove()
    for user_id in operator_ids:  # their check job was lost, or their web process died
        try:
            done["offers"] += withdraw_offers(user_id)
        except Exception:
            log.exception("sweep could not withdraw the offers of user %s", user_id)
    # At most a second of catching up per sweep (a reply takes the provider's time): the next
    # sweep goes on with the rest, and due timers are never kept waiting behind it.
    until = time.monotonic() + CATCH_UP_SECONDS
    for kind, job, ids in (("chats", start_chat_lifecycle, chat_ids), ("messages", deliver_message, message_ids),
                           ("files", fetch_attachment, attachment_ids)):
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
            if chat.process_instance_id is None and chat.state == ChatState.QUEUED:  # not bot, not completed
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
    from app.chats import lifecycle, routing, service
    from app.models import User
    app = _app()
    offered = 0
    with app.app_context(), _session_ends():
        for _ in range(100):  # bounded: the operator's capacity ends it far sooner
            user = db.session.get(User, user_id)
            chat = service.waiting_chat_for(user_id) if user and routing.may_take(user) else None
            if chat is None:
                break
            # With the queue's timeouts as they are now: the restarted acceptance timer reads them.
            _engine(app).deliver_message(chat.process_instance_id, "operator_available",
                                         {"routing": lifecycle.timeouts(chat)}, if_waiting=True)
            db.session.commit()
            db.session.refresh(chat)
            if chat.state != ChatState.OFFERED:
                break
            offered += 1
    return offered


@_rides_out_outages
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
    with app.app_context(), _session_ends():
        chat_ids = db.session.scalars(select(Chat.id).where(Chat.offered_to_id == user_id,
                                                            Chat.state == ChatState.OFFERED).order_by(Chat.id)).all()
        for chat_id in chat_ids:
            chat = lifecycle.lock_chat_and_process(chat_id, engine)
            user = db.session.get(User, user_id)
            if chat.state != ChatState.OFFERED or chat.offered_to_id != user_id or user is None:
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
                engine.deliver_message(chat.process_instance_id, "operator_available",
                                       {"routing": lifecycle.timeouts(chat)}, if_waiting=True)
            db.session.commit()
            withdrawn += 1
    return withdrawn


@_rides_out_outages
def deliver_message(message_id: int) -> str:
    """Send an operator's reply through its channel (app.chats.delivery says how faults end).

    The attempt is committed before the provider is called, and no transaction is open during
    the call; its outcome is then written, retried while the database is away.
    """
    from app.channels.base import ProviderError
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
            if isinstance(send, ProviderError):
                raise send
            send()
            outcome = delivery.Outcome(sent=True)
        except ProviderError as e:
            outcome = delivery.Outcome(sent=False, error=str(e), retryable=e.retryable,
                                       maybe_delivered=e.maybe_delivered, code=e.code)

        status = retrying(lambda: _committed(lambda: delivery.record_outcome(
            message_id, attempt, outcome, app.config["OUTBOUND_RETRY_DELAYS"], services(app).jobs)))
        if status == "failed":
            log.error("message %s failed after %s attempts: %s", message_id, attempt, outcome.error)
        elif not outcome.sent:
            log.warning("message %s: attempt %s failed (%s); %s", message_id, attempt, outcome.error,
                        "retrying" if status == "pending" else f"now {status}")
        metrics.delivery(provider, status)
        return status


def _committed(work):
    """`work()` committed, or rolled back on any error."""
    try:
        result = work()
        db.session.commit()
        return result
    except Exception:
        db.session.rollback()
        raise


@contextmanager
def _session_ends():
    """A job's run of transactions: an error rolls back the open one; the session ends with it."""
    try:
        yield
    except Exception:
        db.session.rollback()
        raise
    finally:
        db.session.remove()


def _sender(app, message):
    """The provider call for this reply (with its file, if any), every value read now: the call
    itself needs no database. A ProviderError when it cannot be made at all."""
    from app import channels
    from app.channels.base import ChannelRef, OutboundFile, ProviderError
    channel, chat = message.chat.channel, message.chat
    try:
        adapter = channels.adapter(channel.provider)
    except KeyError:
        return ProviderError(f"no channel is registered for provider {channel.provider}", retryable=False)
    file = None
    for attachment in message.attachments:
        content = services(app).files.get(attachment.storage_key or "")
        if content is None:
            return ProviderError(f"file {attachment.id} is missing from the file store", retryable=False)
        file = OutboundFile(attachment.name, attachment.content_type, content)
    return partial(adapter.send, ChannelRef.of(channel), chat.address, message.text, file, str(message.id))


@_rides_out_outages
def fetch_attachment(attachment_id: int) -> str:
    """Fetch a client's file from its provider into the file store (app.chats.files says how
    attempts end); no transaction is open during the download."""
    from app import channels
    from app.channels.base import ProviderError
    from app.chats import files
    app = _app()
    with app.app_context():
        try:
            attachment = files.begin_attempt(attachment_id, app.config["PROVIDER_TIMEOUT_SECONDS"])
            if attachment is None:
                db.session.rollback()
                return "not due"
            attempt, channel, source = attachment.attempts, files.channel_of(attachment), dict(attachment.source or {})
            db.session.commit()
        except Exception:
            db.session.rollback()
            raise
        try:
            content = channels.adapter(channel.provider).fetch_file(channel, source, app.config["MAX_FILE_BYTES"])
            outcome = files.Fetched(content=content)
        except (ProviderError, KeyError) as e:
            outcome = files.Fetched(error=str(e), retryable=isinstance(e, ProviderError) and e.retryable,
                                    too_large=isinstance(e, ProviderError) and e.code == "file_too_large")
            log.warning("attachment %s: fetch %s failed: %s", attachment_id, attempt, e)

        return retrying(lambda: _committed(lambda: files.record_fetch(
            attachment_id, attempt, outcome, app.config["OUTBOUND_RETRY_DELAYS"], services(app).jobs)))


def acknowledge(channel_id: int, ack: dict) -> None:
    """Tell the provider an event arrived (Telegram stops the button's spinner); once: a late
    answer is refused anyway."""
    from app import channels
    from app.channels.base import ChannelRef, ProviderError
    from app.models import Channel
    app = _app()
    with app.app_context():
        channel = ChannelRef.of(db.session.get(Channel, channel_id))
        db.session.remove()
        try:
            channels.adapter(channel.provider).acknowledge(channel, ack)
        except ProviderError as e:
            log.warning("channel %s: acknowledgement failed: %s", channel_id, e)


def name_contact(identity_id: int, attempt: int = 1) -> str | None:
    """Name a contact from the provider's profile. On failure the placeholder stays; a retryable
    failure is tried again after the replies' delays, and every later message tries again."""
    from app import channels
    from app.channels.base import ChannelRef, ProviderError
    from app.models import Channel, Contact, ContactIdentity
    app = _app()
    with app.app_context():
        identity = db.session.get(ContactIdentity, identity_id)
        if identity is None or identity.profile_named_at is not None:
            db.session.remove()
            return None
        channel, user_id = ChannelRef.of(db.session.get(Channel, identity.channel_id)), identity.external_id
        db.session.remove()
        try:
            name = channels.adapter(channel.provider).profile_name(channel, user_id)
        except ProviderError as e:
            if e.code == "token_invalid":   # the channel's token is refused: admins must reconnect it
                from app.chats import admin
                _committed(lambda: admin.token_refused(channel.id, str(e)))
            delays = app.config["OUTBOUND_RETRY_DELAYS"]
            if e.retryable and attempt <= len(delays):
                services(app).jobs.enqueue_at(utcnow() + timedelta(seconds=delays[attempt - 1]),
                                                           job_names.NAME_CONTACT, identity_id, attempt + 1)
            log.warning("contact identity %s: no profile name (%s)", identity_id, e)
            return None
        identity = db.session.get(ContactIdentity, identity_id)
        if name:
            db.session.get(Contact, identity.contact_id).name = name
        identity.profile_named_at = utcnow()
        db.session.commit()
        return name
