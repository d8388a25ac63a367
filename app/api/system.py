import re

from flask import Blueprint, current_app
from sqlalchemy import text

from app.extensions import db

bp = Blueprint("system", __name__)


@bp.get("/healthz")
def healthz():
    """State of the database, Redis and workers; 503 when one is down."""
    checks = {"database": _check(lambda: db.session.execute(text("select 1"))),
              "jobs": current_app.extensions["chatflow.jobs_health"]()}
    ok = all(c["ok"] for c in checks.values())
    return {"status": "ok" if ok else "degraded", "checks": checks}, 200 if ok else 503


def _check(probe) -> dict:
    try:
        probe()
        return {"ok": True}
    except Exception as e:
        return {"ok": False, "error": f"{type(e).__name__}: {e}"[:300]}


@bp.get("/openapi.json")
def openapi():
    """This API, described from its routes."""
    return build_openapi(current_app)


_PARAM = re.compile(r"<(?:(\w+):)?(\w+)>")
_ERROR = {"description": "error", "content": {"application/json": {"schema": {"$ref": "#/components/schemas/Error"}}}}


def build_openapi(app) -> dict:
    paths: dict = {}
    for rule in app.url_map.iter_rules():
        if rule.endpoint == "static":
            continue
        view = app.view_functions[rule.endpoint]
        path = _PARAM.sub(r"{\2}", rule.rule)
        params = [{"name": name, "in": "path", "required": True,
                   "schema": {"type": "integer"} if conv == "int" else {"type": "string"}}
                  for conv, name in _PARAM.findall(rule.rule)]
        for method in sorted(rule.methods - {"HEAD", "OPTIONS"}):
            doc = (view.__doc__ or rule.endpoint).strip().splitlines()[0]
            op = {"operationId": f"{rule.endpoint}.{method.lower()}", "summary": doc, "parameters": params,
                  "responses": {"200": {"description": "success"}, "201": {"description": "created"},
                                "4XX": _ERROR}}
            if rule.rule.startswith("/api"):
                op["security"] = [{"bearer": []}]
                op["x-access"] = getattr(view, "access", "user")
            schema = getattr(view, "body_schema", None)
            if schema:
                op["requestBody"] = {"required": True, "content": {"application/json": {"schema": schema}}}
            paths.setdefault(path, {})[method.lower()] = op
    return {
        "openapi": "3.0.3",
        "info": {"title": "Chatflow", "version": "1"},
        "paths": dict(sorted(paths.items())),
        "components": {
            "securitySchemes": {"bearer": {"type": "http", "scheme": "bearer"}},
            "schemas": {"Error": {"type": "object", "required": ["error"], "properties": {"error": {
                "type": "object", "required": ["code", "message"],
                "properties": {"code": {"type": "string"}, "message": {"type": "string"},
                               "details": {"type": "object"}}}}}},
        },
    }
