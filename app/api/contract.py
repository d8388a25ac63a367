"""How a route declares what it reads and answers: `@contract(body=..., query=..., answer=...)`.

The models are pydantic's; this module only runs them at the edges of a view:
- the JSON body is checked against `body` (400 `malformed_body` when it is not a JSON object;
  422 naming every bad field at once, `unknown_field` when a field is not the model's, else
  `invalid_value`), the query string against `query` (400 `bad_query`), and the view gets them
  as the keyword arguments `body` and `query`;
- what the view returns (rows, dicts, models) is read into `answer` and written as JSON, so an
  answer can only ever be what /openapi.json says it is (app/api/openapi.py builds the document
  from the same declarations).
"""
from dataclasses import dataclass, field
from datetime import datetime
from functools import wraps
from typing import Annotated, Any

from flask import Response, request
from pydantic import (AfterValidator, BaseModel, BeforeValidator, ConfigDict, Field, PlainSerializer, StrictBool,
                      StrictFloat, StrictInt, TypeAdapter, ValidationError, WithJsonSchema,
                      create_model)
from pydantic.fields import FieldInfo
from pydantic_core import PydanticCustomError

from app.api.errors import ApiError

# Our integer columns (ids, counts) are 32-bit INTEGER on PostgreSQL: a larger id names nothing,
# and would make the driver overflow.
MIN_INT, MAX_INT = -2**31, 2**31 - 1


def _no_nul(value: str) -> str:
    if "\x00" in value:  # PostgreSQL text cannot hold it
        raise PydanticCustomError("nul_character", "must not contain NUL characters")
    return value


# The field types requests are made of. Numbers and booleans are strict: "1" is no number, true no 1.
Int = Annotated[StrictInt, Field(ge=MIN_INT, le=MAX_INT)]
Number = Int | Annotated[StrictFloat, Field(allow_inf_nan=False)]
Bool = StrictBool


def Text(max_length: int = 200, **kw) -> Any:
    """A string without NUL characters, at most `max_length` long."""
    return Annotated[str, Field(max_length=max_length, **kw), AfterValidator(_no_nul)]


def Name(max_length: int = 200, **kw) -> Any:
    """A string that must say something: not empty, not only spaces."""
    return Annotated[str, Field(min_length=1, max_length=max_length, pattern=r"\S", **kw), AfterValidator(_no_nul)]


# Answers: a JSON object that the row may hold as NULL.
JsonObject = Annotated[dict[str, Any], BeforeValidator(lambda value: value or {})]
# Answers: times as the database holds them (aware UTC), written by datetime.isoformat.
Timestamp = Annotated[datetime, PlainSerializer(lambda d: d.isoformat(), return_type=str),
                      WithJsonSchema({"type": "string", "format": "date-time"}, mode="serialization")]


class Body(BaseModel):
    """A JSON request body: no field beyond those declared."""
    model_config = ConfigDict(extra="forbid")


class Query(BaseModel):
    """Query parameters: parameters not declared are ignored, as browsers and proxies add some."""
    model_config = ConfigDict(extra="ignore")


class Answer(BaseModel):
    """A JSON answer, read from the view's rows (attributes) or dicts. It holds the fields the view
    gave (a field with a default that was not given stays out) and no other: a key the model does
    not declare is a bug of the view (500), never an answer the document does not describe."""
    model_config = ConfigDict(from_attributes=True, extra="forbid")


class row_with:
    """A row seen with a few more attributes, for an answer that adds fields beside the row's
    (a new user's token, an instance's history)."""

    def __init__(self, row, **more):
        self._row, self._more = row, more

    def __getattr__(self, name):
        return self._more[name] if name in self._more else getattr(self._row, name)


def _empty_is_none(value):
    return None if value == "" else value


def Filter(annotation, **kw) -> Any:
    """An optional query filter (declare it `= None`): absent or empty means "no filter"."""
    # Constraints bind to the value, not the union (pydantic cannot apply max_length to None);
    # names and descriptions stay on the field, or an alias such as `from` would be lost.
    outer = {k: kw.pop(k) for k in ("alias", "description", "title") if k in kw}
    inner = Annotated[annotation, Field(**kw)] if kw else annotation
    return Annotated[inner | None, BeforeValidator(_empty_is_none), Field(**outer)]


def _unset_default(schema: dict) -> None:
    schema.pop("default", None)


def partial(model: type[Body]) -> type[Body]:
    """The same body with no field required (PATCH): read the fields sent with `model_fields_set`."""
    fields = {name: (info.annotation, FieldInfo.merge_field_infos(info, default=None,
                                                                   json_schema_extra=_unset_default))
              for name, info in model.model_fields.items()}
    return create_model(f"{model.__name__}Change", __base__=Body, __doc__=model.__doc__, **fields)


@dataclass(frozen=True)
class Contract:
    body: type[BaseModel] | None = None
    body_optional: bool = False
    raw_body: str | None = None
    files: tuple | None = None
    query: type[Query] | None = None
    headers: dict[str, str] = field(default_factory=dict)
    answer: Any = None
    status: tuple[int, ...] = (200,)
    media_type: str | None = None
    also: tuple[str, ...] = ()

    def adapter(self) -> TypeAdapter | None:
        return _adapter(self.answer)


_adapters: dict = {}


def _adapter(annotation) -> TypeAdapter | None:
    if annotation is None:
        return None
    key = repr(annotation)
    if key not in _adapters:
        _adapters[key] = TypeAdapter(annotation)
    return _adapters[key]


def contract(*, body=None, body_optional: bool = False, raw_body: str | None = None,
             files: tuple | None = None, query=None, headers: dict | None = None, answer=None,
             status: int | tuple[int, ...] = 200, media_type: str | None = None, also: tuple[str, ...] = ()):
    """Declare a view's request and answer (see the module's docstring).

    body: a `Body` model; the view gets the checked body as `body` (None when `body_optional`
        and nothing was sent). raw_body: a description of a JSON body the view reads itself
        (provider webhooks). files: (description, many[, fields]) of a multipart body of files in parts
        named `file` (and form `fields`: name -> JSON Schema); with `body` too, the view takes either,
        and `body` is None when the request is multipart.
    query: a `Query` model; the view gets it as `query`. headers: name -> description.
    answer: the JSON answer's type (a model, list[Model], ...); None for no JSON (204, or
        `media_type` for a body the view writes itself). status: the success status(es).
    also: media types the view answers instead of JSON when asked (a CSV export).
    """
    spec = Contract(body, body_optional, raw_body, files, query, dict(headers or {}), answer,
                    status if isinstance(status, tuple) else (status,), media_type, tuple(also))
    adapter = spec.adapter()

    def wrap(view):
        @wraps(view)
        def run(*args, **kwargs):
            if spec.query is not None:
                kwargs["query"] = parse_query(spec.query)
            if spec.body is not None:
                skip = spec.body_optional and not request.content_length \
                    or spec.files and request.mimetype == "multipart/form-data"
                kwargs["body"] = None if skip else parse_body(spec.body)
            return _serialise(view(*args, **kwargs), adapter)
        run.contract = spec
        return run
    return wrap


def _serialise(result, adapter: TypeAdapter | None):
    if adapter is None or isinstance(result, Response):
        return result
    value, rest = (result[0], result[1:]) if isinstance(result, tuple) else (result, ())
    data = adapter.dump_python(adapter.validate_python(value, from_attributes=True), mode="json",
                               exclude_unset=True, by_alias=True)
    return (data, *rest) if rest else data


# -- reading requests ------------------------------------------------------------------------------
def request_json():
    """The parsed JSON body, or None when it is not JSON (nested too deep included)."""
    try:
        return request.get_json(silent=True)
    except RecursionError:
        return None


# JSON's names for the types a value failed to be (pydantic's error type -> name).
_TYPES = {"string_type": "string", "int_type": "integer", "float_type": "number", "bool_type": "boolean",
          "list_type": "array", "dict_type": "object", "none_required": "null"}
_MESSAGES = {"missing": "is required", "extra_forbidden": "no such field", "string_too_short": "must not be empty",
             "string_pattern_mismatch": "must not be empty", "greater_than_equal": "is out of range",
             "less_than_equal": "is out of range", "finite_number": "must be a finite number"}


def _message(errors: list[dict]) -> str:
    """What is wrong with one value: the types it should have been (a union lists each), or
    pydantic's sentence for the first error, in our words where we have them."""
    if all(e["type"] in _TYPES for e in errors):
        return "must be " + " or ".join(dict.fromkeys(_TYPES[e["type"]] for e in errors))
    first = next(e for e in errors if e["type"] not in _TYPES)
    if first["type"] == "string_too_long":
        return f"must be at most {first['ctx']['max_length']} characters"
    if first["type"] == "literal_error":
        return f"must be one of {first['ctx']['expected'].replace(' or ', ', ')}"
    return _MESSAGES.get(first["type"]) or first["msg"][:1].lower() + first["msg"][1:]


def problems(error: ValidationError) -> list[dict]:
    """One problem per field, unknown fields first."""
    by_field: dict[str, dict[str, list]] = {}
    for e in error.errors(include_url=False):
        name = str(e["loc"][0]) if e["loc"] else "body"
        # list items by position; the other parts of a location name a union's member, not a key sent
        where = "".join(f"[{p}]" for p in e["loc"][1:] if isinstance(p, int))
        by_field.setdefault(name, {}).setdefault(where, []).append(e)
    out = []
    for name, places in by_field.items():
        where, errors = next(iter(places.items()))
        out.append({"field": name, "message": f"{where} {_message(errors)}".strip(),
                    "unknown": errors[0]["type"] == "extra_forbidden"})
    return sorted(out, key=lambda p: not p["unknown"])


def _refused(status: int, code: str, found: list[dict]) -> ApiError:
    first = found[0]["field"]
    message = "; ".join(f"{p['field']}: {p['message']}" for p in found)
    return ApiError(status, code, message, {"field": first, "fields": [p["field"] for p in found],
                                            "problems": [{"field": p["field"], "message": p["message"]}
                                                         for p in found]})


def parse_body(model: type[BaseModel]) -> BaseModel:
    body = request_json()
    if not isinstance(body, dict):
        raise ApiError(400, "malformed_body", "the request body must be a JSON object")
    try:
        return model.model_validate(body)
    except ValidationError as e:
        found = problems(e)
        raise _refused(422, "unknown_field" if found[0]["unknown"] else "invalid_value", found) from None


def parse_query(model: type[Query]) -> Query:
    try:
        return model.model_validate(request.args.to_dict())
    except ValidationError as e:
        raise _refused(400, "bad_query", problems(e)) from None


def check_url() -> None:
    """Path and query values that no row can match and the database cannot even be asked
    about: an integer id beyond 32 bits names nothing (404); NUL characters are refused (400)."""
    for name, value in (request.view_args or {}).items():
        if isinstance(value, int) and value > MAX_INT:
            raise ApiError(404, "not_found", f"no {name.removesuffix('_id')} {value}")
        if isinstance(value, str) and "\x00" in value:
            raise ApiError(400, "bad_path", f"{name} must not contain NUL characters", {"field": name})
    for name, value in request.args.items(multi=True):
        if "\x00" in name or "\x00" in value:
            raise ApiError(400, "bad_query", "the query must not contain NUL characters", {"field": name})


class Page(Query):
    """?limit= and ?offset= of every list, oldest first."""
    limit: int = Field(100, ge=0, le=1000)
    offset: int = Field(0, ge=0, le=10**9)
