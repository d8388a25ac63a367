"""Provider webhooks: no bearer token; each is authenticated as its provider does it.

They store what arrived and answer at once; lifecycle work runs in jobs.
"""
import hmac
import logging

from flask import Blueprint, request
from pydantic import Field
from sqlalchemy.exc import IntegrityError

from app import channels
from app.api.contract import MAX_INT, Answer, Query, contract, request_json
from app.api.errors import ApiError
from app.channels.facebook import signature_valid
from app.chats import inbound, queries, settings
from app.extensions import db
from app.services import services

log = logging.getLogger(__name__)
bp = Blueprint("webhooks", __name__, url_prefix="/webhooks")


class TelegramAnswer(Answer):
    ok: bool
    duplicate: bool = Field(None, description="this update_id was stored before")
    skipped: str = Field(None, description="why an update of a kind we do not handle was skipped")


class FacebookVerify(Query):
    mode: str | None = Field(None, alias="hub.mode")
    verify_token: str | None = Field(None, alias="hub.verify_token")
    challenge: str = Field("", alias="hub.challenge")


class FacebookAnswer(Answer):
    ok: bool
    events: int
    stored: int
    skipped: int


@bp.post("/telegram/<int:channel_id>")
@contract(raw_body="a Telegram Update", answer=TelegramAnswer,
          headers={"X-Telegram-Bot-Api-Secret-Token": "the secret setWebhook gave Telegram"})
def telegram_update(channel_id):
    """A Telegram Update; X-Telegram-Bot-Api-Secret-Token must match; a repeated update_id is ignored."""
    channel = queries.channel_of("telegram", channel_id) if channel_id <= MAX_INT else None
    given = request.headers.get("X-Telegram-Bot-Api-Secret-Token", "")
    if channel is None or not channel.webhook_secret \
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
    changed = _store_once(lambda: [inbound.handle(queries.channel_of("telegram", channel_id), event, jobs, engine)
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
@contract(query=FacebookVerify, media_type="text/plain")
def facebook_verify(query: FacebookVerify):
    """Subscription check: hub.mode=subscribe and hub.verify_token = FacebookVerifyToken → the challenge."""
    expected = settings.get("FacebookVerifyToken")
    given = query.verify_token or ""
    if query.mode != "subscribe" or not expected or not hmac.compare_digest(given.encode(), str(expected).encode()):
        raise ApiError(403, "forbidden", "wrong hub.mode or hub.verify_token")
    return query.challenge, 200, {"Content-Type": "text/plain; charset=utf-8"}


@bp.post("/facebook")
@contract(raw_body='page events: {"object": "page", "entry": [...]}', answer=FacebookAnswer,
          headers={"X-Hub-Signature-256": "sha256= HMAC of the body with the app secret"})
def facebook_events():
    """Page events signed with X-Hub-Signature-256; batched entries are routed by page id."""
    raw = request.get_data(cache=True)
    if not signature_valid(raw, settings.get("FacebookAppSecret"),
                                    request.headers.get("X-Hub-Signature-256"),
                                    request.headers.get("X-Hub-Signature")):
        raise ApiError(403, "forbidden", "missing or wrong X-Hub-Signature-256")
    try:
        events, skipped = channels.adapter("facebook").parse(request_json(),
                                                             app_id=settings.get("FacebookAppId"))
    except ValueError as e:
        raise ApiError(400, "malformed_event", str(e)) from None
    for reason in skipped:
        log.info("facebook event skipped: %s", reason)
    jobs, engine = services().jobs, services().engine
    stored = _store_once(lambda: [_handle(event, jobs, engine) for event in events])
    return {"ok": True, "events": len(events), "stored": sum(1 for s in stored if s), "skipped": len(skipped)}


def _handle(page_event, jobs, engine) -> bool:
    page_id, event = page_event
    channel = queries.facebook_channel(page_id)
    if channel is None:
        log.info("facebook event for page %s, which no channel serves: skipped", page_id)
        return False
    return inbound.handle(channel, event, jobs, engine)
