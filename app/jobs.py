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
        done = {"timers": 0, "chats": 0, "messages": 0}
        for instance_id in engine.due_instances(cutoff):
            # An instance a worker is advancing right now is left to it, never waited for.
            done["timers"] += _safely(lambda: engine.fire_timers(instance_id, skip_locked=True),
                                      "fire timers of instance", instance_id)
        db.session.remove()
    from app.chats import service
    with app.app_context():
        chat_ids, message_ids = service.unstarted_chats(cutoff), service.overdue_replies(cutoff)
        attachment_ids = overdue_attachments(cutoff)
        db.session.remove()
    for chat_id in chat_ids:
        start_chat_lifecycle(chat_id)
        done["chats"] += 1
    for message_id in message_ids:
        deliver_message(message_id)
        done["messages"] += 1
    for attachment_id in attachment_ids:
        fetch_attachment(attachment_id)
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


def deliver_message(message_id: int) -> str:
    """Send an operator's reply through its channel; retry with backoff, then mark it failed.

    The message row is locked while sending, and only a pending message whose next attempt
    is due is sent, so a job and the sweep never both send it.
    """
    from app.channels.base import ProviderError
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
            message.provider_message_id = _send(app, channel, chat.address, message)
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


def _send(app, channel, address: str, message) -> str | None:
    """Send through the channel's adapter, with the message's file if it has one."""
    from app import channels
    from app.channels.base import OutboundFile, ProviderError
    try:
        adapter = channels.adapter(channel.provider)
    except KeyError:
        raise ProviderError(f"no channel is registered for provider {channel.provider}", retryable=False) from None
    file = None
    for attachment in message.attachments:
        content = app.extensions["chatflow.files"].get(attachment.storage_key or "")
        if content is None:
            raise ProviderError(f"file {attachment.id} is missing from the file store", retryable=False)
        file = OutboundFile(attachment.name, attachment.content_type, content)
    result = adapter.send(channel, address, message.text, file, str(message.id))
    return str(result)[:200] if result is not None else None


def overdue_attachments(cutoff, limit: int = 200) -> list[int]:
    """Inbound files still to fetch whose next attempt is overdue (their job was lost)."""
    from app.models import Attachment
    return list(db.session.scalars(db.select(Attachment.id).where(Attachment.status == "pending",
                                                                  Attachment.next_attempt_at <= cutoff)
                                   .order_by(Attachment.next_attempt_at).limit(limit)))


def fetch_attachment(attachment_id: int) -> str:
    """Fetch an inbound file from its provider into the file store, with the replies' retry
    policy; a file over MAX_FILE_BYTES is recorded as too_large, one that never comes as failed."""
    from app import channels
    from app.channels.base import ProviderError
    from app.chats import live
    from app.models import Attachment, Channel
    app = _app()
    with app.app_context():
        attachment = db.session.execute(db.select(Attachment).where(Attachment.id == attachment_id)
                                        .with_for_update().execution_options(populate_existing=True)
                                        ).scalar_one_or_none()
        if attachment is None or attachment.status != "pending" or attachment.next_attempt_at is None \
                or attachment.next_attempt_at > utcnow() + timedelta(seconds=1):
            db.session.rollback()
            return attachment.status if attachment else "missing"
        message = attachment.message
        attempt = attachment.attempts + 1
        attachment.attempts = attempt
        channel = message.chat.channel if message.chat else db.session.get(Channel, message.channel_id)
        try:
            content = channels.adapter(channel.provider).fetch_file(channel, attachment.source or {},
                                                                    app.config["MAX_FILE_BYTES"])
        except (ProviderError, KeyError) as e:
            retryable = isinstance(e, ProviderError) and e.retryable
            delays = app.config["OUTBOUND_RETRY_DELAYS"]
            attachment.error = str(e)
            if isinstance(e, ProviderError) and e.code == "file_too_large":
                attachment.status, attachment.next_attempt_at = "too_large", None
            elif retryable and attempt <= len(delays):
                attachment.next_attempt_at = utcnow() + timedelta(seconds=delays[attempt - 1])
                after_commit(db.session, partial(app.extensions["chatflow.jobs"].enqueue_at,
                                                 attachment.next_attempt_at, "app.jobs.fetch_attachment",
                                                 attachment_id, job_id=f"fetch-{attachment_id}-{attempt + 1}"))
                log.warning("attachment %s: fetch %s failed (%s); retrying", attachment_id, attempt, e)
            else:
                attachment.status, attachment.next_attempt_at = "failed", None
                log.error("attachment %s failed after %s attempts: %s", attachment_id, attempt, e)
        else:
            attachment.storage_key = app.extensions["chatflow.files"].put(content, attachment.name,
                                                                          attachment.content_type)
            attachment.status, attachment.size, attachment.error = "stored", len(content), None
            attachment.next_attempt_at = None
        if attachment.status != "pending" and message.chat is not None:
            live.message_changed(message.chat, message)
        db.session.commit()
        return attachment.status


def acknowledge(channel_id: int, ack: dict) -> None:
    """Tell the provider an event arrived (Telegram stops the button's spinner); once: a late
    answer is refused anyway."""
    from app import channels
    from app.channels.base import ProviderError
    from app.models import Channel
    app = _app()
    with app.app_context():
        channel = db.session.get(Channel, channel_id)
        try:
            channels.adapter(channel.provider).acknowledge(channel, ack)
        except ProviderError as e:
            log.warning("channel %s: acknowledgement failed: %s", channel_id, e)
        finally:
            db.session.remove()


def name_contact(identity_id: int, attempt: int = 1) -> str | None:
    """Name a contact from the provider's profile; on failure the placeholder stays and the
    next attempt follows the replies' delays (and every later message tries again)."""
    from app import channels
    from app.channels.base import ProviderError
    from app.models import Channel, Contact, ContactIdentity
    app = _app()
    with app.app_context():
        identity = db.session.get(ContactIdentity, identity_id)
        if identity is None or identity.profile_named_at is not None:
            db.session.remove()
            return None
        channel = db.session.get(Channel, identity.channel_id)
        try:
            name = channels.adapter(channel.provider).profile_name(channel, identity.external_id)
        except ProviderError as e:
            delays = app.config["OUTBOUND_RETRY_DELAYS"]
            if e.retryable and attempt <= len(delays):
                app.extensions["chatflow.jobs"].enqueue_at(utcnow() + timedelta(seconds=delays[attempt - 1]),
                                                           "app.jobs.name_contact", identity_id, attempt + 1)
            log.warning("contact identity %s: no profile name (%s)", identity_id, e)
            db.session.remove()
            return None
        if name:
            db.session.get(Contact, identity.contact_id).name = name
        identity.profile_named_at = utcnow()
        db.session.commit()
        return name
