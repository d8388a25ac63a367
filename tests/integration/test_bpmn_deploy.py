"""Deploying BPMN over HTTP: timers run with the due time their text gives, refusals name file,
element, line and problem for every file of a batch, third-party files from the corpus."""
from datetime import datetime, timedelta, timezone

import pytest

from chat_helpers import BODY_LINE, process, service_task, timer_process
from conftest import DATA

MIWG = DATA / "bpmn-corpus" / "miwg"


def _due(waits) -> datetime:
    (timer,) = [w for w in waits if w["kind"] == "timer"]
    assert timer["task"] == "work"
    due = datetime.fromisoformat(timer["due_at"])
    return due if due.tzinfo else due.replace(tzinfo=timezone.utc)


@pytest.mark.parametrize("text, kind, data, seconds", [
    ("PT5M", "timeDuration", {}, 300),
    ('f"PT{n}S"', "timeDuration", {"n": 90}, 90),
    ("=f'PT{n * 2}M'", "timeDuration", {"n": 5}, 600),
    ("R3/PT10M", "timeCycle", {}, 600),
])
def test_timer_runs_with_due_time_from_its_text(api, text, kind, data, seconds):
    assert api.deploy(("timer.bpmn", timer_process(text, kind, key="TimerText"))).status_code == 201
    before = datetime.now(timezone.utc)
    response = api.post("/api/processes/TimerText/instances", {"data": data})
    after = datetime.now(timezone.utc)
    assert response.status_code == 201, response.get_json()
    started = response.get_json()
    assert started["state"] == "waiting"
    due = _due(started["waiting_for"])
    assert before + timedelta(seconds=seconds - 1) <= due <= after + timedelta(seconds=seconds + 1)


def test_naive_timer_date_is_utc_at_run_time(api):
    api.deploy(("date.bpmn", timer_process("2031-05-06T07:08:09", "timeDate", key="TimerDate")))
    started = api.post("/api/processes/TimerDate/instances", {"data": {}}).get_json()
    assert _due(started["waiting_for"]) == datetime(2031, 5, 6, 7, 8, 9, tzinfo=timezone.utc)


def test_api_refusal_has_file_element_line_and_problem(api):
    response = api.deploy(("bad.bpmn", process('    <bpmn:callActivity id="work" calledElement="elsewhere" />')))
    assert response.status_code == 422
    error = response.get_json()["error"]
    assert error["code"] == "invalid_bpmn"
    details = error["details"]
    assert (details["file"], details["line"], details["element_id"]) == ("bad.bpmn", BODY_LINE, "work")
    assert details["problem"].startswith("call activity calls process 'elsewhere'")
    assert error["message"].startswith(f"bad.bpmn:{BODY_LINE} work call activity")
    assert len(details["problems"]) == 1


def test_api_refuses_whole_batch_and_unknown_operation(api):
    good = ("good.bpmn", timer_process("PT5M", key="Good"))
    bad = ("ops.bpmn", process(service_task("launch_missiles"), key="Ops"))
    response = api.deploy(good, bad)
    assert response.status_code == 422
    problems = response.get_json()["error"]["details"]["problems"]
    assert [(p["file"], p["element_id"]) for p in problems] == [("ops.bpmn", "work")]
    assert "unknown operation 'launch_missiles'" in problems[0]["problem"]
    assert api.post("/api/processes/Good/instances", {"data": {}}).status_code == 404


def test_deploy_corpus_file_through_api(api):
    response = api.deploy(MIWG / "ref_C.9.1_camunda-web-modeler_timer-boundary.bpmn")
    assert response.status_code == 201, response.get_json()
    assert response.get_json()["processes"] == [{"key": "requestDocument_en", "version": 1, "new": True}]
    again = api.deploy(MIWG / "ref_C.9.1_camunda-web-modeler_timer-boundary.bpmn")
    assert again.status_code == 200
    assert again.get_json()["processes"] == [{"key": "requestDocument_en", "version": 1, "new": False}]


def test_refused_corpus_file_through_api(api):
    response = api.deploy(MIWG / "camunda-modeler-5.34_C.9.1-export.bpmn")
    assert response.status_code == 422
    details = response.get_json()["error"]["details"]
    assert {k: details[k] for k in ("file", "element_id", "line")} == {
        "file": "camunda-modeler-5.34_C.9.1-export.bpmn", "element_id": "Event_0r6z74c", "line": 47}
    assert details["problem"].startswith("empty timer definition")
    assert [p["element_id"] for p in details["problems"]] == ["Event_0r6z74c", "Event_08bx9nv"]


def test_non_executable_corpus_file_through_api(api):
    response = api.deploy(MIWG / "ref_A.2.1_bonita.bpmn")
    assert response.status_code == 422
    details = response.get_json()["error"]["details"]
    assert details["file"] == "ref_A.2.1_bonita.bpmn" and details["line"] == 2
    assert "no executable process" in details["problem"]
