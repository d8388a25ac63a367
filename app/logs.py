"""Logging set-up: quiet chatty libraries, and keep secrets out of request lines.

Telegram puts the bot token in the URL path, Graph takes tokens as `access_token`, and
Facebook's subscription check carries `hub.verify_token` in the query string; the HTTP
client (urllib3, at DEBUG) and the web server (werkzeug) log whole request lines.

With CHATFLOW_LOG_FORMAT=json each record is one JSON object per line with the request id, chat
id and process instance id where known (README, "Logs"). A request's id comes from its
X-Request-Id or is made here, is answered in X-Request-Id, and travels with the jobs it enqueues.
"""
import json
import logging
import re
import sys
import uuid
from contextlib import contextmanager
from contextvars import ContextVar
from datetime import datetime, timezone

_SECRETS = [(re.compile(r"/bot[^/\s]+/"), "/bot***/"),
            (re.compile(r"\b(access_token|hub\.verify_token|secret_token)=[^&\s\"']+"), r"\1=***")]
_REQUEST_LOGGERS = ("urllib3.connectionpool", "werkzeug")


request_id: ContextVar[str | None] = ContextVar("request_id", default=None)
chat_id: ContextVar[int | None] = ContextVar("chat_id", default=None)
_REQUEST_ID = re.compile(r"[A-Za-z0-9._:@/+=-]{1,128}")


def redact(text: str) -> str:
    for pattern, replacement in _SECRETS:
        text = pattern.sub(replacement, text)
    return text


class RedactSecrets(logging.Filter):
    def filter(self, record: logging.LogRecord) -> bool:
        record.msg, record.args = redact(record.getMessage()), None
        return True


def _instance():
    """The process instance the engine is advancing in this context, if any."""
    instances = sys.modules.get("app.engine.instances")
    return instances.current_instance.get() if instances is not None else None


class JsonFormatter(logging.Formatter):
    def format(self, record: logging.LogRecord) -> str:
        out = {"time": datetime.fromtimestamp(record.created, timezone.utc).isoformat(timespec="milliseconds"),
               "level": record.levelname, "logger": record.name, "message": redact(record.getMessage())}
        instance = _instance()
        known = {"request_id": request_id.get(), "chat_id": chat_id.get(),
                 "instance_id": instance.id if instance is not None else None}
        if known["chat_id"] is None and instance is not None and (instance.business_key or "").startswith("chat:"):
            known["chat_id"] = int(instance.business_key[5:])
        out.update({k: v for k, v in known.items() if v is not None})
        if record.exc_info:
            out["exception"] = redact(self.formatException(record.exc_info))
        return json.dumps(out, default=str)


def configure(level: str, fmt: str = "text") -> None:
    logging.basicConfig(level=level, format="%(asctime)s %(levelname)s %(name)s: %(message)s")
    if fmt == "json":  # ours, and gunicorn's own (its loggers do not propagate) when it runs us
        for name in (None, "gunicorn.error", "gunicorn.access"):
            for handler in logging.getLogger(name).handlers:
                handler.setFormatter(JsonFormatter())
    for noisy in ("spiff", "alembic"):  # they log every task state change and migration step at INFO
        logging.getLogger(noisy).setLevel(logging.WARNING)
    for name in _REQUEST_LOGGERS:  # filters act on the logger a record is made on
        logger = logging.getLogger(name)
        if not any(isinstance(f, RedactSecrets) for f in logger.filters):
            logger.addFilter(RedactSecrets())


# -- request ids ---------------------------------------------------------------------------------
def init_app(app) -> None:
    from flask import g, request

    @app.before_request
    def take_request_id():
        given = request.headers.get("X-Request-Id", "")
        g.request_id = given if _REQUEST_ID.fullmatch(given) else uuid.uuid4().hex
        request_id.set(g.request_id)
        chat = (request.view_args or {}).get("chat_id")
        chat_id.set(chat if isinstance(chat, int) else None)

    @app.after_request
    def answer_request_id(response):
        response.headers["X-Request-Id"] = g.get("request_id") or request_id.get() or ""
        return response

    @app.teardown_request
    def forget(_exc):
        request_id.set(None)
        chat_id.set(None)


def job_context() -> dict:
    """What a job enqueued now carries: the current request's id."""
    current = request_id.get()
    return {"request_id": current} if current else {}


@contextmanager
def job_scope(context: dict | None):
    """Run a job with the request id it carries (a retry it enqueues carries it on)."""
    token = request_id.set((context or {}).get("request_id"))
    try:
        yield
    finally:
        request_id.reset(token)
