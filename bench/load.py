"""Load bench: 2,000 client messages from 200 contacts through the Telegram
webhook, against the production shape, then a check of the database.

    .venv/bin/python bench/load.py            # see --help for the knobs

What it starts (and stops again, whatever happens):
  - a fresh PostgreSQL database (dropped and created on 127.0.0.1:5432 as user postgres),
  - Redis DB 6 on 127.0.0.1:6379 (flushed),
  - the fake Telegram Bot API of the test suite (tests/fakes/telegram.py), in this process,
  - gunicorn with 2 workers and 2 `chatflow worker` processes, each in its own process group.

It exits 0 only when every check passes. Everything goes to 127.0.0.1 only.
"""
import argparse
import json
import os
import random
import signal
import socket
import statistics
import subprocess
import sys
import threading
import time
from collections import Counter
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import psycopg
import redis
import requests

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT / "tests"))
from fakes.telegram import FakeTelegram, update  # noqa: E402,F401  (FakeTelegram: for _servers)

BIN = Path(sys.executable).parent
PG = dict(host="127.0.0.1", port="5432", user="postgres")
BOT_TOKEN = "123:good-token"


def parse_args():
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--messages", type=int, default=2000)
    p.add_argument("--contacts", type=int, default=200)
    p.add_argument("--threads", type=int, default=32, help="concurrent webhook senders")
    p.add_argument("--operators", type=int, default=20)
    p.add_argument("--simultaneous-chats", type=int, default=2, help="the SimultaneousChats setting")
    p.add_argument("--working-operators", type=int, default=10,
                   help="operators who accept their offers and complete them while the load runs "
                        "(0: nobody works, chats only get offered or queued)")
    p.add_argument("--hold", type=float, default=1.0, help="seconds a working operator keeps a chat in work")
    p.add_argument("--web-workers", type=int, default=2)
    p.add_argument("--job-workers", type=int, default=2)
    p.add_argument("--database", default="chatflow_bench")
    p.add_argument("--redis-db", type=int, default=6)
    p.add_argument("--send-deadline", type=float, default=300, help="seconds allowed for sending everything")
    p.add_argument("--settle-timeout", type=float, default=120,
                   help="seconds allowed, after the last send, for every lifecycle job to run")
    p.add_argument("--seed", type=int, default=6)
    p.add_argument("--keep-database", action="store_true", help="leave the database for inspection")
    return p.parse_args()


# -- processes -----------------------------------------------------------------------------
class Processes:
    """Children started in their own process groups; stop() ends exactly those groups."""

    def __init__(self, logdir: Path):
        self.logdir, self.children = logdir, []

    def start(self, name: str, argv: list[str], env: dict) -> subprocess.Popen:
        log = open(self.logdir / f"{name}.log", "wb")
        proc = subprocess.Popen(argv, cwd=ROOT, env=env, stdout=log, stderr=subprocess.STDOUT,
                                stdin=subprocess.DEVNULL, start_new_session=True)
        self.children.append((name, proc, log))
        return proc

    def check_alive(self):
        dead = [(n, p.returncode) for n, p, _ in self.children if p.poll() is not None]
        if dead:
            raise RuntimeError(f"process ended early: {dead} (logs in {self.logdir})")

    def stop(self):
        for _, proc, _ in reversed(self.children):
            if proc.poll() is None:
                try:
                    os.killpg(proc.pid, signal.SIGTERM)
                except ProcessLookupError:
                    pass
        deadline = time.monotonic() + 10
        for _, proc, log in self.children:
            try:
                proc.wait(max(0.1, deadline - time.monotonic()))
            except subprocess.TimeoutExpired:
                try:
                    os.killpg(proc.pid, signal.SIGKILL)
                except ProcessLookupError:
                    pass
                proc.wait(5)
            log.close()


def run(argv, env=None, check=True):
    result = subprocess.run(argv, cwd=ROOT, env=env, capture_output=True, text=True, timeout=120)
    if check and result.returncode != 0:
        raise RuntimeError(f"{' '.join(argv)} failed ({result.returncode}): {result.stdout}{result.stderr}")
    return result


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def wait_until(predicate, timeout: float, what: str, procs: Processes | None = None, every=0.2):
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if procs:
            procs.check_alive()
        try:
            value = predicate()
        except (requests.RequestException, psycopg.Error, redis.RedisError):
            value = None
        if value:
            return value
        time.sleep(every)
    raise TimeoutError(f"timed out after {timeout:.0f} s waiting for {what}")


# -- HTTP ------------------------------------------------------------------------------------
_local = threading.local()


def session() -> requests.Session:
    s = getattr(_local, "session", None)
    if s is None:
        s = _local.session = requests.Session()
        s.trust_env = False  # no proxies: 127.0.0.1 only
    return s


class Api:
    def __init__(self, base: str, token: str):
        self.base, self.headers = base, {"Authorization": f"Bearer {token}"}

    def call(self, method, path, json_body=None, expect=(200, 201), **kw):
        r = session().request(method, self.base + path, json=json_body, headers=self.headers, timeout=30, **kw)
        if expect and r.status_code not in expect:
            raise RuntimeError(f"{method} {path}: {r.status_code} {r.text[:300]}")
        return r


# -- the bench -------------------------------------------------------------------------------
def plan_messages(args) -> list[tuple[int, int]]:
    """(update_id, telegram user id) in send order: every contact writes at least once, the
    rest is spread unevenly (a few contacts write a lot), all shuffled so one contact's first
    messages race each other."""
    rnd = random.Random(args.seed)
    users = [900_000 + i for i in range(args.contacts)]
    weights = [rnd.paretovariate(1.2) for _ in users]
    per_user = Counter(users[: min(args.contacts, args.messages)])
    per_user.update(rnd.choices(users, weights=weights, k=max(0, args.messages - args.contacts)))
    plan = [u for u, n in per_user.items() for _ in range(n)]
    rnd.shuffle(plan)
    return [(10_000_000 + i, u) for i, u in enumerate(plan)]


class Stats:
    def __init__(self):
        self.lock = threading.Lock()
        self.statuses: Counter = Counter()
        self.latencies: list[float] = []
        self.duplicates = 0
        self.errors: list[str] = []
        self.ok_ids: set[int] = set()
        self.operator_calls: Counter = Counter()

    def add(self, update_id, status, latency, body):
        with self.lock:
            self.statuses[status] += 1
            self.latencies.append(latency)
            if status == 200:
                self.ok_ids.add(update_id)
                if isinstance(body, dict) and body.get("duplicate"):
                    self.duplicates += 1
            elif len(self.errors) < 10:
                self.errors.append(f"update {update_id}: {status} {str(body)[:200]}")


def send_one(url, secret, update_id, user_id, stats: Stats, deadline):
    if time.monotonic() > deadline:
        stats.add(update_id, "not sent (deadline)", 0.0, None)
        return
    body = update(update_id, user_id, f"message {update_id} from {user_id}", first_name=f"Client{user_id}")
    t0 = time.perf_counter()
    try:
        r = session().post(url, json=body, headers={"X-Telegram-Bot-Api-Secret-Token": secret}, timeout=60)
        status = r.status_code
        try:
            answer = r.json()
        except ValueError:
            answer = r.text[:200]
    except requests.RequestException as e:
        status, answer = f"error {type(e).__name__}", str(e)[:200]
    stats.add(update_id, status, time.perf_counter() - t0, answer)


def operator_loop(api: Api, user_id: int, hold: float, stop: threading.Event, stats: Stats):
    """Accept what is offered to me; complete a chat once I held it `hold` seconds."""
    accepted_at = {}
    while not stop.is_set():
        try:
            r = api.call("GET", "/api/me/chats?limit=100", expect=None)
            stats.operator_calls[("list", r.status_code)] += 1
            chats = r.json() if r.status_code == 200 else []
            now = time.monotonic()
            for c in chats:
                if c["state"] == "offered" and c["offered_to_id"] == user_id:
                    r = api.call("POST", f"/api/chats/{c['id']}/accept", expect=None)
                    stats.operator_calls[("accept", r.status_code)] += 1
                    if r.status_code == 200:
                        accepted_at[c["id"]] = now
                elif c["state"] == "in_work" and c["operator_id"] == user_id:
                    if now - accepted_at.setdefault(c["id"], now) >= hold:
                        r = api.call("POST", f"/api/chats/{c['id']}/complete", expect=None)
                        stats.operator_calls[("complete", r.status_code)] += 1
        except requests.RequestException as e:
            stats.operator_calls[("error", type(e).__name__)] += 1
        stop.wait(0.2)


def rq_busy(r: redis.Redis, queue="chatflow") -> int:
    """Jobs queued, running, or scheduled within 5 s on our RQ queue."""
    from rq import Queue
    from rq.registry import ScheduledJobRegistry, StartedJobRegistry
    q = Queue(queue, connection=r)
    scheduled = ScheduledJobRegistry(queue=q)
    due_soon = r.zcount(scheduled.key, 0, time.time() + 5)
    return q.count + StartedJobRegistry(queue=q).count + due_soon


def rq_failed(r: redis.Redis, queue="chatflow") -> int:
    from rq import Queue
    from rq.registry import FailedJobRegistry
    return FailedJobRegistry(queue=Queue(queue, connection=r)).count


def snapshot(conn) -> tuple:
    return conn.execute("""select (select count(*) from chats), (select count(*) from chats where process_instance_id is null),
                                  (select coalesce(max(revision), 0) + count(*) + coalesce(sum(revision), 0) from process_instances),
                                  (select count(*) from chat_events), (select count(*) from messages)""").fetchone()


def main() -> int:
    from _servers import finish, setup_queue, stack  # _servers builds on this module's helpers
    args = parse_args()
    started = time.monotonic()
    results: list[tuple[str, bool, str]] = []
    logdir = None

    def check(name, ok, detail=""):
        results.append((name, bool(ok), detail))

    print(f"chatflow load bench: {args.messages} messages, {args.contacts} contacts, {args.threads} senders, "
          f"{args.operators} operators x SimultaneousChats {args.simultaneous_chats} "
          f"({args.working_operators} of them working), gunicorn -w {args.web_workers}, "
          f"{args.job_workers} chatflow workers")
    stop_ops = threading.Event()
    try:
        with stack(args.database, args.redis_db, web_workers=args.web_workers, job_workers=args.job_workers,
                   keep_database=args.keep_database, label="bench_load") as s:
            logdir, base, dsn, red, fake, procs = s.logdir, s.base, s.dsn, s.red, s.fake, s.procs
            print(f"up on {base}: healthz {json.dumps(s.api.call('GET', '/healthz').json())[:200]}; logs in {logdir}")
            # long enough that no offer times out during the bench
            world = setup_queue(s, rule="least_busy", operators=args.operators,
                                simultaneous=args.simultaneous_chats, accept_timeout_minutes=60,
                                completion_timeout_minutes=None)
            operators, channel, secret = world["operators"], world["channel"], world["secret"]

            # load
            plan = plan_messages(args)
            sent_per_user = Counter(u for _, u in plan)
            stats = Stats()
            op_threads = [threading.Thread(target=operator_loop, args=(Api(base, tok), uid, args.hold, stop_ops, stats),
                                           daemon=True) for uid, tok in operators[: args.working_operators]]
            for t in op_threads:
                t.start()
            url = f"{base}/webhooks/telegram/{channel['id']}"
            t_send = time.monotonic()
            deadline = t_send + args.send_deadline
            with ThreadPoolExecutor(max_workers=args.threads) as pool:
                for update_id, user_id in plan:
                    pool.submit(send_one, url, secret, update_id, user_id, stats, deadline)
            send_seconds = time.monotonic() - t_send
            stop_ops.set()
            for t in op_threads:
                t.join(10)
            procs.check_alive()

            # settle: every chat has its instance, no job left, nothing changes for 2 s
            t_settle = time.monotonic()
            with psycopg.connect(dsn, autocommit=True) as conn:
                last = {"snap": None, "since": None}

                def settled():
                    snap = snapshot(conn)
                    if snap[1] != 0 or rq_busy(red) != 0:
                        last["snap"] = None
                        return False
                    if snap != last["snap"]:
                        last["snap"], last["since"] = snap, time.monotonic()
                        return False
                    return time.monotonic() - last["since"] >= 2.0
                try:
                    wait_until(settled, args.settle_timeout, "every lifecycle job to run", procs, every=0.5)
                    check("settled: every chat has its instance, no RQ job left", True,
                          f"{time.monotonic() - t_settle:.1f} s after the last send")
                except TimeoutError as e:
                    check("settled: every chat has its instance, no RQ job left", False,
                          f"{e}; last snapshot {snapshot(conn)}, rq busy {rq_busy(red)}")
            total_load_seconds = time.monotonic() - t_send

            # -- checks ------------------------------------------------------------------------
            with psycopg.connect(dsn, autocommit=True) as conn:
                q = lambda sql, *p: conn.execute(sql, p).fetchall()  # noqa: E731
                ch = channel["id"]
                print("\n== webhook answers")
                lat = sorted(stats.latencies)
                pct = lambda p: lat[min(len(lat) - 1, int(p / 100 * len(lat)))] * 1000 if lat else float("nan")  # noqa
                print(f"   status counts: {dict(stats.statuses)}; duplicate answers: {stats.duplicates}")
                print(f"   latency ms: p50 {pct(50):.0f}  p90 {pct(90):.0f}  p99 {pct(99):.0f}  max {pct(100):.0f}  "
                      f"mean {statistics.mean(lat) * 1000 if lat else 0:.0f}")
                print(f"   sending took {send_seconds:.1f} s = {len(plan) / send_seconds:.0f} messages/s")
                for e in stats.errors:
                    print(f"   ! {e}")
                check("every webhook answered 200", stats.statuses.get(200, 0) == len(plan), str(dict(stats.statuses)))
                check("no 5xx", not any(isinstance(s, int) and s >= 500 for s in stats.statuses))
                check("no webhook answered duplicate (each update_id is new)", stats.duplicates == 0, str(stats.duplicates))
                if stats.operator_calls:
                    print(f"   operator calls: {dict(sorted((f'{a} {s}', n) for (a, s), n in stats.operator_calls.items()))}")
                    check("no operator call answered 5xx",
                          not any(isinstance(s, int) and s >= 500 for (_, s), _n in stats.operator_calls.items()))

                print("\n== messages")
                stored = q("select external_id, count(*) from messages where channel_id = %s and direction = 'in' "
                           "group by external_id", ch)
                stored_ids = {int(e) for e, _ in stored}
                dup = [(e, n) for e, n in stored if n > 1]
                sent_ids = {u for u, _ in plan}
                total_in = sum(n for _, n in stored)
                print(f"   sent {len(plan)}, answered 200 {len(stats.ok_ids)}, stored {total_in} "
                      f"({len(stored_ids)} distinct external_id), duplicated {len(dup)}, "
                      f"missing {len(sent_ids - stored_ids)}, unexpected {len(stored_ids - sent_ids)}")
                check("every message stored exactly once", total_in == len(plan) and stored_ids == sent_ids and not dup,
                      f"stored {total_in}/{len(plan)}, dup {dup[:5]}, missing {sorted(sent_ids - stored_ids)[:5]}")
                no_chat = q("select count(*) from messages where channel_id = %s and direction = 'in' and chat_id is null",
                            ch)[0][0]
                wrong = q("""select count(*) from messages m join chats c on c.id = m.chat_id
                             where m.channel_id = %s and (c.contact_id <> m.contact_id or c.channel_id <> m.channel_id)""",
                          ch)[0][0]
                check("every message belongs to a chat of its own contact", no_chat == 0 and wrong == 0,
                      f"without chat {no_chat}, in another contact's chat {wrong}")
                per_user = dict(q("""select ci.external_id, count(*) from messages m
                                     join contact_identities ci on ci.contact_id = m.contact_id and ci.channel_id = m.channel_id
                                     where m.channel_id = %s and m.direction = 'in' group by ci.external_id""", ch))
                mismatch = [u for u, n in sent_per_user.items() if per_user.get(str(u)) != n]
                check("messages per contact = sent per contact", not mismatch, f"{len(mismatch)} contacts differ")

                print("\n== contacts and chats")
                contacts = q("select count(*), count(distinct external_id) from contact_identities where channel_id = %s",
                             ch)[0]
                multi = q("select count(*) from (select contact_id from contact_identities group by contact_id "
                          "having count(*) > 1) x")[0][0]
                print(f"   contacts: {contacts[0]} identities ({contacts[1]} distinct telegram ids) for "
                      f"{len(sent_per_user)} senders")
                check("one contact per sender", contacts[0] == contacts[1] == len(sent_per_user) and multi == 0,
                      f"{contacts}")
                open_per = q("""select contact_id, count(*) from chats where channel_id = %s and state <> 'completed'
                                group by contact_id""", ch)
                chats_per = Counter(n for _, n in q("select contact_id, count(*) from chats where channel_id = %s "
                                                    "group by contact_id", ch))
                with_open = sum(1 for _, n in open_per if n == 1)
                print(f"   chats per contact (all states): {dict(sorted(chats_per.items()))}; contacts with exactly one "
                      f"open chat: {with_open}, with more: {sum(1 for _, n in open_per if n > 1)}")
                check("at most one open chat per contact", all(n == 1 for _, n in open_per),
                      str([c for c in open_per if c[1] > 1][:5]))
                # every contact's last message is in an open chat unless that chat was completed after it
                late = q("""select m.id, m.chat_id, m.created_at, c.completed_at from messages m
                            join chats c on c.id = m.chat_id
                            where m.channel_id = %s and m.direction = 'in' and c.state = 'completed'
                              and m.created_at > c.completed_at""", ch)
                check("no message stored into a chat after it was completed", not late,
                      f"{len(late)} messages, e.g. {[(r[0], r[1], str(r[2]), str(r[3])) for r in late[:3]]}")
                if args.working_operators == 0:
                    check("exactly one open chat per contact (nobody completes chats)",
                          with_open == len(sent_per_user), f"{with_open}/{len(sent_per_user)}")

                print("\n== chat states and lifecycle instances")
                states = Counter(dict(q("select state, count(*) from chats group by state")))
                n_chats = sum(states.values())
                print(f"   {n_chats} chats: {dict(sorted(states.items()))}")
                bad_state = q("""select id, state, offered_to_id, operator_id from chats where
                                   state not in ('queued', 'offered', 'in_work', 'completed')
                                or (state = 'offered') <> (offered_to_id is not null)
                                or (state = 'in_work' and operator_id is null)
                                or (state = 'queued' and operator_id is not null)
                                or (state = 'completed') <> (completed_at is not null)""")
                check("every chat in exactly one consistent state", not bad_state, str(bad_state[:5]))
                rows = q("""select c.id, c.state, pi.id, pi.state, pi.business_key, pi.waiting_for
                            from chats c left join process_instances pi on pi.id = c.process_instance_id""")
                combos = Counter()
                problems = []
                expect_wait = {"queued": "wait_offered", "offered": "wait_offered", "in_work": "in_work"}
                for chat_id, cstate, pid, pstate, bkey, waiting in rows:
                    waits = sorted({w["task"] for w in (waiting or []) if w.get("kind") == "message"})
                    combos[(cstate, pstate, ",".join(waits))] += 1
                    if pid is None:
                        problems.append(f"chat {chat_id}: no instance")
                    elif bkey != f"chat:{chat_id}":
                        problems.append(f"chat {chat_id}: instance {pid} has business key {bkey}")
                    elif cstate == "completed" and pstate != "completed":
                        problems.append(f"chat {chat_id} completed, instance {pid} {pstate}")
                    elif cstate in expect_wait and (pstate != "waiting" or expect_wait[cstate] not in waits):
                        problems.append(f"chat {chat_id} {cstate}, instance {pid} {pstate} waiting on {waits}")
                for (cstate, pstate, waits), n in sorted(combos.items(), key=lambda x: str(x)):
                    print(f"   chat {cstate:9} instance {str(pstate):9} waiting on {waits or '-':24} {n}")
                check("every chat has its lifecycle instance, in the matching state", not problems,
                      "; ".join(problems[:5]) + (f" (+{len(problems) - 5})" if len(problems) > 5 else ""))
                twice = q("""select business_key, count(*) from process_instances where business_key like 'chat:%%'
                             group by business_key having count(*) > 1""")
                check("one lifecycle instance per chat (no start ran twice)", not twice, str(twice[:5]))
                errored = q("select id, left(error, 200) from process_instances where state = 'error'")
                check("no instance in error", not errored, str(errored[:3]))
                events = dict(q("select event, count(*) from chat_events group by event"))
                print(f"   chat events: {dict(sorted(events.items()))}")

                print("\n== operators")
                limit = args.simultaneous_chats
                ops = q("""select u.id, u.status, u.chats_in_work, u.chats_offered,
                                  (select count(*) from chats c where c.state = 'in_work' and c.operator_id = u.id),
                                  (select count(*) from chats c where c.state = 'offered' and c.offered_to_id = u.id)
                           from users u where u.login like 'op%%' order by u.id""")
                print(f"   max chats_in_work {max(o[2] for o in ops)}, max chats_offered {max(o[3] for o in ops)}, "
                      f"max in work + offered {max(o[2] + o[3] for o in ops)} (SimultaneousChats {limit}); "
                      f"statuses {dict(Counter(o[1] for o in ops))}")
                print(f"   in the chats table: in work {sum(o[4] for o in ops)}, offered {sum(o[5] for o in ops)}; "
                      f"counters: in work {sum(o[2] for o in ops)}, offered {sum(o[3] for o in ops)}")
                over = [o for o in ops if o[2] + o[3] > limit or o[4] + o[5] > limit]
                check("no operator above SimultaneousChats", not over, str(over[:5]))
                drift = [o for o in ops if (o[2], o[3]) != (o[4], o[5])]
                check("operator counters equal the chats table", not drift,
                      "(id, status, in_work, offered, real in_work, real offered) " + str(drift[:5]))
                free = [o for o in ops if o[1] == "active" and o[4] + o[5] < limit]
                waiting = states.get("queued", 0)
                check("no chat left queued while an active operator has room", not (free and waiting),
                      f"{waiting} queued, operators with room: {[(o[0], o[4], o[5]) for o in free][:5]}")

                print("\n== processes")
                logs = {p.name: p.read_text(errors="replace") for p in logdir.glob("*.log")}
                tracebacks = {n: t.count("Traceback") for n, t in logs.items() if "Traceback" in t}
                timeouts = sum(t.count("WORKER TIMEOUT") for t in logs.values())
                print(f"   tracebacks in logs: {tracebacks or 'none'}; gunicorn worker timeouts: {timeouts}")
                check("no traceback in the server and worker logs", not tracebacks, str(tracebacks))
                failed_jobs = rq_failed(red)
                check("no failed RQ job", failed_jobs == 0, str(failed_jobs))
                print(f"   fake Telegram calls: {dict(Counter(m for _, m, _ in fake.calls))}")

            wall = time.monotonic() - started
            print(f"\n== wall time: load {total_load_seconds:.1f} s (send {send_seconds:.1f} s + settle), "
                  f"whole run {wall:.1f} s")
    except Exception as e:
        check("bench ran to the end", False, f"{type(e).__name__}: {e}")
    finally:
        stop_ops.set()

    print("\n== checks")
    for name, ok, detail in results:
        print(f"   {'PASS' if ok else 'FAIL'}  {name}" + (f"  [{detail}]" if detail and not ok else
                                                         f"  ({detail})" if detail else ""))
    failed = [r for r in results if not r[1]]
    print(f"\n{len(results) - len(failed)}/{len(results)} checks passed")
    return finish(logdir, [name for name, ok, _ in results if not ok])


if __name__ == "__main__":
    sys.exit(main())
