"""Oversize request bodies are refused with 413 in the JSON error format.

The limit is MAX_CONTENT_LENGTH (CHATFLOW_MAX_BODY_BYTES, 5 MiB by default); each test's app
gets a small one so nothing sends megabytes.
"""
import hashlib
import hmac
import io
import json

import pytest

from chat_helpers import configure, make_channel, make_queue, ok, put_setting
from app.extensions import db
from app.services import services
from conftest import ADMIN_TOKEN, ROOT, Api
from fakes.telegram import update

LIMIT = 4096
APP_SECRET = "app-secret"


@pytest.fixture
def api(make_app, telegram, graph):
    app = make_app(MAX_CONTENT_LENGTH=LIMIT)
    lifecycle = ROOT / "processes" / "ChatLifecycle.bpmn"  # queues need it; larger than LIMIT to upload
    with app.app_context():
        services(app).engine.deploy([(lifecycle.name, lifecycle.read_bytes())])
        db.session.commit()
        db.session.remove()
    return Api(app)


def too_large(response):
    assert response.status_code == 413, response.get_data(as_text=True)[:300]
    error = response.get_json()["error"]
    assert error["code"] == "request_entity_too_large" and error["message"]
    return error


def json_of_size(size: int, **fields) -> bytes:
    """A JSON object of exactly `size` bytes: `fields` plus a padding string field `pad`."""
    base = json.dumps({**fields, "pad": ""}).encode()
    body = json.dumps({**fields, "pad": "x" * (size - len(base))}).encode()
    assert len(body) == size
    return body


def test_the_default_limit_is_5_mib(make_app):
    assert make_app().config["MAX_CONTENT_LENGTH"] == 5 * 1024 * 1024


def test_json_route(api):
    headers = {"Authorization": f"Bearer {ADMIN_TOKEN}", "Content-Type": "application/json"}
    over = api.client.post("/api/queues", data=json_of_size(LIMIT + 1, name="Q", routing_rule="all"),
                           headers=headers)
    too_large(over)
    # Just under: read and judged on its content (the padding is an unknown field), not its size.
    under = api.client.post("/api/queues", data=json_of_size(LIMIT - 1, name="Q", routing_rule="all"),
                            headers=headers)
    assert under.status_code == 422 and under.get_json()["error"]["code"] == "unknown_field"
    assert ok(api.get("/api/queues")) == []


def _bpmn_of_size(size: int) -> bytes:
    head = b'<?xml version="1.0"?>\n<!--'
    tail = b"-->\n"
    return head + b" " * (size - len(head) - len(tail)) + tail


def test_multipart_bpmn_upload(api):
    over = api.call("POST", "/api/processes", data={"file": (io.BytesIO(_bpmn_of_size(LIMIT + 100)), "big.bpmn")},
                    content_type="multipart/form-data")
    too_large(over)
    # Two files, each well under the limit, together over it: the limit is for the whole body.
    parts = [(io.BytesIO(_bpmn_of_size(LIMIT // 2 + 100)), f"{n}.bpmn") for n in range(2)]
    too_large(api.call("POST", "/api/processes", data={"file": parts}, content_type="multipart/form-data"))
    under = api.call("POST", "/api/processes", data={"file": (io.BytesIO(_bpmn_of_size(LIMIT - 400)), "small.bpmn")},
                     content_type="multipart/form-data")
    assert under.status_code == 422, under.get_data(as_text=True)[:300]  # read, and refused as no BPMN
    assert under.get_json()["error"]["code"] == "invalid_bpmn"
    assert [p["key"] for p in ok(api.get("/api/processes"))] == ["ChatLifecycle"]  # only the fixture's


def test_telegram_webhook(api):
    configure(api)
    channel = make_channel(api, make_queue(api)["id"])
    headers = {"X-Telegram-Bot-Api-Secret-Token": channel.secret, "Content-Type": "application/json"}

    def body(size):
        base = json.dumps(update(1, 4242, "")).encode()
        return json.dumps(update(1, 4242, "x" * (size - len(base)))).encode()

    too_large(api.client.post(f"/webhooks/telegram/{channel.id}", data=body(LIMIT + 1), headers=headers))
    assert ok(api.get("/api/chats")) == []
    under = api.client.post(f"/webhooks/telegram/{channel.id}", data=body(LIMIT - 1), headers=headers)
    assert ok(under) == {"ok": True, "duplicate": False}


def test_facebook_webhook_is_refused_before_its_signature_is_checked(api):
    put_setting(api, "FacebookAppSecret", APP_SECRET)
    raw = json_of_size(LIMIT + 1, object="page", entry=[])
    signature = "sha256=" + hmac.new(APP_SECRET.encode(), raw, hashlib.sha256).hexdigest()
    too_large(api.client.post("/webhooks/facebook", data=raw, headers={
        "Content-Type": "application/json", "X-Hub-Signature-256": signature}))
    raw = json.dumps({"object": "page", "entry": [], "pad": "x" * (LIMIT - 100)}).encode()
    signature = "sha256=" + hmac.new(APP_SECRET.encode(), raw, hashlib.sha256).hexdigest()
    under = api.client.post("/webhooks/facebook", data=raw, headers={
        "Content-Type": "application/json", "X-Hub-Signature-256": signature})
    assert ok(under)["events"] == 0


def test_the_openapi_document_declares_413_as_an_error(api):
    # 413 falls under the 4XX answer every operation declares, in the Error schema.
    operation = ok(api.get("/openapi.json"))["paths"]["/api/queues"]["post"]
    assert operation["responses"]["4XX"]["content"]["application/json"]["schema"] == {
        "$ref": "#/components/schemas/Error"}
