"""Setup that reaches chats: a queue's lifecycle must be deployed (the default too), and a chat
whose lifecycle could not start is started as soon as it can be, shown to admins meanwhile."""
import pytest

from app.extensions import db
from app.models.chat import Queue
from chat_helpers import (configure, deploy_lifecycle, error, make_channel, make_operator, make_queue, ok,
                          wait_chat)
from conftest import Api, wait_for


@pytest.fixture
def app(make_app):
    return make_app()


@pytest.fixture
def api(app):
    return Api(app)


def test_a_queue_needs_its_lifecycle_deployed_the_default_included(api):
    error(api.post("/api/queues", {"name": "Q", "routing_rule": "all"}), 422, field="lifecycle_process")
    deploy_lifecycle(api)
    assert make_queue(api, "all")["lifecycle_process"] == "ChatLifecycle"


def test_a_chat_whose_lifecycle_could_not_start_starts_once_the_process_is_deployed(api):
    """A queue left from before the check names a process that is not deployed: its chat waits,
    the admin sees why, and deploying the process starts it (the client's next message joins it)."""
    deploy_lifecycle(api)
    configure(api)
    queue = make_queue(api, "least_busy")
    with api.app.app_context():  # as an older version allowed: a lifecycle nobody deployed
        db.session.get(Queue, queue["id"]).lifecycle_process = "SupportLifecycle"
        db.session.commit()
        db.session.remove()
    ann = make_operator(api, "ann", queue["id"])
    client = make_channel(api, queue["id"]).client()
    client.writes("hello")
    stuck = wait_for(lambda: [c for c in ok(api.get("/api/chats")) if c["lifecycle_problem"]], timeout=10,
                     message="the chat to show why its lifecycle did not start")[0]
    assert stuck["state"] == "queued" and stuck["process_instance_id"] is None
    assert "SupportLifecycle" in stuck["lifecycle_problem"]
    assert ok(api.get(f"/api/chats/{stuck['id']}"))["lifecycle_problem"] == stuck["lifecycle_problem"]

    xml = (deploy_lifecycle.__globals__["LIFECYCLE"]).read_text().replace('id="ChatLifecycle"',
                                                                           'id="SupportLifecycle"')
    assert api.deploy(("SupportLifecycle.bpmn", xml)).status_code == 201
    started = wait_chat(api, stuck["id"], lambda c: c["process_instance_id"] and c["state"] == "offered",
                        timeout=10, message="the sweep to start the chat's lifecycle")
    assert started["offered_to_id"] == ann.id and started["lifecycle_problem"] is None
    client.writes("still there?")
    assert [c["id"] for c in ok(api.get("/api/chats"))] == [stuck["id"]]
