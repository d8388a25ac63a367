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


def scoped(session, key: str) -> dict:
    """A dict kept under `key` as long as the current transaction lasts (a new one starts empty)."""
    session = _begun(session)
    transaction = session.get_transaction()
    owner, values = session.info.get(key, (None, None))
    if owner is not transaction:
        values = {}
        session.info[key] = (transaction, values)
    return values


def locked_rows(session) -> dict:
    """Rows this transaction holds a lock on (key -> loaded object); a new transaction starts empty."""
    return scoped(session, _LOCKED)


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
    """Run the block so that, if it raises, its database work is undone, and so is what it queued
    for after commit and the row locks it recorded (a rollback to a savepoint may release them).

    The SAVEPOINT is opened at the block's first write, not before: reads need no undoing, and a
    block whose changes are all still pending in the session when it ends needs none at all (on
    success they are flushed later with the caller's; on failure they are flushed into a savepoint
    opened then and rolled back with it, which also restores the session's objects).
    """
    session = _begun(session)
    queued = len(session.info.get(_KEY, []))
    held = locked_rows(session)
    locked_before = set(held)
    session.flush()  # the caller's changes stay outside the block
    frames = session.info.setdefault(_FRAMES, [])
    frame = _Frame()
    frames.append(frame)
    try:
        yield
    except BaseException:
        try:
            try:
                session.flush()  # what the block left pending goes into its savepoint, to be undone with it
            finally:
                if frame.nested is not None:
                    frame.nested.rollback()
        except Exception:  # the connection is gone: the caller's rollback of the whole transaction follows
            log.exception("rollback to savepoint failed")
        del session.info.get(_KEY, [])[queued:]
        for key in set(held) - locked_before:
            del held[key]
        raise
    finally:
        frames.remove(frame)
    if frame.nested is not None:
        frame.nested.commit()


class _Frame:
    nested = None  # the SessionTransaction of its SAVEPOINT, once the block wrote


_FRAMES = "chatflow_savepoints"


def _open(session) -> None:
    """Open the savepoints of the blocks running now (outermost first) before SQL that may write:
    a flush of what is pending opens them before its writes; else they open now (each SAVEPOINT
    goes out with the next statement)."""
    session.flush()
    _open_frames(session)


def _open_frames(session) -> None:
    for frame in session.info.get(_FRAMES, ()):
        if frame.nested is None:
            # Inside a flush SQLAlchemy does not flush again: the SAVEPOINT precedes the pending writes
            # (it is sent with the first statement that follows).
            frame.nested = session.begin_nested()


def _before_flush(session, flush_context, instances):
    if session.info.get(_FRAMES):
        _open_frames(session)


def _before_write(orm_execute_state):
    """SQL a block sends itself (not a flush) that may write: its savepoint opens first."""
    if not orm_execute_state.is_select and orm_execute_state.session.info.get(_FRAMES):
        _open(orm_execute_state.session)


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
        event.listen(Session, "before_flush", _before_flush)
        event.listen(Session, "do_orm_execute", _before_write)
