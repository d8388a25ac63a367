"""Timers bench: 10,000 chats waiting on acceptance timers due within one
minute, 2 `chatflow worker` processes; lag between each timer's due time and the chat's state
change, none lost, none fired twice.

    .venv/bin/python bench/timers.py          # ~6 min; --help for the knobs

The production shape from bench/_servers.py (PostgreSQL database chatflow_bench_timers, Redis DB 8,
2 `chatflow worker` = RQ SimpleWorker + scheduler + the database sweep; one gunicorn worker only
for the setup over the API). N operators, each active, present and SimultaneousChats 1, in queues
of --per-queue (100) operators, each queue with its Telegram channel; least_busy, no completion
timeout: every chat is offered to its own operator and its `acceptance_timeout` timer armed.
One operator per chat because an operator who misses an offer becomes inactive and loses the
other chats offered to them at once (app.chats.lifecycle.offer_timed_out): with several offers
each, most timers would be moved by that withdrawal instead of firing.

Creating 10,000 operators and chats through the API and webhooks would take many minutes, so
--creators processes create them in-process on the same database and Redis with the app's own
code: operators by `accounts.create_user`, `admin.add_operator`, `service.set_status` and
`presence.seen` (what POST /api/users, POST /api/queues/{id}/operators, PUT /api/me/status and
PUT /api/me/presence run); chats by `service.receive` (the webhook's own code: contact, chat,
message), then the body of the start job (`app.jobs.start_chat_lifecycle`) starts the lifecycle,
which routes (offers) the chat and arms the timer; its RQ wake-up is scheduled after commit as
always. Creation takes longer than a minute on a small machine, so to put every due time inside
ONE minute, the creators give chat k the acceptance timeout that makes it due at
T0 + window * k / N (`OmniChatOperatorAcceptChatTimeout` read per chat, as if an admin changed
the setting before each chat; nothing else is changed): the due times are spread evenly over the
window, T0 = chat creation start + --lead seconds.

Before anything is due, the due time of each chat's timer is read from each instance's `next_timer_at`. Lag =
time of the chat's `offer_timed_out` chat event (written in the transaction that moves the chat)
minus that due time. Checks: every chat has exactly one offer_timed_out (none lost, none fired
twice) and was then re-offered to another operator or queued exactly once, and its state agrees.
Every operator misses their offer (nobody accepts) and the others are full: chats end `queued`.
"""
import argparse
import math
import multiprocessing
import os
import signal
import sys
import time
from collections import Counter, defaultdict

import psycopg

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
import _servers  # noqa: E402
from _pg import machine, pct  # noqa: E402


def parse_args():
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--chats", type=int, default=10_000)
    p.add_argument("--window", type=float, default=60, help="seconds over which the due times are spread")
    p.add_argument("--lead", type=float, default=180, help="first due time, seconds after creation starts")
    p.add_argument("--per-queue", type=int, default=100, help="operators (and chats) per queue")
    p.add_argument("--creators", type=int, default=2, help="processes creating operators and chats")
    p.add_argument("--job-workers", type=int, default=2)
    p.add_argument("--sweep-seconds", type=float, default=None,
                   help="CHATFLOW_TIMER_SWEEP_SECONDS for the workers (default: the app's, 5)")
    p.add_argument("--max-wait", type=float, default=120, help="seconds after the last due time to wait")
    p.add_argument("--goal-seconds", type=float, default=2.0)
    p.add_argument("--database", default="chatflow_bench_timers")
    p.add_argument("--redis-db", type=int, default=8)
    p.add_argument("--keep-database", action="store_true")
    p.add_argument("--profile", action="store_true",
                   help="no workers: this process fires the due timers itself (app.jobs' claiming loop) under "
                        "cProfile, then prints the statements of one firing, CPU per firing and the top functions")
    return p.parse_args()


class _NoJobs:
    """The creators run what the jobs would (start a chat) themselves, and nothing waits for an
    operator yet: what the app schedules after commit is dropped."""

    def enqueue(self, *args, **kw):
        pass

    def enqueue_at(self, *args, **kw):
        pass


def _app(dsn: str, redis_url: str):
    from app import create_app
    return create_app({"SQLALCHEMY_DATABASE_URI": dsn.replace("postgresql://", "postgresql+psycopg://", 1),
                       "REDIS_URL": redis_url, "AUTO_MIGRATE": False, "BOOTSTRAP_ADMIN_TOKEN": None,
                       "LOG_LEVEL": "WARNING"}, start_jobs=False)


def make_operators(part: int, parts: int, n: int, dsn: str, redis_url: str, queue_ids: list[int],
                   done: "multiprocessing.Queue"):
    """Operators i = part, part + parts, ... in queue i % len(queue_ids): active and present for two hours."""
    from app import accounts
    from app.chats import admin, presence, service
    from app.extensions import db
    from app.models.chat import Queue

    app = _app(dsn, redis_url)
    ids = list(range(part, n, parts))
    for i in range(0, len(ids), 100):
        with app.app_context():
            for k in ids[i:i + 100]:
                user, _ = accounts.create_user(f"op{k + 1:05d}", f"Operator {k + 1}")
                admin.add_operator(db.session.get(Queue, queue_ids[k % len(queue_ids)]), user.id, None, _NoJobs())
                service.set_status(user, "active", _NoJobs())
                presence.seen(user.id, 7200, _NoJobs(), check=False)
            db.session.commit()
            db.session.remove()
    done.put((part, len(ids), 0))


def create_part(part: int, parts: int, n: int, dsn: str, redis_url: str, channel_ids: list[int], t0: float,
                window: float, done: "multiprocessing.Queue"):
    """Create chats k = part, part + parts, ... (in channel k % len(channel_ids)), chat k due at t0 + window * k / n."""
    from app import jobs as app_jobs
    from app.channels.base import InboundMessage
    from app.chats import service, settings
    from app.extensions import db
    from app.models.chat import Channel

    app = _app(dsn, redis_url)
    original = settings.get
    planned = {"seconds": None}

    def get(code):
        if code == "OmniChatOperatorAcceptChatTimeout" and planned["seconds"] is not None:
            return planned["seconds"] / 60
        return original(code)

    settings.get = get  # read per chat by route_chat (lifecycle.timeouts)
    late, made = 0, 0
    ks = list(range(part, n, parts))
    batch = 50
    for i in range(0, len(ks), batch):
        chunk = ks[i:i + batch]
        with app.app_context():
            chat_ids = []
            for k in chunk:
                channel = db.session.get(Channel, channel_ids[k % len(channel_ids)])
                user = str(7_000_000 + k)
                message = service.receive(channel, InboundMessage(external_id=str(90_000_000 + k), user_id=user,
                                                                  address=user, name=f"Client {k}", text="hello"),
                                          _NoJobs())
                chat_ids.append((k, message.chat_id))
            db.session.commit()
            db.session.remove()
        for k, chat_id in chat_ids:
            seconds = t0 + window * k / n - time.time()
            if seconds < 5:
                late += 1
                seconds = 5
            planned["seconds"] = round(seconds, 3)
            with app.app_context():
                app_jobs.start_chat_lifecycle(chat_id)
            made += 1
    done.put((part, made, late))


def run_parts(target, parts: int, args: tuple, timeout: float) -> list:
    """Run target(part, parts, *args, done) in `parts` forked processes; their reports."""
    ctx = multiprocessing.get_context("fork")
    done = ctx.Queue()
    procs = [ctx.Process(target=target, args=(i, parts, *args, done)) for i in range(parts)]
    try:
        for p in procs:
            p.start()
        return [done.get(timeout=timeout) for _ in procs]
    finally:
        for p in procs:
            p.join(10)
            if p.is_alive():
                p.kill()
                p.join()


def setup(s, n: int, per_queue: int) -> tuple[list[int], list[int]]:
    """Settings and the queues with a channel each over the API; returns the ids of both."""
    from load import BOT_TOKEN
    for code, value in (("SiteUrl", "https://chat.example.com"), ("SimultaneousChats", 1),
                        ("OmniChatOperatorAcceptChatTimeout", 60)):
        s.api.call("PUT", f"/api/settings/{code}", {"value": value})
    queue_ids, channel_ids = [], []
    for q in range(math.ceil(n / per_queue)):
        queue = s.api.call("POST", "/api/queues", {"name": f"Bench {q + 1}", "routing_rule": "least_busy",
                                                   "completion_timeout_minutes": None}).json()
        channel = s.api.call("POST", "/api/channels", {"provider": "telegram", "name": f"Bench bot {q + 1}",
                                                       "token": BOT_TOKEN, "queue_id": queue["id"],
                                                       "active": True}).json()
        queue_ids.append(queue["id"])
        channel_ids.append(channel["id"])
    return queue_ids, channel_ids


def cpu_snapshot(groups: dict, pg_pids: set[int]) -> dict:
    """CPU seconds used so far: the whole machine (busy, total), per named process group
    (`groups`: name -> process group id), the PostgreSQL backends serving the bench's database
    (`pg_pids`; other databases' are other people's) and Redis (shared by every database), from /proc."""
    tick = os.sysconf("SC_CLK_TCK")
    with open("/proc/stat") as f:
        fields = [int(x) for x in f.readline().split()[1:]]
    idle = fields[3] + fields[4]
    out = {"machine_busy": (sum(fields) - idle) / tick, "machine_total": sum(fields) / tick}
    by_group = {pgid: name for name, pgid in groups.items()}
    for pid in os.listdir("/proc"):
        if not pid.isdigit():
            continue
        try:
            with open(f"/proc/{pid}/stat") as f:
                stat = f.read()
        except OSError:
            continue
        comm = stat[stat.index("(") + 1:stat.rindex(")")]
        rest = stat[stat.rindex(")") + 2:].split()
        pgrp, cpu = int(rest[2]), (int(rest[11]) + int(rest[12])) / tick
        name = by_group.get(pgrp) or ("postgres" if int(pid) in pg_pids else
                                      "redis (shared)" if comm.startswith("redis") else None)
        if name:
            out[name] = out.get(name, 0) + cpu
    return out


def profile(s, first_due: float, last_due: float) -> None:
    """Fire the due timers in this process with the workers' own loop (`app.jobs._fire_due`, as
    `fire_due_timers` runs it), under cProfile; print what one firing costs."""
    import cProfile
    import pstats

    from sqlalchemy import event

    from app import jobs as app_jobs
    from app.extensions import db

    app = _app(s.dsn, s.redis_url)
    statements = []
    with app.app_context():
        event.listen(db.engine, "before_cursor_execute", lambda c, cur, sql, *a: statements.append(sql))
    time.sleep(max(0.0, first_due - time.time()))
    prof, fired, cpu = cProfile.Profile(), 0, time.process_time()
    prof.enable()
    one = 0
    while time.time() < last_due + 1 or one:  # until none is due (under cProfile it falls behind)
        before = len(statements)
        one, _ = app_jobs._fire_due(app, grace=0.0, seconds=1.0, wait_ahead=True)
        if one and fired == 0:
            print(f"\nstatements of the first claiming run ({one} firings, {len(statements) - before} statements):")
            for sql in statements[before:before + 40]:
                print("   " + " ".join(sql.split())[:160])
        fired += one
    prof.disable()
    cpu = time.process_time() - cpu
    print(f"\nfired {fired} in this process: {1000 * cpu / max(fired, 1):.2f} ms of CPU per firing (under cProfile), "
          f"{len(statements) / max(fired, 1):.1f} statements per firing (claims and waits included)")
    stats = pstats.Stats(prof)
    stats.sort_stats("cumulative").print_stats(45)
    stats.sort_stats("tottime").print_stats(25)


STEP_SECONDS = 5.0  # events of one firing's step are written within this of its offer_timed_out


def main() -> int:
    args = parse_args()
    n = args.chats
    n_queues = math.ceil(n / args.per_queue)
    extra_env = {} if args.sweep_seconds is None else {"CHATFLOW_TIMER_SWEEP_SECONDS": str(args.sweep_seconds)}
    print(f"chatflow timers bench: {n} chats, due evenly over {args.window:.0f} s starting {args.lead:.0f} s after "
          f"creation starts; {n} operators x SimultaneousChats 1 in {n_queues} queues; {args.job_workers} chatflow "
          f"workers; sweep every {args.sweep_seconds or 'the default'} s")
    print(f"machine: {machine()}")
    failures = []
    started = time.monotonic()
    with _servers.stack(args.database, args.redis_db, web_workers=1, job_workers=1 if args.profile else args.job_workers,
                        extra_env=extra_env, keep_database=args.keep_database, label="bench_timers") as s:
        queue_ids, channel_ids = setup(s, n, args.per_queue)
        run_parts(make_operators, args.creators, (n, s.dsn, s.redis_url, queue_ids), timeout=600)
        if args.profile:  # the worker was there for /healthz only: this process fires the timers
            for entry in [c for c in s.procs.children if c[0].startswith("worker")]:
                os.killpg(entry[1].pid, signal.SIGTERM)
                entry[1].wait(30)
                entry[2].close()
                s.procs.children.remove(entry)
        print(f"setup ({n_queues} queues and channels over the API, {n} operators in-process) done in "
              f"{time.monotonic() - started:.1f} s; logs in {s.logdir}")

        # -- create
        t_create = time.time()
        t0 = t_create + args.lead
        reports = run_parts(create_part, args.creators, (n, s.dsn, s.redis_url, channel_ids, t0, args.window),
                            timeout=args.lead + args.window + 600)  # late chats are counted below
        create_seconds = time.time() - t_create
        made, late = sum(r[1] for r in reports), sum(r[2] for r in reports)
        print(f"created {made} chats in {create_seconds:.1f} s ({made / create_seconds:.0f}/s with "
              f"{args.creators} processes); {late} created too late for their planned due time")
        if late:
            failures.append(f"{late} chats created after their planned due time (raise --lead)")

        with psycopg.connect(s.dsn, autocommit=True) as conn:
            q = lambda sql, *a: conn.execute(sql, a).fetchall()  # noqa: E731
            states = dict(q("select state, count(*) from chats group by state"))
            # An offered chat's only timer is its acceptance timeout (the queue has no completion timeout).
            rows = q("""select c.id, c.offered_to_id, p.next_timer_at from chats c
                        join process_instances p on p.id = c.process_instance_id where p.next_timer_at is not null""")
            due = {r[0]: r[2] for r in rows}
            first_op = {r[0]: r[1] for r in rows}
            if states != {"offered": n} or len(due) != n:
                failures.append(f"before the timers: chats {states}, acceptance timers {len(due)} (want {n} offered)")
            dues = sorted(due.values())
            print(f"before the timers: chats {states}; {len(due)} acceptance timers due from {dues[0]:%H:%M:%S.%f} "
                  f"to {dues[-1]:%H:%M:%S.%f} ({(dues[-1] - dues[0]).total_seconds():.1f} s apart); "
                  f"first due {dues[0].timestamp() - time.time():.1f} s from now")
            scheduled = s.red.zcard("rq:scheduled:chatflow")
            print(f"RQ alarms scheduled: {scheduled} (one per second holding a due time)")

            if args.profile:
                profile(s, dues[0].timestamp(), dues[-1].timestamp())

            # -- watch
            from rq import Queue, Worker
            rq_queue = Queue("chatflow", connection=s.red)
            workers_before = {w.name: (w.successful_job_count, w.total_working_time)
                              for w in Worker.all(queue=rq_queue)}
            timeline = []
            groups = {n: p.pid for n, p, _ in s.procs.children if n.startswith("worker")}
            cpu_before = None
            last_due = dues[-1].timestamp()
            deadline = last_due + args.max_wait
            fired = 0
            print("\n   t (s from first due) | due so far | changed so far | backlog | RQ queued | RQ scheduled (incl. next cycles)")
            while time.time() < deadline:
                s.procs.check_alive()
                now = time.time()
                fired = q("select count(*) from chat_events where event = 'offer_timed_out'")[0][0]
                due_so_far = sum(1 for d in dues if d.timestamp() <= now)
                queued, sched = rq_queue.count, s.red.zcard("rq:scheduled:chatflow")
                timeline.append((now - dues[0].timestamp(), due_so_far, fired, queued, sched))
                if now >= dues[0].timestamp() - 2 and len(timeline) % 5 == 0:
                    print(f"   {now - dues[0].timestamp():8.1f} | {due_so_far:6} | {fired:6} | "
                          f"{due_so_far - fired:6} | {queued:6} | {sched:6}")
                if cpu_before is None and now >= dues[0].timestamp() - 1:
                    pg_pids = set(r[0] for r in q("select pid from pg_stat_activity where datname = %s", args.database))
                    cpu_before = cpu_snapshot(groups, pg_pids)
                if fired >= n and now > last_due:
                    break
                time.sleep(1 if now < dues[0].timestamp() - 5 else 0.5)
            pg_pids |= set(r[0] for r in q("select pid from pg_stat_activity where datname = %s", args.database))
            cpu_after = cpu_snapshot(groups, pg_pids)  # a backend started since counts whole
            time.sleep(3)  # anything fired twice shows up now
            workers_after = {w.name: (w.successful_job_count, w.total_working_time)
                             for w in Worker.all(queue=rq_queue)}

            # -- analyse
            events = q("""select chat_id, event, at, details from chat_events
                          where event in ('offer_timed_out', 'offered', 'waiting_for_operator') order by id""")
            timed_out = defaultdict(list)
            after = defaultdict(Counter)
            for chat_id, event, at, details in events:
                if event == "offer_timed_out":
                    timed_out[chat_id].append((at, details))
                elif timed_out[chat_id] and (at - timed_out[chat_id][0][0]).total_seconds() < STEP_SECONDS:
                    # what the firing's own step did; a queued chat's next cycle (one period on) re-tries
                    after[chat_id][event] += 1
            timed_out = {k: v for k, v in timed_out.items() if v}
            lost = [c for c in due if c not in timed_out]
            twice = [c for c, v in timed_out.items() if len(v) > 1]
            wrong_op = [c for c, v in timed_out.items() if v[0][1].get("operator_id") != first_op.get(c)]
            not_once = [c for c in timed_out if sum(after[c].values()) != 1]
            final = dict(q("select state, count(*) from chats group by state"))
            bad_state = q("""select count(*) from chats where (state = 'offered') <> (offered_to_id is not null)
                             or state not in ('queued', 'offered')""")[0][0]
            lags = sorted((timed_out[c][0][0] - d).total_seconds() for c, d in due.items() if c in timed_out)
            errors = q("select count(*) from process_instances where state = 'error'")[0][0]
            inactive = q("select count(*) from users where login like 'op%%' and status = 'inactive'")[0][0]
        first_change = min(v[0][0] for v in timed_out.values()) if timed_out else None
        last_change = max(v[0][0] for v in timed_out.values()) if timed_out else None
        jobs_run = {k: (workers_after.get(k, (0, 0))[0] - v[0], workers_after.get(k, (0, 0))[1] - v[1])
                    for k, v in workers_before.items()}
        tracebacks = _servers.traceback_counts(s.logdir)
        failed_jobs = _servers.rq_failed(s.red)

    print(f"\n== {n} acceptance timers due over {(dues[-1] - dues[0]).total_seconds():.1f} s "
          f"({n / max(1e-9, (dues[-1] - dues[0]).total_seconds()):.0f}/s)")
    if lags:
        print(f"   lag due -> offer_timed_out: p50 {pct(lags, 50):.2f} s, p90 {pct(lags, 90):.2f} s, "
              f"p99 {pct(lags, 99):.2f} s, max {lags[-1]:.2f} s, min {lags[0]:.3f} s")
        span = (last_change - first_change).total_seconds()
        print(f"   state changes from {first_change:%H:%M:%S.%f} to {last_change:%H:%M:%S.%f}: {span:.1f} s, "
              f"{len(timed_out) / max(span, 1e-9):.0f} changes/s sustained")
    for name, (jobs, busy) in sorted(jobs_run.items()):
        print(f"   worker {name[:12]}: {jobs} RQ jobs run, {busy:.1f} s busy in jobs"
              f" ({1000 * busy / max(jobs, 1):.1f} ms per job)")
    if cpu_before:
        used = {k: cpu_after.get(k, 0) - cpu_before.get(k, 0) for k in cpu_after}
        total = used.pop("machine_total")
        busy = used.pop("machine_busy")
        ours = sum(v for k, v in used.items() if k.startswith(("worker", "postgres")))
        print(f"   CPU from the first due time to the last change: machine {100 * busy / max(total, 1e-9):.0f} % busy "
              f"of {os.cpu_count()} CPUs ({busy:.1f} CPU-s, everyone's); CPU seconds: "
              + ", ".join(f"{k} {v:.1f}" for k, v in sorted(used.items()))
              + f"; workers + their PostgreSQL: {1000 * ours / max(len(timed_out), 1):.1f} CPU-s per 1,000 firings")
    print(f"   lost (no offer_timed_out): {len(lost)}; fired twice: {len(twice)}; offer_timed_out for another operator "
          f"than the first offer's: {len(wrong_op)}; not re-offered/queued exactly once after it: {len(not_once)}")
    print(f"   chats now {final}; inconsistent state {bad_state}; operators now inactive {inactive}/{n}; "
          f"instances in error {errors}; failed RQ jobs {failed_jobs}; tracebacks {tracebacks or 'none'}")
    if lost:
        failures.append(f"{len(lost)} timers lost")
    if twice:
        failures.append(f"{len(twice)} fired twice")
    if wrong_op or not_once or bad_state or errors or failed_jobs or tracebacks:
        failures.append(f"wrong operator {len(wrong_op)}, not re-offered/queued once {len(not_once)}, "
                        f"bad state {bad_state}, errors {errors}, failed jobs {failed_jobs}, tracebacks {tracebacks}")
    goal = bool(lags) and pct(lags, 99) <= args.goal_seconds and not lost and not twice
    print(f"\ngoal (p99 ≤ {args.goal_seconds:.0f} s, none lost, none twice): {'met' if goal else 'NOT met'}; "
          f"whole run {time.monotonic() - started:.0f} s")
    return _servers.finish(s.logdir, failures)


if __name__ == "__main__":
    sys.exit(main())
