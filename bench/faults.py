"""Fault bench: the production shape under steady traffic while faults strike one after another.

    .venv/bin/python bench/faults.py          # about 3 minutes; exit code 0 = every check passed

Starts its own PostgreSQL cluster (initdb in a temporary folder, run as the `postgres` user, on a
free port) and its own redis-server (no persistence), so it can stop and kill them: the machine's
shared PostgreSQL (5432) and Redis (6379) are never touched. Then gunicorn (2 gthread workers),
2 `chatflow worker` and the fake Telegram Bot API of tests/fakes answering each sendMessage after
150 ms. Clients write steadily (webhooks retried until answered 2xx, as Telegram does), operators
accept chats and reply, timer probes (a 2 s boundary timer) start every 0.5 s, /healthz is polled.

Fault windows, in order: baseline; the worker holding RQ's scheduler SIGKILLed (a supervisor
starts a new one 10 s later); a gunicorn web worker SIGKILLed; Redis killed and restarted empty;
the provider answering 500 for 15 s; PostgreSQL stopped for 10 s; recovery.

Reports: client messages stored once (none lost, none twice), replies delivered once or marked
uncertain (none twice, none lost or stuck), chats stuck, worker exits, health right after each
fault (seconds until 200 again), timer lag per window (p50/p99/max).
"""
import argparse
import json
import os
import shutil
import signal
import statistics
import subprocess
import sys
import tempfile
import threading
import time
from collections import Counter, defaultdict
from pathlib import Path

BENCH = Path(__file__).resolve().parent
sys.path.insert(0, str(BENCH))
from load import BIN, BOT_TOKEN, ROOT, Api, FakeTelegram, Processes, free_port, run, session, update, wait_until  # noqa: E402

import psycopg  # noqa: E402
import redis  # noqa: E402
import requests  # noqa: E402

PG_BIN = next(iter(sorted(Path("/usr/lib/postgresql").glob("*/bin"))), None)
TIMER_PROBE = (ROOT / "tests" / "data" / "user_task_timeout.bpmn")  # UserTaskTimeout: a 2 s boundary timer


def parse_args():
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--rate", type=float, default=12, help="client messages per second")
    p.add_argument("--contacts", type=int, default=150)
    p.add_argument("--operators", type=int, default=8)
    p.add_argument("--window", type=float, default=20, help="seconds per fault window")
    p.add_argument("--provider-delay", type=float, default=0.15)
    return p.parse_args()


# -- our own PostgreSQL and Redis ----------------------------------------------------------------
class PrivatePostgres:
    """A cluster of our own in a temporary folder; stop() and start() take it away and back."""

    def __init__(self, folder: Path):
        self.folder, self.port = folder / "pg", free_port()
        folder.chmod(0o755)
        self.folder.mkdir()
        shutil.chown(self.folder, "postgres", "postgres")
        self._as_postgres([str(PG_BIN / "initdb"), "-D", str(self.folder), "-U", "postgres", "--auth=trust", "-N"])
        self.dsn = f"postgresql://postgres@127.0.0.1:{self.port}/chatflow_faults"

    def _as_postgres(self, argv):
        prefix = ["runuser", "-u", "postgres", "--"] if os.geteuid() == 0 else []
        return run(prefix + argv)

    def start(self):
        self._as_postgres([str(PG_BIN / "pg_ctl"), "-D", str(self.folder), "-w", "-l", str(self.folder / "log"),
                           "-o", f"-p {self.port} -k {self.folder} -c listen_addresses=127.0.0.1 -c fsync=off "
                                 "-c max_connections=200", "start"])

    def stop(self, mode="fast"):
        self._as_postgres([str(PG_BIN / "pg_ctl"), "-D", str(self.folder), "-w", "-m", mode, "stop"])

    def create_database(self):
        with psycopg.connect(f"postgresql://postgres@127.0.0.1:{self.port}/postgres", autocommit=True) as c:
            c.execute("CREATE DATABASE chatflow_faults")


class PrivateRedis:
    def __init__(self, folder: Path):
        self.port, self.folder, self.proc = free_port(), folder, None
        self.url = f"redis://127.0.0.1:{self.port}/0"

    def start(self):
        self.proc = subprocess.Popen([shutil.which("redis-server"), "--port", str(self.port), "--bind", "127.0.0.1",
                                      "--save", "", "--appendonly", "no", "--dir", str(self.folder)],
                                     stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL, start_new_session=True)
        wait_until(lambda: redis.Redis.from_url(self.url, socket_connect_timeout=0.5).ping(), 10, "redis-server")

    def kill(self):
        self.proc.kill()
        self.proc.wait(10)


# -- traffic ---------------------------------------------------------------------------------------
class Record:
    def __init__(self):
        self.lock = threading.Lock()
        self.stored = set()            # update_ids answered 200
        self.webhook_refusals = Counter()
        self.replies = {}              # reply text -> message id (the API answered 201)
        self.reply_refusals = Counter()
        self.health = []               # (t, status code or error, body)
        self.probes = []               # (t started, instance id)
        self.window = "setup"
        self.windows = []              # (name, t start)


def client_loop(base, secret, rec: Record, stop, rate, contacts):
    """Steady client messages; each webhook retried until it is answered 200 (as Telegram does)."""
    update_id, pending = 20_000_000, []
    interval, nxt = 1.0 / rate, time.monotonic()
    while not stop.is_set() or pending:
        if not stop.is_set() and time.monotonic() >= nxt:
            update_id += 1
            pending.append((update_id, 800_000 + update_id % contacts))
            nxt += interval
        for item in list(pending):
            uid, user = item
            try:
                r = session().post(f"{base}/webhooks/telegram/1", json=update(uid, user, f"m{uid}"),
                                   headers={"X-Telegram-Bot-Api-Secret-Token": secret}, timeout=10)
                status = r.status_code
            except requests.RequestException as e:
                status = type(e).__name__
            if status == 200:
                pending.remove(item)
                with rec.lock:
                    rec.stored.add(uid)
            else:
                rec.webhook_refusals[(rec.window, status)] += 1
                break  # the provider backs off: try again shortly
        time.sleep(max(0.0, min(0.05, nxt - time.monotonic())))


def operator_loop(base, token, user_id, rec: Record, stop, replies_per_chat=3):
    api, sent, rounds = Api(base, token), Counter(), 0
    while not stop.is_set():
        rounds += 1
        try:
            if rounds % 10 == 1:  # the console's heartbeat: only present operators are offered chats
                api.call("PUT", "/api/me/presence", expect=None)
                # New users start inactive, and an offer missed during an outage makes one inactive: to work
                me = api.call("GET", "/api/me", expect=None)
                if me.status_code == 200 and me.json()["status"] != "active":
                    api.call("PUT", "/api/me/status", {"status": "active"}, expect=None)
            r = api.call("GET", "/api/me/chats?limit=100", expect=None)
            for c in r.json() if r.status_code == 200 else []:
                if c["state"] == "offered" and c["offered_to_id"] == user_id:
                    api.call("POST", f"/api/chats/{c['id']}/accept", expect=None)
                elif c["state"] == "in_work" and c["operator_id"] == user_id:
                    if sent[c["id"]] >= replies_per_chat:
                        api.call("POST", f"/api/chats/{c['id']}/complete", expect=None)
                        continue
                    text = f"reply {c['id']}-{sent[c['id']]}"
                    r = api.call("POST", f"/api/chats/{c['id']}/messages", {"text": text}, expect=None)
                    if r.status_code == 201:
                        sent[c["id"]] += 1
                        with rec.lock:
                            rec.replies[text] = r.json()["id"]
                    else:
                        rec.reply_refusals[(rec.window, r.status_code)] += 1
        except (requests.RequestException, ValueError):
            pass
        stop.wait(0.3)


def health_loop(base, rec: Record, stop):
    while not stop.is_set():
        try:
            r = session().get(f"{base}/healthz", timeout=5)
            rec.health.append((time.monotonic(), r.status_code, r.json()))
        except (requests.RequestException, ValueError) as e:
            rec.health.append((time.monotonic(), type(e).__name__, None))
        stop.wait(0.25)


def probe_loop(api: Api, rec: Record, stop):
    while not stop.is_set():
        try:
            r = api.call("POST", "/api/processes/UserTaskTimeout/instances", {"data": {}}, expect=None)
            if r.status_code == 201:
                rec.probes.append((rec.window, r.json()["id"]))
        except requests.RequestException:
            pass
        stop.wait(0.5)


# -- figures ---------------------------------------------------------------------------------------
def pct(values, p):
    values = sorted(values)
    return values[min(len(values) - 1, max(0, round(p / 100 * len(values) + 0.5) - 1))] if values else None


def main() -> int:
    args = parse_args()
    if PG_BIN is None or not shutil.which("redis-server"):
        print("needs PostgreSQL's server binaries (/usr/lib/postgresql/*/bin) and redis-server")
        return 2
    folder = Path(tempfile.mkdtemp(prefix="chatflow_faults_"))
    logdir = folder / "logs"
    logdir.mkdir()
    procs = Processes(logdir)
    pg, red = PrivatePostgres(folder), PrivateRedis(folder)
    fake = FakeTelegram(tokens=(BOT_TOKEN,))
    fake.delay = args.provider_delay
    rec, stop, failures = Record(), threading.Event(), []
    workers = []
    try:
        pg.start()
        pg.create_database()
        red.start()
        fake.__enter__()
        admin = "faults-bench-admin-token"
        env = {**os.environ, "DATABASE_URL": pg.dsn, "REDIS_URL": red.url, "CHATFLOW_BOOTSTRAP_ADMIN_TOKEN": admin,
               "TELEGRAM_API_BASE": fake.url, "CHATFLOW_OUTBOUND_RETRY_DELAYS": "1,2,4,8,16",
               "NO_PROXY": "127.0.0.1", "no_proxy": "127.0.0.1", "PYTHONUNBUFFERED": "1"}
        for var in ("HTTP_PROXY", "HTTPS_PROXY", "http_proxy", "https_proxy", "CHATFLOW_RQ_QUEUE"):
            env.pop(var, None)
        run([str(BIN / "chatflow"), "db", "upgrade"], env=env)
        run([str(BIN / "chatflow"), "deploy", "processes/ChatLifecycle.bpmn", str(TIMER_PROBE)], env=env)
        workers = [procs.start(f"worker{i}", [str(BIN / "chatflow"), "worker"], env) for i in (1, 2)]
        port = free_port()
        base = f"http://127.0.0.1:{port}"
        gunicorn = procs.start("gunicorn", [str(BIN / "gunicorn"), "-k", "gthread", "--threads", "16", "-w", "2",
                                            "-b", f"127.0.0.1:{port}", "--timeout", "60", "app:create_app()"], env)
        wait_until(lambda: session().get(base + "/healthz", timeout=5).status_code == 200, 60, "/healthz", procs)
        api = Api(base, admin)
        for code, value in (("SiteUrl", "https://chat.example.com"), ("SimultaneousChats", 3),
                            ("OmniChatOperatorAcceptChatTimeout", 0.25)):
            api.call("PUT", f"/api/settings/{code}", {"value": value})
        queue = api.call("POST", "/api/queues", {"name": "Faults", "routing_rule": "least_busy",
                                                 "completion_timeout_minutes": 0.5}).json()
        operators = []
        for i in range(args.operators):
            user = api.call("POST", "/api/users", {"login": f"op{i}"}).json()
            api.call("POST", f"/api/queues/{queue['id']}/operators", {"user_id": user["id"]})
            operators.append(user)
        api.call("POST", "/api/channels", {"provider": "telegram", "name": "Bot", "token": BOT_TOKEN,
                                           "queue_id": queue["id"], "active": True})
        with psycopg.connect(pg.dsn, autocommit=True) as conn:
            secret = conn.execute("select webhook_secret from channels where id = 1").fetchone()[0]

        threads = [threading.Thread(target=client_loop, args=(base, secret, rec, stop, args.rate, args.contacts)),
                   threading.Thread(target=health_loop, args=(base, rec, stop)),
                   threading.Thread(target=probe_loop, args=(api, rec, stop))]
        threads += [threading.Thread(target=operator_loop, args=(base, u["token"], u["id"], rec, stop))
                    for u in operators]
        for t in threads:
            t.start()

        def window(name, strike=None, heal=None, heal_after=None):
            rec.window = name
            rec.windows.append((name, time.monotonic()))
            print(f"{time.strftime('%H:%M:%S')} {name}", flush=True)
            if strike:
                strike()
            if heal:
                time.sleep(heal_after)
                heal()
            time.sleep(args.window - (heal_after or 0))

        def kill_scheduler_holder():
            r = redis.Redis.from_url(red.url)
            name = r.get("rq:scheduler-lock:chatflow").decode()
            pid = int(r.hget(f"rq:scheduler:{name}", "pid"))
            parent = int(Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()[1])
            victim = next(w for w in workers if w.pid == parent)
            os.killpg(victim.pid, signal.SIGKILL)
            workers.remove(victim)
            rec.killed_worker = victim

        def new_worker():  # as a supervisor (systemd, Kubernetes) would
            workers.append(procs.start("worker3", [str(BIN / "chatflow"), "worker"], env))

        def kill_web_worker():
            children = [int(p) for p in Path(f"/proc/{gunicorn.pid}/task/{gunicorn.pid}/children").read_text().split()]
            os.kill(children[0], signal.SIGKILL)

        def provider_fails():
            fake.fail_sends = 10 ** 9

        def provider_back():
            fake.fail_sends = 0

        window("baseline")
        window("worker SIGKILL", kill_scheduler_holder, new_worker, 10)
        window("web worker SIGKILL", kill_web_worker)
        window("Redis killed, restarted empty", red.kill, red.start, 3)
        window("provider 500s for 15 s", provider_fails, provider_back, 15)
        window("PostgreSQL stopped 10 s", pg.stop, pg.start, 10)
        window("recovery")
        stop.set()
        for t in threads:
            t.join(120)
        rec.window = "drain"

        # Settle: no reply pending or sending, every chat's lifecycle started, every probe's timer past due.
        def settled():
            with psycopg.connect(pg.dsn) as conn:
                return conn.execute("select (select count(*) from messages where status in ('pending', 'sending'))"
                                    " + (select count(*) from chats where process_instance_id is null)"
                                    " + (select count(*) from process_instances where process_key = 'UserTaskTimeout'"
                                    "    and next_timer_at is not null)").fetchone()[0] == 0
        try:
            wait_until(settled, 90, "replies and chats to settle")
        except TimeoutError as e:
            failures.append(str(e))
        return report(args, rec, pg, fake, workers, procs, failures)
    finally:
        stop.set()
        procs.stop()
        fake.__exit__(None, None, None)
        for step in (lambda: red.kill(), lambda: pg.stop("immediate")):
            try:
                step()
            except Exception:
                pass
        if not failures:
            shutil.rmtree(folder, ignore_errors=True)
        else:
            print(f"logs kept in {logdir}")


def report(args, rec, pg, fake, workers, procs, failures) -> int:
    with psycopg.connect(pg.dsn) as conn:
        inbound = Counter(int(x) for (x,) in conn.execute("select external_id from messages where direction = 'in'"))
        out = {text: (mid, status) for mid, text, status in
               conn.execute("select id, text, status from messages where direction = 'out'")}
        stuck_chats = conn.execute("select count(*) from chats where process_instance_id is null").fetchone()[0]
        errored = conn.execute("select count(*) from process_instances where state = 'error'").fetchone()[0]
        probe_rows = dict(conn.execute("""select i.id, extract(epoch from (e.at - i.created_at)) - 2
                                          from process_instances i join instance_events e on e.instance_id = i.id
                                          where e.event = 'timer_fired' and i.process_key = 'UserTaskTimeout'"""))
    sent_texts = Counter(fake.delivered)  # answered 200: the client has it
    lost_messages = len(rec.stored - set(inbound))
    duplicated_messages = sum(1 for n in inbound.values() if n > 1)
    statuses = Counter(status for _, status in out.values())
    lost_replies = [t for t in rec.replies if t not in out]
    twice = [t for t, (_, status) in out.items() if sent_texts[t] > 1 and status != "uncertain"]
    twice_uncertain = [t for t, (_, status) in out.items() if sent_texts[t] > 1 and status == "uncertain"]
    sent_not_delivered = [t for t, (_, status) in out.items() if status == "sent" and sent_texts[t] != 1]
    exited = [(n, p.returncode) for n, p, _ in procs.children
              if p.poll() is not None and p is not getattr(rec, "killed_worker", None)]

    names = [n for n, _ in rec.windows]
    starts = dict(rec.windows)
    lag = defaultdict(list)
    for window, instance_id in rec.probes:
        if instance_id in probe_rows:
            lag[window].append(float(probe_rows[instance_id]))
    unfired = [i for _, i in rec.probes if i not in probe_rows]
    health = {}
    for i, name in enumerate(names):
        end = starts[names[i + 1]] if i + 1 < len(names) else float("inf")
        inside = [(t, code, body) for t, code, body in rec.health if starts[name] <= t < end]
        last_bad = max((t for t, code, _ in inside if code != 200), default=None)
        health[name] = {"polls": len(inside), "503s": sum(1 for _, c, _ in inside if c == 503),
                        "healthy_again_after_s": None if last_bad is None else round(last_bad - starts[name], 1),
                        "ends_healthy": bool(inside) and inside[-1][1] == 200,
                        "down_named": sorted({k for _, c, b in inside if c == 503 and b
                                              for k, v in b["checks"].items() if not v["ok"]})}
    cpu = next((l.split(":", 1)[1].strip() for l in open("/proc/cpuinfo") if l.startswith("model name")), "?")
    figures = {
        "machine": f"nproc={os.cpu_count()} cpu={cpu!r} loadavg(1/5/15)={' '.join(f'{x:.1f}' for x in os.getloadavg())}",
        "client messages": {"stored": len(inbound), "acknowledged": len(rec.stored), "lost": lost_messages,
                            "stored twice": duplicated_messages,
                            "webhook refusals (retried)": {f"{w}: {s}": n for (w, s), n in rec.webhook_refusals.items()}},
        "replies": {"accepted by the API": len(rec.replies), "by status": dict(statuses), "lost": len(lost_replies),
                    "delivered twice without an operator's decision": len(twice),
                    "uncertain and delivered twice": len(twice_uncertain),
                    "sent but not delivered once": len(sent_not_delivered)},
        "chats stuck (no lifecycle)": stuck_chats, "instances in error": errored,
        "worker or web exits": exited,
        "health per window": health,
        "timer lag per window (s: p50, p99, max, n)": {
            w: [round(statistics.median(v), 2), round(pct(v, 99), 2), round(max(v), 2), len(v)] if v else None
            for w, v in ((n, lag.get(n, [])) for n in names)},
        "timer probes not fired": len(unfired),
    }
    print(json.dumps(figures, indent=1, default=str))
    checks = [("no client message lost", lost_messages == 0), ("none stored twice", duplicated_messages == 0),
              ("no reply lost", not lost_replies), ("no reply delivered twice silently", not twice),
              ("every sent reply delivered once", not sent_not_delivered),
              ("no reply left pending or sending", not statuses.get("pending") and not statuses.get("sending")),
              ("no chat stuck", stuck_chats == 0), ("no process instance in error", errored == 0),
              ("no worker or web exit", not exited), ("every timer probe fired", not unfired),
              ("health right at the end of every window", all(h["ends_healthy"] for h in health.values()))]
    for name, passed in checks:
        print(("PASS " if passed else "FAIL ") + name)
        if not passed:
            failures.append(name)
    return 1 if failures else 0


if __name__ == "__main__":
    sys.exit(main())
