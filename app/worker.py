"""`chatflow worker`: an RQ worker that outlives Redis and database outages, beside the sweep loop.

RQ's work loop quits on an error outside a job (Redis dropping during its bookkeeping after a
job, a Redis timeout): here it is simply started again once Redis answers. Only SIGTERM or
SIGINT ends the process, after the current job and the current sweep.

The sweep loop beats (app.heartbeats) and sweeps the database every TIMER_SWEEP_SECONDS: timers
due for longer than the grace fire there, whichever worker holds RQ's scheduler. That is what
keeps timers on time when a worker dies: RQ's scheduler lock outlives its holder by up to 61 s.
"""
import logging
import signal
import threading
import time

import redis
from rq import SimpleWorker
from rq.exceptions import StopRequested
from rq.worker.base import WorkerStatus

from app import heartbeats, jobs, logs, metrics
from app.outages import STOPPING, backoff, is_transient, outage_of
from app.services import services

log = logging.getLogger("chatflow.worker")
RQ_NOISE = ("Worker %s: could not connect to Redis", "Worker %s: found an unhandled exception",
            "Worker %s: Redis connection timeout")


class ChatflowWorker(SimpleWorker):
    """SimpleWorker runs jobs in this process: no fork per job, so parsed specs stay cached.
    Each job runs with the request id it carries, for its logs and the jobs it enqueues."""

    max_connection_wait_time = 2.0  # RQ waits up to 60 s between reconnects; be back within 2 s

    app = None  # set by run(): every job runs in its context

    def perform_job(self, job, queue, *args, **kwargs):
        with logs.job_scope(job.meta), self.app.app_context():
            return super().perform_job(job, queue, *args, **kwargs)

    def request_stop(self, signum, frame):
        STOPPING.set()
        try:
            super().request_stop(signum, frame)
        except (redis.exceptions.ConnectionError, redis.exceptions.TimeoutError):
            # Redis is away: RQ could not note the request there. Stop after the job, or now if idle.
            self._stop_requested = True
            if self.get_state() != WorkerStatus.BUSY:
                raise StopRequested() from None


class _OncePerOutage(logging.Filter):
    """RQ logs every reconnect attempt; the outage is logged once (app.outages) instead."""

    def filter(self, record):
        if not str(record.msg).startswith(RQ_NOISE):
            return True
        error = record.exc_info[1] if record.exc_info else next(
            (a for a in record.args or () if isinstance(a, BaseException)), None)
        if error is None or not is_transient(error):
            return True
        outage_of(error).down(error)
        return False


def _count_failure(job, *_exc_info):
    metrics.job_failed(job.func_name)
    return True  # and on to RQ's own handling (the failed-job registry)


def sweep_loop(app, name: str, stopped: threading.Event) -> None:
    """Beat, wait TIMER_SWEEP_SECONDS, sweep; again until the worker stops. A long sweep beats
    between its items, so a busy worker is never taken for a dead one."""
    interval, last_beat = app.config["TIMER_SWEEP_SECONDS"], 0.0

    def beat_when_due():
        nonlocal last_beat
        if time.monotonic() - last_beat >= interval:
            heartbeats.beat(app, name)
            last_beat = time.monotonic()

    while not STOPPING.is_set():
        try:
            beat_when_due()
            if STOPPING.wait(interval):
                break
            with app.app_context():
                jobs.sweep(between=beat_when_due)
        except Exception as e:
            if not is_transient(e):
                log.exception("sweep failed")
            else:
                outage_of(e).down(e)
                STOPPING.wait(interval)
    stopped.set()


def run(app) -> None:
    """Work until asked to stop; never exit on a lost connection."""
    logging.getLogger("rq.worker").addFilter(_OncePerOutage())
    name = heartbeats.worker_name()
    queue = services(app).jobs.queue
    swept = threading.Event()
    threading.Thread(target=sweep_loop, args=(app, name, swept), name="sweep", daemon=True).start()
    attempt = 0
    while not STOPPING.is_set():
        worker = None
        try:
            # Maintenance (when RQ tries again to take the scheduler lock; 10 min by default) every
            # 15 s; an idle dequeue lasts worker_ttl - 15 s, so it comes round that often.
            worker = ChatflowWorker([queue], connection=queue.connection, worker_ttl=30, maintenance_interval=15,
                                    exception_handlers=[_count_failure])
            worker.app = app
            worker.work(with_scheduler=True)
        except Exception as e:  # creating a worker talks to Redis, and work()'s teardown may raise
            if not is_transient(e):
                raise
            outage_of(e).down(e)
        if STOPPING.is_set() or (worker is not None and worker._stop_requested):
            break
        # RQ's loop quit on a lost connection: wait for Redis, then start it again.
        signal.signal(signal.SIGTERM, lambda *_: STOPPING.set())
        signal.signal(signal.SIGINT, lambda *_: STOPPING.set())
        attempt += 1
        try:
            queue.connection.ping()
            attempt = 0
        except Exception as e:
            outage_of(e).down(e)
            STOPPING.wait(backoff(attempt))
    STOPPING.set()
    swept.wait(timeout=app.config["PROVIDER_TIMEOUT_SECONDS"] + 5)  # the sweep's current work ends first
    heartbeats.forget(app, name)
    log.info("worker %s stopped", name)
