"""The restricted environment in which BPMN scripts, conditions and timer expressions run.

SpiffWorkflow hands every script and expression to eval/exec with full builtins.
Restricting builtins alone can be escaped through `().__class__.__subclasses__()`, so
all code is compiled with RestrictedPython: no imports, no names or attributes that
start with an underscore, only a small set of builtins, no files, no network.
"""
import json
import math
import traceback
import warnings
from datetime import date, datetime, timedelta, timezone
from functools import lru_cache

from RestrictedPython import RestrictingNodeTransformer, compile_restricted, limited_builtins, safe_builtins
from RestrictedPython.Eval import default_guarded_getitem, default_guarded_getiter
from RestrictedPython.Guards import full_write_guard, guarded_iter_unpack_sequence, safer_getattr
from RestrictedPython.PrintCollector import PrintCollector
from SpiffWorkflow.bpmn.script_engine import PythonScriptEngine, TaskDataEnvironment
from SpiffWorkflow.bpmn.exceptions import WorkflowTaskException

_EXTRA_BUILTINS = {
    "dict": dict, "list": list, "set": set, "frozenset": frozenset, "sum": sum, "min": min,
    "max": max, "sorted": sorted, "enumerate": enumerate, "zip": zip, "any": any, "all": all,
    "map": map, "filter": filter, "reversed": reversed,
    "math": math, "date": date, "datetime": datetime, "timedelta": timedelta, "timezone": timezone,
}


def _inplace(op: str, x, y):
    ops = {"+=": lambda: x + y, "-=": lambda: x - y, "*=": lambda: x * y, "/=": lambda: x / y,
           "//=": lambda: x // y, "%=": lambda: x % y, "**=": lambda: x ** y}
    if op not in ops:
        raise SyntaxError(f"operator {op} is not allowed in scripts")
    return ops[op]()


RESTRICTED_GLOBALS = {
    "__builtins__": {**safe_builtins, **limited_builtins, **_EXTRA_BUILTINS},
    "_getattr_": safer_getattr,
    "_getitem_": default_guarded_getitem,
    "_getiter_": default_guarded_getiter,
    "_iter_unpack_sequence_": guarded_iter_unpack_sequence,
    "_unpack_sequence_": guarded_iter_unpack_sequence,
    "_write_": full_write_guard,
    "_inplacevar_": _inplace,
    "_print_": PrintCollector,
}


SCRIPT_FILENAME = "<bpmn script>"


class _Policy(RestrictingNodeTransformer):
    """RestrictedPython's policy, but `import` is refused when compiled, not at run time."""

    def visit_Import(self, node):
        self.error(node, "imports are not allowed in BPMN scripts")

    visit_ImportFrom = visit_Import


class ScriptRejected(Exception):
    """Code that the restricted compiler refuses (an import, a dunder, a syntax error)."""


@lru_cache(maxsize=4096)
def compile_code(source: str, mode: str):
    """Compile once per distinct source text; raise ScriptRejected with the reason."""
    try:
        with warnings.catch_warnings():  # RestrictedPython warns about unread `printed`
            warnings.simplefilter("ignore", SyntaxWarning)
            return compile_restricted(source, SCRIPT_FILENAME, mode, policy=_Policy)
    except SyntaxError as e:
        reason = e.msg if e.msg else str(e)
        if isinstance(e.args[0] if e.args else None, tuple):
            reason = "; ".join(e.args[0])
        raise ScriptRejected(reason) from None


class RestrictedEnvironment(TaskDataEnvironment):
    """Task-data environment whose code runs restricted; services go to `service_handler`.

    `service_handler(operation_name, params: dict) -> JSON-serialisable value`.
    """

    def __init__(self, service_handler=None):
        super().__init__(dict(RESTRICTED_GLOBALS))
        self.service_handler = service_handler

    def evaluate(self, expression, context, external_context=None):
        return super().evaluate(compile_code(expression, "eval"), context, external_context)

    def execute(self, script, context, external_context=None):
        return super().execute(compile_code(script, "exec"), context, external_context)

    def call_service(self, context, operation_name=None, operation_params=None, **kwargs):
        if self.service_handler is None:
            raise ValueError(f"no operation {operation_name!r} is available")
        params = {name: spec["value"] for name, spec in (operation_params or {}).items()}
        return json.dumps(self.service_handler(operation_name, params), default=str)


def _script_line(err: BaseException) -> int:
    """The line of the BPMN script where `err` was raised, 0 if unknown."""
    line = 0
    for frame in traceback.extract_tb(err.__traceback__):
        if frame.filename == SCRIPT_FILENAME:
            line = frame.lineno or 0
    return line


class ScriptEngine(PythonScriptEngine):
    """PythonScriptEngine whose errors always say what failed.

    SpiffWorkflow 3.2.0's own handlers raise `NameError: script` for any failing service
    and crash on exceptions whose first argument is not a string; these replace them.
    """

    def evaluate(self, task, expression, external_context=None):
        try:
            return self.environment.evaluate(expression, task.data, external_context)
        except WorkflowTaskException:
            raise
        except Exception as e:
            raise WorkflowTaskException(f"expression {expression!r} failed: {type(e).__name__}: {e}",
                                        task=task, exception=e) from e

    def execute(self, task, script, external_context=None):
        try:
            return self.environment.execute(script, task.data, external_context or {})
        except WorkflowTaskException:
            raise
        except Exception as e:
            line = _script_line(e)
            where = f" on line {line}" if line else ""
            raise WorkflowTaskException(f"script failed{where}: {type(e).__name__}: {e}",
                                        task=task, exception=e, line_number=line) from e

    def call_service(self, task, **kwargs):
        try:
            return self.environment.call_service(task.data, **kwargs)
        except WorkflowTaskException:
            raise
        except Exception as e:
            raise WorkflowTaskException(f"{type(e).__name__}: {e}", task=task, exception=e) from e
