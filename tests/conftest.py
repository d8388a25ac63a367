"""Fixtures: a real database (PostgreSQL when DATABASE_URL is set, else a SQLite file),
the app on the embedded job thread or on RQ (REDIS_URL), and real `chatflow worker` processes.
"""
import os
import signal
import socket
import subprocess
import sys
import tempfile
import threading
import time
from pathlib import Path
from urllib.parse import urlsplit, urlunsplit

import pytest
import requests
from redis import Redis
from sqlalchemy import create_engine, text
from sqlalchemy.engine import make_url
from werkzeug.serving import WSGIRequestHandler, make_server

from app import create_app
from app.config import database_url
from app.migrate import upgrade
from app.extensions import db
from app.services import services
from fakes.facebook import FakeGraph
from fakes.telegram import FakeTelegram


LOCAL_REDIS = "redis://127.0.0.1:6379/14"  # the RQ tests' Redis on the embedded default


def _per_worker_environment(worker: str | None) -> None:
    """Under pytest-xdist (pyproject's addopts) worker n > 0 gets database `<name>_gw<n>` and
    Redis database <N>+n: workers never share a table, a queue or an event channel. Set in the
    environment, so the workers and web processes the tests start inherit it too."""
    n = int(worker.removeprefix("gw")) if worker else 0
    if n == 0:
        return
    if raw := os.environ.get("DATABASE_URL"):
        url = urlsplit(raw)
        os.environ["DATABASE_URL"] = urlunsplit(url._replace(path=f"{url.path}_gw{n}"))
    os.environ.setdefault("CHATFLOW_TEST_REDIS_URL", LOCAL_REDIS)
    for name in ("REDIS_URL", "CHATFLOW_TEST_REDIS_URL"):
        if raw := os.environ.get(name):
            url = urlsplit(raw)
            os.environ[name] = urlunsplit(url._replace(path=f"/{(int(url.path.strip('/') or 0) + n) % 16}"))


_per_worker_environment(os.environ.get("PYTEST_XDIST_WORKER"))

ADMIN_TOKEN = "test-admin-token"
DATA = Path(__file__).parent / "data"
ROOT = Path(__file__).parent.parent
CORPUS = DATA / "bpmn-corpus"  # third-party files, sources and licences in its MANIFEST.md
CHROMIUM = os.environ.get("CHATFLOW_CHROMIUM", "/usr/bin/chromium")
SCREENSHOTS = ROOT / "artifacts" / "screenshots"  # kept by CI as artifacts (README, "Web console")


# The unit tier is pure code with plain values: no database, app, Redis, server or browser, so it
# runs in seconds (`pytest tests/unit`). A unit test asking for a fixture that builds one of those fails.
UNIT = Path(__file__).parent / "unit"
OUTSIDE = {"db_url", "make_app", "app", "api", "chat_app", "chat_api", "running_app", "redis_url", "start_worker",
           "start_web", "serve", "browser", "console", "telegram_server", "telegram", "graph_server", "graph"}


@pytest.fixture(autouse=True)
def _unit_tests_stay_pure(request):
    used = sorted(OUTSIDE & set(request.fixturenames))
    if used and UNIT in request.node.path.parents:
        pytest.fail(f"a unit test may not use {', '.join(used)}: move it to tests/integration or tests/e2e")


@pytest.fixture(scope="session")
def db_url():
    """Migrated once per session; PostgreSQL's public schema is rebuilt from nothing."""
    raw = os.environ.get("DATABASE_URL")
    if raw:
        url = database_url(raw)
        _create_database(url)
        engine = create_engine(url)
        with engine.begin() as conn:
            conn.execute(text("DROP SCHEMA public CASCADE"))
            conn.execute(text("CREATE SCHEMA public"))
        engine.dispose()
    else:
        url = f"sqlite:///{tempfile.mkdtemp(prefix='chatflow-test-')}/test.sqlite3"
    upgrade(url)
    return url


def _create_database(url) -> None:
    """A worker's own database (see _per_worker_environment) is created on first use."""
    name = make_url(url).database
    engine = create_engine(make_url(url).set(database="postgres"), isolation_level="AUTOCOMMIT")
    with engine.connect() as conn:
        if not conn.scalar(text("SELECT 1 FROM pg_database WHERE datname = :name"), {"name": name}):
            conn.execute(text(f'CREATE DATABASE "{name}"'))
    engine.dispose()


def _empty_tables(url):
    """Every table emptied, every id counting from 1 again. DELETE, not TRUNCATE, on PostgreSQL
    too: TRUNCATE writes new files for each of the 26 tables and their indexes and syncs them
    (0.1-1 s a test here), while a test leaves only a few rows to delete."""
    engine = create_engine(url)
    tables = [t.name for t in reversed(db.metadata.sorted_tables)]
    with engine.begin() as conn:
        for table in tables:
            conn.execute(text(f"DELETE FROM {table}"))
        if engine.dialect.name == "postgresql":
            for sequence in conn.scalars(text("SELECT sequencename FROM pg_sequences WHERE schemaname = 'public'")):
                conn.execute(text(f"ALTER SEQUENCE {sequence} RESTART"))
    engine.dispose()


def _redis_reachable(url) -> bool:
    try:
        return bool(Redis.from_url(url, socket_connect_timeout=1).ping())
    except Exception:
        return False


@pytest.fixture(scope="session")
def redis_url():
    """Real Redis for tests that prove RQ delivery; CI sets CHATFLOW_REQUIRE_REDIS=1 so it never skips."""
    url = os.environ.get("REDIS_URL") or os.environ.get("CHATFLOW_TEST_REDIS_URL", LOCAL_REDIS)
    if not _redis_reachable(url):
        if os.environ.get("CHATFLOW_REQUIRE_REDIS"):
            pytest.fail(f"Redis at {url} is required but not reachable")
        pytest.skip(f"no Redis at {url}")
    return url


@pytest.fixture(scope="session")
def telegram_server():
    """One local fake Telegram Bot API for the session; apps and workers are pointed at it."""
    with FakeTelegram(tokens=("123:good-token", "456:other-token")) as fake:
        yield fake


@pytest.fixture
def telegram(telegram_server):
    """The fake Telegram, reset: no calls recorded, no failures planned."""
    fake = telegram_server
    if fake.held is not None:
        fake.held.set()  # a previous test's held answers go out
    fake.calls.clear()
    fake.delivered.clear()
    fake.files.clear()
    fake.fail_sends, fake.fail_downloads, fake.down, fake.held = 0, 0, False, None
    return fake


@pytest.fixture(scope="session")
def graph_server():
    """One local fake Facebook Graph API for the session."""
    with FakeGraph() as fake:
        yield fake


@pytest.fixture
def graph(graph_server):
    """The fake Graph API, reset."""
    graph_server.reset()
    return graph_server


@pytest.fixture
def make_app(db_url, telegram_server, graph_server):
    """Build apps on the test database; `make_app(redis_url=...)` puts jobs on RQ."""
    _empty_tables(db_url)
    apps = []

    def make(redis_url=None, **config):
        if redis_url:
            Redis.from_url(redis_url).flushdb()
        app = create_app({"SQLALCHEMY_DATABASE_URI": db_url, "REDIS_URL": redis_url, "TESTING": True,
                          "AUTO_MIGRATE": False, "BOOTSTRAP_ADMIN_TOKEN": ADMIN_TOKEN,
                          "EMBEDDED_SWEEP_SECONDS": 0.2, "TELEGRAM_API_BASE": telegram_server.url,
                          "FACEBOOK_GRAPH_BASE": graph_server.url, "FACEBOOK_DIALOG_BASE": graph_server.url,
                          "OUTBOUND_RETRY_DELAYS": [0.2, 0.4],
                          # One heartbeat keeps a test's API operators connected for the whole test.
                          "PRESENCE_HEARTBEAT_SECONDS": 3600, **config})
        apps.append(app)
        return app

    yield make
    # Event streams end first: each records its user's disconnect as it ends, which must not
    # meet the next test's emptying of the tables (a deadlock on PostgreSQL) nor write into its tables.
    left_open = sum(services(app).events.stop(timeout=10) for app in apps)
    for app in apps:
        jobs = services(app).jobs
        if hasattr(jobs, "stop"):
            jobs.stop()
        with app.app_context():
            db.session.remove()
            db.engine.dispose()
    assert not left_open, f"{left_open} event streams still open 10 s after the test: close each response"


@pytest.fixture
def app(make_app):
    """The app as the suite's environment configures it (REDIS_URL set = RQ, else embedded)."""
    return make_app(redis_url=os.environ.get("REDIS_URL"))


@pytest.fixture
def running_app(make_app, request):
    """The suite's shape with its jobs running: embedded, or with REDIS_URL set RQ plus a real
    `chatflow worker`, whose events reach this app's streams through Redis."""
    redis_url = os.environ.get("REDIS_URL")
    if not redis_url:
        return make_app()
    app = make_app(redis_url=redis_url)
    request.getfixturevalue("start_worker")(sweep_seconds=0.5)
    return app


class Api:
    """A test client that speaks JSON with a bearer token."""

    def __init__(self, app, token=ADMIN_TOKEN):
        self.app, self.client, self.token = app, app.test_client(), token

    def as_user(self, token):
        return Api(self.app, token)

    def call(self, method, path, json=None, token=..., **kw):
        headers = kw.pop("headers", {})
        token = self.token if token is ... else token
        if token:
            headers["Authorization"] = f"Bearer {token}"
        return self.client.open(path, method=method, json=json, headers=headers, **kw)

    def get(self, path, **kw):
        return self.call("GET", path, **kw)

    def post(self, path, json=None, **kw):
        return self.call("POST", path, json, **kw)

    def patch(self, path, json=None, **kw):
        return self.call("PATCH", path, json, **kw)

    def put(self, path, json=None, **kw):
        return self.call("PUT", path, json, **kw)

    def delete(self, path, **kw):
        return self.call("DELETE", path, **kw)

    def deploy(self, *files):
        """Deploy (name, xml) pairs or paths through POST /api/processes."""
        import io
        parts = []
        for f in files:
            name, xml = (f.name, f.read_bytes()) if isinstance(f, Path) else f
            parts.append((io.BytesIO(xml if isinstance(xml, bytes) else xml.encode()), name))
        return self.call("POST", "/api/processes", data={"file": parts}, content_type="multipart/form-data")


@pytest.fixture
def api(app):
    return Api(app)


@pytest.fixture
def chat_app(make_app):
    """The chat tests' app (routing, presence, transfer): always the embedded default, whose
    in-process job thread runs jobs and fires timers (delivery through RQ workers is tests/e2e's)."""
    return make_app()


@pytest.fixture
def chat_api(chat_app):
    """The admin's API on `chat_app` with the shipped ChatLifecycle deployed and the default
    settings (5 minutes to accept, 2 chats at once)."""
    from chat_helpers import configure, deploy_lifecycle  # chat_helpers imports this module
    api = Api(chat_app)
    deploy_lifecycle(api)
    configure(api, accept_timeout_minutes=5, simultaneous_chats=2)
    return api


def wait_for(predicate, timeout=10.0, interval=0.05, message="condition"):
    """Poll until `predicate()` is truthy; return its value or fail after `timeout` seconds."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        value = predicate()
        if value:
            return value
        time.sleep(interval)
    raise AssertionError(f"timed out after {timeout}s waiting for {message}")


@pytest.fixture
def start_worker(db_url, redis_url, telegram_server, graph_server):
    """Start real `chatflow worker` processes against the test database and Redis."""
    procs = []

    def start(sweep_seconds=0.5, grace_seconds=3.0, **settings):
        """`settings`: more environment, e.g. CHATFLOW_PROVIDER_TIMEOUT_SECONDS="1"."""
        env = {**os.environ, "DATABASE_URL": db_url, "REDIS_URL": redis_url, **settings,
               "CHATFLOW_TIMER_SWEEP_SECONDS": str(sweep_seconds),
               "CHATFLOW_TIMER_SWEEP_GRACE_SECONDS": str(grace_seconds),
               "TELEGRAM_API_BASE": telegram_server.url, "FACEBOOK_GRAPH_BASE": graph_server.url,
               "CHATFLOW_OUTBOUND_RETRY_DELAYS": "0.2,0.4"}
        env.pop("CHATFLOW_BOOTSTRAP_ADMIN_TOKEN", None)
        proc = subprocess.Popen([sys.executable, "-m", "app.cli", "worker"], env=env, cwd=ROOT,
                                stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, start_new_session=True)
        procs.append(proc)
        from rq import Worker
        connection = Redis.from_url(env["REDIS_URL"])
        # listening for jobs (RQ's registry) and beating (what /healthz counts)
        alive = sum(p.poll() is None for p in procs)
        wait_for(lambda: proc.poll() is not None or (
                     Worker.count(connection=connection) >= alive
                     and connection.zcount("chatflow:heartbeats:chatflow", time.time(), "+inf") >= alive),
                 timeout=30, message="the worker to register")
        if proc.poll() is not None:
            raise AssertionError(f"worker exited: {proc.stderr.read().decode()[-2000:]}")
        return proc

    yield start
    for proc in procs:
        if proc.poll() is None:
            os.killpg(proc.pid, signal.SIGTERM)
    for proc in procs:
        try:
            proc.wait(timeout=10)
        except subprocess.TimeoutExpired:
            os.killpg(proc.pid, signal.SIGKILL)


class _QuietHandler(WSGIRequestHandler):
    def log_request(self, *args, **kwargs):
        pass


@pytest.fixture
def serve(make_app):
    """Serve apps over real HTTP on 127.0.0.1 (threaded werkzeug); `serve(app)` gives the base URL.
    (It needs `make_app` so that its servers stop before the apps do: no new stream then.)"""
    servers = []

    def start(app) -> str:
        server = make_server("127.0.0.1", 0, app, threaded=True, request_handler=_QuietHandler)
        server.daemon_threads = True  # open /api/events streams must not hold the shutdown
        # shutdown() waits for the loop's next look at its flag: every 0.05 s, not the default 0.5 s
        threading.Thread(target=server.serve_forever, args=(0.05,), daemon=True).start()
        servers.append(server)
        return f"http://127.0.0.1:{server.server_port}"

    yield start
    for server in servers:
        server.shutdown()
        server.server_close()


@pytest.fixture(scope="session")
def browser():
    """Headless Chromium (Debian's package) driven by Playwright; skipped where it is not
    installed, unless CHATFLOW_REQUIRE_BROWSER=1 (CI installs it and sets that)."""
    if not Path(CHROMIUM).exists():
        if os.environ.get("CHATFLOW_REQUIRE_BROWSER") == "1":
            pytest.fail(f"no Chromium at {CHROMIUM} and CHATFLOW_REQUIRE_BROWSER=1")
        pytest.skip(f"no Chromium at {CHROMIUM} (apt-get install chromium)")
    from playwright.sync_api import sync_playwright
    with sync_playwright() as playwright:
        chromium = playwright.chromium.launch(
            executable_path=CHROMIUM,
            args=["--no-sandbox", "--disable-gpu", "--disable-background-networking", "--disable-component-update",
                  "--disable-sync", "--no-first-run", "--autoplay-policy=no-user-gesture-required"])
        yield chromium
        chromium.close()


@pytest.fixture
def console(browser, request):
    """`console(base, token)`: a fresh browser tab signed in with that token (as the sign-in
    page would leave it). On failure each open tab is saved as a screenshot."""
    contexts = []

    def open_page(base: str, token: str | None):
        context = browser.new_context(base_url=base, viewport={"width": 1280, "height": 900})
        if token:
            context.add_init_script(f"localStorage.setItem('chatflow.token', {token!r})")
        contexts.append(context)
        page = context.new_page()
        page.set_default_timeout(10_000)
        page.on("console", lambda m: "Content Security Policy" in m.text and blocked.append(m.text))
        return page

    blocked = []  # what the pages' Content-Security-Policy refused: a page relying on it is broken
    yield open_page
    failed = getattr(request.node, "rep_call", None) is not None and request.node.rep_call.failed
    for i, context in enumerate(contexts):
        if failed:
            for j, page in enumerate(context.pages):
                shot(page, f"FAILED-{request.node.name}-{i}-{j}")
        context.close()
    assert not blocked, blocked


def shot(page, name: str) -> Path:
    """Save a screenshot under artifacts/screenshots/ (the folder the README names)."""
    SCREENSHOTS.mkdir(parents=True, exist_ok=True)
    path = SCREENSHOTS / f"{name}.png"
    page.screenshot(path=str(path), full_page=True)
    return path


@pytest.hookimpl(hookwrapper=True)
def pytest_runtest_makereport(item, call):
    outcome = yield
    report = outcome.get_result()
    setattr(item, f"rep_{report.when}", report)


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


@pytest.fixture
def start_web(db_url, redis_url, telegram_server):
    """`start_web(n, meanwhile)`: n gunicorn web processes (gthread) on the test database and
    Redis; `meanwhile()` runs while they boot; answers their base URLs once each answers
    /healthz. Each runs in its own process group, stopped after the test."""
    procs = []

    def launch():
        port = _free_port()
        env = {**os.environ, "DATABASE_URL": db_url, "REDIS_URL": redis_url,
               "TELEGRAM_API_BASE": telegram_server.url, "CHATFLOW_EVENTS_KEEPALIVE_SECONDS": "0.5"}
        env.pop("CHATFLOW_BOOTSTRAP_ADMIN_TOKEN", None)
        log = tempfile.TemporaryFile()
        # --no-control-socket: gunicorn's control socket is one path per user, not per process
        proc = subprocess.Popen([str(ROOT / ".venv" / "bin" / "gunicorn"), "-k", "gthread", "--threads", "8",
                                 "-w", "1", "-b", f"127.0.0.1:{port}", "--graceful-timeout", "3",
                                 "--no-control-socket", "app:create_app()"],
                                env=env, cwd=ROOT, stdout=log, stderr=subprocess.STDOUT, start_new_session=True)
        procs.append((proc, log))
        return proc, log, f"http://127.0.0.1:{port}"

    def serving(proc, log, base) -> str:
        def up():
            if proc.poll() is not None:
                return True
            try:
                return requests.get(f"{base}/healthz", timeout=5).status_code == 200
            except requests.RequestException:  # not listening yet, or its worker still booting
                return False
        wait_for(up, timeout=30, interval=0.1, message=f"gunicorn on {base} to answer /healthz")
        if proc.poll() is not None:
            log.seek(0)
            raise AssertionError(f"gunicorn exited: {log.read().decode(errors='replace')[-3000:]}")
        return base

    def start(count: int = 1, meanwhile=None) -> list[str]:
        launched = [launch() for _ in range(count)]  # they boot side by side
        if meanwhile is not None:
            meanwhile()
        return [serving(*one) for one in launched]

    yield start
    for proc, _ in procs:
        if proc.poll() is None:
            os.killpg(proc.pid, signal.SIGTERM)
    for proc, log in procs:
        try:
            proc.wait(timeout=10)
        except subprocess.TimeoutExpired:
            os.killpg(proc.pid, signal.SIGKILL)
            proc.wait()
        log.close()
