"""Named service-task operations that Chatflow offers BPMN diagrams.

A diagram's service task names an operation (`spiffworkflow:serviceTaskOperator id=...`);
its parameters are expressions over process data; the result lands in process data.
"""
from dataclasses import dataclass, field
from typing import Callable


@dataclass(frozen=True)
class Operation:
    name: str
    func: Callable
    description: str
    params: dict[str, str] = field(default_factory=dict)  # parameter name -> meaning
    returns: str = ""


class Operations:
    def __init__(self):
        self._items: dict[str, Operation] = {}

    def register(self, name: str, description: str, params: dict[str, str] | None = None, returns: str = ""):
        """Decorator: offer `func(**params)` to diagrams as operation `name`."""
        def decorate(func):
            self._items[name] = Operation(name, func, description, params or {}, returns)
            return func
        return decorate

    def names(self) -> set[str]:
        return set(self._items)

    def call(self, name: str, params: dict):
        operation = self._items.get(name)
        if operation is None:
            raise LookupError(f"no operation named {name!r}")
        unknown = set(params) - set(operation.params)
        if unknown:
            raise TypeError(f"operation {name!r} takes no parameter {', '.join(sorted(unknown))}")
        return operation.func(**params)

    def catalogue(self) -> list[dict]:
        return [{"name": op.name, "description": op.description, "parameters": op.params, "returns": op.returns}
                for op in sorted(self._items.values(), key=lambda o: o.name)]
