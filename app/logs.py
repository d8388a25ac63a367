"""Logging set-up: quiet chatty libraries, and keep secrets out of request lines.

Telegram puts the bot token in the URL path, Graph takes tokens as `access_token`, and
Facebook's subscription check carries `hub.verify_token` in the query string; the HTTP
client (urllib3, at DEBUG) and the web server (werkzeug) log whole request lines.
"""
import logging
import re

_SECRETS = [(re.compile(r"/bot[^/\s]+/"), "/bot***/"),
            (re.compile(r"\b(access_token|hub\.verify_token|secret_token)=[^&\s\"']+"), r"\1=***")]
_REQUEST_LOGGERS = ("urllib3.connectionpool", "werkzeug")


class RedactSecrets(logging.Filter):
    def filter(self, record: logging.LogRecord) -> bool:
        message = record.getMessage()
        for pattern, replacement in _SECRETS:
            message = pattern.sub(replacement, message)
        record.msg, record.args = message, None
        return True


def configure(level: str) -> None:
    logging.basicConfig(level=level, format="%(asctime)s %(levelname)s %(name)s: %(message)s")
    for noisy in ("spiff", "alembic"):  # they log every task state change and migration step at INFO
        logging.getLogger(noisy).setLevel(logging.WARNING)
    for name in _REQUEST_LOGGERS:  # filters act on the logger a record is made on
        logger = logging.getLogger(name)
        if not any(isinstance(f, RedactSecrets) for f in logger.filters):
            logger.addFilter(RedactSecrets())
