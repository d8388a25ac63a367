"""Storage bench: bytes stored per waiting chat instance, goal <= 4 KB, against
the naive full workflow JSON (serialize_json, spec included).

    .venv/bin/python bench/storage.py            # ~10 s

Drives one chat through the real engine and chat service on PostgreSQL (least_busy queue with a
completion timeout, so replies are caught and re-arm the completion timer): freshly waiting
(offered, waiting for accept), accepted, after 1, 10 and 100 replies. At each point prints, for
our instance row: workflow_state, data, waiting_for as JSON text bytes (what the app writes) and
as PostgreSQL stores them (pg_column_size: after TOAST's automatic pglz compression of values
over ~2 KB), the whole row; its instance_events (history) rows separately (timers live in the row: `next_timer_at`); and
the naive SpiffWorkflow JSON of the same workflow (serialize_json with spec), raw, zlib-compressed
and as PostgreSQL stores it in a text column.
"""
import argparse
import json
import sys
import time
import zlib
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))
import _pg  # noqa: E402
import event_cost  # noqa: E402  (its setup and lifecycle start, the same chat world)

from sqlalchemy import text  # noqa: E402
from SpiffWorkflow.bpmn.serializer import BpmnWorkflowSerializer  # noqa: E402
from SpiffWorkflow.spiff.serializer.config import SPIFF_CONFIG  # noqa: E402
from app.services import services

GOAL = 4096


def parse_args():
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--database", default="chatflow_bench_storage")
    p.add_argument("--keep-database", action="store_true")
    return p.parse_args()


def measure(instance_id, engine, serializer):
    from app.extensions import db
    from app.models import ProcessInstance
    row = db.session.execute(text("""
        SELECT octet_length(workflow_state), octet_length(data::text), octet_length(waiting_for::text),
               pg_column_size(workflow_state), pg_column_size(data), pg_column_size(waiting_for),
               pg_column_size(p.*), state
        FROM process_instances p WHERE id = :id"""), {"id": instance_id}).one()
    hist = db.session.execute(text("SELECT count(*), coalesce(sum(pg_column_size(e.*)), 0) FROM instance_events e "
                                   "WHERE instance_id = :id"), {"id": instance_id}).one()
    instance = db.session.get(ProcessInstance, instance_id)
    workflow = engine._restore(instance)
    full = serializer.serialize_json(workflow)
    db.session.execute(text("DELETE FROM naive_sizes"))
    db.session.execute(text("INSERT INTO naive_sizes (j) VALUES (:j)"), {"j": full})
    naive_stored = db.session.execute(text("SELECT pg_column_size(j) FROM naive_sizes")).scalar()
    dumped = json.loads(instance.workflow_state)
    tasks = len(dumped.get("tasks", {}))
    db.session.rollback()
    return {"ws_raw": row[0], "data_raw": row[1], "wait_raw": row[2], "ws_pg": row[3], "data_pg": row[4],
            "wait_pg": row[5], "row_pg": row[6], "state": row[7], "hist_n": hist[0], "hist_pg": hist[1],
            "naive_raw": len(full.encode()),
            "naive_zlib": len(zlib.compress(full.encode(), 6)), "naive_pg": naive_stored, "tasks": tasks,
            "ws_zlib": len(zlib.compress(instance.workflow_state.encode(), 6))}


def breakdown(instance_id):
    """Where workflow_state's bytes go (top-level keys, and per task)."""
    from app.extensions import db
    from app.models import ProcessInstance
    ws = json.loads(db.session.get(ProcessInstance, instance_id).workflow_state)
    db.session.rollback()
    size = lambda v: len(json.dumps(v, separators=(",", ":")))  # noqa: E731
    parts = {k: size(v) for k, v in ws.items()}
    per_task = sorted(((size(t), t.get("task_spec"), t.get("state")) for t in ws.get("tasks", {}).values()),
                      reverse=True)
    task_keys = {}
    for t in ws.get("tasks", {}).values():
        for k, v in t.items():
            task_keys[k] = task_keys.get(k, 0) + size(v) + len(k) + 4
    return parts, per_task[:5], dict(sorted(task_keys.items(), key=lambda kv: -kv[1]))


def main():
    args = parse_args()
    started = time.monotonic()
    print("machine:", _pg.machine())
    serializer = BpmnWorkflowSerializer(BpmnWorkflowSerializer.configure(SPIFF_CONFIG))
    with _pg.bench_database(args.database, keep=args.keep_database) as url:
        app = _pg.make_app(url)
        queue_id, channel_id = event_cost.setup(app, argparse.Namespace(operators=2))
        from app.chats import service
        from app.extensions import db
        from app.models import User
        from app.models.chat import Chat
        engine, jobs = services(app).engine, services(app).jobs
        results = []
        with app.app_context():
            db.session.execute(text("CREATE TABLE naive_sizes (j text)"))
            db.session.commit()
            chat_id = event_cost.new_chat(channel_id, queue_id, 1)
            event_cost.start_lifecycle(chat_id, engine)
            chat = db.session.get(Chat, chat_id)
            instance_id, operator_id = chat.process_instance_id, chat.offered_to_id
            db.session.remove()
            results.append(("freshly waiting (offered)", measure(instance_id, engine, serializer)))
            service.accept(chat_id, db.session.get(User, operator_id), engine)
            db.session.commit()
            results.append(("accepted (before 1st reply)", measure(instance_id, engine, serializer)))
            replies = 0
            for target in (1, 10, 100):
                while replies < target:
                    service.reply(chat_id, db.session.get(User, operator_id), f"reply {replies}", engine, jobs)
                    db.session.commit()
                    db.session.remove()
                    replies += 1
                results.append((f"after {target} replies", measure(instance_id, engine, serializer)))
            parts, top_tasks, task_keys = breakdown(instance_id)
            db.session.remove()
            db.engine.dispose()

    print("\nBytes per chat instance (raw = JSON text the app writes; pg = pg_column_size, as stored after "
          "TOAST pglz compression)")
    head = (f"{'point':<28} {'tasks':>5} {'wf_state raw':>12} {'pg':>6} {'zlib':>6} {'data raw/pg':>12} "
            f"{'waiting raw/pg':>15} {'row pg':>7} {'history n/pg':>13} "
            f"{'naive raw':>10} {'zlib':>6} {'pg':>6}")
    print(head)
    for name, m in results:
        print(f"{name:<28} {m['tasks']:>5} {m['ws_raw']:>12} {m['ws_pg']:>6} {m['ws_zlib']:>6} "
              f"{str(m['data_raw']) + '/' + str(m['data_pg']):>12} {str(m['wait_raw']) + '/' + str(m['wait_pg']):>15} "
              f"{m['row_pg']:>7} {str(m['hist_n']) + '/' + str(m['hist_pg']):>13} "
              f"{m['naive_raw']:>10} {m['naive_zlib']:>6} "
              f"{m['naive_pg']:>6}")
    print("\nGoal: bytes stored per waiting chat instance <= 4096 (the instance row: workflow_state + data + "
          "waiting_for, next_timer_at; history rows shown apart)")
    for name, m in results:
        raw = m["ws_raw"] + m["data_raw"] + m["wait_raw"]
        stored = m["row_pg"]
        print(f"  {name:<28} raw JSON {raw:>6} B ({'MET' if raw <= GOAL else 'NOT MET'} raw); stored row {stored:>5} B "
              f"({'MET' if stored <= GOAL else 'NOT MET'} as stored); naive full JSON {m['naive_raw']} B raw / "
              f"{m['naive_pg']} B stored: ours/naive stored = {stored / m['naive_pg']:.2f}")
    print("\nworkflow_state after 100 replies, bytes by top-level key:", parts)
    print("  by task key (summed over tasks):", task_keys)
    print("  largest tasks (bytes, spec, state):", top_tasks)
    print(f"\nwall {time.monotonic() - started:.1f}s")


if __name__ == "__main__":
    main()
