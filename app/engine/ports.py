"""What the engine needs from outside, as small Protocols; create_app picks the implementations."""
from datetime import datetime
from typing import Protocol


class JobQueue(Protocol):
    """Runs job functions (named by dotted path, taking plain ids) in a worker."""

    def enqueue(self, func: str, *args, job_id: str | None = None) -> None: ...

    def enqueue_at(self, when: datetime, func: str, *args, job_id: str | None = None) -> None: ...
