"""HTTP bench: client messages, accepts and replies over HTTP against the
production shape, at a few concurrency levels. (Not named bench/http.py: that file would shadow
the standard `http` package for every script run from bench/, load.py included.)

    .venv/bin/python bench/http_load.py            # --help for the knobs

gunicorn (2 gthread workers × 4 threads, which keep each client's connection open) + 2 `chatflow
worker` on PostgreSQL and Redis (DB 7), the fake Telegram Bot API in this process
(bench/_servers.py, built on bench/load.py). Each of C virtual clients runs
conversations back to back, with no think time (a closed loop: the load the machine sustains):

    client_message  POST /webhooks/telegram/{channel}  (first message of a new contact: new chat)
                    ... the bench waits (polling the database) until a worker started the chat's
                    lifecycle, so the chat can be accepted: "start lag", not an HTTP event
    accept          POST /api/chats/{id}/accept        (as one of the queue's operators)
    R times:  reply POST /api/chats/{id}/messages      (stored pending; a worker sends it to the fake)
              client_message  POST /webhooks/...       (a message into the open chat)
    complete        POST /api/chats/{id}/complete

Latency is from sending the request to the whole answer, per kind; events/s counts every timed
request of the level. A level ends after --seconds or --conversations per client, then the bench
waits for the RQ queue to drain before the next level. Only 127.0.0.1 traffic. Exit 0 when every
request of every level was answered as expected and every reply reached the fake Bot API.
"""
import os
import sys

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
import argparse  # noqa: E402
import threading  # noqa: E402
import time  # noqa: E402
from collections import Counter, defaultdict  # noqa: E402

import psycopg  # noqa: E402
import requests  # noqa: E402

import _servers  # noqa: E402
from _pg import machine, pct  # noqa: E402
from load import session, update  # noqa: E402

KINDS = ("client_message", "accept", "reply", "complete")


def parse_args():
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--levels", default="1,2,4,8,16", help="concurrent clients per level, comma separated")
    p.add_argument("--seconds", type=float, default=20, help="time bound of a level")
    p.add_argument("--conversations", type=int, default=200, help="count bound per client and level")
    p.add_argument("--replies", type=int, default=3, help="operator replies (each followed by a client message)")
    p.add_argument("--rule", choices=("all", "least_busy"), default="all")
    p.add_argument("--operators", type=int, default=16)
    p.add_argument("--simultaneous-chats", type=int, default=100)
    p.add_argument("--completion-timeout", type=float, default=60,
                   help="queue completion timeout in minutes (each reply re-arms it); 0 = none")
    p.add_argument("--web-workers", type=int, default=2)
    p.add_argument("--web-threads", type=int, default=4, help="gunicorn gthread threads per worker; 0 = sync workers")
    p.add_argument("--job-workers", type=int, default=2)
    p.add_argument("--goal-ms", type=float, default=50)
    p.add_argument("--database", default="chatflow_bench_http")
    p.add_argument("--redis-db", type=int, default=7)
    p.add_argument("--keep-database", action="store_true")
    return p.parse_args()


class Level:
    def __init__(self):
        self.lock = threading.Lock()
        self.lat = defaultdict(list)          # kind -> seconds
        self.start_lag: list[float] = []      # webhook answered -> lifecycle started (chat acceptable)
        self.bad = Counter()                  # (kind, status) not as expected
        self.examples: list[str] = []
        self.conversations = 0
        self.replies = 0

    def add(self, kind, seconds):
        with self.lock:
            self.lat[kind].append(seconds)

    def fail(self, kind, what):
        with self.lock:
            self.bad[(kind, what)] += 1
            if len(self.examples) < 5:
                self.examples.append(f"{kind}: {what}")


def timed(level: Level, kind: str, method: str, url: str, expect: int, **kw) -> requests.Response | None:
    t0 = time.perf_counter()
    try:
        r = session().request(method, url, timeout=30, **kw)
    except requests.RequestException as e:
        level.fail(kind, type(e).__name__)
        return None
    level.add(kind, time.perf_counter() - t0)
    if r.status_code != expect:
        level.fail(kind, f"{r.status_code} {r.text[:120]}")
        return None
    return r


def client(args, s, cfg, level: Level, index: int, deadline: float, next_user, stop_all: threading.Event):
    hook = f"{s.base}/webhooks/telegram/{cfg['channel']['id']}"
    hook_headers = {"X-Telegram-Bot-Api-Secret-Token": cfg["secret"]}
    ops = cfg["operators"]
    op_by_id = dict(ops)
    conn = psycopg.connect(s.dsn, autocommit=True, application_name=_servers.BENCH_CLIENT)  # its CPU: the bench's
    try:
        for n in range(args.conversations):
            if time.monotonic() > deadline or stop_all.is_set():
                break
            user_id, update_id = next_user()
            r = timed(level, "client_message", "POST", hook, 200, headers=hook_headers,
                      json=update(update_id, user_id, f"hello from {user_id}", first_name=f"C{user_id}"))
            if r is None:
                continue
            t_answered = time.perf_counter()
            row = None
            wait_end = time.monotonic() + 30
            while time.monotonic() < wait_end:
                row = conn.execute("select c.id, c.state, c.offered_to_id from contact_identities ci join chats c "
                                   "on c.contact_id = ci.contact_id and c.channel_id = ci.channel_id "
                                   "where ci.channel_id = %s and ci.external_id = %s and c.state <> 'completed' "
                                   "and c.process_instance_id is not null",
                                   (cfg["channel"]["id"], str(user_id))).fetchone()
                if row and (args.rule == "all" or row[1] in ("offered", "queued")):
                    break
                time.sleep(0.005)
            else:
                level.fail("start", "lifecycle not started within 30 s")
                continue
            level.start_lag.append(time.perf_counter() - t_answered)
            chat_id, state, offered_to = row
            if args.rule == "least_busy":
                if state != "offered":
                    level.fail("accept", f"chat {chat_id} {state}, not offered")
                    continue
                op_id, token = offered_to, op_by_id[offered_to]
            else:
                op_id, token = ops[index % len(ops)]
            auth = {"Authorization": f"Bearer {token}"}
            if timed(level, "accept", "POST", f"{s.base}/api/chats/{chat_id}/accept", 200, headers=auth) is None:
                continue
            for i in range(args.replies):
                if timed(level, "reply", "POST", f"{s.base}/api/chats/{chat_id}/messages", 201, headers=auth,
                         json={"text": f"reply {i} to {user_id}"}) is not None:
                    with level.lock:
                        level.replies += 1
                update_id += 1
                timed(level, "client_message", "POST", hook, 200, headers=hook_headers,
                      json=update(update_id, user_id, f"message {i} from {user_id}", first_name=f"C{user_id}"))
            timed(level, "complete", "POST", f"{s.base}/api/chats/{chat_id}/complete", 200, headers=auth)
            with level.lock:
                level.conversations += 1
    except Exception as e:  # noqa: BLE001 - reported, the level goes on
        level.fail("client", f"{type(e).__name__}: {e}")
    finally:
        conn.close()


def fmt(values) -> str:
    if not values:
        return "—"
    return f"{pct(values, 50) * 1000:.1f} / {pct(values, 99) * 1000:.1f}"


def main() -> int:
    args = parse_args()
    levels = [int(x) for x in args.levels.split(",") if x.strip()]
    print(f"chatflow HTTP bench: levels {levels} concurrent clients, ≤ {args.seconds:.0f} s and "
          f"≤ {args.conversations} conversations per client per level, {args.replies} replies per conversation, "
          f"rule {args.rule}, {args.operators} operators × SimultaneousChats {args.simultaneous_chats}, "
          f"gunicorn -w {args.web_workers} {' '.join(_servers.gthread_args(args.web_threads)) or '(sync)'}, {args.job_workers} chatflow workers")
    print(f"machine: {machine()}")
    results = []
    failures = []
    counter = {"user": 5_000_000, "update": 50_000_000}
    counter_lock = threading.Lock()

    def next_user():
        with counter_lock:
            counter["user"] += 1
            counter["update"] += 100
            return counter["user"], counter["update"]

    with _servers.stack(args.database, args.redis_db, web_workers=args.web_workers, job_workers=args.job_workers,
                        keep_database=args.keep_database, label="bench_http", web_args=_servers.gthread_args(args.web_threads)) as s:
        cfg = _servers.setup_queue(s, rule=args.rule, operators=args.operators,
                                   simultaneous=args.simultaneous_chats, accept_timeout_minutes=60,
                                   completion_timeout_minutes=args.completion_timeout or None)
        print(f"up on {s.base}; logs in {s.logdir}")
        # warm-up: every gunicorn worker and chatflow worker parses the spec once
        warm = Level()
        client(argparse.Namespace(**{**vars(args), "conversations": 4}), s, cfg, warm, 0,
               time.monotonic() + 30, next_user, threading.Event())
        _servers.wait_rq_idle(s)
        # baseline: what HTTP + token auth + JSON cost without any write (one client)
        me = []
        for _ in range(200):
            t = time.perf_counter()
            session().get(f"{s.base}/api/me", headers={"Authorization": f"Bearer {cfg['operators'][0][1]}"}, timeout=30)
            me.append(time.perf_counter() - t)
        print(f"baseline GET /api/me (auth, one SELECT, JSON), one client: p50/p99 {fmt(me)} ms")
        sent_before = len(s.fake.sent())
        replies_total = 0
        for c in levels:
            level = Level()
            stop_all = threading.Event()
            meter = _servers.CpuMeter(s)
            meter.start()
            t0 = time.perf_counter()
            deadline = time.monotonic() + args.seconds
            threads = [threading.Thread(target=client, args=(args, s, cfg, level, i, deadline, next_user, stop_all))
                       for i in range(c)]
            for t in threads:
                t.start()
            for t in threads:
                t.join()
            elapsed = time.perf_counter() - t0
            drain = _servers.wait_rq_idle(s, timeout=120)
            cpu = meter.stop()
            replies_total += level.replies
            n_events = sum(len(v) for v in level.lat.values())
            every = [x for v in level.lat.values() for x in v]
            row = {"clients": c, "seconds": elapsed, "events": n_events, "eps": n_events / elapsed,
                   "conversations": level.conversations, "p50": pct(every, 50), "p99": pct(every, 99),
                   "kinds": {k: (len(level.lat[k]), pct(level.lat[k], 50), pct(level.lat[k], 99)) for k in KINDS},
                   "start_lag": (pct(level.start_lag, 50), pct(level.start_lag, 99)), "drain": drain,
                   "bad": dict(level.bad), "load": os.getloadavg()[0], "cpu": cpu}
            results.append(row)
            if level.bad:
                failures.append(f"{c} clients: {dict(level.bad)} e.g. {level.examples}")
            print(f"\n== {c} concurrent clients: {n_events} events in {elapsed:.1f} s = {row['eps']:.0f} events/s, "
                  f"{level.conversations} conversations; all events p50/p99 {fmt(every)} ms; "
                  f"RQ drained {drain:.1f} s after; load {row['load']:.2f}")
            for k in KINDS:
                print(f"   {k:15} n={len(level.lat[k]):5}  p50/p99 {fmt(level.lat[k])} ms  max "
                      f"{max(level.lat[k], default=0) * 1000:.1f} ms")
            print(f"   start lag (webhook answered -> lifecycle started by a worker): p50/p99 {fmt(level.start_lag)} ms")
            per_event = {part: seconds * 1000 / max(n_events, 1) for part, seconds in cpu.items()}
            total = sum(per_event.values())
            print(f"   CPU per event (level and RQ drain): {total:.1f} ms = " + ", ".join(
                f"{part} {ms:.1f}" for part, ms in per_event.items())
                + f"; so {os.cpu_count()} idle CPUs would sustain ~{os.cpu_count() * 1000 / total:.0f} events/s")
            if level.bad:
                print(f"   NOT AS EXPECTED: {dict(level.bad)}; e.g. {level.examples}")
        # every reply must reach the fake Bot API
        _servers.wait_until(lambda: len(s.fake.sent()) - sent_before >= replies_total, 30,
                            "every reply to reach the fake Bot API", s.procs, every=0.1) if replies_total else None
        delivered = len(s.fake.sent()) - sent_before
        with psycopg.connect(s.dsn, autocommit=True) as conn:
            statuses = dict(conn.execute("select status, count(*) from messages where direction = 'out' "
                                         "group by status").fetchall())
            errors = conn.execute("select count(*) from process_instances where state = 'error'").fetchone()[0]
        tracebacks = _servers.traceback_counts(s.logdir)
        failed_jobs = _servers.rq_failed(s.red)
        print(f"\n== replies: {replies_total} sent over the API (+ warm-up), {delivered} reached the fake Bot API; "
              f"outgoing message statuses {statuses}; instances in error {errors}; failed RQ jobs {failed_jobs}; "
              f"tracebacks {tracebacks or 'none'}")
        if delivered < replies_total or statuses.get("pending") or statuses.get("failed"):
            failures.append(f"replies: {delivered}/{replies_total} delivered, {statuses}")
        if errors or failed_jobs or tracebacks:
            failures.append(f"errors {errors}, failed jobs {failed_jobs}, tracebacks {tracebacks}")

    print(f"\n== summary (goal: p99 ≤ {args.goal_ms:.0f} ms)")
    print("| clients | events/s | all p50 / p99 ms | " + " | ".join(f"{k} p50 / p99 ms" for k in KINDS)
          + " | start lag p50 / p99 ms | goal |")
    print("|---|---|---|" + "---|" * len(KINDS) + "---|---|")
    goal_levels = []
    for r in results:
        worst = max((v[2] for v in r["kinds"].values() if v[0]), default=float("inf"))
        ok = worst * 1000 <= args.goal_ms and not r["bad"]
        if ok:
            goal_levels.append(r)
        print(f"| {r['clients']} | {r['eps']:.0f} | {r['p50'] * 1000:.1f} / {r['p99'] * 1000:.1f} | "
              + " | ".join(f"{v[1] * 1000:.1f} / {v[2] * 1000:.1f}" if v[0] else "—" for v in r["kinds"].values())
              + f" | {r['start_lag'][0] * 1000:.0f} / {r['start_lag'][1] * 1000:.0f} | {'met' if ok else 'not met'} |")
    if goal_levels:
        best = max(goal_levels, key=lambda r: r["eps"])
        print(f"\np99 ≤ {args.goal_ms:.0f} ms for every kind holds up to {best['clients']} concurrent clients "
              f"({best['eps']:.0f} events/s); the highest throughput measured: "
              f"{max(r['eps'] for r in results):.0f} events/s")
    else:
        print(f"\np99 ≤ {args.goal_ms:.0f} ms for every kind holds at none of the levels measured")
    return _servers.finish(s.logdir, failures)


if __name__ == "__main__":
    sys.exit(main())
