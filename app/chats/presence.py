"""Operator presence: an operator is connected while a console tab holds `/api/events` open
(each keep-alive renews it) or an API client calls `PUT /api/me/presence` at least every
`CHATFLOW_PRESENCE_HEARTBEAT_SECONDS` (60). Routing offers chats only to operators who are active and connected;
one gone longer than `OperatorPresenceGraceSeconds` loses the chats offered to them.

Who is connected is one column, `users.connected_until`, so every web and worker process
agrees without sharing memory; a web process that dies simply stops renewing it.
"""
import threading
from collections import Counter
from datetime import timedelta
from functools import partial

from sqlalchemy import select

from app import job_names
from app.chats import decisions, routing, settings
from app.engine.tx import after_commit
from app.extensions import db
from app.models import User
from app.models.types import utcnow


# Open event streams per user in this process: closing one of two tabs is not leaving.
_streams: Counter = Counter()
_streams_lock = threading.Lock()


def grace_seconds() -> float:
    return settings.get("OperatorPresenceGraceSeconds")


def seen(user_id: int, seconds: float, jobs, check: bool = True) -> User:
    """A sign of life: connected for `seconds` from now. Coming back makes them routable again.

    With `check` (heartbeats) a job looks again once it runs out plus the grace; an open stream
    renews itself instead, and its closing schedules that look.
    """
    now = utcnow()
    user = routing.lock_user(user_id)
    was_connected = decisions.is_connected(user.connected_until, now)
    until = now + timedelta(seconds=seconds)
    if user.connected_until is None or user.connected_until < until:
        user.connected_until = until
    if not was_connected and user.status == "active":
        after_commit(db.session, partial(jobs.enqueue, job_names.DRAIN_OPERATOR, user.id))
    if check:
        _check_later(user.id, user.connected_until, jobs)
    return user


def _check_later(user_id: int, gone_since, jobs) -> None:
    """Once the grace after `gone_since` is over, a job withdraws their offers if they are still gone."""
    check_at = gone_since + timedelta(seconds=grace_seconds())
    after_commit(db.session, partial(jobs.enqueue_at, check_at, job_names.WITHDRAW_OFFERS, user_id,
                                     job_id=f"presence-{user_id}-{check_at.timestamp():.0f}"))


def stream_opened(user_id: int) -> None:
    with _streams_lock:
        _streams[user_id] += 1


def stream_closed(user_id: int, jobs, last_sent=None) -> None:
    """The tab went away: unless another tab of theirs is open here, they are gone since the
    stream's last successful write (a tab on another web process renews them at its next keep-alive)."""
    with _streams_lock:
        _streams[user_id] -= 1
        if _streams[user_id] > 0:
            return
        del _streams[user_id]
    now = min(last_sent or utcnow(), utcnow())
    user = routing.lock_user(user_id)
    if user.connected_until is not None and user.connected_until > now:
        user.connected_until = now
    _check_later(user.id, now, jobs)


def describe(user: User, now=None) -> dict:
    """Status and presence as `GET /api/me` and the users list show them."""
    connected = decisions.is_connected(user.connected_until, now or utcnow())
    return {"status": user.status, "connected": connected, "presence": decisions.presence(user.status, connected),
            "connected_until": user.connected_until.isoformat() if user.connected_until else None}


def holding_lost_offers(now=None, limit: int = 200) -> list[int]:
    """Operators holding offers they should not (inactive, or gone past the grace): for the sweep."""
    now = now or utcnow()
    cutoff = now - timedelta(seconds=grace_seconds())
    return list(db.session.scalars(select(User.id).where(
        User.chats_offered > 0, (User.status != "active") | User.connected_until.is_(None)
        | (User.connected_until <= cutoff)).order_by(User.id).limit(limit)))


def recheck_offers(user_ids, jobs) -> None:
    """After a change that may cost operators their offers (left a queue or a role): check them."""
    for user_id in set(user_ids):
        after_commit(db.session, partial(jobs.enqueue, job_names.WITHDRAW_OFFERS, user_id))
