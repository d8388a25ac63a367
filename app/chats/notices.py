"""`notify`: a diagram tells people about a chat. The notice is written to the chat's history
and reaches each recipient's console on their live events (`notification`).

A queue's supervisors are the users with CanManageChats: the admins who watch the team in the
Supervisor page. Chatflow has no per-queue supervisor list; a diagram that wants other people
names them by user id.
"""
from sqlalchemy import select

from app.chats import decisions, live
from app.chats.lifecycle import lock_chat, record
from app.extensions import db
from app.models import User

SUPERVISOR_PERMISSION = "CanManageChats"


def supervisors() -> list[int]:
    """Active users with CanManageChats, directly or through a role."""
    users = db.session.scalars(select(User).where(User.active.is_(True)).order_by(User.id))
    return [u.id for u in users if SUPERVISOR_PERMISSION in u.effective_permissions()]


def notify(chat_id: int, text: str, to="supervisors") -> dict:
    chat = lock_chat(chat_id)
    user_ids = decisions.recipients(to, supervisors(), live.queue_operators(chat.queue_id))
    text = str(text)[:2000]
    record(chat, "notified", to=to, user_ids=user_ids, text=text)
    live.tell(user_ids, "notification", chat_id=chat.id, queue_id=chat.queue_id, text=text)
    return {"notified": user_ids}


def register(operations) -> None:
    operations.register("notify", "Tell people about the chat: a notice in the chat's history and on their "
                        "consoles' live events. Supervisors are the users with CanManageChats.",
                        {"chat_id": "the chat (ChatId)", "text": "the notice",
                         "to": "\"supervisors\" (default), \"operators\" (of the chat's queue), or a list of "
                               "user ids"},
                        "{notified}: the user ids told")(notify)
