"""What the API reads about processes and instances: deployed versions, instances, their history.

Each read is here once, so a rule (which version is the latest, what an instance's history
holds) has one home. Callers page with `limit` and `offset`, oldest first.
"""
from sqlalchemy import func, select

from app.engine.errors import NotFound
from app.extensions import db
from app.models import InstanceEvent, ProcessInstance, ProcessVersion

HISTORY_LIMIT = 500  # an instance's history answers at most this many events


def latest_versions(limit: int, offset: int) -> list[ProcessVersion]:
    """The latest version of each deployed key, the first deployed key first."""
    latest = (select(ProcessVersion.key, func.max(ProcessVersion.version).label("v"),
                     func.min(ProcessVersion.id).label("first_id"))
              .group_by(ProcessVersion.key).subquery())
    return db.session.scalars(select(ProcessVersion).join(latest, (ProcessVersion.key == latest.c.key)
                                                          & (ProcessVersion.version == latest.c.v))
                              .order_by(latest.c.first_id).limit(limit).offset(offset)).all()


def versions(key: str) -> list[ProcessVersion]:
    """Every version of `key`, oldest first; 404 process_not_found when none is deployed."""
    found = db.session.scalars(select(ProcessVersion).where(ProcessVersion.key == key)
                               .order_by(ProcessVersion.version)).all()
    if not found:
        raise NotFound(f"no process {key!r} is deployed", code="process_not_found")
    return found


def version(key: str, number: int) -> ProcessVersion:
    for v in versions(key):
        if v.version == number:
            return v
    raise NotFound(f"process {key!r} has no version {number}", code="version_not_found")


def instance(instance_id: int) -> ProcessInstance:
    found = db.session.get(ProcessInstance, instance_id)
    if found is None:
        raise NotFound(f"no process instance {instance_id}", code="instance_not_found")
    return found


def instances(limit: int, offset: int, process: str | None = None, state: str | None = None,
              business_key: str | None = None) -> list[ProcessInstance]:
    query = select(ProcessInstance).order_by(ProcessInstance.id)
    if process:
        query = query.where(ProcessInstance.process_key == process)
    if state:
        query = query.where(ProcessInstance.state == state)
    if business_key:
        query = query.where(ProcessInstance.business_key == business_key)
    return db.session.scalars(query.limit(limit).offset(offset)).all()


def history(instance_id: int) -> list:
    """The instance's events (at, task, event, details), oldest first, at most HISTORY_LIMIT: rows
    read for an answer, not objects to change (no identity map to fill)."""
    return db.session.execute(select(InstanceEvent.at, InstanceEvent.task, InstanceEvent.event, InstanceEvent.details)
                              .where(InstanceEvent.instance_id == instance_id)
                              .order_by(InstanceEvent.id).limit(HISTORY_LIMIT)).all()
