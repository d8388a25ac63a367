"""How much work one advance of an instance may do before it is stopped as a runaway.

A diagram that loops without reaching a wait (a gateway cycle of script tasks, a call
activity that calls itself, `while True: pass` in a script) would otherwise hold a web
thread or a worker for ever. Each advance runs under a `Budget`: engine steps, wall time,
script operations (loop iterations and calls, counted by code the restricted compiler
inserts) and the size of a multi-instance. Past any of them `BudgetExceeded` is raised and
the engine rolls the advance back to the instance's last wait.
"""
import contextvars
import time
from contextlib import contextmanager
from dataclasses import dataclass

from app.bpmn import clock

#: SpiffWorkflow walks task trees at most 1000 levels deep (TaskIterator's max_depth) and then
#: silently stops finding ready tasks; a deeper tree is stopped here, before that happens.
TREE_DEPTH_LIMIT = 900


@dataclass(frozen=True)
class Limits:
    steps: int = 10_000  # engine steps (tasks run) in one advance
    seconds: float = 5.0  # wall time of one advance
    operations: int = 1_000_000  # loop iterations and calls of one script or expression
    items: int = 10_000  # instances of one multi-instance activity

    @classmethod
    def from_config(cls, config) -> "Limits":
        return cls(steps=int(config["ENGINE_STEP_LIMIT"]), seconds=float(config["ENGINE_TIME_LIMIT_SECONDS"]),
                   operations=int(config["SCRIPT_OPERATION_LIMIT"]), items=int(config["MULTI_INSTANCE_LIMIT"]))


class BudgetExceeded(BaseException):
    """An advance went past its budget; `element` is where it was when it was stopped.

    A BaseException, so that a script's `except Exception:` cannot swallow it (scripts may not
    name BaseException nor use a bare except)."""

    def __init__(self, reason: str, element: str | None = None):
        super().__init__(reason)
        self.reason, self.element = reason, element

    def __str__(self) -> str:
        return f"step limit exceeded at {self.element or 'the start'}: {self.reason}"


class Budget:
    def __init__(self, limits: Limits):
        self.limits = limits
        self.deadline = time.monotonic() + limits.seconds
        self.steps = 0
        self.operations = 0
        self.element: str | None = None  # the element running now, for the error message
        self._depths: dict = {}  # task id -> depth in its tree, so no step walks to the root

    def enter(self, task) -> None:
        """Before SpiffWorkflow runs `task` (do_engine_steps' will_complete_task)."""
        self.element = getattr(task.task_spec, "bpmn_id", None) or self.element

    def step(self, task) -> None:
        """After SpiffWorkflow ran `task` (do_engine_steps' did_complete_task)."""
        self.steps += 1
        if self.steps > self.limits.steps:
            self.stop(f"more than {self.limits.steps} steps without reaching a wait")
        self.check_time()
        if self._depth(task) > TREE_DEPTH_LIMIT:
            self.stop(f"a loop made the process {TREE_DEPTH_LIMIT} levels deep (a cycle that never waits, or "
                      "one that went round too often: restart timers with restartOn instead of looping)")

    def tick(self) -> None:
        """One loop iteration or call inside a script or expression."""
        self.operations += 1
        if self.operations > self.limits.operations:
            self.stop(f"a script or expression ran more than {self.limits.operations} loop iterations or calls")
        if not self.operations & 0x3FF:
            self.check_time()

    def check_time(self) -> None:
        if time.monotonic() > self.deadline:
            self.stop(f"ran longer than {self.limits.seconds:g} s without reaching a wait")

    def check_size(self, count: int, what: str, element: str | None = None) -> None:
        if count > self.limits.items:
            self.stop(f"{what} of {count} items is above the limit of {self.limits.items}", element)

    def stop(self, reason: str, element: str | None = None):
        raise BudgetExceeded(reason, element or self.element)

    def _depth(self, task) -> int:
        chain = []
        while task is not None and task.id not in self._depths:
            chain.append(task)
            task = task.parent
        depth = self._depths[task.id] if task is not None else -1
        for t in reversed(chain):
            depth += 1
            self._depths[t.id] = depth
        return depth


_current: contextvars.ContextVar[Budget | None] = contextvars.ContextVar("chatflow_budget", default=None)


@contextmanager
def running(limits: Limits):
    """Run one advance under a fresh budget."""
    budget = Budget(limits)
    token = _current.set(budget)
    try:
        yield budget
    finally:
        _current.reset(token)


@contextmanager
def script_run():
    """Run one script or expression: its operations count from zero. Outside an advance (a
    check, a test) it runs under a default budget of its own."""
    budget = _current.get()
    if budget is not None:
        budget.operations = 0
        yield budget
        return
    with running(Limits()) as budget:
        yield budget


def current_limits() -> Limits:
    budget = _current.get()
    return budget.limits if budget is not None else Limits()


def refuse(reason: str):
    """Stop the script running now: what it is about to make is too large."""
    budget = _current.get()
    raise BudgetExceeded(reason, budget.element if budget is not None else None)


def check_size(count: int, what: str, element: str | None = None) -> None:
    """Refuse a multi-instance of more items than the limit, before a task is made for each."""
    (_current.get() or Budget(Limits())).check_size(count, what, element=element)


def tick() -> None:
    """Called by compiled scripts at every loop iteration and call."""
    budget = _current.get()
    if budget is not None:
        budget.tick()


def run_steps(workflow) -> None:
    """SpiffWorkflow's do_engine_steps, counted and timed by the current budget, its timers
    reading one instant (app.bpmn.clock)."""
    budget = _current.get() or Budget(Limits())
    with clock.one_instant():
        workflow.do_engine_steps(will_complete_task=budget.enter, did_complete_task=budget.step)


def find(error: BaseException | None) -> BudgetExceeded | None:
    """The BudgetExceeded behind `error`, if any: SpiffWorkflow may wrap what a task raised."""
    seen = set()
    while error is not None and id(error) not in seen:
        if isinstance(error, BudgetExceeded):
            return error
        seen.add(id(error))
        error = getattr(error, "exception", None) or error.__cause__ or error.__context__
    return None
