"""What lasts as long as the current transaction: work for after its commit, and row locks held.

A job enqueued before commit could run before its rows are visible; a rollback must not
enqueue anything. If the work itself fails (Redis away), the database still holds the
truth and the timer sweep catches up.
"""
import logging
from contextlib import contextmanager

from sqlalchemy import event
from sqlalchemy.orm import Session, scoped_session

log = logging.getLogger(__name__)
_KEY = "chatflow_after_commit"
_LOCKED = "chatflow_locked_rows"


def _begun(session) -> Session:
    """The real session, inside a transaction: so that what is kept for it ends with it, even a
    rollback before any SQL ran."""
    session = session() if isinstance(session, scoped_session) else session
    if not session.in_transaction():
        session.begin()
    return session


def locked_rows(session) -> dict:
    """Rows this transaction holds a lock on (key -> loaded object); a new transaction starts empty."""
    session = _begun(session)
    transaction = session.get_transaction()
    owner, rows = session.info.get(_LOCKED, (None, None))
    if owner is not transaction:
        rows = {}
        session.info[_LOCKED] = (transaction, rows)
    return rows


def commit_keeping_rows(session) -> None:
    """Commit, keeping the values of the loaded rows (SQLAlchemy expires them, so that the next
    read asks the database again): an answer about rows this transaction wrote is built from them."""
    session = session() if isinstance(session, scoped_session) else session
    session.expire_on_commit = False
    try:
        session.commit()
    finally:
        session.expire_on_commit = True


def after_commit(session, func, *args) -> None:
    session = _begun(session)
    session.info.setdefault(_KEY, []).append((func, args))


@contextmanager
def savepoint(session):
    """Run the block in a SAVEPOINT; if it raises, its database work is undone and so is what it
    queued for after commit and the row locks it recorded (a rollback to a savepoint may release them)."""
    session = _begun(session)
    queued = len(session.info.get(_KEY, []))
    held = locked_rows(session)
    locked_before = set(held)
    nested = session.begin_nested()
    try:
        yield
    except BaseException:
        try:
            nested.rollback()
        except Exception:  # the connection is gone: the caller's rollback of the whole transaction follows
            log.exception("rollback to savepoint failed")
        del session.info.get(_KEY, [])[queued:]
        for key in set(held) - locked_before:
            del held[key]
        raise
    nested.commit()


def _log_failure(error: Exception, what: str) -> None:
    log.error("%s failed; the sweep will catch up", what, exc_info=error)


_failed = _log_failure  # install(failed=...) replaces it (a lost Redis is logged once per outage)


def _run(session):
    # SQLAlchemy sends after_commit for a released SAVEPOINT too: its work waits for the real commit.
    if session.in_nested_transaction():
        return
    for func, args in session.info.pop(_KEY, []):
        try:
            func(*args)
        except Exception as e:
            _failed(e, f"after-commit work {getattr(func, '__name__', func)}{args!r}")


def _drop(session, previous_transaction):
    # Soft rollback: also a rollback before any SQL ran, which the database never saw.
    if not previous_transaction.nested:
        session.info.pop(_KEY, None)


def install(failed=None) -> None:
    """`failed(error, what)`: how after-commit work that raised is reported."""
    global _failed
    _failed = failed or _log_failure
    if not event.contains(Session, "after_commit", _run):
        event.listen(Session, "after_commit", _run)
        event.listen(Session, "after_soft_rollback", _drop)
