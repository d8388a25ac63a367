"""One process event over HTTP against SpiffWorkflow's naive in-memory loop, in one run.

    .venv/bin/python bench/http_probe.py          # ~1 min; --help for the knobs

Two events per instance of a one-user-task process: start it (it runs to its user task) and
complete its task (it runs to its end).

  naive  SpiffWorkflow alone, in memory, no database: the workflow is built from the parsed
         spec and stepped, or deserialize_json of the WHOLE workflow (spec included), the step,
         serialize_json of the whole workflow. The spec is parsed once, outside the timing.
  http   the same two events through the API on gunicorn (2 gthread workers, which keep the
         client's connection open) + PostgreSQL, one client with a keep-alive session:
         POST /api/processes/{key}/instances, then
         POST /api/process-instances/{id}/tasks/{task}/complete; request sent -> whole answer read.
  floors what no event over HTTP on PostgreSQL can go below, measured beside them:
         `GET /api/process-operations` over the same session (HTTP, gunicorn, Flask, the token's
         one SELECT in its transaction, a fixed JSON answer) and, from this process, one INSERT +
         COMMIT on PostgreSQL (the WAL flush a committed event waits for).

The sides alternate in rounds of 50 instances, so all see the same machine load. Prints
median/p90 per event and side, and the ratio http / naive of the medians (goal <= 5); and the CPU
each event costs the machine (naive: this process; http: gunicorn, PostgreSQL's backends and the
client, read from /proc), which a machine shared with others blurs less than the wall clock.
`--profile` then runs the HTTP side in this process (Flask test client, same PostgreSQL) under
cProfile and prints where a request's time goes (HTTP and gunicorn excepted).
"""
import argparse
import cProfile
import os
import pstats
import statistics
import sys
import time
from pathlib import Path

import psycopg

sys.path.insert(0, str(Path(__file__).resolve().parent))
from _servers import BENCH_CLIENT, CpuMeter, dumps, finish, gthread_args, session, stack  # noqa: E402

from SpiffWorkflow.bpmn import BpmnWorkflow  # noqa: E402
from SpiffWorkflow.bpmn.serializer import BpmnWorkflowSerializer  # noqa: E402
from SpiffWorkflow.spiff.parser import SpiffBpmnParser  # noqa: E402
from SpiffWorkflow.spiff.serializer.config import SPIFF_CONFIG  # noqa: E402
from SpiffWorkflow.util.task import TaskState  # noqa: E402

KEY, TASK = "ProbeOneTask", "Review"
BPMN = f"""<?xml version="1.0" encoding="UTF-8"?>
<bpmn:definitions xmlns:bpmn="http://www.omg.org/spec/BPMN/20100524/MODEL" id="probe"
                  targetNamespace="http://bpmn.io/schema/bpmn">
  <bpmn:process id="{KEY}" name="One user task" isExecutable="true">
    <bpmn:startEvent id="Begin"><bpmn:outgoing>f1</bpmn:outgoing></bpmn:startEvent>
    <bpmn:sequenceFlow id="f1" sourceRef="Begin" targetRef="{TASK}"/>
    <bpmn:userTask id="{TASK}" name="Review"><bpmn:incoming>f1</bpmn:incoming><bpmn:outgoing>f2</bpmn:outgoing>
    </bpmn:userTask>
    <bpmn:sequenceFlow id="f2" sourceRef="{TASK}" targetRef="Done"/>
    <bpmn:endEvent id="Done"><bpmn:incoming>f2</bpmn:incoming></bpmn:endEvent>
  </bpmn:process>
</bpmn:definitions>
""".encode()


def parse_args():
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--instances", type=int, default=500, help="instances per side (2 events each)")
    p.add_argument("--warmup", type=int, default=30, help="instances per side before timing")
    p.add_argument("--web-workers", type=int, default=2)
    p.add_argument("--web-threads", type=int, default=4, help="gunicorn gthread threads per worker; 0 = sync workers")
    p.add_argument("--database", default="chatflow_bench_probe")
    p.add_argument("--redis-db", type=int, default=6)
    p.add_argument("--profile", action="store_true", help="then cProfile the HTTP side in-process")
    return p.parse_args()


class Naive:
    """SpiffWorkflow's own loop: the whole workflow as JSON between events."""

    def __init__(self):
        parser = SpiffBpmnParser()
        parser.add_bpmn_str(BPMN)
        self.spec = parser.get_spec(KEY)
        self.serializer = BpmnWorkflowSerializer(BpmnWorkflowSerializer.configure(SPIFF_CONFIG))

    def start(self, data: dict) -> str:
        workflow = BpmnWorkflow(self.spec)
        workflow.get_next_task(state=TaskState.READY).set_data(**data)
        workflow.do_engine_steps()
        return self.serializer.serialize_json(workflow)

    def complete(self, dumped: str, data: dict) -> str:
        workflow = self.serializer.deserialize_json(dumped)
        task = workflow.get_next_task(state=TaskState.READY, manual=True)
        task.set_data(**data)
        task.run()
        workflow.do_engine_steps()
        assert workflow.is_completed()
        return self.serializer.serialize_json(workflow)


class Http:
    def __init__(self, base: str, token: str):
        self.base, self.headers, self.http = base, {"Authorization": f"Bearer {token}"}, session()

    def start(self, data: dict) -> int:
        r = self.http.post(f"{self.base}/api/processes/{KEY}/instances", json={"data": data}, headers=self.headers)
        assert r.status_code == 201, r.text
        return r.json()["id"]

    def complete(self, instance_id: int, data: dict) -> None:
        r = self.http.post(f"{self.base}/api/process-instances/{instance_id}/tasks/{TASK}/complete",
                           json={"data": data}, headers=self.headers)
        assert r.status_code == 200 and r.json()["state"] == "completed", r.text


class Floors:
    """What an event over HTTP on PostgreSQL cannot go below (see the module's docstring)."""

    def __init__(self, http: Http, dsn: str):
        self.http, self.db = http, psycopg.connect(dsn, application_name=BENCH_CLIENT)
        self.db.execute("create table probe_floor (id serial primary key, n int)")
        self.db.commit()

    def api(self) -> None:
        r = self.http.http.get(f"{self.http.base}/api/process-operations", headers=self.http.headers)
        assert r.status_code == 200

    def commit(self) -> None:
        self.db.execute("insert into probe_floor (n) values (1)")
        self.db.commit()


def timed(work, out: list | None):
    t0 = time.perf_counter()
    result = work()
    if out is not None:
        out.append((time.perf_counter() - t0) * 1000)
    return result


def one(side, n: int, times: dict | None):
    data = {"n": n, "customer": f"c{n}"}
    handle = timed(lambda: side.start(data), times and times["start"])
    timed(lambda: side.complete(handle, {"approved": True}), times and times["complete"])


def pct(values, q):
    values = sorted(values)
    return values[min(len(values) - 1, int(q * len(values)))]


def report(results: dict, floors: dict) -> float:
    print(f"\n{'event':<10} {'naive median / p90 ms':>22} {'http median / p90 ms':>22} {'ratio median':>13}")
    for kind in ("start", "complete", "both"):
        nv, hv = results["naive"][kind], results["http"][kind]
        print(f"{kind:<10} {statistics.median(nv):>10.3f} / {pct(nv, .9):<9.3f} {statistics.median(hv):>10.2f} / "
              f"{pct(hv, .9):<9.2f} {statistics.median(hv) / statistics.median(nv):>13.2f}")
    naive = statistics.median(results["naive"]["both"])
    print("\nfloors (median / p90 ms, and x naive per event):")
    for name, label in (("api", "GET /api/process-operations"), ("commit", "INSERT + COMMIT")):
        v = floors[name]
        print(f"  {label:<42} {statistics.median(v):>7.3f} / {pct(v, .9):<7.3f} {statistics.median(v) / naive:>7.2f} x")
    return statistics.median(results["http"]["both"]) / naive


def profile(dsn: str, token: str, instances: int) -> None:
    os.environ.update(DATABASE_URL=dsn)
    from app import create_app
    app = create_app()
    client = app.test_client()
    headers = {"Authorization": f"Bearer {token}"}

    def run(count):
        for n in range(count):
            r = client.post(f"/api/processes/{KEY}/instances", json={"data": {"n": n}}, headers=headers)
            client.post(f"/api/process-instances/{r.get_json()['id']}/tasks/{TASK}/complete", json={"data": {}},
                        headers=headers)
    run(20)
    from sqlalchemy import event
    from app.extensions import db
    with app.app_context():
        engine = db.engine
    statements = []
    log_sql = lambda conn, cursor, statement, *rest: statements.append(" ".join(statement.split())[:160])  # noqa
    event.listen(engine, "before_cursor_execute", log_sql)
    for path in (f"/api/processes/{KEY}/instances", None):
        statements.clear()
        if path is None:
            path = f"/api/process-instances/{instance_id}/tasks/{TASK}/complete"
        r = client.post(path, json={"data": {}}, headers=headers)
        instance_id = r.get_json()["id"]
        print(f"\nPOST {path}: {len(statements)} statements")
        for sql in statements:
            print("  " + sql)
    event.remove(engine, "before_cursor_execute", log_sql)
    prof = cProfile.Profile()
    prof.enable()
    run(instances)
    prof.disable()
    print(f"\ncProfile of {instances} instances x 2 events in-process (Flask test client, PostgreSQL):")
    pstats.Stats(prof).sort_stats("cumulative").print_stats(45)


def main() -> int:
    args = parse_args()
    print(f"load average before: {os.getloadavg()}")
    naive = Naive()
    results = {side: {"start": [], "complete": [], "both": []} for side in ("naive", "http")}
    web_args = gthread_args(args.web_threads)
    print(f"gunicorn -w {args.web_workers} {' '.join(web_args) or '(sync)'}")
    with stack(args.database, redis_db=args.redis_db, web_workers=args.web_workers, job_workers=1,
               label="probe", web_args=web_args) as s:
        s.api.call("POST", "/api/processes", files={"file": ("probe.bpmn", BPMN, "application/xml")})
        http = Http(s.base, s.admin_token)
        floors = Floors(http, s.dsn)
        floor_times = {"api": [], "commit": []}
        for n in range(args.warmup):
            one(naive, n, None)
            one(http, n, None)
            floors.api()
            floors.commit()
        done = 0
        meter, cpu = CpuMeter(s), {"naive": 0.0, "http": {}}
        while done < args.instances:
            for side_name, side in (("naive", naive), ("http", http)):
                times = results[side_name]
                if side is http:
                    meter.start()
                cpu0 = time.process_time()
                for n in range(done, min(done + 50, args.instances)):
                    one(side, n, times)
                    times["both"].append(times["start"][-1] + times["complete"][-1])
                if side is naive:
                    cpu["naive"] += time.process_time() - cpu0
                else:
                    for part, seconds in meter.stop().items():
                        cpu["http"][part] = cpu["http"].get(part, 0) + seconds
            for name, work in (("api", floors.api), ("commit", floors.commit)):
                for _ in range(done, min(done + 50, args.instances)):
                    timed(work, floor_times[name])
            done += 50
        floors.db.close()
        for side in results.values():  # per event: the mean of the pair, so "both" compares like for like
            side["both"] = [v / 2 for v in side["both"]]
        ratio = report(results, floor_times)
        events = 2 * args.instances
        http_cpu = {part: 1000 * seconds / events for part, seconds in cpu["http"].items() if part != "workers"}
        naive_cpu = 1000 * cpu["naive"] / events
        print(f"\nCPU per event: naive {naive_cpu:.3f} ms; http {sum(http_cpu.values()):.2f} ms ("
              + ", ".join(f"{part} {ms:.2f}" for part, ms in http_cpu.items())
              + f"), {sum(http_cpu.values()) / naive_cpu:.1f} x")
        print(f"\nratio http / naive per event (median): {ratio:.2f}  (goal <= 5)")
        print(f"load average after: {os.getloadavg()}")
        if args.profile:
            profile(s.dsn, s.admin_token, args.instances)
        print(dumps({"ratio": round(ratio, 2), "instances": args.instances}))
        return finish(None, [] if ratio <= 5 else [f"ratio {ratio:.2f} > 5"])


if __name__ == "__main__":
    sys.exit(main())
