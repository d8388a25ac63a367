"""Workers' heartbeats, written from each worker's sweep loop, and how many workers are alive.

Each beat goes to Redis (a sorted set, read by /healthz) and to the database (read when Redis is
away). A Redis restarted empty holds every live worker again one beat later: RQ's own worker
registry, written only when a worker starts, does not.
"""
import os
import socket
from datetime import timedelta

from sqlalchemy import delete, func, select

from app.extensions import db
from app.models import WorkerHeartbeat
from app.models.types import utcnow
from app.outages import DATABASE, REDIS, is_transient
from app.services import services


def worker_name() -> str:
    return f"{socket.gethostname()}:{os.getpid()}"


def ttl(app) -> float:
    """A worker is alive while its last beat is younger than this: three sweeps, at least 3 s."""
    return max(3.0, 3 * app.config["TIMER_SWEEP_SECONDS"])


def beat(app, name: str) -> dict:
    """Write one beat to Redis and to the database; each may fail alone (it is logged once)."""
    jobs, seconds = services(app).jobs, ttl(app)
    written = {}
    # The database first: once the beat shows in Redis, this worker is not writing its row any more.
    for outage, write in ((DATABASE, lambda: _beat_row(app, name, seconds)),
                          (REDIS, lambda: jobs.beat(name, seconds))):
        try:
            write()
            outage.up()
            written[outage.what] = True
        except Exception as e:
            if not is_transient(e):
                raise
            outage.down(e)
            written[outage.what] = False
    return written


def _beat_row(app, name: str, seconds: float) -> None:
    with app.app_context():
        try:
            now = utcnow()
            row = db.session.get(WorkerHeartbeat, name)
            if row is None:
                db.session.add(WorkerHeartbeat(name=name, live_until=now + timedelta(seconds=seconds)))
            else:
                row.live_until = now + timedelta(seconds=seconds)
            # Beats of workers long gone are dropped by whoever beats next.
            db.session.execute(delete(WorkerHeartbeat).where(WorkerHeartbeat.live_until < now - timedelta(hours=1)))
            db.session.commit()
        except Exception:
            db.session.rollback()
            raise


def forget(app, name: str) -> None:
    """A worker stopping on request takes its beat with it, so the count drops at once."""
    try:
        services(app).jobs.forget(name)
    except Exception:
        pass  # it expires by itself
    with app.app_context():
        try:
            db.session.execute(delete(WorkerHeartbeat).where(WorkerHeartbeat.name == name))
            db.session.commit()
        except Exception:
            db.session.rollback()


def live_workers(app) -> dict:
    """{"count", "source"}: from Redis, or from the database while Redis does not answer."""
    try:
        return {"count": services(app).jobs.live_workers(), "source": "redis"}
    except Exception as e:
        if not is_transient(e):
            raise
    count = db.session.scalar(select(func.count()).select_from(WorkerHeartbeat)
                              .where(WorkerHeartbeat.live_until > utcnow()))
    return {"count": count, "source": "database"}


def health(app) -> dict:
    """/healthz's checks of the production shape: Redis, and the workers alive by their beats."""
    checks = {"redis": services(app).jobs.health()}
    try:
        workers = live_workers(app)
    except Exception as e:  # Redis and the database both away
        checks["jobs"] = {"ok": False, "backend": "rq", "error": f"live workers unknown: {type(e).__name__}"}
        return checks
    ok = workers["count"] > 0
    checks["jobs"] = {"ok": ok, "backend": "rq", "workers": workers["count"], "source": workers["source"],
                      **({} if ok else {"error": "no chatflow worker is running"})}
    return checks
