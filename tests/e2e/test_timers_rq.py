"""Timers fired for real: a `chatflow worker` process on real Redis, and the database sweep."""
from datetime import datetime

from redis import Redis

from chat_helpers import instance
from conftest import DATA, Api, wait_for


def test_boundary_timer_fires_through_rq_worker(make_app, redis_url, start_worker):
    api = Api(make_app(redis_url=redis_url))
    start_worker(grace_seconds=30)  # the sweep must not be what fires it
    assert api.deploy(DATA / "user_task_timeout.bpmn").status_code == 201
    started = api.post("/api/processes/UserTaskTimeout/instances", {"data": {}}).get_json()
    (timer,) = [w for w in started["waiting_for"] if w["kind"] == "timer"]
    due = datetime.fromisoformat(timer["due_at"])

    done = wait_for(lambda: (i := instance(api, started["id"]))["state"] == "completed" and i, timeout=15,
                    message="the timer path")
    assert done["data"]["timed_out"] is True
    fired = [e for e in done["history"] if e["event"] == "timer_fired"]
    assert [e["task"] for e in fired] == ["too_late"]
    lag = (datetime.fromisoformat(fired[0]["at"]) - due).total_seconds()
    assert 0 <= lag <= 2.0, f"fired {lag:.2f}s after due"


def test_timer_job_does_nothing_when_user_task_completed_first(make_app, redis_url, start_worker):
    api = Api(make_app(redis_url=redis_url))
    start_worker(grace_seconds=30)
    api.deploy(DATA / "user_task_timeout.bpmn")
    started = api.post("/api/processes/UserTaskTimeout/instances", {"data": {}}).get_json()
    done = api.post(f"/api/process-instances/{started['id']}/tasks/approve/complete", {"data": {"ok": 1}}).get_json()
    assert done["state"] == "completed" and done["waiting_for"] == []

    # The wake-up job stays scheduled in RQ; when it runs it must find nothing to do.
    redis = Redis.from_url(redis_url)
    wait_for(lambda: redis.zcard("rq:scheduled:chatflow") == 0, timeout=10, message="the scheduled job to run")
    wait_for(lambda: redis.llen("rq:queue:chatflow") == 0, timeout=10, message="the job to finish")
    after = instance(api, started["id"])
    assert after["state"] == "completed"
    assert after["data"].get("timed_out") is None
    assert not [e for e in after["history"] if e["event"] == "timer_fired"]
    assert after["history"] == done["history"]


def test_sweep_fires_timer_after_redis_lost_its_job(make_app, redis_url, start_worker):
    api = Api(make_app(redis_url=redis_url))
    api.deploy(DATA / "user_task_timeout.bpmn")
    started = api.post("/api/processes/UserTaskTimeout/instances", {"data": {}}).get_json()
    Redis.from_url(redis_url).flushdb()  # Redis restarted empty: the wake-up job is gone
    start_worker(sweep_seconds=0.5, grace_seconds=0.5)
    done = wait_for(lambda: (i := instance(api, started["id"]))["state"] == "completed" and i, timeout=15,
                    message="the sweep to fire the timer")
    assert done["data"]["timed_out"] is True


def test_two_workers_fire_many_timers_due_together_each_exactly_once(make_app, redis_url, start_worker):
    api = Api(make_app(redis_url=redis_url))
    for _ in range(2):
        start_worker(grace_seconds=30)  # the alarms fire them, not the sweep
    assert api.deploy(DATA / "user_task_timeout.bpmn").status_code == 201  # a 2 s boundary timer
    ids = [api.post("/api/processes/UserTaskTimeout/instances", {"data": {}}).get_json()["id"] for _ in range(40)]
    done = wait_for(lambda: all((i := instance(api, n))["state"] == "completed" for n in ids) and ids, timeout=30,
                    message="every timer to fire")
    redis = Redis.from_url(redis_url)
    wait_for(lambda: redis.zcard("rq:scheduled:chatflow") == 0 and redis.llen("rq:queue:chatflow") == 0,
             timeout=10, message="every alarm to have rung")
    for instance_id in done:
        history = instance(api, instance_id)["history"]
        assert [e["task"] for e in history if e["event"] == "timer_fired"] == ["too_late"], instance_id
