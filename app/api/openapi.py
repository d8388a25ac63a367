"""/openapi.json, built from the routes and the pydantic models their `@contract` declares."""
import re
from typing import Any

from pydantic import ConfigDict, TypeAdapter

from app.api.contract import Answer, Contract

_PARAM = re.compile(r"<(?:(\w+):)?(\w+)>")
_REFS = "#/components/schemas/{model}"


class ErrorDetails(Answer):
    """What the error is about; fields beyond these depend on the error (a BPMN error names its file and line)."""
    model_config = ConfigDict(extra="allow")
    field: str | None = None
    fields: list[str] | None = None
    problems: list[dict[str, Any]] | None = None  # one {field, message} per field of `fields`


class ErrorInfo(Answer):
    code: str
    message: str
    details: ErrorDetails


class Error(Answer):
    """Every error the app answers."""
    error: ErrorInfo


def documented(rule) -> bool:
    """Every route but static files, the console's pages and the demo page (they are not the API)."""
    return rule.endpoint != "static" and rule.endpoint.split(".")[0] not in ("console", "root", "demo")


def _path_params(rule: str) -> list[dict]:
    """Werkzeug's int converter matches digits only; the default one any non-empty segment without '/'."""
    return [{"name": name, "in": "path", "required": True,
             "schema": {"type": "integer", "minimum": 0} if conv == "int" else {"type": "string", "minLength": 1}}
            for conv, name in _PARAM.findall(rule)]


def _json(schema: dict) -> dict:
    return {"application/json": {"schema": schema}}


_ERROR = {"description": "error", "content": _json({"$ref": _REFS.format(model="Error")})}
_SUCCESS = {200: "success", 201: "created", 204: "nothing to answer", 503: "unavailable"}


class _Schemas:
    """Collects every model of every operation, so pydantic writes them in one go with shared components."""

    def __init__(self):
        self.inputs: list[tuple[Any, str, TypeAdapter]] = []

    def add(self, key, mode: str, annotation) -> tuple:
        self.inputs.append((key, mode, TypeAdapter(annotation)))
        return key, mode

    def build(self) -> tuple[dict, dict]:
        by_key, defs = TypeAdapter.json_schemas(self.inputs, ref_template=_REFS)
        return by_key, defs.get("$defs", {})


def _inline(schema: dict, components: dict) -> dict:
    """A request body's own schema in place (its nested models stay references)."""
    ref = schema.get("$ref", "")
    return components[ref.rsplit("/", 1)[1]] if ref.startswith("#/components/schemas/") else schema


def _responses(spec: Contract, answer_schema: dict | None) -> dict:
    out = {}
    for status in spec.status:
        response: dict = {"description": _SUCCESS.get(status, "success")}
        if spec.media_type:
            response["content"] = {spec.media_type: {"schema": {"type": "string"}}}
        elif answer_schema is not None:
            response["content"] = _json(answer_schema)
        if spec.also and status < 300:
            response["content"] = {**response.get("content", {}), **_strings(spec.also)}
        out[str(status)] = response
    if spec.media_type == "text/html":  # a page a browser lands on explains a refusal as a page too
        page_error = {**_ERROR, "content": {**_ERROR["content"], **_strings(["text/html"])}}
        return {**out, "4XX": page_error, "5XX": _ERROR}
    return {**out, "4XX": _ERROR, "5XX": _ERROR}


def _strings(media_types) -> dict:
    return {t: {"schema": {"type": "string"}} for t in media_types}


def document(app) -> dict:
    schemas = _Schemas()
    operations = []
    for rule in app.url_map.iter_rules():
        if not documented(rule):
            continue
        view = app.view_functions[rule.endpoint]
        spec = getattr(view, "contract", None)
        if spec is None:
            raise TypeError(f"{rule.endpoint}: declare its request and answer with @contract (app/api/contract.py)")
        keys = {"body": schemas.add((rule.endpoint, "body"), "validation", spec.body) if spec.body else None,
                "query": schemas.add((rule.endpoint, "query"), "validation", spec.query) if spec.query else None,
                "answer": schemas.add((rule.endpoint, "answer"), "serialization", spec.answer)
                if spec.answer is not None else None}
        operations.append((rule, view, spec, keys))
    schemas.add("error", "serialization", Error)
    by_key, components = schemas.build()

    paths: dict = {}
    for rule, view, spec, keys in operations:
        path = _PARAM.sub(r"{\2}", rule.rule)
        params = _path_params(rule.rule)
        if keys["query"]:
            query = _inline(by_key[keys["query"]], components)
            params += [{"name": name, "in": "query", "required": name in query.get("required", []), "schema": schema}
                       for name, schema in query.get("properties", {}).items()]
        params += [{"name": name, "in": "header", "required": False, "schema": {"type": "string"},
                    "description": description} for name, description in spec.headers.items()]
        doc = (view.__doc__ or rule.endpoint).strip()
        for method in sorted(rule.methods - {"HEAD", "OPTIONS"}):
            op: dict = {"operationId": f"{rule.endpoint}.{method.lower()}", "summary": doc.splitlines()[0],
                        "parameters": params}
            op["responses"] = _responses(spec, by_key[keys["answer"]] if keys["answer"] else None)
            if "\n" in doc:
                op["description"] = doc
            if rule.rule.startswith("/api"):
                op["security"] = [{"bearer": []}]
                op["x-access"] = getattr(view, "access", "user")
            body = _request_body(spec, by_key[keys["body"]] if keys["body"] else None, components)
            if body:
                op["requestBody"] = body
            paths.setdefault(path, {})[method.lower()] = op
    return {
        "openapi": "3.1.0",
        "info": {"title": "Chatflow", "version": "1"},
        "paths": dict(sorted(paths.items())),
        "components": {"securitySchemes": {"bearer": {"type": "http", "scheme": "bearer"}},
                       "schemas": dict(sorted(components.items()))},
    }


def _request_body(spec: Contract, body_schema: dict | None, components: dict) -> dict | None:
    if spec.raw_body:
        return {"required": True, "content": _json({"type": "object", "description": spec.raw_body})}
    json_body = {"required": not spec.body_optional, "content": _json(_inline(body_schema, components))} \
        if body_schema is not None else None
    if not spec.files:
        return json_body
    # A multipart body of files (parts `file`) and form fields; beside a JSON body, the view takes either.
    description, many, *fields = spec.files
    file = {"type": "string", "format": "binary"}
    return {"required": True, "description": description, "content": {
        **(json_body or {}).get("content", {}),
        "multipart/form-data": {"schema": {"type": "object", "required": ["file"], "properties": {
            "file": {"type": "array", "items": file, "minItems": 1} if many else file, **(fields[0] if fields else {})}}}}}
