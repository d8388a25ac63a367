"""The budget of one advance, on SpiffWorkflow alone: each limit stops the run with the element
it was at and which budget ran out."""
import pytest
from SpiffWorkflow.bpmn import BpmnWorkflow
from SpiffWorkflow.util.task import TaskState

from conftest import DATA
from app.bpmn import limits
from app.bpmn.loader import load
from app.bpmn.scripting import RestrictedEnvironment, ScriptEngine

COLLECTION = """<?xml version="1.0" encoding="UTF-8"?>
<bpmn:definitions xmlns:bpmn="http://www.omg.org/spec/BPMN/20100524/MODEL" id="d" targetNamespace="http://bpmn.io/schema/bpmn">
  <bpmn:process id="EachItem" isExecutable="true">
    <bpmn:startEvent id="start" />
    <bpmn:sequenceFlow id="f1" sourceRef="start" targetRef="each" />
    <bpmn:scriptTask id="each">
      <bpmn:multiInstanceLoopCharacteristics isSequential="{sequential}">
        <bpmn:loopDataInputRef>items</bpmn:loopDataInputRef>
        <bpmn:inputDataItem id="item" />
      </bpmn:multiInstanceLoopCharacteristics>
      <bpmn:script>seen = item</bpmn:script></bpmn:scriptTask>
    <bpmn:sequenceFlow id="f2" sourceRef="each" targetRef="end" />
    <bpmn:endEvent id="end" />
  </bpmn:process>
</bpmn:definitions>
"""


def run(xml: bytes, data: dict, budget: limits.Limits):
    (process,) = load(xml, "limits.bpmn", None).processes
    workflow = BpmnWorkflow(process.spec, process.subprocess_specs,
                            script_engine=ScriptEngine(RestrictedEnvironment()))
    workflow.get_next_task(state=TaskState.READY).set_data(**data)
    with limits.running(budget):
        limits.run_steps(workflow)
    return workflow


def stopped(xml: bytes, data: dict, budget: limits.Limits) -> str:
    with pytest.raises(limits.BudgetExceeded) as info:
        run(xml, data, budget)
    return str(info.value)


CYCLE = (DATA / "engine" / "runaway_cycle.bpmn").read_bytes()
SPIN = (DATA / "engine" / "runaway_spin.bpmn").read_bytes()


def test_steps():
    assert stopped(CYCLE, {"wait_first": False}, limits.Limits(steps=40)) == (
        "step limit exceeded at check: more than 40 steps without reaching a wait")


def test_tree_depth_before_spiffworkflow_stops_looking():
    message = stopped(CYCLE, {"wait_first": False}, limits.Limits(seconds=600))
    assert message.startswith(f"step limit exceeded at bump: a loop made the process {limits.TREE_DEPTH_LIMIT} "
                              "levels deep")


def test_script_operations_and_time():
    assert stopped(SPIN, {"wait_first": False}, limits.Limits(operations=5000)) == (
        "step limit exceeded at spin: a script or expression ran more than 5000 loop iterations or calls")
    assert stopped(SPIN, {"wait_first": False}, limits.Limits(operations=10 ** 12, seconds=0.2)) == (
        "step limit exceeded at spin: ran longer than 0.2 s without reaching a wait")


def test_multi_instance_collection():
    xml = COLLECTION.format(sequential="false").encode()
    assert run(xml, {"items": [1, 2, 3]}, limits.Limits(items=3)).data["seen"] == 3
    assert stopped(xml, {"items": list(range(4))}, limits.Limits(items=3)) == (
        "step limit exceeded at each: a multi-instance collection of 4 items is above the limit of 3")


def test_sequential_multi_instance_cardinality():
    xml = (DATA / "engine" / "runaway_cardinality.bpmn").read_text().replace(
        "<bpmn:multiInstanceLoopCharacteristics>", '<bpmn:multiInstanceLoopCharacteristics isSequential="true">')
    assert stopped(xml.encode(), {"wait_first": False}, limits.Limits()) == (
        "step limit exceeded at fan_out: a multi-instance cardinality of 10000000 items is above the limit of 10000")


@pytest.mark.parametrize("script, message", [
    ("x = 'ab' * 600", "a repetition of 1200 items is above the script limit of 1000"),
    ("x = [0]\nx *= 2000", "a repetition of 2000 items is above the script limit of 1000"),
    ("x = 3 ** 1000", "a power of about 2000 bits is above the script limit of 1000"),
    ("x = pow(2, 5000)", "a power of about 10000 bits is above the script limit of 1000"),
    ("x = 1 << 5000", "a shift to 5001 bits is above the script limit of 1000"),
    ("x = list(range(1001))", "range of 1001 items is above the script limit of 1000"),
    ("f = lambda n: f(n - 1) + f(n - 1) if n else 1\nx = f(30)",
     "a script or expression ran more than 1000 loop iterations or calls"),
    ("def g():\n    while True:\n        yield 1\nx = sum(g())",
     "a script or expression ran more than 1000 loop iterations or calls"),
])
def test_a_script_cannot_make_what_its_budget_could_not_pay_for(script, message):
    with limits.running(limits.Limits(operations=1000)), pytest.raises(limits.BudgetExceeded) as info:
        RestrictedEnvironment().execute(script, {})
    assert info.value.reason == message


def test_a_script_cannot_catch_the_stop():
    script = "n = 0\nwhile True:\n    try:\n        n += 1\n    except Exception:\n        pass"
    with limits.running(limits.Limits(operations=1000)), pytest.raises(limits.BudgetExceeded):
        RestrictedEnvironment().execute(script, {})
