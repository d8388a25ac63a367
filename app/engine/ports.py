"""What the engine needs from outside, as small Protocols; create_app picks the implementations."""
from datetime import datetime
from typing import Protocol


class JobQueue(Protocol):
    """Runs job functions (named by dotted path, taking plain ids) in a worker."""

    #: Scheduled jobs run only at whole seconds (RQ's scheduler): timers' alarms then ring at the
    #: second before their due time and the woken worker waits the rest (app.engine.alarms).
    whole_seconds: bool = False

    def enqueue(self, func: str, *args, job_id: str | None = None) -> None: ...

    def enqueue_at(self, when: datetime, func: str, *args, job_id: str | None = None) -> None: ...
