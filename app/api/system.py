"""Health and the API's own description."""
from typing import Literal

from flask import Blueprint, current_app
from pydantic import ConfigDict
from sqlalchemy import text

from app.api.contract import Answer, contract
from app.api.openapi import document
from app.extensions import db
from app.services import services

bp = Blueprint("system", __name__)


class Check(Answer):
    """One part's state; a backend may say more (RQ: how many workers listen)."""
    model_config = ConfigDict(extra="allow")
    ok: bool
    error: str | None = None
    backend: str | None = None


class Health(Answer):
    status: Literal["ok", "degraded"]
    checks: dict[str, Check]


@bp.get("/healthz")
@contract(answer=Health, status=(200, 503))
def healthz():
    """State of the database, Redis and live workers (by their heartbeats); 503 naming what is down."""
    checks = {"database": _check(lambda: db.session.execute(text("select 1"))),
              **services().health()}
    ok = all(c["ok"] for c in checks.values())
    return {"status": "ok" if ok else "degraded", "checks": checks}, 200 if ok else 503


def _check(probe) -> dict:
    try:
        probe()
        return {"ok": True}
    except Exception as e:
        return {"ok": False, "error": f"{type(e).__name__}: {e}"[:300]}


@bp.get("/openapi.json")
@contract(answer=dict)
def openapi():
    """This API, described from its routes and their models."""
    return document(current_app)
