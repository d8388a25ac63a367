"""Shared by the benches: a throwaway PostgreSQL database, the app on it, figures.

Each bench drops and creates its own database on 127.0.0.1:5432 (user postgres) and
drops it again at the end; the `test` database is never touched.
"""
import os
import platform
import statistics
import subprocess
import sys
from contextlib import contextmanager
from pathlib import Path

import psycopg

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))
PG = dict(host="127.0.0.1", port=5432, user="postgres")
LIFECYCLE = ROOT / "processes" / "ChatLifecycle.bpmn"


def _admin():
    return psycopg.connect(dbname="postgres", autocommit=True, **PG)


def recreate(name: str) -> str:
    assert name != "test" and name.startswith("chatflow_bench"), name
    with _admin() as conn:
        conn.execute(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')
        conn.execute(f'CREATE DATABASE "{name}"')
    url = f"postgresql+psycopg://{PG['user']}@{PG['host']}:{PG['port']}/{name}"
    from app.migrate import upgrade
    upgrade(url)
    return url


def drop(name: str) -> None:
    assert name != "test" and name.startswith("chatflow_bench"), name
    with _admin() as conn:
        conn.execute(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')


@contextmanager
def bench_database(name: str, keep: bool = False):
    url = recreate(name)
    try:
        yield url
    finally:
        if not keep:
            drop(name)  # WITH (FORCE): the bench's own pooled connections do not block it


def make_app(url: str):
    """The app on `url` with the embedded job queue NOT started: no job or sweep runs behind the bench."""
    from app import create_app
    return create_app({"SQLALCHEMY_DATABASE_URI": url, "REDIS_URL": None, "AUTO_MIGRATE": False,
                       "BOOTSTRAP_ADMIN_TOKEN": None, "LOG_LEVEL": "WARNING"}, start_jobs=False)


def machine() -> str:
    cpu = "?"
    try:
        for line in open("/proc/cpuinfo"):
            if line.startswith("model name"):
                cpu = line.split(":", 1)[1].strip()
                break
    except OSError:
        pass
    load = " ".join(f"{x:.2f}" for x in os.getloadavg())
    try:
        pg = subprocess.run(["psql", "-h", PG["host"], "-U", PG["user"], "-Atc", "show server_version"],
                            capture_output=True, text=True, timeout=5).stdout.strip()
    except Exception:
        pg = "?"
    return (f"nproc={os.cpu_count()} cpu={cpu!r} python={platform.python_version()} "
            f"postgresql={pg} loadavg(1/5/15)={load}")


def pct(values, p: float) -> float:
    """The p-th percentile (nearest rank) of `values`."""
    s = sorted(values)
    if not s:
        return float("nan")
    k = max(0, min(len(s) - 1, int(round(p / 100 * len(s) + 0.5)) - 1))
    return s[k]


def median(values) -> float:
    return statistics.median(values) if values else float("nan")
