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
    status, code = 422, "invalid"
