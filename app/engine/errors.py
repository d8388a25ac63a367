class EngineError(Exception):
    """A request the engine refuses; the API turns `status`, `code` and the message into JSON."""

    status = 400
    code = "bad_request"

    def __init__(self, message: str, code: str | None = None, details: dict | None = None):
        super().__init__(message)
        self.message = message
        self.code = code or self.code
        self.details = details or {}


class NotFound(EngineError):
    status, code = 404, "not_found"


class Conflict(EngineError):
    status, code = 409, "conflict"


class Invalid(EngineError):
    status, code = 422, "invalid_value"


class Forbidden(EngineError):
    status, code = 403, "forbidden"


def get_or_404(model, id_: int, what: str | None = None):
    """The row `id_` of `model`, or NotFound naming it (code `{what}_not_found` when `what` is given)."""
    from app.extensions import db
    row = db.session.get(model, id_)
    if row is None:
        noun = what or model.__tablename__.rstrip("s").replace("_", " ")
        raise NotFound(f"no {noun} {id_}", code=f"{what}_not_found" if what else None)
    return row
