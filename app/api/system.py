import re

from flask import Blueprint, current_app
from sqlalchemy import text

from app.extensions import db

bp = Blueprint("system", __name__)


@bp.get("/healthz")
def healthz():
    """State of the database, Redis and live workers (by their heartbeats); 503 naming what is down."""
    checks = {"database": _check(lambda: db.session.execute(text("select 1"))),
              **current_app.extensions["chatflow.jobs_health"]()}
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
_JSON = {"application/json": {"schema": {"type": ["object", "array"]}}}
_HEALTH = {"application/json": {"schema": {"$ref": "#/components/schemas/Health"}}}


def _path_params(rule: str) -> list[dict]:
    """Werkzeug's int converter matches digits only; the default one any non-empty segment without '/'."""
    return [{"name": name, "in": "path", "required": True,
             "schema": {"type": "integer", "minimum": 0} if conv == "int" else {"type": "string", "minLength": 1}}
            for conv, name in _PARAM.findall(rule)]


def _responses(method: str, view, endpoint: str) -> dict:
    """What the view answers: success by method (DELETE 204, POST 200 or 201), any 4xx and 5xx as Error."""
    if endpoint == "system.healthz":
        return {"200": {"description": "all is up", "content": _HEALTH},
                "503": {"description": "one is down", "content": _HEALTH}, "4XX": _ERROR}
    media_type = getattr(view, "media_type", None)
    content = {media_type: {"schema": {"type": "string"}}} if media_type else _JSON
    content = {**content, **{t: {"schema": {"type": "string"}} for t in getattr(view, "also_media_types", ())}}
    if method == "DELETE":
        success = {"204": {"description": "deleted"}}
    elif method == "POST":
        success = {"200": {"description": "done", "content": content},
                   "201": {"description": "created", "content": content}}
    else:
        success = {"200": {"description": "success", "content": content}}
    return {**success, "4XX": _ERROR, "5XX": _ERROR}


def documented(rule) -> bool:
    """Every route but static files and the console's pages (they are not the API)."""
    return rule.endpoint != "static" and rule.endpoint.split(".")[0] not in ("console", "root")


def build_openapi(app) -> dict:
    paths: dict = {}
    for rule in app.url_map.iter_rules():
        if not documented(rule):
            continue
        view = app.view_functions[rule.endpoint]
        path = _PARAM.sub(r"{\2}", rule.rule)
        params = _path_params(rule.rule)
        params += [{"name": name, "in": "query", "required": False, "schema": schema}
                   for name, schema in getattr(view, "query_params", {}).items()]
        params += [{"name": name, "in": "header", "required": False, "schema": schema}
                   for name, schema in getattr(view, "header_params", {}).items()]
        for method in sorted(rule.methods - {"HEAD", "OPTIONS"}):
            doc = (view.__doc__ or rule.endpoint).strip().splitlines()[0]
            op = {"operationId": f"{rule.endpoint}.{method.lower()}", "summary": doc, "parameters": params,
                  "responses": _responses(method, view, rule.endpoint)}
            if rule.rule.startswith("/api"):
                op["security"] = [{"bearer": []}]
                op["x-access"] = getattr(view, "access", "user")
            schema = getattr(view, "body_schema", None)
            if schema:
                op["requestBody"] = {"required": True, "content": {"application/json": {"schema": schema}}}
            if hasattr(view, "files_body"):
                description, many = view.files_body
                file = {"type": "string", "format": "binary"}
                op["requestBody"] = {"required": True, "description": description, "content": {
                    "multipart/form-data": {"schema": {"type": "object", "required": ["file"], "properties": {
                        "file": {"type": "array", "items": file, "minItems": 1} if many else file}}}}}
            paths.setdefault(path, {})[method.lower()] = op
    return {
        "openapi": "3.1.0",
        "info": {"title": "Chatflow", "version": "1"},
        "paths": dict(sorted(paths.items())),
        "components": {
            "securitySchemes": {"bearer": {"type": "http", "scheme": "bearer"}},
            "schemas": {"Error": {"type": "object", "required": ["error"], "properties": {"error": {
                "type": "object", "required": ["code", "message"],
                "properties": {"code": {"type": "string"}, "message": {"type": "string"},
                               "details": {"type": "object"}}}}},
                "Health": {"type": "object", "required": ["status", "checks"], "properties": {
                    "status": {"enum": ["ok", "degraded"]}, "checks": {"type": "object"}}}},
        },
    }
