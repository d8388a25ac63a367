"""Delivering an operator's reply: each attempt is recorded before it is made. Callers commit.

A reply goes out at most once unless an operator decides otherwise, and exactly once when no
fault strikes during the provider call: the attempt (number, time) is committed as `sending`
before the call, so an attempt whose outcome never got recorded (the worker died, the database
went away) stays visible. The sweep turns it `uncertain` ("may have been delivered"); nothing
sends it again until an operator presses "Send again". Only attempts known to have failed (an
error answer, a refused connection) are retried.
"""
from dataclasses import dataclass
from datetime import datetime, timedelta
from functools import partial

from sqlalchemy import select

from app import job_names
from app.chats import admin, live
from app.chats.lifecycle import record
from app.engine.errors import Conflict, NotFound
from app.engine.tx import after_commit
from app.extensions import db
from app.models.chat import Chat, Message
from app.models.states import ChatState, MessageStatus
from app.models.types import utcnow

RESENDABLE = ("uncertain", "failed")


@dataclass(frozen=True)
class Outcome:
    """What one attempt's provider call told us."""

    sent: bool
    error: str | None = None
    retryable: bool = False
    maybe_delivered: bool = False  # no answer came: the provider may have it
    code: str | None = None        # the provider's refusal (ProviderError.code): token_invalid, ...


def after_attempt(outcome: Outcome, attempt: int, retry_delays: list[float]) -> tuple[str, float | None]:
    """The reply's status after attempt number `attempt`, and seconds until the next one (if any)."""
    if outcome.sent:
        return "sent", None
    if outcome.maybe_delivered:
        return "uncertain", None
    if outcome.retryable and attempt <= len(retry_delays):
        return "pending", retry_delays[attempt - 1]
    return "failed", None


def _locked(message_id: int) -> Message | None:
    return db.session.execute(select(Message).where(Message.id == message_id).with_for_update()
                              .execution_options(populate_existing=True)).scalar_one_or_none()


def begin_attempt(message_id: int) -> Message | None:
    """Record the next attempt of a pending reply whose time has come (None if there is none)."""
    message = _locked(message_id)
    if message is None or message.status != MessageStatus.PENDING or message.next_attempt_at is None \
            or message.next_attempt_at > utcnow() + timedelta(seconds=1):
        return None
    message.status, message.attempts, message.attempted_at = MessageStatus.SENDING, message.attempts + 1, utcnow()
    message.next_attempt_at = None
    return message


def record_outcome(message_id: int, attempt: int, outcome: Outcome, retry_delays: list[float], jobs) -> str:
    """Write what attempt `attempt` came to. A known outcome also corrects an `uncertain` the sweep
    wrote meanwhile (this worker was slow, not dead); an outcome of an older attempt is ignored."""
    message = _locked(message_id)
    if message is None or message.attempts != attempt \
            or message.status not in (MessageStatus.SENDING, MessageStatus.UNCERTAIN):
        return message.status if message else "missing"
    status, retry_in = after_attempt(outcome, attempt, retry_delays)
    message.status, message.error = status, outcome.error
    if outcome.code == "token_invalid":   # no retry helps: the channel needs a reconnect, admins are told
        message.error = admin.token_refused(message.chat.channel_id, outcome.error)
    if status == MessageStatus.SENT:
        message.sent_at = utcnow()
    if retry_in is not None:
        message.next_attempt_at = utcnow() + timedelta(seconds=retry_in)
        after_commit(db.session, partial(jobs.enqueue_at, message.next_attempt_at, job_names.DELIVER_MESSAGE, message_id,
                                         job_id=f"send-{message_id}-{attempt + 1}"))
    if status != MessageStatus.PENDING:
        live.message_status(message)
    return status


def unanswered_attempts(cutoff: datetime, limit: int = 200) -> list[int]:
    """Replies `sending` since before `cutoff`: no call lasts that long, so nobody will record its outcome."""
    return list(db.session.scalars(select(Message.id).where(Message.status == MessageStatus.SENDING,
                                                            Message.attempted_at <= cutoff)
                                   .order_by(Message.attempted_at).limit(limit)))


def mark_uncertain(message_id: int, cutoff: datetime) -> bool:
    message = _locked(message_id)
    if message is None or message.status != MessageStatus.SENDING or message.attempted_at > cutoff:
        return False
    message.status = MessageStatus.UNCERTAIN
    message.error = f"attempt {message.attempts} got no recorded answer: it may have been delivered"
    live.message_status(message)
    return True


def send_again(chat_id: int, message_id: int, user, jobs) -> Message:
    """The operator decided: an `uncertain` or `failed` reply is sent again, with a fresh set of retries."""
    chat = db.session.get(Chat, chat_id)
    message = _locked(message_id)
    if message is None or message.chat_id != chat_id or message.direction != "out":
        raise NotFound(f"chat {chat_id} has no reply {message_id}", code="message_not_found")
    if chat.state != ChatState.IN_WORK or chat.operator_id != user.id:
        raise Conflict(f"chat {chat_id} is not in work by you", code="chat_not_in_work")
    if message.status not in RESENDABLE:
        raise Conflict(f"reply {message_id} is {message.status}: only an uncertain or failed reply is sent again",
                       code="not_resendable")
    record(chat, "reply_sent_again", message_id=message.id, was=message.status, attempts=message.attempts, by=user.id)
    # The retry budget starts anew: attempts counts from here (the history keeps the earlier count).
    message.status, message.attempts, message.error, message.next_attempt_at = MessageStatus.PENDING, 0, None, utcnow()
    after_commit(db.session, partial(jobs.enqueue, job_names.DELIVER_MESSAGE, message.id))
    live.message_status(message)
    return message
