"""What an operator knows of the client in front of them: identities, earlier chats, cases."""
from sqlalchemy import select

from app.extensions import db
from app.models import User
from app.models.chat import Case, Channel, Chat, ContactIdentity

EARLIER = 20  # earlier chats listed, newest first


def of_chat(chat: Chat) -> dict:
    contact = chat.contact
    channels = {c.id: c for c in db.session.scalars(
        select(Channel).join(ContactIdentity, ContactIdentity.channel_id == Channel.id)
        .where(ContactIdentity.contact_id == contact.id))}
    earlier = list(db.session.scalars(select(Chat).where(Chat.contact_id == contact.id, Chat.id != chat.id)
                                      .order_by(Chat.created_at.desc(), Chat.id.desc()).limit(EARLIER)))
    operator_ids = {c.operator_id for c in earlier if c.operator_id}
    operators = {u.id: u for u in db.session.scalars(select(User).where(User.id.in_(operator_ids)))} \
        if operator_ids else {}
    cases = db.session.scalars(select(Case).where(Case.contact_id == contact.id).order_by(Case.id.desc()).limit(50))
    return {
        "contact": {"id": contact.id, "name": contact.name, "created_at": contact.created_at.isoformat(),
                    "identities": [{"provider": i.provider, "external_id": i.external_id, "channel_id": i.channel_id,
                                    "channel_name": channels[i.channel_id].name if i.channel_id in channels else None}
                                   for i in contact.identities]},
        "earlier_chats": [{"id": c.id, "state": c.state, "queue_name": c.queue.name, "channel_id": c.channel_id,
                           "created_at": c.created_at.isoformat(),
                           "completed_at": c.completed_at.isoformat() if c.completed_at else None,
                           "completion_reason": c.completion_reason,
                           "operator": ({"id": c.operator_id, "name": operators[c.operator_id].name}
                                        if c.operator_id in operators else None)}
                          for c in earlier],
        "cases": [{"id": k.id, "number": k.number, "subject": k.subject, "status": k.status, "chat_id": k.chat_id,
                   "created_at": k.created_at.isoformat()} for k in cases],
    }
