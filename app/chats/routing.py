"""Who may take a chat: queue membership, and the rows routing decisions are made from
(docs/api.md, "The chat lifecycle").

The decisions themselves (eligibility, the least-busy choice, presence) are the plain
functions of `app.chats.decisions`; this module loads and locks what they read. The SQL
only narrows the candidates (serves the queue, active, connected, room below the limit);
the function ranks them.
"""
from sqlalchemy import bindparam, select, union

from app.chats import decisions, settings
from app.engine import tx
from app.extensions import db
from app.models import RoleMember, User
from app.models.chat import Queue, QueueOperator
from app.models.states import OperatorStatus
from app.models.types import utcnow

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


def view(user: User, serves_queue: bool = True, now=None, connected: bool | None = None) -> decisions.OperatorView:
    """A user row as the decisions see it (`connected` overrides presence: a request is a sign of life)."""
    if connected is None:
        connected = decisions.is_connected(user.connected_until, now or utcnow())
    status = user.status if user.active else OperatorStatus.INACTIVE  # a deactivated user takes nothing
    return decisions.OperatorView(user.id, status, connected, serves_queue, user.chats_in_work,
                                  user.chats_offered, user.last_accepted_at)


# Built once with bind parameters: a decision only binds its values, and SQLAlchemy reuses the
# compiled statement (building it per call cost more than the database's own work).
_COLUMNS = (User.id, User.status, User.connected_until, User.chats_in_work, User.chats_offered,
            User.last_accepted_at)
CANDIDATES = select(*_COLUMNS).where(
    User.id.in_(select(operator_ids(bindparam("queue_id")).c[0])), User.status == OperatorStatus.ACTIVE,
    User.active.is_(True), User.connected_until > bindparam("now"),
    User.chats_in_work + User.chats_offered < bindparam("limit"))


def _views(rows, now, serving=None) -> list[decisions.OperatorView]:
    return [decisions.OperatorView(r.id, r.status, decisions.is_connected(r.connected_until, now),
                                   True if serving is None else r.id in serving, r.chats_in_work,
                                   r.chats_offered, r.last_accepted_at) for r in rows]


def candidates(queue_id: int, limit: int | None = None, now=None) -> list[decisions.OperatorView]:
    """The queue's operators who may take a chat now (unranked: `decisions.decide` ranks them)."""
    now = now or utcnow()
    params = {"queue_id": queue_id, "limit": limit or settings.get("SimultaneousChats"), "now": now}
    return _views(db.session.execute(CANDIDATES, params), now)


def operators(queue_id: int, now=None) -> list[decisions.OperatorView]:
    """Every operator of the queue, eligible or not (for the routing preview)."""
    now = now or utcnow()
    ops = operator_ids(queue_id)
    return _views(db.session.execute(select(*_COLUMNS).where(User.id.in_(select(ops.c[0]))).order_by(User.id)), now)


def decide(queue_id: int, rule: str, exclude=(), now=None) -> decisions.Decision:
    limit = settings.get("SimultaneousChats")
    return decisions.decide(rule, candidates(queue_id, limit, now), limit, exclude)


def eligible_operators(queue_id: int) -> list[int]:
    """Ids of the queue's operators who may take a chat now."""
    return decide(queue_id, decisions.ALL).eligible


def lock_user(user_id: int) -> User:
    """The user's row, locked until commit (once per transaction, like `lifecycle.lock_chat`)."""
    held = tx.locked_rows(db.session)
    user = held.get(("user", user_id))
    if user is None:
        user = held[("user", user_id)] = db.session.execute(
            select(User).where(User.id == user_id).with_for_update()
            .execution_options(populate_existing=True)).scalar_one()
    return user


def may_take(user: User, limit: int | None = None, connected: bool | None = None) -> bool:
    """May this operator be given one more chat now (`connected=True` when they are asking)?"""
    return decisions.ineligible_because(view(user, connected=connected),
                                        limit or settings.get("SimultaneousChats")) is None
