"""The production shape for the HTTP and timer benches, built on bench/load.py's helpers.

    with stack("chatflow_bench_http", redis_db=7) as s:
        s.api.call(...); s.base; s.dsn; s.fake; s.red

Drops and creates the database (127.0.0.1:5432, user postgres), flushes the Redis DB, runs
`chatflow db upgrade` and deploys processes/ChatLifecycle.bpmn, starts the fake Telegram Bot API
in this process, `chatflow worker` processes and (optionally) gunicorn, each in its own process
group; on exit (whatever happened) stops exactly those groups, the fake, flushes the Redis DB and
drops the database. Everything listens on 127.0.0.1 only.
"""
import json
import os
import secrets
import shutil
import sys
import tempfile
import time
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path

import psycopg
import redis

BENCH = Path(__file__).resolve().parent
if str(BENCH) not in sys.path:
    sys.path.insert(0, str(BENCH))
from load import BIN, BOT_TOKEN, PG, Api, Processes, free_port, run, session, wait_until  # noqa: E402,F401
from load import FakeTelegram, rq_busy, rq_failed  # noqa: E402,F401  (re-exported)


@dataclass
class Stack:
    base: str | None
    api: Api | None
    dsn: str
    redis_url: str
    red: redis.Redis
    fake: FakeTelegram
    procs: Processes
    logdir: Path
    env: dict
    admin_token: str


@contextmanager
def stack(database: str, redis_db: int, web_workers: int = 2, job_workers: int = 2, extra_env: dict | None = None,
          keep_database: bool = False, label: str = "bench", web_args: tuple = ()):
    assert database.startswith("chatflow_bench") and database != "test"
    logdir = Path(tempfile.mkdtemp(prefix=f"chatflow_{label}_"))
    procs = Processes(logdir)
    dsn = f"postgresql://{PG['user']}@{PG['host']}:{PG['port']}/{database}"
    redis_url = f"redis://127.0.0.1:6379/{redis_db}"
    admin_token = secrets.token_urlsafe(24)
    pg_env = {**os.environ, "PGHOST": PG["host"], "PGPORT": PG["port"], "PGUSER": PG["user"]}
    fake = FakeTelegram(tokens=(BOT_TOKEN,))
    fake_started = False
    red = redis.Redis.from_url(redis_url)
    try:
        run(["dropdb", "--if-exists", "--force", database], env=pg_env)
        run(["createdb", database], env=pg_env)
        red.flushdb()
        fake.__enter__()
        fake_started = True
        env = {**os.environ, "DATABASE_URL": dsn, "REDIS_URL": redis_url,
               "CHATFLOW_BOOTSTRAP_ADMIN_TOKEN": admin_token, "TELEGRAM_API_BASE": fake.url,
               "NO_PROXY": "127.0.0.1,localhost", "no_proxy": "127.0.0.1,localhost", "PYTHONUNBUFFERED": "1",
               # The benches' operators announce their presence once (setup_queue): it lasts the run.
               "CHATFLOW_PRESENCE_HEARTBEAT_SECONDS": "3600",
               **(extra_env or {})}
        for var in ("HTTP_PROXY", "HTTPS_PROXY", "http_proxy", "https_proxy", "ALL_PROXY", "all_proxy",
                    "CHATFLOW_RQ_QUEUE"):
            env.pop(var, None)
        run([str(BIN / "chatflow"), "db", "upgrade"], env=env)
        run([str(BIN / "chatflow"), "deploy", "processes/ChatLifecycle.bpmn"], env=env)
        for i in range(job_workers):
            procs.start(f"worker{i + 1}", [str(BIN / "chatflow"), "worker"], env)
        base = api = None
        if web_workers:
            port = free_port()
            base = f"http://127.0.0.1:{port}"
            procs.start("gunicorn", [str(BIN / "gunicorn"), "-w", str(web_workers), "-b", f"127.0.0.1:{port}",
                                     "--timeout", "60", *web_args, "app:create_app()"], env)
            wait_until(lambda: session().get(base + "/healthz", timeout=5).status_code == 200, 60,
                       "/healthz to answer 200", procs)
            api = Api(base, admin_token)
        yield Stack(base, api, dsn, redis_url, red, fake, procs, logdir, env, admin_token)
    finally:
        procs.stop()
        if fake_started:
            fake.__exit__(None, None, None)
        try:
            red.flushdb()
        except redis.RedisError:
            pass
        red.close()
        if not keep_database:
            run(["dropdb", "--if-exists", "--force", database], env=pg_env, check=False)


def setup_queue(s: Stack, *, rule: str, operators: int, simultaneous: int, accept_timeout_minutes: float,
                completion_timeout_minutes: float | None) -> dict:
    """Settings, one queue with `operators` operators (active and present), one Telegram channel, over the API."""
    api = s.api
    for code, value in (("SiteUrl", "https://chat.example.com"), ("SimultaneousChats", simultaneous),
                        ("OmniChatOperatorAcceptChatTimeout", accept_timeout_minutes)):
        api.call("PUT", f"/api/settings/{code}", {"value": value})
    queue = api.call("POST", "/api/queues", {"name": "Bench", "routing_rule": rule,
                                             "completion_timeout_minutes": completion_timeout_minutes}).json()
    ops = []
    for i in range(operators):
        user = api.call("POST", "/api/users", {"login": f"op{i + 1:04d}", "name": f"Operator {i + 1}"}).json()
        api.call("POST", f"/api/queues/{queue['id']}/operators", {"user_id": user["id"]})
        operator = Api(s.base, user["token"])  # new users start inactive and absent: only the present get chats
        operator.call("PUT", "/api/me/status", {"status": "active"})
        operator.call("PUT", "/api/me/presence")
        ops.append((user["id"], user["token"]))
    channel = api.call("POST", "/api/channels", {"provider": "telegram", "name": "Bench bot", "token": BOT_TOKEN,
                                                 "queue_id": queue["id"], "active": True}).json()
    with psycopg.connect(s.dsn, autocommit=True) as conn:
        secret = conn.execute("select webhook_secret from channels where id = %s", (channel["id"],)).fetchone()[0]
    return {"queue": queue, "operators": ops, "channel": channel, "secret": secret}


def gthread_args(threads: int) -> tuple:
    """gunicorn's arguments for `threads` gthread threads per worker (they keep each client's
    connection open); 0: sync workers (gunicorn's default)."""
    return ("-k", "gthread", "--threads", str(threads)) if threads else ()


TICK = os.sysconf("SC_CLK_TCK")
BENCH_CLIENT = "bench_client"  # application_name of the benches' own database connections


def cpu_seconds(pids) -> dict:
    """pid -> utime + stime in seconds (a process gone is left out)."""
    out = {}
    for pid in pids:
        try:
            fields = open(f"/proc/{pid}/stat").read().rsplit(")", 1)[1].split()
        except OSError:
            continue
        out[pid] = (int(fields[11]) + int(fields[12])) / TICK
    return out


def our_processes(s: Stack) -> dict:
    """The pids of each part of the stack: gunicorn (master and workers), the chatflow workers, the
    database's backends serving them, this process (clients, their database polling, the fake Bot API)."""
    groups = {proc.pid: name for name, proc, _ in s.procs.children}
    parts = {"web": [], "workers": [], "postgresql": [], "bench": [os.getpid()]}
    for entry in os.listdir("/proc"):
        if entry.isdigit():
            try:
                pgrp = int(open(f"/proc/{entry}/stat").read().rsplit(")", 1)[1].split()[2])
            except OSError:
                continue
            if pgrp in groups:
                parts["web" if groups[pgrp] == "gunicorn" else "workers"].append(int(entry))
    with psycopg.connect(s.dsn, autocommit=True) as conn:
        parts["postgresql"] = [r[0] for r in conn.execute(
            "select pid from pg_stat_activity where datname = current_database() and pid <> pg_backend_pid() "
            "and application_name <> %s", (BENCH_CLIENT,))]
    return parts


class CpuMeter:
    """CPU seconds each part of the stack (our_processes) used between start() and stop(); the
    database's backends opened meanwhile count from zero. Read from /proc: it holds on a machine
    shared with others, where the wall-clock figures do not."""

    def __init__(self, s: Stack):
        self.s, self.parts, self.before = s, {}, {}

    def start(self) -> None:
        self.parts = our_processes(self.s)
        self.before = {part: cpu_seconds(pids) for part, pids in self.parts.items()}

    def stop(self) -> dict:
        parts = {**self.parts, "postgresql": our_processes(self.s)["postgresql"]}
        return {part: sum(now - self.before[part].get(pid, 0) for pid, now in cpu_seconds(pids).items())
                for part, pids in parts.items()}


def traceback_counts(logdir: Path) -> dict:
    return {p.name: n for p in logdir.glob("*.log") if (n := p.read_text(errors="replace").count("Traceback"))}


def wait_rq_idle(s: Stack, timeout: float = 60, horizon: float = 5) -> float:
    """Wait until nothing is queued, running or due within `horizon` s; returns the seconds waited."""
    t0 = time.monotonic()
    wait_until(lambda: rq_busy(s.red) == 0, timeout, "the RQ queue to drain", s.procs, every=0.05)
    return time.monotonic() - t0


def finish(logdir: Path | None, failures: list[str]) -> int:
    """A bench's exit code: 1 with what failed (its logs kept for a look), else 0 and the logs removed."""
    if failures:
        print("\nFAILED: " + "; ".join(failures) + (f"; logs in {logdir}" if logdir else ""))
        return 1
    if logdir is not None:
        shutil.rmtree(logdir, ignore_errors=True)
    print("\nOK")
    return 0


def dumps(obj) -> str:
    return json.dumps(obj, default=str)
