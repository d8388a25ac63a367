"""The JSON error format (docs/api.md, "Conventions"), for every error the app answers."""
import logging

from flask import jsonify
from sqlalchemy.exc import DBAPIError, OperationalError
from werkzeug.exceptions import HTTPException

from app.bpmn.errors import BpmnRefused
from app.engine.errors import EngineError

log = logging.getLogger(__name__)
RETRY_AFTER_SECONDS = 5  # how soon a client (a provider's webhook) should try again after a 503


class ApiError(EngineError):
    def __init__(self, status: int, code: str, message: str, details: dict | None = None):
        super().__init__(message, code, details)
        self.status = status


def error_response(status: int, code: str, message: str, details: dict | None = None):
    details = details or {}
    if status == 422 and "field" in details and "fields" not in details:
        details = {**details, "fields": [details["field"]]}  # a 422 lists every field it refuses
    response = jsonify({"error": {"code": code, "message": message, "details": details}})
    response.status_code = status
    return response


def _database_unavailable(e: DBAPIError):
    """503 with Retry-After: nothing was committed, so the caller (a provider) may send it again."""
    from app.extensions import db
    try:
        db.session.rollback()
    except Exception:  # the connection may be gone; the session is discarded at teardown anyway
        pass
    # The driver's message only: SQLAlchemy's text also carries the statement's parameters.
    cause = e.orig if e.orig is not None else e
    reason = (str(cause).strip().splitlines() or [""])[0][:300]
    log.error("database unavailable: %s: %s", type(cause).__name__, reason)
    response = error_response(503, "service_unavailable", "the database is unavailable; try again shortly")
    response.headers["Retry-After"] = str(RETRY_AFTER_SECONDS)
    return response


def _code(exc: HTTPException) -> str:
    return (exc.name or "error").lower().replace(" ", "_").replace("'", "")


def init_app(app) -> None:
    @app.errorhandler(EngineError)
    def engine_error(e: EngineError):
        response = error_response(e.status, e.code, e.message, e.details)
        response.headers.update(getattr(e, "headers", None) or {})  # Retry-After of a 429
        return response

    @app.errorhandler(BpmnRefused)
    def bpmn_refused(e: BpmnRefused):
        first = e.problems[0]
        return error_response(422, "invalid_bpmn", str(first),
                              {**first.as_dict(), "problems": [p.as_dict() for p in e.problems]})

    @app.errorhandler(OperationalError)
    def database_operational_error(e: OperationalError):  # unreachable, restarting, locked too long
        return _database_unavailable(e)

    @app.errorhandler(DBAPIError)
    def database_error(e: DBAPIError):
        if e.connection_invalidated:  # the connection broke under the statement
            return _database_unavailable(e)
        return unexpected(e)

    @app.errorhandler(HTTPException)
    def http_error(e: HTTPException):
        return error_response(e.code or 500, _code(e), e.description or e.name)

    @app.errorhandler(Exception)
    def unexpected(e: Exception):
        log.exception("unhandled error")
        return error_response(500, "internal_error", "the server failed to answer; the error is logged")
