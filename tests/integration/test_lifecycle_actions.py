"""Operators' actions are messages to the chat's lifecycle, and the chat changes only in the
operations its diagram calls: accept (`chat_accepted` -> `accept_chat`), reply (`operator_replied`
-> `note_reply`), complete (`chat_completed` -> `complete_chat`). A lifecycle that does not wait
for the message answers 409 action_not_in_lifecycle and the chat stays as it was; Chatflow's own
refusals keep their codes."""
import re

import pytest
from sqlalchemy import select

from chat_helpers import (LIFECYCLE, configure, deploy_lifecycle, error, events, instance, make_channel,
                          make_operator, make_queue, new_chat, ok, rows)
from app.models import Chat
from conftest import Api


@pytest.fixture
def app(make_app):
    return make_app()


@pytest.fixture
def api(app):
    api = Api(app)
    deploy_lifecycle(api)
    configure(api, accept_timeout_minutes=5, simultaneous_chats=2)
    return api


def without(xml: str, element: str, element_id: str) -> str:
    """The diagram without one element (and, for a subprocess, all it holds), its flows and its drawing."""
    start = xml.index(f'<bpmn:{element} id="{element_id}"')
    end = xml.index(f'</bpmn:{element}>', start) + len(f'</bpmn:{element}>')
    xml = xml[:start] + xml[end:]
    return re.sub(rf'\s*<bpmndi:BPMNShape id="{element_id}_di"[^\n]*', "", xml)


def steps(api: Api, chat: dict) -> list[tuple[str, str]]:
    """(element, event) of the chat's process history."""
    return [(h["task"], h["event"]) for h in instance(api, chat["process_instance_id"])["history"]]


def me(operator) -> dict:
    return operator.me()


def test_accept_is_the_diagrams_step(api):
    queue = make_queue(api, "least_busy")
    ann = make_operator(api, "ann", queue["id"])
    chat = new_chat(api, make_channel(api, queue["id"]).client())
    assert chat["offered_to_id"] == ann.id

    taken = ok(ann.accept(chat["id"]))
    assert (taken["state"], taken["operator_id"], taken["offered_to_id"]) == ("in_work", ann.id, None)
    history = steps(api, chat)
    assert ("wait_offered", "message_received") in history
    assert ("take", "completed") in history  # the service task accept_chat gave the chat to ann
    assert history.index(("wait_offered", "message_received")) < history.index(("take", "completed"))
    assert events(api, chat["id"], "accepted")[0]["details"]["operator_id"] == ann.id
    assert (me(ann)["chats_in_work"], me(ann)["chats_offered"]) == (1, 0)


def test_a_lifecycle_that_does_not_wait_for_chat_accepted_refuses_the_accept(api):
    xml = LIFECYCLE.read_text().replace('messageRef="msg_chat_accepted"', 'messageRef="msg_supervisor_assigns"') \
        .replace('<bpmn:message id="msg_chat_accepted" name="chat_accepted" />',
                 '<bpmn:message id="msg_supervisor_assigns" name="supervisor_assigns" />')
    deploy_lifecycle(api, xml)
    queue = make_queue(api, "all")
    ann = make_operator(api, "ann", queue["id"])
    chat = new_chat(api, make_channel(api, queue["id"]).client())

    body = error(ann.accept(chat["id"]), 409, "action_not_in_lifecycle")
    assert "chat_accepted" in body["message"] and "ChatLifecycle version 2" in body["message"]
    after = ok(api.get(f"/api/chats/{chat['id']}"))
    assert (after["state"], after["operator_id"]) == ("queued", None)
    assert me(ann)["chats_in_work"] == 0 and not events(api, chat["id"], "accepted")


def test_the_answer_is_the_state_the_diagram_left(api):
    """An analyst who drops the accept operation from the diagram changes what accepting does:
    the message is caught, the chat stays queued, and the answer says so."""
    xml = without(LIFECYCLE.read_text(), "serviceTask", "take")
    xml = xml.replace('<bpmn:sequenceFlow id="to_take" sourceRef="accepted" targetRef="take" />', "") \
        .replace('<bpmn:sequenceFlow id="to_work" sourceRef="take" targetRef="work" />',
                 '<bpmn:sequenceFlow id="to_work" sourceRef="accepted" targetRef="work" />') \
        .replace("<bpmn:outgoing>to_take</bpmn:outgoing>", "<bpmn:outgoing>to_work</bpmn:outgoing>")
    xml = re.sub(r'\s*<bpmndi:BPMNEdge id="to_take_di"[^\n]*', "", xml)
    deploy_lifecycle(api, xml)
    queue = make_queue(api, "all")
    ann = make_operator(api, "ann", queue["id"])
    chat = new_chat(api, make_channel(api, queue["id"]).client())

    answer = ok(ann.accept(chat["id"]))
    assert (answer["state"], answer["operator_id"]) == ("queued", None)
    assert ("wait_any", "message_received") in steps(api, chat)
    assert me(ann)["chats_in_work"] == 0


def test_reply_is_noted_by_the_diagram(api):
    queue = make_queue(api, "least_busy")  # no completion timeout: only the event subprocess hears replies
    ann = make_operator(api, "ann", queue["id"])
    chat = new_chat(api, make_channel(api, queue["id"]).client())
    ok(ann.accept(chat["id"]))
    assert last_outgoing_at(api, chat) is None
    ok(ann.reply(chat["id"], "hello"), 201)
    first = last_outgoing_at(api, chat)
    ok(ann.reply(chat["id"], "anything else?"), 201)
    noted = [h for h in steps(api, chat) if h == ("note_reply_task", "completed")]
    assert len(noted) == 2
    assert first is not None and last_outgoing_at(api, chat) > first  # set by note_reply, at each reply


def last_outgoing_at(api: Api, chat: dict):
    (at,) = rows(api, select(Chat.last_outgoing_at).where(Chat.id == chat["id"]))
    return at


def test_a_lifecycle_that_does_not_hear_replies_refuses_them(api):
    xml = without(LIFECYCLE.read_text(), "subProcess", "when_operator_replies")
    for edge in ("to_note_reply", "to_reply_noted"):
        xml = re.sub(rf'\s*<bpmndi:BPMNEdge id="{edge}_di"[^\n]*', "", xml)
    for shape in ("operator_replied", "note_reply_task", "reply_noted_end"):
        xml = re.sub(rf'\s*<bpmndi:BPMNShape id="{shape}_di"[^\n]*', "", xml)
    deploy_lifecycle(api, xml)
    queue = make_queue(api, "least_busy")  # no completion timeout: nothing else waits for a reply
    ann = make_operator(api, "ann", queue["id"])
    chat = new_chat(api, make_channel(api, queue["id"]).client())
    ok(ann.accept(chat["id"]))

    body = error(ann.reply(chat["id"], "hello"), 409, "action_not_in_lifecycle")
    assert "operator_replied" in body["message"]
    kept = ok(ann.api.get(f"/api/chats/{chat['id']}/messages"))
    assert [m["direction"] for m in kept] == ["in"]  # the refused reply was not stored, nor sent


def test_complete_is_the_diagrams_step_and_refusals_keep_their_codes(api):
    queue = make_queue(api, "least_busy")
    ann, bob = make_operator(api, "ann", queue["id"]), make_operator(api, "bob", queue["id"])
    chat = new_chat(api, make_channel(api, queue["id"]).client())
    taker = ann if chat["offered_to_id"] == ann.id else bob
    other = bob if taker is ann else ann
    error(other.accept(chat["id"]), 409, "not_offered_to_you")
    ok(taker.accept(chat["id"]))
    error(other.accept(chat["id"]), 409, "chat_taken")
    error(other.complete(chat["id"]), 409, "chat_not_in_work")
    error(other.reply(chat["id"], "mine now"), 409, "chat_not_in_work")

    done = ok(taker.complete(chat["id"]))
    assert (done["state"], done["completion_reason"]) == ("completed", "operator")
    assert ("complete", "completed") in steps(api, chat)
    assert not events(api, chat["id"], "completed_outside_process")
    error(taker.complete(chat["id"]), 409, "chat_not_in_work")
    assert me(taker)["chats_in_work"] == 0


def test_an_operator_cannot_complete_outside_the_lifecycle_but_an_admin_can(api):
    xml = LIFECYCLE.read_text()
    for catch in ("completed_before_reply", "completed_in_conversation"):
        xml = xml.replace(f'<bpmn:messageEventDefinition id="{catch}_def" messageRef="msg_chat_completed" />',
                          f'<bpmn:messageEventDefinition id="{catch}_def" messageRef="msg_supervisor_closes" />')
    xml = xml.replace('<bpmn:receiveTask id="in_work" name="In work until completed" messageRef="msg_chat_completed">',
                      '<bpmn:receiveTask id="in_work" name="In work until completed" '
                      'messageRef="msg_supervisor_closes">') \
        .replace('<bpmn:message id="msg_chat_transferred"',
                 '<bpmn:message id="msg_supervisor_closes" name="supervisor_closes" />\n'
                 '  <bpmn:message id="msg_chat_transferred"')
    deploy_lifecycle(api, xml)
    queue = make_queue(api, "least_busy")
    ann = make_operator(api, "ann", queue["id"])
    chat = new_chat(api, make_channel(api, queue["id"]).client())
    ok(ann.accept(chat["id"]))

    body = error(ann.complete(chat["id"]), 409, "action_not_in_lifecycle")
    assert "chat_completed" in body["message"]
    assert ok(api.get(f"/api/chats/{chat['id']}"))["state"] == "in_work"

    forced = ok(api.post(f"/api/chats/{chat['id']}/complete"))  # the documented admin force-complete
    assert (forced["state"], forced["completion_reason"]) == ("completed", "admin")
    assert events(api, chat["id"], "completed_outside_process")
    assert instance(api, chat["process_instance_id"])["state"] == "cancelled"
    assert me(ann)["chats_in_work"] == 0
