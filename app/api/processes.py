from flask import Blueprint, current_app, request
from sqlalchemy import func, select

from app.api.auth import PAGE, accepts, accepts_files, admin, answers, authenticate, reads
from app.api.errors import ApiError
from app.api.validation import Field, Schema, page_args, parse
from app.engine.errors import NotFound
from app.extensions import db
from app.models import InstanceEvent, ProcessInstance, ProcessVersion

bp = Blueprint("processes", __name__, url_prefix="/api")
bp.before_request(authenticate)

START = Schema({"data": Field(dict), "business_key": Field(str, nullable=True)})
MESSAGE = Schema({"name": Field(str, required=True), "data": Field(dict)})
TASK_DATA = Schema({"data": Field(dict)})
INSTANCE_STATES = ("running", "waiting", "completed", "error", "cancelled")
HISTORY_LIMIT = 500


def engine():
    return current_app.extensions["chatflow.engine"]


def version_json(v: ProcessVersion) -> dict:
    return {"key": v.key, "version": v.version, "name": v.name, "filename": v.filename,
            "content_hash": v.content_hash, "deployed_at": v.deployed_at.isoformat()}


def instance_json(i: ProcessInstance, history: bool = True) -> dict:
    out = {"id": i.id, "process": i.process_key, "version": i.version.version, "state": i.state,
           "business_key": i.business_key, "data": i.data or {}, "waiting_for": i.waiting_for or [],
           "error": i.error, "created_at": i.created_at.isoformat(), "updated_at": i.updated_at.isoformat()}
    if history:
        events = db.session.scalars(select(InstanceEvent).where(InstanceEvent.instance_id == i.id)
                                    .order_by(InstanceEvent.id).limit(HISTORY_LIMIT)).all()
        out["history"] = [{"at": e.at.isoformat(), "task": e.task, "event": e.event,
                           **({"details": e.details} if e.details else {})} for e in events]
    return out


def get_instance(instance_id: int) -> ProcessInstance:
    instance = db.session.get(ProcessInstance, instance_id)
    if instance is None:
        raise NotFound(f"no process instance {instance_id}", code="instance_not_found")
    return instance


@bp.post("/processes")
@admin
@accepts_files("one or more .bpmn files", many=True)
def deploy():
    """Deploy one or more .bpmn files (multipart, each in a part named `file`)."""
    uploads = request.files.getlist("file")
    if not uploads:
        raise ApiError(400, "no_file", "send one or more .bpmn files as multipart parts named 'file'")
    files = [(u.filename or "upload.bpmn", u.read()) for u in uploads]
    result = engine().deploy(files)
    db.session.commit()
    return {"processes": result}, 201 if any(p["new"] for p in result) else 200


@bp.get("/processes")
@admin
@reads(PAGE)
def list_processes():
    """Deployed process keys with their latest version, oldest (first deployed) first."""
    latest = (select(ProcessVersion.key, func.max(ProcessVersion.version).label("v"),
                     func.min(ProcessVersion.id).label("first_id"))
              .group_by(ProcessVersion.key).subquery())
    limit, offset = page_args()
    rows = db.session.scalars(select(ProcessVersion).join(latest, (ProcessVersion.key == latest.c.key)
                                                          & (ProcessVersion.version == latest.c.v))
                              .order_by(latest.c.first_id).limit(limit).offset(offset)).all()
    return [{**version_json(v), "latest_version": v.version} for v in rows]


def _versions(key: str) -> list[ProcessVersion]:
    versions = db.session.scalars(select(ProcessVersion).where(ProcessVersion.key == key)
                                  .order_by(ProcessVersion.version)).all()
    if not versions:
        raise NotFound(f"no process {key!r} is deployed", code="process_not_found")
    return versions


@bp.get("/processes/<key>")
@admin
def get_process(key):
    """One process key and all its versions."""
    versions = _versions(key)
    return {"key": key, "name": versions[-1].name, "latest_version": versions[-1].version,
            "versions": [version_json(v) for v in versions]}


@bp.get("/processes/<key>/versions/<int:number>/bpmn")
@admin
@answers("application/xml")
def get_version_xml(key, number):
    """The BPMN XML of one version, as deployed."""
    for v in _versions(key):
        if v.version == number:
            return v.xml, 200, {"Content-Type": "application/xml; charset=utf-8"}
    raise NotFound(f"process {key!r} has no version {number}", code="version_not_found")


@bp.post("/processes/<key>/instances")
@admin
@accepts(START)
def start_instance(key):
    """Start the latest version of a process with data; runs until it waits."""
    body = parse(START)
    instance = engine().start(key, body.get("data") or {}, body.get("business_key"))
    db.session.commit()
    return instance_json(instance), 201


@bp.get("/process-instances")
@admin
@reads({**PAGE, "process": {"type": "string"}, "state": {"enum": list(INSTANCE_STATES)},
        "chat_id": {"type": "integer"}})
def list_instances():
    """Instances, filtered by ?process=, ?state= and ?chat_id= (its business key)."""
    query = select(ProcessInstance).order_by(ProcessInstance.id)
    if request.args.get("process"):
        query = query.where(ProcessInstance.process_key == request.args["process"])
    if request.args.get("state"):
        if request.args["state"] not in INSTANCE_STATES:
            raise ApiError(400, "bad_query", f"state must be one of {', '.join(INSTANCE_STATES)}", {"field": "state"})
        query = query.where(ProcessInstance.state == request.args["state"])
    if request.args.get("chat_id"):
        query = query.where(ProcessInstance.business_key == f"chat:{request.args['chat_id']}")
    limit, offset = page_args()
    return [instance_json(i, history=False) for i in db.session.scalars(query.limit(limit).offset(offset))]


@bp.get("/process-instances/<int:instance_id>")
@admin
def get_instance_view(instance_id):
    """One instance with its data, what it waits for and its history."""
    return instance_json(get_instance(instance_id))


@bp.post("/process-instances/<int:instance_id>/messages")
@admin
@accepts(MESSAGE)
def deliver_message(instance_id):
    """Deliver a BPMN message; 409 not_waiting_for_message when it waits for no such message."""
    body = parse(MESSAGE)
    instance = engine().deliver_message(instance_id, body["name"], body.get("data") or {})
    db.session.commit()
    return instance_json(instance)


@bp.post("/process-instances/<int:instance_id>/tasks/<task>/complete")
@admin
@accepts(TASK_DATA)
def complete_task(instance_id, task):
    """Complete a waiting user task (by its BPMN element id) with data."""
    body = parse(TASK_DATA) if request.content_length else {}
    instance = engine().complete_user_task(instance_id, task, body.get("data") or {})
    db.session.commit()
    return instance_json(instance)


@bp.get("/process-instances/<int:instance_id>/diagram")
@admin
def diagram(instance_id):
    """The XML the instance runs, with its active, completed and errored element ids."""
    return engine().diagram(get_instance(instance_id))


@bp.post("/process-instances/<int:instance_id>/retry")
@admin
def retry(instance_id):
    """Re-run the failed step of an instance in error."""
    instance = engine().retry(instance_id)
    db.session.commit()
    return instance_json(instance)


@bp.post("/process-instances/<int:instance_id>/cancel")
@admin
def cancel(instance_id):
    """End an instance where it stands."""
    instance = engine().cancel(instance_id)
    db.session.commit()
    return instance_json(instance)


@bp.get("/process-operations")
def operations():
    """Every service-task operation a diagram may call, with its parameters and result."""
    return engine().operations.catalogue()
