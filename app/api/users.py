"""Users and roles (admin)."""
from datetime import datetime, timezone
from typing import Annotated, Literal

from flask import Blueprint, g
from pydantic import BeforeValidator, Field, computed_field

from app import accounts
from app.api.auth import admin, authenticate
from app.api.contract import Answer, Body, Bool, Int, Name, Page, Text, Timestamp, contract, partial, row_with
from app.api.errors import ApiError
from app.chats import decisions, presence
from app.extensions import db
from app.services import services

bp = Blueprint("users", __name__, url_prefix="/api")
bp.before_request(authenticate)


Permissions = Annotated[list[str], BeforeValidator(lambda permissions: sorted(permissions or []))]


class UserIn(Body):
    login: Name(100)
    name: Text(200) = ""
    roles: list[Text(100)] = []
    permissions: list[Text(100)] = []


class UserChange(partial(UserIn)):
    active: Bool | None = Field(None, description="false: the user's tokens open nothing until reactivated")


class Presence(Answer):
    """An operator's status (theirs to set) and whether they are connected (an open console or
    a recent heartbeat); only `available` operators get chats."""
    status: Literal["active", "inactive"]
    connected_until: Timestamp | None = Field(description="when their last sign of life runs out")

    @computed_field
    @property
    def connected(self) -> bool:
        return decisions.is_connected(self.connected_until, datetime.now(timezone.utc))

    @computed_field(description="available (gets chats), away (active, not connected) or inactive")
    @property
    def presence(self) -> str:
        return decisions.presence(self.status, self.connected)


class UserOut(Presence):
    id: int
    login: str
    name: str
    roles: Annotated[list[str], BeforeValidator(lambda roles: [getattr(r, "name", r) for r in roles])]
    permissions: Permissions
    active: bool
    created_at: Timestamp


class NewUser(UserOut):
    token: str = Field(description="the user's bearer token, shown this once")


class RoleIn(Body):
    name: Name(100)
    permissions: list[Text(100)] = []


RoleChange = partial(RoleIn)


class RoleOut(Answer):
    id: int
    name: str
    permissions: Permissions
    members: Annotated[list[int], BeforeValidator(lambda users: [getattr(u, "id", u) for u in users])]


class Member(Body):
    user_id: Int


@bp.post("/users")
@admin
@contract(body=UserIn, answer=NewUser, status=201)
def create_user(body: UserIn):
    """Create a user; the answer carries its bearer token, shown this once."""
    user, token = accounts.create_user(body.login, body.name, body.roles, body.permissions)
    db.session.commit()
    return row_with(user, token=token), 201


@bp.get("/users")
@admin
@contract(query=Page, answer=list[UserOut])
def list_users(query: Page):
    """List users."""
    return accounts.users(query.limit, query.offset)


@bp.get("/users/<int:user_id>")
@admin
@contract(answer=UserOut)
def get_user(user_id):
    """One user."""
    return accounts.user(user_id)


@bp.patch("/users/<int:user_id>")
@admin
@contract(body=UserChange, answer=UserOut)
def update_user(user_id, body: UserChange):
    """Change a user's login, name, roles or permissions, or deactivate them (active: false)."""
    if body.active is False and user_id == g.user.id:
        raise ApiError(409, "cannot_deactivate_self", "you cannot deactivate your own user", {"field": "active"})
    user = accounts.update_user(accounts.user(user_id), body.model_dump(exclude_unset=True))
    presence.recheck_offers([user.id], services().jobs)  # a role left: its queues too
    db.session.commit()
    return user


@bp.post("/users/<int:user_id>/token")
@admin
@contract(answer=NewUser, status=201)
def reset_token(user_id):
    """Replace every token of a user with a new one, shown this once (a lost or leaked token)."""
    user = accounts.user(user_id)
    token = accounts.reset_token(user)
    db.session.commit()
    return row_with(user, token=token), 201


@bp.delete("/users/<int:user_id>")
@admin
@contract(status=204)
def delete_user(user_id):
    """Delete a user and their tokens; someone who worked chats is kept (409 user_has_chats)."""
    user = accounts.user(user_id)
    if user.id == g.user.id:
        raise ApiError(409, "cannot_delete_self", "you cannot delete your own user")
    accounts.delete_user(user)
    db.session.commit()
    return "", 204


@bp.post("/roles")
@admin
@contract(body=RoleIn, answer=RoleOut, status=201)
def create_role(body: RoleIn):
    """Create a role."""
    role = accounts.create_role(body.name, body.permissions)
    db.session.commit()
    return role, 201


@bp.get("/roles")
@admin
@contract(query=Page, answer=list[RoleOut])
def list_roles(query: Page):
    """List roles with their members."""
    return accounts.roles(query.limit, query.offset)


@bp.patch("/roles/<int:role_id>")
@admin
@contract(body=RoleChange, answer=RoleOut)
def update_role(role_id, body: RoleChange):
    """Rename a role or change its permissions."""
    role = accounts.update_role(accounts.role(role_id), body.model_dump(exclude_unset=True))
    db.session.commit()
    return role


@bp.delete("/roles/<int:role_id>")
@admin
@contract(status=204)
def delete_role(role_id):
    """Delete a role: its members keep their own permissions; queues it served lose it."""
    accounts.delete_role(accounts.role(role_id))
    db.session.commit()
    return "", 204


@bp.delete("/roles/<int:role_id>/members/<int:user_id>")
@admin
@contract(status=204)
def remove_member(role_id, user_id):
    """Take a user out of a role."""
    accounts.remove_member(accounts.role(role_id), user_id)
    db.session.commit()
    return "", 204


@bp.post("/roles/<int:role_id>/members")
@admin
@contract(body=Member, answer=RoleOut, status=201)
def add_member(role_id, body: Member):
    """Add a user to a role."""
    role = accounts.role(role_id)
    accounts.add_member(role, body.user_id)
    db.session.commit()
    return role, 201
