"""Configuration from the environment (README, "Configuration")."""
import os
from pathlib import Path

DEFAULT_SQLITE = Path("instance") / "chatflow.sqlite3"
REPO = Path(__file__).resolve().parent.parent


def database_url(raw: str | None) -> str:
    """Accept the URL as PostgreSQL tools write it and pick our driver (psycopg 3)."""
    if not raw:
        DEFAULT_SQLITE.parent.mkdir(parents=True, exist_ok=True)
        return f"sqlite:///{DEFAULT_SQLITE.resolve()}"
    for prefix in ("postgres://", "postgresql://"):
        if raw.startswith(prefix):
            return "postgresql+psycopg://" + raw[len(prefix):]
    return raw


def from_env(env=os.environ) -> dict:
    return {
        "SQLALCHEMY_DATABASE_URI": database_url(env.get("DATABASE_URL")),
        # A pooled connection idle longer than this is pinged before use, so one that died with a
        # database restart is replaced (app/__init__.py); a busier one is not: a ping is a round trip.
        "DB_PING_IDLE_SECONDS": float(env.get("CHATFLOW_DB_PING_IDLE_SECONDS", 1)),
        "REDIS_URL": env.get("REDIS_URL") or None,
        "BOOTSTRAP_ADMIN_TOKEN": env.get("CHATFLOW_BOOTSTRAP_ADMIN_TOKEN") or None,
        # A single request body larger than this is refused with 413.
        "MAX_CONTENT_LENGTH": int(env.get("CHATFLOW_MAX_BODY_BYTES", 5 * 1024 * 1024)),
        # Website visitors: requests allowed per minute (sessions per IP; messages per visitor and per IP).
        "VISITOR_SESSIONS_PER_IP": int(env.get("CHATFLOW_VISITOR_SESSIONS_PER_IP", 10)),
        "VISITOR_MESSAGES_PER_VISITOR": int(env.get("CHATFLOW_VISITOR_MESSAGES_PER_VISITOR", 30)),
        "VISITOR_MESSAGES_PER_IP": int(env.get("CHATFLOW_VISITOR_MESSAGES_PER_IP", 120)),
        # How often the database is swept for due timers, and how late a timer may be
        # before the sweep fires it itself instead of waiting for its RQ job.
        # Every worker sweeps each second with half a second's grace, so a timer fires on time
        # even while RQ's scheduler is gone with a dead worker (its lock lives on for 61 s).
        "TIMER_SWEEP_SECONDS": float(env.get("CHATFLOW_TIMER_SWEEP_SECONDS", 1)),
        "TIMER_SWEEP_GRACE_SECONDS": float(env.get("CHATFLOW_TIMER_SWEEP_GRACE_SECONDS", 0.5)),
        # How long one alarm job fires due timers before it hands the rest to a new job.
        "TIMER_BATCH_SECONDS": float(env.get("CHATFLOW_TIMER_BATCH_SECONDS", 2)),
        # What one advance of a process instance may do before it is stopped as a runaway and
        # undone to its last wait: engine steps, seconds, operations (loop passes and calls) of
        # one script or expression, instances of one multi-instance activity.
        "ENGINE_STEP_LIMIT": int(env.get("CHATFLOW_ENGINE_STEP_LIMIT", 10_000)),
        "ENGINE_TIME_LIMIT_SECONDS": float(env.get("CHATFLOW_ENGINE_TIME_LIMIT_SECONDS", 5)),
        "SCRIPT_OPERATION_LIMIT": int(env.get("CHATFLOW_SCRIPT_OPERATION_LIMIT", 1_000_000)),
        "MULTI_INSTANCE_LIMIT": int(env.get("CHATFLOW_MULTI_INSTANCE_LIMIT", 10_000)),
        "RQ_QUEUE": env.get("CHATFLOW_RQ_QUEUE", "chatflow"),
        "TELEGRAM_API_BASE": env.get("TELEGRAM_API_BASE", "https://api.telegram.org"),
        "FACEBOOK_GRAPH_BASE": env.get("FACEBOOK_GRAPH_BASE", "https://graph.facebook.com/v25.0"),
        # Where the admin's browser meets Facebook's login dialog ({base}/dialog/oauth).
        "FACEBOOK_DIALOG_BASE": env.get("FACEBOOK_DIALOG_BASE", "https://www.facebook.com/v25.0"),
        # Files (attachments) live in the database unless a folder is named here.
        "FILES_DIR": env.get("CHATFLOW_FILES_DIR") or None,
        # The largest file fetched from a client or sent by an operator: Telegram's bot download
        # limit ("up to 20MB"); a larger inbound file is recorded as too_large.
        "MAX_FILE_BYTES": int(env.get("CHATFLOW_MAX_FILE_BYTES", 20_000_000)),
        # Longest wait for a provider's answer; an attempt older than this (plus the sweep's
        # grace) has no outcome coming and is marked `uncertain`.
        "PROVIDER_TIMEOUT_SECONDS": float(env.get("CHATFLOW_PROVIDER_TIMEOUT_SECONDS", 10)),
        # Seconds before each retry of an outgoing message; after the last, it is `failed`.
        "OUTBOUND_RETRY_DELAYS": [float(x) for x in env.get("CHATFLOW_OUTBOUND_RETRY_DELAYS", "2,10,60,300")
                                  .split(",")],
        # The web console serves bpmn-js from here (`npm ci` in the repository fills it).
        "NODE_MODULES": env.get("CHATFLOW_NODE_MODULES", str(REPO / "node_modules")),
        # Who may scrape /metrics: this bearer token, or a client in these networks (comma-separated).
        "METRICS_TOKEN": env.get("CHATFLOW_METRICS_TOKEN") or None,
        "METRICS_ALLOW": env.get("CHATFLOW_METRICS_ALLOW", "127.0.0.0/8,::1/128"),
        "LOG_FORMAT": env.get("CHATFLOW_LOG_FORMAT", "text"),
        # Seconds between keep-alive comments on an idle /api/events stream.
        "EVENTS_KEEPALIVE_SECONDS": float(env.get("CHATFLOW_EVENTS_KEEPALIVE_SECONDS", 15)),
        # How long one `PUT /api/me/presence` keeps an API client connected.
        "PRESENCE_HEARTBEAT_SECONDS": float(env.get("CHATFLOW_PRESENCE_HEARTBEAT_SECONDS", 60)),
    }
