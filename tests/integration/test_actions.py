"""Chat actions, cases and the shipped example processes (docs/api.md, "Chat actions and cases"), on the embedded default.

A real Telegram channel (the local fake Bot API) brings client messages in through the signed webhook; operators
and admins trigger actions over HTTP; NotifySystemAdministrators talks to a small local HTTP endpoint that can be
down, failing, or up.
"""
import json
import threading
from http.server import BaseHTTPRequestHandler, HTTPServer

import pytest

from chat_helpers import at_work, error, ok
from conftest import DATA, ROOT, Api, wait_for
from app.extensions import db
from app.models import Channel
from fakes.telegram import update

PROCESSES = ROOT / "processes"
ACTION_DATA = DATA / "actions"
SHIPPED = sorted(PROCESSES.glob("*.bpmn"))


class World:
    """Shipped processes deployed, SiteUrl set, one `all` queue with an operator and a Telegram channel."""

    def __init__(self, app):
        self.app = app
        self.admin = Api(app)
        ok(self.admin.deploy(*SHIPPED), 201)
        ok(self.admin.put("/api/settings/SiteUrl", {"value": "https://chat.example.com"}))
        self.queue = self.make_queue("Support")
        self.operator = self.make_operator("op1", self.queue["id"])
        self.op = self.admin.as_user(self.operator["token"])
        self.channel = ok(self.admin.post("/api/channels", {"provider": "telegram", "name": "Support bot",
                                                            "token": "123:good-token",
                                                            "queue_id": self.queue["id"]}), 201)
        with app.app_context():
            self.secret = db.session.get(Channel, self.channel["id"]).webhook_secret
        self._update_id = 0

    def make_queue(self, name):
        return ok(self.admin.post("/api/queues", {"name": name, "routing_rule": "all",
                                                  "completion_timeout_minutes": None}), 201)

    def make_operator(self, login, queue_id):
        user = ok(self.admin.post("/api/users", {"login": login, "name": login.upper()}), 201)
        at_work(self.admin.as_user(user["token"]))
        ok(self.admin.post(f"/api/queues/{queue_id}/operators", {"user_id": user["id"]}), 201)
        return user

    def action(self, name, process, queue_id=None):
        return ok(self.admin.post("/api/chat-actions", {"name": name, "queue_id": queue_id or self.queue["id"],
                                                        "process": process}), 201)

    def client_says(self, user_id, text, first_name="Ann", last_name="Client"):
        self._update_id += 1
        resp = self.admin.client.post(f"/webhooks/telegram/{self.channel['id']}",
                                      json=update(self._update_id, user_id, text, first_name, last_name),
                                      headers={"X-Telegram-Bot-Api-Secret-Token": self.secret})
        assert resp.status_code == 200, resp.get_data(as_text=True)

    def chat_of(self, user_id, text, **names):
        """The client writes; answers the new chat once its lifecycle runs and the operator sees it queued."""
        before = {c["id"] for c in ok(self.admin.get("/api/chats"))}
        self.client_says(user_id, text, **names)

        def new_queued_chat():
            chats = [c for c in ok(self.op.get("/api/chats")) if c["id"] not in before]
            return chats[0] if chats and chats[0]["state"] == "queued" else None
        return wait_for(new_queued_chat, message="the new chat to be offered to the queue's operator")

    def messages(self, chat_id):
        return ok(self.admin.get(f"/api/chats/{chat_id}/messages"))

    def instance(self, instance_id):
        return ok(self.admin.get(f"/api/process-instances/{instance_id}"))


@pytest.fixture
def world(make_app, telegram):
    return World(make_app())


class Endpoint:
    """A tiny local HTTP endpoint for NotifySystemAdministrators: bound but not listening (down), then
    answering `status` and recording every JSON body it receives."""

    def __init__(self):
        self.status = 500
        self.received: list[dict] = []
        endpoint = self

        class Handler(BaseHTTPRequestHandler):
            def do_POST(self):
                body = self.rfile.read(int(self.headers.get("Content-Length") or 0))
                endpoint.received.append({"content_type": self.headers.get("Content-Type"),
                                          "path": self.path, "json": json.loads(body or b"null")})
                self.send_response(endpoint.status)
                self.send_header("Content-Length", "2")
                self.end_headers()
                self.wfile.write(b"{}")

            def log_message(self, *args):
                pass

        self.server = HTTPServer(("127.0.0.1", 0), Handler, bind_and_activate=False)
        self.server.server_bind()            # the port is ours, but nobody listens: connection refused
        self.url = f"http://127.0.0.1:{self.server.server_address[1]}/hooks/admins"
        self.thread = None

    def come_up(self, status):
        self.status = status
        if self.thread is None:
            self.server.server_activate()
            self.thread = threading.Thread(target=self.server.serve_forever, daemon=True)
            self.thread.start()

    def close(self):
        if self.thread is not None:
            self.server.shutdown()
        self.server.server_close()


@pytest.fixture
def endpoint():
    e = Endpoint()
    yield e
    e.close()


# -- Create case ----------------------------------------------------------------------------------
def test_operator_creates_a_case_from_the_first_client_message(world):
    chat = world.chat_of(555, "  My   printer\n\tis  on   fire  ", first_name="Ann", last_name="Client")
    # The operator takes the chat and answers; the client writes again: none of that is the subject.
    ok(world.op.post(f"/api/chats/{chat['id']}/accept"))
    ok(world.op.post(f"/api/chats/{chat['id']}/messages", {"text": "Have you tried turning it off?"}), 201)
    world.client_says(555, "Now the scanner burns too")
    wait_for(lambda: len(world.messages(chat["id"])) == 3, message="the client's second message")

    create = world.action("Create case", "CreateCaseFromChat")
    assert [a["id"] for a in ok(world.op.get(f"/api/chats/{chat['id']}/actions"))] == [create["id"]]

    resp = ok(world.op.post(f"/api/chats/{chat['id']}/actions/{create['id']}"), 201)
    assert isinstance(resp["process_instance_id"], int)
    assert resp["state"] == "completed"
    data = resp["data"]
    assert data["CaseNumber"] == "CS-000001"
    assert data["ChatId"] == chat["id"] and data["ContactId"] == chat["contact"]["id"]
    assert data["QueueId"] == world.queue["id"] and data["OperatorId"] == world.operator["id"]

    case = ok(world.admin.get(f"/api/cases/{data['CaseId']}"))
    assert case["number"] == "CS-000001"
    assert case["subject"] == "My printer is on fire"
    assert case["status"] == "new"
    assert case["chat_id"] == chat["id"]
    assert case["contact_id"] == chat["contact"]["id"]
    assert case["created_at"]
    assert [c["id"] for c in ok(world.admin.get("/api/cases"))] == [case["id"]]

    contact = ok(world.admin.get(f"/api/contacts/{case['contact_id']}"))
    assert contact["id"] == case["contact_id"]
    assert contact["name"] == "Ann Client"
    assert [{"provider": i["provider"], "external_id": i["external_id"]} for i in contact["identities"]] == \
        [{"provider": "telegram", "external_id": "555"}]

    instance = world.instance(resp["process_instance_id"])
    assert instance["process"] == "CreateCaseFromChat" and instance["version"] == 1
    assert instance["state"] == "completed" and instance["data"]["CaseId"] == case["id"]

    # A second case from the same chat gets the next number.
    again = ok(world.op.post(f"/api/chats/{chat['id']}/actions/{create['id']}"), 201)
    assert again["data"]["CaseNumber"] == "CS-000002"
    assert ok(world.admin.get(f"/api/cases/{again['data']['CaseId']}"))["subject"] == "My printer is on fire"


def test_case_subject_skips_a_blank_first_message_and_is_bounded(world):
    create = world.action("Create case", "CreateCaseFromChat")
    blank = world.chat_of(570, " \n\t ")
    world.client_says(570, "  The   real\nquestion ")
    wait_for(lambda: len(world.messages(blank["id"])) == 2, message="the second message")
    resp = ok(world.op.post(f"/api/chats/{blank['id']}/actions/{create['id']}"), 201)
    assert ok(world.admin.get(f"/api/cases/{resp['data']['CaseId']}"))["subject"] == "The real question"

    long_chat = world.chat_of(571, "word " * 200)
    resp = ok(world.op.post(f"/api/chats/{long_chat['id']}/actions/{create['id']}"), 201)
    subject = ok(world.admin.get(f"/api/cases/{resp['data']['CaseId']}"))["subject"]
    assert len(subject) == 300 and subject.startswith("word word ") and "  " not in subject


def test_cases_and_contacts_need_an_admin_and_exist(world):
    error(world.op.get("/api/cases"), 403)
    error(world.op.get("/api/cases/1"), 403)
    error(world.op.get("/api/contacts/1"), 403)
    error(world.admin.get("/api/cases/999"), 404)
    error(world.admin.get("/api/contacts/999"), 404)
    error(world.admin.get("/api/cases", token=None), 401)


def test_admin_may_trigger_and_actions_work_on_a_completed_chat(world):
    chat = world.chat_of(556, "Refund please")
    create = world.action("Create case", "CreateCaseFromChat")
    admin_user = ok(world.admin.get("/api/me"))

    resp = ok(world.admin.post(f"/api/chats/{chat['id']}/actions/{create['id']}"), 201)
    assert resp["state"] == "completed" and resp["data"]["OperatorId"] == admin_user["id"]
    assert [a["id"] for a in ok(world.admin.get(f"/api/chats/{chat['id']}/actions"))] == [create["id"]]

    ok(world.admin.post(f"/api/chats/{chat['id']}/complete"))
    assert ok(world.admin.get(f"/api/chats/{chat['id']}"))["state"] == "completed"
    after = ok(world.op.post(f"/api/chats/{chat['id']}/actions/{create['id']}"), 201)
    assert after["state"] == "completed"
    case = ok(world.admin.get(f"/api/cases/{after['data']['CaseId']}"))
    assert case["subject"] == "Refund please" and case["chat_id"] == chat["id"]
    assert [a["id"] for a in ok(world.op.get(f"/api/chats/{chat['id']}/actions"))] == [create["id"]]


def test_other_queues_operators_get_403_and_unknown_actions_404(world):
    chat = world.chat_of(557, "Hello")
    create = world.action("Create case", "CreateCaseFromChat")
    sales = world.make_queue("Sales")
    stranger = world.admin.as_user(world.make_operator("sales-op", sales["id"])["token"])
    sales_action = world.action("Create case", "CreateCaseFromChat", queue_id=sales["id"])
    plain = world.admin.as_user(ok(world.admin.post("/api/users", {"login": "nobody"}), 201)["token"])

    for user in (stranger, plain):
        error(user.post(f"/api/chats/{chat['id']}/actions/{create['id']}"), 403)
        error(user.get(f"/api/chats/{chat['id']}/actions"), 403)
    error(world.op.post(f"/api/chats/{chat['id']}/actions/{create['id']}", token=None), 401)

    for user in (world.op, world.admin):
        error(user.post(f"/api/chats/{chat['id']}/actions/99999"), 404)
        # An action of another queue is not an action of this chat.
        error(user.post(f"/api/chats/{chat['id']}/actions/{sales_action['id']}"), 404)
        error(user.post(f"/api/chats/99999/actions/{create['id']}"), 404)
    # The operator's own queue lists only its actions, not the other queue's.
    assert [a["id"] for a in ok(world.op.get(f"/api/chats/{chat['id']}/actions"))] == [create["id"]]
    assert ok(world.admin.get("/api/cases")) == []
    assert ok(world.admin.get("/api/process-instances?process=CreateCaseFromChat")) == []


# -- NotifySystemAdministrators: an outside endpoint, its failures, retry -------------------------
def test_notify_goes_to_error_while_the_endpoint_is_down_and_retry_succeeds(world, endpoint):
    chat = world.chat_of(558, "The app crashes")
    notify = world.action("Notify admins", "NotifySystemAdministrators")
    ok(world.admin.put("/api/settings/SystemAdministratorsNotificationUrl", {"value": endpoint.url}))

    # Down: nobody listens on the port.
    resp = ok(world.op.post(f"/api/chats/{chat['id']}/actions/{notify['id']}"), 201)
    assert resp["state"] == "error"
    instance_id = resp["process_instance_id"]
    instance = world.instance(instance_id)
    assert instance["state"] == "error" and instance["process"] == "NotifySystemAdministrators"
    assert "notify" in instance["error"] and "unreachable" in instance["error"], instance["error"]
    assert any(h["task"] == "notify" and h["event"] == "error" for h in instance["history"]), instance["history"]
    assert "notify" in ok(world.admin.get(f"/api/process-instances/{instance_id}/diagram"))["errored"]
    assert instance_id in [i["id"] for i in ok(world.admin.get("/api/process-instances?state=error"))]
    assert endpoint.received == []

    # Up but failing: a retry fails again and the instance stays in error.
    endpoint.come_up(500)
    failed = ok(world.admin.post(f"/api/process-instances/{instance_id}/retry"))
    assert failed["state"] == "error" and "500" in failed["error"], failed
    assert len(endpoint.received) == 1

    # Back: the retry goes through and the instance completes.
    endpoint.status = 200
    done = ok(world.admin.post(f"/api/process-instances/{instance_id}/retry"))
    assert done["state"] == "completed", done
    assert done["error"] is None
    assert world.instance(instance_id)["state"] == "completed"
    assert len(endpoint.received) == 2
    last = endpoint.received[-1]
    assert last["path"] == "/hooks/admins" and last["content_type"].startswith("application/json")
    body = last["json"]
    assert body["chat_id"] == chat["id"]
    assert body["text"] == (f"Operator {world.operator['id']} asks for help with chat {chat['id']} "
                            f"(contact {chat['contact']['id']})")
    # A completed instance is not retried.
    error(world.admin.post(f"/api/process-instances/{instance_id}/retry"), 409)


def test_notify_succeeds_at_once_when_the_endpoint_is_up(world, endpoint):
    chat = world.chat_of(559, "Question")
    notify = world.action("Notify admins", "NotifySystemAdministrators")
    endpoint.come_up(200)
    ok(world.admin.put("/api/settings/SystemAdministratorsNotificationUrl", {"value": endpoint.url}))
    resp = ok(world.op.post(f"/api/chats/{chat['id']}/actions/{notify['id']}"), 201)
    assert resp["state"] == "completed", resp
    assert [r["json"]["chat_id"] for r in endpoint.received] == [chat["id"]]


def test_notify_without_a_configured_url_is_an_error_then_retryable(world, endpoint):
    chat = world.chat_of(560, "Question")
    notify = world.action("Notify admins", "NotifySystemAdministrators")
    resp = ok(world.op.post(f"/api/chats/{chat['id']}/actions/{notify['id']}"), 201)
    assert resp["state"] == "error" and "SystemAdministratorsNotificationUrl" in resp["error"], resp
    endpoint.come_up(200)
    ok(world.admin.put("/api/settings/SystemAdministratorsNotificationUrl", {"value": endpoint.url}))
    assert ok(world.admin.post(f"/api/process-instances/{resp['process_instance_id']}/retry"))["state"] \
        == "completed"
    assert len(endpoint.received) == 1


# -- versions -------------------------------------------------------------------------------------
def test_new_version_is_used_by_the_next_trigger_while_a_waiting_instance_keeps_its_own(world):
    chat = world.chat_of(561, "Broken screen")
    create = world.action("Create case", "CreateCaseFromChat")

    first = ok(world.op.post(f"/api/chats/{chat['id']}/actions/{create['id']}"), 201)
    assert (first["state"], world.instance(first["process_instance_id"])["version"]) == ("completed", 1)

    # v2: creates the case, then waits on a review user task.
    deployed = ok(world.admin.deploy(ACTION_DATA / "CreateCaseFromChat_review.bpmn"), 201)
    assert deployed["processes"] == [{"key": "CreateCaseFromChat", "version": 2, "new": True}]
    waiting = ok(world.op.post(f"/api/chats/{chat['id']}/actions/{create['id']}"), 201)
    assert waiting["state"] == "waiting", waiting
    assert waiting["data"]["Variant"] == "review" and waiting["data"]["CaseNumber"] == "CS-000002"
    v2 = world.instance(waiting["process_instance_id"])
    assert v2["version"] == 2
    assert [(w["task"], w["kind"]) for w in v2["waiting_for"]] == [("review", "user")]

    # v3: composes an explicit subject and sets a marker; the next trigger runs it.
    deployed = ok(world.admin.deploy(ACTION_DATA / "CreateCaseFromChat_marked.bpmn"), 201)
    assert deployed["processes"] == [{"key": "CreateCaseFromChat", "version": 3, "new": True}]
    assert ok(world.admin.get("/api/processes/CreateCaseFromChat"))  # the key is known, versions listed
    third = ok(world.op.post(f"/api/chats/{chat['id']}/actions/{create['id']}"), 201)
    assert third["state"] == "completed" and third["data"]["Marker"] == "marked"
    assert "Variant" not in third["data"]
    assert world.instance(third["process_instance_id"])["version"] == 3
    assert ok(world.admin.get(f"/api/cases/{third['data']['CaseId']}"))["subject"] == \
        f"Escalated from chat {chat['id']}"

    # The waiting v2 instance still runs v2: completing its user task finishes it on v2's diagram.
    assert ok(world.admin.get(f"/api/process-instances/{v2['id']}/diagram"))["active"] == ["review"]
    done = ok(world.admin.post(f"/api/process-instances/{v2['id']}/tasks/review/complete",
                               {"data": {"approved": True}}))
    assert done["state"] == "completed", done
    assert done["version"] == 2
    assert done["data"]["ReviewedIn"] == "review variant" and done["data"]["approved"] is True
    assert "Marker" not in done["data"]
    assert [c["subject"] for c in ok(world.admin.get("/api/cases"))] == \
        ["Broken screen", "Broken screen", f"Escalated from chat {chat['id']}"]


# -- admin API for actions ------------------------------------------------------------------------
def test_admin_api_for_chat_actions(world):
    sales = world.make_queue("Sales")
    q = world.queue["id"]

    error(world.admin.post("/api/chat-actions", {"name": "Nope", "queue_id": q, "process": "NotDeployed"}),
          422, field="process")
    error(world.admin.post("/api/chat-actions", {"name": "Nope", "queue_id": 99999,
                                                 "process": "CreateCaseFromChat"}), 422, field="queue_id")
    error(world.admin.post("/api/chat-actions", {"queue_id": q, "process": "CreateCaseFromChat"}), 422,
          field="name")
    error(world.admin.post("/api/chat-actions", {"name": "X", "queue_id": "one", "process": "CreateCaseFromChat"}),
          422, field="queue_id")
    error(world.op.post("/api/chat-actions", {"name": "X", "queue_id": q, "process": "CreateCaseFromChat"}), 403)
    error(world.op.get("/api/chat-actions"), 403)

    create = world.action("Create case", "CreateCaseFromChat")
    assert set(create) >= {"id", "name", "queue_id", "process"}
    assert (create["name"], create["queue_id"], create["process"]) == ("Create case", q, "CreateCaseFromChat")
    error(world.admin.post("/api/chat-actions", {"name": "Create case", "queue_id": q,
                                                 "process": "NotifySystemAdministrators"}), 409)
    same_name_elsewhere = world.action("Create case", "CreateCaseFromChat", queue_id=sales["id"])
    notify = world.action("Notify admins", "NotifySystemAdministrators")

    assert [a["id"] for a in ok(world.admin.get("/api/chat-actions"))] == \
        [create["id"], same_name_elsewhere["id"], notify["id"]]
    assert [a["id"] for a in ok(world.admin.get("/api/chat-actions?limit=1&offset=1"))] == \
        [same_name_elsewhere["id"]]
    assert ok(world.admin.get(f"/api/chat-actions/{notify['id']}"))["process"] == "NotifySystemAdministrators"

    # PATCH: rename, re-point; an undeployed process, an unknown queue or a taken name are refused.
    renamed = ok(world.admin.patch(f"/api/chat-actions/{notify['id']}", {"name": "Call the admins"}))
    assert renamed["name"] == "Call the admins" and renamed["process"] == "NotifySystemAdministrators"
    error(world.admin.patch(f"/api/chat-actions/{notify['id']}", {"process": "NotDeployed"}), 422,
          field="process")
    error(world.admin.patch(f"/api/chat-actions/{notify['id']}", {"queue_id": 99999}), 422, field="queue_id")
    error(world.admin.patch(f"/api/chat-actions/{notify['id']}", {"name": "Create case"}), 409)
    error(world.admin.patch(f"/api/chat-actions/{same_name_elsewhere['id']}", {"queue_id": q}), 409)
    assert ok(world.admin.patch(f"/api/chat-actions/{notify['id']}", {"name": "Call the admins"}))["name"] == \
        "Call the admins"   # its own name is no conflict
    moved = ok(world.admin.patch(f"/api/chat-actions/{notify['id']}",
                                 {"queue_id": sales["id"], "process": "CreateCaseFromChat"}))
    assert (moved["queue_id"], moved["process"]) == (sales["id"], "CreateCaseFromChat")
    assert ok(world.admin.get(f"/api/chat-actions/{notify['id']}"))["name"] == "Call the admins"
    error(world.admin.patch("/api/chat-actions/99999", {"name": "X"}), 404)

    # GET /api/chats/{id}/actions: the queue's actions, for its operators.
    chat = world.chat_of(562, "Hi")
    assert [a["name"] for a in ok(world.op.get(f"/api/chats/{chat['id']}/actions"))] == ["Create case"]
    ok(world.admin.patch(f"/api/chat-actions/{notify['id']}", {"queue_id": q}))
    assert [a["name"] for a in ok(world.op.get(f"/api/chats/{chat['id']}/actions"))] == \
        ["Create case", "Call the admins"]

    # DELETE
    assert world.admin.delete(f"/api/chat-actions/{create['id']}").status_code == 204
    error(world.admin.get(f"/api/chat-actions/{create['id']}"), 404)
    error(world.admin.delete(f"/api/chat-actions/{create['id']}"), 404)
    error(world.op.post(f"/api/chats/{chat['id']}/actions/{create['id']}"), 404)
    error(world.op.delete(f"/api/chat-actions/{notify['id']}"), 403)
    assert [a["name"] for a in ok(world.op.get(f"/api/chats/{chat['id']}/actions"))] == ["Call the admins"]
    assert [a["id"] for a in ok(world.admin.get("/api/chat-actions"))] == [same_name_elsewhere["id"], notify["id"]]


def test_deleting_a_queue_with_actions_but_no_channels_or_chats_deletes_its_actions(world):
    spare = world.make_queue("Spare")
    world.make_operator("spare-op", spare["id"])
    a = world.action("Create case", "CreateCaseFromChat", queue_id=spare["id"])
    b = world.action("Notify admins", "NotifySystemAdministrators", queue_id=spare["id"])
    kept = world.action("Create case", "CreateCaseFromChat")

    # The main queue has a channel: it is in use, and its action stays.
    error(world.admin.delete(f"/api/queues/{world.queue['id']}"), 409, code="queue_in_use")
    resp = world.admin.delete(f"/api/queues/{spare['id']}")
    assert resp.status_code == 204, resp.get_data(as_text=True)
    error(world.admin.get(f"/api/queues/{spare['id']}"), 404)
    for action in (a, b):
        error(world.admin.get(f"/api/chat-actions/{action['id']}"), 404)
    assert [x["id"] for x in ok(world.admin.get("/api/chat-actions"))] == [kept["id"]]


# -- operations catalogue -------------------------------------------------------------------------
def test_process_operations_list_create_case_and_notify_administrators(world):
    ops = {o["name"]: o for o in ok(world.admin.get("/api/process-operations"))}
    assert {"create_case", "notify_administrators"} <= set(ops)
    assert set(ops["create_case"]["parameters"]) == {"chat_id", "contact_id", "subject"}
    assert set(ops["notify_administrators"]["parameters"]) == {"text", "chat_id"}
    for name in ("create_case", "notify_administrators"):
        assert ops[name]["description"] and ops[name]["returns"]
    assert "CaseId" in ops["create_case"]["returns"] and "CaseNumber" in ops["create_case"]["returns"]


def test_openapi_describes_the_action_case_and_contact_routes(world):
    paths = ok(world.admin.get("/openapi.json"))["paths"]
    assert {"/api/chat-actions", "/api/chat-actions/{action_id}", "/api/chats/{chat_id}/actions",
            "/api/chats/{chat_id}/actions/{action_id}", "/api/cases", "/api/cases/{case_id}",
            "/api/contacts/{contact_id}", "/api/process-operations"} <= set(paths)
