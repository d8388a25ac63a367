"""Run process instances: start, deliver events, fire timers, retry, cancel.

Every function here works inside the caller's transaction and leaves the commit to the
edge (a view, a job, the CLI). The instance row is locked while it advances, so two web
or worker processes never both advance one instance from the same state.
"""
import contextvars
import json
from uuid import UUID
from datetime import datetime
from functools import partial

from sqlalchemy import func, insert, select
from sqlalchemy.exc import DBAPIError, PendingRollbackError
from SpiffWorkflow.bpmn import BpmnEvent, BpmnWorkflow
from SpiffWorkflow.util.task import TaskState

from app import job_names
from app.bpmn import limits, store
from app.bpmn.scripting import RestrictedEnvironment, ScriptEngine
from app.engine import alarms, deployed, state, tree, tx
from app.engine.errors import Conflict, NotFound
from app.engine.operations import Operations
from app.engine.ports import JobQueue
from app.engine.tx import after_commit
from app.extensions import db
from app.models import InstanceEvent, ProcessInstance
from app.models.states import FINISHED, InstanceState
from app.models.types import utcnow


#: The instance whose workflow is running now, for operations that need it.
current_instance: contextvars.ContextVar[ProcessInstance | None] = contextvars.ContextVar("current_instance",
                                                                                         default=None)


def _plain(data: dict) -> dict:
    """Process data as JSON values (dates become text), for the API and the data column."""
    return json.loads(json.dumps(data, default=str))


def _next_due(waits) -> datetime | None:
    """The earliest due time of these timers: the instance's `next_timer_at`, the sweep's index."""
    return min((w.due_at for w in waits), default=None)


def database_fault(error: BaseException | None) -> BaseException | None:
    """The database error behind `error`, if any: SpiffWorkflow wraps what a service task raises."""
    seen = set()
    while error is not None and id(error) not in seen:
        if isinstance(error, (DBAPIError, PendingRollbackError)):
            return error
        seen.add(id(error))
        error = getattr(error, "exception", None) or error.__cause__ or error.__context__
    return None


def describe_error(error: Exception) -> str:
    task = getattr(error, "task", None)
    element = tree.element_id(task) if task is not None else None
    message = error.args[0] if error.args and isinstance(error.args[0], str) else str(error)
    return f"{element}: {message}" if element else f"{type(error).__name__}: {message}"


class Engine:
    def __init__(self, jobs: JobQueue, operations: Operations, budget: limits.Limits | None = None):
        self.jobs = jobs
        self.operations = operations
        self.limits = budget or limits.Limits()
        self.specs = store.SpecCache()
        self.latest = deployed.Latest()
        self.alarms = alarms.Scheduled()
        self.script_engine = ScriptEngine(RestrictedEnvironment(operations.call))

    # -- deployment -------------------------------------------------------------------
    def deploy(self, files: list[tuple[str, bytes]], missing_only: bool = False) -> list[dict]:
        deployed.changed()
        return store.deploy(files, self.operations.names(), self.specs, missing_only)

    # -- instances --------------------------------------------------------------------
    def start(self, key: str, data: dict | None = None, business_key: str | None = None) -> ProcessInstance:
        """Start the latest version of `key` with `data` and run it until it waits."""
        version = self.latest.ref(key)  # id and number only: the XML is read only on a cache miss
        if version is None:
            raise NotFound(f"no process {key!r} is deployed", code="process_not_found")
        parsed = self.specs.get(version.id)
        workflow = BpmnWorkflow(parsed.spec, parsed.subprocess_specs, script_engine=self.script_engine)
        workflow.get_next_task(state=TaskState.READY).set_data(**(data or {}))
        instance = ProcessInstance(process_version_id=version.id, process_key=key,
                                   business_key=business_key, state=InstanceState.RUNNING, workflow_state="", data={},
                                   waiting_for=[], revision=0, created_at=utcnow())
        # Not added to the session yet: _save INSERTs it once, whole, after its first step.
        instance._written_events = []  # all its history is this transaction's (history_written)
        self._record(instance, None, "started", {"version": version.version})
        self._advance(instance, workflow, partial(limits.run_steps, workflow))
        return instance

    def deliver_message(self, instance_id: int, name: str, data: dict | None = None,
                        if_waiting: bool = False) -> ProcessInstance:
        """Deliver BPMN message `name` with `data` as payload.

        The message is caught by what waits for it and restarts the timers whose `restartOn`
        names it (its data is merged into theirs first, so a duration can come from it). With nothing to do: 409 not_waiting_for_message, or, with `if_waiting`,
        nothing at all (the instance is returned unchanged).
        """
        instance, workflow = self._open(instance_id)
        live = instance.state not in FINISHED and not self._refuse_if_stopped(instance, workflow, if_waiting)
        catchers = tree.message_catchers(workflow, name) if live else []
        starts = tree.message_starts(workflow, name) if live else []
        restart_on = self.specs.get(instance.process_version_id).restart_on
        restarts = [w for w in tree.timer_waits(workflow) if name in restart_on.get(w.element_id, ())] \
            if live else []
        if not catchers and not starts and not restarts:
            if if_waiting:
                return instance
            raise Conflict(f"instance {instance_id} is not waiting for message {name!r}",
                           code="not_waiting_for_message")
        payload = dict(data or {})

        def deliver():
            for wait in restarts:  # re-armed in place, from now: the task tree stays flat
                task = workflow.get_task_from_id(UUID(wait.task_id))
                # The message's data reaches the timer, so its duration is read afresh: SpiffWorkflow
                # copies a waiting task's data from its parent when it looks at it again.
                for holder in (task.parent, task):
                    if holder is not None:
                        holder.set_data(**payload)
                task.internal_data.pop("event_value", None)
            if catchers:
                self._catch(workflow, catchers, payload)
            elif starts:  # SpiffWorkflow starts the event subprocess for it
                workflow.send_event(BpmnEvent(starts[0][1], payload))
            limits.run_steps(workflow)

        if catchers or starts:
            where = tree.element_id(catchers[0][0]) if catchers else starts[0][0].bpmn_id
            self._record(instance, where, "message_received", {"name": name})
        for wait in restarts:
            self._record(instance, wait.element_id, "timer_restarted", {"message": name})
        self._advance(instance, workflow, deliver)
        return instance

    @staticmethod
    def _catch(workflow, catchers, payload: dict) -> None:
        waiting = {task.id for task, _ in catchers}
        # The event must carry the very definition class the parser produced, or it is not caught.
        workflow.send_event(BpmnEvent(catchers[0][1], payload))
        for task, definition in catchers:
            # A catch event without a messageVariable gets the payload merged into its data.
            if task.id in waiting and task.state != TaskState.WAITING and getattr(definition, "message_var",
                                                                                  None) is None:
                task.set_data(**payload)
                for child in task.children:
                    child.set_data(**payload)

    def complete_user_task(self, instance_id: int, element_id: str, data: dict | None = None) -> ProcessInstance:
        instance, workflow = self._open(instance_id)
        self._refuse_if_stopped(instance, workflow)
        tasks = [t for t in tree.user_tasks(workflow) if tree.element_id(t) == element_id]
        if not tasks or instance.state in FINISHED:
            raise Conflict(f"instance {instance_id} has no user task {element_id!r} waiting",
                           code="not_waiting_for_task")
        task = tasks[0]

        def complete():
            task.set_data(**(data or {}))
            task.run()
            limits.run_steps(workflow)

        self._advance(instance, workflow, complete)
        return instance

    def fire_timers(self, instance_id: int, now: datetime | None = None, skip_locked: bool = False) -> bool:
        """Advance an instance whose timers are due. Does nothing (returns False) if none is.

        With `skip_locked` an instance another process is advancing is left to it.
        """
        now = now or utcnow()
        due_at = db.session.scalar(select(ProcessInstance.next_timer_at).where(ProcessInstance.id == instance_id))
        if due_at is None or due_at > now:
            return False  # a stale wake-up: the instance moved on; not even its state is loaded
        instance = self._lock(instance_id, skip_locked)
        return instance is not None and self.fire(instance, now)

    def claim_due(self, cutoff: datetime, passed_over=()) -> ProcessInstance | None:
        """Lock the most overdue instance with a timer due by `cutoff` that no other process is
        advancing (SKIP LOCKED: workers claiming at once each get another), row loaded; None when
        there is none. The row lock is the claim: it ends with the transaction, or with its holder."""
        query = select(ProcessInstance).where(ProcessInstance.next_timer_at <= cutoff)
        if passed_over:  # instances whose firing failed in this run: not retried at once
            query = query.where(ProcessInstance.id.not_in(passed_over))
        instance = db.session.execute(query.order_by(ProcessInstance.next_timer_at).limit(1)
                                      .with_for_update(skip_locked=True).execution_options(populate_existing=True)
                                      ).scalar_one_or_none()
        return instance and self._hold(instance)

    def next_due(self, passed_over=()) -> datetime | None:
        """The earliest timer of any instance but those `passed_over` (one read of the index): after a
        claim found nothing, one due already is held by someone else."""
        query = select(func.min(ProcessInstance.next_timer_at))
        if passed_over:
            query = query.where(ProcessInstance.id.not_in(passed_over))
        return db.session.scalar(query)

    def fire(self, instance: ProcessInstance, now: datetime) -> bool:
        """Fire the due timers of a locked instance; False (and its index corrected) when none is."""
        if instance.state in FINISHED or instance.state == InstanceState.ERROR:
            instance.next_timer_at = None  # nothing of it fires (set by hand: saves clear it)
            return False
        workflow = self._restore(instance)
        waits = tree.timer_waits(workflow)
        due = {w.task_id for w in waits if w.due_at <= now}
        if not due:  # next_timer_at was stale (it is rewritten on every save, so only by hand)
            instance.next_timer_at = _next_due(waits)
            return False

        def fire():
            workflow.refresh_timers()
            # SpiffWorkflow schedules a cycle's next firing from the previous due time, so a late
            # firing shortens the next period and after an outage the missed ones fire at once:
            # the operator offered a chat next would get no time at all. Count from now instead.
            tree.restart_cycles_from_now(workflow, due)
            limits.run_steps(workflow)

        self._advance(instance, workflow, fire)
        return True

    def retry(self, instance_id: int) -> ProcessInstance:
        instance, workflow = self._open(instance_id)
        failed = tree.errored_tasks(workflow)
        if instance.state != InstanceState.ERROR:
            raise Conflict(f"instance {instance_id} is not in error", code="not_in_error")
        # Without a failed task it was stopped at its budget and undone to its last wait: it resumes there.
        self._record(instance, tree.element_id(failed[0]) if failed else None, "retried", None)

        def rerun():
            for task in failed:
                workflow.reset_from_task_id(task.id)
            limits.run_steps(workflow)

        self._advance(instance, workflow, rerun)
        return instance

    def cancel(self, instance_id: int) -> ProcessInstance:
        instance, workflow = self._open(instance_id)
        if instance.state in FINISHED:
            raise Conflict(f"instance {instance_id} is already {instance.state}", code="instance_finished")
        workflow.cancel()
        self._record(instance, None, "cancelled", None)
        self._save(instance, workflow, error=None, final_state=InstanceState.CANCELLED)
        return instance

    def diagram(self, instance: ProcessInstance) -> dict:
        workflow = self._restore(instance)
        return {"xml": instance.version.xml, **tree.element_states(workflow)}

    def lock(self, instance_id: int) -> None:
        """Hold the instance's row lock until commit (a caller that must lock it before other rows)."""
        self._lock(instance_id)

    def lock_with(self, query, link):
        """Lock, in one statement, the instance `link` names (a column of `query`'s rows) and the rows
        of `query`'s entities, the instance first (the order the engine's own steps lock in), rows
        loaded. Returns `query`'s row, or None when there is none or it names no instance."""
        entities = [d["entity"] for d in query.column_descriptions if d["entity"] is not None]
        row = db.session.execute(query.add_columns(ProcessInstance).join_from(entities[0], ProcessInstance, ProcessInstance.id == link)
                                 .with_for_update(of=[ProcessInstance, *entities])
                                 .execution_options(populate_existing=True)).first()
        if row is None:
            return None
        self._hold(row[-1])
        return row[:-1]

    # -- internals --------------------------------------------------------------------
    def _lock(self, instance_id: int, skip_locked: bool = False) -> ProcessInstance | None:
        held = tx.locked_rows(db.session)
        instance = held.get(("instance", instance_id))  # locked and loaded earlier in this transaction
        if instance is None:
            instance = db.session.execute(select(ProcessInstance).where(ProcessInstance.id == instance_id)
                                          .with_for_update(skip_locked=skip_locked)
                                          .execution_options(populate_existing=True)
                                          ).scalar_one_or_none()
            if instance is None:
                return None
        return self._hold(instance)

    @staticmethod
    def _hold(instance: ProcessInstance) -> ProcessInstance:
        """Note a locked instance as held until commit, with nothing left over from a step rolled back."""
        tx.locked_rows(db.session)[("instance", instance.id)] = instance
        instance._pending_events = []
        return instance

    def _open(self, instance_id: int):
        instance = self._lock(instance_id)
        if instance is None:
            raise NotFound(f"no process instance {instance_id}", code="instance_not_found")
        return instance, self._restore(instance)

    def _restore(self, instance: ProcessInstance, workflow_state: str | None = None):
        # By id: the version row (with its XML) is read only when the spec is not cached yet.
        parsed = self.specs.get(instance.process_version_id)
        return state.load(workflow_state or instance.workflow_state, parsed.spec, parsed.subprocess_specs,
                          self.script_engine)

    @staticmethod
    def _refuse_if_stopped(instance: ProcessInstance, workflow, quietly: bool = False) -> bool:
        """An instance stopped at its budget (in error with no failed task: undone to its last wait)
        takes nothing more until it is retried or cancelled: it would most likely run away again."""
        stopped = instance.state == InstanceState.ERROR and not tree.errored_tasks(workflow)
        if stopped and not quietly:
            raise Conflict(f"instance {instance.id} was stopped ({instance.error}); retry it to resume from its "
                           "last wait, or cancel it", code="instance_stopped")
        return stopped

    def _advance(self, instance: ProcessInstance, workflow, action) -> None:
        """Run `action` on the workflow, record what happened, save; an error fails only this instance.

        The action runs under the engine's budget. Past it, the advance is undone, its database
        work too, and the instance is saved in `error` as it was at its last wait.
        """
        last_wait = instance.workflow_state or state.dump(workflow)
        before = tree.snapshot(workflow)
        # What was scheduled: the timers of the state just loaded (each save schedules its new ones).
        timers_before = {} if instance.state in (*FINISHED, InstanceState.ERROR) else {
            w.task_id: w for w in tree.timer_waits(workflow)}
        error, stopped = None, False
        token = current_instance.set(instance)
        try:
            with tx.savepoint(db.session), limits.running(self.limits):
                try:
                    action()
                except Exception as e:  # scripts and services are the diagram's code: their failure is the
                    if database_fault(e) is None and limits.find(e) is None:  # instance's (and is kept)
                        error = describe_error(e)
                    else:
                        raise
        except BaseException as e:
            if (fault := database_fault(e)) is not None:  # not the database's: the whole step
                raise fault  # rolls back, to be retried
            stop = limits.find(e)
            if stop is None:
                raise
            error, stopped = str(stop), True
            workflow = self._restore(instance, last_wait)
            before = tree.snapshot(workflow)
            self._record(instance, stop.element, "error", {"message": error})
        finally:
            current_instance.reset(token)
        recorded_error = stopped
        for at, element, event in tree.changes(workflow, before):
            self._record(instance, element, event, {"message": error} if event == "error" else None, at)
            recorded_error = recorded_error or event == "error"
        if error and not recorded_error:
            # Also a retry that fails again: its task went from ERROR to ERROR, which is no change.
            failed = tree.errored_tasks(workflow)
            self._record(instance, tree.element_id(failed[0]) if failed else None, "error", {"message": error})
        self._save(instance, workflow, error, timers_before=timers_before)

    def _save(self, instance: ProcessInstance, workflow, error: str | None, final_state: str | None = None,
              timers_before: dict | None = None):
        # Once: pruning below drops finished branches and spare joins, never a timer or a catch.
        timers = tree.timer_waits(workflow)
        waiting = tree.waiting_for(workflow, timers)
        if final_state:
            new_state = final_state
        elif tree.reached_end(workflow):
            new_state = InstanceState.COMPLETED
        elif workflow.is_completed():  # SpiffWorkflow stopped looking, tokens are left: never `completed`
            new_state = InstanceState.ERROR
            error = error or ("the process stopped before reaching an end event: its task tree is deeper than "
                              "SpiffWorkflow looks")
        elif error or tree.errored_tasks(workflow):
            new_state = InstanceState.ERROR
        else:
            new_state = InstanceState.WAITING if waiting else InstanceState.RUNNING
        tree.prune_finished_branches(workflow)
        values = {"state": new_state, "error": error if new_state == InstanceState.ERROR else None,
                  "workflow_state": state.dump(workflow), "waiting_for": [] if new_state in FINISHED else waiting,
                  "data": _plain(self._current_data(workflow)), "revision": (instance.revision or 0) + 1,
                  "updated_at": utcnow()}
        for key, value in values.items():
            setattr(instance, key, value)
        waits = [] if new_state in (*FINISHED, InstanceState.ERROR) else timers
        instance.next_timer_at = _next_due(waits)
        if instance.id is None:  # a new instance: one INSERT of the whole row, and only it: the caller's
            db.session.add(instance)  # pending changes (the row that will name it) are written with that link
            db.session.flush([instance])
        self._schedule_timers(waits, timers_before)
        self._write_events(instance)

    @staticmethod
    def _current_data(workflow) -> dict:
        if tree.reached_end(workflow):
            return dict(workflow.data)
        data = {}
        active = workflow.get_tasks(state=tree.ACTIVE | TaskState.ERROR)
        for task in sorted(active, key=lambda t: t.last_state_change) or [workflow.last_task]:
            if task is not None:
                data.update(task.data)
        return data

    def _schedule_timers(self, waits: list, before: dict | None) -> None:
        """Make sure a worker wakes when each new or moved timer is due: an alarm (on RQ the one of
        its whole second), scheduled after commit, unless this process did already (app.engine.alarms).

        `before`: the timers of the state as loaded (already scheduled); None for a new instance.
        """
        now, ring = utcnow(), alarms.alarm_at if self.jobs.whole_seconds else (lambda due: due)
        for alarm in {ring(w.due_at) for w in waits
                      if not (before and w.task_id in before and before[w.task_id].due_at == w.due_at)}:
            if self.alarms.needed(alarm, now):
                after_commit(db.session, partial(self._wake_at, alarm))

    def _wake_at(self, alarm: datetime) -> None:
        self.jobs.enqueue_at(alarm, job_names.FIRE_DUE_TIMERS, job_id=alarms.alarm_id(alarm))
        self.alarms.add(alarm, utcnow())

    def _record(self, instance, element, event, details, at=None) -> None:
        """Buffer a history row; _save writes the step's rows in one INSERT (no RETURNING)."""
        pending = getattr(instance, "_pending_events", None)
        if pending is None:
            pending = instance._pending_events = []
        pending.append({"task": element, "event": event, "details": details, "at": at or utcnow()})

    @staticmethod
    def _write_events(instance) -> None:
        pending = getattr(instance, "_pending_events", None)
        if pending:
            instance._pending_events = []
            # The table's INSERT, not the ORM's bulk insert (the rows are never loaded back as objects,
            # and its bookkeeping of them doubled this statement's CPU). A Core statement does not
            # autoflush: the pending row changes go at the next flush, each row in one UPDATE with what
            # follows. Through the session all the same, so a savepoint block's first write opens it.
            db.session.execute(insert(InstanceEvent.__table__),
                               [{"instance_id": instance.id, **row} for row in pending])
            written = getattr(instance, "_written_events", None)
            if written is not None:
                written.extend(pending)


def history_written(instance: ProcessInstance) -> list[dict] | None:
    """The whole history of an instance started in this transaction, as written (oldest first), so
    its answer needs no read; None for an instance started before, whose history is the database's."""
    return getattr(instance, "_written_events", None)
