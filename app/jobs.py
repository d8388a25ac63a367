"""Job functions run by RQ workers (or the embedded job thread). They take ids only.

Each runs inside an app context and commits at its own edge.
"""
import logging
from datetime import timedelta

from flask import current_app, has_app_context

from app.extensions import db
from app.models.types import utcnow

log = logging.getLogger(__name__)
_worker_app = None


def _app():
    """The current app, or one built once per worker process (RQ jobs run outside Flask)."""
    global _worker_app
    if has_app_context():
        return current_app._get_current_object()
    if _worker_app is None:
        from app import create_app
        _worker_app = create_app(start_jobs=False)
    return _worker_app


def _engine(app):
    return app.extensions["chatflow.engine"]


def fire_timers(instance_id: int) -> bool:
    """Wake an instance at its timer's due time; a stale wake-up does nothing."""
    app = _app()
    with app.app_context():
        try:
            fired = _engine(app).fire_timers(instance_id)
            db.session.commit()
            return fired
        except Exception:
            db.session.rollback()
            raise


def sweep_due_timers(grace_seconds: float | None = None) -> int:
    """Fire timers that are overdue by more than the grace: their RQ job was lost or late."""
    app = _app()
    with app.app_context():
        grace = app.config["TIMER_SWEEP_GRACE_SECONDS"] if grace_seconds is None else grace_seconds
        engine = _engine(app)
        fired = 0
        for instance_id in engine.due_instances(utcnow() - timedelta(seconds=grace)):
            try:
                fired += engine.fire_timers(instance_id)
                db.session.commit()
            except Exception:
                db.session.rollback()
                log.exception("sweep could not fire timers of instance %s", instance_id)
        db.session.remove()
        return fired
