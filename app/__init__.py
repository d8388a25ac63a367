"""Chatflow: an omnichannel chat-center engine whose behaviour is BPMN.

`create_app` is the wiring: the one place that picks the adapters and hands them to the rest.
Import rule: this module, `app.jobs` and `app.cli` are the entry points and may import anything;
no other module imports them. Each package's docstring states its own rule.
"""
import time
from functools import partial

from flask import Flask
from sqlalchemy import event
from sqlalchemy.exc import DisconnectionError

from app import config, logs, outages
from app.extensions import db


def create_app(test_config: dict | None = None, start_jobs: bool = True) -> Flask:
    """Build the app: configuration, database, job queue, engine, routes.

    Args:
        test_config: settings that override the environment's.
        start_jobs: start the in-process job thread (embedded default only); worker
            processes and one-off CLI commands pass False.
    """
    app = Flask(__name__)
    app.config.update(config.from_env())
    app.config.update(test_config or {})
    logs.configure(app.config.get("LOG_LEVEL", "INFO"), app.config.get("LOG_FORMAT", "text"))
    db.init_app(app)
    from app.engine import tx
    tx.install(failed=outages.report)
    with app.app_context():
        _tune_database(app)
        if app.config.get("AUTO_MIGRATE", db.engine.dialect.name == "sqlite"):
            from app.migrate import upgrade
            upgrade(app.config["SQLALCHEMY_DATABASE_URI"])
    _wire_engine(app, start_jobs)
    if app.config["BOOTSTRAP_ADMIN_TOKEN"]:
        from app import accounts
        with app.app_context():
            accounts.bootstrap_admin(app.config["BOOTSTRAP_ADMIN_TOKEN"])
            db.session.commit()
    _register_routes(app)
    from app.api.site_path import SitePathPrefix
    app.wsgi_app = SitePathPrefix(app.wsgi_app, app)
    return app


def _tune_database(app: Flask) -> None:
    """Pooled connections pinged only after an idle spell; SQLite: one writer at a time, taken at
    BEGIN, so read-modify-write never loses an update."""
    engine = db.engine
    _ping_when_idle(engine, app.config.get("DB_PING_IDLE_SECONDS", 1.0))
    if engine.dialect.name != "sqlite":
        return

    @event.listens_for(engine, "connect")
    def on_connect(dbapi_connection, _record):
        dbapi_connection.isolation_level = None  # let SQLAlchemy's BEGIN below control transactions
        cursor = dbapi_connection.cursor()
        cursor.execute("PRAGMA journal_mode=WAL")
        cursor.execute("PRAGMA busy_timeout=30000")
        cursor.execute("PRAGMA foreign_keys=ON")
        cursor.close()

    @event.listens_for(engine, "begin")
    def on_begin(connection):
        connection.exec_driver_sql("BEGIN IMMEDIATE")


def idle_too_long(idle_since: float | None, now: float, limit: float) -> bool:
    """Whether a pooled connection must be pinged before use: it waited in the pool longer than
    `limit` (a new one, never checked in, is fresh)."""
    return idle_since is not None and now - idle_since > limit


def _ping_when_idle(engine, idle_seconds: float) -> None:
    """SQLAlchemy's pool_pre_ping costs a round trip on every checkout, i.e. every request. A
    connection in steady use needs none: had the database restarted under it, its last use would
    have failed, and a statement that finds a connection dead invalidates the whole pool. So only
    a connection idle longer than `idle_seconds` is pinged; a dead one is replaced (the pool
    retries the checkout with a fresh connection)."""
    @event.listens_for(engine, "checkin")
    def idle_from_now(_dbapi_connection, record):
        record.info["idle_since"] = time.monotonic()

    @event.listens_for(engine, "checkout")
    def ping_if_idle(dbapi_connection, record, _proxy):
        if not idle_too_long(record.info.pop("idle_since", None), time.monotonic(), idle_seconds):
            return
        try:
            engine.dialect.do_ping(dbapi_connection)
        except engine.dialect.loaded_dbapi.Error as e:
            if engine.dialect.is_disconnect(e, dbapi_connection, None):
                raise DisconnectionError(str(e)) from e
            raise


def _wire_engine(app: Flask, start_jobs: bool) -> None:
    from app.bpmn.limits import Limits
    from app.engine.instances import Engine
    from app.catalogue import build_operations
    from app.jobs import sweep
    from app.metrics import JobObserver

    if app.config["REDIS_URL"]:
        from app.adapters.rq_jobs import RQJobQueue
        jobs = RQJobQueue(app.config["REDIS_URL"], app.config["RQ_QUEUE"], observer=JobObserver())
        from app import heartbeats
        health = partial(heartbeats.health, app)
        from app.adapters.events import RedisEvents
        events = RedisEvents(app.config["REDIS_URL"])
    else:
        from app.adapters.inprocess import InProcessJobQueue
        jobs = InProcessJobQueue(app, sweep=partial(sweep, 0),
                                 sweep_seconds=app.config.get("EMBEDDED_SWEEP_SECONDS", 1.0), observer=JobObserver(),
                                 failed=outages.report, succeeded=outages.all_up)
        health = lambda: {"jobs": jobs.health()}  # noqa: E731
        from app.adapters.events import LocalEvents
        events = LocalEvents()
    from app import channels
    from app import file_store
    from app.adapters.notify import HttpNotifier
    from app.services import Services, install
    install(app, Services(engine=Engine(jobs, build_operations(jobs), Limits.from_config(app.config)), jobs=jobs,
                          events=events, channels=channels.build(app.config), files=file_store.build(app.config),
                          notifier=HttpNotifier(), health=health))
    if start_jobs and hasattr(jobs, "start"):
        jobs.start()  # only now: its first sweep needs the engine


def _register_routes(app: Flask) -> None:
    from app import console, metrics
    logs.init_app(app)
    metrics.init_app(app)
    from app.api import (actions, chat_setup, chats, errors, events, facebook_login, files, processes, reports,
                         system, users, webhooks, widget, workspace)
    errors.init_app(app)
    for module in (system, users, processes, chat_setup, facebook_login, chats, files, actions, workspace, events,
                   reports, webhooks, widget, console):
        app.register_blueprint(module.bp)
    app.register_blueprint(facebook_login.callback_bp)
    app.register_blueprint(console.root)
    app.register_blueprint(widget.demo)
