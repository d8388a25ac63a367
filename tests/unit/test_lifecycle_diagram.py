"""The shipped lifecycles' drawings tell the truth: every element and sequence flow is drawn,
each flow from its source shape to its target shape, and no label sits on a task."""
import xml.etree.ElementTree as ET

import pytest

from conftest import ROOT

NS = {"bpmn": "http://www.omg.org/spec/BPMN/20100524/MODEL", "bpmndi": "http://www.omg.org/spec/BPMN/20100524/DI",
      "dc": "http://www.omg.org/spec/DD/20100524/DC", "di": "http://www.omg.org/spec/DD/20100524/DI"}
TASKS = ("task", "serviceTask", "receiveTask", "userTask", "scriptTask", "sendTask", "subProcess", "callActivity")


def box(bounds, slack=0.0):
    x, y, w, h = (float(bounds.get(k)) for k in ("x", "y", "width", "height"))
    return x - slack, y - slack, x + w + slack, y + h + slack


def inside(point, b):
    return b[0] <= point[0] <= b[2] and b[1] <= point[1] <= b[3]


def overlap(a, b):
    return a[0] < b[2] and b[0] < a[2] and a[1] < b[3] and b[1] < a[3]


@pytest.fixture(scope="module", params=["ChatLifecycle.bpmn", "ChatLifecycleEscalation.bpmn"])
def diagram(request):
    root = ET.parse(ROOT / "processes" / request.param).getroot()
    shapes = {s.get("bpmnElement"): s for s in root.iter(f"{{{NS['bpmndi']}}}BPMNShape")}
    return root, shapes


def test_every_flow_is_drawn_between_its_own_shapes(diagram):
    root, shapes = diagram
    flows = {f.get("id"): f for f in root.iter(f"{{{NS['bpmn']}}}sequenceFlow")}
    wrong = []
    for edge in root.iter(f"{{{NS['bpmndi']}}}BPMNEdge"):
        flow = flows[edge.get("bpmnElement")]
        points = [(float(p.get("x")), float(p.get("y"))) for p in edge.findall("di:waypoint", NS)]
        for end, ref in ((points[0], flow.get("sourceRef")), (points[-1], flow.get("targetRef"))):
            if not inside(end, box(shapes[ref].find("dc:Bounds", NS), slack=2)):
                wrong.append(f"{flow.get('id')}: {end} is not on {ref}")
    assert not wrong, wrong


def test_no_label_sits_on_a_task(diagram):
    root, shapes = diagram
    tasks = {el.get("id") for kind in TASKS for el in root.iter(f"{{{NS['bpmn']}}}{kind}")}
    task_boxes = {t: box(shapes[t].find("dc:Bounds", NS)) for t in tasks if t in shapes}
    labels = [(s.get("bpmnElement"), box(b)) for s in root.iter() if s.tag.endswith("}BPMNShape") or
              s.tag.endswith("}BPMNEdge") for b in s.findall("bpmndi:BPMNLabel/dc:Bounds", NS)]
    assert labels, "the boundary events' labels are placed explicitly"
    # An element inside a subprocess has its label inside it too: only other tasks count.
    within = {(el.get("id"), sub.get("id")) for sub in root.iter(f"{{{NS['bpmn']}}}subProcess")
              for el in sub.iter() if el.get("id") and el is not sub}
    hits = [(name, task) for name, label in labels for task, b in task_boxes.items()
            if overlap(label, b) and (name, task) not in within]
    assert not hits, hits


def test_every_element_and_flow_is_drawn(diagram):
    """bpmn-js draws only what has a shape or an edge: an element without one is invisible."""
    root, shapes = diagram
    process = root.find("bpmn:process", NS)
    edges = {e.get("bpmnElement") for e in root.iter(f"{{{NS['bpmndi']}}}BPMNEdge")}
    flows = {f.get("id") for f in process.iter(f"{{{NS['bpmn']}}}sequenceFlow")}
    nodes = {el.get("id") for el in process.iter() if el is not process and el.get("id")
             and el.tag.startswith(f"{{{NS['bpmn']}}}") and not el.tag.endswith(("}sequenceFlow", "EventDefinition"))}
    assert nodes and flows
    assert (nodes - set(shapes), flows - edges) == (set(), set())


def test_the_escalation_variant_is_the_default_plus_its_path():
    """ChatLifecycleEscalation.bpmn handles what ChatLifecycle.bpmn handles: it keeps every element,
    flow and operation of the default, and reroutes only the two flows its path starts from. When
    the default changes, the variant is redrawn from it (processes/README.md, "Escalation")."""
    default, variant = (ET.parse(ROOT / "processes" / name).getroot().find("bpmn:process", NS)
                        for name in ("ChatLifecycle.bpmn", "ChatLifecycleEscalation.bpmn"))

    def elements(process):
        return {el.get("id"): el.tag for el in process.iter() if el is not process and el.get("id")}

    def flows(process):
        return {f.get("id"): (f.get("sourceRef"), f.get("targetRef"), "".join(f.itertext()).strip())
                for f in process.iter(f"{{{NS['bpmn']}}}sequenceFlow")}

    def operations(process):
        return {task.get("id"): op.get("id") for task in process.iter(f"{{{NS['bpmn']}}}serviceTask")
                for op in task.iter() if op.tag.endswith("}serviceTaskOperator")}

    assert elements(default).items() <= elements(variant).items()
    ours = flows(variant)
    assert {f for f, ends in flows(default).items() if ours.get(f) != ends} == {"to_route", "to_passed_on"}
    assert operations(default).items() <= operations(variant).items()
