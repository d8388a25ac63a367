"""Provider webhooks: no bearer token; each is authenticated as its provider does it.

They store what arrived and answer at once; lifecycle work runs in jobs.
"""
import hmac
import logging

from flask import Blueprint, current_app, request
from sqlalchemy.exc import IntegrityError

from app.adapters import telegram
from app.api.errors import ApiError
from app.api.validation import request_json
from app.chats import service
from app.extensions import db
from app.models.chat import Channel

log = logging.getLogger(__name__)
bp = Blueprint("webhooks", __name__, url_prefix="/webhooks")


@bp.post("/telegram/<int:channel_id>")
def telegram_update(channel_id):
    """A Telegram Update; X-Telegram-Bot-Api-Secret-Token must match; a repeated update_id is ignored."""
    channel = db.session.get(Channel, channel_id)
    given = request.headers.get("X-Telegram-Bot-Api-Secret-Token", "")
    if channel is None or channel.provider != "telegram" or not channel.webhook_secret \
            or not hmac.compare_digest(given.encode(), channel.webhook_secret.encode()):
        raise ApiError(403, "forbidden", "unknown channel or wrong secret token")
    update = request_json()
    try:
        inbound = telegram.parse_update(update)
    except telegram.UnsupportedUpdate as e:
        log.info("telegram channel %s: update %s skipped: %s", channel_id,
                 update.get("update_id") if isinstance(update, dict) else None, e)
        return {"ok": True, "skipped": str(e)}
    except ValueError as e:
        raise ApiError(400, "malformed_update", str(e)) from None
    jobs = current_app.extensions["chatflow.jobs"]
    try:
        message = service.receive(channel, inbound, jobs)
        db.session.commit()
    except IntegrityError:
        # The same update, or the contact's first two messages, arrived twice at once:
        # the other request stored its part; this one now finds it and joins it.
        db.session.rollback()
        channel = db.session.get(Channel, channel_id)
        message = service.receive(channel, inbound, jobs)
        db.session.commit()
    return {"ok": True, "duplicate": message is None}
