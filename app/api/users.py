from flask import Blueprint, g

from app import accounts
from app.api.auth import PAGE, accepts, admin, authenticate, reads
from app.api.errors import ApiError
from app.api.validation import Field, Schema, page_args, parse
from app.engine.errors import get_or_404
from app.extensions import db
from app.models import Role, User

bp = Blueprint("users", __name__, url_prefix="/api")
bp.before_request(authenticate)

USER = Schema({
    "login": Field(str, required=True, max_length=100),
    "name": Field(str, max_length=200),
    "roles": Field(list, items=str),
    "permissions": Field(list, items=str, description="CanManageChats gives the admin area"),
    "active": Field(bool, description="false: the user's tokens open nothing until reactivated"),
})
ROLE = Schema({"name": Field(str, required=True, max_length=100),
               "permissions": Field(list, items=str)})
MEMBER = Schema({"user_id": Field(int, required=True)})


def user_json(user: User) -> dict:
    return {"id": user.id, "login": user.login, "name": user.name, "roles": [r.name for r in user.roles],
            "permissions": sorted(user.permissions or []), "active": user.active,
            "created_at": user.created_at.isoformat()}


def role_json(role: Role) -> dict:
    return {"id": role.id, "name": role.name, "permissions": sorted(role.permissions or []),
            "members": [u.id for u in role.members]}


def page(model):
    limit, offset = page_args()
    return db.session.scalars(db.select(model).order_by(model.id).limit(limit).offset(offset)).all()


@bp.post("/users")
@admin
@accepts(USER)
def create_user():
    """Create a user; the answer carries its bearer token, shown this once."""
    body = parse(USER)
    user, token = accounts.create_user(body["login"], body.get("name", ""), body.get("roles", []),
                                       body.get("permissions", []))
    db.session.commit()
    return {**user_json(user), "token": token}, 201


@bp.get("/users")
@admin
@reads(PAGE)
def list_users():
    """List users."""
    return [user_json(u) for u in page(User)]


@bp.get("/users/<int:user_id>")
@admin
def get_user(user_id):
    """One user."""
    return user_json(get_or_404(User, user_id))


@bp.patch("/users/<int:user_id>")
@admin
@accepts(USER, partial=True)
def update_user(user_id):
    """Change a user's login, name, roles or permissions, or deactivate them (active: false)."""
    changes = parse(USER, partial=True)
    if changes.get("active") is False and user_id == g.user.id:
        raise ApiError(409, "cannot_deactivate_self", "you cannot deactivate your own user", {"field": "active"})
    user = accounts.update_user(get_or_404(User, user_id), changes)
    db.session.commit()
    return user_json(user)


@bp.post("/users/<int:user_id>/token")
@admin
def reset_token(user_id):
    """Replace every token of a user with a new one, shown this once (a lost or leaked token)."""
    user = get_or_404(User, user_id)
    token = accounts.reset_token(user)
    db.session.commit()
    return {**user_json(user), "token": token}, 201


@bp.delete("/users/<int:user_id>")
@admin
def delete_user(user_id):
    """Delete a user and their tokens; someone who worked chats is kept (409 user_has_chats)."""
    user = get_or_404(User, user_id)
    if user.id == g.user.id:
        raise ApiError(409, "cannot_delete_self", "you cannot delete your own user")
    accounts.delete_user(user)
    db.session.commit()
    return "", 204


@bp.post("/roles")
@admin
@accepts(ROLE)
def create_role():
    """Create a role."""
    body = parse(ROLE)
    role = accounts.create_role(body["name"], body.get("permissions", []))
    db.session.commit()
    return role_json(role), 201


@bp.get("/roles")
@admin
@reads(PAGE)
def list_roles():
    """List roles with their members."""
    return [role_json(r) for r in page(Role)]


@bp.patch("/roles/<int:role_id>")
@admin
@accepts(ROLE, partial=True)
def update_role(role_id):
    """Rename a role or change its permissions."""
    role = accounts.update_role(get_or_404(Role, role_id), parse(ROLE, partial=True))
    db.session.commit()
    return role_json(role)


@bp.delete("/roles/<int:role_id>")
@admin
def delete_role(role_id):
    """Delete a role: its members keep their own permissions; queues it served lose it."""
    db.session.delete(get_or_404(Role, role_id))
    db.session.commit()
    return "", 204


@bp.delete("/roles/<int:role_id>/members/<int:user_id>")
@admin
def remove_member(role_id, user_id):
    """Take a user out of a role."""
    role = get_or_404(Role, role_id)
    role.members = [u for u in role.members if u.id != user_id]
    db.session.commit()
    return "", 204


@bp.post("/roles/<int:role_id>/members")
@admin
@accepts(MEMBER)
def add_member(role_id):
    """Add a user to a role."""
    role = get_or_404(Role, role_id)
    user = db.session.get(User, parse(MEMBER)["user_id"])
    if user is None:
        raise ApiError(422, "invalid_value", "user_id: no such user", {"field": "user_id"})
    accounts.add_member(role, user)
    db.session.commit()
    return role_json(role), 201
