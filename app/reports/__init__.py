"""Reports for supervisors: the overview, queues, operators and timeline reports (README, "Reports").

`figures` computes, `arithmetic` holds the pure parts (periods, buckets, percentiles, service
level), `table` turns a report into CSV rows.

Import rule: `app.models`, `app.extensions` and `app.chats.settings` (the service level and the
chat limit); never `app.api`, `app.engine` or the adapters. Reports only read.
"""
from datetime import datetime

from app.chats import settings
from app.models.chat import Channel, Queue
from app.reports import figures as f
from app.reports.arithmetic import summary
from app.reports.figures import Scope


def _period(scope: Scope) -> dict:
    p = scope.period
    return {"from": p.start.isoformat(), "to": p.end.isoformat(), "tz": p.tz.key, "bucket": p.bucket,
            "queue_id": scope.queue_id, "channel_id": scope.channel_id,
            "service_level_seconds": settings.get("ServiceLevelSeconds")}


def _empty() -> dict:
    return f.empty_figures(settings.get("ServiceLevelSeconds"))


def overview(scope: Scope, now: datetime) -> dict:
    """The period's headline figures, the same per channel, and what is happening now."""
    total, per_channel = f.figures(scope, "channel", with_total=True)
    ids = f.all_ids(Channel, scope.channel_id)
    labels = f.names(Channel, ids)
    return {"period": _period(scope), **total, "now": f.now_tiles(scope, now),
            "channels": [{"channel_id": i, "channel_name": labels.get(i), **(per_channel.get(i) or _empty())}
                         for i in ids]}


def queues(scope: Scope, now: datetime) -> dict:
    per_queue = f.figures(scope, "queue")
    waiting = f.waiting_now(scope, now, by_queue=True)
    ids = f.all_ids(Queue, scope.queue_id)
    labels = f.names(Queue, ids)
    return {"period": _period(scope), "queues": [
        {"queue_id": i, "queue_name": labels.get(i), **(per_queue.get(i) or _empty()),
         **waiting.get(i, {"waiting": 0, "oldest_wait_seconds": None})} for i in ids]}


def operators(scope: Scope) -> dict:
    """Operators who serve a queue in scope, or had offers, accepts or completions in the period."""
    per_operator = f.operators(scope)
    empty = {"offers": 0, "offers_missed": 0, "accepted": 0, "completed": 0, "handle_time": summary([])}
    return {"period": _period(scope), "operators": [
        {"operator_id": u.id, "login": u.login, "name": u.name, "status": u.status,
         "chats_in_work": u.chats_in_work, **(per_operator.get(u.id) or empty)}
        for u in f.users(scope, per_operator)]}


def timeline(scope: Scope) -> dict:
    per_bucket = f.figures(scope, "bucket")
    return {"period": _period(scope), "buckets": [
        {"bucket": b.label, "start": b.start.isoformat(), "end": b.end.isoformat(), **(per_bucket.get(i) or _empty())}
        for i, b in enumerate(scope.period.buckets())]}
