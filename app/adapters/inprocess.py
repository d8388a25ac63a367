"""Jobs in a thread of the web process: the embedded default, with no Redis.

RQ workers only run in a main thread (they install signal handlers) and an in-memory
fake Redis is not shared with RQ's forked scheduler, so the embedded default runs the same
job functions here instead. The database timer sweep runs in the same thread.
"""
import heapq
import itertools
import logging
import threading
from datetime import datetime, timezone
from importlib import import_module

log = logging.getLogger(__name__)


def resolve(path: str):
    module, _, name = path.rpartition(".")
    return getattr(import_module(module), name)


class InProcessJobQueue:
    def __init__(self, app=None, sweep=None, sweep_seconds: float = 1.0):
        self.app, self.sweep, self.sweep_seconds = app, sweep, sweep_seconds
        self._heap, self._counter = [], itertools.count()
        self._cond = threading.Condition()
        self._thread = None
        self._stopping = False

    def enqueue(self, func: str, *args, job_id: str | None = None) -> None:
        self.enqueue_at(datetime.now(timezone.utc), func, *args, job_id=job_id)

    def enqueue_at(self, when: datetime, func: str, *args, job_id: str | None = None) -> None:
        with self._cond:
            heapq.heappush(self._heap, (when.timestamp(), next(self._counter), func, args))
            self._cond.notify()

    def start(self) -> None:
        if self._thread is None:
            self._thread = threading.Thread(target=self._run, name="chatflow-jobs", daemon=True)
            self._thread.start()

    def health(self) -> dict:
        alive = self._thread is not None and self._thread.is_alive()
        return {"ok": alive, "backend": "in-process", **({} if alive else {"error": "job thread not running"})}

    def stop(self) -> None:
        with self._cond:
            self._stopping = True
            self._cond.notify()
        if self._thread is not None:
            self._thread.join(timeout=5)

    def run_pending(self) -> int:
        """Run every job that is due now, in this thread; returns how many ran."""
        ran = 0
        while True:
            with self._cond:
                if not self._heap or self._heap[0][0] > datetime.now(timezone.utc).timestamp():
                    return ran
                _, _, func, args = heapq.heappop(self._heap)
            self._call(func, args)
            ran += 1

    def _call(self, func: str, args) -> None:
        try:
            with self.app.app_context():
                resolve(func)(*args)
        except Exception:
            log.exception("job %s%r failed", func, args)

    def _run(self) -> None:
        next_sweep = 0.0
        while not self._stopping:
            self.run_pending()
            now = datetime.now(timezone.utc).timestamp()
            if self.sweep is not None and now >= next_sweep:
                try:
                    with self.app.app_context():
                        self.sweep()
                except Exception:
                    log.exception("timer sweep failed")
                next_sweep = now + self.sweep_seconds
            with self._cond:
                wait = next_sweep - now
                if self._heap:
                    wait = min(wait, self._heap[0][0] - now)
                if wait > 0 and not self._stopping:
                    self._cond.wait(timeout=wait)
