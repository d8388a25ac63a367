"""The routing preview: who would get a new chat of a queue now and why, from the same decision
functions routing uses (`app.chats.decisions`), read-only."""
from sqlalchemy import select

from app.chats import decisions, routing, settings
from app.extensions import db
from app.models import User
from app.models.chat import Queue
from app.models.types import utcnow


def routing_preview(queue: Queue) -> dict:
    limit = settings.get("SimultaneousChats")
    operators = routing.operators(queue.id, utcnow())
    decision = decisions.decide(queue.routing_rule, operators, limit)
    users = {u.id: u for u in db.session.scalars(select(User).where(User.id.in_([o.id for o in operators])))}
    return {"queue_id": queue.id, "rule": queue.routing_rule, "chosen": decision.chosen,
            "eligible": decision.eligible, "why": decision.why,
            "operators": [_operator(a, users[a.operator.id], limit) for a in decision.assessments]}


def _operator(assessment: decisions.Assessment, user: User, limit: int) -> dict:
    op = assessment.operator
    return {"id": op.id, "login": user.login, "name": user.name, "status": op.status, "connected": op.connected,
            "presence": decisions.presence(op.status, op.connected), "chats_in_work": op.chats_in_work,
            "chats_offered": op.chats_offered, "holds": op.holds, "limit": limit,
            "last_accepted_at": op.last_accepted_at, "eligible": assessment.eligible, "reason": assessment.reason}
