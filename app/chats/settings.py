"""System settings by code, each validated by type, with defaults (docs/api.md, "Settings")."""
from dataclasses import dataclass
from typing import Callable
from urllib.parse import urlparse

from flask import current_app
from sqlalchemy import func, select

from app.engine import tx
from app.engine.errors import Invalid, NotFound
from app.extensions import db
from app.models.chat import Setting, StoredFile
from app.models.types import utcnow


def _minutes(value):
    if isinstance(value, bool) or not isinstance(value, (int, float)) or not 0 < value <= 7 * 24 * 60:
        raise ValueError("must be a number of minutes above 0 (fractions allowed), at most a week")
    return value


def _grace_seconds(value):
    if isinstance(value, bool) or not isinstance(value, (int, float)) or not 0 <= value <= 3600:
        raise ValueError("must be a number of seconds from 0 to 3600 (fractions allowed)")
    return value


def _count(value):
    if isinstance(value, bool) or not isinstance(value, int) or not 1 <= value <= 100:
        raise ValueError("must be a whole number from 1 to 100")
    return value


def _seconds(value):
    if isinstance(value, bool) or not isinstance(value, (int, float)) or not 0 < value <= 24 * 3600:
        raise ValueError("must be a number of seconds above 0, at most a day")
    return value


def _url(value):
    parsed = urlparse(value) if isinstance(value, str) else None
    if parsed is None or parsed.scheme not in ("http", "https") or not parsed.hostname \
            or any(c.isspace() for c in value):
        raise ValueError("must be an http(s) URL such as https://chat.example.com")
    return value


def _base_url(value):
    """A base URL that webhook paths are appended to: no query or fragment."""
    _url(value)
    parsed = urlparse(value)
    if parsed.query or parsed.fragment or parsed.params or value.endswith(("?", "#")):
        raise ValueError("must be an http(s) base URL such as https://chat.example.com (no query or fragment)")
    return value.rstrip("/")


def _text(value):
    if not isinstance(value, str) or not value or len(value) > 500:
        raise ValueError("must be a non-empty string of at most 500 characters")
    return value


def _app_id(value):
    if isinstance(value, int) and not isinstance(value, bool) and value > 0:
        value = str(value)
    if not isinstance(value, str) or not value.isascii() or not value.isdigit() or len(value) > 30:
        raise ValueError("must be the app's numeric id, as Meta's App Dashboard shows it")
    return value


@dataclass(frozen=True)
class Definition:
    code: str
    default: object
    check: Callable | None  # None: not settable through PUT (a file upload)
    description: str
    secret: bool = False


DEFINITIONS = {d.code: d for d in [
    Definition("OmniChatOperatorAcceptChatTimeout", 5, _minutes,
               "minutes an operator has to accept an offered chat; takes effect for offers made from now on "
               "(a running countdown keeps its time)"),
    Definition("SimultaneousChats", 2, _count, "chats an operator may hold (in work plus offered) at once; "
               "takes effect at once for new offers and accepts (chats already held stay)"),
    Definition("OperatorPresenceGraceSeconds", 60, _grace_seconds,
               "seconds an active operator may be disconnected (console closed, no heartbeat) before the "
               "chats offered to them go to others; takes effect at the next disconnection"),
    Definition("ServiceLevelSeconds", 60, _seconds,
               "reports: a chat accepted within this many seconds of opening meets the service level"),
    Definition("SiteUrl", None, _base_url, "public base URL of this Chatflow, for provider webhooks (a path is fine: https://host/chat); "
               "a change re-registers every active Telegram channel's webhook at once"),
    Definition("OmniChatNotificationSound", None, None,
               "audio played to operators on a new offer; upload with PUT .../file"),
    Definition("SystemAdministratorsNotificationUrl", None, _url,
               "HTTP endpoint that NotifySystemAdministrators posts to (JSON {text, chat_id, source})"),
    Definition("FacebookAppId", None, _app_id, "Facebook app id (Meta's App Dashboard): the login dialog asks "
               "for it, and Messenger echoes carrying it are ours"),
    Definition("FacebookAppSecret", None, _text, "Facebook app secret: webhook signatures and the login's token "
               "exchange", secret=True),
    Definition("FacebookVerifyToken", None, _text, "token Facebook sends when subscribing the webhook",
               secret=True),
]}


def definition(code: str) -> Definition:
    if code not in DEFINITIONS:
        raise NotFound(f"no setting {code!r}; known: {', '.join(DEFINITIONS)}", code="setting_not_found")
    return DEFINITIONS[code]


# -- read through a per-process cache ------------------------------------------------------
# Most chat events read a setting or two, and settings change rarely. A process keeps the values
# it read with their revision (the sum of the rows' `revision`, which every write raises); a
# transaction uses them once it knows they are the database's: the chat's row lock reads the
# revision in the same statement (`REVISION`, app.chats.lifecycle), else the transaction's first
# read loads every setting in one statement. So a change holds in every process at once.
REVISION = select(func.coalesce(func.sum(Setting.revision), 0)).scalar_subquery().label("settings_revision")
_TX = _CACHE = "chatflow_settings"


def seen(revision: int) -> None:
    """The settings' revision as this transaction read it (with the chat lock)."""
    tx.scoped(db.session, _TX)["revision"] = revision


def _values() -> dict:
    known = tx.scoped(db.session, _TX)
    if "values" not in known:
        revision, values = current_app.extensions.get(_CACHE, (None, None))  # (revision, code -> value)
        if revision is None or known.get("revision") != revision or known.get("written"):
            rows = db.session.execute(select(Setting.code, Setting.value, Setting.revision)).all()
            values = {code: value for code, value, _ in rows}
            if not known.get("written"):  # what this transaction wrote is not committed yet
                current_app.extensions[_CACHE] = (sum(r for *_, r in rows), values)
        known["values"] = values
    return known["values"]


def get(code: str):
    value = _values().get(code)
    return definition(code).default if value is None else value


def _written(row: Setting, value) -> None:
    row.value, row.updated_at, row.revision = value, utcnow(), (row.revision or 0) + 1
    db.session.add(row)
    known = tx.scoped(db.session, _TX)
    known["written"] = True
    known.pop("values", None)


def put(code: str, value) -> object:
    spec = definition(code)
    if spec.check is None and value is not None:
        raise Invalid(f"{code} is a file: upload it with PUT /api/settings/{code}/file", details={"field": "value"})
    if value is not None and spec.check is not None:
        try:
            value = spec.check(value)
        except ValueError as e:
            raise Invalid(f"value: {e}", details={"field": "value"}) from None
    _written(db.session.get(Setting, code) or Setting(code=code), value)
    return value


def all_settings() -> list[dict]:
    return [describe(code) for code in DEFINITIONS]


def describe(code: str) -> dict:
    spec = definition(code)
    value = get(code)
    if spec.secret and value is not None:
        value = "********"
    return {"code": code, "value": value, "default": spec.default, "description": spec.description}


def store_upload(code: str, filename: str, content_type: str, content: bytes) -> None:
    """Keep an uploaded file as the value of a file setting."""
    stored = StoredFile(filename=filename, content_type=content_type, content=content)
    db.session.add(stored)
    db.session.flush()
    store_file(code, stored.id)


def clear_file(code: str) -> None:
    """The file setting back to its default, its file deleted."""
    stored = stored_file(code)
    put(code, None)
    if stored is not None:
        db.session.delete(stored)


def store_file(code: str, file_id: int) -> None:
    _written(db.session.get(Setting, code) or Setting(code=code), {"file_id": file_id, "url": f"/api/settings/{code}/file"})


def stored_file(code: str):
    value = get(code)
    return db.session.get(StoredFile, value["file_id"]) if isinstance(value, dict) else None
