import secrets
from datetime import datetime

from sqlalchemy import JSON, ForeignKey, Index, String, UniqueConstraint, true
from sqlalchemy.orm import Mapped, mapped_column, relationship

from app.extensions import db
from app.models.types import UTCDateTime, utcnow


class User(db.Model):
    __tablename__ = "users"
    __table_args__ = (Index("ix_users_routing", "status", "chats_in_work", "last_accepted_at"),)
    id: Mapped[int] = mapped_column(primary_key=True)
    login: Mapped[str] = mapped_column(String(100), unique=True)
    name: Mapped[str] = mapped_column(String(200), default="")
    permissions: Mapped[list] = mapped_column(JSON, default=list)
    created_at: Mapped[datetime] = mapped_column(UTCDateTime, default=utcnow)
    # A deactivated user's tokens open nothing; the row stays because chats name them.
    active: Mapped[bool] = mapped_column(default=True, server_default=true())
    # As an operator: active takes chats (new users start inactive); the counters are kept
    # under the row lock by the chat service so routing reads them from this row alone.
    status: Mapped[str] = mapped_column(String(10), default="inactive", server_default="inactive")
    chats_in_work: Mapped[int] = mapped_column(default=0, server_default="0")
    chats_offered: Mapped[int] = mapped_column(default=0, server_default="0")
    last_accepted_at: Mapped[datetime | None] = mapped_column(UTCDateTime)
    # When the last sign of life (console stream keep-alive, presence heartbeat) runs out.
    connected_until: Mapped[datetime | None] = mapped_column(UTCDateTime)
    # Changes whenever what the user's tokens open changes (a token revoked, permissions, roles,
    # deactivation): web processes cache a token's user and permissions and compare this stamp
    # on the user row they read anyway (app.accounts.Credentials), so the change holds at once.
    auth_stamp: Mapped[str] = mapped_column(String(32), default=lambda: secrets.token_hex(8), server_default="")
    roles: Mapped[list["Role"]] = relationship(secondary="role_members", back_populates="members",
                                               order_by="Role.id")

    def effective_permissions(self) -> set[str]:
        perms = set(self.permissions or [])
        for role in self.roles:
            perms.update(role.permissions or [])
        return perms


class Role(db.Model):
    __tablename__ = "roles"
    id: Mapped[int] = mapped_column(primary_key=True)
    name: Mapped[str] = mapped_column(String(100), unique=True)
    permissions: Mapped[list] = mapped_column(JSON, default=list)
    members: Mapped[list[User]] = relationship(secondary="role_members", back_populates="roles",
                                               order_by="User.id")


class RoleMember(db.Model):
    __tablename__ = "role_members"
    role_id: Mapped[int] = mapped_column(ForeignKey("roles.id", ondelete="CASCADE"), primary_key=True)
    user_id: Mapped[int] = mapped_column(ForeignKey("users.id", ondelete="CASCADE"), primary_key=True)


class ApiToken(db.Model):
    """A bearer token; only its SHA-256 is stored, the token itself is shown once."""

    __tablename__ = "api_tokens"
    __table_args__ = (UniqueConstraint("token_hash"),)
    id: Mapped[int] = mapped_column(primary_key=True)
    user_id: Mapped[int] = mapped_column(ForeignKey("users.id", ondelete="CASCADE"), index=True)
    token_hash: Mapped[str] = mapped_column(String(64))
    created_at: Mapped[datetime] = mapped_column(UTCDateTime, default=utcnow)
    user: Mapped[User] = relationship()
