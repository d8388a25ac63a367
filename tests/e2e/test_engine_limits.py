"""Runaway diagrams are bounded: a script-task cycle, `while True` in a script and a ten-million
multi-instance each end in `error`, undone to their last wait, while the same web process and
worker go on serving other instances."""
import os
import threading
import time
from datetime import datetime

import pytest
import requests

from chat_helpers import instance
from conftest import ADMIN_TOKEN, DATA, Api, wait_for
from app.extensions import db
from app.models import ProcessInstance

ENGINE = DATA / "engine"
BUDGET_S = 2.0
# Short enough for tests; scripts get operations enough that `while True` meets the time budget.
LIMITS = {"ENGINE_TIME_LIMIT_SECONDS": BUDGET_S, "SCRIPT_OPERATION_LIMIT": 10 ** 9}
RUNAWAYS = {"RunawayCycle": "runaway_cycle.bpmn", "RunawaySpin": "runaway_spin.bpmn",
            "RunawayCardinality": "runaway_cardinality.bpmn"}
STOPPED_AT = {"RunawayCycle": {"check", "bump"}, "RunawaySpin": {"spin"}, "RunawayCardinality": {"fan_out"}}


@pytest.fixture
def shape(make_app, monkeypatch, request):
    """The suite's shape with a short time budget: embedded jobs, or (REDIS_URL set) RQ and a
    real `chatflow worker` that reads the same budget from its environment."""
    for key, value in LIMITS.items():
        monkeypatch.setenv(f"CHATFLOW_{key}", str(value))
    redis_url = os.environ.get("REDIS_URL")
    app = make_app(redis_url=redis_url, **LIMITS)
    worker = request.getfixturevalue("start_worker")(sweep_seconds=0.5) if redis_url else None
    api = Api(app)
    assert api.deploy(*(ENGINE / f for f in RUNAWAYS.values()), ENGINE / "short_timer.bpmn").status_code == 201
    return app, worker


def assert_stopped(body: dict, key: str, data: dict) -> datetime:
    """In error at one of its runaway elements, with the data of its last wait; returns when."""
    assert body["state"] == "error", body
    element = body["error"].removeprefix("step limit exceeded at ").split(":")[0]
    assert body["error"].startswith("step limit exceeded at ") and element in STOPPED_AT[key], body["error"]
    assert body["data"] == data
    (event,) = [e for e in body["history"] if e["event"] == "error"]
    assert (event["task"], event["details"]["message"]) == (element, body["error"])
    return datetime.fromisoformat(event["at"])


@pytest.mark.parametrize("key", RUNAWAYS)
def test_runaway_in_a_request_ends_in_error_while_the_web_process_serves_another(shape, serve, key):
    app, _ = shape
    base = serve(app)
    headers = {"Authorization": f"Bearer {ADMIN_TOKEN}"}
    runaway = {}

    def start_runaway():
        began = time.monotonic()
        r = requests.post(f"{base}/api/processes/{key}/instances", headers=headers, timeout=60,
                          json={"data": {"wait_first": False, "label": "keep"}})
        runaway.update(status=r.status_code, body=r.json(), seconds=time.monotonic() - began,
                       answered_at=time.monotonic())

    thread = threading.Thread(target=start_runaway)
    thread.start()
    other = requests.post(f"{base}/api/processes/ShortTimer/instances", headers=headers, json={"data": {}},
                          timeout=60).json()
    done = requests.post(f"{base}/api/process-instances/{other['id']}/tasks/approve/complete", headers=headers,
                         json={"data": {"ok": True}}, timeout=60).json()
    other_done_at = time.monotonic()
    thread.join(timeout=60)

    assert done["state"] == "completed" and done["data"]["ok"] is True
    assert runaway["status"] == 201, runaway
    assert runaway["seconds"] < BUDGET_S + 1, f"answered after {runaway['seconds']:.1f}s"
    assert_stopped(instance(Api(app), runaway["body"]["id"]), key, {"wait_first": False, "label": "keep"})
    with app.app_context():
        parallel = db.engine.dialect.name == "postgresql"  # SQLite has one writer at a time
    if key == "RunawaySpin" and parallel:  # the only runaway that runs for its whole budget
        assert other_done_at < runaway["answered_at"], "the other instance waited for the runaway"


@pytest.mark.parametrize("key", RUNAWAYS)
def test_runaway_on_the_worker_ends_in_error_and_the_worker_serves_the_next_job(shape, key):
    app, worker = shape
    api = Api(app)
    data = {"wait_first": True, "label": "keep"}
    started = api.post(f"/api/processes/{key}/instances", {"data": data}).get_json()
    assert started["state"] == "waiting"  # on its timer: what follows runs on the worker
    other = api.post("/api/processes/ShortTimer/instances", {"data": {}}).get_json()  # a timer job beside it

    stopped = wait_for(lambda: (i := instance(api, started["id"]))["state"] not in ("waiting", "running") and i,
                       timeout=BUDGET_S + 20, message="the runaway to be stopped")
    assert_stopped(stopped, key, data)  # never `completed`, never emptied
    # Stopped by the worker's own budget (its environment's, not the default 5 s). How soon after
    # its timer the worker got to it is the machine's load, not the budget: no time is asserted.
    if "ran longer than" in stopped["error"]:
        assert f"ran longer than {BUDGET_S:g} s" in stopped["error"], stopped["error"]

    wait_for(lambda: instance(api, other["id"])["state"] == "completed", timeout=20, message="the other timer")
    nxt = api.post("/api/processes/ShortTimer/instances", {"data": {}}).get_json()
    done = wait_for(lambda: (i := instance(api, nxt["id"]))["state"] == "completed" and i, timeout=20,
                    message="the next timer job")
    assert done["data"]["timed_out"] is True
    assert worker is None or worker.poll() is None  # the worker process survived


def test_step_limit_stops_a_cycle_and_retry_resumes_from_the_last_wait(make_app):
    app = make_app(ENGINE_STEP_LIMIT=50)
    api = Api(app)
    assert api.deploy(ENGINE / "runaway_cycle.bpmn").status_code == 201
    started = api.post("/api/processes/RunawayCycle/instances", {"data": {"wait_first": False}}).get_json()
    assert started["error"].endswith(": more than 50 steps without reaching a wait")
    assert_stopped(instance(api, started["id"]), "RunawayCycle", {"wait_first": False})

    retried = api.post(f"/api/process-instances/{started['id']}/retry").get_json()
    assert retried["state"] == "error" and retried["data"] == {"wait_first": False}
    assert [e["event"] for e in retried["history"]][-2:] == ["retried", "error"]
    assert api.post(f"/api/process-instances/{started['id']}/cancel").get_json()["state"] == "cancelled"


FAN_OUT = """<?xml version="1.0" encoding="UTF-8"?>
<bpmn:definitions xmlns:bpmn="http://www.omg.org/spec/BPMN/20100524/MODEL" id="d" targetNamespace="http://bpmn.io/schema/bpmn">
  <bpmn:process id="FanOut" isExecutable="true">
    <bpmn:startEvent id="start" />
    <bpmn:sequenceFlow id="f1" sourceRef="start" targetRef="look" />
    <bpmn:userTask id="look" />
    <bpmn:sequenceFlow id="f2" sourceRef="look" targetRef="fan_out" />
    <bpmn:scriptTask id="fan_out">
      <bpmn:multiInstanceLoopCharacteristics><bpmn:loopCardinality>count</bpmn:loopCardinality></bpmn:multiInstanceLoopCharacteristics>
      <bpmn:script>x = 1</bpmn:script></bpmn:scriptTask>
    <bpmn:sequenceFlow id="f3" sourceRef="fan_out" targetRef="done" />
    <bpmn:endEvent id="done" />
  </bpmn:process>
</bpmn:definitions>
"""


def test_a_stopped_instance_is_undone_to_its_wait_and_takes_nothing_until_retried(make_app):
    api = Api(make_app(MULTI_INSTANCE_LIMIT=3))
    assert api.deploy(("fan_out.bpmn", FAN_OUT)).status_code == 201
    started = api.post("/api/processes/FanOut/instances", {"data": {"count": 4}}).get_json()
    tasks = f"/api/process-instances/{started['id']}/tasks/look/complete"

    stopped = api.post(tasks, {"data": {"note": "seen"}}).get_json()
    assert stopped["state"] == "error"
    assert stopped["error"] == ("step limit exceeded at fan_out: a multi-instance cardinality of 4 items is above "
                                "the limit of 3")
    assert stopped["data"] == {"count": 4}  # the completion was undone with the rest of the advance
    assert [w["task"] for w in stopped["waiting_for"]] == ["look"]

    again = api.post(tasks, {"data": {}})
    assert again.status_code == 409 and again.get_json()["error"]["code"] == "instance_stopped"

    resumed = api.post(f"/api/process-instances/{started['id']}/retry").get_json()
    assert (resumed["state"], resumed["error"]) == ("waiting", None)
    done = api.post(tasks, {"data": {"count": 3}}).get_json()
    assert done["state"] == "completed" and done["data"]["count"] == 3


def test_a_self_calling_process_is_refused_at_deploy_and_nothing_is_stored(api):
    xml = FAN_OUT.replace('<bpmn:userTask id="look" />', '<bpmn:callActivity id="look" calledElement="FanOut" />')
    r = api.deploy(("self_call.bpmn", xml))
    assert r.status_code == 422
    (problem,) = r.get_json()["error"]["details"]["problems"]
    assert problem["element_id"] == "look" and problem["line"] == 6
    assert problem["problem"].startswith("call activity reaches its own process FanOut (FanOut -> FanOut)")
    assert api.post("/api/processes/FanOut/instances", {"data": {}}).status_code == 404
