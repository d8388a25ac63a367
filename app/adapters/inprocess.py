"""Jobs in a thread of the web process: the embedded default, with no Redis.

RQ workers only run in a main thread (they install signal handlers) and an in-memory
fake Redis is not shared with RQ's forked scheduler, so the embedded default runs the same
job functions here instead. The database timer sweep runs in the same thread.
"""
import heapq
import itertools
import logging
import threading
from contextlib import nullcontext
from datetime import datetime, timezone
from importlib import import_module

from app.engine.ports import JobQueue

log = logging.getLogger(__name__)


def resolve(path: str):
    module, _, name = path.rpartition(".")
    return getattr(import_module(module), name)


class InProcessJobQueue(JobQueue):
    def __init__(self, app=None, sweep=None, sweep_seconds: float = 1.0, observer=None, failed=None, succeeded=None):
        """`observer` (optional): `enqueued(func)` is told of each job, `context()` answers what a job
        carries from where it was enqueued, and `running(func, context)` is entered around it.
        `failed(error, what)` and `succeeded()` tell how background work went (app.outages logs a
        lost connection once per outage); this thread never ends on an error."""
        self.app, self.sweep, self.sweep_seconds, self.observer = app, sweep, sweep_seconds, observer
        self.failed = failed or (lambda error, what: log.error("%s failed", what, exc_info=error))
        self.succeeded = succeeded or (lambda: None)
        self._heap, self._counter = [], itertools.count()
        self._cond = threading.Condition()
        self._thread = None
        self._stopping = False
        self._busy = 0  # jobs and sweeps running now

    def enqueue(self, func: str, *args, job_id: str | None = None) -> None:
        self.enqueue_at(datetime.now(timezone.utc), func, *args, job_id=job_id)

    def enqueue_at(self, when: datetime, func: str, *args, job_id: str | None = None) -> None:
        context = None
        if self.observer is not None:
            self.observer.enqueued(func)
            context = self.observer.context()
        with self._cond:
            heapq.heappush(self._heap, (when.timestamp(), next(self._counter), func, args, context))
            self._cond.notify()

    def pending(self) -> int:
        with self._cond:
            return len(self._heap)

    def waiting(self) -> list[str]:
        """The names of the jobs waiting, due or scheduled, soonest first."""
        with self._cond:
            return [job[2] for job in sorted(self._heap)]

    def idle(self) -> bool:
        """Nothing is running and nothing due waits: every job due so far has finished."""
        with self._cond:
            due = self._heap and self._heap[0][0] <= datetime.now(timezone.utc).timestamp()
            return not self._busy and not due

    def _done(self) -> None:
        with self._cond:
            self._busy -= 1

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
                # Stopped: no job starts any more (a stopped app's jobs would act on what comes after it).
                if self._stopping or not self._heap or self._heap[0][0] > datetime.now(timezone.utc).timestamp():
                    return ran
                _, _, func, args, context = heapq.heappop(self._heap)
                self._busy += 1  # with the pop: idle() never sees a job neither waiting nor running
            self._call(func, args, context)
            ran += 1

    def _call(self, func: str, args, context=None) -> None:
        try:
            with self.app.app_context(), (self.observer.running(func, context) if self.observer else nullcontext()):
                resolve(func)(*args)
            self.succeeded()
        except Exception as e:
            self.failed(e, f"job {func}{args!r}")
        finally:
            self._done()

    def _run(self) -> None:
        next_sweep = 0.0
        while not self._stopping:
            self.run_pending()
            now = datetime.now(timezone.utc).timestamp()
            if self.sweep is not None and now >= next_sweep:
                with self._cond:
                    self._busy += 1
                try:
                    with self.app.app_context():
                        self.sweep()
                    self.succeeded()
                except Exception as e:
                    self.failed(e, "timer sweep")
                finally:
                    self._done()
                next_sweep = now + self.sweep_seconds
            with self._cond:
                wait = next_sweep - now
                if self._heap:
                    wait = min(wait, self._heap[0][0] - now)
                if wait > 0 and not self._stopping:
                    self._cond.wait(timeout=wait)
