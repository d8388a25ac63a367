"""Canned responses: short texts an admin keeps, per queue or global, inserted as `/shortcut`."""
import re

from sqlalchemy import or_, select

from app.engine.errors import Conflict, Invalid, NotFound
from app.extensions import db
from app.models.chat import Queue
from app.models.workspace import CannedResponse

SHORTCUT = re.compile(r"[a-z0-9][a-z0-9_-]{0,49}")


def visible(queue_ids: list[int] | None, prefix: str = "") -> list[CannedResponse]:
    """Global ones and those of `queue_ids` (None: every queue), by shortcut."""
    query = select(CannedResponse)
    if queue_ids is not None:
        query = query.where(or_(CannedResponse.queue_id.is_(None), CannedResponse.queue_id.in_(queue_ids)))
    if prefix:
        query = query.where(CannedResponse.shortcut.startswith(prefix.lower(), autoescape=True))
    return list(db.session.scalars(query.order_by(CannedResponse.shortcut, CannedResponse.queue_id.is_not(None),
                                                  CannedResponse.id)))


def one(canned_id: int, queue_ids: list[int] | None = None) -> CannedResponse:
    """One canned response; 404 when it belongs to a queue outside `queue_ids` (None: every queue)."""
    row = db.session.get(CannedResponse, canned_id)
    if row is None or queue_ids is not None and row.queue_id is not None and row.queue_id not in queue_ids:
        raise NotFound(f"no canned response {canned_id}", code="canned_response_not_found")
    return row


def delete(canned: CannedResponse) -> None:
    db.session.delete(canned)


def save(canned: CannedResponse | None, fields: dict) -> CannedResponse:
    """Create (`canned` None) or change one; a shortcut is unique within its queue (or among globals)."""
    canned = canned or CannedResponse()
    for name in ("shortcut", "text", "queue_id"):
        if name in fields and (fields[name] is not None or name == "queue_id"):
            setattr(canned, name, fields[name])
    canned.shortcut = (canned.shortcut or "").lower()
    if not SHORTCUT.fullmatch(canned.shortcut):
        raise Invalid("shortcut: letters, digits, - and _ only (typed after a /), at most 50",
                      details={"field": "shortcut"})
    if canned.queue_id is not None and db.session.get(Queue, canned.queue_id) is None:
        raise Invalid(f"queue_id: no queue {canned.queue_id}", details={"field": "queue_id"})
    same = select(CannedResponse.id).where(CannedResponse.shortcut == canned.shortcut,
                                           CannedResponse.queue_id.is_(None) if canned.queue_id is None
                                           else CannedResponse.queue_id == canned.queue_id)
    if canned.id is not None:
        same = same.where(CannedResponse.id != canned.id)
    if db.session.scalars(same).first():
        raise Conflict(f"/{canned.shortcut} exists {'globally' if canned.queue_id is None else 'in this queue'}",
                       code="shortcut_taken", details={"field": "shortcut"})
    db.session.add(canned)
    db.session.flush()
    return canned

