"""Processes (deploy, versions, XML) and their instances (start, inspect, message, retry, cancel)."""
from typing import Annotated, Any, Literal

from flask import Blueprint, request
from pydantic import BeforeValidator, Field, model_serializer

from app.api.auth import admin, authenticate
from app.api.contract import Answer, Body, Filter, JsonObject, Name, Page, Text, Timestamp, contract, row_with
from app.api.errors import ApiError
from app.engine import queries, tx
from app.engine.instances import history_written
from app.extensions import db
from app.models.states import InstanceState
from app.services import services

bp = Blueprint("processes", __name__, url_prefix="/api")
bp.before_request(authenticate)



def engine():
    return services().engine


class Start(Body):
    data: dict[str, Any] = {}
    business_key: Text() | None = None


class MessageIn(Body):
    name: Name()
    data: dict[str, Any] = {}


class TaskData(Body):
    data: dict[str, Any] = {}


class InstanceFilter(Page):
    process: Filter(str, max_length=200) = None
    state: Filter(InstanceState) = None
    chat_id: Filter(int, ge=0, description="instances whose business key is this chat's") = None


class Deployed(Answer):
    key: str
    version: int
    new: bool = Field(description="false when the same file was deployed before (no new version)")


class DeployResult(Answer):
    processes: list[Deployed]


class VersionOut(Answer):
    key: str
    version: int
    name: str | None
    filename: str
    content_hash: str
    deployed_at: Timestamp


class ProcessSummary(VersionOut):
    latest_version: int = Field(validation_alias="version")


class ProcessOut(Answer):
    key: str
    name: str | None
    latest_version: int
    versions: list[VersionOut]


class Wait(Answer):
    task: str
    kind: Literal["timer", "message", "user"]
    message: str | None = None
    due_at: str | None


class HistoryEvent(Answer):
    at: Timestamp
    task: str | None
    event: str
    details: dict[str, Any] | None = None

    @model_serializer(mode="wrap")
    def _details_when_any(self, write):
        out = write(self)
        if not out.get("details"):
            out.pop("details", None)
        return out


class InstanceOut(Answer):
    id: int
    process: str = Field(validation_alias="process_key")
    version: int = Field(validation_alias="version_number")
    state: InstanceState
    business_key: str | None
    data: JsonObject
    waiting_for: Annotated[list[Wait], BeforeValidator(lambda waits: waits or [])]
    error: str | None
    created_at: Timestamp
    updated_at: Timestamp
    history: list[HistoryEvent] = Field(None, description="in the answers about one instance")


class Diagram(Answer):
    xml: str
    active: list[str]
    completed: list[str]
    errored: list[str]


class OperationOut(Answer):
    name: str
    description: str
    parameters: dict[str, str] = Field(description="parameter name -> meaning")
    returns: str


def answered(instance, **more):
    """An instance as answered: its version's number from the process's cache, not its row."""
    return row_with(instance, version_number=engine().specs.version_number(instance.process_version_id), **more)


def with_history(instance):
    return answered(instance, history=queries.history(instance.id))


def committed(instance):
    """Commit the step and answer the instance as committed, asking the database nothing more:
    its history is read in the step's own transaction (a new instance's is what the step wrote),
    and its row stays loaded through the commit."""
    written = history_written(instance)
    answer = with_history(instance) if written is None else answered(instance,
                                                                      history=written[:queries.HISTORY_LIMIT])
    tx.commit_keeping_rows(db.session)
    return answer


@bp.post("/processes")
@admin
@contract(files=("one or more .bpmn files", True), answer=DeployResult, status=(200, 201))
def deploy():
    """Deploy one or more .bpmn files (multipart, each in a part named `file`): 201 when one is new."""
    uploads = request.files.getlist("file")
    if not uploads:
        raise ApiError(400, "no_file", "send one or more .bpmn files as multipart parts named 'file'")
    result = engine().deploy([(u.filename or "upload.bpmn", u.read()) for u in uploads])
    db.session.commit()
    return {"processes": result}, 201 if any(p["new"] for p in result) else 200


@bp.get("/processes")
@admin
@contract(query=Page, answer=list[ProcessSummary])
def list_processes(query: Page):
    """Deployed process keys with their latest version, oldest (first deployed) first."""
    return queries.latest_versions(query.limit, query.offset)


@bp.get("/processes/<key>")
@admin
@contract(answer=ProcessOut)
def get_process(key):
    """One process key and all its versions."""
    versions = queries.versions(key)
    return {"key": key, "name": versions[-1].name, "latest_version": versions[-1].version, "versions": versions}


@bp.get("/processes/<key>/versions/<int:number>/bpmn")
@admin
@contract(media_type="application/xml")
def get_version_xml(key, number):
    """The BPMN XML of one version, as deployed."""
    return queries.version(key, number).xml, 200, {"Content-Type": "application/xml; charset=utf-8"}


@bp.post("/processes/<key>/instances")
@admin
@contract(body=Start, answer=InstanceOut, status=201)
def start_instance(key, body: Start):
    """Start the latest version of a process with data; runs until it waits."""
    instance = engine().start(key, body.data, body.business_key)
    return committed(instance), 201


@bp.get("/process-instances")
@admin
@contract(query=InstanceFilter, answer=list[InstanceOut])
def list_instances(query: InstanceFilter):
    """Instances, filtered by ?process=, ?state= and ?chat_id= (its business key)."""
    chat = f"chat:{query.chat_id}" if query.chat_id is not None else None
    return [answered(i) for i in queries.instances(query.limit, query.offset, query.process, query.state, chat)]


@bp.get("/process-instances/<int:instance_id>")
@admin
@contract(answer=InstanceOut)
def get_instance(instance_id):
    """One instance with its data, what it waits for and its history."""
    return with_history(queries.instance(instance_id))


@bp.post("/process-instances/<int:instance_id>/messages")
@admin
@contract(body=MessageIn, answer=InstanceOut)
def deliver_message(instance_id, body: MessageIn):
    """Deliver a BPMN message; 409 not_waiting_for_message when it waits for no such message."""
    instance = engine().deliver_message(instance_id, body.name, body.data)
    return committed(instance)


@bp.post("/process-instances/<int:instance_id>/tasks/<task>/complete")
@admin
@contract(body=TaskData, body_optional=True, answer=InstanceOut)
def complete_task(instance_id, task, body: TaskData | None):
    """Complete a waiting user task (by its BPMN element id) with data."""
    instance = engine().complete_user_task(instance_id, task, body.data if body else {})
    return committed(instance)


@bp.get("/process-instances/<int:instance_id>/diagram")
@admin
@contract(answer=Diagram)
def diagram(instance_id):
    """The XML the instance runs, with its active, completed and errored element ids."""
    return engine().diagram(queries.instance(instance_id))


@bp.post("/process-instances/<int:instance_id>/retry")
@admin
@contract(answer=InstanceOut)
def retry(instance_id):
    """Re-run the failed step of an instance in error."""
    instance = engine().retry(instance_id)
    return committed(instance)


@bp.post("/process-instances/<int:instance_id>/cancel")
@admin
@contract(answer=InstanceOut)
def cancel(instance_id):
    """End an instance where it stands."""
    instance = engine().cancel(instance_id)
    return committed(instance)


@bp.get("/process-operations")
@contract(answer=list[OperationOut])
def operations():
    """Every service-task operation a diagram may call, with its parameters and result."""
    return engine().operations.catalogue()
