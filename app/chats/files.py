"""Fetching clients' files: each attempt is recorded before the download, its outcome after.
Callers commit.

A file is fetched with the replies' retry policy: a known, passing failure is tried again
after OUTBOUND_RETRY_DELAYS, then it is `failed`; a file above the size limit is `too_large`
(with its name and size kept). A download is harmless to repeat, so an attempt whose outcome
got lost is simply due again once the provider's timeout has passed, and the sweep fetches it.
"""
from dataclasses import dataclass
from datetime import datetime, timedelta
from functools import partial


from sqlalchemy import select

from app import job_names
from app.channels.base import ChannelRef
from app.chats import live
from app.engine.tx import after_commit
from app.extensions import db
from app.models.chat import Attachment, Channel
from app.models.types import utcnow
from app.services import services


@dataclass(frozen=True)
class Fetched:
    """What one download told us."""

    content: bytes | None = None
    error: str | None = None
    retryable: bool = False
    too_large: bool = False


def after_fetch(outcome: Fetched, attempt: int, retry_delays: list[float]) -> tuple[str, float | None]:
    """The file's status after attempt number `attempt`, and seconds until the next one (if any)."""
    if outcome.content is not None:
        return "stored", None
    if outcome.too_large:
        return "too_large", None
    if outcome.retryable and attempt <= len(retry_delays):
        return "pending", retry_delays[attempt - 1]
    return "failed", None


def _locked(attachment_id: int) -> Attachment | None:
    return db.session.execute(select(Attachment).where(Attachment.id == attachment_id).with_for_update()
                              .execution_options(populate_existing=True)).scalar_one_or_none()


def begin_attempt(attachment_id: int, provider_timeout: float) -> Attachment | None:
    """Record the next attempt of a pending file whose time has come (None if there is none).
    Until the download's longest time has passed, nobody else starts one."""
    attachment = _locked(attachment_id)
    if attachment is None or attachment.status != "pending" or attachment.next_attempt_at is None \
            or attachment.next_attempt_at > utcnow() + timedelta(seconds=1):
        return None
    attachment.attempts += 1
    attachment.next_attempt_at = utcnow() + timedelta(seconds=provider_timeout * 7)
    return attachment


def channel_of(attachment: Attachment) -> ChannelRef:
    return ChannelRef.of(db.session.get(Channel, attachment.message.channel_id))


def record_fetch(attachment_id: int, attempt: int, outcome: Fetched, retry_delays: list[float], jobs) -> str:
    """Write what attempt `attempt` came to; the outcome of an older attempt is ignored."""
    attachment = _locked(attachment_id)
    if attachment is None or attachment.attempts != attempt or attachment.status != "pending":
        return attachment.status if attachment else "missing"
    status, retry_in = after_fetch(outcome, attempt, retry_delays)
    attachment.status, attachment.error, attachment.next_attempt_at = status, outcome.error, None
    if status == "stored":
        attachment.storage_key = services().files.put(outcome.content, attachment.name,
                                                                              attachment.content_type)
        attachment.size = len(outcome.content)
    if retry_in is not None:
        attachment.next_attempt_at = utcnow() + timedelta(seconds=retry_in)
        after_commit(db.session, partial(jobs.enqueue_at, attachment.next_attempt_at, job_names.FETCH_ATTACHMENT, attachment_id,
                                         job_id=f"fetch-{attachment_id}-{attempt + 1}"))
    message = attachment.message
    if status != "pending" and message.chat is not None:
        live.message_changed(message.chat, message)
    return status


def overdue(cutoff: datetime, limit: int = 200) -> list[int]:
    """Files still to fetch whose next attempt is overdue (their job was lost, or its outcome)."""
    return list(db.session.scalars(select(Attachment.id).where(Attachment.status == "pending",
                                                               Attachment.next_attempt_at <= cutoff)
                                   .order_by(Attachment.next_attempt_at).limit(limit)))
