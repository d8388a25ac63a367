"""A whole chat end to end: over HTTP, on real Redis with a real
`chatflow worker` process, Telegram webhook in and the fake Bot API out, with timeouts of a few
seconds given as fractional minutes.
"""
import os
import signal
import time
from datetime import datetime, timedelta

from chat_helpers import get_chat, history, instance
from conftest import ROOT, Api, wait_for
from fakes.telegram import update

from app.extensions import db
from app.models import Channel

TOKEN = "123:good-token"
CLIENT = 555001
ACCEPT_MINUTES = 0.04       # 2.4 s to accept an offer
COMPLETION_MINUTES = 0.08   # 4.8 s after the last reply the chat completes
# The completion timer waits behind the event-based gateway `conversation`, which holds its due time.
COMPLETION_TIMER = ("conversation", "idle_too_long")


def at(text: str) -> datetime:
    return datetime.fromisoformat(text)


def setup_channel(api, routing_rule, completion_minutes, logins):
    """Deploy the lifecycle, settings, a queue with these operators and a Telegram channel on it."""
    assert api.deploy(ROOT / "processes" / "ChatLifecycle.bpmn").status_code == 201
    assert api.put("/api/settings/SiteUrl", {"value": "https://chat.example.com"}).status_code == 200
    assert api.put("/api/settings/OmniChatOperatorAcceptChatTimeout",
                   {"value": ACCEPT_MINUTES}).status_code == 200
    response = api.post("/api/queues", {"name": f"Support {routing_rule}", "routing_rule": routing_rule,
                                        "completion_timeout_minutes": completion_minutes})
    assert response.status_code == 201, response.get_json()
    queue = response.get_json()
    users = {}
    for login in logins:
        response = api.post("/api/users", {"login": login, "name": login.upper()})
        assert response.status_code == 201, response.get_json()
        users[login] = response.get_json()
        assert users[login]["token"]
        # New users start inactive and unconnected: each sets themselves to work, as an API client.
        assert api.put("/api/me/presence", token=users[login]["token"]).status_code == 200
        assert api.put("/api/me/status", {"status": "active"}, token=users[login]["token"]).status_code == 200
    response = api.post("/api/channels", {"provider": "telegram", "name": f"Bot {routing_rule}",
                                          "token": TOKEN, "active": True, "queue_id": queue["id"]})
    assert response.status_code == 201, response.get_json()
    channel = response.get_json()
    with api.app.app_context():
        secret = db.session.get(Channel, channel["id"]).webhook_secret
    return queue, users, channel, secret


def add_operator(api, queue, user=None, role=None):
    body = {"user_id": user["id"]} if user else {"role_id": role["id"]}
    response = api.post(f"/api/queues/{queue['id']}/operators", body)
    assert response.status_code == 201, response.get_json()


def client_writes(api, channel, secret, update_id, text):
    response = api.post(f"/webhooks/telegram/{channel['id']}", update(update_id, CLIENT, text), token=None,
                        headers={"X-Telegram-Bot-Api-Secret-Token": secret})
    assert response.status_code == 200, response.get_json()
    assert response.get_json()["duplicate"] is False


def events(items, name):
    return [e for e in items if e["event"] == name]


def visible_ids(api, user):
    response = api.get("/api/chats", token=user["token"])
    assert response.status_code == 200, response.get_json()
    return [c["id"] for c in response.get_json()]


def test_least_busy_chat_from_webhook_to_timeout_completion_and_a_new_chat(make_app, redis_url, start_worker,
                                                                          telegram):
    api = Api(make_app(redis_url=redis_url))
    start_worker()
    queue, users, channel, secret = setup_channel(api, "least_busy", COMPLETION_MINUTES, ["op1", "op2"])
    op1, op2 = users["op1"], users["op2"]
    add_operator(api, queue, op1)
    add_operator(api, queue, op2)
    assert [(c["token"], c["payload"]["url"]) for c in
            [{"token": t, "payload": p} for t, m, p in telegram.calls if m == "setWebhook"]] == \
        [(TOKEN, f"https://chat.example.com/webhooks/telegram/{channel['id']}")]

    # A client writes: the worker starts the lifecycle, which offers the chat to the least busy
    # operator. Both have 0 chats and never accepted one: the tie goes to the lower id, op1.
    client_writes(api, channel, secret, 1, "Hello, my order is late")
    (first,) = wait_for(lambda: [c for c in api.get("/api/chats").get_json() if c["state"] == "offered"],
                        timeout=10, message="the chat to be offered")
    assert first["queue_id"] == queue["id"] and first["channel_id"] == channel["id"]
    assert first["offered_to_id"] == op1["id"] and first["operator_id"] is None
    assert first["contact"]["name"] == "Ann Client"
    assert visible_ids(api, op1) == [first["id"]]
    assert visible_ids(api, op2) == []
    messages = api.get(f"/api/chats/{first['id']}/messages").get_json()
    assert [(m["direction"], m["text"], m["status"]) for m in messages] == \
        [("in", "Hello, my order is late", "received")]
    (offer1,) = events(history(api, first["id"]), "offered")
    assert offer1["details"]["operator_id"] == op1["id"]
    assert offer1["details"]["rule"] == "least_busy"
    assert [(c["operator_id"], c["chats_in_work"]) for c in offer1["details"]["candidates"]] == \
        [(op1["id"], 0), (op2["id"], 0)]
    assert api.post(f"/api/chats/{first['id']}/accept", token=op2["token"]).get_json()["error"]["code"] == \
        "not_offered_to_you"

    # op1 lets the acceptance timeout (2.4 s) pass: they become inactive, the chat goes to op2, who
    # accepts at once (the acceptance timer keeps running for op2: see the xfail test below).
    reoffered = wait_for(lambda: (c := get_chat(api, first["id"]))["offered_to_id"] == op2["id"] and c,
                         timeout=10, interval=0.02, message="the re-offer to op2")
    response = api.post(f"/api/chats/{first['id']}/accept", token=op2["token"])
    assert reoffered["state"] == "offered"
    assert response.status_code == 200, response.get_json()
    accepted = response.get_json()
    assert accepted["state"] == "in_work" and accepted["operator_id"] == op2["id"]
    assert accepted["accepted_at"] is not None
    me1 = api.get("/api/me", token=op1["token"]).get_json()
    assert me1["status"] == "inactive" and me1["chats_in_work"] == 0
    assert api.get("/api/me", token=op2["token"]).get_json()["status"] == "active"
    log = history(api, first["id"])
    assert [e["event"] for e in log] == ["created", "offered", "offer_timed_out", "offered", "accepted"]
    (timed_out,) = events(log, "offer_timed_out")
    assert timed_out["details"]["operator_id"] == op1["id"]
    assert timed_out["details"]["operator_now"] == "inactive"
    waited = (at(timed_out["at"]) - at(offer1["at"])).total_seconds()
    assert ACCEPT_MINUTES * 60 - 0.1 <= waited <= ACCEPT_MINUTES * 60 + 2.5, waited  # RQ: whole seconds, 1 s polls
    offer2 = events(log, "offered")[1]
    assert offer2["details"]["operator_id"] == op2["id"]
    assert [c["operator_id"] for c in offer2["details"]["candidates"]] == [op2["id"]]  # op1 inactive: no candidate
    assert events(log, "accepted")[0]["details"] == {"operator_id": op2["id"]}
    assert visible_ids(api, op1) == []
    assert visible_ids(api, op2) == [first["id"]]
    response = api.post(f"/api/chats/{first['id']}/accept", token=op1["token"])
    assert response.status_code == 409 and response.get_json()["error"]["code"] == "chat_taken"
    me2 = api.get("/api/me", token=op2["token"]).get_json()
    assert me2["chats_in_work"] == 1 and me2["chats_offered"] == 0
    process = instance(api, accepted["process_instance_id"])
    assert process["process"] == "ChatLifecycle" and process["state"] == "waiting"
    assert [w for w in process["waiting_for"] if w["kind"] == "timer"] == []  # no reply yet = no timer

    # The first reply goes out through sendMessage and starts the completion timer.
    response = api.post(f"/api/chats/{first['id']}/messages", {"text": "Sorry! Let me check."},
                        token=op2["token"])
    assert response.status_code == 201, response.get_json()
    reply1 = response.get_json()
    assert reply1["status"] == "pending" and reply1["direction"] == "out"
    wait_for(lambda: telegram.sent(TOKEN), timeout=10, message="sendMessage")
    assert telegram.sent(TOKEN) == [{"chat_id": CLIENT, "text": "Sorry! Let me check."}]
    wait_for(lambda: [m["status"] for m in api.get(f"/api/chats/{first['id']}/messages").get_json()
                      if m["id"] == reply1["id"]] == ["sent"], timeout=10, message="the reply to be sent")
    process = instance(api, accepted["process_instance_id"])
    (timer1,) = [w for w in process["waiting_for"] if w["kind"] == "timer"]
    assert timer1["task"] in COMPLETION_TIMER
    first_due = at(timer1["due_at"])
    assert abs((first_due - at(reply1["created_at"])).total_seconds() - COMPLETION_MINUTES * 60) < 1.0

    # 1.2 s before the first timer is due, a second reply restarts it in place.
    wait_for(lambda: datetime.now(first_due.tzinfo) >= first_due - timedelta(seconds=1.2),
             timeout=10, interval=0.05, message="the first timer to be nearly due")
    response = api.post(f"/api/chats/{first['id']}/messages", {"text": "It ships today."}, token=op2["token"])
    assert response.status_code == 201, response.get_json()
    reply2 = response.get_json()
    process = instance(api, accepted["process_instance_id"])
    (timer2,) = [w for w in process["waiting_for"] if w["kind"] == "timer"]
    assert timer2["task"] in COMPLETION_TIMER
    second_due = at(timer2["due_at"])
    assert abs((second_due - at(reply2["created_at"])).total_seconds() - COMPLETION_MINUTES * 60) < 1.0
    assert (second_due - first_due).total_seconds() >= COMPLETION_MINUTES * 60 - 1.5
    restarted = events(process["history"], "timer_restarted")
    assert len(restarted) == 1 and restarted[0]["task"] in COMPLETION_TIMER

    # Well after the first reply's timer would have fired (the worker's scheduler polls about once a
    # second), the chat is still in work.
    wait_for(lambda: datetime.now(first_due.tzinfo) >= first_due + timedelta(seconds=2.0), timeout=10,
             message="the first reply's due time to pass")
    assert get_chat(api, first["id"])["state"] == "in_work"
    assert datetime.now(first_due.tzinfo) < second_due  # the check above ran before the restarted timer
    wait_for(lambda: [m["text"] for m in telegram.sent(TOKEN)] == ["Sorry! Let me check.", "It ships today."],
             timeout=10, message="the second sendMessage")

    # The restarted timer completes the chat with reason timeout.
    done = wait_for(lambda: (c := get_chat(api, first["id"]))["state"] == "completed" and c, timeout=15,
                    message="the completion timeout")
    assert done["completion_reason"] == "timeout"
    assert done["operator_id"] == op2["id"]
    lag = (at(done["completed_at"]) - at(reply2["created_at"])).total_seconds()
    # RQ keeps whole seconds and its scheduler polls each second: up to ~2 s late, more on a busy machine.
    assert COMPLETION_MINUTES * 60 - 0.1 <= lag <= COMPLETION_MINUTES * 60 + 4.0, lag
    finished = wait_for(lambda: (i := instance(api, accepted["process_instance_id"]))["state"] == "completed"
                        and i, timeout=5, message="the instance to complete")
    fired = [e["task"] for e in events(finished["history"], "timer_fired")]
    assert fired[0] == "acceptance_timeout" and len(fired) == 2 and fired[1] in COMPLETION_TIMER, fired
    entered = [e["task"] for e in events(finished["history"], "entered")]
    assert {"idle_too_long", "by_timeout", "complete", "completed"} <= set(entered)
    assert "completed_in_conversation" not in entered  # no person completed it
    assert events(history(api, first["id"]), "completed")[0]["details"] == {"reason": "timeout"}
    assert api.get("/api/me", token=op2["token"]).get_json()["chats_in_work"] == 0
    assert [m["status"] for m in api.get(f"/api/chats/{first['id']}/messages").get_json()] == \
        ["received", "sent", "sent"]

    # The client writes again: a new chat, offered to op2 (op1 is still inactive); the old one stays completed.
    client_writes(api, channel, secret, 2, "One more question")
    second = wait_for(lambda: [c for c in api.get("/api/chats").get_json() if c["id"] != first["id"]
                               and c["state"] in ("offered", "queued") and c["process_instance_id"]],
                      timeout=10, message="a new chat")
    (second,) = second
    assert second["id"] > first["id"]
    assert second["contact"]["id"] == first["contact"]["id"]
    assert second["process_instance_id"] != first["process_instance_id"]
    second = wait_for(lambda: (c := get_chat(api, second["id"]))["state"] == "offered" and c, timeout=10,
                      message="the new chat to be offered")
    assert second["offered_to_id"] == op2["id"]
    assert [(m["direction"], m["text"]) for m in api.get(f"/api/chats/{second['id']}/messages").get_json()] \
        == [("in", "One more question")]
    old = get_chat(api, first["id"])
    assert old["state"] == "completed" and old["completion_reason"] == "timeout"
    assert len(api.get(f"/api/chats/{first['id']}/messages").get_json()) == 3


def test_all_queue_visible_to_every_eligible_operator_first_accept_wins(make_app, redis_url, start_worker,
                                                                      telegram):
    api = Api(make_app(redis_url=redis_url))
    start_worker()
    queue, users, channel, secret = setup_channel(api, "all", 0.05, ["op1", "op2", "away", "outsider"])
    op1, op2, away, outsider = users["op1"], users["op2"], users["away"], users["outsider"]
    add_operator(api, queue, op1)
    role = api.post("/api/roles", {"name": "Support team"}).get_json()
    assert api.post(f"/api/roles/{role['id']}/members", {"user_id": op2["id"]}).status_code in (200, 201)
    add_operator(api, queue, role=role)  # op2 serves the queue through a role
    add_operator(api, queue, away)
    assert api.put("/api/me/status", {"status": "inactive"}, token=away["token"]).get_json()["status"] == \
        "inactive"

    client_writes(api, channel, secret, 10, "Is anyone there?")
    (queued,) = wait_for(lambda: [c for c in api.get("/api/chats").get_json() if c["process_instance_id"]],
                         timeout=10, message="the lifecycle to start")
    assert queued["state"] == "queued" and queued["offered_to_id"] is None and queued["operator_id"] is None
    wait_for(lambda: visible_ids(api, op1) == [queued["id"]], timeout=5, message="op1 to see the chat")
    assert visible_ids(api, op2) == [queued["id"]]
    assert visible_ids(api, away) == []      # inactive
    assert visible_ids(api, outsider) == []  # serves no queue
    assert api.get(f"/api/chats/{queued['id']}", token=outsider["token"]).status_code == 403
    assert api.post(f"/api/chats/{queued['id']}/accept", token=outsider["token"]).status_code == 403
    assert events(history(api, queued["id"]), "queued")[0]["details"] == {"rule": "all"}
    process = instance(api, queued["process_instance_id"])
    assert process["state"] == "waiting"
    assert [(w["task"], w["kind"]) for w in process["waiting_for"] if w["kind"] == "timer"] == []  # no accept timeout

    # Longer than the acceptance timeout: an `all` chat has none; nobody is made inactive.
    wait_for(lambda: (at(get_chat(api, queued["id"])["created_at"]) + timedelta(seconds=ACCEPT_MINUTES * 60 + 1))
             <= datetime.now(at(queued["created_at"]).tzinfo), timeout=10, message="the acceptance timeout")
    assert get_chat(api, queued["id"])["state"] == "queued"
    assert events(history(api, queued["id"]), "offer_timed_out") == []
    assert api.get("/api/me", token=op1["token"]).get_json()["status"] == "active"

    # op2 accepts first; op1 gets 409 chat_taken and no longer sees the chat.
    response = api.post(f"/api/chats/{queued['id']}/accept", token=op2["token"])
    assert response.status_code == 200, response.get_json()
    assert response.get_json()["state"] == "in_work" and response.get_json()["operator_id"] == op2["id"]
    response = api.post(f"/api/chats/{queued['id']}/accept", token=op1["token"])
    assert response.status_code == 409
    assert response.get_json()["error"]["code"] == "chat_taken"
    assert visible_ids(api, op1) == []
    assert visible_ids(api, op2) == [queued["id"]]
    assert api.get("/api/me", token=op2["token"]).get_json()["chats_in_work"] == 1
    assert api.get("/api/me", token=op1["token"]).get_json()["chats_in_work"] == 0
    assert api.post(f"/api/chats/{queued['id']}/complete", token=op1["token"]).status_code == 409

    # A reply, then op2 completes: reason operator, and the lifecycle instance is completed.
    assert api.post(f"/api/chats/{queued['id']}/messages", {"text": "Yes, how can I help?"},
                    token=op2["token"]).status_code == 201
    wait_for(lambda: telegram.sent(TOKEN), timeout=10, message="sendMessage")
    assert telegram.sent(TOKEN) == [{"chat_id": CLIENT, "text": "Yes, how can I help?"}]
    response = api.post(f"/api/chats/{queued['id']}/complete", token=op2["token"])
    assert response.status_code == 200, response.get_json()
    done = response.get_json()
    assert done["state"] == "completed" and done["completion_reason"] == "operator"
    assert done["completed_at"] is not None and done["operator_id"] == op2["id"]
    finished = instance(api, queued["process_instance_id"])
    assert finished["state"] == "completed" and finished["waiting_for"] == []
    tasks = [e["task"] for e in finished["history"]]
    assert "complete" in tasks and "completed" in tasks and "by_timeout" not in tasks
    assert api.get("/api/me", token=op2["token"]).get_json()["chats_in_work"] == 0
    assert visible_ids(api, op2) == []
    assert api.post(f"/api/chats/{queued['id']}/complete", token=op2["token"]).status_code == 409

    # The completion timer it had (0.05 min) is gone with the instance: the reason stays operator.
    wait_for(lambda: (at(done["completed_at"]) + timedelta(seconds=4)) <= datetime.now(at(done["completed_at"]).tzinfo),
             timeout=10, message="past the completion timeout")
    again = get_chat(api, queued["id"])
    assert again["completion_reason"] == "operator" and again["completed_at"] == done["completed_at"]
    assert instance(api, queued["process_instance_id"])["history"] == finished["history"]


def test_next_operator_gets_a_full_acceptance_timeout_after_a_late_timer(make_app, redis_url, start_worker,
                                                                         telegram):
    api = Api(make_app(redis_url=redis_url))
    worker = start_worker(sweep_seconds=0.3, grace_seconds=0.3)
    queue, users, channel, secret = setup_channel(api, "least_busy", None, ["op1", "op2"])
    op1, op2 = users["op1"], users["op2"]
    add_operator(api, queue, op1)
    add_operator(api, queue, op2)
    client_writes(api, channel, secret, 20, "Hello?")
    (offered,) = wait_for(lambda: [c for c in api.get("/api/chats").get_json() if c["state"] == "offered"],
                          timeout=10, message="the chat to be offered")
    assert offered["offered_to_id"] == op1["id"]

    # The worker is paused (a deploy, a stalled host) past two acceptance timeouts; nothing else touches
    # the database meanwhile.
    os.killpg(worker.pid, signal.SIGSTOP)
    try:
        time.sleep(ACCEPT_MINUTES * 60 * 2 + 0.6)
    finally:
        os.killpg(worker.pid, signal.SIGCONT)

    # op1 missed their offer: the chat goes to op2, who must now have the full acceptance timeout.
    wait_for(lambda: events(history(api, offered["id"]), "offer_timed_out"), timeout=10,
             message="op1's offer to time out")
    reoffer = events(history(api, offered["id"]), "offered")[1]
    assert reoffer["details"]["operator_id"] == op2["id"]
    window_end = at(reoffer["at"]) + timedelta(seconds=ACCEPT_MINUTES * 60 - 0.6)
    wait_for(lambda: datetime.now(window_end.tzinfo) >= window_end, timeout=10, message="most of op2's time")
    log = [(e["event"], e["details"].get("operator_id")) for e in history(api, offered["id"])]
    assert log == [("created", None), ("offered", op1["id"]), ("offer_timed_out", op1["id"]),
                   ("offered", op2["id"])], history(api, offered["id"])
    assert api.get("/api/me", token=op2["token"]).get_json()["status"] == "active"
    now = get_chat(api, offered["id"])
    assert (now["state"], now["offered_to_id"]) == ("offered", op2["id"])
    response = api.post(f"/api/chats/{offered['id']}/accept", token=op2["token"])
    assert response.status_code == 200, response.get_json()
