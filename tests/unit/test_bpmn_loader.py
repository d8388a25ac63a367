"""The BPMN loader: every refusal names file, line, element id and problem; timer text as modelers write it."""
import pytest

from app.bpmn.errors import BpmnRefused, Problem
from app.bpmn.loader import load
from chat_helpers import BODY_LINE, BPMN_HEAD, process, service_task, timer_process

OPERATIONS = {"echo"}


def refused(xml: str, filename: str = "case.bpmn", operations=OPERATIONS) -> list[Problem]:
    with pytest.raises(BpmnRefused) as info:
        load(xml.encode(), filename, operations)
    problems = info.value.problems
    assert problems, "BpmnRefused without problems"
    for p in problems:
        assert isinstance(p, Problem) and p.file == filename and p.problem
    return problems


def only(problems: list[Problem]) -> Problem:
    assert len(problems) == 1, problems
    return problems[0]


def timer_expression(loaded) -> str:
    (spec,) = [p.spec for p in loaded.processes]
    return spec.task_specs["work"].event_definition.expression


# --- refusals ---------------------------------------------------------------------------------------------

def test_malformed_xml_names_file_and_line():
    xml = BPMN_HEAD + "<bpmn:process id='p'>\n<bpmn:startEvent id='s'>\n</bpmn:process>\n</bpmn:definitions>\n"
    p = only(refused(xml, "broken.bpmn"))
    assert p.file == "broken.bpmn"
    assert p.line == 5
    assert p.problem.startswith("malformed XML:")
    assert "mismatch" in p.problem
    assert str(p).startswith("broken.bpmn:5 - malformed XML")


def test_not_bpmn_root_is_refused():
    p = only(refused('<?xml version="1.0"?>\n<html id="page"><body/></html>'))
    assert (p.line, p.element_id) == (2, "page")
    assert "not a BPMN 2.0 file" in p.problem and "'html'" in p.problem


def test_sequence_flow_to_missing_element():
    xml = process('    <bpmn:task id="work" />\n    <bpmn:sequenceFlow id="to_ghost" sourceRef="work" targetRef="ghost" />')
    p = only(refused(xml))
    assert (p.line, p.element_id) == (BODY_LINE + 1, "to_ghost")
    assert p.problem == "sequence flow targetRef 'ghost' names no element of process 'p'"


def test_sequence_flow_from_missing_element():
    xml = process('    <bpmn:task id="work" />\n    <bpmn:sequenceFlow id="from_ghost" sourceRef="ghost" targetRef="end" />')
    p = only(refused(xml))
    assert (p.line, p.element_id) == (BODY_LINE + 1, "from_ghost")
    assert "sourceRef 'ghost'" in p.problem


@pytest.mark.parametrize("definition", ['<bpmn:timerEventDefinition id="t" />',
                                        '<bpmn:timerEventDefinition id="t"><bpmn:timeDuration>  '
                                        '</bpmn:timeDuration></bpmn:timerEventDefinition>'])
def test_empty_timer_definition_is_refused(definition):
    xml = process(f'    <bpmn:intermediateCatchEvent id="work" name="wait a bit">\n      {definition}\n'
                  '    </bpmn:intermediateCatchEvent>')
    p = only(refused(xml))
    assert p.element_id == "work"
    assert p.line == BODY_LINE + 1  # the timerEventDefinition itself
    assert p.problem == "empty timer definition: give a timeDuration, timeDate or timeCycle"


def test_file_without_executable_process_is_refused():
    p = only(refused(process('    <bpmn:task id="work" />', executable="false")))
    assert (p.line, p.element_id) == (2, "defs")
    assert "no executable process" in p.problem and "nothing to deploy" in p.problem


def test_non_executable_process_beside_executable_one_is_skipped():
    xml = process('    <bpmn:task id="work" />').replace(
        "</bpmn:definitions>", '  <bpmn:process id="sketch" isExecutable="false"><bpmn:startEvent id="s2" />'
                               '</bpmn:process>\n</bpmn:definitions>')
    assert [p.key for p in load(xml.encode(), "two.bpmn", OPERATIONS).processes] == ["p"]


def test_unsupported_element_is_refused():
    p = only(refused(process('    <bpmn:complexGateway id="work" />')))
    assert (p.line, p.element_id) == (BODY_LINE, "work")
    assert "complexGateway" in p.problem
    assert "no support implemented" in p.problem


def test_schema_violation_names_the_enclosing_element():
    p = only(refused(process('    <bpmn:task id="work">\n      <bpmn:fooTask />\n    </bpmn:task>')))
    assert (p.line, p.element_id) == (BODY_LINE + 1, "work")
    assert "fooTask" in p.problem and "not expected" in p.problem


def test_billion_laughs_is_refused_without_expansion():
    laughs = "".join(f'<!ENTITY lol{i} "{f"&lol{i - 1};" * 10}">' for i in range(1, 10))
    body = process('    <bpmn:task id="work" name="&lol9;" />').split("\n", 1)[1]
    xml = f'<?xml version="1.0"?>\n<!DOCTYPE lolz [<!ENTITY lol0 "lol">{laughs}]>\n{body}'
    p = only(refused(xml))
    assert (p.line, p.element_id) == (2, "")
    assert p.problem == "DTDs and entity declarations are not allowed in BPMN files"
    assert "lol" not in str(p)


def test_external_entity_is_refused():
    xml = ('<?xml version="1.0"?>\n<!DOCTYPE d [<!ENTITY xxe SYSTEM "file:///etc/passwd">]>\n'
           + process('    <bpmn:task id="work" name="&xxe;" />').split("\n", 1)[1])
    p = only(refused(xml))
    assert p.line == 2 and "not allowed" in p.problem and "root" not in p.problem


@pytest.mark.parametrize("script, reason", [
    ("import os", "imports are not allowed"),
    ("from os import path", "imports are not allowed"),
    ("x = __import__('os')", '"__import__" is an invalid variable name'),
    ("x = ().__class__.__bases__", '"__bases__" is an invalid attribute name'),
    ("x = = 1", "SyntaxError"),
])
def test_unsafe_or_broken_script_is_refused(script, reason):
    xml = process(f'    <bpmn:scriptTask id="work" name="Do it"><bpmn:script>{script}</bpmn:script></bpmn:scriptTask>')
    p = only(refused(xml))
    assert (p.line, p.element_id) == (BODY_LINE, "work")
    assert p.problem.startswith("script refused:")
    assert reason in p.problem


def test_unsafe_pre_script_is_refused():
    xml = process('    <bpmn:task id="work"><bpmn:extensionElements><spiffworkflow:preScript>import os'
                  '</spiffworkflow:preScript></bpmn:extensionElements></bpmn:task>')
    p = only(refused(xml))
    assert (p.line, p.element_id) == (BODY_LINE, "work")
    assert p.problem.startswith("preScript refused: Line 1: imports are not allowed in BPMN scripts: ")


def test_safe_script_loads():
    xml = process('    <bpmn:scriptTask id="work"><bpmn:script>total = sum([1, 2, 3])\nok = total &gt; 5'
                  '</bpmn:script></bpmn:scriptTask>')
    assert [p.key for p in load(xml.encode(), "ok.bpmn", OPERATIONS).processes] == ["p"]


@pytest.mark.parametrize("condition", ["${x}", "#{approved}", "${clarified == 'yes'}"])
def test_camunda_juel_condition_is_refused(condition):
    xml = process('    <bpmn:exclusiveGateway id="work" />\n'
                  f'    <bpmn:sequenceFlow id="juel_flow" sourceRef="work" targetRef="end">\n'
                  f'      <bpmn:conditionExpression>{condition}</bpmn:conditionExpression>\n'
                  '    </bpmn:sequenceFlow>')
    p = only(refused(xml))
    assert (p.line, p.element_id) == (BODY_LINE + 2, "juel_flow")
    assert p.problem.startswith(f"condition {condition!r} is a Camunda JUEL expression")


def test_unsafe_condition_is_refused():
    xml = process('    <bpmn:exclusiveGateway id="work" />\n'
                  '    <bpmn:sequenceFlow id="bad_flow" sourceRef="work" targetRef="end">'
                  '<bpmn:conditionExpression>().__class__</bpmn:conditionExpression></bpmn:sequenceFlow>')
    p = only(refused(xml))
    assert (p.line, p.element_id) == (BODY_LINE + 1, "bad_flow")
    assert p.problem.startswith("condition refused:") and "__class__" in p.problem


def test_unknown_service_operation_is_refused():
    p = only(refused(process(service_task("launch_missiles"))))
    assert (p.line, p.element_id) == (BODY_LINE, "work")
    assert p.problem == "service task calls unknown operation 'launch_missiles' (known: echo)"


def test_known_service_operation_loads_and_unknown_skipped_without_operation_set():
    assert load(process(service_task("echo")).encode(), "ok.bpmn", OPERATIONS).processes
    assert load(process(service_task("launch_missiles")).encode(), "ok.bpmn", None).processes


def test_unsafe_service_parameter_is_refused():
    p = only(refused(process(service_task("echo", value="__import__('os')"))))
    assert p.element_id == "work"
    assert p.problem.startswith("parameter 'value' refused:")


def test_call_activity_to_process_not_in_file_is_refused():
    p = only(refused(process('    <bpmn:callActivity id="work" calledElement="elsewhere" />')))
    assert (p.line, p.element_id) == (BODY_LINE, "work")
    assert p.problem.startswith("call activity calls process 'elsewhere', which is not in this file")


def test_call_activity_without_called_element_is_refused():
    p = only(refused(process('    <bpmn:callActivity id="work" />')))
    assert (p.line, p.element_id) == (BODY_LINE, "work")
    assert p.problem == "call activity names no process to call (calledElement is missing)"


def test_call_activity_to_process_in_same_file_loads():
    child = ('  <bpmn:process id="child" isExecutable="true"><bpmn:startEvent id="cs" />'
             '<bpmn:sequenceFlow id="cf" sourceRef="cs" targetRef="ce" /><bpmn:endEvent id="ce" /></bpmn:process>\n')
    xml = process('    <bpmn:callActivity id="work" calledElement="child" />').replace(
        "</bpmn:definitions>", child + "</bpmn:definitions>")
    loaded = load(xml.encode(), "call.bpmn", OPERATIONS)
    parent = {p.key: p for p in loaded.processes}["p"]
    assert "child" in parent.subprocess_specs


def _callee(key: str, calls: str | None = None) -> str:
    body = (f'<bpmn:callActivity id="{key}_call" calledElement="{calls}" />' if calls
            else f'<bpmn:task id="{key}_call" />')
    return (f'  <bpmn:process id="{key}" isExecutable="true"><bpmn:startEvent id="{key}_s" />'
            f'<bpmn:sequenceFlow id="{key}_f1" sourceRef="{key}_s" targetRef="{key}_call" />{body}'
            f'<bpmn:sequenceFlow id="{key}_f2" sourceRef="{key}_call" targetRef="{key}_e" />'
            f'<bpmn:endEvent id="{key}_e" /></bpmn:process>\n')


def with_processes(xml: str, *processes: str) -> str:
    return xml.replace("</bpmn:definitions>", "".join(processes) + "</bpmn:definitions>")


def test_call_activity_calling_its_own_process_is_refused():
    p = only(refused(process('    <bpmn:callActivity id="work" calledElement="p" />')))
    assert (p.line, p.element_id) == (BODY_LINE, "work")
    assert str(p).startswith("case.bpmn:6 work call activity reaches its own process p (p -> p)")


def test_call_activity_reaching_its_own_process_through_others_is_refused():
    xml = with_processes(process('    <bpmn:callActivity id="work" calledElement="a" />'),
                         _callee("a", calls="b"), _callee("b", calls="p"))
    problems = {p.element_id: p.problem for p in refused(xml)}
    assert problems["work"].startswith("call activity reaches its own process p (p -> a -> b -> p)")
    # every call on the cycle is named, each with its own process
    assert problems["a_call"].startswith("call activity reaches its own process a (a -> b -> p -> a)")
    assert set(problems) == {"work", "a_call", "b_call"}


def test_call_chain_without_a_cycle_loads():
    xml = with_processes(process('    <bpmn:callActivity id="work" calledElement="a" />'),
                         _callee("a", calls="b"), _callee("b"))
    parent = {p.key: p for p in load(xml.encode(), "chain.bpmn", OPERATIONS).processes}["p"]
    assert {"a", "b"} <= set(parent.subprocess_specs)


def test_every_problem_of_a_file_is_reported():
    xml = process('    <bpmn:intermediateCatchEvent id="work"><bpmn:timerEventDefinition /></bpmn:intermediateCatchEvent>\n'
                  '    <bpmn:sequenceFlow id="to_ghost" sourceRef="work" targetRef="ghost" />\n'
                  '    <bpmn:sequenceFlow id="juel" sourceRef="work" targetRef="end">'
                  '<bpmn:conditionExpression>${ok}</bpmn:conditionExpression></bpmn:sequenceFlow>')
    problems = refused(xml)
    assert [(p.element_id, p.line) for p in problems] == [("work", BODY_LINE), ("to_ghost", BODY_LINE + 1),
                                                          ("juel", BODY_LINE + 2)]


# --- timer text -------------------------------------------------------------------------------------------

@pytest.mark.parametrize("kind, text, expression", [
    ("timeDuration", "PT5M", "'PT5M'"),
    ("timeDuration", "  P7D\n ", "'P7D'"),
    ("timeCycle", "R3/PT10M", "'R3/PT10M'"),
    ("timeDate", "2030-01-02T03:04:05", "'2030-01-02T03:04:05+00:00'"),  # naive is UTC
    ("timeDate", "2030-01-02T03:04:05+02:00", "'2030-01-02T03:04:05+02:00'"),
    ("timeDuration", 'f"PT{n}S"', 'f"PT{n}S"'),
    ("timeDuration", "= f'PT{n}S'", "f'PT{n}S'"),
    ("timeDuration", "'PT1S'", "'PT1S'"),  # SpiffWorkflow's own style: already a Python literal
    ("timeDate", "due", "due"),
])
def test_timer_text_is_normalised(kind, text, expression):
    loaded = load(timer_process(text, kind).encode(), "timer.bpmn", OPERATIONS)
    assert timer_expression(loaded) == expression


@pytest.mark.parametrize("text", ["PT{n", "= import os", "().__class__", "P 5 M"])
def test_invalid_timer_expression_is_refused_with_event_id_and_line(text):
    p = only(refused(timer_process(text)))
    assert (p.line, p.element_id) == (BODY_LINE, "work")
    assert p.problem.startswith(f"timer text {text!r} is neither ISO 8601 nor a valid expression")


# --- events SpiffWorkflow would drop silently ------------------------------------------------------------

def test_boundary_event_attached_to_no_activity_is_refused():
    xml = process('    <bpmn:task id="work" />\n'
                  '    <bpmn:boundaryEvent id="late" attachedToRef="wrok">\n'
                  '      <bpmn:timerEventDefinition><bpmn:timeDuration>"PT1M"</bpmn:timeDuration></bpmn:timerEventDefinition>\n'
                  '    </bpmn:boundaryEvent>')
    p = only(refused(xml))
    assert (p.line, p.element_id) == (BODY_LINE + 1, "late")
    assert p.problem == "boundary event is attached to 'wrok', which is no activity of process 'p'"


def test_signal_end_event_is_refused_with_the_way_to_throw_it():
    xml = (process('    <bpmn:task id="work" />\n    <bpmn:endEvent id="shout">\n'
                   '      <bpmn:signalEventDefinition id="shout_def" signalRef="sig" />\n    </bpmn:endEvent>').replace("<bpmn:process ", '<bpmn:signal id="sig" name="escalate" />\n<bpmn:process ', 1))
    p = only(refused(xml))
    assert p.element_id == "shout"
    assert "cannot throw a signal event" in p.problem and "intermediate throw event" in p.problem
