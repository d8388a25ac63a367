"""Event cost bench: one chat event through our engine vs. the naive
SpiffWorkflow loop, both persisting to PostgreSQL, measured interleaved in one run.

    .venv/bin/python bench/event_cost.py            # --help for the knobs; ~1 min

Both sides drive the SAME code for everything but the engine: the chat-row work of
`app.chats.service.accept / reply / complete` and of the `start_chat_lifecycle` job (lock the
chat, start, link the instance), the same ScriptEngine and operations (route_chat,
complete_chat, ...: the same chat/user row updates), then `db.session.commit()`. Only the
engine object passed in differs:

  ours   app.engine.instances.Engine: spec parsed once per version (SpecCache), state-only JSON
         in process_instances.workflow_state (+ data, waiting_for), history rows
         (instance_events), timer rows synced, row lock (SELECT ... FOR UPDATE; an action locks
         the instance with the chat in one statement, `Engine.lock_with`).
  naive  SpiffWorkflow's own loop: SELECT the row FOR UPDATE (with the chat, as ours, its JSON
         read by that statement), deserialize_json of the WHOLE
         workflow (spec included), the same step, serialize_json of the whole workflow, UPDATE
         the row (table naive_workflows). No history, no timer rows. Start builds the workflow
         from the cached parsed spec (no parse: favourable to naive) and INSERTs the row.
         Step semantics are the same as ours (catch + payload merge, event subprocesses started
         by a message, restartOn re-arm), so both run the same diagram path.

Event kinds (each timed from the first SQL statement to the end of the commit):
  client_message  a client's first message opened a new chat: the lifecycle start job
                  (route_chat offers it to the least busy operator). A client message in an
                  already open chat never touches the engine (it only stores a message row),
                  so it costs the same on both sides and is not measured.
  accept          service.accept -> engine.deliver_message('chat_accepted')
  reply           service.reply  -> engine.deliver_message('operator_replied') (the queue has a
                  completion timeout, so the 1st reply is caught and later ones re-arm the timer)
  complete        service.complete -> engine.deliver_message('chat_completed') -> complete_chat
"""
import argparse
import cProfile
import io
import pstats
import random
import sys
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))
import _pg  # noqa: E402

from sqlalchemy import Column, BigInteger, MetaData, Table, Text, text  # noqa: E402
from SpiffWorkflow.bpmn import BpmnEvent, BpmnWorkflow  # noqa: E402
from SpiffWorkflow.bpmn.serializer import BpmnWorkflowSerializer  # noqa: E402
from SpiffWorkflow.spiff.serializer.config import SPIFF_CONFIG  # noqa: E402
from SpiffWorkflow.util.task import TaskState  # noqa: E402
from app.services import services

KINDS = ("client_message", "accept", "reply", "complete")
NAIVE = Table("naive_workflows", MetaData(), Column("id", BigInteger, primary_key=True),
              Column("workflow_json", Text, nullable=False))


def parse_args():
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--chats", type=int, default=80, help="chats per side")
    p.add_argument("--replies", type=int, default=10, help="operator replies per chat")
    p.add_argument("--operators", type=int, default=5)
    p.add_argument("--database", default="chatflow_bench_events")
    p.add_argument("--profile", choices=("auto", "always", "never"), default="auto",
                   help="cProfile our side after the run (auto: only if a ratio is above 1.0)")
    p.add_argument("--keep-database", action="store_true")
    p.add_argument("--show-sql", action="store_true", help="print the SQL statements of one event per kind and side")
    p.add_argument("--seed", type=int, default=7)
    return p.parse_args()


class NaiveEngine:
    """The naive SpiffWorkflow loop with the Engine's interface, persisting whole-workflow JSON."""

    def __init__(self, ours):
        self.ours = ours  # only for the cached parsed spec at start and the same ScriptEngine
        self.serializer = BpmnWorkflowSerializer(BpmnWorkflowSerializer.configure(SPIFF_CONFIG))
        self.restart_on = {}
        self.loaded = {}  # workflow id -> its JSON, read with the lock in this transaction

    class Row:
        def __init__(self, id):
            self.id = id

    def start(self, key, data=None, business_key=None):
        from app.bpmn import store
        from app.extensions import db
        version = store.latest_version(key)
        parsed = self.ours.specs.get(version.id)
        self.restart_on = parsed.restart_on  # the diagram's restartOn properties (one diagram in this bench)
        workflow = BpmnWorkflow(parsed.spec, parsed.subprocess_specs, script_engine=self.ours.script_engine)
        workflow.get_next_task(state=TaskState.READY).set_data(**(data or {}))
        workflow.do_engine_steps()
        dumped = self.serializer.serialize_json(workflow)
        # As ours: the operations' ORM row changes are written at commit, the chat's with its link.
        new_id = db.session.execute(text("INSERT INTO naive_workflows (workflow_json) VALUES (:j) RETURNING id"),
                                    {"j": dumped}).scalar_one()
        return self.Row(new_id)

    def lock(self, instance_id):
        """As ours: the service locks the instance before the chat (lock order)."""
        from app.extensions import db
        db.session.execute(text("SELECT id FROM naive_workflows WHERE id = :id FOR UPDATE"), {"id": instance_id})

    def lock_with(self, query, link):
        """As ours: the workflow row and the query's rows locked in one statement, the workflow
        first; its JSON kept for the step that follows (as ours keeps the loaded row)."""
        from app.extensions import db
        entities = [d["entity"] for d in query.column_descriptions if d["entity"] is not None]
        row = db.session.execute(query.add_columns(NAIVE.c.id, NAIVE.c.workflow_json)
                                 .join_from(entities[0], NAIVE, NAIVE.c.id == link).with_for_update(of=[NAIVE, *entities])
                                 .execution_options(populate_existing=True)).first()
        if row is None:
            return None
        self.loaded = {row[-2]: row[-1]}
        return row[:-2]

    def deliver_message(self, instance_id, name, data=None, if_waiting=False):
        from app.engine import tree
        from app.engine.instances import Engine
        from app.extensions import db
        dumped = self.loaded.pop(instance_id, None) or db.session.execute(
            text("SELECT workflow_json FROM naive_workflows WHERE id = :id FOR UPDATE"), {"id": instance_id}).scalar_one()
        workflow = self.serializer.deserialize_json(dumped)
        workflow.script_engine = self.ours.script_engine
        catchers = tree.message_catchers(workflow, name)
        starts = tree.message_starts(workflow, name)  # event subprocesses (every reply is noted by one)
        restarts = [w for w in tree.timer_waits(workflow)  # restartOn, as the diagram says
                    if name in self.restart_on.get(w.element_id, ())]
        if not catchers and not starts and not restarts:
            if if_waiting:
                return self.Row(instance_id)
            raise RuntimeError(f"naive: not waiting for {name}")
        from uuid import UUID
        for wait in restarts:
            workflow.get_task_from_id(UUID(wait.task_id)).internal_data.pop("event_value", None)
        if catchers:
            Engine._catch(workflow, catchers, dict(data or {}))
        elif starts:
            workflow.send_event(BpmnEvent(starts[0][1], dict(data or {})))
        workflow.do_engine_steps()
        db.session.flush()  # text() does not autoflush: the operations' ORM row changes go first, as ours
        db.session.execute(text("UPDATE naive_workflows SET workflow_json = :j WHERE id = :id"),
                           {"j": self.serializer.serialize_json(workflow), "id": instance_id})
        return self.Row(instance_id)

    def cancel(self, instance_id):
        raise RuntimeError("naive: cancel not expected in this bench")


class Timed:
    """Wraps an engine; adds the time spent inside its calls to `spent`."""

    def __init__(self, inner):
        self.inner, self.spent = inner, 0.0

    def __getattr__(self, name):
        attr = getattr(self.inner, name)
        if not callable(attr):
            return attr

        def call(*a, **kw):
            t = time.perf_counter()
            try:
                return attr(*a, **kw)
            finally:
                self.spent += time.perf_counter() - t
        return call


def setup(app, args):
    from datetime import timedelta

    from app.chats import settings
    from app.extensions import db
    from app.models import User
    from app.models.chat import Channel, Queue, QueueOperator
    from app.models.states import OperatorStatus
    from app.models.types import utcnow
    with app.app_context():
        engine = services(app).engine
        settings.put("SimultaneousChats", 100)
        settings.put("OmniChatOperatorAcceptChatTimeout", 60)  # no timer fires during the run
        queue = Queue(name="bench", routing_rule="least_busy", completion_timeout_minutes=60)
        db.session.add(queue)
        db.session.flush()
        channel = Channel(provider="telegram", name="bench", active=True, queue_id=queue.id, token="1:x",
                          webhook_secret="s")
        db.session.add(channel)
        ops = []
        for i in range(args.operators):
            # Active and present for the run (new users start inactive and absent, and get no chats).
            user = User(login=f"op{i}", name=f"Op {i}", permissions=[], status=OperatorStatus.ACTIVE,
                        connected_until=utcnow() + timedelta(hours=1))
            db.session.add(user)
            db.session.flush()
            db.session.add(QueueOperator(queue_id=queue.id, user_id=user.id))
            ops.append(user.id)
        engine.deploy([(_pg.LIFECYCLE.name, _pg.LIFECYCLE.read_bytes())])
        # The naive side's rows; chats.process_instance_id points at them, so its FK goes (bench DB only).
        db.session.execute(text("CREATE TABLE naive_workflows (id bigserial PRIMARY KEY, workflow_json text NOT NULL)"))
        db.session.execute(text("ALTER SEQUENCE naive_workflows_id_seq RESTART WITH 1000000"))
        db.session.execute(text("ALTER TABLE chats DROP CONSTRAINT IF EXISTS chats_process_instance_id_fkey"))
        db.session.commit()
        return queue.id, channel.id


def new_chat(channel_id, queue_id, n):
    """A chat row as the webhook leaves it (untimed): queued, no instance yet."""
    from app.extensions import db
    from app.models.chat import Chat, Contact
    contact = Contact(name=f"client {n}")
    db.session.add(contact)
    db.session.flush()
    chat = Chat(channel_id=channel_id, contact_id=contact.id, queue_id=queue_id, state="queued", address=str(n))
    db.session.add(chat)
    db.session.commit()
    chat_id = chat.id
    db.session.remove()
    return chat_id


def start_lifecycle(chat_id, eng):
    """app.jobs.start_chat_lifecycle's body, with the engine passed in."""
    from app.chats import lifecycle
    from app.extensions import db
    chat = lifecycle.lock_chat(chat_id)
    instance = eng.start(chat.queue.lifecycle_process, {"ChatId": chat.id, "ContactId": chat.contact_id,
                                                        "QueueId": chat.queue_id}, business_key=f"chat:{chat.id}")
    chat.process_instance_id = instance.id
    db.session.commit()


def run(app, args, queue_id, channel_id, timings, profiler=None, sql=None):
    """Chats interleaved ours/naive event by event; appends (side, kind) -> [(total, engine_part)]."""
    from app.chats import service
    from app.extensions import db
    from app.models import User
    from app.models.chat import Chat
    sql = {} if sql is None else sql
    ours = services(app).engine
    jobs = services(app).jobs
    sides = {"ours": Timed(ours), "naive": Timed(NaiveEngine(ours))}
    rnd = random.Random(args.seed)
    n = 0
    statements = []
    with app.app_context():
        from sqlalchemy import event as sa_event

        def count(conn, cursor, statement, *rest):
            statements.append(statement)
        sa_event.listen(db.engine, "before_cursor_execute", count)
        for c in range(args.chats):
            chats = {}
            for side in sides:
                n += 1
                chats[side] = new_chat(channel_id, queue_id, n)

            def event(kind, work):
                order = list(sides)
                rnd.shuffle(order)  # neither side always runs first (caches, autovacuum, load)
                for side in order:
                    eng = sides[side]
                    eng.spent = 0.0
                    if profiler is not None and side == "ours":
                        profiler.enable()
                    statements.clear()
                    t = time.perf_counter()
                    work(side, eng)
                    total = time.perf_counter() - t
                    sql.setdefault((side, kind), []).append(list(statements))
                    if profiler is not None and side == "ours":
                        profiler.disable()
                    timings.setdefault((side, kind), []).append((total, eng.spent))
                    db.session.remove()

            event("client_message", lambda side, eng: start_lifecycle(chats[side], eng))

            def operator_of(side):
                chat = db.session.get(Chat, chats[side])
                assert chat.state == "offered", (side, chat.state)
                op = chat.offered_to_id
                db.session.remove()
                return op
            operators = {side: operator_of(side) for side in sides}

            def accept(side, eng):
                service.accept(chats[side], db.session.get(User, operators[side]), eng)
                db.session.commit()
            event("accept", accept)
            for r in range(args.replies):
                def reply(side, eng, r=r):
                    service.reply(chats[side], db.session.get(User, operators[side]), f"reply {r}", eng, jobs)
                    db.session.commit()
                event("reply", reply)

            def complete(side, eng):
                service.complete(chats[side], db.session.get(User, operators[side]), "operator", eng, jobs)
                db.session.commit()
            event("complete", complete)
        sa_event.remove(db.engine, "before_cursor_execute", count)


def check(app):
    """Both sides really ran the diagram to its end."""
    from app.extensions import db
    with app.app_context():
        ours = dict(db.session.execute(text("SELECT state, count(*) FROM process_instances GROUP BY state")).all())
        chats = dict(db.session.execute(text("SELECT state, count(*) FROM chats GROUP BY state")).all())
        naive_done = 0
        ser = BpmnWorkflowSerializer(BpmnWorkflowSerializer.configure(SPIFF_CONFIG))
        for (j,) in db.session.execute(text("SELECT workflow_json FROM naive_workflows")):
            naive_done += ser.deserialize_json(j).is_completed()
        naive_total = db.session.execute(text("SELECT count(*) FROM naive_workflows")).scalar()
        outside = db.session.execute(text("SELECT count(*) FROM chat_events WHERE event = 'completed_outside_process'")).scalar()
        assert outside == 0, f"{outside} chats were completed outside their process: the bench is not measuring the real path"
        db.session.remove()
    return ours, chats, naive_done, naive_total


def report(timings, sql, args):
    ms = 1000.0
    ratios = {}
    print(f"\n{'event':<15} {'side':<6} {'n':>5} {'median ms':>10} {'p90 ms':>8} "
          f"{'engine part med':>16} {'rest (rows+commit) med':>23} {'SQL stmts med':>14}")
    for kind in KINDS:
        for side in ("ours", "naive"):
            v = timings.get((side, kind), [])
            tot, eng = [x[0] for x in v], [x[1] for x in v]
            rest = [a - b for a, b in v]
            print(f"{kind:<15} {side:<6} {len(v):>5} {_pg.median(tot)*ms:>10.2f} {_pg.pct(tot, 90)*ms:>8.2f} "
                  f"{_pg.median(eng)*ms:>16.2f} {_pg.median(rest)*ms:>23.2f} "
                  f"{_pg.median([len(x) for x in sql.get((side, kind), [])]):>14}")
        o = [x[0] for x in timings[("ours", kind)]]
        nv = [x[0] for x in timings[("naive", kind)]]
        oe = [x[1] for x in timings[("ours", kind)]]
        ne = [x[1] for x in timings[("naive", kind)]]
        ratios[kind] = (_pg.median(o) / _pg.median(nv), _pg.pct(o, 90) / _pg.pct(nv, 90),
                        _pg.median(oe) / _pg.median(ne))
    print(f"\n{'event':<15} {'ratio median':>13} {'ratio p90':>10} {'engine-part ratio':>18}   goal: ratio <= 1.0")
    for kind, (rm, rp, re_) in ratios.items():
        verdict = "MET" if rm <= 1.0 else "NOT MET"
        print(f"{kind:<15} {rm:>13.3f} {rp:>10.3f} {re_:>18.3f}   {verdict}")
    all_o = sum(x[0] for k in KINDS for x in timings[("ours", k)])
    all_n = sum(x[0] for k in KINDS for x in timings[("naive", k)])
    print(f"{'all events':<15} total time ours/naive = {all_o:.2f}s/{all_n:.2f}s = {all_o/all_n:.3f}")
    return ratios


def main():
    args = parse_args()
    started = time.monotonic()
    print("machine:", _pg.machine())
    print(f"chats per side {args.chats}, replies per chat {args.replies}, operators {args.operators}; "
          f"events per side: {args.chats * (3 + args.replies)}")
    with _pg.bench_database(args.database, keep=args.keep_database) as url:
        app = _pg.make_app(url)
        queue_id, channel_id = setup(app, args)
        warm = argparse.Namespace(**{**vars(args), "chats": 3})
        run(app, warm, queue_id, channel_id, {})  # warm-up: imports, pools, caches (not counted)
        timings, sql = {}, {}
        run(app, args, queue_id, channel_id, timings, sql=sql)
        ours, chats, naive_done, naive_total = check(app)
        print(f"\ncheck: our instances by state {ours}; chats by state {chats}; "
              f"naive workflows completed {naive_done}/{naive_total}")
        ratios = report(timings, sql, args)
        if args.show_sql:
            for key, runs in sorted(sql.items()):
                print(f"\n-- SQL of one {key[1]} event, {key[0]}:")
                for st in runs[len(runs) // 2]:
                    print("   ", " ".join(st.split())[:160])
        print("load after run:", _pg.machine().split("loadavg")[1])
        if args.profile == "always" or (args.profile == "auto" and any(r[0] > 1.0 for r in ratios.values())):
            prof = cProfile.Profile()
            small = argparse.Namespace(**{**vars(args), "chats": max(5, args.chats // 4)})
            run(app, small, queue_id, channel_id, {}, profiler=prof)
            out = io.StringIO()
            pstats.Stats(prof, stream=out).sort_stats("cumulative").print_stats(35)
            print("\ncProfile of our side (cumulative, top 35):")
            print(out.getvalue())
        with app.app_context():
            from app.extensions import db
            db.session.remove()
            db.engine.dispose()
    print(f"wall {time.monotonic() - started:.1f}s")


if __name__ == "__main__":
    main()
