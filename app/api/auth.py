"""Bearer tokens on every /api route; `admin` marks routes that need CanManageChats."""
from functools import wraps

from flask import g, request

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
    user = accounts.user_for_token(token)
    if user is None:
        raise ApiError(401, "unauthorized", "the token is not valid")
    g.user = user
    check_url()


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
    """Declare the JSON body a view reads (a Schema, or a JSON Schema dict), for /openapi.json."""
    def mark(view):
        view.body_schema = schema if isinstance(schema, dict) else schema.openapi(partial)
        return view
    return mark


def accepts_files(description: str, many: bool = False, fields: dict | None = None):
    """Declare a multipart body of one (or `many`) files in parts named `file` (and form `fields`:
    name: JSON Schema), for /openapi.json; beside @accepts, the view takes either."""
    def mark(view):
        view.files_body = (description, many, fields or {})
        return view
    return mark


def answers(media_type: str):
    """Declare a view whose success is not JSON (XML, text, audio), for /openapi.json."""
    def mark(view):
        view.media_type = media_type
        return view
    return mark


def answers_also(*media_types: str):
    """Declare media types a view answers besides JSON when asked (Accept, ?format=), for /openapi.json."""
    def mark(view):
        view.also_media_types = media_types
        return view
    return mark


def reads(query: dict | None = None, headers: dict | None = None):
    """Declare the query parameters and headers (name: JSON Schema) a view reads, for /openapi.json."""
    def mark(view):
        view.query_params = {**getattr(view, "query_params", {}), **(query or {})}
        view.header_params = {**getattr(view, "header_params", {}), **(headers or {})}
        return view
    return mark


PAGE = {"limit": {"type": "integer", "minimum": 0, "maximum": 1000, "default": 100},
        "offset": {"type": "integer", "minimum": 0, "maximum": 10**9, "default": 0}}
