from datetime import datetime

from sqlalchemy import JSON, ForeignKey, Index, String, Text, UniqueConstraint
from sqlalchemy.orm import Mapped, mapped_column, relationship

from app.extensions import db
from app.models.types import UTCDateTime, utcnow


class ProcessVersion(db.Model):
    """One deployed version of one process key: the file's XML, stored once."""

    __tablename__ = "process_versions"
    __table_args__ = (UniqueConstraint("key", "version"), Index("ix_process_versions_key_hash", "key", "content_hash"))
    id: Mapped[int] = mapped_column(primary_key=True)
    key: Mapped[str] = mapped_column(String(200))
    version: Mapped[int]
    name: Mapped[str] = mapped_column(String(200), default="")
    filename: Mapped[str] = mapped_column(String(300))
    content_hash: Mapped[str] = mapped_column(String(64))
    xml: Mapped[str] = mapped_column(Text)
    deployed_at: Mapped[datetime] = mapped_column(UTCDateTime, default=utcnow)


class ProcessInstance(db.Model):
    """A running process: its own serialized state only; the spec lives in its version."""

    __tablename__ = "process_instances"
    __table_args__ = (Index("ix_process_instances_key_state", "process_key", "state"),)
    id: Mapped[int] = mapped_column(primary_key=True)
    process_version_id: Mapped[int] = mapped_column(ForeignKey("process_versions.id"), index=True)
    process_key: Mapped[str] = mapped_column(String(200))
    business_key: Mapped[str | None] = mapped_column(String(200), index=True)
    state: Mapped[str] = mapped_column(String(20))  # an InstanceState
    error: Mapped[str | None] = mapped_column(Text)
    workflow_state: Mapped[str] = mapped_column(Text)
    # Derived from workflow_state on every save, so reads need not load the workflow.
    data: Mapped[dict] = mapped_column(JSON, default=dict)
    waiting_for: Mapped[list] = mapped_column(JSON, default=list)
    # Incremented on every save; lets clients and tests see that an update happened.
    revision: Mapped[int] = mapped_column(default=0)
    # When the earliest timer it waits on is due (None: none). The database's truth about timers,
    # written in the same UPDATE as the state; the sweep reads it by index, RQ only wakes it up.
    next_timer_at: Mapped[datetime | None] = mapped_column(UTCDateTime, index=True)
    created_at: Mapped[datetime] = mapped_column(UTCDateTime, default=utcnow)
    updated_at: Mapped[datetime] = mapped_column(UTCDateTime, default=utcnow)
    version: Mapped[ProcessVersion] = relationship()


class InstanceEvent(db.Model):
    """History of an instance: tasks entered and completed, timers fired, messages, errors."""

    __tablename__ = "instance_events"
    id: Mapped[int] = mapped_column(primary_key=True)
    instance_id: Mapped[int] = mapped_column(ForeignKey("process_instances.id", ondelete="CASCADE"), index=True)
    at: Mapped[datetime] = mapped_column(UTCDateTime, default=utcnow)
    task: Mapped[str | None] = mapped_column(String(200))
    event: Mapped[str] = mapped_column(String(40))
    details: Mapped[dict | None] = mapped_column(JSON(none_as_null=True))

