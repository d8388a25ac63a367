"""Who may take a chat: queue membership, eligibility and least-busy choice
(docs/api.md, "The chat lifecycle").

An operator is eligible in a queue when they serve it, are `active`, and their chats in
work plus chats offered to them are below `SimultaneousChats` (an operator is never offered
more chats than they could accept). Least busy: fewest chats in work, then the longest
since they last accepted one (never = longest), then the lowest id.
"""
from sqlalchemy import bindparam, select, union

from app.chats import settings
from app.extensions import db
from app.models import RoleMember, User
from app.models.chat import Queue, QueueOperator
from app.models.states import OperatorStatus

CANDIDATES_RECORDED = 5


def operator_ids(queue_id):
    """Users serving a queue directly or through a role, as a subquery (`queue_id`: a value or a bindparam)."""
    direct = select(QueueOperator.user_id).where(QueueOperator.queue_id == queue_id,
                                                 QueueOperator.user_id.is_not(None))
    via_role = (select(RoleMember.user_id).join(QueueOperator, QueueOperator.role_id == RoleMember.role_id)
                .where(QueueOperator.queue_id == queue_id))
    return union(direct, via_role).subquery()


def serves(user_id: int, queue_id: int) -> bool:
    ops = operator_ids(queue_id)
    return db.session.execute(select(ops.c[0]).where(ops.c[0] == user_id)).first() is not None


def queues_of(user_id: int, rule: str | None = None) -> list[int]:
    """Queues a user serves (directly or through a role), optionally only those with one routing rule."""
    roles = select(RoleMember.role_id).where(RoleMember.user_id == user_id)
    query = select(QueueOperator.queue_id).where((QueueOperator.user_id == user_id)
                                                 | QueueOperator.role_id.in_(roles))
    if rule is not None:
        query = query.join(Queue, Queue.id == QueueOperator.queue_id).where(Queue.routing_rule == rule)
    return sorted(set(db.session.scalars(query)))


def _eligible(*columns):
    """Operators of :queue_id who are active with room below :limit (in work + offered).

    Built once with bind parameters: a decision only binds its values, and SQLAlchemy reuses the
    compiled statement and its cache key (building them per call cost more than the server).
    """
    ops = operator_ids(bindparam("queue_id"))
    return select(*columns).where(User.id.in_(select(ops.c[0])), User.status == OperatorStatus.ACTIVE,
                                  User.chats_in_work + User.chats_offered < bindparam("limit"))


ELIGIBLE = _eligible(User.id)
# Only what a decision reads and records; ids start at 1, so exclude=0 excludes nobody.
CANDIDATES = (_eligible(User.id, User.chats_in_work, User.chats_offered, User.last_accepted_at)
              .where(User.id != bindparam("exclude"))
              .order_by(User.chats_in_work, User.last_accepted_at.asc().nulls_first(), User.id)
              .limit(CANDIDATES_RECORDED))


def eligible_operators(queue_id: int, limit: int | None = None) -> list[int]:
    """Ids of the queue's operators who may take a chat now."""
    params = {"queue_id": queue_id, "limit": limit or settings.get("SimultaneousChats")}
    return list(db.session.scalars(ELIGIBLE, params))


def least_busy_candidates(queue_id: int, limit: int | None = None, exclude: int | None = None) -> list:
    """Eligible operators, best first (rows: id, chats_in_work, chats_offered, last_accepted_at);
    one indexed query, never a loop over chats."""
    params = {"queue_id": queue_id, "limit": limit or settings.get("SimultaneousChats"), "exclude": exclude or 0}
    return list(db.session.execute(CANDIDATES, params))


def lock_user(user_id: int) -> User:
    return db.session.execute(select(User).where(User.id == user_id).with_for_update()
                              .execution_options(populate_existing=True)).scalar_one()


def has_capacity(user: User, limit: int | None = None) -> bool:
    limit = limit or settings.get("SimultaneousChats")
    return user.status == OperatorStatus.ACTIVE and user.chats_in_work + user.chats_offered < limit
