"""A cycle timer fires once per advance, however long the work it starts takes (app.engine.clock)."""
import time
from datetime import datetime

from app.extensions import db
from app.models import ProcessInstance
from app.services import services
from chat_helpers import BPMN_HEAD, deploy, start
from conftest import wait_for

PERIOD, STEP = 0.05, 0.2  # each firing's work takes four periods

SLOW_CYCLE = BPMN_HEAD + f"""  <bpmn:process id="SlowCycle" isExecutable="true">
    <bpmn:startEvent id="start" />
    <bpmn:sequenceFlow id="f1" sourceRef="start" targetRef="answer" />
    <bpmn:userTask id="answer" name="Answer" />
    <bpmn:sequenceFlow id="f2" sourceRef="answer" targetRef="answered" />
    <bpmn:endEvent id="answered" />
    <bpmn:boundaryEvent id="remind" attachedToRef="answer" cancelActivity="false">
      <bpmn:timerEventDefinition id="remind_timer"><bpmn:timeCycle>R/PT{PERIOD}S</bpmn:timeCycle></bpmn:timerEventDefinition>
    </bpmn:boundaryEvent>
    <bpmn:sequenceFlow id="f3" sourceRef="remind" targetRef="slow" />
    <bpmn:serviceTask id="slow" name="Slow work"><bpmn:extensionElements>
      <spiffworkflow:serviceTaskOperator id="slow_work" resultVariable="r"><spiffworkflow:parameters>
        <spiffworkflow:parameter id="seconds" type="any" value="{STEP}" /></spiffworkflow:parameters>
      </spiffworkflow:serviceTaskOperator></bpmn:extensionElements></bpmn:serviceTask>
    <bpmn:sequenceFlow id="f4" sourceRef="slow" targetRef="done" />
    <bpmn:endEvent id="done" />
  </bpmn:process>
</bpmn:definitions>
"""


def test_a_cycle_timer_whose_work_outlasts_its_period_fires_once_per_advance(make_app):
    """SpiffWorkflow reads the clock at every task: a firing whose work took longer than the period
    found the timer due again within the same advance, fired it again, and so on until the time
    budget stopped the instance in `error` (a chat's lifecycle with a short acceptance timeout on a
    loaded machine: its offer was never passed on)."""
    app = make_app()
    jobs = services(app).jobs
    jobs.stop()  # only the test fires timers
    runs = []
    services(app).engine.operations.register("slow_work", "Work slower than the cycle's period", {"seconds": ""})(
        lambda seconds: runs.append(seconds) or time.sleep(seconds))
    deploy(app, ("slow_cycle.bpmn", SLOW_CYCLE.encode()))
    instance_id = start(app, "SlowCycle")

    def fire() -> dict:
        with app.app_context():
            due = db.session.get(ProcessInstance, instance_id).next_timer_at
            wait_for(lambda: datetime.now(due.tzinfo) > due, timeout=5, message="the reminder to be due")
            assert services(app).engine.fire_timers(instance_id)
            db.session.commit()
            instance = db.session.get(ProcessInstance, instance_id)
            return {"state": instance.state, "error": instance.error}

    for fired in range(1, 4):
        assert fire() == {"state": "waiting", "error": None}
        assert len(runs) == fired
