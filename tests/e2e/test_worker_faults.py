"""Workers that outlive Redis, honest health, timers on time after a worker dies.

Real `chatflow worker` processes; Redis that is killed and restarted is a private redis-server
started here on a free port (never the machine's shared one).
"""
import os
import shutil
import signal
import socket
import subprocess
import tempfile
import time
from datetime import timedelta
from pathlib import Path

import pytest
from redis import Redis
from rq import Queue
from sqlalchemy import select

from app.extensions import db
from app.models import InstanceEvent, ProcessInstance
from chat_helpers import configure, deploy_lifecycle, make_channel, make_operator, make_queue, new_chat, ok
from conftest import DATA, Api, wait_for

REDIS_SERVER = shutil.which("redis-server")


class PrivateRedis:
    """A redis-server of our own, without persistence: killed, it comes back empty."""

    def __init__(self):
        with socket.socket() as s:
            s.bind(("127.0.0.1", 0))
            self.port = s.getsockname()[1]
        self.url = f"redis://127.0.0.1:{self.port}/0"
        self.folder = tempfile.mkdtemp(prefix="chatflow-redis-")
        self.proc = None

    def start(self):
        self.proc = subprocess.Popen([REDIS_SERVER, "--port", str(self.port), "--bind", "127.0.0.1", "--save", "",
                                      "--appendonly", "no", "--dir", self.folder],
                                     stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL, start_new_session=True)
        wait_for(self.answers, timeout=10, message="the private redis-server to answer")

    def kill(self):
        self.proc.kill()
        self.proc.wait(timeout=10)

    def answers(self) -> bool:
        try:
            return bool(Redis.from_url(self.url, socket_connect_timeout=0.5).ping())
        except Exception:
            return False


@pytest.fixture
def private_redis():
    if REDIS_SERVER is None:
        pytest.skip("no redis-server on this machine")
    redis = PrivateRedis()
    redis.start()
    yield redis
    if redis.proc.poll() is None:
        redis.kill()
    shutil.rmtree(redis.folder, ignore_errors=True)


def stop(proc) -> str:
    """SIGTERM the worker; it must end by itself, cleanly. Returns what it logged."""
    os.killpg(proc.pid, signal.SIGTERM)
    assert proc.wait(timeout=30) == 0
    return proc.stderr.read().decode(errors="replace")


def chat_in_work(api):
    deploy_lifecycle(api)
    configure(api)
    queue = make_queue(api, rule="all")
    operator = make_operator(api, "op", queue["id"])
    chat = new_chat(api, make_channel(api, queue["id"]).client(), timeout=20)
    ok(operator.accept(chat["id"]))
    return operator, chat


def reply_status(operator, chat_id, message_id) -> str:
    return next(m["status"] for m in ok(operator.api.get(f"/api/chats/{chat_id}/messages?limit=1000"))
                if m["id"] == message_id)


# -- a busy worker outlives Redis ------------------------------------------------------------------
def test_redis_killed_under_a_busy_worker_leaves_it_running_and_jobs_flow_after(
        make_app, start_worker, private_redis, telegram):
    app = make_app(redis_url=private_redis.url)
    api = Api(app)
    # The sweep only every minute: what moves after the restart is moved by RQ jobs.
    worker = start_worker(sweep_seconds=60, grace_seconds=60, REDIS_URL=private_redis.url)
    operator, chat = chat_in_work(api)

    release = telegram.hold_answers()  # the worker sits in its job, waiting for Telegram
    busy = ok(operator.reply(chat["id"], "during the outage"), 201)
    wait_for(lambda: any(p["text"] == "during the outage" for p in telegram.sent()), timeout=20,
             message="the worker to be inside its job")
    private_redis.kill()
    release.set()
    # The job ends while Redis is away: its result is in the database, RQ's bookkeeping fails.
    wait_for(lambda: reply_status(operator, chat["id"], busy["id"]) == "sent", timeout=20,
             message="the job to finish while Redis is away")
    time.sleep(3)  # the outage goes on: the worker tries to start RQ's loop again while Redis is away
    private_redis.start()  # empty

    # Jobs flow again through RQ: a new reply is queued and sent by the same worker.
    telegram.held = None
    after = ok(operator.reply(chat["id"], "after the outage"), 201)
    wait_for(lambda: reply_status(operator, chat["id"], after["id"]) == "sent", timeout=30,
             message="a job enqueued after the restart to run")
    job = Queue("chatflow", connection=Redis.from_url(private_redis.url)).enqueue("app.jobs.sweep", 0)
    wait_for(lambda: job.get_status(refresh=True) == "finished", timeout=30, message="an RQ job to run")
    assert worker.poll() is None, "the worker exited"
    assert [p["text"] for p in telegram.sent()].count("during the outage") == 1
    log = stop(worker)
    assert log.count("Redis is unreachable") == 1, log[-3000:]  # once per outage, not per attempt
    assert "quitting" not in log, log[-3000:]


# -- /healthz counts workers by their heartbeats ----------------------------------------------------
def test_healthz_is_right_within_a_heartbeat_of_redis_restarting_empty(make_app, start_worker, private_redis):
    app = make_app(redis_url=private_redis.url)
    api = Api(app)
    start_worker(sweep_seconds=1, grace_seconds=0.5, REDIS_URL=private_redis.url)
    start_worker(sweep_seconds=1, grace_seconds=0.5, REDIS_URL=private_redis.url)
    healthy = api.get("/healthz", token=None)
    assert healthy.status_code == 200, healthy.get_json()
    assert healthy.get_json()["checks"]["jobs"] == {"ok": True, "backend": "rq", "workers": 2, "source": "redis"}

    private_redis.kill()
    down = api.get("/healthz", token=None)
    assert down.status_code == 503
    checks = down.get_json()["checks"]
    assert checks["database"] == {"ok": True} and checks["redis"]["ok"] is False
    # Redis is away, the workers are not: their beats in the database say so.
    assert checks["jobs"] == {"ok": True, "backend": "rq", "workers": 2, "source": "database"}

    private_redis.start()  # empty: RQ's registry of workers is gone for good
    back = time.monotonic()

    def both_counted():
        answer = api.get("/healthz", token=None)
        return answer.status_code == 200 and answer.get_json()["checks"]["jobs"]["workers"] == 2

    wait_for(both_counted, timeout=10, interval=0.05, message="/healthz to count both workers again")
    assert time.monotonic() - back < 1 + 1.5  # one heartbeat (1 s), and the time to write it on a busy machine


# -- timers keep their time when the worker holding RQ's scheduler dies ------------------------------
TEN_SECONDS = (DATA / "user_task_timeout.bpmn").read_text().replace("PT2S", "PT10S") \
    .replace('id="UserTaskTimeout"', 'id="TenSecondTimer"')


def scheduler_holder(redis_url, workers):
    """The worker whose forked scheduler holds RQ's scheduler lock."""
    connection = Redis.from_url(redis_url)
    name = wait_for(lambda: connection.get("rq:scheduler-lock:chatflow"), message="a scheduler to hold the lock")
    pid = int(wait_for(lambda: connection.hget(f"rq:scheduler:{name.decode()}", "pid"),
                       message="the scheduler's pid"))
    parent = int(Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()[1])
    (holder,) = [w for w in workers if w.pid == parent]
    return holder


def test_a_timer_fires_on_time_after_the_scheduler_holding_worker_is_killed(make_app, redis_url, start_worker):
    app = make_app(redis_url=redis_url)
    api = Api(app)
    workers = [start_worker(sweep_seconds=1, grace_seconds=0.5) for _ in range(2)]
    assert api.deploy(("ten_seconds.bpmn", TEN_SECONDS)).status_code == 201
    holder = scheduler_holder(redis_url, workers)
    os.killpg(holder.pid, signal.SIGKILL)
    holder.wait(timeout=10)
    assert Redis.from_url(redis_url).get("rq:scheduler-lock:chatflow")  # its lock lives on (61 s)

    instance_id = ok(api.post("/api/processes/TenSecondTimer/instances", {"data": {}}), 201)["id"]
    with app.app_context():
        due = db.session.get(ProcessInstance, instance_id).next_timer_at
        db.session.remove()

    def fired():
        with app.app_context():
            event = db.session.scalars(select(InstanceEvent).where(InstanceEvent.instance_id == instance_id,
                                                                   InstanceEvent.event == "timer_fired")).first()
            db.session.remove()
        return event

    event = wait_for(fired, timeout=30, interval=0.1, message="the timer to fire")
    assert due <= event.at <= due + timedelta(seconds=2), (due, event.at)
