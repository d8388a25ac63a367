"""Console: the Processes page (deploy, refusals, versions, instances) and the process instance
page (bpmn-js diagram with the instance's elements marked), in a real browser over HTTP."""
import re
from pathlib import Path

import pytest
from playwright.sync_api import expect

from chat_helpers import configure, deploy_lifecycle, make_channel, make_operator, make_queue, new_chat, ok
from conftest import ADMIN_TOKEN, DATA, shot

GOOD = DATA / "loader" / "good.bpmn"     # LoaderGood: waits five minutes on a timer
BAD = DATA / "loader" / "bad.bpmn"       # two problems: empty timer, flow to nowhere
DIVIDE = DATA / "api" / "divide.bpmn"    # ApiDivide: 10 / divisor; written by hand, no layout (DI)

# ApiDivide's shape with a diagram layout, so the browser can draw the failed element.
DIVIDE_DRAWN = """<?xml version="1.0" encoding="UTF-8"?>
<bpmn:definitions xmlns:bpmn="http://www.omg.org/spec/BPMN/20100524/MODEL"
    xmlns:bpmndi="http://www.omg.org/spec/BPMN/20100524/DI" xmlns:dc="http://www.omg.org/spec/DD/20100524/DC"
    xmlns:di="http://www.omg.org/spec/DD/20100524/DI" id="defs_drawn" targetNamespace="http://bpmn.io/schema/bpmn">
  <bpmn:process id="ConsoleDivide" name="Divide (drawn)" isExecutable="true">
    <bpmn:startEvent id="start"><bpmn:outgoing>f1</bpmn:outgoing></bpmn:startEvent>
    <bpmn:sequenceFlow id="f1" sourceRef="start" targetRef="divide" />
    <bpmn:scriptTask id="divide" name="Divide"><bpmn:incoming>f1</bpmn:incoming><bpmn:outgoing>f2</bpmn:outgoing>
      <bpmn:script>result = 10 / divisor</bpmn:script></bpmn:scriptTask>
    <bpmn:sequenceFlow id="f2" sourceRef="divide" targetRef="end" />
    <bpmn:endEvent id="end"><bpmn:incoming>f2</bpmn:incoming></bpmn:endEvent>
  </bpmn:process>
  <bpmndi:BPMNDiagram id="diagram"><bpmndi:BPMNPlane id="plane" bpmnElement="ConsoleDivide">
    <bpmndi:BPMNShape id="start_di" bpmnElement="start"><dc:Bounds x="150" y="100" width="36" height="36" /></bpmndi:BPMNShape>
    <bpmndi:BPMNShape id="divide_di" bpmnElement="divide"><dc:Bounds x="240" y="78" width="100" height="80" /></bpmndi:BPMNShape>
    <bpmndi:BPMNShape id="end_di" bpmnElement="end"><dc:Bounds x="400" y="100" width="36" height="36" /></bpmndi:BPMNShape>
    <bpmndi:BPMNEdge id="f1_di" bpmnElement="f1"><di:waypoint x="186" y="118" /><di:waypoint x="240" y="118" /></bpmndi:BPMNEdge>
    <bpmndi:BPMNEdge id="f2_di" bpmnElement="f2"><di:waypoint x="340" y="118" /><di:waypoint x="400" y="118" /></bpmndi:BPMNEdge>
  </bpmndi:BPMNPlane></bpmndi:BPMNDiagram>
</bpmn:definitions>
"""


def problem_lines(details):
    """The refusal as the API words it (Problem.__str__): `file:line element problem`."""
    return [f"{p['file']}:{p['line'] or '?'} {p['element_id'] or '-'} {p['problem']}" for p in details["problems"]]


def element(page, element_id):
    return page.locator(f'.djs-element[data-element-id="{element_id}"]')


def marker(name):
    return re.compile(rf"(^|\s){name}(\s|$)")


@pytest.fixture
def app(running_app):
    return running_app


def test_deploy_versions_refusals_and_start(app, api, serve, console, tmp_path):
    base = serve(app)
    page = console(base, ADMIN_TOKEN)
    page.goto("/console/processes")
    expect(page.locator("#no-processes")).to_be_visible()
    files = page.get_by_label("BPMN files", exact=True)
    deploy = page.get_by_role("button", name="Deploy")

    files.set_input_files(str(GOOD))
    deploy.click()
    expect(page.locator("#deployed tr[data-key=LoaderGood] .outcome")).to_have_text("new version")
    row = page.locator("#processes tr[data-key=LoaderGood]")
    expect(row.locator(".version")).to_have_text("1")
    expect(page.locator("#versions tbody tr")).to_have_count(1)  # the first deployed key is selected

    files.set_input_files(str(GOOD))
    deploy.click()
    expect(page.locator("#deployed tr[data-key=LoaderGood] .outcome")).to_have_text("unchanged")
    expect(row.locator(".version")).to_have_text("1")

    # Two refused files and a good one: nothing is deployed, every problem of each file is listed.
    broken = tmp_path / "broken.bpmn"
    broken.write_text('<?xml version="1.0"?>\n<bpmn:definitions xmlns:bpmn="http://www.omg.org/spec/BPMN/20100524/MODEL">\n'
                      '  <bpmn:process id="P" isExecutable="true">\n</bpmn:definitions>\n')
    refusal = api.deploy(BAD, broken, DIVIDE)
    assert refusal.status_code == 422
    expected = problem_lines(refusal.get_json()["error"]["details"])
    assert len(expected) >= 3 and {line.split(":")[0] for line in expected} == {"bad.bpmn", "broken.bpmn"}
    files.set_input_files([str(BAD), str(broken), str(DIVIDE)])
    deploy.click()
    problems = page.locator("#deploy-problems li")
    expect(problems).to_have_text(expected)
    expect(page.get_by_role("alert").filter(has=problems.first)).to_be_visible()
    expect(page.locator("#processes tbody tr")).to_have_count(1)  # ApiDivide was not deployed either
    shot(page, "console-processes-refused")

    # Versions: the XML of version 1, as deployed.
    page.get_by_role("button", name="View v1").click()
    expect(page.locator("#bpmn-view-title")).to_have_text("LoaderGood version 1")
    expect(page.locator("#version-canvas-message")).to_contain_text("no diagram layout")
    assert page.locator("#bpmn-xml pre").text_content() == GOOD.read_text()
    with page.expect_download() as download:
        page.get_by_role("button", name="Download v1").click()
    assert download.value.suggested_filename == "good.bpmn"
    assert Path(download.value.path()).read_text() == GOOD.read_text()

    # Start an instance: bad JSON is refused next to the field, good JSON starts one, listed below.
    data = page.get_by_label("Data (JSON object)")
    data.fill("{nope")
    page.get_by_role("button", name="Start instance").click()
    expect(page.locator('.field-error[data-field="data"]')).to_be_visible()
    data.fill('{"customer": "Ada"}')
    page.get_by_role("button", name="Start instance").click()
    link = page.locator("#start-result a")
    expect(link).to_have_text(re.compile(r"instance \d+"))
    instance_id = int(link.get_attribute("href").rsplit("/", 1)[1])
    assert ok(api.get(f"/api/process-instances/{instance_id}"))["data"] == {"customer": "Ada"}
    expect(page.locator(f"#instances tr[data-id='{instance_id}'] .badge")).to_have_text("waiting")
    page.get_by_label("State").select_option("error")
    expect(page.locator("#instances tbody tr")).to_have_count(0)
    expect(page.locator("#no-instances")).to_be_visible()
    page.get_by_label("State").select_option("waiting")
    expect(page.locator("#instances tbody tr")).to_have_count(1)
    shot(page, "console-processes")

    # Not an admin: the page says the permission is needed and offers nothing.
    user = ok(api.post("/api/users", {"login": "olga", "name": "Olga"}), 201)
    page = console(base, user["token"])
    page.goto("/console/processes")
    expect(page.locator("#page-error")).to_contain_text("CanManageChats")
    expect(page.locator("#deploy")).to_be_hidden()


def test_instance_page_shows_the_lifecycle_where_it_waits(app, api, serve, console, telegram):
    deploy_lifecycle(api)
    configure(api)
    queue = make_queue(api)
    anna = make_operator(api, "anna", queue["id"])
    chat = new_chat(api, make_channel(api, queue["id"]).client())
    instance_id = chat["process_instance_id"]
    diagram = ok(api.get(f"/api/process-instances/{instance_id}/diagram"))
    instance = ok(api.get(f"/api/process-instances/{instance_id}"))
    assert "wait_offered" in diagram["active"] and diagram["completed"]

    page = console(serve(app), ADMIN_TOKEN)
    script_errors = []
    page.on("pageerror", lambda error: script_errors.append(error))
    page.goto(f"/console/instances/{instance_id}")
    expect(page.locator("#canvas svg").first).to_be_visible()
    expect(page.locator("#instance-state")).to_have_text("waiting")
    for element_id in diagram["active"]:
        expect(element(page, element_id)).to_have_class(marker("cf-active"))
    for element_id in diagram["completed"]:
        expect(element(page, element_id)).to_have_class(marker("cf-completed"))
    expect(element(page, "in_work")).not_to_have_class(marker("cf-(active|completed|errored)"))
    expect(page.locator("#waiting-for tr[data-task=wait_offered]")).to_contain_text("chat_accepted")
    expect(page.locator("#history tbody tr")).to_have_count(len(instance["history"]))
    expect(page.locator("#instance-data")).to_contain_text('"ChatId": %d' % chat["id"])
    # bpmn-js's licence asks that its logo stay visible.
    expect(page.locator("#canvas .bjs-powered-by")).to_be_visible()
    expect(page.locator("#retry")).to_be_hidden()
    expect(page.locator("#cancel")).to_be_visible()
    shot(page, "console-instance-lifecycle")

    # The operator accepts; the page follows by itself (auto-refresh) to the next wait.
    ok(anna.accept(chat["id"]))
    expect(element(page, "in_work")).to_have_class(marker("cf-active"), timeout=8000)
    expect(element(page, "wait_offered")).to_have_class(marker("cf-completed"))
    assert not script_errors


def test_instance_in_error_retry_and_cancel(app, api, serve, console):
    ok(api.deploy(DIVIDE, ("divide_drawn.bpmn", DIVIDE_DRAWN)), 201)
    drawn = ok(api.post("/api/processes/ConsoleDivide/instances", {"data": {"divisor": 0}}), 201)
    plain = ok(api.post("/api/processes/ApiDivide/instances", {"data": {"divisor": 0}}), 201)
    assert drawn["state"] == plain["state"] == "error"
    base = serve(app)

    page = console(base, ADMIN_TOKEN)
    page.goto(f"/console/instances/{drawn['id']}")
    expect(page.locator("#instance-state")).to_have_text("error")
    expect(page.locator("#instance-error")).to_have_text(drawn["error"])
    expect(element(page, "divide")).to_have_class(marker("cf-errored"))
    expect(element(page, "start")).to_have_class(marker("cf-completed"))
    expect(page.locator("#element-states dd[data-kind=errored]")).to_have_text("Divide (divide)")
    expect(page.locator(".bjs-powered-by")).to_be_visible()
    page.get_by_role("button", name="Retry").click()
    expect(page.locator("#instance-result")).to_contain_text("Retried: the instance is now error")
    expect(page.locator("#history tbody tr", has_text="retried")).to_have_count(1)
    shot(page, "console-instance-error")
    page.once("dialog", lambda dialog: dialog.accept())
    page.get_by_role("button", name="Cancel instance").click()
    expect(page.locator("#instance-state")).to_have_text("cancelled")
    expect(page.locator("#retry")).to_be_hidden()
    expect(page.locator("#cancel")).to_be_hidden()

    # No layout in the file: said plainly, the states still listed as text.
    page.goto(f"/console/instances/{plain['id']}")
    expect(page.locator("#diagram-message")).to_contain_text("no diagram layout")
    expect(page.locator("#element-states dd[data-kind=errored]")).to_have_text("divide")
    expect(page.get_by_role("button", name="Retry")).to_be_visible()

    # A signed-in user who is not an admin: the API refuses, the page says so.
    user = ok(api.post("/api/users", {"login": "olga", "name": "Olga"}), 201)
    page = console(base, user["token"])
    page.goto(f"/console/instances/{drawn['id']}")
    expect(page.locator("#page-error")).to_be_visible()
    expect(page.locator("#instance")).to_be_hidden()


def test_instance_page_without_bpmn_js(make_app, serve, console, tmp_path):
    from conftest import Api
    app = make_app(NODE_MODULES=str(tmp_path))  # as if `npm ci` was never run
    api = Api(app)
    ok(api.deploy(("divide_drawn.bpmn", DIVIDE_DRAWN)), 201)
    instance = ok(api.post("/api/processes/ConsoleDivide/instances", {"data": {"divisor": 0}}), 201)
    page = console(serve(app), ADMIN_TOKEN)
    page.goto(f"/console/instances/{instance['id']}")
    expect(page.locator("#diagram-message")).to_contain_text("bpmn-js) is not installed")
    expect(page.locator("#instance-error")).to_have_text(instance["error"])
    expect(page.locator("#element-states dd[data-kind=errored]")).to_have_text("divide")
