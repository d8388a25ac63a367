"""Third-party BPMN files (tests/data/bpmn-corpus, sources and licences in its MANIFEST.md):
each loads or is refused precisely, never a traceback."""
import pytest

from app.bpmn.errors import BpmnRefused, Problem
from app.bpmn.loader import load
from app.catalogue import operation_names

from conftest import CORPUS

FILES = sorted(CORPUS.rglob("*.bpmn"))
MIWG = CORPUS / "miwg"
SPIFF = CORPUS / "spiffworkflow"


def outcome(path):
    """(processes, None) or (None, problems)."""
    try:
        return load(path.read_bytes(), path.name, operation_names()).processes, None
    except BpmnRefused as e:
        return None, e.problems


def test_corpus_is_present():
    assert len(FILES) >= 19, f"expected the corpus in {CORPUS}"


@pytest.mark.parametrize("path", FILES, ids=[f"{p.parent.name}/{p.name}" for p in FILES])
def test_file_loads_or_is_refused_precisely(path):
    processes, problems = outcome(path)  # any other exception fails the test
    if processes is not None:
        assert processes, "loaded without a single process"
        for process in processes:
            assert process.key and process.spec is not None
            assert process.spec.start is not None
        return
    assert problems
    for problem in problems:
        assert isinstance(problem, Problem)
        assert problem.file == path.name
        assert problem.problem.strip()
        assert problem.line or problem.element_id, problem
        assert "Traceback" not in problem.problem
        assert not problem.problem.startswith("could not be parsed"), problem


def test_camunda_web_modeler_timer_boundary_loads():
    processes, problems = outcome(MIWG / "ref_C.9.1_camunda-web-modeler_timer-boundary.bpmn")
    assert problems is None
    (process,) = processes
    assert process.key == "requestDocument_en"
    expressions = sorted(ts.event_definition.expression for ts in process.spec.task_specs.values()
                         if type(getattr(ts, "event_definition", None)).__name__ in
                         ("TimerEventDefinition", "DurationTimerEventDefinition", "CycleTimerEventDefinition"))
    assert expressions == ["'P7D'", "'R6/P1D'"]


def test_signavio_export_of_the_same_scenario_loads():
    processes, _ = outcome(MIWG / "signavio-19.9_C.9.1-export.bpmn")
    assert [p.key for p in processes] == ["requestDocument_en"]


def test_camunda_modeler_export_with_empty_timers_is_refused():
    _, problems = outcome(MIWG / "camunda-modeler-5.34_C.9.1-export.bpmn")
    assert [(p.element_id, p.line) for p in problems] == [("Event_0r6z74c", 47), ("Event_08bx9nv", 51)]
    assert {p.problem for p in problems} == {"empty timer definition: give a timeDuration, timeDate or timeCycle"}


def test_bonita_file_has_no_executable_process():
    _, problems = outcome(MIWG / "ref_A.2.1_bonita.bpmn")
    (problem,) = problems
    assert problem.line == 2 and problem.element_id
    assert "no executable process" in problem.problem


def test_signavio_camunda_extensions_refused_for_juel_conditions():
    _, problems = outcome(MIWG / "ref_C.1.0_signavio-7.0_camunda-ext.bpmn")
    juel = {p.element_id: p.line for p in problems if "JUEL" in p.problem}
    assert juel == {"invoiceApproved": 616, "invoiceNotApproved": 626, "reviewSuccessful": 636,
                    "reviewNotSuccessful": 646}


def test_call_activity_to_other_file_is_refused():
    _, problems = outcome(MIWG / "ref_C.9.2_camunda-web-modeler_noninterrupting-start.bpmn")
    (problem,) = problems
    assert (problem.element_id, problem.line) == ("CallActivity_RequestDocument", 110)
    assert "'requestDocument_en', which is not in this file" in problem.problem


@pytest.mark.parametrize("name, keys", [
    ("bpmn__boundary_timer_on_task.bpmn", ["test_timer"]),
    ("bpmn__event-gateway.bpmn", ["Process_0pvx19v"]),
    ("bpmn__timer-cycle.bpmn", ["timer"]),
    ("bpmn__timer-date-start.bpmn", ["date_timer"]),
    ("bpmn__timer-non-interrupt-boundary.bpmn", ["NonInterruptTimer"]),
    ("camunda__MessageBoundary.bpmn", ["Process_0srqcj1", "Process_1kjyavs"]),
    ("spiff__correlation.bpmn", ["proc_1", "proc_2"]),
])
def test_spiffworkflow_test_files_load(name, keys):
    processes, problems = outcome(SPIFF / name)
    assert problems is None, problems
    assert sorted(p.key for p in processes) == keys
