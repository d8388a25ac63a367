"""Jobs on RQ and Redis: the production shape."""
import math
import time
from datetime import datetime, timezone

from redis import Redis
from rq import Queue

from app.engine.ports import JobQueue


class RQJobQueue(JobQueue):
    whole_seconds = True

    def __init__(self, redis_url: str, queue_name: str, observer=None):
        """`observer` (optional): `enqueued(func)` is told of each job, `context()` answers what the
        job carries in its meta (the request id its logs name)."""
        # Timeouts: a Redis that stopped answering is an error soon, not a hang.
        self.connection = Redis.from_url(redis_url, socket_connect_timeout=2, socket_timeout=10,
                                         health_check_interval=15)
        self.queue = Queue(queue_name, connection=self.connection)
        self.observer = observer
        self.heartbeats_key = f"chatflow:heartbeats:{queue_name}"

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

    # Workers' heartbeats: one sorted set, member = worker, score = the time its beat expires. The
    # key itself lives as long as the longest beat, so a Redis whose workers all died forgets them.
    def beat(self, worker: str, ttl: float) -> None:
        until = time.time() + ttl
        with self.connection.pipeline() as p:
            p.zadd(self.heartbeats_key, {worker: until})
            p.zremrangebyscore(self.heartbeats_key, "-inf", time.time())
            p.expire(self.heartbeats_key, math.ceil(ttl), gt=True)
            p.expire(self.heartbeats_key, math.ceil(ttl), nx=True)
            p.execute()

    def forget(self, worker: str) -> None:
        self.connection.zrem(self.heartbeats_key, worker)

    def live_workers(self) -> int:
        return self.connection.zcount(self.heartbeats_key, time.time(), "+inf")

    def health(self) -> dict:
        """Redis answers (the workers are counted from heartbeats, see app.heartbeats)."""
        try:
            self.connection.ping()
        except Exception as e:
            return {"ok": False, "error": f"{type(e).__name__}: {e}"[:300]}
        return {"ok": True}
