"""The hand-written request checks of the routes not yet declared with app/api/contract.py (going away)."""
from dataclasses import dataclass, field
from typing import Any

from flask import request

from app.api.contract import MAX_INT, MIN_INT, request_json
from app.api.errors import ApiError

_JSON_TYPES = {str: "string", int: "integer", float: "number", bool: "boolean", list: "array", dict: "object"}


@dataclass(frozen=True)
class Field:
    type: type | tuple
    required: bool = False
    nullable: bool = False
    choices: tuple = ()
    items: type | None = None
    max_length: int | None = 200
    description: str = ""

    def schema(self) -> dict:
        types = self.type if isinstance(self.type, tuple) else (self.type,)
        names = [_JSON_TYPES[t] for t in types]
        out: dict[str, Any] = {"type": names[0] if len(names) == 1 else names}
        if self.nullable:
            out["type"] = [*([out["type"]] if isinstance(out["type"], str) else out["type"]), "null"]
        if self.choices:
            out["enum"] = list(self.choices) + ([None] if self.nullable else [])
        if self.items:
            out["items"] = {"type": _JSON_TYPES[self.items]}
        if self.max_length and str in types:
            out["maxLength"] = self.max_length
        if self.required and types == (str,) and not self.choices:
            out.update(minLength=1, pattern=r"\S")
        if int in types and float not in types:
            out.update(minimum=MIN_INT, maximum=MAX_INT)
        if self.description:
            out["description"] = self.description
        return out


@dataclass
class Schema:
    fields: dict[str, Field] = field(default_factory=dict)

    def openapi(self, partial: bool = False) -> dict:
        required = [n for n, f in self.fields.items() if f.required and not partial]
        out = {"type": "object", "properties": {n: f.schema() for n, f in self.fields.items()},
               "additionalProperties": False}
        if required:
            out["required"] = required
        return out


def json_body() -> dict:
    body = request_json()
    if not isinstance(body, dict):
        raise ApiError(400, "malformed_body", "the request body must be a JSON object")
    return body


def _invalid(name: str, message: str):
    return ApiError(422, "invalid_value", f"{name}: {message}", {"field": name})


def _check(name: str, spec: Field, value):
    if value is None:
        if spec.nullable:
            return None
        raise _invalid(name, "must not be null")
    types = spec.type if isinstance(spec.type, tuple) else (spec.type,)
    if isinstance(value, bool) and bool not in types:
        raise _invalid(name, f"must be {' or '.join(_JSON_TYPES[t] for t in types)}")
    if float in types and isinstance(value, int) and not isinstance(value, bool):
        value = value if int in types else float(value)
    if not isinstance(value, types):
        raise _invalid(name, f"must be {' or '.join(_JSON_TYPES[t] for t in types)}")
    if isinstance(value, int) and not isinstance(value, bool) and not MIN_INT <= value <= MAX_INT:
        raise _invalid(name, "is out of range")
    if isinstance(value, str):
        if "\x00" in value:
            raise _invalid(name, "must not contain NUL characters")
        if spec.required and not value.strip():
            raise _invalid(name, "must not be empty")
        if spec.max_length and len(value) > spec.max_length:
            raise _invalid(name, f"must be at most {spec.max_length} characters")
    if spec.choices and value not in spec.choices:
        raise _invalid(name, f"must be one of {', '.join(map(str, spec.choices))}")
    if spec.items and isinstance(value, list):
        for item in value:
            if not isinstance(item, spec.items) or isinstance(item, bool) and spec.items is not bool:
                raise _invalid(name, f"items must be {_JSON_TYPES[spec.items]}")
            if isinstance(item, str) and "\x00" in item:
                raise _invalid(name, "items must not contain NUL characters")
    return value


def parse(schema: Schema, partial: bool = False) -> dict:
    """The body's known fields, checked; with `partial` (PATCH) no field is required."""
    body = json_body()
    unknown = set(body) - set(schema.fields)
    if unknown:
        name = sorted(unknown)[0]
        raise ApiError(422, "unknown_field", f"{name}: no such field", {"field": name})
    out = {}
    for name, spec in schema.fields.items():
        if name not in body:
            if spec.required and not partial:
                raise _invalid(name, "is required")
            continue
        out[name] = _check(name, spec, body[name])
    return out


def id_arg(name: str) -> int | None:
    """An optional whole-number query parameter such as ?queue_id=; 400 when it is not one."""
    raw = request.args.get(name)
    if not raw:
        return None
    if not (raw.isascii() and raw.isdigit()) or int(raw) > MAX_INT:
        raise ApiError(400, "bad_query", f"{name} must be a whole number", {"field": name})
    return int(raw)


def page_args() -> tuple[int, int]:
    def number(name, default, top):
        raw = request.args.get(name, default)
        try:
            value = int(raw)
        except (TypeError, ValueError):
            raise ApiError(400, "bad_query", f"{name} must be a whole number", {"field": name}) from None
        if not 0 <= value <= top:
            raise ApiError(400, "bad_query", f"{name} must be between 0 and {top}", {"field": name})
        return value
    return number("limit", 100, 1000), number("offset", 0, 10**9)
