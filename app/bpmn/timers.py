"""Timer text as modelers write it.

SpiffWorkflow evaluates timer text as a Python expression, so the bare `PT5M` a modeler
writes would be a NameError at run time. At load we turn literal ISO 8601 text into a
Python string literal, and keep anything else as an expression over process data.
"""
from datetime import datetime, timezone

from SpiffWorkflow.bpmn.specs.event_definitions.timer import TimerEventDefinition as _Timer

KINDS = ("timeDate", "timeDuration", "timeCycle")


def is_iso_literal(kind: str, text: str) -> bool:
    try:
        if kind == "timeCycle":
            if not text.upper().startswith("R"):
                return False
            _Timer.parse_iso_recurring_interval(text)
        elif text.upper().startswith("P"):
            _Timer.parse_iso_duration(text)
        else:
            datetime.fromisoformat(text)
        return True
    except Exception:
        return False


def normalise(kind: str, text: str) -> tuple[str, bool]:
    """Return (python expression, is_literal) for the timer text of one definition.

    A naive date-time is taken as UTC, never as the server's local time.
    """
    text = text.strip()
    if text.startswith("="):  # Camunda 8 (FEEL-style) marker for an expression
        return text[1:].strip(), False
    if is_iso_literal(kind, text):
        if kind == "timeDate":
            moment = datetime.fromisoformat(text)
            if moment.tzinfo is None:
                text = moment.replace(tzinfo=timezone.utc).isoformat()
        return repr(text), True
    return text, False
