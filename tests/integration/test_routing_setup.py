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


def test_a_new_site_url_re_registers_active_telegram_webhooks_and_a_path_prefix_is_served(api, telegram):
    """SiteUrl with a path, as the seed's own example: webhooks go to {SiteUrl}/webhooks/... and
    are served there; a change reaches every active channel at once, failures are reported."""
    deploy_lifecycle(api)
    configure(api)
    queue = make_queue(api, "all")
    ann = make_operator(api, "ann", queue["id"])
    first = make_channel(api, queue["id"])
    second = make_channel(api, queue["id"], token="456:other-token", name="Second bot")
    idle = make_channel(api, queue["id"], name="Idle bot")
    ok(api.patch(f"/api/channels/{idle.id}", {"active": False}))
    telegram.calls.clear()
    answer = ok(api.put("/api/settings/SiteUrl", {"value": "https://yoursite.domain.com/0"}))
    assert answer["value"] == "https://yoursite.domain.com/0"
    assert answer["webhooks"] == [{"channel_id": first.id, "ok": True},
                                  {"channel_id": second.id, "ok": True}]
    urls = sorted(payload["url"] for _, method, payload in telegram.calls if method == "setWebhook")
    assert urls == [f"https://yoursite.domain.com/0/webhooks/telegram/{c.id}" for c in (first, second)]

    # Telegram calls the registered URL: the app serves it under the SiteUrl's path.
    from fakes.telegram import update
    r = api.client.post(f"/0/webhooks/telegram/{first.id}", json=update(990_001, 4242, "hi via /0"),
                        headers={"X-Telegram-Bot-Api-Secret-Token": first.secret})
    assert r.status_code == 200, r.get_data(as_text=True)
    wait_for(lambda: ann.chat_ids(), timeout=10, message="the chat to reach the operator")
    assert api.client.post(f"/1/webhooks/telegram/{first.id}", json=update(990_002, 4242, "x"),
                           headers={"X-Telegram-Bot-Api-Secret-Token": first.secret}).status_code == 404

    # A channel whose token Telegram now refuses is reported; the others are still re-registered.
    telegram.tokens.discard("456:other-token")
    try:
        answer = ok(api.put("/api/settings/SiteUrl", {"value": "https://chat.example.org"}))
    finally:
        telegram.tokens.add("456:other-token")
    by_channel = {w["channel_id"]: w for w in answer["webhooks"]}
    assert by_channel[first.id]["ok"] is True
    assert by_channel[second.id]["ok"] is False and "refused" in by_channel[second.id]["error"]
