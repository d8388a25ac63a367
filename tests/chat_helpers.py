"""The tests' shared helpers: answers (`ok`, `error`), engine set-up (`deploy`, `start`), and for
chats over HTTP the lifecycle, settings, queues, operators, Telegram channels, client messages,
and reads of chats, their history and their process instance.

Chat set-up goes through the public API (as an admin's script would), except the channel's
webhook secret, which Telegram alone learns (read from the database here).
"""
import itertools
import json
import os
import re
import time
from dataclasses import dataclass
from pathlib import Path

from rq import Worker
from rq.job import Job
from rq.registry import ScheduledJobRegistry
from sqlalchemy import func, select

from app.extensions import db
from app.models import ProcessInstance
from app.models.chat import Channel
from app.services import services
from conftest import DATA, Api, wait_for
from fakes.telegram import update

ROOT = Path(__file__).parent.parent
LIFECYCLE = ROOT / "processes" / "ChatLifecycle.bpmn"
ACCEPT_TIMER = """f"R/PT{routing['accept_timeout_seconds']}S\""""

_update_ids = itertools.count(1)
_client_ids = itertools.count(7001)


def set_at(body: dict, path: tuple, value) -> dict:
    """`body` with the value at a path of keys replaced (KeyError: the key removed), for odd payloads."""
    target = body
    for key in path[:-1]:
        target = target[key]
    if value is KeyError:
        del target[path[-1]]
    else:
        target[path[-1]] = value
    return body


def ok(response, status=200):
    assert response.status_code == status, (response.status_code, response.get_data(as_text=True)[:500])
    return response.get_json()


def error(resp, status, code=None, field=None):
    """Assert an error answer in the JSON error format (`{"error": {"code", "message", "details"}}`):
    its status, and its code and details.field when given. Answers the `error` object."""
    assert resp.status_code == status, (resp.status_code, resp.get_data(as_text=True)[:500])
    assert resp.is_json, resp.get_data(as_text=True)[:500]
    answer = resp.get_json()
    assert set(answer) == {"error"}, answer
    body = answer["error"]
    assert set(body) == {"code", "message", "details"}, body
    assert isinstance(body["code"], str) and re.fullmatch(r"[a-z0-9_]+", body["code"]), body
    assert isinstance(body["message"], str) and body["message"], body
    assert isinstance(body["details"], dict), body
    if code:
        assert body["code"] == code, body
    if field:
        assert body["details"].get("field") == field, body
    return body


def count(api, model, *where):
    """Rows of `model` in the test database (matching `where`)."""
    with api.app.app_context():
        n = db.session.scalar(select(func.count()).select_from(model).where(*where))
        db.session.remove()
        return n


def rows(api, query):
    with api.app.app_context():
        out = list(db.session.scalars(query))
        db.session.expunge_all()
        db.session.remove()
        return out


def error_code(response):
    body = response.get_json() or {}
    return body.get("error", {}).get("code")


# -- BPMN written in tests -----------------------------------------------------------------
BPMN_HEAD = """<?xml version="1.0" encoding="UTF-8"?>
<bpmn:definitions xmlns:bpmn="http://www.omg.org/spec/BPMN/20100524/MODEL" \
xmlns:spiffworkflow="http://spiffworkflow.org/bpmn/schema/1.0/core" id="defs" targetNamespace="http://bpmn.io/schema/bpmn">
"""
# Line numbers inside `process()`: the <process> tag is line 3, `body` starts on line 6.
BODY_LINE = 6


def process(body: str, key: str = "p", executable: str = "true") -> str:
    """A process start -> work -> end; `body` must define the element `work` (and may add more)."""
    return BPMN_HEAD + f"""  <bpmn:process id="{key}" isExecutable="{executable}">
    <bpmn:startEvent id="start" />
    <bpmn:sequenceFlow id="f1" sourceRef="start" targetRef="work" />
{body}
    <bpmn:sequenceFlow id="f2" sourceRef="work" targetRef="end" />
    <bpmn:endEvent id="end" />
  </bpmn:process>
</bpmn:definitions>
"""


def timer_process(text: str, kind: str = "timeDuration", key: str = "p") -> str:
    return process(f'    <bpmn:intermediateCatchEvent id="work"><bpmn:timerEventDefinition id="work_timer">'
                   f'<bpmn:{kind}>{text}</bpmn:{kind}></bpmn:timerEventDefinition></bpmn:intermediateCatchEvent>',
                   key=key)


def service_task(operator: str, value: str = "1 + 1") -> str:
    return ('    <bpmn:serviceTask id="work"><bpmn:extensionElements>'
            f'<spiffworkflow:serviceTaskOperator id="{operator}" resultVariable="r"><spiffworkflow:parameters>'
            f'<spiffworkflow:parameter id="value" type="any" value="{value}" /></spiffworkflow:parameters>'
            '</spiffworkflow:serviceTaskOperator></bpmn:extensionElements></bpmn:serviceTask>')


# -- jobs ---------------------------------------------------------------------------------
def settled(app, timeout=10.0) -> None:
    """Wait until the app's jobs have caught up: none that is due waits, none runs (the
    embedded job thread; or RQ's queue, its due scheduled jobs and its live workers). What a
    test then asserts did not happen, no job due so far can still do; `pending_jobs` names
    the jobs scheduled for later."""
    jobs = services(app).jobs
    idle = jobs.idle if hasattr(jobs, "idle") else lambda: _rq_idle(jobs)
    wait_for(idle, timeout=timeout, message="the jobs to settle")


def pending_jobs(app) -> list[str]:
    """The names (dotted paths) of the jobs queued or scheduled, not yet started."""
    jobs = services(app).jobs
    if hasattr(jobs, "waiting"):
        return jobs.waiting()
    ids = jobs.queue.get_job_ids() + ScheduledJobRegistry(queue=jobs.queue).get_job_ids()
    return [job.func_name for job in Job.fetch_many(ids, connection=jobs.connection) if job is not None]


def _rq_idle(jobs) -> bool:
    queue = jobs.queue
    if queue.count or ScheduledJobRegistry(queue=queue).get_jobs_to_schedule(int(time.time())):
        return False
    return not any(w.get_state() == "busy" and _alive(w.pid) for w in Worker.all(connection=jobs.connection))


def _alive(pid) -> bool:
    """A worker killed in a test leaves its registration `busy` until it expires: only live ones count."""
    try:
        os.kill(pid, 0)
        return True
    except (OSError, TypeError):
        return False


# -- the engine, without HTTP ----------------------------------------------------------
def deploy(app, *files) -> list[dict]:
    """Deploy through the engine: file names under tests/data/engine, or (name, xml) pairs."""
    files = [f if isinstance(f, tuple) else (f, (DATA / "engine" / f).read_bytes()) for f in files]
    with app.app_context():
        result = services(app).engine.deploy(files)
        db.session.commit()
        return result


def start(app, key: str, data: dict | None = None) -> int:
    """Start the latest version of `key` through the engine; answers the instance's id."""
    with app.app_context():
        instance = services(app).engine.start(key, data)
        db.session.commit()
        return instance.id


# -- setup ------------------------------------------------------------------------------
def deploy_lifecycle(api: Api, xml: bytes | str | None = None, name="ChatLifecycle.bpmn") -> dict:
    """Deploy the shipped ChatLifecycle.bpmn (or a variant of it); answers the deployed entry."""
    response = api.deploy((name, xml if xml is not None else LIFECYCLE.read_bytes()))
    assert response.status_code in (200, 201), response.get_data(as_text=True)
    (entry,) = [p for p in response.get_json()["processes"] if p["key"] == "ChatLifecycle"]
    return entry


def put_setting(api: Api, code: str, value):
    return ok(api.put(f"/api/settings/{code}", {"value": value}))


def configure(api: Api, accept_timeout_minutes=5, simultaneous_chats=2):
    put_setting(api, "SiteUrl", "https://chat.example.com")
    put_setting(api, "OmniChatOperatorAcceptChatTimeout", accept_timeout_minutes)
    put_setting(api, "SimultaneousChats", simultaneous_chats)


def make_queue(api: Api, rule="least_busy", completion_timeout_minutes=None, name=None) -> dict:
    return ok(api.post("/api/queues", {"name": name or f"{rule} queue", "routing_rule": rule,
                                       "completion_timeout_minutes": completion_timeout_minutes}), 201)


@dataclass
class Operator:
    id: int
    login: str
    token: str
    api: Api

    def me(self) -> dict:
        return ok(self.api.get("/api/me"))

    def heartbeat(self) -> dict:
        return ok(self.api.put("/api/me/presence"))

    def set_status(self, status: str) -> dict:
        return ok(self.api.put("/api/me/status", {"status": status}))

    def chats(self) -> list[dict]:
        return ok(self.api.get("/api/chats"))

    def chat_ids(self) -> list[int]:
        return [c["id"] for c in self.chats()]

    def accept(self, chat_id: int):
        return self.api.post(f"/api/chats/{chat_id}/accept")

    def reply(self, chat_id: int, text: str):
        return self.api.post(f"/api/chats/{chat_id}/messages", {"text": text})

    def complete(self, chat_id: int):
        return self.api.post(f"/api/chats/{chat_id}/complete")


def at_work(user_api: Api) -> None:
    """A new user (inactive, not connected) sets themselves to work as an API client does."""
    ok(user_api.put("/api/me/presence"))
    ok(user_api.put("/api/me/status", {"status": "active"}))


def make_operator(api: Api, login: str, *queue_ids: int, status="active", connected=True) -> Operator:
    """A user serving the queues; new users start inactive, so by default they set themselves
    active and send a presence heartbeat, as an API client at work does."""
    user = ok(api.post("/api/users", {"login": login, "name": login.title()}), 201)
    for queue_id in queue_ids:
        ok(api.post(f"/api/queues/{queue_id}/operators", {"user_id": user["id"]}), 201)
    operator = Operator(user["id"], login, user["token"], api.as_user(user["token"]))
    if connected:
        operator.heartbeat()
    if status != "inactive":
        operator.set_status(status)
    return operator


@dataclass
class Client:
    """A Telegram user writing to one channel."""
    api: Api
    channel_id: int
    secret: str
    user_id: int

    def writes(self, text="hello", update_id=None):
        body = update(update_id or next(_update_ids) + 100_000 * self.channel_id, self.user_id, text,
                      first_name=f"Client{self.user_id}")
        response = self.api.client.post(f"/webhooks/telegram/{self.channel_id}", json=body,
                                        headers={"X-Telegram-Bot-Api-Secret-Token": self.secret})
        ok(response)
        return response.get_json()


@dataclass
class TelegramChannel:
    api: Api
    id: int
    secret: str

    def client(self, user_id: int | None = None) -> Client:
        return Client(self.api, self.id, self.secret, user_id or next(_client_ids))


def make_channel(api: Api, queue_id: int, token="123:good-token", name=None) -> TelegramChannel:
    channel = ok(api.post("/api/channels", {"provider": "telegram", "name": name or f"Bot {queue_id}",
                                            "token": token, "queue_id": queue_id, "active": True}), 201)
    return telegram_channel(api, channel["id"])


def telegram_channel(api: Api, channel_id: int) -> TelegramChannel:
    """An existing Telegram channel, with the webhook secret only Telegram would know."""
    with api.app.app_context():
        secret = db.session.get(Channel, channel_id).webhook_secret
        db.session.remove()
    return TelegramChannel(api, channel_id, secret)


# -- reading ----------------------------------------------------------------------------
def get_chat(api: Api, chat_id: int) -> dict:
    return ok(api.get(f"/api/chats/{chat_id}"))


def history(api: Api, chat_id: int) -> list[dict]:
    return ok(api.get(f"/api/chats/{chat_id}/history?limit=1000"))


def events(api: Api, chat_id: int, name: str) -> list[dict]:
    return [e for e in history(api, chat_id) if e["event"] == name]


def instance(api: Api, instance_id: int) -> dict:
    return ok(api.get(f"/api/process-instances/{instance_id}"))


def new_chat(api: Api, client: Client, text="hello", timeout=10.0) -> dict:
    """The client writes; wait until their (new) chat's lifecycle has routed it."""
    before = {c["id"] for c in ok(api.get("/api/chats?limit=1000"))}
    client.writes(text)

    def routed():
        for c in ok(api.get("/api/chats?limit=1000")):
            if c["id"] not in before and c["channel_id"] == client.channel_id and c["process_instance_id"]:
                # routed = the lifecycle recorded its first routing decision
                if any(e["event"] in ("offered", "queued", "waiting_for_operator")
                       for e in history(api, c["id"])):
                    return c
        return None

    found = wait_for(routed, timeout=timeout, message="the new chat to be routed")
    return get_chat(api, found["id"])


def wait_chat(api: Api, chat_id: int, predicate, message="chat condition", timeout=10.0) -> dict:
    return wait_for(lambda: (lambda c: c if predicate(c) else None)(get_chat(api, chat_id)),
                    timeout=timeout, message=message)


def workflow_shape(app, instance_id: int) -> dict:
    """Size of the stored workflow state, its task count and the depth of its task tree."""
    with app.app_context():
        text = db.session.get(ProcessInstance, instance_id).workflow_state
        db.session.remove()
    state = json.loads(text)
    tasks = state["tasks"]
    subprocess_tasks = sum(len(sp.get("tasks", {})) for sp in state.get("subprocesses", {}).values())

    def depth(task_id):
        d = 0
        while task_id is not None:
            d += 1
            task_id = tasks[task_id].get("parent")
        return d

    return {"size": len(text), "tasks": len(tasks), "subprocesses": len(state.get("subprocesses", {})),
            "subprocess_tasks": subprocess_tasks, "depth": max(depth(t) for t in tasks)}
