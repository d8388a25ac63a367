"""Website visitors: sessions (a random token, kept only as its SHA-256, bound to one web channel;
the visitor is a contact from the start), their messages, and the conversation they may read.
Every message goes through the same `service.receive` as Telegram's and Facebook's. Callers commit."""
import hashlib
import secrets
import uuid

from sqlalchemy import select

from app.channels.base import InboundMessage, OutboundFile
from app.channels.web import DEMO_CHANNEL
from app.chats import live, messages, service
from app.extensions import db
from app.models.auth import User
from app.models.chat import Attachment, Channel, Chat, Contact, ContactIdentity, Message, VisitorSession


def channel_by_key(widget_key: str) -> Channel | None:
    if len(widget_key) > 64:
        return None
    return db.session.scalars(select(Channel).where(Channel.widget_key == widget_key,
                                                    Channel.provider == "web")).first()


def demo_channel() -> Channel | None:
    return db.session.scalars(select(Channel).where(Channel.provider == "web", Channel.name == DEMO_CHANNEL)
                              .order_by(Channel.id)).first()


def token_hash(token: str) -> str:
    return hashlib.sha256(token.encode()).hexdigest()


def start_session(channel: Channel, name: str | None, email: str | None) -> tuple[str, VisitorSession]:
    """A new visitor: a contact with this channel's identity, and the token only they will hold."""
    token, visitor_id = secrets.token_urlsafe(32), uuid.uuid4().hex
    label = name or "Website visitor"
    contact = Contact(name=f"{label} <{email}>" if email else label)
    db.session.add(contact)
    db.session.flush()
    db.session.add(ContactIdentity(contact_id=contact.id, channel_id=channel.id, provider="web",
                                   external_id=visitor_id))
    session = VisitorSession(channel_id=channel.id, contact_id=contact.id, visitor_id=visitor_id,
                             token_hash=token_hash(token))
    db.session.add(session)
    db.session.flush()
    return token, session


def session_for(channel: Channel, token: str) -> VisitorSession | None:
    """The session of this token on this channel; a token of another channel finds nothing."""
    return db.session.scalars(select(VisitorSession).where(VisitorSession.token_hash == token_hash(token),
                                                           VisitorSession.channel_id == channel.id)).first()


def current_chat(session: VisitorSession) -> Chat | None:
    """The visitor's open chat, else their latest (a completed one: the widget offers a new start)."""
    return db.session.scalars(select(Chat).where(Chat.channel_id == session.channel_id,
                                                 Chat.contact_id == session.contact_id)
                              .order_by(Chat.state == "completed", Chat.id.desc())).first()


def conversation(session: VisitorSession) -> dict:
    chat = current_chat(session)
    operator = db.session.get(User, chat.operator_id) if chat is not None and chat.operator_id else None
    rows = [] if chat is None else db.session.scalars(
        select(Message).where(Message.chat_id == chat.id).order_by(Message.id)).all()
    return {"chat_id": chat.id if chat else None, "state": chat.state if chat else None,
            "operator_name": operator.name if operator else None,
            "messages": [visitor_message(m) for m in rows]}


def visitor_message(m: Message) -> dict:
    """What a visitor sees of a message: no statuses, errors or staff details."""
    return {"id": m.id, "direction": m.direction, "kind": m.kind or "text", "text": m.text,
            "created_at": m.created_at.isoformat(),
            "attachments": [{"id": a.id, "name": a.name, "content_type": a.content_type, "size": a.size}
                            for a in m.attachments]}


def write(channel: Channel, session: VisitorSession, text: str, file: OutboundFile | None, jobs) -> Message:
    """The visitor's message, into their open chat or a new one, exactly as any channel's."""
    inbound = InboundMessage(external_id=f"web-{uuid.uuid4().hex}", user_id=session.visitor_id,
                             address=session.visitor_id, text=text)
    message = service.receive(channel, inbound, jobs)
    if file is not None:
        messages.attach(message, file)
        db.session.flush()
        if message.chat is not None:
            live.message_changed(message.chat, message)
    return message


def attachment_of(session: VisitorSession, attachment_id: int):
    """A file of the visitor's own chats, or None."""
    return db.session.scalars(select(Attachment).join(Message).where(
        Attachment.id == attachment_id, Message.channel_id == session.channel_id,
        Message.contact_id == session.contact_id)).first()
