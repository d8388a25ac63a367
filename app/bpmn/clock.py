"""One instant per run of engine steps for SpiffWorkflow's timers.

SpiffWorkflow reads `datetime.now()` each time it updates a timer task, also in the middle of
`do_engine_steps`. A cycle timer whose work outlasts its period (a 0.06 s acceptance timeout on
a loaded machine, a fast reminder on a slow database) then fell due again within the steps that
fired it, fired again, and so on until the engine's budget stopped the instance as a runaway: a
chat's lifecycle in `error`, its offer never passed on. While steps run, timers read the instant
they began instead; what falls due meanwhile fires at the next advance, which its wake-up starts.
"""
import contextvars
from contextlib import contextmanager
from datetime import datetime, timezone

from SpiffWorkflow.bpmn.specs.event_definitions import timer as spiff_timer

_frozen: contextvars.ContextVar[datetime | None] = contextvars.ContextVar("chatflow_steps_now", default=None)


class _StepsClock(datetime):
    """SpiffWorkflow's `datetime` (its timers only ever call `now(timezone.utc)` on it)."""

    @classmethod
    def now(cls, tz=None):
        frozen = _frozen.get()
        return datetime.now(tz) if frozen is None or tz is None else frozen.astimezone(tz)


@contextmanager
def one_instant():
    """Timers see the time these steps began until they end (nested steps see their own)."""
    token = _frozen.set(datetime.now(timezone.utc))
    try:
        yield
    finally:
        _frozen.reset(token)


spiff_timer.datetime = _StepsClock
