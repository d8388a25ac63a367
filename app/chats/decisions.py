"""Routing decisions as plain functions over plain values: who may take a chat, who is offered
it and why, whether an accept is allowed (and why not), whether an operator is present, and
when a chat's timers fall due.

No session, no Flask, no clock of their own: callers load and lock the rows, pass what they
read (and `now`), and act on the answer. The SQL that loads candidates only narrows them;
the choice is made here, once.
"""
from dataclasses import dataclass, field
from datetime import datetime, timedelta

ALL, LEAST_BUSY = "all", "least_busy"
LEAST_BUSY_RULE = ("fewest chats held (in work + offered), then longest since last accepted "
                   "(never = longest), then lowest id")


@dataclass(frozen=True)
class OperatorView:
    """An operator as routing sees them, for one queue at one moment."""
    id: int
    status: str = "active"  # active | inactive (set by the operator, or by a missed offer)
    connected: bool = True  # an open console tab or a recent presence heartbeat
    serves: bool = True  # serves the queue, directly or through a role
    chats_in_work: int = 0
    chats_offered: int = 0
    last_accepted_at: datetime | None = None

    @property
    def holds(self) -> int:
        """What counts against the limit and for least-busy: chats in work plus chats offered."""
        return self.chats_in_work + self.chats_offered


@dataclass(frozen=True)
class Assessment:
    operator: OperatorView
    eligible: bool
    reason: str  # why they were chosen, ranked, or left out


@dataclass(frozen=True)
class Decision:
    rule: str
    chosen: int | None  # least_busy: who is offered the chat; all: None (everyone eligible sees it)
    eligible: list[int]  # best first for least_busy
    assessments: list[Assessment] = field(default_factory=list)  # eligible best first, then the rest

    @property
    def why(self) -> str:
        if self.rule == ALL:
            return "every eligible operator sees the chat; the first to accept takes it"
        return LEAST_BUSY_RULE if self.chosen is not None else "no eligible operator"


# -- presence ------------------------------------------------------------------------------
def is_connected(connected_until: datetime | None, now: datetime) -> bool:
    """Connected while the last sign of life (stream keep-alive, heartbeat) has not run out."""
    return connected_until is not None and connected_until > now


def presence_lapsed(connected_until: datetime | None, now: datetime, grace_seconds: float) -> bool:
    """Gone for longer than the grace: their offers go to someone else."""
    return connected_until is None or connected_until + timedelta(seconds=grace_seconds) <= now


def presence(status: str, connected: bool) -> str:
    """One word for people: `available` (gets chats), `away` (active, not connected), `inactive`."""
    if status != "active":
        return "inactive"
    return "available" if connected else "away"


# -- eligibility and choice ----------------------------------------------------------------
def ineligible_because(op: OperatorView, limit: int, exclude=()) -> str | None:
    """Why an operator may not be given a new chat now, or None if they may."""
    if not op.serves:
        return "not an operator of this queue"
    if op.status != "active":
        return "inactive"
    if not op.connected:
        return "not connected (no open console, no recent heartbeat)"
    if op.holds >= limit:
        return f"holds {op.holds} chats ({op.chats_in_work} in work, {op.chats_offered} offered), limit {limit}"
    if op.id in exclude:
        return "just let this chat's offer time out"
    return None


def least_busy_key(op: OperatorView) -> tuple:
    """Fewest held first; then never accepted, then the oldest accept; then the lowest id."""
    accepted = op.last_accepted_at
    return op.holds, accepted is not None, accepted.timestamp() if accepted else 0.0, op.id


def decide(rule: str, operators, limit: int, exclude=()) -> Decision:
    """Who gets a new chat of a queue with this rule, with a reason for every operator given."""
    operators = list(operators)
    reasons = {op.id: ineligible_because(op, limit, exclude) for op in operators}
    ranked = sorted((op for op in operators if reasons[op.id] is None), key=least_busy_key)
    left_out = [op for op in operators if reasons[op.id] is not None]
    chosen = ranked[0].id if rule == LEAST_BUSY and ranked else None
    assessments = []
    for place, op in enumerate(ranked, 1):
        if rule == ALL:
            reason = "eligible: sees the chat and may accept it"
        elif place == 1:
            reason = f"chosen: holds {op.holds}, " + _since(op)
        else:
            reason = f"eligible, ranked {place}: holds {op.holds}, " + _since(op)
        assessments.append(Assessment(op, True, reason))
    assessments += [Assessment(op, False, reasons[op.id]) for op in left_out]
    return Decision(rule, chosen, [op.id for op in ranked], assessments)


def _since(op: OperatorView) -> str:
    if op.last_accepted_at is None:
        return "never accepted a chat"
    return f"last accepted at {op.last_accepted_at.isoformat()}"


# -- accepting -----------------------------------------------------------------------------
@dataclass(frozen=True)
class ChatView:
    id: int
    state: str  # bot | unrouted | queued | offered | in_work | completed
    rule: str
    started: bool  # its lifecycle process is running
    offered_to_id: int | None = None
    operator_id: int | None = None  # who has it in work


@dataclass(frozen=True)
class Refusal:
    code: str
    message: str


def accept_refusal(chat: ChatView, op: OperatorView, limit: int) -> Refusal | None:
    """Why `op` may not accept `chat` now (the HTTP answer's 409 code and text), or None."""
    if chat.state in ("in_work", "completed"):
        return Refusal("chat_taken", f"chat {chat.id} is already {chat.state.replace('_', ' ')}")
    if not chat.started or chat.state not in ("queued", "offered"):
        return Refusal("not_offered_to_you", f"chat {chat.id} is not waiting for an operator")
    if chat.state == "offered" and chat.offered_to_id != op.id:
        return Refusal("not_offered_to_you", f"chat {chat.id} is offered to another operator")
    if chat.state == "queued" and (chat.rule != ALL or not op.serves):
        return Refusal("not_offered_to_you", f"chat {chat.id} is not offered to you")
    if op.status != "active":
        return Refusal("operator_inactive", "you are inactive: set yourself active to accept chats")
    offered_to_them = chat.state == "offered"
    if op.chats_in_work >= limit or (not offered_to_them and op.holds >= limit):
        return Refusal("limit_reached", f"you hold {op.holds} chats ({op.chats_in_work} in work, "
                                        f"{op.chats_offered} offered), the limit is {limit}")
    return None


# -- working a chat: reply, transfer, complete -------------------------------------------
def work_refusal(chat: ChatView, user_id: int, admin: bool = False) -> Refusal | None:
    """Why `user_id` may not reply to or transfer `chat` now: only a chat in work, by them (or
    by anyone, for an admin)."""
    if chat.state != "in_work" or not (admin or chat.operator_id == user_id):
        return Refusal("chat_not_in_work", f"chat {chat.id} is not in work by you")
    return None


def complete_refusal(chat: ChatView, user_id: int, admin: bool = False) -> Refusal | None:
    """Why `user_id` may not complete `chat` now: its operator completes it in work; an admin
    completes any chat that is not completed yet."""
    if chat.state == "completed":
        return Refusal("chat_completed", f"chat {chat.id} is already completed")
    return None if admin else work_refusal(chat, user_id)


# -- timers --------------------------------------------------------------------------------
def seconds(minutes: float | None) -> float | None:
    """A timeout setting in minutes as the seconds a timer expression uses (None = never)."""
    return None if minutes is None else round(minutes * 60, 3)


def acceptance_due(offered_at: datetime, timeout_minutes: float) -> datetime:
    """An offer not accepted by then passes to the next operator."""
    return offered_at + timedelta(seconds=seconds(timeout_minutes))


def completion_due(last_outgoing_at: datetime | None, timeout_minutes: float | None) -> datetime | None:
    """A chat in work completes by itself then; None before the first reply or with no timeout."""
    if last_outgoing_at is None or timeout_minutes is None:
        return None
    return last_outgoing_at + timedelta(seconds=seconds(timeout_minutes))


def offer_lost_because(op: OperatorView, lapsed: bool) -> str | None:
    """Why an offer an operator holds must go to someone else now (the history's reason), or None."""
    if not op.serves:
        return "removed_from_queue"
    if op.status != "active":
        return "operator_inactive"
    if lapsed:
        return "operator_disconnected"
    return None


# -- escalation (the diagram decides when; these say what its operations do) ---------------
def keeps_offering(missed_offers: int, stop_after: int | None) -> bool:
    """After a missed offer: offer the chat again, unless `stop_after` offers are missed already."""
    return stop_after is None or missed_offers < stop_after


NOTIFY_GROUPS = ("supervisors", "operators")


def recipients(to, supervisors, operators) -> list[int]:
    """Whom `notify` tells: "supervisors" (users with CanManageChats), "operators" (of the chat's
    queue), or a list of user ids; raises ValueError naming what it cannot read."""
    groups = {"supervisors": supervisors, "operators": operators}
    if isinstance(to, str):
        to = [to]
    if not isinstance(to, (list, tuple)) or not to:
        raise ValueError(f"notify: `to` is {to!r}; give {' or '.join(NOTIFY_GROUPS)} or a list of user ids")
    found = set()
    for item in to:
        if isinstance(item, bool) or not isinstance(item, (int, str)) or (isinstance(item, str)
                                                                          and item not in groups):
            raise ValueError(f"notify: cannot notify {item!r}; give {' or '.join(NOTIFY_GROUPS)} or user ids")
        found.update(groups[item] if isinstance(item, str) else [item])
    return sorted(found)
