"""`GET /api/events`: the signed-in user's live events as Server-Sent Events (README, "Live events")."""
import json

from flask import Blueprint, Response, current_app, g
from redis import RedisError

from app import accounts
from app.api.auth import answers, authenticate, bearer_token
from app.api.errors import ApiError
from app.extensions import db
from app.services import services

bp = Blueprint("events", __name__, url_prefix="/api")
bp.before_request(authenticate)


@bp.get("/events")
@answers("text/event-stream")
def events():
    """Your live events (Server-Sent Events): offers, chats taken, client messages, completions, status."""
    user_id, status, token = g.user.id, g.user.status, bearer_token()
    app = current_app._get_current_object()
    try:
        subscription = services(app).events.subscribe(user_id)
    except (RedisError, TimeoutError):  # the console retries with backoff and reloads on `ready`
        raise ApiError(503, "service_unavailable", "live events are unavailable (Redis); try again shortly")
    keepalive = app.config["EVENTS_KEEPALIVE_SECONDS"]
    db.session.close()  # a stream may last hours; it must not hold a database connection

    def still_valid() -> bool:
        """A token revoked (user deleted, token rotated) ends its streams at the next keep-alive."""
        with app.app_context():
            user = accounts.user_for_token(token)
            return user is not None and user.id == user_id

    def stream():
        try:
            # Subscribed before `ready`: a client that reloads its lists on `ready` misses nothing.
            yield "retry: 2000\n" + _frame("ready", {"type": "ready", "user_id": user_id, "status": status})
            while True:
                event = subscription.get(timeout=keepalive)
                if event is not None:
                    yield _frame(event["type"], event)
                elif still_valid():
                    yield ": keep-alive\n\n"
                else:
                    return
        finally:
            subscription.close()

    return Response(stream(), mimetype="text/event-stream",
                    headers={"Cache-Control": "no-cache", "X-Accel-Buffering": "no"})


def _frame(name: str, data: dict) -> str:
    return f"event: {name}\ndata: {json.dumps(data)}\n\n"
