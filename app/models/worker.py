from datetime import datetime

from sqlalchemy import String
from sqlalchemy.orm import Mapped, mapped_column

from app.extensions import db
from app.models.types import UTCDateTime


class WorkerHeartbeat(db.Model):
    """A worker's last beat, kept in the database too: /healthz counts workers while Redis is away.

    `live_until` is the beat's time plus the worker's own time-to-live (a few sweeps).
    """

    __tablename__ = "worker_heartbeats"
    name: Mapped[str] = mapped_column(String(200), primary_key=True)
    live_until: Mapped[datetime] = mapped_column(UTCDateTime, index=True)
