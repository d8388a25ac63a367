"""`GET /api/events`: the signed-in user's live events as Server-Sent Events (README, "Live events")."""
import json
import logging
import time

from flask import Blueprint, Response, current_app, g
from pydantic import Field
from redis import RedisError

from app import accounts
from app.api.auth import authenticate, bearer_token
from app.api.contract import Query, contract
from app.chats import presence
from app.models.types import utcnow
from app.api.errors import ApiError
from app.extensions import db
from app.services import services

log = logging.getLogger(__name__)
bp = Blueprint("events", __name__, url_prefix="/api")
bp.before_request(authenticate)


class EventsQuery(Query):
    presence: bool = Field(True, description="false: only watch (an admin page); the open stream does not "
                                             "count as your presence as an operator")


@bp.get("/events")
@contract(query=EventsQuery, media_type="text/event-stream")
def events(query: EventsQuery):
    """Your live events (Server-Sent Events): offers, chats taken, client messages, completions, status."""
    user_id, status, token = g.user.id, g.user.status, bearer_token()
    present = query.presence
    app = current_app._get_current_object()
    try:
        subscription = services(app).events.subscribe(user_id)
    except (RedisError, TimeoutError):  # the console retries with backoff and reloads on `ready`
        raise ApiError(503, "service_unavailable", "live events are unavailable (Redis); try again shortly")
    keepalive = app.config["EVENTS_KEEPALIVE_SECONDS"]
    jobs = services(app).jobs
    # An open stream is the console's presence: renewed at each keep-alive, with one to spare.
    presence_seconds = 2 * keepalive + 1
    if present:
        presence.seen(user_id, presence_seconds, jobs, check=False)
        db.session.commit()
    db.session.close()  # a stream may last hours; it must not hold a database connection

    def still_valid() -> bool:
        """A token revoked (user deleted, token rotated) ends its streams at the next keep-alive;
        a valid one renews the user's presence."""
        with app.app_context():
            user = accounts.user_for_token(token)
            if user is None or user.id != user_id:
                return False
            if present:
                presence.seen(user_id, presence_seconds, jobs, check=False)
                db.session.commit()
            return True

    written = [None]  # when the client last took a frame: it was there until then

    def closed():
        if not present:
            return
        try:
            with app.app_context():
                presence.stream_closed(user_id, jobs, written[0])
                db.session.commit()
        except Exception:  # the database is away: the keep-alive lapses, and the sweep finds them
            log.exception("could not record that user %s disconnected", user_id)

    def stream():
        if present:
            presence.stream_opened(user_id)
        try:
            # Subscribed before `ready`: a client that reloads its lists on `ready` misses nothing.
            yield "retry: 2000\n" + _frame("ready", {"type": "ready", "user_id": user_id, "status": status})
            check_at = time.monotonic() + keepalive
            while not subscription.ended:
                event = subscription.get(timeout=max(0.0, check_at - time.monotonic()))
                if event is not None:
                    yield _frame(event["type"], event)
                    written[0] = utcnow()
                if time.monotonic() >= check_at:  # also between events: a busy stream stays present
                    if not still_valid():
                        return
                    check_at = time.monotonic() + keepalive
                    if event is None:
                        yield ": keep-alive\n\n"
                        written[0] = utcnow()
        finally:
            closed()

    return event_stream(stream(), subscription)


def event_stream(body, subscription) -> Response:
    """An endless Server-Sent Events response. Its subscription closes with the response, also
    one never read (the bus waits for that when it stops, see `EventBus.stop`)."""
    response = Response(body, mimetype="text/event-stream",
                        headers={"Cache-Control": "no-cache", "X-Accel-Buffering": "no"})
    response.call_on_close(subscription.close)
    return response


def _frame(name: str, data: dict) -> str:
    return f"event: {name}\ndata: {json.dumps(data)}\n\n"
