"""Read a SpiffWorkflow task tree: what it waits for, when its timers are due, what changed."""
import math
from dataclasses import dataclass
from datetime import datetime, timedelta, timezone

from SpiffWorkflow.bpmn.specs.event_definitions import timer as spiff_timer
from SpiffWorkflow.bpmn.specs.event_definitions.message import MessageEventDefinition
from SpiffWorkflow.bpmn.specs.event_definitions.multiple import MultipleEventDefinition
from SpiffWorkflow.bpmn.specs.event_definitions.timer import CycleTimerEventDefinition, TimerEventDefinition
from SpiffWorkflow.util.task import TaskIterator, TaskState

ACTIVE = TaskState.READY | TaskState.WAITING | TaskState.STARTED
SEEN = ACTIVE | TaskState.COMPLETED | TaskState.ERROR | TaskState.CANCELLED


def element_id(task) -> str | None:
    """The BPMN element id of a task, None for SpiffWorkflow's internal tasks."""
    return getattr(task.task_spec, "bpmn_id", None)


def reached_end(workflow) -> bool:
    """Completed because every token reached an end event. SpiffWorkflow's own is_completed()
    looks only 1000 levels down the task tree, so a runaway loop deeper than that looks finished."""
    if not workflow.is_completed():
        return False
    unfinished = TaskIterator(workflow.task_tree, state=TaskState.NOT_FINISHED_MASK, max_depth=math.inf)
    return next(unfinished, None) is None


def definitions(task) -> list:
    definition = getattr(task.task_spec, "event_definition", None)
    if isinstance(definition, MultipleEventDefinition):
        return list(definition.event_definitions)
    return [definition] if definition is not None else []


@dataclass(frozen=True)
class TimerWait:
    task_id: str
    element_id: str
    due_at: datetime


def timer_waits(workflow) -> list[TimerWait]:
    """Every waiting timer with its due time (SpiffWorkflow keeps it in internal_data)."""
    waits = []
    for task in workflow.get_tasks(state=TaskState.WAITING):
        if not any(isinstance(d, TimerEventDefinition) for d in definitions(task)):
            continue
        value = task.internal_data.get("event_value")
        if isinstance(value, dict):  # a cycle timer
            value = value.get("next")
        if not value:
            continue
        due = TimerEventDefinition.parse_time_or_duration(value)
        if isinstance(due, datetime):
            due = due if due.tzinfo else due.replace(tzinfo=timezone.utc)
            waits.append(TimerWait(str(task.id), element_id(task) or task.task_spec.name, due))
    return waits


def restart_cycles_from_now(workflow, task_ids: set[str]) -> None:
    """Make the next firing of these waiting cycle timers one period from now."""
    for task in workflow.get_tasks(state=TaskState.WAITING):
        value = task.internal_data.get("event_value")
        if str(task.id) in task_ids and isinstance(value, dict) and value.get("cycles") != 0:
            value["next"] = (spiff_timer.datetime.now(timezone.utc) + timedelta(seconds=value["duration"])).isoformat()


def message_catchers(workflow, name: str | None = None) -> list[tuple[object, object]]:
    """(waiting task, message definition) pairs, optionally only for one message name."""
    found = []
    for task in workflow.get_tasks(state=TaskState.WAITING):
        for definition in definitions(task):
            if isinstance(definition, MessageEventDefinition) and (name is None or definition.name == name):
                found.append((task, definition))
    return found


def message_starts(workflow, name: str) -> list:
    """Message start events of event subprocesses that `name` would start (no task waits for them)."""
    found = []
    for spec_name in getattr(workflow.spec.start, "trigger_specs", []):
        for start in workflow.subprocess_specs[spec_name].bpmn_start_events:
            definition = getattr(start, "event_definition", None)
            if isinstance(definition, MessageEventDefinition) and definition.name == name:
                found.append((start, definition))
    return found


def user_tasks(workflow) -> list:
    return workflow.get_tasks(state=TaskState.READY, manual=True)


def waiting_for(workflow, timers: list[TimerWait] | None = None) -> list[dict]:
    """What the workflow waits for; `timers`: its timer_waits, when the caller has them already."""
    timers = timer_waits(workflow) if timers is None else timers
    waits = [{"task": w.element_id, "kind": "timer", "due_at": w.due_at.isoformat()} for w in timers]
    waits += [{"task": element_id(t) or t.task_spec.name, "kind": "message", "message": d.name, "due_at": None}
              for t, d in message_catchers(workflow)]
    waits += [{"task": element_id(t) or t.task_spec.name, "kind": "user", "due_at": None} for t in user_tasks(workflow)]
    return waits


def errored_tasks(workflow) -> list:
    return workflow.get_tasks(state=TaskState.ERROR)


def snapshot(workflow) -> dict:
    """Task id -> state for every BPMN element task, to compare before and after a step."""
    return {t.id: t.state for t in workflow.get_tasks() if element_id(t)}


def _is_cycle_timer(task) -> bool:
    return isinstance(getattr(task.task_spec, "event_definition", None), CycleTimerEventDefinition)


def changes(workflow, before: dict) -> list[tuple[datetime, str, str]]:
    """(at, element id, event) for what happened since `before`, oldest first."""
    events = []
    for task in workflow.get_tasks(state=SEEN):
        element = element_id(task)
        old = before.get(task.id, TaskState.FUTURE)
        if not element or old == task.state:
            continue
        at = datetime.fromtimestamp(task.last_state_change, timezone.utc)
        parent = task.parent
        if (task.id not in before and parent is not None and before.get(parent.id) == TaskState.WAITING
                and _is_cycle_timer(parent)):
            # A cycle timer fires by adding a new child branch while it stays WAITING.
            events.append((at, element_id(parent), "timer_fired"))
        was_active = bool(old & ACTIVE)
        if task.state & ACTIVE and not was_active:
            events.append((at, element, "entered"))
        elif task.state == TaskState.COMPLETED:
            if not was_active:
                events.append((at, element, "entered"))
            # A cycle timer completes when its cycles run out: its fires were recorded above.
            if old == TaskState.WAITING and not _is_cycle_timer(task) and any(
                    isinstance(d, TimerEventDefinition) for d in definitions(task)):
                events.append((at, element, "timer_fired"))
            events.append((at, element, "completed"))
        elif task.state == TaskState.ERROR:
            events.append((at, element, "error"))
        elif task.state == TaskState.CANCELLED and was_active:
            events.append((at, element, "cancelled"))
    events.sort(key=lambda e: e[0])
    return events


def _subtree(task):
    yield task
    for child in task.children:
        yield from _subtree(child)


def prune_finished_branches(workflow) -> int:
    """Drop what repeatable events left behind once finished; returns how many branches.

    A chat re-offered all night must not grow: each firing of a non-interrupting cycle timer
    leaves a finished branch plus one more waiting boundary join under the timer task, and
    each run of a non-interrupting event subprocess leaves its finished subprocess (~1.5 and
    ~3 KB). Finished timer branches (nothing waiting, no subprocess), all but the newest
    waiting join, and completed event-subprocess runs are removed.
    """
    removed = 0
    for task in workflow.get_tasks(state=TaskState.WAITING):
        if not isinstance(getattr(task.task_spec, "event_definition", None), CycleTimerEventDefinition):
            continue
        children = task.children
        joins = [c for c in children if c.state == TaskState.WAITING
                 and c.task_spec.name.endswith(".BoundaryEventJoin")]
        finished = [c for c in children
                    if all(d.state & TaskState.FINISHED_MASK and d.id not in workflow.subprocesses
                           for d in _subtree(c))]
        for child in finished + joins[:-1]:
            for descendant in list(_subtree(child)):
                descendant.workflow.tasks.pop(descendant.id, None)
            task._children.remove(child.id)
            removed += 1
    for name in getattr(workflow.spec.start, "trigger_specs", []):
        for task in workflow.get_tasks(spec_name=name, state=TaskState.COMPLETED):
            run = workflow.subprocesses.get(task.id)
            if run is not None and run.is_completed() and not task.children:
                workflow.delete_subprocess(task)
                task.parent._children.remove(task.id)
                workflow.tasks.pop(task.id, None)
                removed += 1
    return removed


def element_states(workflow) -> dict[str, list[str]]:
    """Element ids active, completed and errored, for drawing the diagram."""
    active, completed, errored = set(), set(), set()
    for task in workflow.get_tasks(state=ACTIVE | TaskState.COMPLETED | TaskState.ERROR):
        element = element_id(task)
        if not element:
            continue
        if task.state == TaskState.ERROR:
            errored.add(element)
        elif task.state & ACTIVE:
            active.add(element)
        else:
            completed.add(element)
    return {"active": sorted(active), "completed": sorted(completed - active - errored), "errored": sorted(errored)}
