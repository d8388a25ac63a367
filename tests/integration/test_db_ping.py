"""Pooled connections are pinged only after an idle spell (app/__init__.py, `_ping_when_idle`):
one that died while idle is replaced before use; one in steady use is not pinged, and if it died
anyway its request answers 503 and the next one gets a fresh connection."""
import pytest
from sqlalchemy import create_engine, text

from app import idle_too_long
from conftest import Api


def test_only_a_connection_idle_longer_than_the_limit_is_pinged():
    assert idle_too_long(idle_since=10.0, now=12.5, limit=2)
    assert not idle_too_long(idle_since=10.0, now=11.5, limit=2)
    assert not idle_too_long(idle_since=None, now=99.0, limit=0)  # a new connection, never in the pool


def _kill_pooled_connections(db_url) -> None:
    """Terminate, server-side, every other connection to the test database (as a restart would)."""
    admin = create_engine(db_url)
    try:
        with admin.connect() as conn:
            killed = conn.scalars(text("select pg_terminate_backend(pid, 5000) from pg_stat_activity "
                                       "where datname = current_database() and pid <> pg_backend_pid()")).all()
    finally:
        admin.dispose()
    assert killed and all(killed)


@pytest.fixture
def web_only(make_app, db_url, redis_url):
    """An app whose pool only its requests use (jobs on RQ, no in-process job thread), on PostgreSQL."""
    if not db_url.startswith("postgresql"):
        pytest.skip("a server-side disconnect needs PostgreSQL")
    return lambda **config: make_app(redis_url=redis_url, **config)


def test_a_connection_that_died_while_idle_is_replaced_before_use(web_only, db_url):
    api = Api(web_only(DB_PING_IDLE_SECONDS=0))  # every connection back from the pool is pinged
    assert api.get("/api/me").status_code == 200
    _kill_pooled_connections(db_url)
    assert api.get("/api/me").status_code == 200


def test_a_busy_connection_is_not_pinged_and_its_death_costs_one_503(web_only, db_url):
    api = Api(web_only(DB_PING_IDLE_SECONDS=3600))
    assert api.get("/api/me").status_code == 200
    _kill_pooled_connections(db_url)
    first = api.get("/api/me")
    assert first.status_code == 503 and int(first.headers["Retry-After"]) > 0
    assert api.get("/api/me").status_code == 200
