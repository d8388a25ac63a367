"""Chat actions (buttons that start a process on a chat) and the cases they create."""
from sqlalchemy import select

from app.chats import messages, settings
from app.chats.admin import check_deployed
from app.engine.errors import Conflict, Invalid, NotFound
from app.extensions import db
from app.models.chat import Case, Chat, ChatAction, Message, Queue
from app.services import services

SUBJECT_MAX = 300


def _check(fields: dict) -> None:
    if "process" in fields:
        check_deployed(fields["process"], "process")
    if "queue_id" in fields and db.session.get(Queue, fields["queue_id"]) is None:
        raise Invalid("queue_id: no such queue", details={"field": "queue_id"})


def _unique(queue_id: int, name: str, own_id: int | None = None) -> None:
    row = db.session.scalars(select(ChatAction).where(ChatAction.queue_id == queue_id,
                                                      ChatAction.name == name)).first()
    if row is not None and row.id != own_id:
        raise Conflict(f"queue {queue_id} has an action named {name!r}", code="name_taken", details={"field": "name"})


def create_action(fields: dict) -> ChatAction:
    _check(fields)
    _unique(fields["queue_id"], fields["name"])
    action = ChatAction(**fields)
    db.session.add(action)
    db.session.flush()
    return action


def update_action(action: ChatAction, fields: dict) -> ChatAction:
    _check(fields)
    _unique(fields.get("queue_id", action.queue_id), fields.get("name", action.name), action.id)
    for name, value in fields.items():
        setattr(action, name, value)
    return action


def delete_action(action: ChatAction) -> None:
    """Instances it started run on."""
    db.session.delete(action)


def actions_of(queue_id: int) -> list[ChatAction]:
    return list(db.session.scalars(select(ChatAction).where(ChatAction.queue_id == queue_id).order_by(ChatAction.id)))


def trigger(engine, chat: Chat, action_id: int, operator_id: int):
    """Start the action's process (latest version) with the chat's ids; works on completed chats too."""
    action = db.session.get(ChatAction, action_id)
    if action is None or action.queue_id != chat.queue_id:
        raise NotFound(f"chat {chat.id} has no action {action_id}", code="action_not_found")
    return engine.start(action.process, {"ChatId": chat.id, "ContactId": chat.contact_id, "QueueId": chat.queue_id,
                                         "OperatorId": operator_id, "AttachmentIds": messages.attachment_ids(chat.id)},
                        business_key=f"chat:{chat.id}")


# -- operations offered to diagrams -----------------------------------------------------
def create_case(chat_id: int, contact_id: int | None = None, subject: str | None = None) -> dict:
    """A new case from a chat: subject from its first client message unless given."""
    chat = db.session.get(Chat, chat_id)
    if chat is None:
        raise LookupError(f"no chat {chat_id}")
    if contact_id is not None and contact_id != chat.contact_id:
        raise ValueError(f"contact {contact_id} is not the contact of chat {chat_id}")
    subject = " ".join(str(subject or "").split())
    if not subject:  # the first client message with any text (a blank one says nothing)
        texts = db.session.scalars(select(Message.text).where(Message.chat_id == chat.id, Message.direction == "in")
                                   .order_by(Message.id))
        subject = next((" ".join(t.split()) for t in texts if t and t.strip()), None) or f"Chat {chat.id}"
    case = Case(subject=subject[:SUBJECT_MAX], status="new", contact_id=chat.contact_id, chat_id=chat.id)
    db.session.add(case)
    db.session.flush()
    case.number = f"CS-{case.id:06d}"
    return {"CaseId": case.id, "CaseNumber": case.number}


def notify_administrators(text: str, chat_id: int | None = None) -> dict:
    """POST a notification to the URL in setting SystemAdministratorsNotificationUrl."""
    url = settings.get("SystemAdministratorsNotificationUrl")
    if not url:
        raise ValueError("set the SystemAdministratorsNotificationUrl setting first")
    return services().notifier.post(url, {"text": str(text)[:2000], "chat_id": chat_id, "source": "chatflow"})


def register(operations) -> None:
    operations.register("create_case", "Create a support case from a chat (status new; subject from the "
                        "chat's first client message unless given).",
                        {"chat_id": "the chat (ChatId)", "contact_id": "the client (ContactId), checked",
                         "subject": "optional subject"}, "{CaseId, CaseNumber}")(create_case)
    operations.register("notify_administrators", "Post a notification to the HTTP endpoint in setting "
                        "SystemAdministratorsNotificationUrl; fails the step when it is down (retryable).",
                        {"text": "the notification text", "chat_id": "optional chat (ChatId)"},
                        "{status}: the endpoint's HTTP status")(notify_administrators)
