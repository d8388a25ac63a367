"""Chat actions (admin setup, operator trigger), cases and contacts."""
from flask import Blueprint, current_app, g
from sqlalchemy import select

from app.api.auth import PAGE, accepts, admin, authenticate, reads
from app.api.chats import visible_chat
from app.api.validation import Field, Schema, page_args, parse
from app.chats import actions
from app.engine.errors import get_or_404
from app.extensions import db
from app.models.chat import Case, ChatAction, Contact

bp = Blueprint("actions", __name__, url_prefix="/api")
bp.before_request(authenticate)

ACTION = Schema({"name": Field(str, required=True), "queue_id": Field(int, required=True),
                 "process": Field(str, required=True, description="a deployed BPMN process key")})


def action_json(a: ChatAction) -> dict:
    return {"id": a.id, "name": a.name, "queue_id": a.queue_id, "process": a.process,
            "created_at": a.created_at.isoformat()}


def case_json(c: Case) -> dict:
    return {"id": c.id, "number": c.number, "subject": c.subject, "status": c.status, "contact_id": c.contact_id,
            "chat_id": c.chat_id, "created_at": c.created_at.isoformat()}


@bp.post("/chat-actions")
@admin
@accepts(ACTION)
def create_action():
    """Create a chat action: operators of the queue can start the process on a chat."""
    action = actions.create_action(parse(ACTION))
    db.session.commit()
    return action_json(action), 201


@bp.get("/chat-actions")
@admin
@reads(PAGE)
def list_actions():
    """List chat actions."""
    limit, offset = page_args()
    return [action_json(a) for a in db.session.scalars(select(ChatAction).order_by(ChatAction.id)
                                                       .limit(limit).offset(offset))]


@bp.get("/chat-actions/<int:action_id>")
@admin
def get_action(action_id):
    """One chat action."""
    return action_json(get_or_404(ChatAction, action_id, "action"))


@bp.patch("/chat-actions/<int:action_id>")
@admin
@accepts(ACTION, partial=True)
def update_action(action_id):
    """Rename an action, move it to another queue or point it at another process."""
    action = actions.update_action(get_or_404(ChatAction, action_id, "action"), parse(ACTION, partial=True))
    db.session.commit()
    return action_json(action)


@bp.delete("/chat-actions/<int:action_id>")
@admin
def delete_action(action_id):
    """Delete an action; instances it started run on."""
    db.session.delete(get_or_404(ChatAction, action_id, "action"))
    db.session.commit()
    return "", 204


@bp.get("/chats/<int:chat_id>/actions")
def chat_actions(chat_id):
    """The actions of the chat's queue."""
    return [action_json(a) for a in actions.actions_of(visible_chat(chat_id).queue_id)]


@bp.post("/chats/<int:chat_id>/actions/<int:action_id>")
def trigger_action(chat_id, action_id):
    """Start the action's process with ChatId, ContactId, QueueId and OperatorId; answers its state and data."""
    instance = actions.trigger(current_app.extensions["chatflow.engine"], visible_chat(chat_id), action_id,
                               g.user.id)
    db.session.commit()
    return {"process_instance_id": instance.id, "process": instance.process_key,
            "version": instance.version.version, "state": instance.state, "data": instance.data or {},
            "error": instance.error}, 201


@bp.get("/cases")
@admin
@reads(PAGE)
def list_cases():
    """Cases, oldest first."""
    limit, offset = page_args()
    return [case_json(c) for c in db.session.scalars(select(Case).order_by(Case.id).limit(limit).offset(offset))]


@bp.get("/cases/<int:case_id>")
@admin
def get_case(case_id):
    """One case."""
    return case_json(get_or_404(Case, case_id, "case"))


@bp.get("/contacts/<int:contact_id>")
@admin
def get_contact(contact_id):
    """A contact with the identities channels know them by."""
    contact = get_or_404(Contact, contact_id, "contact")
    return {"id": contact.id, "name": contact.name, "created_at": contact.created_at.isoformat(),
            "identities": [{"provider": i.provider, "external_id": i.external_id, "channel_id": i.channel_id}
                           for i in contact.identities]}
