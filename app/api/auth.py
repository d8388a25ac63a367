"""Bearer tokens on every /api route; `admin` marks routes that need CanManageChats."""
from functools import wraps

from flask import current_app, g, request

from app import accounts
from app.api.errors import ApiError
from app.api.contract import check_url

ADMIN_PERMISSION = "CanManageChats"


def bearer_token() -> str | None:
    scheme, _, token = request.headers.get("Authorization", "").partition(" ")
    return token.strip() if scheme.lower() == "bearer" and token.strip() else None


def authenticate() -> None:
    """before_request of the API blueprints: 401 without a valid token."""
    token = bearer_token()
    if token is None:
        raise ApiError(401, "unauthorized", "send Authorization: Bearer <token>")
    found = accounts.authenticate(token, _token_cache())
    if found is None:
        raise ApiError(401, "unauthorized", "the token is not valid")
    g.user, g.permissions = found
    check_url()


def _token_cache() -> accounts.TokenCache:
    extensions = current_app.extensions
    if "chatflow.tokens" not in extensions:
        extensions["chatflow.tokens"] = accounts.TokenCache()
    return extensions["chatflow.tokens"]


def is_admin(user) -> bool:
    # The signed-in user's permissions as authenticated (cached with the token, no roles read).
    permissions = g.permissions if g.get("user") is user else user.effective_permissions()
    return ADMIN_PERMISSION in permissions


def admin(view):
    """Only users with CanManageChats (directly or through a role)."""
    @wraps(view)
    def wrapper(*args, **kwargs):
        if not is_admin(g.user):
            raise ApiError(403, "forbidden", f"this needs the permission {ADMIN_PERMISSION}")
        return view(*args, **kwargs)
    wrapper.access = "admin"
    return wrapper
