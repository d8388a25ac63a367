from datetime import datetime

from sqlalchemy import (JSON, BigInteger, Boolean, Float, ForeignKey, Index, Integer, LargeBinary, String, Text, UniqueConstraint,
                        text)
from sqlalchemy.orm import Mapped, mapped_column, relationship

from app.extensions import db
from app.models.types import UTCDateTime, utcnow


class Queue(db.Model):
    __tablename__ = "queues"
    id: Mapped[int] = mapped_column(primary_key=True)
    name: Mapped[str] = mapped_column(String(200), unique=True)
    routing_rule: Mapped[str] = mapped_column(String(20))  # all | least_busy
    # Minutes from the last outgoing message until the chat completes; None = never.
    completion_timeout_minutes: Mapped[float | None] = mapped_column(Float)
    lifecycle_process: Mapped[str] = mapped_column(String(200), default="ChatLifecycle")
    created_at: Mapped[datetime] = mapped_column(UTCDateTime, default=utcnow)


class QueueOperator(db.Model):
    """One entry of a queue's operators: a user, or every member of a role."""

    __tablename__ = "queue_operators"
    __table_args__ = (UniqueConstraint("queue_id", "user_id"), UniqueConstraint("queue_id", "role_id"))
    id: Mapped[int] = mapped_column(primary_key=True)
    queue_id: Mapped[int] = mapped_column(ForeignKey("queues.id", ondelete="CASCADE"), index=True)
    user_id: Mapped[int | None] = mapped_column(ForeignKey("users.id", ondelete="CASCADE"), index=True)
    role_id: Mapped[int | None] = mapped_column(ForeignKey("roles.id", ondelete="CASCADE"), index=True)


class Channel(db.Model):
    __tablename__ = "channels"
    id: Mapped[int] = mapped_column(primary_key=True)
    provider: Mapped[str] = mapped_column(String(20))  # a name registered in app.channels
    name: Mapped[str] = mapped_column(String(200))
    active: Mapped[bool] = mapped_column(Boolean, default=True)
    queue_id: Mapped[int] = mapped_column(ForeignKey("queues.id"), index=True)
    # Secrets: used to call the provider, never returned by the API nor logged.
    token: Mapped[str | None] = mapped_column(String(300))
    webhook_secret: Mapped[str | None] = mapped_column(String(100))
    page_id: Mapped[str | None] = mapped_column(String(100), index=True)
    page_access_token: Mapped[str | None] = mapped_column(Text)
    bot_username: Mapped[str | None] = mapped_column(String(200))
    # Website chat: the public key the widget script names, and its settings
    # {allowed_origins, title, welcome_text, ask_contact}.
    widget_key: Mapped[str | None] = mapped_column(String(64), index=True, unique=True)
    widget: Mapped[dict | None] = mapped_column(JSON)
    # ok | refused (the provider would not connect it: kept inactive) | needs_reconnect (its
    # credentials stopped working); `status_reason` says why, in the provider's words.
    status: Mapped[str] = mapped_column(String(20), default="ok", server_default="ok")
    status_reason: Mapped[str | None] = mapped_column(Text)
    created_at: Mapped[datetime] = mapped_column(UTCDateTime, default=utcnow)
    queue: Mapped[Queue] = relationship()


class FacebookLogin(db.Model):
    """One run of the Facebook login flow, from the console's button to the admin's pick.

    Bound to the sign-in that started it (the user and their bearer token's hash) and to that
    browser (a cookie's hash); the `state` sent to Meta is kept only as its hash and is spent
    by the first callback. `pages` holds the listed pages with their page tokens until the
    admin picks (then it is emptied); the user token itself is never stored.
    """

    __tablename__ = "facebook_logins"
    id: Mapped[int] = mapped_column(primary_key=True)
    user_id: Mapped[int] = mapped_column(ForeignKey("users.id", ondelete="CASCADE"), index=True)
    token_hash: Mapped[str] = mapped_column(String(64))
    state_hash: Mapped[str] = mapped_column(String(64), unique=True)
    browser_hash: Mapped[str] = mapped_column(String(64))
    redirect_uri: Mapped[str] = mapped_column(String(600))
    created_at: Mapped[datetime] = mapped_column(UTCDateTime, default=utcnow, index=True)
    returned_at: Mapped[datetime | None] = mapped_column(UTCDateTime)
    finished_at: Mapped[datetime | None] = mapped_column(UTCDateTime)
    pages: Mapped[list | None] = mapped_column(JSON)
    error: Mapped[str | None] = mapped_column(Text)


class Contact(db.Model):
    __tablename__ = "contacts"
    id: Mapped[int] = mapped_column(primary_key=True)
    name: Mapped[str] = mapped_column(String(300), default="")
    created_at: Mapped[datetime] = mapped_column(UTCDateTime, default=utcnow)
    identities: Mapped[list["ContactIdentity"]] = relationship(order_by="ContactIdentity.id")


class ContactIdentity(db.Model):
    """A contact as one channel knows them: the provider's user id on that channel."""

    __tablename__ = "contact_identities"
    __table_args__ = (UniqueConstraint("channel_id", "external_id"),)
    id: Mapped[int] = mapped_column(primary_key=True)
    contact_id: Mapped[int] = mapped_column(ForeignKey("contacts.id", ondelete="CASCADE"), index=True)
    channel_id: Mapped[int] = mapped_column(ForeignKey("channels.id"))
    provider: Mapped[str] = mapped_column(String(20))
    external_id: Mapped[str] = mapped_column(String(100))
    # When the provider's profile API last named this contact (None: not yet, or it failed).
    profile_named_at: Mapped[datetime | None] = mapped_column(UTCDateTime)


class VisitorSession(db.Model):
    """A website visitor's session on one web channel: only the token's SHA-256 is kept.
    `visitor_id` is the visitor's id on the channel (ContactIdentity.external_id, Chat.address)."""

    __tablename__ = "visitor_sessions"
    id: Mapped[int] = mapped_column(primary_key=True)
    channel_id: Mapped[int] = mapped_column(ForeignKey("channels.id", ondelete="CASCADE"), index=True)
    contact_id: Mapped[int] = mapped_column(ForeignKey("contacts.id", ondelete="CASCADE"))
    visitor_id: Mapped[str] = mapped_column(String(64))
    token_hash: Mapped[str] = mapped_column(String(64), unique=True)
    created_at: Mapped[datetime] = mapped_column(UTCDateTime, default=utcnow)


class Chat(db.Model):
    __tablename__ = "chats"
    __table_args__ = (
        # At most one open chat per contact and channel, even with two webhooks at once.
        Index("ux_chats_open_per_contact", "channel_id", "contact_id", unique=True,
              postgresql_where=text("state <> 'completed'"), sqlite_where=text("state <> 'completed'")),
        Index("ix_chats_queue_state_created", "queue_id", "state", "created_at"),
        Index("ix_chats_operator_state", "operator_id", "state"),
    )
    id: Mapped[int] = mapped_column(primary_key=True)
    channel_id: Mapped[int] = mapped_column(ForeignKey("channels.id"), index=True)
    contact_id: Mapped[int] = mapped_column(ForeignKey("contacts.id"), index=True)
    queue_id: Mapped[int] = mapped_column(ForeignKey("queues.id"))
    state: Mapped[str] = mapped_column(String(20))  # a ChatState
    # Where replies go on the provider (Telegram chat id, Facebook PSID).
    address: Mapped[str] = mapped_column(String(100))
    operator_id: Mapped[int | None] = mapped_column(ForeignKey("users.id"))
    offered_to_id: Mapped[int | None] = mapped_column(ForeignKey("users.id"), index=True)
    offered_at: Mapped[datetime | None] = mapped_column(UTCDateTime)
    process_instance_id: Mapped[int | None] = mapped_column(ForeignKey("process_instances.id"))
    created_at: Mapped[datetime] = mapped_column(UTCDateTime, default=utcnow)
    accepted_at: Mapped[datetime | None] = mapped_column(UTCDateTime)
    last_outgoing_at: Mapped[datetime | None] = mapped_column(UTCDateTime)
    completed_at: Mapped[datetime | None] = mapped_column(UTCDateTime)
    completion_reason: Mapped[str | None] = mapped_column(String(20))  # operator | timeout | admin
    contact: Mapped[Contact] = relationship()
    channel: Mapped[Channel] = relationship()
    queue: Mapped[Queue] = relationship()


class Message(db.Model):
    __tablename__ = "messages"
    __table_args__ = (UniqueConstraint("channel_id", "external_id"),
                      Index("ix_messages_channel_provider_message", "channel_id", "provider_message_id"),
                      # Reports: replies in a period, and whether a chat had an earlier one.
                      Index("ix_messages_direction_created", "direction", "created_at"),
                      Index("ix_messages_chat_direction_created", "chat_id", "direction", "created_at"))
    id: Mapped[int] = mapped_column(primary_key=True)
    channel_id: Mapped[int] = mapped_column(ForeignKey("channels.id"))
    contact_id: Mapped[int] = mapped_column(ForeignKey("contacts.id"))
    # None for a message that arrived on an inactive channel: stored, not routed.
    chat_id: Mapped[int | None] = mapped_column(ForeignKey("chats.id"), index=True)
    direction: Mapped[str] = mapped_column(String(3))  # in | out
    kind: Mapped[str] = mapped_column(String(20), default="text", server_default="text")  # channels.base.KINDS
    text: Mapped[str] = mapped_column(Text)  # the text, or a file's caption; may be empty
    # location {latitude, longitude, title, address}, contact {name, phone}, button {title, data}
    payload: Mapped[dict | None] = mapped_column(JSON)
    # Earlier texts of an edited message, oldest first: [{text, at}].
    edits: Mapped[list | None] = mapped_column(JSON)
    # An outgoing message typed outside Chatflow (Meta's Page inbox): where it came from.
    origin: Mapped[str | None] = mapped_column(String(100))
    # in: received. out: pending -> sending (an attempt is being made) -> sent | pending (a known
    # failure, retried) | failed | uncertain (no outcome recorded: it may have been delivered);
    # then Messenger's receipts move a sent message on to delivered and read.
    status: Mapped[str] = mapped_column(String(10))
    # The provider's id (Telegram update_id, Facebook mid) for inbound idempotency.
    external_id: Mapped[str | None] = mapped_column(String(200))
    # The provider's id of the message itself, which edits and echoes name.
    provider_message_id: Mapped[str | None] = mapped_column(String(200))
    author_id: Mapped[int | None] = mapped_column(ForeignKey("users.id"))
    attempts: Mapped[int] = mapped_column(default=0)
    # When the latest attempt began: committed before the provider is called.
    attempted_at: Mapped[datetime | None] = mapped_column(UTCDateTime)
    # When a pending reply is next tried; the sweep sends it if its job was lost.
    next_attempt_at: Mapped[datetime | None] = mapped_column(UTCDateTime, index=True)
    error: Mapped[str | None] = mapped_column(Text)
    created_at: Mapped[datetime] = mapped_column(UTCDateTime, default=utcnow)
    sent_at: Mapped[datetime | None] = mapped_column(UTCDateTime)
    chat: Mapped["Chat | None"] = relationship()
    attachments: Mapped[list["Attachment"]] = relationship(order_by="Attachment.id", back_populates="message")


class Attachment(db.Model):
    """A file of a message. Its id is the file id of GET /api/files/{id}.

    Inbound files are `pending` until a job fetches them from the provider (`source` says how)
    into the file store (`storage_key`); then `stored`, or `failed` / `too_large`.
    """

    __tablename__ = "attachments"
    id: Mapped[int] = mapped_column(primary_key=True)
    message_id: Mapped[int] = mapped_column(ForeignKey("messages.id", ondelete="CASCADE"), index=True)
    name: Mapped[str] = mapped_column(String(300))
    content_type: Mapped[str] = mapped_column(String(100))
    size: Mapped[int | None] = mapped_column(BigInteger)
    status: Mapped[str] = mapped_column(String(10))  # pending | stored | failed | too_large
    source: Mapped[dict | None] = mapped_column(JSON)   # the provider's reference; never shown
    storage_key: Mapped[str | None] = mapped_column(String(200))
    attempts: Mapped[int] = mapped_column(default=0)
    next_attempt_at: Mapped[datetime | None] = mapped_column(UTCDateTime, index=True)
    error: Mapped[str | None] = mapped_column(Text)
    created_at: Mapped[datetime] = mapped_column(UTCDateTime, default=utcnow)
    message: Mapped[Message] = relationship(back_populates="attachments")


class ChatEvent(db.Model):
    """The chat's own history: offers and why they went to whom, accepts, completion."""

    __tablename__ = "chat_events"
    # Reports: events of a kind in a period, and a chat's first event of a kind.
    __table_args__ = (Index("ix_chat_events_event_at", "event", "at"),
                      Index("ix_chat_events_chat_event_at", "chat_id", "event", "at"))
    id: Mapped[int] = mapped_column(primary_key=True)
    chat_id: Mapped[int] = mapped_column(ForeignKey("chats.id", ondelete="CASCADE"), index=True)
    at: Mapped[datetime] = mapped_column(UTCDateTime, default=utcnow)
    event: Mapped[str] = mapped_column(String(40))
    details: Mapped[dict | None] = mapped_column(JSON)


class Setting(db.Model):
    __tablename__ = "settings"
    code: Mapped[str] = mapped_column(String(100), primary_key=True)
    value: Mapped[object | None] = mapped_column(JSON)
    updated_at: Mapped[datetime] = mapped_column(UTCDateTime, default=utcnow)
    # Raised by every write: processes caching the settings compare the rows' sum (app.chats.settings).
    revision: Mapped[int] = mapped_column(Integer, default=0, server_default="0")


class StoredFile(db.Model):
    """A file kept in the database: the notification sound, and the database file store's blobs."""

    __tablename__ = "stored_files"
    id: Mapped[int] = mapped_column(primary_key=True)
    filename: Mapped[str] = mapped_column(String(300))
    content_type: Mapped[str] = mapped_column(String(100))
    content: Mapped[bytes] = mapped_column(LargeBinary)
    created_at: Mapped[datetime] = mapped_column(UTCDateTime, default=utcnow)


class ChatAction(db.Model):
    """A button operators of a queue press on a chat: it starts `process` with ChatId and ContactId."""

    __tablename__ = "chat_actions"
    __table_args__ = (UniqueConstraint("queue_id", "name"),)
    id: Mapped[int] = mapped_column(primary_key=True)
    name: Mapped[str] = mapped_column(String(200))
    queue_id: Mapped[int] = mapped_column(ForeignKey("queues.id", ondelete="CASCADE"), index=True)
    process: Mapped[str] = mapped_column(String(200))
    created_at: Mapped[datetime] = mapped_column(UTCDateTime, default=utcnow)


class Case(db.Model):
    __tablename__ = "cases"
    id: Mapped[int] = mapped_column(primary_key=True)
    number: Mapped[str | None] = mapped_column(String(20), unique=True)
    subject: Mapped[str] = mapped_column(String(300))
    status: Mapped[str] = mapped_column(String(20), default="new")
    contact_id: Mapped[int] = mapped_column(ForeignKey("contacts.id"), index=True)
    chat_id: Mapped[int | None] = mapped_column(ForeignKey("chats.id"), index=True)
    created_at: Mapped[datetime] = mapped_column(UTCDateTime, default=utcnow)
