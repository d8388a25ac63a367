"""Instance state storage (no spec in the row, one parse per version) and instance errors."""
import json

import pytest
from sqlalchemy import select
from SpiffWorkflow.bpmn.serializer import BpmnWorkflowSerializer
from SpiffWorkflow.spiff.serializer.config import SPIFF_CONFIG

from app.bpmn import store
from app.engine.errors import Conflict
from app.extensions import db
from app.models import InstanceEvent, ProcessInstance, ProcessVersion
from app.services import services

from chat_helpers import deploy, start
from conftest import DATA

ENGINE_DATA = DATA / "engine"


def engine_of(app):
    return services(app).engine


def ping(app, instance_id, seq, sender="A"):
    with app.app_context():
        engine_of(app).deliver_message(instance_id, "ping", {"sender": sender, "seq": seq})
        db.session.commit()


def history(instance_id) -> list[tuple]:
    return [(e.task, e.event, e.details) for e in db.session.scalars(
        select(InstanceEvent).where(InstanceEvent.instance_id == instance_id).order_by(InstanceEvent.id))]


# -- state storage ---------------------------------------------------------------------------

def test_workflow_state_leaves_out_the_spec(make_app):
    app = make_app()
    deploy(app, "ping_loop.bpmn")
    instance_id = start(app, "PingLoop")
    for seq in range(3):
        ping(app, instance_id, seq)
    with app.app_context():
        instance = db.session.get(ProcessInstance, instance_id)
        stored = instance.workflow_state
        dct = json.loads(stored)
        assert "spec" not in dct and "subprocess_specs" not in dct
        assert '"spec"' not in stored and '"subprocess_specs"' not in stored
        assert "tasks" in dct and dct["serializer_version"]
        workflow = engine_of(app)._restore(instance)
        full = BpmnWorkflowSerializer(BpmnWorkflowSerializer.configure(SPIFF_CONFIG)).serialize_json(workflow)
        assert '"spec"' in full  # what the row would hold if the spec were not left out
        spec_size = len(json.dumps(json.loads(full)["spec"]))
        assert len(stored) < len(full) - spec_size // 2, (len(stored), len(full), spec_size)
        assert len(stored) < 0.75 * len(full), (len(stored), len(full))


def test_reloaded_instance_continues_where_it_stood(make_app):
    first = make_app()
    deploy(first, "ping_loop.bpmn", "hour_timer.bpmn")
    ping_id = start(first, "PingLoop")
    ping(first, ping_id, 0)
    ping(first, ping_id, 1)
    timer_id = start(first, "HourTimer")
    with first.app_context():
        waits_before = db.session.get(ProcessInstance, timer_id).waiting_for

    second = make_app()  # another process: its own engine, nothing cached
    assert engine_of(second) is not engine_of(first)
    for seq in (2, 3, 4):
        ping(second, ping_id, seq, sender="B")
    with second.app_context():
        instance = db.session.get(ProcessInstance, ping_id)
        assert instance.state == "waiting"
        assert instance.data["count"] == 5
        assert instance.data["seen"] == ["A:0", "A:1", "B:2", "B:3", "B:4"]
        workflow = engine_of(second)._restore(instance)
        assert [w["message"] for w in instance.waiting_for] == ["ping"]
        assert workflow.is_completed() is False

        timer = db.session.get(ProcessInstance, timer_id)
        assert timer.waiting_for == waits_before  # the timer's due time survived the reload
        engine_of(second).complete_user_task(timer_id, "answer", {"answer": "hello"})
        db.session.commit()
        timer = db.session.get(ProcessInstance, timer_id)
        assert timer.state == "completed"
        assert timer.data["answer"] == "hello" and "escalated" not in timer.data


def test_spec_cache_parses_each_version_once(make_app, monkeypatch):
    first = make_app()
    deploy(first, "ping_loop.bpmn")
    v1_id = start(first, "PingLoop")
    xml = (ENGINE_DATA / "ping_loop.bpmn").read_bytes().replace(b'name="Count pings"', b'name="Count pings v2"')
    assert deploy(first, ("ping_loop.bpmn", xml)) == [{"key": "PingLoop", "version": 2, "new": True}]
    v2_id = start(first, "PingLoop")
    v2b_id = start(first, "PingLoop")

    parsed = []
    real_parse = store.parse_specs

    def counting_parse(xml, filename, key):
        parsed.append(xml)
        return real_parse(xml, filename, key)

    monkeypatch.setattr(store, "parse_specs", counting_parse)
    for seq in range(3):  # deploy put the parsed specs in this engine's cache
        ping(first, v1_id, seq)
        ping(first, v2_id, seq)
    assert parsed == []

    second = make_app()  # a fresh engine parses each version the first time it needs it, once
    for seq in range(3, 6):
        ping(second, v1_id, seq)
        ping(second, v2_id, seq)
        ping(second, v2b_id, seq)
    with second.app_context():
        engine_of(second).diagram(db.session.get(ProcessInstance, v1_id))
        versions = {v.version: v for v in db.session.scalars(select(ProcessVersion))}
        assert sorted(p.decode() for p in parsed) == sorted(v.xml for v in versions.values())
        assert engine_of(second).specs.get(versions[1].id) is engine_of(second).specs.get(versions[1].id)
        assert len(parsed) == 2
        assert {db.session.get(ProcessInstance, i).data["count"] for i in (v2_id, v2b_id)} == {6, 3}


# -- errors ----------------------------------------------------------------------------------

@pytest.fixture
def crm(make_app):
    """An app whose engine offers operation `test_crm`, failing while `crm["fail"]` is set."""
    app = make_app()
    state = {"app": app, "fail": "CRM is down", "calls": []}

    @engine_of(app).operations.register("test_crm", "create a case (test)", {"chat_id": "the chat"})
    def test_crm(chat_id):
        state["calls"].append(chat_id)
        if state["fail"]:
            raise ConnectionError(state["fail"])
        return {"case_id": 17, "chat_id": chat_id}

    deploy(app, "service_call.bpmn")
    return state


def test_failing_service_puts_instance_in_error_and_retry_reruns_it(crm):
    app = crm["app"]
    instance_id = start(app, "ServiceCall", {"chat_id": "c-1"})
    with app.app_context():
        instance = db.session.get(ProcessInstance, instance_id)
        assert instance.state == "error"
        assert instance.error == "create_case: ConnectionError: CRM is down"
        assert "NameError" not in instance.error and "script" not in instance.error
        assert instance.waiting_for == []
        assert ("create_case", "error", {"message": instance.error}) in history(instance_id)
        assert engine_of(app).fire_timers(instance_id) is False  # nothing else advances it

        crm["fail"] = "still down"
        engine_of(app).retry(instance_id)
        db.session.commit()
        instance = db.session.get(ProcessInstance, instance_id)
        assert instance.state == "error"
        assert instance.error == "create_case: ConnectionError: still down"

        crm["fail"] = None
        engine_of(app).retry(instance_id)
        db.session.commit()
        instance = db.session.get(ProcessInstance, instance_id)
        assert instance.state == "completed", instance.error
        assert instance.error is None
        assert instance.data["case"] == {"case_id": 17, "chat_id": "c-1"}
        assert crm["calls"] == ["c-1"] * 3
        events = history(instance_id)
        assert [(task, event, details) for task, event, details in events if event in ("error", "retried")] == [
            ("create_case", "error", {"message": "create_case: ConnectionError: CRM is down"}),
            ("create_case", "retried", None),
            ("create_case", "error", {"message": "create_case: ConnectionError: still down"}),
            ("create_case", "retried", None)]
        assert [(task, event) for task, event, _ in events[-3:]] == [
            ("create_case", "completed"), ("done", "entered"), ("done", "completed")]

        with pytest.raises(Conflict) as refused:
            engine_of(app).retry(instance_id)
        assert refused.value.code == "not_in_error"


def test_restricted_script_fails_only_its_own_instance(make_app):
    app = make_app()
    deploy(app, "read_file.bpmn")
    with app.app_context():
        engine = engine_of(app)
        before = engine.start("ReadFile", {"read_it": False})
        bad = engine.start("ReadFile", {"read_it": True})  # fails inside start, raises nothing
        after = engine.start("ReadFile", {"read_it": False})
        db.session.commit()
        ids = before.id, bad.id, after.id

    with app.app_context():
        before, bad, after = (db.session.get(ProcessInstance, i) for i in ids)
        assert bad.state == "error"
        assert bad.error.startswith("peek: script failed on line 2: NotImplementedError")
        assert "format" in bad.error
        assert "class" not in bad.error and "secret" not in bad.data
        for good in (before, after):
            assert good.state == "waiting" and good.error is None
            assert good.data["peeked"] is True
        engine = engine_of(app)
        engine.retry(bad.id)  # the file is still out of reach
        engine.complete_user_task(before.id, "wait", {})
        db.session.commit()
        assert db.session.get(ProcessInstance, ids[1]).state == "error"
        assert db.session.get(ProcessInstance, ids[0]).state == "completed"
        assert db.session.get(ProcessInstance, ids[2]).state == "waiting"


def test_an_event_subprocess_run_does_not_leak_into_new_instances(make_app):
    """SpiffWorkflow 3.2 wires a started event subprocess into the shared spec's start task; every
    instance started afterwards from the cached spec began with it and never completed."""
    app = make_app()
    with app.app_context():
        engine = services(app).engine
        engine.deploy([("event_subprocess.bpmn", (ENGINE_DATA / "event_subprocess.bpmn").read_bytes())])
        first = engine.start("EventSubprocess")
        engine.deliver_message(first.id, "ping")
        second = engine.start("EventSubprocess")
        assert [w["kind"] for w in second.waiting_for] == ["message"]
        events = [e.event for e in db.session.scalars(select(InstanceEvent).where(
            InstanceEvent.instance_id == second.id))]
        assert "message_received" not in events
        engine.deliver_message(second.id, "go")
        engine.deliver_message(first.id, "go")
        db.session.commit()
        assert (second.state, first.state) == ("completed", "completed")

        def ran_count(instance):
            return [e.task for e in db.session.scalars(select(InstanceEvent).where(
                InstanceEvent.instance_id == instance.id, InstanceEvent.event == "completed"))].count("count")

        assert (ran_count(first), ran_count(second)) == (1, 0)


def test_state_dump_skips_converting_the_spec_but_stores_the_same(make_app):
    """state.dump builds the dict without SpiffWorkflow's spec conversion (a speed-up): it must be
    exactly what the full to_dict gives once spec and subprocess_specs are dropped."""
    from app.engine import state
    app = make_app()
    deploy(app, "ping_loop.bpmn", "event_subprocess.bpmn", "hour_timer.bpmn")
    ping_id = start(app, "PingLoop")
    ping(app, ping_id, 0)
    sub_id, timer_id = start(app, "EventSubprocess"), start(app, "HourTimer")
    with app.app_context():
        engine_of(app).deliver_message(sub_id, "ping")  # an event subprocess is running
        db.session.commit()
        for instance_id in (ping_id, sub_id, timer_id):
            workflow = engine_of(app)._restore(db.session.get(ProcessInstance, instance_id))
            assert state._state_dict(workflow) == state._full_dict(workflow)
            assert json.loads(db.session.get(ProcessInstance, instance_id).workflow_state)["tasks"]


WRITES_THEN_SPINS = """<?xml version="1.0" encoding="UTF-8"?>
<bpmn:definitions xmlns:bpmn="http://www.omg.org/spec/BPMN/20100524/MODEL" xmlns:spiffworkflow="http://spiffworkflow.org/bpmn/schema/1.0/core" id="d" targetNamespace="http://bpmn.io/schema/bpmn">
  <bpmn:process id="WritesThenSpins" isExecutable="true">
    <bpmn:startEvent id="start" />
    <bpmn:sequenceFlow id="f1" sourceRef="start" targetRef="write" />
    <bpmn:serviceTask id="write"><bpmn:extensionElements>
      <spiffworkflow:serviceTaskOperator id="add_user" resultVariable="added"><spiffworkflow:parameters>
        <spiffworkflow:parameter id="login" type="str" value="login" /></spiffworkflow:parameters>
      </spiffworkflow:serviceTaskOperator></bpmn:extensionElements></bpmn:serviceTask>
    <bpmn:sequenceFlow id="f2" sourceRef="write" targetRef="spin" />
    <bpmn:scriptTask id="spin"><bpmn:script>while True:
    pass</bpmn:script></bpmn:scriptTask>
    <bpmn:sequenceFlow id="f3" sourceRef="spin" targetRef="end" />
    <bpmn:endEvent id="end" />
  </bpmn:process>
</bpmn:definitions>
"""


def test_a_stopped_advance_undoes_what_its_service_tasks_wrote_and_queued(make_app):
    from app import accounts
    from app.bpmn.limits import Limits
    from app.engine.instances import Engine
    from app.engine.operations import Operations
    from app.engine.tx import after_commit
    from app.models import User

    app = make_app()
    queued_work_ran = []
    operations = Operations()

    @operations.register("add_user", "a service task that writes a row and queues work", {"login": "login"})
    def add_user(login):
        accounts.create_user(login, login)
        after_commit(db.session, lambda: queued_work_ran.append(login))
        return login

    with app.app_context():
        engine = Engine(services(app).jobs, operations, Limits(operations=1000))
        engine.deploy([("writes.bpmn", WRITES_THEN_SPINS.encode())])
        instance = engine.start("WritesThenSpins", {"login": "ghost"})
        db.session.commit()
        assert instance.state == "error" and instance.error.startswith("step limit exceeded at spin: ")
        assert instance.data == {"login": "ghost"}
        assert db.session.scalars(select(User).where(User.login == "ghost")).first() is None
        assert queued_work_ran == []
        # the same operation outside a runaway writes and queues as usual: the test can fail
        add_user("real")
        db.session.commit()
        assert db.session.scalars(select(User).where(User.login == "real")).first() is not None
        assert queued_work_ran == ["real"]


def test_work_queued_in_a_savepoint_waits_for_the_real_commit(make_app):
    """A released SAVEPOINT is no commit: a job it queued must not run before its rows are visible."""
    from app.engine.tx import after_commit, savepoint

    app = make_app()
    ran = []
    with app.app_context():
        with savepoint(db.session):
            after_commit(db.session, lambda: ran.append("inner"))
        assert ran == []
        db.session.commit()
        assert ran == ["inner"]


WRITES_THEN_WAITS = WRITES_THEN_SPINS.replace("WritesThenSpins", "WritesThenWaits").replace(
    """<bpmn:scriptTask id="spin"><bpmn:script>while True:
    pass</bpmn:script></bpmn:scriptTask>""", '<bpmn:userTask id="spin" />')


def _engine_with(app, write):
    """An engine whose `add_user` service task runs `write(login)` (the runaway one stops at its
    spin after it wrote)."""
    from app.bpmn.limits import Limits
    from app.engine.instances import Engine
    from app.engine.operations import Operations

    operations = Operations()
    operations.register("add_user", "a service task that writes", {"login": "login"})(write)
    with app.app_context():
        engine = Engine(services(app).jobs, operations, Limits(operations=1000))
        engine.deploy([("writes.bpmn", WRITES_THEN_SPINS.encode()), ("waits.bpmn", WRITES_THEN_WAITS.encode())])
        db.session.commit()
    return engine


def _pending_write(login):
    """Row changes left pending in the session (no flush, no query after them)."""
    from app.models import User
    db.session.scalars(select(User).where(User.login == "first")).one().name = f"renamed by {login}"
    db.session.add(User(login=login, name=login))
    return login


def _core_write(login):
    """SQL the operation sends itself, not through a flush."""
    from sqlalchemy import insert
    from app.models import User
    db.session.execute(insert(User).values(login=login, name=login, permissions=[]))
    return login


@pytest.mark.parametrize("write", [_pending_write, _core_write])
def test_a_stopped_advance_undoes_writes_still_pending_or_sent_as_sql(make_app, write):
    from app import accounts
    from app.models import User

    app = make_app()
    engine = _engine_with(app, write)
    with app.app_context():
        accounts.create_user("first", "First")
        db.session.commit()
        instance = engine.start("WritesThenSpins", {"login": "ghost"})
        db.session.commit()
        assert instance.state == "error"
        db.session.remove()
        assert db.session.scalars(select(User).where(User.login == "ghost")).first() is None
        assert db.session.scalars(select(User).where(User.login == "first")).one().name == "First"
        # the same write in an advance that reaches its wait is kept: the test can fail
        engine.start("WritesThenWaits", {"login": "kept"})
        db.session.commit()
        assert db.session.scalars(select(User).where(User.login == "kept")).first() is not None


def test_an_advance_whose_writes_are_pending_at_its_end_opens_no_savepoint(make_app):
    """The savepoint that undoes a stopped advance costs nothing when the advance's writes are still
    in the session when it reaches its wait: they are flushed with the instance's row."""
    from sqlalchemy import event as sa_event
    from app import accounts
    from app.models import User

    app = make_app()
    engine = _engine_with(app, _pending_write)
    with app.app_context():
        accounts.create_user("first", "First")
        db.session.commit()
        sent = []

        def log(conn, cursor, statement, *rest):
            sent.append(statement.split()[0].upper())
        sa_event.listen(db.engine, "before_cursor_execute", log)
        try:
            engine.start("WritesThenWaits", {"login": "kept"})
            db.session.commit()
        finally:
            sa_event.remove(db.engine, "before_cursor_execute", log)
        assert "SAVEPOINT" not in sent and "RELEASE" not in sent, sent
        db.session.remove()
        assert db.session.scalars(select(User).where(User.login == "kept")).first() is not None
        assert db.session.scalars(select(User).where(User.login == "first")).one().name == "renamed by kept"
