"""Transfer through the lifecycle (message chat_transferred, drawn in ChatLifecycle.bpmn): to an
operator of the same queue (offered to them with the acceptance timeout) and to another queue
(routed by its rule), with a note in the history; and changed timeouts reaching running chats."""
from chat_helpers import (LIFECYCLE, deploy_lifecycle, error, events, instance, make_channel, make_operator,
                          make_queue, new_chat, ok, wait_chat)


def in_work_by(api, operator, channel):
    chat = new_chat(api, channel.client())
    assert chat["offered_to_id"] == operator.id
    return ok(operator.accept(chat["id"]))


def test_transfer_to_an_operator_of_the_queue(chat_api):
    queue = make_queue(chat_api, "least_busy", completion_timeout_minutes=30)
    ann, bob = make_operator(chat_api, "ann", queue["id"]), make_operator(chat_api, "bob", queue["id"])
    chat = in_work_by(chat_api, ann, make_channel(chat_api, queue["id"]))
    ok(ann.reply(chat["id"], "let me pass you to Bob"), 201)
    targets = ok(ann.api.get(f"/api/chats/{chat['id']}/transfer-targets"))
    assert [(o["id"], o["available"]) for o in targets["operators"]] == [(bob.id, True)]

    moved = ok(ann.api.post(f"/api/chats/{chat['id']}/transfer", {"operator_id": bob.id, "note": "billing"}))
    assert (moved["state"], moved["offered_to_id"], moved["operator_id"]) == ("offered", bob.id, None)
    (step,) = events(chat_api, chat["id"], "transferred")
    assert {k: step["details"][k] for k in ("from_operator_id", "to_operator_id", "note", "by")} == \
        {"from_operator_id": ann.id, "to_operator_id": bob.id, "note": "billing", "by": ann.id}
    assert ann.me()["chats_in_work"] == 0 and bob.me()["chats_offered"] == 1
    proc = instance(chat_api, chat["process_instance_id"])
    assert [w["task"] for w in proc["waiting_for"] if w["kind"] == "timer"] == ["acceptance_timeout"]
    assert any(h["task"] == "transferred" for h in proc["history"])
    ok(bob.accept(chat["id"]))
    ok(bob.complete(chat["id"]))
    assert instance(chat_api, chat["process_instance_id"])["state"] == "completed"


def test_transfer_to_another_queue_is_routed_by_its_rule(chat_api):
    first = make_queue(chat_api, "least_busy", name="First line")
    second = make_queue(chat_api, "all", name="Second line")
    ann = make_operator(chat_api, "ann", first["id"])
    carl, dana = make_operator(chat_api, "carl", second["id"]), make_operator(chat_api, "dana", second["id"])
    chat = in_work_by(chat_api, ann, make_channel(chat_api, first["id"]))
    moved = ok(chat_api.post(f"/api/chats/{chat['id']}/transfer", {"queue_id": second["id"]}))   # an admin
    assert (moved["state"], moved["queue_id"], moved["offered_to_id"]) == ("queued", second["id"], None)
    assert chat["id"] in carl.chat_ids() and chat["id"] in dana.chat_ids()
    assert chat["id"] not in ann.chat_ids()
    ok(dana.accept(chat["id"]))
    assert events(chat_api, chat["id"], "transferred")[0]["details"]["to_queue_id"] == second["id"]


def test_transfer_refusals(chat_api):
    queue = make_queue(chat_api, "least_busy")
    other = make_queue(chat_api, "all", name="Other")
    ann, bob = make_operator(chat_api, "ann", queue["id"]), make_operator(chat_api, "bob", queue["id"], status="inactive")
    outsider = make_operator(chat_api, "olga", other["id"])
    chat = in_work_by(chat_api, ann, make_channel(chat_api, queue["id"]))
    path = f"/api/chats/{chat['id']}/transfer"
    error(ann.api.post(path, {"operator_id": bob.id}), 409, "operator_unavailable")
    error(ann.api.post(path, {"operator_id": outsider.id}), 422, field="operator_id")
    error(ann.api.post(path, {"queue_id": queue["id"]}), 422, field="queue_id")
    error(ann.api.post(path, {}), 422)
    error(bob.api.post(path, {"queue_id": other["id"]}), 409, "chat_not_in_work")
    error(outsider.api.post(path, {"queue_id": other["id"]}), 403)
    assert ok(chat_api.get(f"/api/chats/{chat['id']}"))["state"] == "in_work"


def test_a_lifecycle_without_transfer_answers_409_clearly(chat_api):
    xml = LIFECYCLE.read_text()
    start = xml.index('<bpmn:boundaryEvent id="transferred"')
    end = xml.index('</bpmn:boundaryEvent>', start) + len('</bpmn:boundaryEvent>')
    deploy_lifecycle(chat_api, xml[:start] + xml[end:].replace(
        '<bpmn:sequenceFlow id="to_transfer" sourceRef="transferred" targetRef="hand_over" />', ''))
    queue = make_queue(chat_api, "least_busy", name="Old style")
    ann, bob = make_operator(chat_api, "ann", queue["id"]), make_operator(chat_api, "bob", queue["id"])
    chat = in_work_by(chat_api, ann, make_channel(chat_api, queue["id"]))
    body = error(ann.api.post(f"/api/chats/{chat['id']}/transfer", {"operator_id": bob.id}), 409,
                 "action_not_in_lifecycle")
    assert "chat_transferred" in body["message"]
    assert ok(chat_api.get(f"/api/chats/{chat['id']}"))["state"] == "in_work"


def test_a_new_completion_timeout_reaches_a_running_chat_at_its_next_reply(chat_api):
    queue = make_queue(chat_api, "least_busy", completion_timeout_minutes=30)
    ann = make_operator(chat_api, "ann", queue["id"])
    chat = in_work_by(chat_api, ann, make_channel(chat_api, queue["id"]))
    ok(ann.reply(chat["id"], "first"), 201)
    ok(chat_api.patch(f"/api/queues/{queue['id']}", {"completion_timeout_minutes": 0.02}))  # 1.2 s
    ok(ann.reply(chat["id"], "second"), 201)     # the reply re-arms the timer with the new timeout
    done = wait_chat(chat_api, chat["id"], lambda c: c["state"] == "completed", timeout=10,
                     message="the chat to complete by the queue's new timeout")
    assert done["completion_reason"] == "timeout"
