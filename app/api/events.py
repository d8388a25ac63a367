"""`GET /api/events`: the signed-in user's live events as Server-Sent Events (README, "Live events")."""
import json

from flask import Blueprint, Response, current_app, g

from app.api.auth import answers, authenticate
from app.extensions import db

bp = Blueprint("events", __name__, url_prefix="/api")
bp.before_request(authenticate)


@bp.get("/events")
@answers("text/event-stream")
def events():
    """Your live events (Server-Sent Events): offers, chats taken, client messages, completions, status."""
    user_id, status = g.user.id, g.user.status
    subscription = current_app.extensions["chatflow.events"].subscribe(user_id)
    keepalive = current_app.config["EVENTS_KEEPALIVE_SECONDS"]
    db.session.close()  # a stream may last hours; it must not hold a database connection

    def stream():
        try:
            # Subscribed before `ready`: a client that reloads its lists on `ready` misses nothing.
            yield "retry: 2000\n" + _frame("ready", {"type": "ready", "user_id": user_id, "status": status})
            while True:
                event = subscription.get(timeout=keepalive)
                yield ": keep-alive\n\n" if event is None else _frame(event["type"], event)
        finally:
            subscription.close()

    return Response(stream(), mimetype="text/event-stream",
                    headers={"Cache-Control": "no-cache", "X-Accel-Buffering": "no"})


def _frame(name: str, data: dict) -> str:
    return f"event: {name}\ndata: {json.dumps(data)}\n\n"
