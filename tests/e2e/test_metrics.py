"""`GET /metrics` in the production shape: two gunicorn web processes and a `chatflow worker`
share PROMETHEUS_MULTIPROC_DIR, and a scrape of either web process shows every process's counts
(README, "Metrics"). The worker's logs are JSON and name the request that enqueued its jobs."""
import json
import os
import signal

import requests
from prometheus_client.parser import text_string_to_metric_families

from chat_helpers import configure, deploy_lifecycle, make_channel, make_operator, make_queue, ok
from conftest import Api, wait_for
from fakes.telegram import update


def scrape(base: str) -> dict:
    """{(sample name, sorted labels): value} of one scrape."""
    response = requests.get(f"{base}/metrics", timeout=10)
    assert response.status_code == 200 and response.headers["Content-Type"].startswith("text/plain")
    return {(s.name, tuple(sorted(s.labels.items()))): s.value
            for family in text_string_to_metric_families(response.text) for s in family.samples}


def test_two_web_processes_and_a_worker_report_one_view(make_app, redis_url, start_worker, start_web, telegram,
                                                        tmp_path, monkeypatch):
    monkeypatch.setenv("PROMETHEUS_MULTIPROC_DIR", str(tmp_path))
    monkeypatch.setenv("CHATFLOW_LOG_FORMAT", "json")
    setup = Api(make_app(redis_url=redis_url))  # setup in this process, whose counts are its own
    deploy_lifecycle(setup)
    configure(setup)
    queue = make_queue(setup, "all", completion_timeout_minutes=0.02, name="Metrics")  # completes 1.2 s after a reply
    ann = make_operator(setup, "ann", queue["id"])
    channel = make_channel(setup, queue["id"])
    worker = None

    def boot_worker():
        nonlocal worker
        worker = start_worker(sweep_seconds=0.5)

    web_a, web_b = start_web(2, meanwhile=boot_worker)
    as_ann = {"Authorization": f"Bearer {ann.token}"}

    # traffic: a client's message (and Telegram's repeat of it) to web B, ann's work through both
    for _ in range(2):
        response = requests.post(f"{web_b}/webhooks/telegram/{channel.id}", json=update(777, 4242, "hi"), timeout=10,
                                 headers={"X-Telegram-Bot-Api-Secret-Token": channel.secret})
        assert response.status_code == 200, response.text
    chat = wait_for(lambda: next((c for c in ok(setup.get(f"/api/chats?queue_id={queue['id']}"))
                                  if c["state"] == "queued" and c["process_instance_id"]), None),
                    message="the chat to be queued by the worker")
    for base, times in ((web_a, 3), (web_b, 2)):
        for _ in range(times):
            assert requests.get(f"{base}/api/me", headers=as_ann, timeout=10).status_code == 200
    assert requests.post(f"{web_a}/api/chats/{chat['id']}/accept", headers=as_ann, timeout=10).status_code == 200
    reply = requests.post(f"{web_b}/api/chats/{chat['id']}/messages", json={"text": "hello"}, timeout=10,
                          headers={**as_ann, "X-Request-Id": "reply-of-ann-1"})
    assert reply.status_code == 201 and reply.headers["X-Request-Id"] == "reply-of-ann-1"
    # the completion timer fires in the worker 1.2 s after the reply
    done = wait_for(lambda: (c := ok(setup.get(f"/api/chats/{chat['id']}")))["state"] == "completed" and c,
                    timeout=20, message="the completion timeout to complete the chat")
    assert done["completion_reason"] == "timeout"
    wait_for(lambda: ok(setup.get(f"/api/chats/{chat['id']}/messages"))[-1]["status"] == "sent",
             message="the reply to be sent")

    a, b = scrape(web_a), scrape(web_b)
    expected = {
        ("chatflow_http_requests_total", (("method", "GET"), ("route", "/api/me"), ("status", "200"))): 5,
        ("chatflow_http_request_duration_seconds_count", (("method", "GET"), ("route", "/api/me"))): 5,
        ("chatflow_http_requests_total", (("method", "POST"), ("route", "/api/chats/<int:chat_id>/accept"),
                                          ("status", "200"))): 1,
        ("chatflow_webhook_messages_total", (("outcome", "stored"), ("provider", "telegram"))): 1,
        ("chatflow_webhook_messages_total", (("outcome", "duplicate"), ("provider", "telegram"))): 1,
        ("chatflow_outbound_deliveries_total", (("provider", "telegram"), ("status", "sent"))): 1,
        ("chatflow_timer_lag_seconds_count", ()): 1,
        ("chatflow_engine_steps_total", (("outcome", "completed"), ("process", "ChatLifecycle"))): 1,
        ("chatflow_jobs_enqueued_total", (("job", "start_chat_lifecycle"),)): 1,
        ("chatflow_jobs_enqueued_total", (("job", "deliver_message"),)): 1,
        ("chatflow_chats", (("state", "in_work"),)): 0,
        ("chatflow_operators", (("status", "active"),)): 1,
    }
    for scraped in (a, b):
        assert {key: scraped.get(key) for key in expected} == expected
    # the timer fired within its bucket bounds: 1.2 s after the reply, found by RQ or the sweep
    assert a[("chatflow_timer_lag_seconds_bucket", (("le", "+Inf"),))] == 1
    assert a[("chatflow_timer_lag_seconds_bucket", (("le", "5.0"),))] == 1

    # the worker's logs: JSON lines, those of the reply's delivery naming the request that enqueued it
    os.killpg(worker.pid, signal.SIGTERM)
    worker.wait(timeout=10)
    lines = [json.loads(line) for line in worker.stderr.read().decode().splitlines() if line.startswith("{")]
    assert lines and all({"time", "level", "logger", "message"} <= set(line) for line in lines)
    assert any(line.get("request_id") == "reply-of-ann-1" and "deliver_message" in line["message"] for line in lines)
