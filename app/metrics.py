"""Prometheus metrics at `GET /metrics` (README, "Metrics").

Counters and histograms live in each process; with PROMETHEUS_MULTIPROC_DIR set (the production
shape: several gunicorn processes and workers) prometheus_client writes them to files there and
a scrape of any web process sums every process's files into one view. Gauges of the database's
state (chats by state, operators, jobs queued) are read at scrape time instead, so they are the
same whichever process answers and need no per-process files.

Import rule: an entry-point helper like `app.logs`: imported by `create_app`, `app.jobs`,
`app.cli`; it imports `app.models`, `app.extensions`, `app.reports` (the
operators' figure) and `app.engine.tx` (to count a step only once it is committed).
"""
import ipaddress
import os
import time
from contextlib import contextmanager

from flask import Flask, Response, abort, current_app, g, request
from prometheus_client import (CONTENT_TYPE_LATEST, REGISTRY, CollectorRegistry, Counter, Histogram,
                               disable_created_metrics, generate_latest, multiprocess)
from prometheus_client.core import GaugeMetricFamily
from sqlalchemy import event, func, select

from app import logs
from app.api.contract import contract
from app.models.states import ChatState
from app.services import services

disable_created_metrics()  # no *_created series: Prometheus has no use for them here
LATENCY_BUCKETS = (0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10)
LAG_BUCKETS = (0.1, 0.25, 0.5, 1, 2, 5, 10, 30, 60, 300, 900)

HTTP_REQUESTS = Counter("chatflow_http_requests_total", "HTTP requests answered, by route template and status",
                        ["method", "route", "status"])
HTTP_LATENCY = Histogram("chatflow_http_request_duration_seconds", "Time to answer an HTTP request",
                         ["method", "route"], buckets=LATENCY_BUCKETS)
WEBHOOK_MESSAGES = Counter("chatflow_webhook_messages_total", "Provider webhook messages by outcome (stored, "
                           "duplicate, not_stored, skipped, rejected, malformed, error)", ["provider", "outcome"])
ENGINE_STEPS = Counter("chatflow_engine_steps_total", "Committed engine steps by process and the state they "
                       "left the instance in", ["process", "outcome"])
TIMER_LAG = Histogram("chatflow_timer_lag_seconds", "From a timer's due time until it fired", buckets=LAG_BUCKETS)
JOBS_ENQUEUED = Counter("chatflow_jobs_enqueued_total", "Jobs put on the queue", ["job"])
JOBS_FAILED = Counter("chatflow_jobs_failed_total", "Jobs that raised", ["job"])
DELIVERIES = Counter("chatflow_outbound_deliveries_total", "Attempts to send an operator's reply through its "
                     "channel, by provider and result (sent, retrying, failed)", ["provider", "status"])
CHAT_STATES = (ChatState.BOT, ChatState.QUEUED, ChatState.OFFERED, ChatState.IN_WORK)


def multiprocess_dir() -> str | None:
    return os.environ.get("PROMETHEUS_MULTIPROC_DIR") or None


def job_name(func: str) -> str:
    return func.rsplit(".", 1)[-1]


def job_failed(func: str) -> None:
    JOBS_FAILED.labels(job_name(func)).inc()


def timer_fired(due_at, fired_at) -> None:
    TIMER_LAG.observe(max(0.0, (fired_at - due_at).total_seconds()))


def delivery(provider: str, status: str) -> None:
    DELIVERIES.labels(provider, "retrying" if status == "pending" else status).inc()


def webhook_outcomes(provider: str, status: int, body: dict | None) -> dict:
    """What one webhook delivery came to, read from its answer (the provider contract's fields).
    Facebook batches events: those parsed but not stored were repeats or for pages nobody serves."""
    if status == 403:
        return {"rejected": 1}
    if status >= 400:
        return {"malformed" if status < 500 else "error": 1}
    body = body or {}
    if provider == "telegram":
        return {"skipped" if "skipped" in body else "duplicate" if body.get("duplicate") else "stored": 1}
    stored = body.get("stored", 0)
    return {"stored": stored, "not_stored": body.get("events", 0) - stored, "skipped": body.get("skipped", 0)}


class JobObserver:
    """What the job queues report: jobs enqueued and failed; the request id a job carries to its logs."""

    def enqueued(self, func: str) -> None:
        JOBS_ENQUEUED.labels(job_name(func)).inc()

    def context(self) -> dict:
        return logs.job_context()

    @contextmanager
    def running(self, func: str, context: dict | None):
        with logs.job_scope(context):
            try:
                yield
            except Exception:
                job_failed(func)
                raise


def _count_engine_steps() -> None:
    """Each engine step saves its instance once (a new revision): count it after the commit."""
    from app.engine.tx import after_commit
    from app.extensions import db
    from app.models import ProcessInstance

    def saved(_mapper, _connection, instance):
        after_commit(db.session, ENGINE_STEPS.labels(instance.process_key, instance.state).inc)

    if not event.contains(ProcessInstance, "after_insert", saved):
        event.listen(ProcessInstance, "after_insert", saved)
        event.listen(ProcessInstance, "after_update", saved)


# -- the HTTP side -----------------------------------------------------------------------------
def init_app(app: Flask) -> None:
    _count_engine_steps()
    app.add_url_rule("/metrics", "metrics", metrics_view)

    @app.before_request
    def started():
        g.metrics_started = time.perf_counter()

    @app.after_request
    def answered(response):
        route = request.url_rule.rule if request.url_rule is not None else "unmatched"
        HTTP_REQUESTS.labels(request.method, route, str(response.status_code)).inc()
        if "metrics_started" in g:
            HTTP_LATENCY.labels(request.method, route).observe(time.perf_counter() - g.metrics_started)
        if request.blueprint == "webhooks" and request.method == "POST" and request.url_rule is not None:
            provider = route.split("/")[2]
            for outcome, count in webhook_outcomes(provider, response.status_code,
                                                   response.get_json(silent=True)).items():
                if count:
                    WEBHOOK_MESSAGES.labels(provider, outcome).inc(count)
        return response


def allowed(remote_addr: str | None, authorization: str, token: str | None, networks: list) -> bool:
    """The metrics token (when one is set) as a bearer token, or a client address in the allowed networks."""
    scheme, _, given = authorization.partition(" ")
    if token and scheme.lower() == "bearer" and given.strip() == token:
        return True
    try:
        address = ipaddress.ip_address(remote_addr or "")
    except ValueError:
        return False
    return any(address in network for network in networks)


def networks(spec: str) -> list:
    return [ipaddress.ip_network(part.strip(), strict=False) for part in spec.split(",") if part.strip()]


@contract(media_type="text/plain")
def metrics_view():
    """Prometheus metrics of every process (a token or an allowed network; README, "Metrics")."""
    config = current_app.config
    if not allowed(request.remote_addr, request.headers.get("Authorization", ""), config["METRICS_TOKEN"],
                   networks(config["METRICS_ALLOW"])):
        abort(403, "send the metrics token as a bearer token, or scrape from an allowed network")
    if multiprocess_dir():
        registry = CollectorRegistry()
        multiprocess.MultiProcessCollector(registry)
    else:
        registry = REGISTRY
    state = CollectorRegistry()
    state.register(_StateCollector(_state()))
    return Response(generate_latest(registry) + generate_latest(state), content_type=CONTENT_TYPE_LATEST)


metrics_view.media_type = "text/plain"  # for /openapi.json


def _state() -> list:
    from app.extensions import db
    from app.models.chat import Chat
    from app.reports.figures import operators_now
    chats = GaugeMetricFamily("chatflow_chats", "Chats not completed, by state", labels=["state"])
    counts = dict(db.session.execute(select(Chat.state, func.count()).where(Chat.state != "completed")
                                     .group_by(Chat.state)).all())
    for state in CHAT_STATES:
        chats.add_metric([state], counts.get(state, 0))
    now = operators_now()
    db.session.rollback()
    operators = GaugeMetricFamily("chatflow_operators", "Operators (users serving a queue) who are active, and "
                                  "those of them below SimultaneousChats (available)", labels=["status"])
    operators.add_metric(["active"], now["operators_active"])
    operators.add_metric(["available"], now["operators_available"])
    queued = GaugeMetricFamily("chatflow_jobs_queued", "Jobs waiting to run, due now or scheduled")
    queued.add_metric([], services().jobs.pending())
    return [chats, operators, queued]


class _StateCollector:
    def __init__(self, families):
        self.families = families

    def collect(self):
        return self.families
