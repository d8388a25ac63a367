"""The str enums of app/models/states.py are the very strings rows, answers and diagrams hold."""
import json

from app.models.states import ChatState, InstanceState, MessageKind, MessageStatus, OperatorStatus
from app.channels.base import KINDS


def test_members_are_their_strings():
    assert ChatState.IN_WORK == "in_work" and "queued" == ChatState.QUEUED
    assert json.dumps({"state": ChatState.OFFERED}) == '{"state": "offered"}'
    assert f"{InstanceState.WAITING}" == "waiting" and str(OperatorStatus.INACTIVE) == "inactive"
    assert {"pending": 1}[MessageStatus.PENDING] == 1  # same hash as the string


def test_the_values_of_today():
    assert [s.value for s in ChatState] == ["bot", "unrouted", "queued", "offered", "in_work", "completed"]
    assert [s.value for s in InstanceState] == ["running", "waiting", "completed", "error", "cancelled"]
    assert [s.value for s in OperatorStatus] == ["active", "inactive"]
    assert {"pending", "sending", "uncertain", "sent", "failed", "received"} <= {s.value for s in MessageStatus}
    assert KINDS == tuple(MessageKind) and "voice" in KINDS
