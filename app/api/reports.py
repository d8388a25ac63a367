"""`GET /api/reports/...`: figures for supervisors (admins), as JSON or CSV (README, "Reports")."""
from flask import Blueprint, Response, request

from app import reports
from app.api.auth import admin, answers_also, authenticate, reads
from app.api.errors import ApiError
from app.api.validation import id_arg
from app.models.types import utcnow
from app.reports import table
from app.reports.arithmetic import BUCKETS, PeriodError, period
from app.reports.figures import Scope

bp = Blueprint("reports", __name__, url_prefix="/api/reports")
bp.before_request(authenticate)

SCOPE = {"from": {"type": "string", "maxLength": 40, "description": "ISO date or date-time (local to tz without "
                                                                     "an offset); default: today's start in tz"},
         "to": {"type": "string", "maxLength": 40, "description": "exclusive; default: a day after from"},
         "tz": {"type": "string", "maxLength": 64, "description": "IANA time zone; default UTC"},
         "queue_id": {"type": "integer", "minimum": 0}, "channel_id": {"type": "integer", "minimum": 0},
         "format": {"enum": ["json", "csv"], "description": "csv: as `Accept: text/csv`"}}
TIMELINE = {**SCOPE, "bucket": {"enum": list(BUCKETS), "description": "default: hour up to two days, else day"}}


def scope() -> Scope:
    try:
        chosen = period(request.args.get("from"), request.args.get("to"), request.args.get("tz"),
                        request.args.get("bucket"), utcnow())
    except PeriodError as e:
        raise ApiError(400, "bad_query", str(e), {"field": e.field}) from None
    return Scope(chosen, id_arg("queue_id"), id_arg("channel_id"))


def answer(kind: str, report: dict):
    fmt = request.args.get("format")
    if fmt not in (None, "", "json", "csv"):
        raise ApiError(400, "bad_query", "format must be json or csv", {"field": "format"})
    if fmt == "csv" or (not fmt and request.accept_mimetypes.best_match(["application/json", "text/csv"])
                        == "text/csv"):
        p = report["period"]
        filename = f"chatflow-{kind}-{p['from'][:10]}.csv"
        return Response(table.to_csv(table.rows(kind, report)), mimetype="text/csv",
                        headers={"Content-Disposition": f'attachment; filename="{filename}"'})
    return report


@bp.get("/overview")
@admin
@reads(SCOPE)
@answers_also("text/csv")
def overview():
    """Headline figures of a period (opened, accepted, completed, waits, service level), per channel, and now."""
    return answer("overview", reports.overview(scope(), utcnow()))


@bp.get("/queues")
@admin
@reads(SCOPE)
@answers_also("text/csv")
def queues():
    """Figures per queue with its service level, chats waiting now and the oldest wait."""
    return answer("queues", reports.queues(scope(), utcnow()))


@bp.get("/operators")
@admin
@reads(SCOPE)
@answers_also("text/csv")
def operators():
    """Per operator: offers made, missed and accepted, chats completed, handle time."""
    return answer("operators", reports.operators(scope()))


@bp.get("/timeline")
@admin
@reads(TIMELINE)
@answers_also("text/csv")
def timeline():
    """The period's figures per local hour or day of tz."""
    return answer("timeline", reports.timeline(scope()))


@bp.get("/now")
@admin
@reads({"queue_id": SCOPE["queue_id"], "channel_id": SCOPE["channel_id"]})
def now():
    """Chats waiting now and the oldest wait, chats in work, operators active and with room."""
    from app.reports.figures import now_tiles
    current = utcnow()
    return now_tiles(Scope(period(None, None, None, None, current), id_arg("queue_id"), id_arg("channel_id")), current)
