"""`GET /api/reports/...`: figures for supervisors (admins), as JSON or CSV (README, "Reports")."""
import json
from typing import Literal

from flask import Blueprint, Response, current_app, request
from pydantic import ConfigDict, Field
from redis import RedisError

from app import accounts, reports
from app.api.auth import admin, authenticate, bearer_token, is_admin
from app.api.contract import MAX_INT, Answer, Filter, Query, Text, contract
from app.api.errors import ApiError
from app.api.events import event_stream
from app.chats.live import SUPERVISORS
from app.extensions import db
from app.models.types import utcnow
from app.reports import table
from app.reports.arithmetic import BUCKETS, PeriodError, period
from app.reports.figures import Scope, now_tiles
from app.services import services

bp = Blueprint("reports", __name__, url_prefix="/api/reports")
bp.before_request(authenticate)

_PERIOD = ("ISO date (that local midnight) or date-time (without an offset: local to tz); "
           "default: today's start in tz")


class FilterQuery(Query):
    queue_id: Filter(int, ge=0, le=MAX_INT) = None
    channel_id: Filter(int, ge=0, le=MAX_INT) = None


class PeriodQuery(FilterQuery):
    start: Filter(Text(40), alias="from", description=_PERIOD) = None
    end: Filter(Text(40), alias="to", description="exclusive; default: a day after from") = None
    tz: Filter(Text(64), description="IANA time zone; default UTC") = None
    format: Filter(Literal["json", "csv"], description="csv: as `Accept: text/csv`") = None


class TimelineQuery(PeriodQuery):
    bucket: Filter(Literal[BUCKETS], description="default: hour up to two days, else day") = None


class Summary(Answer):
    """Durations in seconds, to the millisecond; null when there are none."""
    count: int
    avg: float | None
    p50: float | None
    p90: float | None


class ServiceLevel(Answer):
    target_seconds: float
    within: int
    total: int
    share: float | None


class Figures(Answer):
    opened: int
    accepted: int
    completed: int
    completed_by_reason: dict[str, int]
    abandoned: int
    transferred: int
    escalated: int
    offers: int
    offers_missed: int
    time_to_first_offer: Summary
    time_to_accept: Summary
    time_to_first_reply: Summary
    handle_time: Summary
    service_level: ServiceLevel


class Now(Answer):
    at: str
    waiting: int
    oldest_wait_seconds: float | None
    in_work: int
    operators_active: int
    operators_available: int


class PeriodOut(Answer):
    model_config = ConfigDict(serialize_by_alias=True)
    start: str = Field(alias="from")
    end: str = Field(alias="to")
    tz: str
    bucket: Literal[BUCKETS]
    queue_id: int | None
    channel_id: int | None
    service_level_seconds: float


class ChannelFigures(Figures):
    channel_id: int
    channel_name: str | None


class Overview(Figures):
    period: PeriodOut
    now: Now
    channels: list[ChannelFigures]


class QueueFigures(Figures):
    queue_id: int
    queue_name: str | None
    waiting: int
    oldest_wait_seconds: float | None


class Queues(Answer):
    period: PeriodOut
    queues: list[QueueFigures]


class OperatorFigures(Answer):
    operator_id: int
    login: str
    name: str
    status: str
    chats_in_work: int
    offers: int
    offers_missed: int
    accepted: int
    completed: int
    handle_time: Summary


class Operators(Answer):
    period: PeriodOut
    operators: list[OperatorFigures]


class BucketFigures(Figures):
    bucket: str = Field(description="the bucket's local start, ISO 8601 with that day's offset")
    start: str
    end: str


class Timeline(Answer):
    period: PeriodOut
    buckets: list[BucketFigures]


def scope(query: PeriodQuery) -> Scope:
    try:
        chosen = period(query.start, query.end, query.tz, getattr(query, "bucket", None), utcnow())
    except PeriodError as e:
        raise ApiError(400, "bad_query", str(e), {"field": e.field}) from None
    return Scope(chosen, query.queue_id, query.channel_id)


def answer(kind: str, report: dict, fmt: str | None):
    if fmt == "csv" or (fmt is None and request.accept_mimetypes.best_match(["application/json", "text/csv"])
                        == "text/csv"):
        p = report["period"]
        filename = f"chatflow-{kind}-{p['from'][:10]}.csv"
        return Response(table.to_csv(table.rows(kind, report)), mimetype="text/csv",
                        headers={"Content-Disposition": f'attachment; filename="{filename}"'})
    return report


@bp.get("/overview")
@admin
@contract(query=PeriodQuery, answer=Overview, also=("text/csv",))
def overview(query: PeriodQuery):
    """Headline figures of a period (opened, accepted, completed, waits, service level), per channel, and now."""
    return answer("overview", reports.overview(scope(query), utcnow()), query.format)


@bp.get("/queues")
@admin
@contract(query=PeriodQuery, answer=Queues, also=("text/csv",))
def queues(query: PeriodQuery):
    """Figures per queue with its service level, chats waiting now and the oldest wait."""
    return answer("queues", reports.queues(scope(query), utcnow()), query.format)


@bp.get("/operators")
@admin
@contract(query=PeriodQuery, answer=Operators, also=("text/csv",))
def operators(query: PeriodQuery):
    """Per operator: offers made, missed and accepted, chats completed, handle time."""
    return answer("operators", reports.operators(scope(query)), query.format)


@bp.get("/timeline")
@admin
@contract(query=TimelineQuery, answer=Timeline, also=("text/csv",))
def timeline(query: TimelineQuery):
    """The period's figures per local hour or day of tz."""
    return answer("timeline", reports.timeline(scope(query)), query.format)


@bp.get("/now")
@admin
@contract(query=FilterQuery, answer=Now)
def now(query: FilterQuery):
    """Chats waiting now and the oldest wait, chats in work, operators active and with room."""
    current = utcnow()
    return now_tiles(Scope(period(None, None, None, None, current), query.queue_id, query.channel_id), current)


@bp.get("/live")
@admin
@contract(query=FilterQuery, media_type="text/event-stream")
def live(query: FilterQuery):
    """The `now` figures as Server-Sent Events (`event: now`), sent again whenever a chat or an operator changes."""
    app, token = current_app._get_current_object(), bearer_token()
    try:
        subscription = services(app).events.subscribe(SUPERVISORS)
    except (RedisError, TimeoutError):
        raise ApiError(503, "service_unavailable", "live events are unavailable (Redis); try again shortly")
    keepalive = app.config["EVENTS_KEEPALIVE_SECONDS"]
    db.session.close()  # a stream may last hours; it must not hold a database connection

    def tiles() -> dict | None:
        """The figures now, or None once the token no longer belongs to an admin."""
        with app.app_context():
            try:
                user = accounts.user_for_token(token)
                if user is None or not is_admin(user):
                    return None
                current = utcnow()
                return now_tiles(Scope(period(None, None, None, None, current), query.queue_id, query.channel_id),
                                 current)
            finally:
                db.session.remove()

    def stream():
        yield "retry: 2000\n"
        while not subscription.ended and (figures := tiles()) is not None:
            yield f"event: now\ndata: {json.dumps({'type': 'now', **figures})}\n\n"
            if subscription.get(timeout=keepalive) is not None:
                for _ in range(100):  # a burst of changes gets one answer (a steady stream, one a burst)
                    if subscription.get(timeout=0.2) is None:
                        break

    return event_stream(stream(), subscription)
