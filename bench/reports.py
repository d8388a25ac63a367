"""Reports bench: how long the reports take on a quarter year of history, and that no report
reads all of `chat_events` or `messages` (every query plan reaches them through an index).

    .venv/bin/python bench/reports.py            # ~1-2 min; --chats N for more or less history

Fills a throwaway PostgreSQL database (`chatflow_bench_reports`) with SQL alone: 2 queues and
channels, 50 operators and --chats chats spread evenly over 90 days, each with the history the
chat service records (created, offered, accepted, completed: 4 events) and 4 messages (client,
two replies, client again). Then answers, through the app, the overview, queues, operators and
timeline reports for one day (hour buckets, in Europe/Berlin), a week and 30 days (day buckets),
each 3 times, and prints the median; then EXPLAINs every statement the one-day reports ran and
checks that none scans `chat_events` or `messages` sequentially. Exit code 0 = the check passed.
"""
import argparse
import statistics
import sys
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))
import _pg  # noqa: E402

from sqlalchemy import event, text  # noqa: E402

DAYS = 90
TOKEN = "bench-reports-admin"
REPORTS = ("overview", "queues", "operators", "timeline")

FILL = """
INSERT INTO queues (id, name, routing_rule, lifecycle_process, created_at)
  VALUES (1, 'Sales', 'least_busy', 'ChatLifecycle', now()), (2, 'Support', 'all', 'ChatLifecycle', now());
INSERT INTO channels (id, provider, name, active, queue_id, created_at)
  VALUES (1, 'telegram', 'Sales bot', true, 1, now()), (2, 'facebook', 'Support page', true, 2, now());
INSERT INTO users (id, login, name, permissions, created_at, status, chats_in_work, chats_offered)
  SELECT 1000 + g, 'op' || g, 'Operator ' || g, '[]', now(), 'active', 0, 0 FROM generate_series(1, 50) g;
INSERT INTO queue_operators (queue_id, user_id) SELECT 1 + g % 2, 1000 + g FROM generate_series(1, 50) g;
INSERT INTO contacts (id, name, created_at) SELECT g, 'client ' || g, now() FROM generate_series(1, :chats) g;
CREATE TEMP TABLE t AS SELECT g AS id, 1 + g % 2 AS q, 1001 + g % 50 AS op,
  now() - interval '90 days' + g * (interval '90 days' / :chats) AS opened FROM generate_series(1, :chats) g;
INSERT INTO chats (id, channel_id, contact_id, queue_id, state, address, operator_id, created_at, accepted_at,
                   completed_at, completion_reason)
  SELECT id, q, id, q, 'completed', 'x', op, opened, opened + (id % 120) * interval '1 second',
         opened + (id % 120 + 300 + id % 1800) * interval '1 second', 'operator' FROM t;
INSERT INTO chat_events (chat_id, at, event, details)
  SELECT id, opened, 'created', json_build_object('queue_id', q) FROM t
  UNION ALL SELECT id, opened + interval '3 seconds', 'offered', json_build_object('operator_id', op) FROM t
  UNION ALL SELECT id, opened + (id % 120) * interval '1 second', 'accepted', json_build_object('operator_id', op) FROM t
  UNION ALL SELECT id, opened + (id % 120 + 300 + id % 1800) * interval '1 second', 'completed',
                   json_build_object('reason', 'operator') FROM t;
INSERT INTO messages (channel_id, contact_id, chat_id, direction, text, status, attempts, created_at, kind)
  SELECT q, id, id, 'in', 'hello', 'received', 0, opened, 'text' FROM t
  UNION ALL SELECT q, id, id, 'out', 'hi', 'sent', 1, opened + (id % 120 + 40) * interval '1 second', 'text' FROM t
  UNION ALL SELECT q, id, id, 'in', 'thanks', 'received', 0, opened + (id % 120 + 90) * interval '1 second', 'text'
            FROM t
  UNION ALL SELECT q, id, id, 'out', 'bye', 'sent', 1, opened + (id % 120 + 200) * interval '1 second', 'text' FROM t;
SELECT setval('chats_id_seq', :chats); SELECT setval('contacts_id_seq', :chats);
ANALYZE;
"""


def parse_args():
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--chats", type=int, default=100_000, help="chats over the 90 days")
    p.add_argument("--database", default="chatflow_bench_reports")
    p.add_argument("--keep-database", action="store_true")
    return p.parse_args()


def main() -> int:
    args = parse_args()
    with _pg.bench_database(args.database, keep=args.keep_database) as url:
        from app import create_app
        from app.extensions import db
        app = create_app({"SQLALCHEMY_DATABASE_URI": url, "REDIS_URL": None, "AUTO_MIGRATE": False,
                          "BOOTSTRAP_ADMIN_TOKEN": TOKEN}, start_jobs=False)
        started = time.monotonic()
        with app.app_context():
            with db.engine.begin() as conn:
                for statement in FILL.replace(":chats", str(args.chats)).split(";"):
                    if statement.strip():
                        conn.execute(text(statement))
            counts = {t: db.session.scalar(text(f"SELECT count(*) FROM {t}")) for t in ("chats", "chat_events",
                                                                                       "messages")}
            db.session.remove()
        print(f"filled in {time.monotonic() - started:.1f} s: {counts}")
        client, auth = app.test_client(), {"Authorization": f"Bearer {TOKEN}"}
        with app.app_context():
            last = db.session.scalar(text("SELECT max(created_at) FROM chats"))
            db.session.remove()
        day = (last.date()).isoformat()
        periods = {"1 day, hours, Europe/Berlin": f"from={day}&to={day}T23:59:59&tz=Europe/Berlin",
                   "7 days, days": f"from={(last.date().fromordinal(last.date().toordinal() - 6)).isoformat()}"
                                   f"&to={day}&bucket=day",
                   "30 days, days": f"from={(last.date().fromordinal(last.date().toordinal() - 29)).isoformat()}"
                                    f"&to={day}&bucket=day"}
        print(f"\n{'period':32} " + " ".join(f"{r:>10}" for r in REPORTS) + "   (median of 3, ms)")
        for label, query in periods.items():
            times = []
            for report in REPORTS:
                runs = []
                for _ in range(3):
                    t0 = time.perf_counter()
                    response = client.get(f"/api/reports/{report}?{query}", headers=auth)
                    runs.append((time.perf_counter() - t0) * 1000)
                    assert response.status_code == 200, response.get_data(as_text=True)[:300]
                times.append(statistics.median(runs))
            print(f"{label:32} " + " ".join(f"{t:>10.1f}" for t in times))
        opened = client.get(f"/api/reports/overview?{periods['30 days, days']}", headers=auth).get_json()["opened"]
        print(f"\n30 days: {opened} chats opened")
        return 0 if explain(app, client, auth, periods["1 day, hours, Europe/Berlin"]) else 1


def explain(app, client, auth, query) -> bool:
    """EXPLAIN every statement the one-day reports ran; no sequential scan of the big tables."""
    from app.extensions import db
    statements = []
    with app.app_context():
        engine = db.engine

        def seen(conn, cursor, statement, parameters, context, executemany):
            if statement.lstrip().upper().startswith("SELECT"):
                statements.append((statement, parameters))

        event.listen(engine, "before_cursor_execute", seen)
        try:
            for report in REPORTS:
                client.get(f"/api/reports/{report}?{query}", headers=auth)
        finally:
            event.remove(engine, "before_cursor_execute", seen)
        full_scans = []
        with engine.connect() as conn:
            for statement, parameters in statements:
                plan = "\n".join(r[0] for r in conn.exec_driver_sql("EXPLAIN " + statement, parameters))
                full_scans += [line.strip() for line in plan.splitlines()
                               if "Seq Scan on chat_events" in line or "Seq Scan on messages" in line]
        db.session.remove()
    ok = not full_scans
    print(f"{'PASS' if ok else 'FAIL'}: {len(statements)} statements of the one-day reports, "
          f"sequential scans of chat_events or messages: {full_scans or 'none'}")
    return ok


if __name__ == "__main__":
    sys.exit(main())
