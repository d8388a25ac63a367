"""Chat actions (admin setup, operator trigger), cases and contacts."""
from flask import Blueprint, g
from pydantic import AliasPath, Field

from app.api.auth import admin, authenticate, is_admin
from app.api.contract import Answer, Body, Int, JsonObject, Name, Page, Timestamp, contract, partial
from app.chats import actions, queries
from app.extensions import db
from app.models.states import InstanceState
from app.services import services

bp = Blueprint("actions", __name__, url_prefix="/api")
bp.before_request(authenticate)


class ActionIn(Body):
    name: Name()
    queue_id: Int
    process: Name(description="a deployed BPMN process key")


ActionChange = partial(ActionIn)


class ActionOut(Answer):
    id: int
    name: str
    queue_id: int
    process: str
    created_at: Timestamp


class Started(Answer):
    """The instance the action started, as it stands after its first steps."""
    process_instance_id: int = Field(validation_alias="id")
    process: str = Field(validation_alias="process_key")
    version: int = Field(validation_alias=AliasPath("version", "version"))
    state: InstanceState
    data: JsonObject
    error: str | None


class CaseOut(Answer):
    id: int
    number: str | None
    subject: str
    status: str
    contact_id: int
    chat_id: int | None
    created_at: Timestamp


class Identity(Answer):
    provider: str
    external_id: str
    channel_id: int


class ContactOut(Answer):
    id: int
    name: str
    created_at: Timestamp
    identities: list[Identity]


@bp.post("/chat-actions")
@admin
@contract(body=ActionIn, answer=ActionOut, status=201)
def create_action(body: ActionIn):
    """Create a chat action: operators of the queue can start the process on a chat."""
    action = actions.create_action(body.model_dump())
    db.session.commit()
    return action, 201


@bp.get("/chat-actions")
@admin
@contract(query=Page, answer=list[ActionOut])
def list_actions(query: Page):
    """List chat actions."""
    return queries.actions(query.limit, query.offset)


@bp.get("/chat-actions/<int:action_id>")
@admin
@contract(answer=ActionOut)
def get_action(action_id):
    """One chat action."""
    return queries.action(action_id)


@bp.patch("/chat-actions/<int:action_id>")
@admin
@contract(body=ActionChange, answer=ActionOut)
def update_action(action_id, body: ActionChange):
    """Rename an action, move it to another queue or point it at another process."""
    action = actions.update_action(queries.action(action_id), body.model_dump(exclude_unset=True))
    db.session.commit()
    return action


@bp.delete("/chat-actions/<int:action_id>")
@admin
@contract(status=204)
def delete_action(action_id):
    """Delete an action; instances it started run on."""
    actions.delete_action(queries.action(action_id))
    db.session.commit()
    return "", 204


@bp.get("/chats/<int:chat_id>/actions")
@contract(answer=list[ActionOut])
def chat_actions(chat_id):
    """The actions of the chat's queue."""
    return actions.actions_of(queries.visible_chat(g.user, is_admin(g.user), chat_id).queue_id)


@bp.post("/chats/<int:chat_id>/actions/<int:action_id>")
@contract(answer=Started, status=201)
def trigger_action(chat_id, action_id):
    """Start the action's process with ChatId, ContactId, QueueId and OperatorId; answers its state and data."""
    chat = queries.visible_chat(g.user, is_admin(g.user), chat_id)
    instance = actions.trigger(services().engine, chat, action_id, g.user.id)
    db.session.commit()
    return instance, 201


@bp.get("/cases")
@admin
@contract(query=Page, answer=list[CaseOut])
def list_cases(query: Page):
    """Cases, oldest first."""
    return queries.cases(query.limit, query.offset)


@bp.get("/cases/<int:case_id>")
@admin
@contract(answer=CaseOut)
def get_case(case_id):
    """One case."""
    return queries.case(case_id)


@bp.get("/contacts/<int:contact_id>")
@admin
@contract(answer=ContactOut)
def get_contact(contact_id):
    """A contact with the identities channels know them by."""
    return queries.contact(contact_id)
