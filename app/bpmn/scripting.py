"""The restricted environment in which BPMN scripts, conditions and timer expressions run.

SpiffWorkflow hands every script and expression to eval/exec with full builtins.
Restricting builtins alone can be escaped through `().__class__.__subclasses__()`, so
all code is compiled with RestrictedPython: no imports, no names or attributes that
start with an underscore, only a small set of builtins, no files, no network.
"""
import ast
import json
import math
import operator
import traceback
import warnings
from datetime import date, datetime, timedelta, timezone
from functools import lru_cache
from types import SimpleNamespace

from RestrictedPython import RestrictingNodeTransformer, compile_restricted, safe_builtins
from RestrictedPython.Eval import default_guarded_getitem
from RestrictedPython.Guards import (full_write_guard, guarded_iter_unpack_sequence, guarded_unpack_sequence,
                                     safer_getattr, safer_getattr_raise)
from RestrictedPython.PrintCollector import PrintCollector
from RestrictedPython.transformer import IOPERATOR_TO_STR, copy_locations
from SpiffWorkflow.bpmn.script_engine import PythonScriptEngine, TaskDataEnvironment
from SpiffWorkflow.bpmn.exceptions import WorkflowTaskException

from app.bpmn import limits

# Names a script may not use, each with the reason the deploy-time refusal gives.
_NO_NAMESPACE = "scripts read and set process data by name; there is no namespace to look into"
_NO_DYNAMIC_CODE = "code made from text at run time cannot be checked when the diagram is deployed"
_CATCHES_STOP = ("it would also catch the engine stopping a runaway script: catch Exception or a named error "
                 "(KeyError, ValueError, ...)")
REFUSED_NAMES = {
    "locals": _NO_NAMESPACE, "globals": _NO_NAMESPACE, "vars": _NO_NAMESPACE, "dir": _NO_NAMESPACE,
    "eval": _NO_DYNAMIC_CODE, "exec": _NO_DYNAMIC_CODE, "compile": _NO_DYNAMIC_CODE,
    "open": "scripts have no files or network; ask Chatflow for outside work with a service task",
    "input": "scripts run unattended", "breakpoint": "scripts run unattended",
    "type": "objects' types are not data; test values with isinstance()",
    "BaseException": _CATCHES_STOP, "SystemExit": _CATCHES_STOP, "KeyboardInterrupt": _CATCHES_STOP,
    "GeneratorExit": _CATCHES_STOP,
}
# Attribute access by a name computed at run time could reach anything an object holds.
_NAMED_ATTRIBUTE_CALLS = ("getattr", "setattr", "delattr", "hasattr")
# math without the functions whose one call can run for minutes (factorial(10**7)).
_MATH = SimpleNamespace(**{name: getattr(math, name) for name in dir(math)
                           if not name.startswith("_") and name not in {"factorial", "comb", "perm", "prod"}})


def _getiter(iterable):
    """Every `for` loop, comprehension and unpacking iterates through here: one tick per item."""
    tick = limits.tick
    for item in iterable:
        tick()
        yield item


def _checked_size(op: str, x, y) -> None:
    """Refuse, before it is made, a repetition or a number too large to fit the script budget."""
    limit = limits.current_limits().operations
    if op in ("*", "*="):
        for seq, n in ((x, y), (y, x)):
            if isinstance(seq, (str, bytes, list, tuple)) and isinstance(n, int) and len(seq) * n > limit:
                limits.refuse(f"a repetition of {len(seq) * n} items is above the script limit of {limit}")
    elif op in ("**", "**=") and isinstance(x, int) and isinstance(y, int) and y > 0 and abs(x) > 1:
        if abs(x).bit_length() * y > limit:
            limits.refuse(f"a power of about {abs(x).bit_length() * y} bits is above the script limit of {limit}")
    elif op in ("<<", "<<=") and isinstance(x, int) and isinstance(y, int) and x and x.bit_length() + y > limit:
        limits.refuse(f"a shift to {x.bit_length() + y} bits is above the script limit of {limit}")


_SIZED = {"*": operator.mul, "**": operator.pow, "<<": operator.lshift}  # the operators that can make huge values
_INPLACE = {"+=": operator.iadd, "-=": operator.isub, "*=": operator.imul, "/=": operator.itruediv,
            "//=": operator.ifloordiv, "%=": operator.imod, "**=": operator.ipow, "<<=": operator.ilshift,
            ">>=": operator.irshift, "|=": operator.ior, "&=": operator.iand, "^=": operator.ixor,
            "@=": operator.imatmul}


def _binop(op: str, x, y):
    """`x * y`, `x ** y`, `x << y` in a script, checked for size first."""
    _checked_size(op, x, y)
    return _SIZED[op](x, y)


def _inplace(op: str, x, y):
    """`name op= value` (RestrictedPython's _inplacevar_), with Python's own in-place semantics."""
    _checked_size(op, x, y)
    return _INPLACE[op](x, y)


def _inplace_item(container, key, op: str, value) -> None:
    """`container[key] op= value`, reading and writing through the guards."""
    full_write_guard(container)[key] = _inplace(op, default_guarded_getitem(container, key), value)


def _inplace_attr(obj, name: str, op: str, value) -> None:
    """`obj.name op= value`, reading and writing through the guards."""
    setattr(full_write_guard(obj), name, _inplace(op, safer_getattr_raise(obj, name), value))


def _range(*args):
    numbers = range(*args)
    limit = limits.current_limits().operations
    if len(numbers) > limit:
        limits.refuse(f"range of {len(numbers)} items is above the script limit of {limit}")
    return numbers


def _pow(base, exp, mod=None):
    if mod is None:
        _checked_size("**", base, exp)
    return pow(base, exp, mod)


def _getattr(obj, name, *default):
    """getattr() as in Python (AttributeError unless a default is given), through the guard."""
    return safer_getattr(obj, name, *default) if default else safer_getattr_raise(obj, name)


def _apply(func, *args, **kwargs):
    """f(*args, **kwargs) in a script (RestrictedPython routes such calls here)."""
    return func(*args, **kwargs)


_MISSING = object()
_BUILTINS = {name: value for name, value in safe_builtins.items()
             if name not in REFUSED_NAMES and name != "__build_class__"}
_BUILTINS.update({
    "dict": dict, "list": list, "tuple": tuple, "set": set, "frozenset": frozenset, "sum": sum, "min": min,
    "max": max, "sorted": sorted, "enumerate": enumerate, "zip": zip, "any": any, "all": all,
    "map": map, "filter": filter, "reversed": reversed, "next": next,  # not iter(): iter(int, 1) is endless
    "getattr": _getattr, "hasattr": lambda obj, name: safer_getattr(obj, name, _MISSING) is not _MISSING,
    "range": _range, "pow": _pow,
    "math": _MATH, "date": date, "datetime": datetime, "timedelta": timedelta, "timezone": timezone,
})

RESTRICTED_GLOBALS = {
    "__builtins__": _BUILTINS,
    "_getattr_": safer_getattr_raise,  # a missing attribute is an AttributeError, as in Python
    "_getitem_": default_guarded_getitem,
    "_getiter_": _getiter,
    "_iter_unpack_sequence_": guarded_iter_unpack_sequence,
    "_unpack_sequence_": guarded_unpack_sequence,
    "_write_": full_write_guard,
    "_inplacevar_": _inplace,
    "_inplace_item_": _inplace_item,
    "_inplace_attr_": _inplace_attr,
    "_binop_": _binop,
    "_tick_": limits.tick,
    "_apply_": _apply,
    "_print_": PrintCollector,
}


SCRIPT_FILENAME = "<bpmn script>"


def _call(name: str, *args) -> ast.Call:
    return ast.Call(func=ast.Name(name, ast.Load()), args=list(args), keywords=[])


class _Policy(RestrictingNodeTransformer):
    """RestrictedPython's policy, plus what analysts' Python needs and what keeps it bounded.

    Refused when compiled (so at deploy), each with a reason: imports, names that reach the
    interpreter (locals(), eval(), open(), ...), getattr() with a computed name, classes, and
    handlers that could swallow the engine's stop. Added: augmented assignment of items and
    attributes, and a tick at every `while` pass and every call of a script's own function or
    lambda (`for` loops and comprehensions tick in _getiter); repetition, powers and shifts
    are checked for size before they are made.
    """

    def visit_Import(self, node):
        self.error(node, "imports are not allowed in BPMN scripts: a script uses process data and the "
                         "functions Chatflow provides (math, datetime, ...)")

    visit_ImportFrom = visit_Import

    def visit_Name(self, node):
        if node.id in REFUSED_NAMES:
            self.error(node, f"{node.id} is not allowed in scripts: {REFUSED_NAMES[node.id]}")
            return node
        return super().visit_Name(node)

    def visit_Call(self, node):
        func = node.func.id if isinstance(node.func, ast.Name) else None
        if func in REFUSED_NAMES:
            self.error(node, f"{func}() is not allowed in scripts: {REFUSED_NAMES[func]}")
            return node
        if func in _NAMED_ATTRIBUTE_CALLS:
            name = node.args[1] if len(node.args) > 1 else None
            if not (isinstance(name, ast.Constant) and isinstance(name.value, str)):
                self.error(node, f"{func}() with a computed attribute name is not allowed in scripts: it could "
                                 "reach more than data; use a dict and data[key] or data.get(key) instead")
                return node
            self.check_name(node, name.value)
        return super().visit_Call(node)

    def visit_ClassDef(self, node):
        self.error(node, "class definitions are not allowed in scripts: keep data in dicts and lists, which are "
                         "stored with the process")
        return node

    def visit_ExceptHandler(self, node):
        if node.type is None:
            self.error(node, f"a bare except: is not allowed in scripts: {_CATCHES_STOP}")
        return super().visit_ExceptHandler(node)

    def visit_Try(self, node):
        for stmt in node.finalbody:
            for inner in ast.walk(stmt):
                if isinstance(inner, (ast.Break, ast.Continue, ast.Return)):
                    self.error(inner, f"{type(inner).__name__.lower()} inside finally is not allowed in scripts: "
                                      "it would swallow any error, also the engine stopping a runaway script")
        return super().visit_Try(node)

    def visit_While(self, node):
        node = super().visit_While(node)
        node.body.insert(0, self._tick(node))
        return node

    def visit_FunctionDef(self, node):
        node = super().visit_FunctionDef(node)
        node.body.insert(0, self._tick(node))
        return node

    def visit_Lambda(self, node):
        node = super().visit_Lambda(node)
        node.body = ast.BoolOp(op=ast.Or(), values=[_call("_tick_"), node.body])  # None or <body>
        ast.copy_location(node.body, node)
        ast.fix_missing_locations(node)
        return node

    def visit_BinOp(self, node):
        node = super().visit_BinOp(node)
        symbol = IOPERATOR_TO_STR.get(type(node.op), "")[:-1]
        if symbol in _SIZED:
            new = _call("_binop_", ast.Constant(symbol), node.left, node.right)
            copy_locations(new, node)
            ast.fix_missing_locations(new)
            return new
        return node

    def visit_AugAssign(self, node):
        target = node.target
        if isinstance(target, ast.Name):
            return super().visit_AugAssign(node)
        if isinstance(target, ast.Attribute):
            self.check_name(node, target.attr)
            helper, key = "_inplace_attr_", ast.Constant(target.attr)
        else:
            helper, key = "_inplace_item_", target.slice
            if isinstance(key, ast.Slice):
                key = _call("slice", *[part or ast.Constant(None) for part in (key.lower, key.upper, key.step)])
        args = [self.visit(target.value), self.visit(key), ast.Constant(IOPERATOR_TO_STR[type(node.op)]),
                self.visit(node.value)]
        new = ast.Expr(value=_call(helper, *args))
        copy_locations(new, node)
        ast.fix_missing_locations(new)
        return new

    @staticmethod
    def _tick(node) -> ast.stmt:
        stmt = ast.Expr(value=_call("_tick_"))
        ast.copy_location(stmt, node)
        ast.fix_missing_locations(stmt)
        return stmt


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
        code = compile_code(expression, "eval")
        with limits.script_run():
            return super().evaluate(code, context, external_context)

    def execute(self, script, context, external_context=None):
        code = compile_code(script, "exec")
        with limits.script_run():
            return super().execute(code, context, external_context)

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
