"""Replies are sent at most once without the operator's decision: each attempt is recorded before
the provider is called; an attempt whose answer never got recorded is `uncertain`, never resent
by itself; "Send again" is the operator's call. Only known failures are retried.
"""
import os
import signal
import socket

import pytest
import requests

from app.channels.base import ProviderError
from app.channels.telegram import TelegramClient
from app.chats.delivery import Outcome, after_attempt
from app.extensions import db
from app.models.chat import ChatEvent, Message
from chat_helpers import configure, deploy_lifecycle, error_code, make_channel, make_operator, make_queue, new_chat, ok
from conftest import Api, wait_for

DELAYS = [2.0, 10.0]


# -- the decision -------------------------------------------------------------------------------
@pytest.mark.parametrize("outcome, attempt, expected", [
    (Outcome(sent=True), 1, ("sent", None)),
    (Outcome(sent=False, error="500", retryable=True), 1, ("pending", 2.0)),
    (Outcome(sent=False, error="500", retryable=True), 2, ("pending", 10.0)),
    (Outcome(sent=False, error="500", retryable=True), 3, ("failed", None)),    # retries used up
    (Outcome(sent=False, error="403", retryable=False), 1, ("failed", None)),   # will never pass
    # no answer came: it may be with the client already, so it is never retried by itself
    (Outcome(sent=False, error="ReadTimeout", retryable=True, maybe_delivered=True), 1, ("uncertain", None)),
])
def test_after_attempt(outcome, attempt, expected):
    assert after_attempt(outcome, attempt, DELAYS) == expected


# -- what the transport tells: refused is a known failure, no answer is not ----------------------
def test_a_refused_connection_is_a_known_failure():
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]  # closed again below: nothing listens there
    with pytest.raises(ProviderError) as refused:
        TelegramClient(f"http://127.0.0.1:{port}", timeout=2).send_message("1:t", "5", "hi")
    assert refused.value.retryable and not refused.value.maybe_delivered


def test_a_request_without_an_answer_may_have_been_delivered():
    with socket.socket() as listener:  # accepts the request and never answers
        listener.bind(("127.0.0.1", 0))
        listener.listen(1)
        client = TelegramClient(f"http://127.0.0.1:{listener.getsockname()[1]}", timeout=0.5)
        with pytest.raises(ProviderError) as silent:
            client.send_message("1:t", "5", "hi")
    assert silent.value.maybe_delivered, str(silent.value)
    assert "may have been delivered" in str(silent.value)


# -- in the production shape: a worker dies during the call ----------------------------------------
def reply_row(app, text) -> dict:
    with app.app_context():
        m = db.session.scalars(db.select(Message).where(Message.text == text)).one()
        row = {"status": m.status, "attempts": m.attempts, "attempted": m.attempted_at is not None}
        db.session.remove()
    return row


def test_worker_killed_between_provider_call_and_commit_leaves_the_reply_uncertain(
        make_app, redis_url, start_worker, telegram):
    app = make_app(redis_url=redis_url)
    api = Api(app)
    quick = {"CHATFLOW_PROVIDER_TIMEOUT_SECONDS": "1"}
    first = start_worker(sweep_seconds=0.3, grace_seconds=0.5, **quick)
    deploy_lifecycle(api)
    configure(api)
    queue = make_queue(api, rule="all")
    operator = make_operator(api, "op", queue["id"])
    channel = make_channel(api, queue["id"])
    chat = new_chat(api, channel.client(), timeout=20)
    assert ok(operator.accept(chat["id"]))["state"] == "in_work"

    release = telegram.hold_answers()  # Telegram gets the message; the worker waits for its answer
    reply = ok(operator.reply(chat["id"], "only once"), 201)
    wait_for(lambda: [p for p in telegram.sent() if p["text"] == "only once"], timeout=20,
             message="the worker to call Telegram")
    # The attempt was committed before the call.
    assert reply_row(app, "only once") == {"status": "sending", "attempts": 1, "attempted": True}
    os.killpg(first.pid, signal.SIGKILL)
    first.wait(timeout=10)
    release.set()

    start_worker(sweep_seconds=0.3, grace_seconds=0.5, **quick)

    def status():
        (m,) = [m for m in ok(operator.api.get(f"/api/chats/{chat['id']}/messages")) if m["id"] == reply["id"]]
        return m if m["status"] != "sending" else None

    message = wait_for(status, timeout=30, message="the sweep to settle the unanswered attempt")
    assert message["status"] == "uncertain" and "may have been delivered" in message["error"]
    # Uncertain is final until someone decides: the sweep that marked it never sends it.
    assert [p["text"] for p in telegram.sent()].count("only once") == 1
    assert reply_row(app, "only once") == {"status": "uncertain", "attempts": 1, "attempted": True}

    # The operator decides to send it again: it goes out once more, and the chat's history says who chose.
    again = operator.api.post(f"/api/chats/{chat['id']}/messages/{reply['id']}/send-again")
    assert ok(again)["status"] == "pending"
    wait_for(lambda: (s := status()) and s["status"] == "sent", timeout=20, message="the reply sent again")
    assert [p["text"] for p in telegram.sent()].count("only once") == 2
    with app.app_context():
        (event,) = db.session.scalars(db.select(ChatEvent).where(ChatEvent.event == "reply_sent_again")).all()
        assert event.details == {"message_id": reply["id"], "was": "uncertain", "attempts": 1, "by": operator.id}
        db.session.remove()
    # A sent reply is not sent again.
    refused = operator.api.post(f"/api/chats/{chat['id']}/messages/{reply['id']}/send-again")
    assert refused.status_code == 409 and error_code(refused) == "not_resendable"


def test_a_reply_that_failed_for_good_can_be_sent_again_by_its_operator(make_app, telegram):
    app = make_app(OUTBOUND_RETRY_DELAYS=[0.1])
    api = Api(app)
    deploy_lifecycle(api)
    configure(api)
    queue = make_queue(api, rule="all")
    operator, other = make_operator(api, "op", queue["id"]), make_operator(api, "op2", queue["id"])
    chat = new_chat(api, make_channel(api, queue["id"]).client())
    ok(operator.accept(chat["id"]))
    telegram.fail_sends = 2  # both attempts answered 500: failed
    reply = ok(operator.reply(chat["id"], "try me"), 201)

    def current():
        return next(m for m in ok(operator.api.get(f"/api/chats/{chat['id']}/messages")) if m["id"] == reply["id"])

    assert wait_for(lambda: (m := current())["status"] == "failed" and m, message="the reply to fail")
    not_mine = other.api.post(f"/api/chats/{chat['id']}/messages/{reply['id']}/send-again")
    assert not_mine.status_code == 409 and error_code(not_mine) == "chat_not_in_work"
    missing = operator.api.post(f"/api/chats/{chat['id']}/messages/999999/send-again")
    assert missing.status_code == 404 and error_code(missing) == "message_not_found"
    ok(operator.api.post(f"/api/chats/{chat['id']}/messages/{reply['id']}/send-again"))
    assert wait_for(lambda: (m := current())["status"] == "sent" and m, message="the reply to go out")
    assert [p["text"] for p in telegram.sent()].count("try me") == 3
