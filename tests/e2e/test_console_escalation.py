"""The escalation variant in a real browser: a supervisor with the Supervisor page open sees the
notice when a chat nobody took moves to the overflow queue, opens the chat from it, and the
instance page draws the variant (bpmn-js) with the escalation path marked as run."""
import re

import pytest
from playwright.sync_api import expect

from chat_helpers import configure, deploy_lifecycle, make_channel, make_queue, ok, wait_chat
from conftest import ADMIN_TOKEN, ROOT, shot

ESCALATION = ROOT / "processes" / "ChatLifecycleEscalation.bpmn"


@pytest.fixture
def app(running_app):
    return running_app


def test_the_supervisor_sees_an_escalated_chat_and_its_path_in_the_diagram(app, api, serve, console):
    deploy_lifecycle(api)
    xml = ESCALATION.read_text()
    assert xml.count("MaxWaitMinutes = 10") == 1
    ok(api.deploy(("ChatLifecycleEscalation.bpmn", xml.replace("MaxWaitMinutes = 10", "MaxWaitMinutes = 0.05"))),
       201)                                                                  # 3 s
    configure(api)
    front = ok(api.post("/api/queues", {"name": "Front line", "routing_rule": "all",
                                        "lifecycle_process": "ChatLifecycleEscalation"}), 201)
    overflow = make_queue(api, "all", name="Overflow")
    base = serve(app)
    page = console(base, ADMIN_TOKEN)
    script_errors = []
    page.on("pageerror", lambda error: script_errors.append(error))
    page.goto("/console/supervisor")
    expect(page.locator("body")).to_have_attribute("data-live", "live")     # its live events are open
    assert not ok(api.get("/api/me"))["connected"]     # only watching: the page is not operator presence

    make_channel(api, front["id"]).client().writes("is anybody there?")
    notice = page.locator("#notices .notice")
    expect(notice).to_contain_text("escalated to Overflow", timeout=20000)
    chat = [c for c in ok(api.get("/api/chats")) if c["queue_id"] == overflow["id"]][0]
    shot(page, "supervisor-escalation-notice")
    notice.get_by_role("link", name=f"Open chat {chat['id']}").click()
    expect(page).to_have_url(re.compile(rf"/console/supervisor\?chat={chat['id']}$"))
    wait_chat(api, chat["id"], lambda c: c["state"] == "queued")

    page.goto(f"/console/instances/{chat['process_instance_id']}")
    expect(page.locator("#canvas svg").first).to_be_visible()
    # (the boundary events of the wait in the overflow queue are waiting again: marked active)
    for element_id in ("escalation_rules", "escalate_waited", "mark_escalated", "move", "notify_supervisors"):
        expect(page.locator(f'.djs-element[data-element-id="{element_id}"]')).to_have_class(
            re.compile(r"(^|\s)cf-completed(\s|$)"))
    expect(page.locator('.djs-element[data-element-id="wait_any"]')).to_have_class(
        re.compile(r"(^|\s)cf-active(\s|$)"))
    shot(page, "instance-escalation")
    assert not script_errors
