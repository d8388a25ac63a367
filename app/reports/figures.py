"""Report figures from what chats record: their history events, their rows and their messages.

Every query reads a time range through an index ((event, at) on chat_events, (direction,
created_at) on messages) and groups in the database: by queue, by channel, by operator, or by
UTC quarter hour for the timeline, whose slots are then summed into local hours or days
(`arithmetic.buckets`). Durations come back one number per chat that ended the wait in the
period, for percentiles (`arithmetic.summary`). The README's "Reports" section defines each figure.
"""
from bisect import bisect_right
from collections import Counter, defaultdict
from dataclasses import dataclass
from datetime import datetime

from sqlalchemy import case, exists, func, literal, select, union
from sqlalchemy.orm import aliased

from app.chats import settings
from app.extensions import db
from app.models import RoleMember, User
from app.models.chat import Channel, Chat, ChatEvent, Message, Queue, QueueOperator
from app.models.states import WAITING, ChatState, OperatorStatus
from app.reports.arithmetic import Period, service_level, summary
from app.reports.sql import SLOT_SECONDS, seconds_between, slot

OFFER_EVENTS = ("offered", "queued")  # least_busy offers to one; `all` shows it to every operator
# History event -> figure. Transfers are recorded as `transferred` (older spelling: `chat_transferred`);
# a chat its lifecycle moved to another queue (`move_to_queue`, as ChatLifecycleEscalation does) escalated.
COUNTED = {"created": "opened", "completed": "completed", "offered": "offers", "offer_timed_out": "offers_missed",
           "transferred": "transferred", "chat_transferred": "transferred", "escalated": "escalated",
           "chat_escalated": "escalated", "moved_to_queue": "escalated"}
DURATIONS = ("time_to_first_offer", "time_to_accept", "time_to_first_reply", "handle_time")


@dataclass(frozen=True)
class Scope:
    period: Period
    queue_id: int | None = None
    channel_id: int | None = None

    def chats(self, c=Chat) -> list:
        """Conditions on a chats row for the queue and channel filters."""
        return [cond for cond, given in ((c.queue_id == self.queue_id, self.queue_id),
                                         (c.channel_id == self.channel_id, self.channel_id)) if given is not None]

    def during(self, column) -> list:
        return [column >= self.period.start, column < self.period.end]


def _key(group: str, at):
    """The grouping column: a queue, a channel, a quarter-hour slot of `at`, or one group (0)."""
    return {"queue": Chat.queue_id, "channel": Chat.channel_id, "bucket": slot(at)}.get(group, literal(0))


class Rollup:
    """Turns grouping keys into report keys: slots into bucket indexes, others unchanged."""

    def __init__(self, scope: Scope, group: str):
        self.group = group
        self.starts = [b.start.timestamp() for b in scope.period.buckets()] if group == "bucket" else None

    def __call__(self, key):
        if self.starts is None:
            return key
        # Rows are filtered to the period, so a slot cut by its start belongs to the first bucket.
        return max(0, bisect_right(self.starts, key * SLOT_SECONDS) - 1)


def _first_events(kinds, scope: Scope):
    """(chat_id, at) of each chat's first event of these kinds, where that first one is in the period."""
    e, earlier = ChatEvent, aliased(ChatEvent)
    before = exists().where(earlier.chat_id == e.chat_id, earlier.event.in_(kinds), earlier.at < scope.period.start)
    return (select(e.chat_id.label("chat_id"), func.min(e.at).label("at"))
            .where(e.event.in_(kinds), *scope.during(e.at), ~before).group_by(e.chat_id).subquery())


def _first_replies(scope: Scope):
    m, earlier = Message, aliased(Message)
    before = exists().where(earlier.chat_id == m.chat_id, earlier.direction == "out",
                            earlier.created_at < scope.period.start)
    return (select(m.chat_id.label("chat_id"), func.min(m.created_at).label("at"))
            .where(m.direction == "out", m.chat_id.is_not(None), *scope.during(m.created_at), ~before)
            .group_by(m.chat_id).subquery())


def _durations(scope: Scope, group: str) -> dict[str, list]:
    """Per duration figure: (key, seconds) rows, one per chat whose measured interval ended in the period."""
    out, run = {}, db.session.connection().execute  # Core rows: one per chat, no ORM work
    for name, first in (("time_to_first_offer", _first_events(OFFER_EVENTS, scope)),
                        ("time_to_accept", _first_events(("accepted",), scope)),
                        ("time_to_first_reply", _first_replies(scope))):
        out[name] = run(
            select(_key(group, first.c.at), seconds_between(first.c.at, Chat.created_at)).select_from(first)
            .join(Chat, Chat.id == first.c.chat_id).where(*scope.chats())).all()
    e = ChatEvent
    out["handle_time"] = run(
        select(_key(group, e.at), seconds_between(e.at, Chat.accepted_at)).select_from(e).join(Chat, Chat.id == e.chat_id)
        .where(e.event == "completed", *scope.during(e.at), Chat.accepted_at.is_not(None), *scope.chats())).all()
    return out


def _counts(scope: Scope, group: str) -> list:
    """(key, figure, count) for the counted events; completions also by their reason."""
    e = ChatEvent
    reason = case((e.event == "completed", func.coalesce(Chat.completion_reason, "unknown")), else_=literal(""))
    key = _key(group, e.at)
    rows = db.session.execute(
        select(key, e.event, reason, func.count()).select_from(e).join(Chat, Chat.id == e.chat_id)
        .where(e.event.in_(COUNTED), *scope.during(e.at), *scope.chats()).group_by(key, e.event, reason)).all()
    # Abandoned: completed in the period after being queued or offered, and never accepted.
    offered, accepted = aliased(ChatEvent), aliased(ChatEvent)
    was_offered = exists().where(offered.chat_id == e.chat_id, offered.event.in_(OFFER_EVENTS))
    was_accepted = exists().where(accepted.chat_id == e.chat_id, accepted.event == "accepted")
    abandoned = db.session.execute(
        select(key, func.count()).select_from(e).join(Chat, Chat.id == e.chat_id)
        .where(e.event == "completed", *scope.during(e.at), was_offered, ~was_accepted, *scope.chats())
        .group_by(key)).all()
    return [(k, COUNTED[event], n) for k, event, _, n in rows] + \
        [(k, f"completed_by_reason.{why}", n) for k, _, why, n in rows if why] + \
        [(k, "abandoned", n) for k, n in abandoned]


def empty_figures(target: float) -> dict:
    return {"opened": 0, "accepted": 0, "completed": 0, "completed_by_reason": {}, "abandoned": 0,
            "transferred": 0, "escalated": 0, "offers": 0, "offers_missed": 0,
            **{name: summary([]) for name in DURATIONS}, "service_level": service_level([], 0, target)}


def _gather(scope: Scope, group: str):
    """Counts and per-chat durations by key of `group` (slots already summed into buckets)."""
    rollup = Rollup(scope, group)
    counts = defaultdict(Counter)
    for key, figure, n in _counts(scope, group):
        counts[rollup(key)][figure] += n
    durations = defaultdict(lambda: defaultdict(list))
    for name, rows in _durations(scope, group).items():
        for key, seconds in rows:
            durations[rollup(key)][name].append(round(seconds, 3))
    return counts, durations


def _figures(n: Counter, d: dict, target: float) -> dict:
    f = empty_figures(target)
    for figure, value in n.items():
        if figure.startswith("completed_by_reason."):
            f["completed_by_reason"][figure.split(".", 1)[1]] = value
        else:
            f[figure] = value
    for name in DURATIONS:
        f[name] = summary(d.get(name, []))
    f["accepted"] = len(d.get("time_to_accept", []))
    f["service_level"] = service_level(d.get("time_to_accept", []), n["abandoned"], target)
    return f


def figures(scope: Scope, group: str = "total", with_total: bool = False):
    """Figures per key of `group` (total: key 0; queue/channel: their ids; bucket: bucket index).
    Keys with nothing to report are absent: callers fill them with `empty_figures(target)`.
    `with_total`: answers (the figures of all keys together, per key) from the same reads."""
    counts, durations = _gather(scope, group)
    target = settings.get("ServiceLevelSeconds")
    per_key = {key: _figures(counts[key], durations[key], target) for key in counts.keys() | durations.keys()}
    if not with_total:
        return per_key
    together = defaultdict(list)
    for d in durations.values():
        for name, values in d.items():
            together[name].extend(values)
    return _figures(sum(counts.values(), Counter()), together, target), per_key


# -- now -------------------------------------------------------------------------------------
def waiting_now(scope: Scope, now: datetime, by_queue: bool = False) -> dict:
    """Chats waiting for an operator now (queued or offered) and the oldest wait in seconds."""
    key = Chat.queue_id if by_queue else literal(0)
    rows = db.session.execute(select(key, func.count(), func.min(Chat.created_at))
                              .where(Chat.state.in_(WAITING), *scope.chats()).group_by(key)).all()
    return {k: {"waiting": n, "oldest_wait_seconds": round((now - oldest).total_seconds(), 3)}
            for k, n, oldest in rows}


def served(queue_id: int | None = None):
    """Ids of users serving a queue (or any queue), directly or through a role, as a subquery."""
    direct = select(QueueOperator.user_id).where(QueueOperator.user_id.is_not(None))
    via_role = select(RoleMember.user_id).join(QueueOperator, QueueOperator.role_id == RoleMember.role_id)
    if queue_id is not None:
        direct, via_role = (q.where(QueueOperator.queue_id == queue_id) for q in (direct, via_role))
    return union(direct, via_role).subquery()


def operators_now(queue_id: int | None = None) -> dict:
    """Operators serving the queues in scope: active ones, and active ones with room for a chat."""
    limit = settings.get("SimultaneousChats")
    room = func.sum(case((User.chats_in_work + User.chats_offered < limit, 1), else_=0))
    active, available = db.session.execute(
        select(func.count(), func.coalesce(room, 0))
        .where(User.id.in_(select(served(queue_id).c[0])), User.status == OperatorStatus.ACTIVE)).one()
    return {"operators_active": active, "operators_available": int(available)}


def now_tiles(scope: Scope, now: datetime) -> dict:
    waiting = waiting_now(scope, now).get(0, {"waiting": 0, "oldest_wait_seconds": None})
    in_work = db.session.scalar(select(func.count()).where(Chat.state == ChatState.IN_WORK, *scope.chats()))
    return {"at": now.isoformat(), **waiting, "in_work": in_work, **operators_now(scope.queue_id)}


# -- per operator ------------------------------------------------------------------------------
def operators(scope: Scope) -> dict[int, dict]:
    """Per operator: offers made to them, missed (timed out), accepts, completions and handle time."""
    e = ChatEvent
    operator = e.details["operator_id"].as_integer()
    out = defaultdict(lambda: {"offers": 0, "offers_missed": 0, "accepted": 0, "completed": 0, "handle": []})
    names = {"offered": "offers", "offer_timed_out": "offers_missed", "accepted": "accepted"}
    for op, event, n in db.session.execute(
            select(operator, e.event, func.count()).select_from(e).join(Chat, Chat.id == e.chat_id)
            .where(e.event.in_(names), *scope.during(e.at), *scope.chats()).group_by(operator, e.event)):
        if op is not None:
            out[op][names[event]] = n
    for op, seconds in db.session.execute(
            select(Chat.operator_id, seconds_between(e.at, Chat.accepted_at)).select_from(e).join(Chat, Chat.id == e.chat_id)
            .where(e.event == "completed", *scope.during(e.at), Chat.operator_id.is_not(None),
                   Chat.accepted_at.is_not(None), *scope.chats())):
        out[op]["completed"] += 1
        out[op]["handle"].append(round(seconds, 3))
    for row in out.values():
        row["handle_time"] = summary(row.pop("handle"))
    return dict(out)


def names(model, ids) -> dict:
    label = {Queue: Queue.name, Channel: Channel.name, User: User.login}[model]
    return dict(db.session.execute(select(model.id, label).where(model.id.in_(list(ids)))).all()) if ids else {}


def users(scope: Scope, extra) -> list[User]:
    """Users serving the queues in scope, and those given (`extra`: ids that have figures)."""
    return list(db.session.scalars(select(User).where(User.id.in_(select(served(scope.queue_id).c[0]))
                                                      | User.id.in_(list(extra))).order_by(User.id)))


def all_ids(model, only: int | None = None) -> list[int]:
    query = select(model.id).order_by(model.id)
    return list(db.session.scalars(query.where(model.id == only) if only is not None else query))

