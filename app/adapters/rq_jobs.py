"""Jobs on RQ and Redis: the production shape."""
import math
from datetime import datetime, timezone

from redis import Redis
from rq import Queue, Worker


class RQJobQueue:
    def __init__(self, redis_url: str, queue_name: str, observer=None):
        """`observer` (optional): `enqueued(func)` is told of each job, `context()` answers what the
        job carries in its meta (the request id its logs name)."""
        self.connection = Redis.from_url(redis_url)
        self.queue = Queue(queue_name, connection=self.connection)
        self.observer = observer

    def _meta(self, func: str) -> dict:
        if self.observer is None:
            return {}
        self.observer.enqueued(func)
        return self.observer.context()

    def enqueue(self, func: str, *args, job_id: str | None = None) -> None:
        self.queue.enqueue(func, *args, job_id=job_id, result_ttl=60, failure_ttl=24 * 3600, meta=self._meta(func))

    def enqueue_at(self, when: datetime, func: str, *args, job_id: str | None = None) -> None:
        # RQ keeps scheduled times in whole seconds, truncated: round up so a job never
        # wakes before its timer is due.
        when = datetime.fromtimestamp(math.ceil(when.timestamp()), timezone.utc)
        self.queue.enqueue_at(when, func, *args, job_id=job_id, result_ttl=60, failure_ttl=24 * 3600,
                              meta=self._meta(func))

    def pending(self) -> int:
        """Jobs waiting: due now, or scheduled for later."""
        return self.queue.count + self.queue.scheduled_job_registry.count

    def health(self) -> dict:
        """Redis answers and at least one worker listens on our queue."""
        try:
            self.connection.ping()
            workers = Worker.count(connection=self.connection, queue=self.queue)
        except Exception as e:
            return {"ok": False, "error": f"redis: {type(e).__name__}: {e}"[:300]}
        return {"ok": workers > 0, "backend": "rq", "workers": workers,
                **({} if workers else {"error": "no chatflow worker is running"})}
