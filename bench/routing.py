"""Routing bench: least-busy selection with 1,000 operators and 100,000 chats
in work, on PostgreSQL; goal <= 5 ms per decision.

    .venv/bin/python bench/routing.py            # --help for the knobs; ~30 s

Bulk-inserts with SQL (generate_series): one least_busy queue served by all operators (70 %
directly, 30 % through a role, so both arms of the membership UNION are exercised), 10 % of
them inactive, 100,000 contacts and 100,000 chats `in_work` spread unevenly over the operators
(Pareto weights), and the users' counters (chats_in_work, chats_offered, last_accepted_at) set
from the real chats so they are consistent. SimultaneousChats = 100 (its maximum), so some
operators are full and the query has to skip them.

Then times `app.chats.routing.least_busy_candidates(queue_id, limit)` inside an app context
(a new session per decision, as a request has) for N decisions; after each decision the chosen
operator gets one more offered chat (untimed UPDATE + commit), so the answer moves as it does
in production. Prints p50/p90/p99/max and EXPLAIN (ANALYZE, BUFFERS) of the exact SQL.
"""
import argparse
import sys
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))
import _pg  # noqa: E402

from sqlalchemy import text  # noqa: E402


def parse_args():
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--operators", type=int, default=1000)
    p.add_argument("--chats", type=int, default=100_000)
    p.add_argument("--decisions", type=int, default=1000)
    p.add_argument("--limit", type=int, default=100, help="SimultaneousChats")
    p.add_argument("--database", default="chatflow_bench_routing")
    p.add_argument("--keep-database", action="store_true")
    return p.parse_args()


def populate(conn, args):
    """Everything with set-based SQL; returns the queue id."""
    ops, chats = args.operators, args.chats
    role_cut = int(ops * 0.7)
    conn.execute(text("INSERT INTO settings (code, value, updated_at) VALUES ('SimultaneousChats', CAST(:v AS json), now())"),
                 {"v": str(args.limit)})
    qid = conn.execute(text("INSERT INTO queues (name, routing_rule, lifecycle_process, created_at) "
                            "VALUES ('bench', 'least_busy', 'ChatLifecycle', now()) RETURNING id")).scalar()
    # other queues with a few operators each, so queue_operators is not just this queue
    conn.execute(text("INSERT INTO queues (name, routing_rule, lifecycle_process, created_at) "
                      "SELECT 'other ' || g, 'least_busy', 'ChatLifecycle', now() FROM generate_series(1, 20) g"))
    ch = conn.execute(text("INSERT INTO channels (provider, name, active, queue_id, token, webhook_secret, created_at) "
                           "VALUES ('telegram', 'bench', true, :q, '1:x', 's', now()) RETURNING id"), {"q": qid}).scalar()
    conn.execute(text("""
        INSERT INTO users (login, name, permissions, created_at, status, chats_in_work, chats_offered)
        SELECT 'op' || g, 'Operator ' || g, '[]', now(), CASE WHEN g % 10 = 0 THEN 'inactive' ELSE 'active' END, 0, 0
        FROM generate_series(1, :n) g"""), {"n": ops})
    conn.execute(text("""
        INSERT INTO queue_operators (queue_id, user_id)
        SELECT :q, id FROM users WHERE login LIKE 'op%' AND substr(login, 3)::int <= :cut"""),
                 {"q": qid, "cut": role_cut})
    rid = conn.execute(text("INSERT INTO roles (name, permissions) VALUES ('bench operators', '[]') RETURNING id")).scalar()
    conn.execute(text("""
        INSERT INTO role_members (role_id, user_id)
        SELECT :r, id FROM users WHERE login LIKE 'op%' AND substr(login, 3)::int > :cut"""), {"r": rid, "cut": role_cut})
    conn.execute(text("INSERT INTO queue_operators (queue_id, role_id) VALUES (:q, :r)"), {"q": qid, "r": rid})
    conn.execute(text("""
        INSERT INTO queue_operators (queue_id, user_id)
        SELECT q.id, u.id FROM queues q JOIN users u ON u.login LIKE 'op%' AND substr(u.login, 3)::int % 50 = q.id % 50
        WHERE q.id <> :q"""), {"q": qid})
    conn.execute(text("""
        INSERT INTO contacts (name, created_at) SELECT 'client ' || g, now() FROM generate_series(1, :n) g"""),
                 {"n": chats})
    # Pareto-ish weights: operator k (1-based among active ones) gets chats ~ 1/k^0.6; the
    # assignment draws each chat's operator by inverse CDF over the cumulative weights.
    conn.execute(text("""
        CREATE TEMP TABLE w AS
        SELECT id AS user_id, row_number() OVER (ORDER BY id) AS k FROM users WHERE status = 'active'
          AND login LIKE 'op%'"""))
    conn.execute(text("""
        CREATE TEMP TABLE cw AS
        SELECT user_id, sum(1.0 / power(k, 0.6)) OVER (ORDER BY k) / sum(1.0 / power(k, 0.6)) OVER () AS c FROM w"""))
    conn.execute(text("CREATE INDEX ON cw (c)"))
    conn.execute(text("""
        INSERT INTO chats (channel_id, contact_id, queue_id, state, address, operator_id, created_at, accepted_at)
        SELECT :ch, c.id, :q, 'in_work', c.id::text,
               (SELECT user_id FROM cw WHERE cw.c >= r.x ORDER BY cw.c LIMIT 1),
               now() - interval '1 hour', now() - (random() * interval '1 hour')
        FROM (SELECT id, random() AS x FROM contacts) c JOIN LATERAL (SELECT c.x) r ON true"""),
                 {"ch": ch, "q": qid})
    conn.execute(text("""
        UPDATE users u SET chats_in_work = s.n, last_accepted_at = s.last
        FROM (SELECT operator_id, count(*) AS n, max(accepted_at) AS last FROM chats
              WHERE state = 'in_work' GROUP BY operator_id) s
        WHERE u.id = s.operator_id"""))
    conn.execute(text("ANALYZE"))
    return qid


def stats_line(conn, qid, limit):
    row = conn.execute(text("""
        SELECT count(*) FILTER (WHERE status = 'active'),
               count(*) FILTER (WHERE status = 'active' AND chats_in_work + chats_offered < :l),
               min(chats_in_work), max(chats_in_work), percentile_cont(0.5) WITHIN GROUP (ORDER BY chats_in_work)
        FROM users WHERE login LIKE 'op%'"""), {"l": limit}).one()
    total = conn.execute(text("SELECT count(*) FROM chats WHERE state = 'in_work'")).scalar()
    served = conn.execute(text("SELECT count(*) FROM queue_operators WHERE queue_id = :q"), {"q": qid}).scalar()
    return (f"chats in work {total}; active operators {row[0]}, eligible (in work + offered < {limit}) {row[1]}; "
            f"chats_in_work per operator min/median/max {row[2]}/{row[4]:.0f}/{row[3]}; "
            f"queue_operators rows for the queue {served} (one is the role)")


def main():
    args = parse_args()
    started = time.monotonic()
    print("machine:", _pg.machine())
    with _pg.bench_database(args.database, keep=args.keep_database) as url:
        app = _pg.make_app(url)
        from app.chats import routing
        from app.extensions import db
        with app.app_context():
            t = time.monotonic()
            with db.engine.begin() as conn:
                qid = populate(conn, args)
            print(f"populated in {time.monotonic() - t:.1f}s")
            with db.engine.connect() as conn:
                print(stats_line(conn, qid, args.limit))
            # warm-up (statement cache, pool)
            for _ in range(20):
                routing.least_busy_candidates(qid, args.limit)
                db.session.remove()
            times, empty = [], 0
            for _ in range(args.decisions):
                t = time.perf_counter()
                candidates = routing.least_busy_candidates(qid, args.limit)
                times.append(time.perf_counter() - t)
                db.session.remove()
                if not candidates:
                    empty += 1
                    continue
                db.session.execute(text("UPDATE users SET chats_offered = chats_offered + 1 WHERE id = :id"),
                                   {"id": candidates[0].id})
                db.session.commit()
            ms = [x * 1000 for x in times]
            print(f"\n{args.decisions} decisions (least_busy_candidates, new session each, chosen gets +1 offered "
                  f"after each): p50 {_pg.median(ms):.3f} ms, p90 {_pg.pct(ms, 90):.3f} ms, "
                  f"p99 {_pg.pct(ms, 99):.3f} ms, max {max(ms):.3f} ms; empty answers {empty}")
            print(f"goal p99 <= 5 ms per decision: {'MET' if _pg.pct(ms, 99) <= 5 else 'NOT MET'} "
                  f"(p50 {'<=' if _pg.median(ms) <= 5 else '>'} 5 ms)")
            with db.engine.connect() as conn:
                print(stats_line(conn, qid, args.limit))
            # The exact statement the function runs, with its parameters inlined.
            from sqlalchemy import select
            from app.models import User
            ops = routing.operator_ids(qid)
            query = (select(User).where(User.id.in_(select(ops.c[0])), User.status == "active",
                                        User.chats_in_work + User.chats_offered < args.limit)
                     .order_by(User.chats_in_work, User.last_accepted_at.asc().nulls_first(), User.id)
                     .limit(routing.CANDIDATES_RECORDED))
            sql = str(query.compile(dialect=db.engine.dialect, compile_kwargs={"literal_binds": True}))
            print("\nEXPLAIN (ANALYZE, BUFFERS) of:\n" + sql + "\n")
            with db.engine.connect() as conn:
                for (line,) in conn.execute(text("EXPLAIN (ANALYZE, BUFFERS) " + sql)):
                    print("   ", line)
            db.session.remove()
            db.engine.dispose()
    print(f"\nwall {time.monotonic() - started:.1f}s")


if __name__ == "__main__":
    main()
