"""Riding out a lost Redis or database connection: what counts as one, and logging it once.

Workers never exit on such an error: they wait with backoff and carry on. Each outage is
logged when it starts and when it ends, not on every failed attempt in between.
"""
import logging
import threading
import time

import redis
from sqlalchemy.exc import DBAPIError, InterfaceError, OperationalError

log = logging.getLogger("chatflow.outages")


def is_transient(error: BaseException) -> bool:
    """A connection to Redis or the database was lost or refused: trying again later may work."""
    if isinstance(error, (redis.exceptions.ConnectionError, redis.exceptions.TimeoutError,
                          OperationalError, InterfaceError)):
        return True
    return isinstance(error, DBAPIError) and error.connection_invalidated


def backoff(attempt: int, first: float = 0.5, most: float = 5.0) -> float:
    """Seconds to wait before try number `attempt` (1-based): doubling, capped."""
    return min(most, first * 2 ** (attempt - 1))


class Outage:
    """One dependency's state as this process sees it; logs only the changes."""

    def __init__(self, what: str):
        self.what, self.since = what, None
        self._lock = threading.Lock()

    def down(self, error: BaseException) -> None:
        with self._lock:
            if self.since is None:
                self.since = time.monotonic()
                log.warning("%s is unreachable (%s: %s); retrying with backoff until it is back", self.what,
                            type(error).__name__, (str(error).strip().splitlines() or [""])[0][:200])

    def up(self) -> None:
        with self._lock:
            if self.since is not None:
                log.warning("%s is back after %.1f s", self.what, time.monotonic() - self.since)
                self.since = None


REDIS, DATABASE = Outage("Redis"), Outage("the database")
STOPPING = threading.Event()  # the process was asked to stop: waits for a connection end early


def outage_of(error: BaseException) -> Outage:
    return REDIS if isinstance(error, (redis.exceptions.ConnectionError, redis.exceptions.TimeoutError)) \
        else DATABASE


def retrying(work, give_up_after: float = 60.0, stop: threading.Event = STOPPING):
    """`work()`, tried again with backoff while it fails on a lost connection (at most
    `give_up_after` seconds, or until `stop` is set); any other error is raised at once."""
    deadline, attempt, struck = time.monotonic() + give_up_after, 0, None
    while True:
        try:
            result = work()
        except Exception as e:
            if not is_transient(e):
                raise
            attempt, struck = attempt + 1, outage_of(e)
            struck.down(e)
            wait = backoff(attempt)
            if time.monotonic() + wait > deadline or stop.is_set():
                raise
            stop.wait(wait)
            continue
        if struck is not None:
            struck.up()
        return result


def report(error: BaseException, what: str) -> None:
    """Log a failure of background work: a lost connection once per outage, anything else in full."""
    if is_transient(error):
        outage_of(error).down(error)
    else:
        log.error("%s failed", what, exc_info=error)


def all_up() -> None:
    """Background work just succeeded: whatever was down is back."""
    REDIS.up()
    DATABASE.up()
