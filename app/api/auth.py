"""Bearer tokens on every /api route; `admin` marks routes that need CanManageChats."""
from functools import wraps

from flask import g, request

from app import accounts
from app.api.errors import ApiError

ADMIN_PERMISSION = "CanManageChats"


def authenticate() -> None:
    """before_request of the API blueprints: 401 without a valid token."""
    header = request.headers.get("Authorization", "")
    scheme, _, token = header.partition(" ")
    if scheme.lower() != "bearer" or not token.strip():
        raise ApiError(401, "unauthorized", "send Authorization: Bearer <token>")
    user = accounts.user_for_token(token.strip())
    if user is None:
        raise ApiError(401, "unauthorized", "the token is not valid")
    g.user = user


def is_admin(user) -> bool:
    return ADMIN_PERMISSION in user.effective_permissions()


def admin(view):
    """Only users with CanManageChats (directly or through a role)."""
    @wraps(view)
    def wrapper(*args, **kwargs):
        if not is_admin(g.user):
            raise ApiError(403, "forbidden", f"this needs the permission {ADMIN_PERMISSION}")
        return view(*args, **kwargs)
    wrapper.access = "admin"
    return wrapper


def accepts(schema, partial: bool = False):
    """Declare the JSON body a view reads, for /openapi.json."""
    def mark(view):
        view.body_schema = schema.openapi(partial)
        return view
    return mark
