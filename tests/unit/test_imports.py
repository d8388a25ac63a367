"""The import rules of app/ (each package's docstring states its own), read from the source with `ast`.

Every import counts, a function's own included: a function-local import that closes a cycle hides
the cycle, it does not remove it. Imports under `if TYPE_CHECKING:` do not run and do not count.
"""
import ast
from functools import cache
from pathlib import Path

import pytest

APP = Path(__file__).resolve().parents[2] / "app"

# (importer, imported): no module under the first prefix may import one under the second.
FORBIDDEN = [
    ("app.engine", "app.chats"),      # the engine runs whatever operations the wiring hands it
    ("app.engine", "app.api"),
    ("app.engine", "app.adapters"),   # outside parts come in through ports
    ("app.bpmn", "app.engine"),       # `chatflow check` loads diagrams with no engine
    ("app.bpmn", "app.chats"),
    ("app.models", "app.engine"),     # tables know nothing of what uses them
    ("app.models", "app.chats"),
    ("app.models", "app.api"),
    ("app.engine", "app.jobs"),       # jobs are enqueued by name (app.job_names)
    ("app.chats", "app.api"),         # the domain serves the routes, not the reverse
    ("app.chats", "app.adapters"),    # outside parts come through app.services and their ports
    ("app.chats", "app.jobs"),
    ("app.api", "app.adapters"),
    ("app.api", "app.jobs"),
    ("app.adapters", "app.api"),
    ("app.adapters", "app.chats"),
    ("app.console", "app.api"),       # pages ask the HTTP API, like any client
    ("app.api", "app.models"),        # views call query functions (app.chats, app.engine, accounts), never a table
]
# Column types, the UTC clock and the states' str enums: in app.models, but no table.
NOT_A_TABLE = {"app.models.types", "app.models.states"}


def module_name(path: Path) -> str:
    parts = path.relative_to(APP.parent).with_suffix("").parts
    return ".".join(parts[:-1] if parts[-1] == "__init__" else parts)


def modules() -> dict[str, Path]:
    return {module_name(p): p for p in APP.rglob("*.py") if "migrations" not in p.parts}


def _type_checking_only(tree: ast.AST) -> set[int]:
    """Line numbers of imports under `if TYPE_CHECKING:`."""
    lines = set()
    for node in ast.walk(tree):
        if isinstance(node, ast.If) and "TYPE_CHECKING" in ast.unparse(node.test):
            lines |= {n.lineno for stmt in node.body for n in ast.walk(stmt) if hasattr(n, "lineno")}
    return lines


def imports_of(path: Path, known: set[str]) -> set[str]:
    """The app modules `path` imports, anywhere in it: `from app import x` names module app.x
    when there is one, else the package it comes from."""
    tree = ast.parse(path.read_text(), str(path))
    skip = _type_checking_only(tree)
    found = set()
    for node in ast.walk(tree):
        if getattr(node, "lineno", None) in skip:
            continue
        if isinstance(node, ast.Import):
            found |= {alias.name for alias in node.names if alias.name.split(".")[0] == "app"}
        elif isinstance(node, ast.ImportFrom) and node.level == 0 and node.module \
                and node.module.split(".")[0] == "app":
            for alias in node.names:
                child = f"{node.module}.{alias.name}"
                found.add(child if child in known else node.module)
    return {name for name in found if name in known}


@cache
def import_graph() -> dict[str, set[str]]:
    known = modules()
    return {name: imports_of(path, set(known)) - {name} for name, path in known.items()}


def cycles(graph: dict[str, set[str]]) -> list[list[str]]:
    """The strongly connected components of more than one module (Tarjan's algorithm)."""
    index, low, on_stack, stack, found = {}, {}, set(), [], []

    def visit(v):
        index[v] = low[v] = len(index)
        stack.append(v)
        on_stack.add(v)
        for w in sorted(graph.get(v, ())):
            if w not in index:
                visit(w)
                low[v] = min(low[v], low[w])
            elif w in on_stack:
                low[v] = min(low[v], index[w])
        if low[v] == index[v]:
            component = []
            while True:
                w = stack.pop()
                on_stack.discard(w)
                component.append(w)
                if w == v:
                    break
            if len(component) > 1:
                found.append(sorted(component))

    for v in sorted(graph):
        if v not in index:
            visit(v)
    return found


def under(module: str, prefix: str) -> bool:
    return module == prefix or module.startswith(prefix + ".")


def test_app_has_no_import_cycle():
    assert cycles(import_graph()) == []


@pytest.mark.parametrize("importer, imported", FORBIDDEN, ids=[f"{a}->{b}" for a, b in FORBIDDEN])
def test_forbidden_import(importer, imported):
    offending = sorted(f"{a} imports {b}" for a, targets in import_graph().items() if under(a, importer)
                       for b in targets if under(b, imported) and b not in NOT_A_TABLE)
    assert offending == []


def test_the_checks_see_what_they_look_for():
    """A cycle and a forbidden import, planted in a made-up graph, are found."""
    graph = {"app.engine.instances": {"app.chats.lifecycle"}, "app.chats.lifecycle": {"app.engine.instances"},
             "app.models": set()}
    assert cycles(graph) == [["app.chats.lifecycle", "app.engine.instances"]]
    assert under("app.engine.instances", "app.engine") and not under("app.engineering", "app.engine")
    assert "app.engine.tx" in import_graph()["app.engine.instances"]  # real imports are read
