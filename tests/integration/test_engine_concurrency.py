"""Two OS processes deliver messages to one instance at the same time: no event is lost.

The instance row is locked while it advances (SELECT ... FOR UPDATE on PostgreSQL,
BEGIN IMMEDIATE on SQLite), so each delivery starts from the state the previous one
saved. Without the lock two deliveries would read the same state and one count would
be lost.
"""
import json
import subprocess
import sys

import pytest
from sqlalchemy import event, func, select

from app.engine.errors import Conflict
from app.extensions import db
from app.models import InstanceEvent, ProcessInstance
from app.services import services
from chat_helpers import deploy
from conftest import ROOT

PER_PROCESS = 30  # two processes: 60 loops, far below the ~1,000 levels where SpiffWorkflow stalls

# Runs in a fresh interpreter: builds its own app (own engine, own connections) on the test
# database, says "ready", waits for "go" on stdin so both start together, then delivers.
DELIVER = r'''
import json, sys, time
from app import create_app
from app.engine.errors import Conflict
from app.extensions import db
from app.models import ProcessInstance
from app.services import services

url, instance_id, sender, count = sys.argv[1], int(sys.argv[2]), sys.argv[3], int(sys.argv[4])
app = create_app({"SQLALCHEMY_DATABASE_URI": url, "AUTO_MIGRATE": False, "REDIS_URL": None,
                  "BOOTSTRAP_ADMIN_TOKEN": None}, start_jobs=False)
engine = services(app).engine
with app.app_context():
    engine.specs.get(db.session.get(ProcessInstance, instance_id).process_version_id)  # parse before the race
    db.session.rollback()
print("ready", flush=True)
sys.stdin.readline()
conflicts, begun = [], time.time()
with app.app_context():
    for seq in range(count):
        try:
            engine.deliver_message(instance_id, "ping", {"sender": sender, "seq": seq})
            db.session.commit()
        except Conflict as e:  # must not happen: after every delivery the instance waits again
            db.session.rollback()
            conflicts.append(f"{seq}: {e.code}: {e.message}")
    db.session.remove()
print(json.dumps({"sender": sender, "begun": begun, "ended": time.time(), "conflicts": conflicts}), flush=True)
'''


def start_ping_loop(app) -> int:
    deploy(app, "ping_loop.bpmn")
    with app.app_context():
        instance = services(app).engine.start("PingLoop")
        db.session.commit()
        assert instance.state == "waiting"
        assert [w["message"] for w in instance.waiting_for] == ["ping"]
        instance_id = instance.id
        db.session.remove()  # on SQLite an open transaction would hold the write lock
    return instance_id


def deliver_from_two_processes(db_url, instance_id, count):
    procs = [subprocess.Popen([sys.executable, "-c", DELIVER, db_url, str(instance_id), sender, str(count)],
                              cwd=ROOT, stdin=subprocess.PIPE, stdout=subprocess.PIPE, stderr=subprocess.PIPE,
                              text=True)
             for sender in ("A", "B")]
    try:
        for proc in procs:
            line = proc.stdout.readline()
            assert line.strip() == "ready", f"child did not start: {line!r} {proc.stderr.read()[-3000:]}"
        for proc in procs:  # release both at once
            proc.stdin.write("go\n")
            proc.stdin.flush()
        results = []
        for proc in procs:
            out, err = proc.communicate(timeout=180)
            assert proc.returncode == 0, f"child failed: {err[-3000:]}"
            results.append(json.loads(out.strip().splitlines()[-1]))
        return results
    finally:
        for proc in procs:
            if proc.poll() is None:
                proc.kill()
                proc.wait()


@pytest.mark.parametrize("round_", range(3))
def test_two_processes_delivering_to_one_instance_lose_no_event(make_app, db_url, round_):
    app = make_app()
    instance_id = start_ping_loop(app)

    results = deliver_from_two_processes(db_url, instance_id, PER_PROCESS)

    assert [r["conflicts"] for r in results] == [[], []]
    # The two delivery loops really ran at the same time, or this test proves nothing.
    assert max(r["begun"] for r in results) < min(r["ended"] for r in results)
    with app.app_context():
        instance = db.session.get(ProcessInstance, instance_id)
        assert instance.state == "waiting", instance.error
        assert instance.data["count"] == 2 * PER_PROCESS
        expected = sorted(f"{s}:{i}" for s in "AB" for i in range(PER_PROCESS))
        assert sorted(instance.data["seen"]) == expected  # each message counted exactly once
        for sender in "AB":  # and each sender's messages in the order it sent them
            mine = [x for x in instance.data["seen"] if x.startswith(sender)]
            assert mine == [f"{sender}:{i}" for i in range(PER_PROCESS)]
        received = db.session.scalars(select(InstanceEvent).where(
            InstanceEvent.instance_id == instance_id, InstanceEvent.event == "message_received")).all()
        assert len(received) == 2 * PER_PROCESS
        assert {e.task for e in received} == {"wait_ping"}
        counted = db.session.scalar(select(func.count()).select_from(InstanceEvent).where(
            InstanceEvent.instance_id == instance_id, InstanceEvent.task == "count_ping",
            InstanceEvent.event == "completed"))
        assert counted == 2 * PER_PROCESS
        assert instance.revision == 1 + 2 * PER_PROCESS  # one save per start and per delivery


def test_message_nobody_waits_for_is_refused_and_changes_nothing(make_app):
    app = make_app()
    instance_id = start_ping_loop(app)
    with app.app_context():
        engine = services(app).engine
        revision = db.session.get(ProcessInstance, instance_id).revision
        with pytest.raises(Conflict) as refused:
            engine.deliver_message(instance_id, "pong", {"sender": "A", "seq": 0})
        assert refused.value.code == "not_waiting_for_message"
        db.session.rollback()
        engine.deliver_message(instance_id, "ping", {"sender": "A", "seq": 0})
        db.session.commit()
        instance = db.session.get(ProcessInstance, instance_id)
        assert instance.revision == revision + 1
        assert instance.data["count"] == 1


def test_an_instance_is_locked_once_per_transaction_and_again_in_the_next(make_app):
    """A caller that locked the instance first (lock order) does not make the step read it twice;
    a new transaction locks and reads it afresh."""
    app = make_app()
    instance_id = start_ping_loop(app)
    reads = []

    def count(conn, cursor, statement, *args):
        if statement.lstrip().startswith("SELECT") and "FROM process_instances" in statement \
                and "process_instances.id = " in statement:
            reads.append(statement)

    with app.app_context():
        engine = services(app).engine
        event.listen(db.engine, "before_cursor_execute", count)
        try:
            engine.lock(instance_id)
            engine.deliver_message(instance_id, "ping", {"sender": "A", "seq": 0})
            db.session.commit()
            assert len(reads) == 1, reads
            engine.deliver_message(instance_id, "ping", {"sender": "A", "seq": 1})
            db.session.commit()
            assert len(reads) == 2, reads
            assert db.session.get(ProcessInstance, instance_id).data["count"] == 2
        finally:
            event.remove(db.engine, "before_cursor_execute", count)
            db.session.remove()
