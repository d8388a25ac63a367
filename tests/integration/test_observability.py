"""/metrics protection and content on one process, request ids, and JSON logs carrying the
request id into the jobs a request enqueues (README, "Metrics" and "Logs")."""
import io
import json
import logging

import pytest
from prometheus_client.parser import text_string_to_metric_families

from app import metrics
from app.logs import JsonFormatter
from chat_helpers import configure, deploy_lifecycle, make_channel, make_operator, make_queue, new_chat, ok
from conftest import Api, wait_for


def samples(response) -> dict:
    return {(s.name, tuple(sorted(s.labels.items()))): s.value
            for family in text_string_to_metric_families(response.get_data(as_text=True)) for s in family.samples}


@pytest.mark.parametrize("token, allow, remote, authorization, status", [
    (None, "127.0.0.0/8,::1/128", "127.0.0.1", None, 200),
    (None, "127.0.0.0/8,::1/128", "10.0.0.7", None, 403),
    (None, "10.0.0.0/8", "10.0.0.7", None, 200),
    ("s3cret", "", "10.0.0.7", "Bearer s3cret", 200),
    ("s3cret", "", "10.0.0.7", "Bearer wrong", 403),
    ("s3cret", "", "127.0.0.1", None, 403),
])
def test_metrics_need_an_allowed_network_or_the_token(make_app, token, allow, remote, authorization, status):
    app = make_app(METRICS_TOKEN=token, METRICS_ALLOW=allow)
    response = app.test_client().get("/metrics", environ_base={"REMOTE_ADDR": remote},
                                     headers={"Authorization": authorization} if authorization else {})
    assert response.status_code == status
    if status == 403:
        assert response.get_json()["error"]["code"] == "forbidden"


def test_requests_webhooks_and_the_database_state_are_counted(make_app, telegram):
    """One process (jobs in its thread, whatever the shape): its own counts."""
    app = make_app()
    api = Api(app)
    deploy_lifecycle(api)
    configure(api)
    queue = make_queue(api, "all", name="Counted")
    ann = make_operator(api, "ann", queue["id"])
    client = make_channel(api, queue["id"]).client()
    before = samples(app.test_client().get("/metrics"))
    chat = new_chat(api, client)
    client.writes("again", update_id=1)
    client.writes("again", update_id=1)   # Telegram's repeat: a duplicate
    ok(ann.api.post(f"/api/chats/{chat['id']}/accept"))
    ok(ann.api.get("/api/me"))
    after = samples(app.test_client().get("/metrics"))

    def grew(name, **labels):
        key = (name, tuple(sorted(labels.items())))
        return after.get(key, 0) - before.get(key, 0)

    assert grew("chatflow_webhook_messages_total", provider="telegram", outcome="stored") == 2
    assert grew("chatflow_webhook_messages_total", provider="telegram", outcome="duplicate") == 1
    assert grew("chatflow_http_requests_total", method="POST", route="/api/chats/<int:chat_id>/accept",
                status="200") == 1
    assert grew("chatflow_http_request_duration_seconds_count", method="GET", route="/api/me") == 1
    assert grew("chatflow_jobs_enqueued_total", job="start_chat_lifecycle") == 1
    assert after[("chatflow_chats", (("state", "in_work"),))] == 1
    assert after[("chatflow_chats", (("state", "queued"),))] == 0
    assert after[("chatflow_operators", (("status", "active"),))] == 1
    assert after[("chatflow_operators", (("status", "available"),))] == 1


def test_webhook_outcomes_read_from_the_answer():
    assert metrics.webhook_outcomes("telegram", 403, None) == {"rejected": 1}
    assert metrics.webhook_outcomes("telegram", 400, {"error": {}}) == {"malformed": 1}
    assert metrics.webhook_outcomes("telegram", 200, {"ok": True, "duplicate": False}) == {"stored": 1}
    assert metrics.webhook_outcomes("telegram", 200, {"ok": True, "skipped": "no text"}) == {"skipped": 1}
    assert metrics.webhook_outcomes("facebook", 200, {"ok": True, "events": 3, "stored": 2, "skipped": 1}) == \
        {"stored": 2, "not_stored": 1, "skipped": 1}
    assert metrics.webhook_outcomes("facebook", 503, None) == {"error": 1}


def test_a_request_id_is_taken_or_made_and_answered(api):
    given = api.get("/api/me", headers={"X-Request-Id": "abc-123"})
    assert given.headers["X-Request-Id"] == "abc-123"
    made = api.get("/api/me", headers={"X-Request-Id": "not valid \u00e9 " * 3})
    assert len(made.headers["X-Request-Id"]) == 32 and made.headers["X-Request-Id"] != "abc-123"
    assert api.get("/api/nothing-here").headers["X-Request-Id"]   # errors too


@pytest.fixture
def json_lines():
    """Every log record as the JSON formatter writes it, from any thread."""
    stream = io.StringIO()
    handler = logging.StreamHandler(stream)
    handler.setFormatter(JsonFormatter())
    root = logging.getLogger()
    root.addHandler(handler)
    yield lambda: [json.loads(line) for line in stream.getvalue().splitlines()]
    root.removeHandler(handler)


def test_json_logs_carry_the_request_id_into_jobs_and_mask_secrets(make_app, telegram, json_lines):
    """The embedded job thread (a worker process's logs: tests/e2e/test_metrics.py)."""
    api = Api(make_app())
    deploy_lifecycle(api)
    configure(api)
    queue = make_queue(api, "all", name="Logged")
    ann = make_operator(api, "ann", queue["id"])
    chat = new_chat(api, make_channel(api, queue["id"]).client())
    ok(ann.api.post(f"/api/chats/{chat['id']}/accept"))
    telegram.fail_sends = 1   # the first attempt fails: the delivery job logs a warning
    sent = ann.api.post(f"/api/chats/{chat['id']}/messages", {"text": "hi"}, headers={"X-Request-Id": "req-77"})
    assert sent.status_code == 201
    warning = wait_for(lambda: next((line for line in json_lines() if line["level"] == "WARNING"
                                     and line["logger"] == "app.jobs"), None), message="the failed attempt's log")
    assert warning["request_id"] == "req-77" and warning["time"].endswith("+00:00")
    logging.getLogger("urllib3.connectionpool").warning("GET /bot123:secret-token/sendMessage?access_token=abc")
    masked = json_lines()[-1]
    assert "secret-token" not in masked["message"] and "abc" not in masked["message"]
    assert masked["message"] == "GET /bot***/sendMessage?access_token=***"


def test_json_lines_name_the_chat_and_instance_a_step_works_on():
    from types import SimpleNamespace

    from app.engine.instances import current_instance
    record = logging.LogRecord("app.chats", logging.INFO, __file__, 1, "offered to %s", (7,), None)
    token = current_instance.set(SimpleNamespace(id=12, business_key="chat:34"))
    try:
        line = json.loads(JsonFormatter().format(record))
    finally:
        current_instance.reset(token)
    assert {k: line[k] for k in ("level", "logger", "message", "instance_id", "chat_id")} == \
        {"level": "INFO", "logger": "app.chats", "message": "offered to 7", "instance_id": 12, "chat_id": 34}
    assert "request_id" not in line
