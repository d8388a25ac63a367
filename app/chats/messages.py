"""Messages of every kind and their files: storing what a channel delivered, edits, delivery
receipts, and how a message looks to the API and the live events. Callers commit."""
from functools import partial

from flask import current_app
from sqlalchemy import select

from app import job_names
from app.channels.base import InboundEdit, InboundMessage, OutboundFile, Receipt
from app.engine.tx import after_commit
from app.extensions import db
from app.models.chat import Attachment, Chat, ContactIdentity, Message
from app.models.states import MessageStatus
from app.models.types import utcnow
from app.services import services

# Served inline (shown in the page) only when the stored type is one of these; anything
# else is a download, so a client's HTML or SVG "document" never runs in an operator's browser.
INLINE_TYPES = frozenset({"image/jpeg", "image/png", "image/gif", "image/webp", "audio/mpeg", "audio/ogg",
                          "audio/mp4", "audio/aac", "audio/wav", "audio/webm", "video/mp4", "video/webm",
                          "video/quicktime"})


def store(channel, contact_id: int, chat: Chat | None, inbound: InboundMessage, jobs) -> Message:
    """A delivered message with its files (pending: a job fetches each one after commit)."""
    message = Message(channel_id=channel.id, contact_id=contact_id, chat_id=chat.id if chat else None,
                      direction=inbound.direction, kind=inbound.kind, text=inbound.text, payload=inbound.payload,
                      status=MessageStatus.RECEIVED if inbound.direction == "in" else MessageStatus.SENT,
                      origin=inbound.origin,
                      external_id=inbound.external_id, provider_message_id=inbound.provider_message_id,
                      sent_at=utcnow() if inbound.direction == "out" else None,
                      attachments=[])  # known, so nothing reads them back
    db.session.add(message)
    limit = current_app.config["MAX_FILE_BYTES"]
    for file in inbound.files:
        too_large = file.size is not None and file.size > limit
        message.attachments.append(Attachment(
            name=file.name, content_type=file.content_type, size=file.size, source=file.ref,
            status="too_large" if too_large else "pending", next_attempt_at=None if too_large else utcnow()))
    db.session.flush()
    for attachment in message.attachments:
        if attachment.status == "pending":
            after_commit(db.session, partial(jobs.enqueue, job_names.FETCH_ATTACHMENT, attachment.id,
                                             job_id=f"fetch-{attachment.id}-1"))
    return message


def attach(message: Message, file: OutboundFile) -> None:
    """An operator's file, kept in the file store at once; the message's kind follows it."""
    key = services().files.put(file.content, file.name, file.content_type)
    message.kind = "image" if file.is_image else "document"
    message.attachments.append(Attachment(name=file.name, content_type=file.content_type, size=len(file.content),
                                          status="stored", storage_key=key))


def find(channel_id: int, user_id: str, provider_message_id: str) -> Message | None:
    """A message of this contact on this channel, by the provider's id of it."""
    contacts = select(ContactIdentity.contact_id).where(ContactIdentity.channel_id == channel_id,
                                                        ContactIdentity.external_id == user_id)
    return db.session.scalars(select(Message).where(Message.channel_id == channel_id,
                                                    Message.provider_message_id == provider_message_id,
                                                    Message.contact_id.in_(contacts))
                              .with_for_update()).first()


def edit(channel, event: InboundEdit) -> Message | None:
    """The message takes the new text; the earlier one joins its `edits`, newest last.
    An edit that changes nothing we show (Telegram sends some) changes nothing."""
    message = find(channel.id, event.user_id, event.provider_message_id)
    if message is None:
        return None
    changed = False
    if event.text is not None and event.text != message.text:
        message.edits = [*(message.edits or []), {"text": message.text, "at": utcnow().isoformat()}]
        message.text = event.text
        changed = True
    if event.payload and message.kind == "location" and {**(message.payload or {}), **event.payload} != message.payload:
        message.payload = {**(message.payload or {}), **event.payload}   # a live location moved
        changed = True
    return message if changed else None


STATUS_ORDER = {MessageStatus.SENT: 1, MessageStatus.DELIVERED: 2, MessageStatus.READ: 3}


def receipt(channel, event: Receipt) -> list[Message]:
    """Our messages to this client sent up to the watermark move on to delivered or read
    (never back: a late delivery receipt leaves a read message read)."""
    contacts = select(ContactIdentity.contact_id).where(ContactIdentity.channel_id == channel.id,
                                                        ContactIdentity.external_id == event.user_id)
    earlier = [s for s, rank in STATUS_ORDER.items() if rank < STATUS_ORDER[event.status]]
    moved = list(db.session.scalars(select(Message).where(
        Message.channel_id == channel.id, Message.contact_id.in_(contacts), Message.direction == "out",
        Message.status.in_(earlier), Message.sent_at <= event.watermark).order_by(Message.id).with_for_update()))
    for message in moved:
        message.status = event.status
    return moved


def attachment_ids(chat_id: int) -> list[int]:
    """The ids of every file in a chat, oldest first (process data of chat actions)."""
    return list(db.session.scalars(select(Attachment.id).join(Message).where(Message.chat_id == chat_id)
                                   .order_by(Attachment.id)))


def attachment_json(a: Attachment) -> dict:
    return {"id": a.id, "name": a.name, "content_type": a.content_type, "size": a.size, "status": a.status,
            "url": f"/api/files/{a.id}"}


def message_json(m: Message) -> dict:
    """A message as the API and the events show it; text-only clients read the first five fields."""
    return {"id": m.id, "direction": m.direction, "text": m.text, "created_at": m.created_at.isoformat(),
            "status": m.status, **({"error": m.error} if m.error else {}),
            "kind": m.kind or "text", "payload": m.payload, "edits": m.edits or [],
            "attachments": [attachment_json(a) for a in m.attachments],
            **({"origin": m.origin} if m.origin else {})}
