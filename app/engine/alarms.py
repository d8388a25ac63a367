"""When workers wake for timers (pure; app.jobs.fire_due_timers is the edge).

Timers are not jobs: each instance keeps its next due time in the indexed
`process_instances.next_timer_at`, and workers claim due instances from there. A job queue only
wakes a worker: one alarm per whole second (RQ's scheduler keeps whole seconds), named by that
second, so the timers due in it share one wake-up instead of one job each.
"""
from datetime import datetime, timedelta

LOOKAHEAD_SECONDS = 1.0  # an alarm wakes up to a second early: timers due that soon are waited for
HELD_RETRY_SECONDS = 0.05  # a due instance someone else holds (firing it, or a request on it): look again
SURE_PENDING_SECONDS = 2.0  # an alarm this far ahead cannot have run yet


def alarm_at(due_at: datetime) -> datetime:
    """The whole second at or before `due_at`: its alarm wakes a worker for every timer due in it."""
    return due_at.replace(microsecond=0)


def alarm_id(alarm: datetime) -> str:
    return f"timers-at-{int(alarm.timestamp())}"


def wait_before(next_due: datetime | None, now: datetime, time_left: float) -> float | None:
    """Seconds a woken worker that claimed nothing waits before it tries again, or None to stop.

    `next_due`: the earliest timer not claimable now. Due already, someone else holds its
    instance (SKIP LOCKED passed it over): once they commit it has moved on, or, if they only read
    it or rolled back, it is still due and this worker takes it, so it looks again shortly instead
    of leaving it to the sweep. Due within the lookahead (the alarm woke early): waited for. Only
    within the job's time.
    """
    if next_due is None:
        return None
    wait = (next_due - now).total_seconds()
    wait = HELD_RETRY_SECONDS if wait <= 0 else wait
    return wait if wait <= LOOKAHEAD_SECONDS and wait <= time_left else None


class Scheduled:
    """Alarms this process has scheduled lately, so a thousand timers due in one second schedule
    it once. An alarm is scheduled again once it is near (it may have run, or been lost)."""

    def __init__(self):
        self._seconds: set[datetime] = set()

    def needed(self, alarm: datetime, now: datetime) -> bool:
        return alarm not in self._seconds or alarm <= now + timedelta(seconds=SURE_PENDING_SECONDS)

    def add(self, alarm: datetime, now: datetime) -> None:
        """`alarm` was scheduled (after its commit: a rolled-back step scheduled nothing)."""
        if len(self._seconds) >= 1000:
            sure = now + timedelta(seconds=SURE_PENDING_SECONDS)
            self._seconds = {s for s in self._seconds if s > sure}
        self._seconds.add(alarm)
