"""The service-task operations Chatflow ships, assembled in one place for the wiring.

The engine runs whatever operations it is given; the chat domain offers its own. This module,
beside `create_app`, is where the two meet, so the engine imports nothing of the chat domain.
"""
from app.chats import actions, lifecycle, notices
from app.engine.operations import Operations


def build_operations(jobs=None) -> Operations:
    """Every operation; `jobs` lets operations queue follow-up work (None: names only)."""
    operations = Operations()

    @operations.register("echo", "Return the given value unchanged (for trying service tasks).",
                         {"value": "any value"}, "the value")
    def echo(value=None):
        return value

    lifecycle.register(operations, jobs)
    actions.register(operations)
    notices.register(operations)
    return operations


def operation_names() -> set[str]:
    return build_operations().names()
