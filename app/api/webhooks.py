"""Provider webhooks: no bearer token; each is authenticated as its provider does it.

They store what arrived and answer at once; lifecycle work runs in jobs.
"""
import hmac
import logging

from flask import Blueprint, request
from sqlalchemy import select
from sqlalchemy.exc import IntegrityError

from app import channels
from app.api.auth import accepts, answers, reads
from app.api.errors import ApiError
from app.api.contract import MAX_INT, request_json
from app.channels.facebook import signature_valid
from app.chats import inbound, settings
from app.extensions import db
from app.models.chat import Channel
from app.services import services

log = logging.getLogger(__name__)
bp = Blueprint("webhooks", __name__, url_prefix="/webhooks")


@bp.post("/telegram/<int:channel_id>")
@accepts({"type": "object", "description": "a Telegram Update"})
@reads(headers={"X-Telegram-Bot-Api-Secret-Token": {"type": "string"}})
def telegram_update(channel_id):
    """A Telegram Update; X-Telegram-Bot-Api-Secret-Token must match; a repeated update_id is ignored."""
    channel = db.session.get(Channel, channel_id) if channel_id <= MAX_INT else None
    given = request.headers.get("X-Telegram-Bot-Api-Secret-Token", "")
    if channel is None or channel.provider != "telegram" or not channel.webhook_secret \
            or not hmac.compare_digest(given.encode(), channel.webhook_secret.encode()):
        raise ApiError(403, "forbidden", "unknown channel or wrong secret token")
    update = request_json()
    try:
        events, skipped = channels.adapter("telegram").parse(update, channel)
    except ValueError as e:
        raise ApiError(400, "malformed_update", str(e)) from None
    if skipped:
        log.info("telegram channel %s: update %s skipped: %s", channel_id, update.get("update_id"), skipped[0])
        return {"ok": True, "skipped": skipped[0]}
    jobs, engine = services().jobs, services().engine
    changed = _store_once(lambda: [inbound.handle(db.session.get(Channel, channel_id), event, jobs, engine)
                                   for event in events])
    return {"ok": True, "duplicate": not any(changed)}


def _store_once(store, attempts: int = 5):
    """Run `store` and commit. When the same event, or a contact's first messages, arrive
    several times at once, a loser hits a unique constraint: it rolls back and runs again,
    now finding and joining what the winners stored."""
    for _ in range(attempts - 1):
        try:
            result = store()
            db.session.commit()
            return result
        except IntegrityError:
            db.session.rollback()
    result = store()
    db.session.commit()
    return result


@bp.get("/facebook")
@answers("text/plain")
@reads({"hub.mode": {"type": "string"}, "hub.verify_token": {"type": "string"}, "hub.challenge": {"type": "string"}})
def facebook_verify():
    """Subscription check: hub.mode=subscribe and hub.verify_token = FacebookVerifyToken → the challenge."""
    expected = settings.get("FacebookVerifyToken")
    given = request.args.get("hub.verify_token", "")
    if request.args.get("hub.mode") != "subscribe" or not expected \
            or not hmac.compare_digest(given.encode(), str(expected).encode()):
        raise ApiError(403, "forbidden", "wrong hub.mode or hub.verify_token")
    return request.args.get("hub.challenge", ""), 200, {"Content-Type": "text/plain; charset=utf-8"}


@bp.post("/facebook")
@accepts({"type": "object", "description": "page events: {\"object\": \"page\", \"entry\": [...]}"})
@reads(headers={"X-Hub-Signature-256": {"type": "string"}})
def facebook_events():
    """Page events signed with X-Hub-Signature-256; batched entries are routed by page id."""
    raw = request.get_data(cache=True)
    if not signature_valid(raw, settings.get("FacebookAppSecret"),
                                    request.headers.get("X-Hub-Signature-256"),
                                    request.headers.get("X-Hub-Signature")):
        raise ApiError(403, "forbidden", "missing or wrong X-Hub-Signature-256")
    try:
        events, skipped = channels.adapter("facebook").parse(request_json())
    except ValueError as e:
        raise ApiError(400, "malformed_event", str(e)) from None
    for reason in skipped:
        log.info("facebook event skipped: %s", reason)
    jobs, engine = services().jobs, services().engine
    stored = _store_once(lambda: [_handle(event, jobs, engine) for event in events])
    return {"ok": True, "events": len(events), "stored": sum(1 for s in stored if s), "skipped": len(skipped)}


def _handle(page_event, jobs, engine) -> bool:
    page_id, event = page_event
    channel = db.session.scalars(select(Channel).where(Channel.provider == "facebook",
                                                       Channel.page_id == page_id)).first()
    if channel is None:
        log.info("facebook event for page %s, which no channel serves: skipped", page_id)
        return False
    return inbound.handle(channel, event, jobs, engine)
