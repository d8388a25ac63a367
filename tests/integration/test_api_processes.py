"""Processes and process instances over HTTP (docs/api.md, "Processes and instances")."""
import time
from datetime import datetime, timedelta, timezone


from chat_helpers import error as error_of  # a local `error` holds its answer
from conftest import DATA

BPMN = DATA / "api"
APPROVAL_V1 = BPMN / "approval_v1.bpmn"
APPROVAL_V2 = BPMN / "approval_v2.bpmn"


def start(api, key, data=None, business_key=None, status=201):
    body = {"data": data or {}}
    if business_key is not None:
        body["business_key"] = business_key
    response = api.post(f"/api/processes/{key}/instances", body)
    assert response.status_code == status, response.get_json()
    return response.get_json()


def get(api, instance_id):
    response = api.get(f"/api/process-instances/{instance_id}")
    assert response.status_code == 200
    return response.get_json()


def events(instance, task=None):
    return [(e["task"], e["event"]) for e in instance["history"] if task is None or e["task"] == task]


# -- deployment ------------------------------------------------------------------------

def test_deploy_new_same_and_changed_file(api):
    first = api.deploy(APPROVAL_V1)
    assert first.status_code == 201
    assert first.get_json() == {"processes": [{"key": "ApiApproval", "version": 1, "new": True}]}

    same = api.deploy(APPROVAL_V1)
    assert same.status_code == 200
    assert same.get_json() == {"processes": [{"key": "ApiApproval", "version": 1, "new": False}]}

    changed = api.deploy(("approval.bpmn", APPROVAL_V2.read_bytes()))
    assert changed.status_code == 201
    assert changed.get_json() == {"processes": [{"key": "ApiApproval", "version": 2, "new": True}]}

    # Several files in one request: one entry each, 201 because one is new.
    both = api.deploy(APPROVAL_V2, BPMN / "wait_payment.bpmn")
    assert both.status_code == 201
    assert both.get_json()["processes"] == [{"key": "ApiApproval", "version": 2, "new": False},
                                            {"key": "ApiWaitPayment", "version": 1, "new": True}]


def test_deploy_refusals(api):
    assert error_of(api.post("/api/processes", {"file": "x"}), 400)["code"] == "no_file"
    broken = api.deploy(("broken.bpmn", b"<bpmn:definitions"))
    error = error_of(broken, 422)
    assert error["details"]["file"] == "broken.bpmn"
    assert {"file", "element_id", "line", "problem"} <= set(error["details"])
    assert api.get("/api/processes").get_json() == []


def test_process_reads(api):
    api.deploy(BPMN / "wait_payment.bpmn")
    api.deploy(APPROVAL_V1)
    api.deploy(APPROVAL_V2)

    listed = api.get("/api/processes").get_json()
    # Oldest first: ApiWaitPayment was deployed before ApiApproval.
    assert [(p["key"], p["latest_version"]) for p in listed] == [("ApiWaitPayment", 1), ("ApiApproval", 2)]
    assert listed[1]["name"] == "Approval (version 2)"
    assert [p["key"] for p in api.get("/api/processes?limit=1&offset=1").get_json()] == ["ApiApproval"]

    one = api.get("/api/processes/ApiApproval").get_json()
    assert one["key"] == "ApiApproval" and one["latest_version"] == 2
    assert [v["version"] for v in one["versions"]] == [1, 2]
    assert [v["name"] for v in one["versions"]] == ["Approval (version 1)", "Approval (version 2)"]
    assert one["versions"][0]["content_hash"] != one["versions"][1]["content_hash"]

    v1 = api.get("/api/processes/ApiApproval/versions/1/bpmn")
    assert v1.status_code == 200 and v1.content_type.startswith("application/xml")
    assert v1.get_data() == APPROVAL_V1.read_bytes()
    assert api.get("/api/processes/ApiApproval/versions/2/bpmn").get_data() == APPROVAL_V2.read_bytes()

    assert error_of(api.get("/api/processes/Nope"), 404)["code"] == "process_not_found"
    assert error_of(api.get("/api/processes/ApiApproval/versions/3/bpmn"), 404)["code"] == "version_not_found"


def test_running_instance_keeps_its_version(api):
    api.deploy(APPROVAL_V1)
    old = start(api, "ApiApproval", {"amount": 5}, business_key="order-17")
    assert (old["process"], old["version"], old["state"], old["business_key"]) == \
        ("ApiApproval", 1, "waiting", "order-17")
    assert old["data"] == {"amount": 5}
    assert old["waiting_for"] == [{"task": "review", "kind": "user", "due_at": None}]
    assert old["error"] is None
    assert events(old) == [(None, "started"), ("start", "entered"), ("start", "completed"),
                           ("review", "entered")]
    assert old["history"][0]["details"] == {"version": 1}
    # The start answers the history it wrote without reading it back: the same as the database's.
    assert old["history"] == get(api, old["id"])["history"]

    assert api.deploy(APPROVAL_V2).get_json()["processes"][0]["version"] == 2

    done = api.post(f"/api/process-instances/{old['id']}/tasks/review/complete", {"data": {"approved": True}})
    assert done.status_code == 200
    done = done.get_json()
    assert (done["state"], done["version"]) == ("completed", 1)
    assert done["data"] == {"amount": 5, "approved": True, "path": "v1", "total": 10}
    assert done["waiting_for"] == []
    assert ("decide_v1", "completed") in events(done) and not events(done, "decide_v2")
    assert events(done)[-5:] == [("review", "completed"), ("decide_v1", "entered"), ("decide_v1", "completed"),
                                 ("end", "entered"), ("end", "completed")]
    assert get(api, old["id"]) == done
    assert api.get(f"/api/process-instances/{old['id']}/diagram").get_json()["xml"] == APPROVAL_V1.read_text()

    new = start(api, "ApiApproval", {"amount": 5})
    assert new["version"] == 2
    finished = api.post(f"/api/process-instances/{new['id']}/tasks/review/complete", {"data": {}}).get_json()
    assert finished["data"] == {"amount": 5, "path": "v2", "total": 15}
    assert ("decide_v2", "completed") in events(finished)
    assert api.get(f"/api/process-instances/{new['id']}/diagram").get_json()["xml"] == APPROVAL_V2.read_text()


# -- starting and reading instances ----------------------------------------------------------

def test_start_errors(api):
    assert error_of(api.post("/api/processes/Nope/instances", {"data": {}}), 404)["code"] == "process_not_found"
    api.deploy(APPROVAL_V1)
    assert error_of(api.post("/api/processes/ApiApproval/instances", {"data": [1]}), 422)["details"]["field"] \
        == "data"
    assert error_of(api.post("/api/processes/ApiApproval/instances", {"business_key": 3}), 422)["details"]["fields"] \
        == ["business_key"]
    assert error_of(api.post("/api/processes/ApiApproval/instances", {"version": 1}), 422)["code"] == "unknown_field"
    assert error_of(api.call("POST", "/api/processes/ApiApproval/instances", data="nope",
                             content_type="text/plain"), 400)["code"] == "malformed_body"
    assert api.get("/api/process-instances").get_json() == []


def test_waiting_for_user_and_timer(api):
    api.deploy(DATA / "user_task_timeout.bpmn")
    before = datetime.now(timezone.utc)
    instance = start(api, "UserTaskTimeout", {"who": "me"})
    assert instance["state"] == "waiting"
    kinds = {w["kind"]: w for w in instance["waiting_for"]}
    assert set(kinds) == {"user", "timer"}
    assert kinds["user"] == {"task": "approve", "kind": "user", "due_at": None}
    assert kinds["timer"]["task"] == "too_late"
    due = datetime.fromisoformat(kinds["timer"]["due_at"])
    assert before + timedelta(seconds=1.5) <= due <= datetime.now(timezone.utc) + timedelta(seconds=2.5)
    # Done before the timer: the timer path never runs.
    done = api.post(f"/api/process-instances/{instance['id']}/tasks/approve/complete", {"data": {"ok": 1}})
    assert done.get_json()["state"] == "completed"
    assert done.get_json()["data"] == {"who": "me", "ok": 1}
    assert "timed_out" not in done.get_json()["data"]


def test_complete_user_task_conflicts(api):
    api.deploy(APPROVAL_V1)
    instance = start(api, "ApiApproval", {"amount": 1})
    path = f"/api/process-instances/{instance['id']}/tasks"
    error = error_of(api.post(f"{path}/decide_v1/complete", {"data": {}}), 409)
    assert error["code"] == "not_waiting_for_task"
    assert error_of(api.post(f"{path}/nothing/complete", {"data": {}}), 409)["code"] == "not_waiting_for_task"
    assert error_of(api.post(f"{path}/review/complete", {"data": "x"}), 422)["details"]["field"] == "data"
    assert get(api, instance["id"])["state"] == "waiting"

    assert api.post(f"{path}/review/complete").get_json()["state"] == "completed"  # no body at all is fine
    assert error_of(api.post(f"{path}/review/complete", {"data": {}}), 409)["code"] == "not_waiting_for_task"
    assert error_of(api.post("/api/process-instances/999999/tasks/review/complete", {"data": {}}), 404)["code"] \
        == "instance_not_found"


# -- messages -------------------------------------------------------------------------------

def test_message_delivers_payload(api):
    api.deploy(BPMN / "wait_payment.bpmn")
    instance = start(api, "ApiWaitPayment", {"order": "A-1"})
    assert instance["state"] == "waiting"
    assert instance["waiting_for"] == [{"task": "wait_payment", "kind": "message", "message": "PaymentReceived",
                                        "due_at": None}]
    path = f"/api/process-instances/{instance['id']}/messages"

    error = error_of(api.post(path, {"name": "RefundRequested", "data": {"paid_amount": 1}}), 409)
    assert error["code"] == "not_waiting_for_message"
    assert get(api, instance["id"])["data"] == {"order": "A-1"}
    assert error_of(api.post(path, {"data": {}}), 422)["details"]["fields"] == ["name"]

    delivered = api.post(path, {"name": "PaymentReceived", "data": {"paid_amount": 41}})
    assert delivered.status_code == 200
    body = delivered.get_json()
    assert body["state"] == "completed"
    assert body["data"] == {"order": "A-1", "paid_amount": 41, "booked": 42}
    assert ("wait_payment", "message_received") in events(body)
    assert events(body)[-6:] == [("wait_payment", "message_received"), ("wait_payment", "completed"),
                                 ("book", "entered"), ("book", "completed"), ("end", "entered"), ("end", "completed")]
    message_event = [e for e in body["history"] if e["event"] == "message_received"][0]
    assert message_event["details"] == {"name": "PaymentReceived"}

    # A finished instance waits for nothing.
    again = error_of(api.post(path, {"name": "PaymentReceived", "data": {}}), 409)
    assert again["code"] == "not_waiting_for_message"
    assert error_of(api.post("/api/process-instances/999999/messages", {"name": "PaymentReceived"}), 404)


# -- errors, retry, cancel ------------------------------------------------------------------

def test_script_error_puts_instance_in_error(api):
    api.deploy(BPMN / "divide.bpmn")
    instance = start(api, "ApiDivide", {"divisor": 0})
    assert instance["state"] == "error"
    assert instance["error"].startswith("divide: ")
    assert "division by zero" in instance["error"]
    assert instance["waiting_for"] == []
    (failed,) = [e for e in instance["history"] if e["event"] == "error"]
    assert failed["task"] == "divide" and failed["details"] == {"message": instance["error"]}

    diagram = api.get(f"/api/process-instances/{instance['id']}/diagram").get_json()
    assert (diagram["active"], diagram["completed"], diagram["errored"]) == ([], ["start"], ["divide"])
    assert diagram["xml"] == (BPMN / "divide.bpmn").read_text()

    ok = start(api, "ApiDivide", {"divisor": 4})
    assert (ok["state"], ok["data"]["result"], ok["error"]) == ("completed", 2.5, None)
    retry = error_of(api.post(f"/api/process-instances/{ok['id']}/retry"), 409)
    assert retry["code"] == "not_in_error"


def test_retry_reruns_the_failed_step_and_succeeds_once_the_cause_is_gone(api):
    """The script fails until a moment given in the data; a retry after it re-runs the step and succeeds."""
    api.deploy(BPMN / "not_before.bpmn")
    not_before = datetime.now(timezone.utc) + timedelta(seconds=0.8)
    instance = start(api, "ApiNotBefore", {"not_before": not_before.isoformat()})
    assert instance["state"] == "error"
    assert instance["error"].startswith("check_time: ") and "too early" in instance["error"]

    time.sleep(max(0.0, (not_before - datetime.now(timezone.utc)).total_seconds()) + 0.05)
    retried = api.post(f"/api/process-instances/{instance['id']}/retry")
    assert retried.status_code == 200
    body = retried.get_json()
    assert (body["state"], body["error"]) == ("completed", None)
    assert body["data"]["checked"] is True
    history = events(body)
    assert history[history.index(("check_time", "error")):] == [
        ("check_time", "error"), ("check_time", "retried"), ("check_time", "entered"), ("check_time", "completed"),
        ("end", "entered"), ("end", "completed")]
    diagram = api.get(f"/api/process-instances/{instance['id']}/diagram").get_json()
    assert diagram["errored"] == [] and "check_time" in diagram["completed"]
    assert error_of(api.post(f"/api/process-instances/{instance['id']}/retry"), 409)["code"] == "not_in_error"


def test_retry_that_fails_again_stays_in_error(api):
    api.deploy(BPMN / "divide.bpmn")
    instance = start(api, "ApiDivide", {"divisor": 0})
    retried = api.post(f"/api/process-instances/{instance['id']}/retry")
    assert retried.status_code == 200
    body = retried.get_json()
    assert body["state"] == "error" and body["error"] == instance["error"]
    assert events(body, "divide")[:2] == [("divide", "error"), ("divide", "retried")]
    assert datetime.fromisoformat(body["updated_at"]) > datetime.fromisoformat(instance["updated_at"])


def test_retry_that_fails_again_records_the_new_failure(api):
    api.deploy(BPMN / "divide.bpmn")
    instance = start(api, "ApiDivide", {"divisor": 0})
    body = api.post(f"/api/process-instances/{instance['id']}/retry").get_json()
    assert events(body, "divide") == [("divide", "error"), ("divide", "retried"), ("divide", "error")]


def test_cancel(api):
    api.deploy(APPROVAL_V1)
    instance = start(api, "ApiApproval", {"amount": 2})
    cancelled = api.post(f"/api/process-instances/{instance['id']}/cancel")
    assert cancelled.status_code == 200
    body = cancelled.get_json()
    assert body["state"] == "cancelled" and body["waiting_for"] == []
    assert events(body)[-1] == (None, "cancelled")
    assert get(api, instance["id"])["state"] == "cancelled"

    error = error_of(api.post(f"/api/process-instances/{instance['id']}/cancel"), 409)
    assert error["code"] == "instance_finished"
    assert error_of(api.post(f"/api/process-instances/{instance['id']}/tasks/review/complete", {"data": {}}),
                    409)["code"] == "not_waiting_for_task"
    assert error_of(api.post("/api/process-instances/999999/cancel"), 404)["code"] == "instance_not_found"

    # An instance in error can be cancelled too.
    api.deploy(BPMN / "divide.bpmn")
    failed = start(api, "ApiDivide", {"divisor": 0})
    assert api.post(f"/api/process-instances/{failed['id']}/cancel").get_json()["state"] == "cancelled"
    assert error_of(api.post(f"/api/process-instances/{failed['id']}/retry"), 409)["code"] == "not_in_error"


# -- diagram, lists, 404, operations ---------------------------------------------------------------

def test_diagram_of_a_waiting_instance(api):
    api.deploy(APPROVAL_V1)
    instance = start(api, "ApiApproval", {"amount": 1})
    diagram = api.get(f"/api/process-instances/{instance['id']}/diagram")
    assert diagram.status_code == 200
    body = diagram.get_json()
    assert set(body) == {"xml", "active", "completed", "errored"}
    assert body["xml"] == APPROVAL_V1.read_text()
    assert (body["active"], body["completed"], body["errored"]) == (["review"], ["start"], [])
    assert error_of(api.get("/api/process-instances/999999/diagram"), 404)["code"] == "instance_not_found"


def test_instance_list_filters(api):
    api.deploy(APPROVAL_V1, BPMN / "divide.bpmn")
    waiting = start(api, "ApiApproval", {"amount": 1})
    failed = start(api, "ApiDivide", {"divisor": 0})
    done = start(api, "ApiDivide", {"divisor": 2})
    other = start(api, "ApiApproval", {"amount": 2}, business_key="chat:55")

    def ids(query=""):
        response = api.get(f"/api/process-instances{query}")
        assert response.status_code == 200
        return [i["id"] for i in response.get_json()]

    assert ids() == [waiting["id"], failed["id"], done["id"], other["id"]]
    assert ids("?process=ApiApproval") == [waiting["id"], other["id"]]
    assert ids("?state=error") == [failed["id"]]
    assert ids("?process=ApiDivide&state=completed") == [done["id"]]
    assert ids("?process=ApiDivide&state=waiting") == []
    assert ids("?process=Nope") == []
    assert ids("?chat_id=55") == [other["id"]]
    assert ids("?limit=2&offset=1") == [failed["id"], done["id"]]
    listed = api.get("/api/process-instances?state=error").get_json()[0]
    assert (listed["process"], listed["version"], listed["state"], listed["data"]) == \
        ("ApiDivide", 1, "error", {"divisor": 0})
    assert error_of(api.get("/api/process-instances?state=sleeping"), 400)["details"]["fields"] == ["state"]


def test_unknown_instance_is_404_json(api):
    error = error_of(api.get("/api/process-instances/424242"), 404)
    assert error["code"] == "instance_not_found" and "424242" in error["message"]
    for path in ("retry", "cancel"):
        assert error_of(api.post(f"/api/process-instances/424242/{path}"), 404)["code"] == "instance_not_found"


def test_process_operations_and_echo_service_task(api):
    response = api.get("/api/process-operations")
    assert response.status_code == 200
    (echo,) = [op for op in response.get_json() if op["name"] == "echo"]
    assert echo["parameters"] == {"value": "any value"}
    assert echo["description"]

    api.deploy(BPMN / "echo_service.bpmn")
    instance = start(api, "ApiEcho", {"word": "hello"})
    assert instance["state"] == "completed"
    assert instance["data"] == {"word": "hello", "echoed": "hello"}
    assert ("call_echo", "completed") in events(instance)


def test_service_task_with_unknown_operation_is_refused(api):
    xml = (BPMN / "echo_service.bpmn").read_text().replace('id="echo"', 'id="launch_rockets"')
    error = error_of(api.deploy(("rockets.bpmn", xml)), 422)
    assert error["code"] == "invalid_bpmn"
    assert error["details"]["file"] == "rockets.bpmn" and error["details"]["element_id"] == "call_echo"
    assert "launch_rockets" in error["details"]["problem"]
    assert api.get("/api/processes").get_json() == []
