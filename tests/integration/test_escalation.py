"""The escalation variant (processes/ChatLifecycleEscalation.bpmn) end to end, as an analyst sets
it up: the rules edited in the diagram's "Escalation rules" script, the variant deployed, a
queue selecting it. A chat whose offers are missed, or that waits too long, moves to the
overflow queue (routed by that queue's rule) and the supervisors hear of it live; it escalates
once. Runs on the suite's shape: embedded, or PostgreSQL + RQ with a real worker."""
import pytest

from app.services import services
from chat_helpers import (ROOT, configure, deploy_lifecycle, events, instance, make_channel, make_operator,
                          make_queue, new_chat, ok, wait_chat)
from conftest import Api, wait_for

ESCALATION = ROOT / "processes" / "ChatLifecycleEscalation.bpmn"
RULES = ('MaxMissedOffers = 3', 'MaxWaitMinutes = 10', 'OverflowQueue = "Overflow"')


def rules(missed=3, wait_minutes=10, overflow="Overflow") -> str:
    """The shipped variant with the analyst's three values edited, as in a modeler."""
    xml = ESCALATION.read_text()
    for old, new in zip(RULES, (f"MaxMissedOffers = {missed}", f"MaxWaitMinutes = {wait_minutes}",
                                f"OverflowQueue = {overflow!r}")):
        assert xml.count(old) == 1, old
        xml = xml.replace(old, new)
    return xml


def deploy_escalation(api, xml: str) -> None:
    response = api.deploy(("ChatLifecycleEscalation.bpmn", xml))
    assert response.status_code in (200, 201), response.get_data(as_text=True)
    assert [p["key"] for p in response.get_json()["processes"]] == ["ChatLifecycleEscalation"]


def escalating_queue(api, rule: str) -> dict:
    return ok(api.post("/api/queues", {"name": "Front line", "routing_rule": rule,
                                       "lifecycle_process": "ChatLifecycleEscalation"}), 201)


@pytest.fixture
def api(running_app):
    api = Api(running_app)
    deploy_lifecycle(api)
    return api


@pytest.fixture
def supervisor(api):
    """A second user with CanManageChats, listening to their live events as their console does."""
    user = ok(api.post("/api/users", {"login": "sue", "name": "Sue", "permissions": ["CanManageChats"]}), 201)
    subscription = services(api.app).events.subscribe(user["id"])
    yield user["id"], subscription
    subscription.close()


def next_notification(subscription, timeout=20.0) -> dict:
    def notification():
        event = subscription.get(timeout=0.2)
        return event if event and event["type"] == "notification" else None
    return wait_for(notification, timeout=timeout, message="a notification on the supervisor's live events")


def test_missed_offers_move_the_chat_to_the_overflow_queue_and_notify_the_supervisors(api, supervisor):
    sue, sue_events = supervisor
    deploy_escalation(api, rules(missed=2))
    configure(api, accept_timeout_minutes=0.01, simultaneous_chats=2)   # 0.6 s to accept
    front, overflow = escalating_queue(api, "least_busy"), make_queue(api, "all", name="Overflow")
    ann, bob = make_operator(api, "ann", front["id"]), make_operator(api, "bob", front["id"])
    carl = make_operator(api, "carl", overflow["id"])
    chat = new_chat(api, make_channel(api, front["id"]).client())
    assert chat["offered_to_id"] in (ann.id, bob.id)

    # Ann and Bob each miss their offer (and become inactive); after the second miss it moves.
    moved = wait_chat(api, chat["id"], lambda c: c["queue_id"] == overflow["id"], timeout=20,
                      message="the chat to move to the overflow queue")
    assert (moved["state"], moved["offered_to_id"]) == ("queued", None)
    missed = events(api, chat["id"], "offer_timed_out")
    assert sorted(e["details"]["operator_id"] for e in missed) == sorted([ann.id, bob.id])
    (move,) = events(api, chat["id"], "moved_to_queue")
    assert {k: move["details"][k] for k in ("from_queue_id", "to_queue_id", "missed_offers")} == \
        {"from_queue_id": front["id"], "to_queue_id": overflow["id"], "missed_offers": 2}
    assert [e["details"]["operator_id"] for e in events(api, chat["id"], "offered")] == \
        [e["details"]["operator_id"] for e in missed]                # nobody was offered it a third time
    assert ann.me()["chats_offered"] == bob.me()["chats_offered"] == 0

    # The supervisors (users with CanManageChats) are told live and in the chat's history.
    notice = next_notification(sue_events)
    assert notice["chat_id"] == chat["id"] and "Overflow" in notice["text"] and "2 offers missed" in notice["text"]
    (notified,) = events(api, chat["id"], "notified")
    admin_id = ok(api.get("/api/me"))["id"]
    assert notified["details"]["user_ids"] == sorted([admin_id, sue])
    assert notified["details"]["text"] == notice["text"]

    # In the overflow queue (rule `all`) Carl sees it and takes it; the lifecycle goes on as usual.
    assert chat["id"] in carl.chat_ids()
    ok(carl.accept(chat["id"]))
    ok(carl.complete(chat["id"]))
    proc = instance(api, chat["process_instance_id"])
    assert proc["state"] == "completed"
    assert {"escalate_missed", "escalated_offered", "move", "notify_supervisors"} <= \
        {h["task"] for h in proc["history"]}


def test_a_chat_waiting_too_long_escalates_once_and_is_offered_by_the_overflow_queues_rule(api, supervisor):
    sue, sue_events = supervisor
    deploy_escalation(api, rules(wait_minutes=0.02))                   # 1.2 s
    configure(api, accept_timeout_minutes=5, simultaneous_chats=2)
    front, overflow = escalating_queue(api, "all"), make_queue(api, "least_busy", name="Overflow")
    make_operator(api, "ann", front["id"], status="inactive")           # nobody in the front line takes it
    carl = make_operator(api, "carl", overflow["id"])
    chat = new_chat(api, make_channel(api, front["id"]).client())
    assert chat["state"] == "queued"

    moved = wait_chat(api, chat["id"], lambda c: c["queue_id"] == overflow["id"], timeout=20,
                      message="the chat to move to the overflow queue")
    assert (moved["state"], moved["offered_to_id"]) == ("offered", carl.id)   # least_busy there
    assert next_notification(sue_events)["chat_id"] == chat["id"]
    # Its wait in the overflow queue runs the same timers; the wait timer fires there too, and
    # finds the chat escalated already.
    proc = wait_for(lambda: (lambda p: p if "already_escalated" in {h["task"] for h in p["history"]} else None)(
        instance(api, chat["process_instance_id"])), timeout=20, message="the second wait timer")
    assert [w["task"] for w in proc["waiting_for"] if w["kind"] == "timer"] == ["acceptance_timeout"]
    assert len(events(api, chat["id"], "moved_to_queue")) == len(events(api, chat["id"], "notified")) == 1
    ok(carl.accept(chat["id"]))
    assert carl.me()["chats_in_work"] == 1 and carl.me()["chats_offered"] == 0


def test_an_overflow_queue_that_does_not_exist_fails_the_step_and_says_which(api):
    deploy_escalation(api, rules(wait_minutes=0.01, overflow="Nowhere"))
    configure(api, accept_timeout_minutes=5, simultaneous_chats=2)
    front = escalating_queue(api, "all")
    chat = new_chat(api, make_channel(api, front["id"]).client())
    proc = wait_for(lambda: (lambda p: p if p["state"] == "error" else None)(
        instance(api, chat["process_instance_id"])), timeout=20, message="the instance to fail")
    assert any("no queue 'Nowhere'" in (h.get("details") or {}).get("error", "") or
               "no queue 'Nowhere'" in str(h) for h in proc["history"]), proc["history"]
    assert ok(api.get(f"/api/chats/{chat['id']}"))["queue_id"] == front["id"]   # nothing half-moved


def test_the_generic_operations_are_listed_for_analysts(api):
    ops = {o["name"]: o for o in ok(api.get("/api/process-operations"))}
    assert set(ops["move_to_queue"]["parameters"]) == {"chat_id", "queue", "reason"}
    assert set(ops["notify"]["parameters"]) == {"chat_id", "text", "to"}
    assert "stop_after" in ops["offer_timed_out"]["parameters"]
    assert "missed_offers" in ops["offer_timed_out"]["returns"]
    assert "CanManageChats" in ops["notify"]["description"]
