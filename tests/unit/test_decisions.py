"""Routing decisions without a database: eligibility, the least-busy choice and its tie-break,
why an accept is refused, presence, when timers fall due, and what escalation's operations do."""
from datetime import datetime, timedelta, timezone

import pytest

from app.chats.decisions import (ALL, LEAST_BUSY, ChatView, OperatorView, accept_refusal, acceptance_due,
                                 complete_refusal, completion_due, decide, ineligible_because, is_connected,
                                 keeps_offering, offer_lost_because, presence, presence_lapsed, recipients, seconds,
                                 work_refusal)

T0 = datetime(2026, 12, 2, 9, 0, tzinfo=timezone.utc)


def op(id, **kw):
    return OperatorView(id, **kw)


# -- eligibility -----------------------------------------------------------------------------
@pytest.mark.parametrize("operator, reason", [
    (op(1), None),
    (op(1, serves=False), "not an operator of this queue"),
    (op(1, status="inactive"), "inactive"),
    (op(1, connected=False), "not connected"),
    (op(1, chats_in_work=2), "holds 2 chats (2 in work, 0 offered), limit 2"),
    (op(1, chats_in_work=1, chats_offered=1), "holds 2 chats (1 in work, 1 offered), limit 2"),
    (op(1, chats_offered=1), None),
])
def test_eligibility_and_its_reason(operator, reason):
    found = ineligible_because(operator, limit=2)
    assert found == reason if reason is None else reason in found


def test_an_operator_who_just_missed_the_offer_is_not_offered_it_again():
    assert "time out" in ineligible_because(op(1), 2, exclude=(1,))
    assert ineligible_because(op(2), 2, exclude=(1,)) is None


def test_a_never_connected_new_user_is_never_eligible():
    new_user = op(1, status="inactive", connected=False)
    assert decide(LEAST_BUSY, [new_user], limit=2).chosen is None
    assert decide(ALL, [new_user], limit=2).eligible == []


# -- choice and tie-break ------------------------------------------------------------------------
def test_least_busy_counts_offers_as_well_as_chats_in_work():
    ann = op(1, chats_offered=1)          # holds an offer she has not accepted yet
    bob = op(2, chats_in_work=0)
    decision = decide(LEAST_BUSY, [ann, bob], limit=3)
    assert decision.chosen == 2 and decision.eligible == [2, 1]


def test_fewest_held_wins_whatever_the_order_given():
    ops = [op(1, chats_in_work=2), op(2, chats_in_work=1), op(3, chats_in_work=1, chats_offered=1)]
    assert decide(LEAST_BUSY, ops, limit=5).eligible == [2, 1, 3]
    assert decide(LEAST_BUSY, list(reversed(ops)), limit=5).chosen == 2


def test_tie_break_never_accepted_first_then_the_oldest_accept_then_the_lowest_id():
    recent = op(1, last_accepted_at=T0)
    older = op(2, last_accepted_at=T0 - timedelta(minutes=5))
    never_high, never_low = op(9), op(4)
    decision = decide(LEAST_BUSY, [recent, older, never_high, never_low], limit=2)
    assert decision.eligible == [4, 9, 2, 1]
    assert decision.chosen == 4


def test_every_operator_gets_a_reason_chosen_first_then_ranked_then_left_out():
    decision = decide(LEAST_BUSY, [op(1, chats_in_work=1), op(2), op(3, status="inactive")], limit=2)
    reasons = [(a.operator.id, a.eligible, a.reason) for a in decision.assessments]
    assert [r[:2] for r in reasons] == [(2, True), (1, True), (3, False)]
    assert reasons[0][2].startswith("chosen: holds 0, never accepted")
    assert reasons[1][2].startswith("eligible, ranked 2: holds 1")
    assert reasons[2][2] == "inactive"
    assert "fewest chats held" in decision.why


def test_nobody_eligible_nobody_chosen():
    decision = decide(LEAST_BUSY, [op(1, connected=False), op(2, chats_in_work=2)], limit=2)
    assert (decision.chosen, decision.eligible, decision.why) == (None, [], "no eligible operator")


def test_an_all_queue_chooses_nobody_and_shows_everyone_eligible():
    decision = decide(ALL, [op(1), op(2, status="inactive"), op(3, chats_offered=0)], limit=2)
    assert (decision.chosen, decision.eligible) == (None, [1, 3])


# -- accepting ---------------------------------------------------------------------------------
def offered_to(operator_id, **kw):
    return ChatView(10, "offered", LEAST_BUSY, True, operator_id, **kw)


QUEUED_ALL = ChatView(10, "queued", ALL, True)


@pytest.mark.parametrize("chat, operator, code", [
    (offered_to(1), op(1), None),
    (offered_to(1), op(1, chats_in_work=1, chats_offered=1), None),   # the offer itself is in `held`
    (QUEUED_ALL, op(1, chats_in_work=1), None),
    (ChatView(10, "in_work", ALL, True), op(1), "chat_taken"),
    (ChatView(10, "completed", ALL, True), op(1), "chat_taken"),
    (ChatView(10, "queued", ALL, False), op(1), "not_offered_to_you"),       # lifecycle not started
    (ChatView(10, "bot", ALL, False), op(1), "not_offered_to_you"),
    (ChatView(10, "unrouted", ALL, False), op(1), "not_offered_to_you"),
    (offered_to(2), op(1), "not_offered_to_you"),
    (ChatView(10, "queued", LEAST_BUSY, True), op(1), "not_offered_to_you"),  # waiting for an offer
    (QUEUED_ALL, op(1, serves=False), "not_offered_to_you"),
    (QUEUED_ALL, op(1, status="inactive"), "operator_inactive"),
    (offered_to(1), op(1, status="inactive"), "operator_inactive"),
    (offered_to(1), op(1, chats_in_work=2, chats_offered=1), "limit_reached"),
    (QUEUED_ALL, op(1, chats_in_work=1, chats_offered=1), "limit_reached"),
])
def test_accept_allowed_or_refused_with_its_code(chat, operator, code):
    refusal = accept_refusal(chat, operator, limit=2)
    assert (refusal.code if refusal else None) == code


def test_an_inactive_operator_is_told_so_not_that_they_are_at_the_limit():
    refusal = accept_refusal(QUEUED_ALL, op(1, status="inactive"), limit=2)
    assert refusal.code == "operator_inactive" and "active" in refusal.message
    full = accept_refusal(QUEUED_ALL, op(1, chats_in_work=2), limit=2)
    assert full.message == "you hold 2 chats (2 in work, 0 offered), the limit is 2"


# -- working a chat: reply, transfer, complete -------------------------------------------------
def in_work_by(operator_id):
    return ChatView(10, "in_work", ALL, True, operator_id=operator_id)


@pytest.mark.parametrize("chat, user_id, admin, code", [
    (in_work_by(1), 1, False, None),
    (in_work_by(1), 2, False, "chat_not_in_work"),       # a colleague's chat
    (in_work_by(1), 2, True, None),                      # an admin may transfer any chat in work
    (offered_to(1), 1, False, "chat_not_in_work"),       # not accepted yet
    (ChatView(10, "completed", ALL, True, operator_id=1), 1, True, "chat_not_in_work"),
])
def test_reply_and_transfer_need_the_chat_in_work_by_you(chat, user_id, admin, code):
    refusal = work_refusal(chat, user_id, admin)
    assert (refusal.code if refusal else None) == code


@pytest.mark.parametrize("chat, user_id, admin, code", [
    (in_work_by(1), 1, False, None),
    (in_work_by(1), 2, False, "chat_not_in_work"),
    (offered_to(1), 1, False, "chat_not_in_work"),
    (QUEUED_ALL, 2, True, None),                          # an admin ends a chat in any state but completed
    (ChatView(10, "queued", ALL, False), 2, True, None),  # also one whose lifecycle never started
    (ChatView(10, "completed", ALL, True, operator_id=1), 1, False, "chat_completed"),
    (ChatView(10, "completed", ALL, True), 2, True, "chat_completed"),
])
def test_complete_by_the_operator_in_work_or_by_an_admin(chat, user_id, admin, code):
    refusal = complete_refusal(chat, user_id, admin)
    assert (refusal.code if refusal else None) == code


# -- presence ----------------------------------------------------------------------------------
def test_connected_until_the_sign_of_life_runs_out():
    assert is_connected(T0 + timedelta(seconds=1), T0)
    assert not is_connected(T0, T0)
    assert not is_connected(None, T0)


def test_offers_lapse_only_after_the_grace():
    gone_at = T0
    assert not presence_lapsed(gone_at, T0 + timedelta(seconds=59.9), grace_seconds=60)
    assert presence_lapsed(gone_at, T0 + timedelta(seconds=60), grace_seconds=60)
    assert presence_lapsed(None, T0, grace_seconds=60)


def test_presence_in_one_word():
    assert [presence("active", True), presence("active", False), presence("inactive", True)] == \
        ["available", "away", "inactive"]


@pytest.mark.parametrize("operator, lapsed, reason", [
    (op(1), False, None),
    (op(1, chats_in_work=2), False, None),        # busy is no reason to lose an offer already made
    (op(1, connected=False), False, None),        # away within the grace keeps it
    (op(1, connected=False), True, "operator_disconnected"),
    (op(1, status="inactive"), False, "operator_inactive"),
    (op(1, serves=False), False, "removed_from_queue"),
])
def test_why_an_offer_is_withdrawn(operator, lapsed, reason):
    assert offer_lost_because(operator, lapsed) == reason


# -- due times ---------------------------------------------------------------------------------
def test_acceptance_due_after_the_timeout_in_minutes():
    assert acceptance_due(T0, 5) == T0 + timedelta(minutes=5)
    assert acceptance_due(T0, 0.04) == T0 + timedelta(seconds=2.4)


def test_completion_due_from_the_last_reply_none_before_it_or_without_a_timeout():
    assert completion_due(T0, 30) == T0 + timedelta(minutes=30)
    assert completion_due(None, 30) is None
    assert completion_due(T0, None) is None


def test_timeouts_as_timer_seconds():
    assert (seconds(5), seconds(0.04), seconds(None)) == (300, 2.4, None)


# -- escalation ------------------------------------------------------------------------------
@pytest.mark.parametrize("missed, stop_after, again", [
    (1, None, True), (50, None, True),       # the default lifecycle offers for ever
    (1, 3, True), (2, 3, True), (3, 3, False), (4, 3, False),
])
def test_a_missed_offer_is_offered_again_until_stop_after_are_missed(missed, stop_after, again):
    assert keeps_offering(missed, stop_after) is again


@pytest.mark.parametrize("to, expected", [
    ("supervisors", [1, 7]),
    ("operators", [3, 7, 9]),
    (["supervisors", "operators"], [1, 3, 7, 9]),      # once each
    ([12, "supervisors"], [1, 7, 12]),
    ([5], [5]),
])
def test_notify_recipients(to, expected):
    assert recipients(to, supervisors=[7, 1], operators=[9, 3, 7]) == expected


@pytest.mark.parametrize("to", ["admins", [], None, ["supervisors", "everyone"], [True], [1.5], {"id": 1}])
def test_notify_refuses_recipients_it_cannot_read_and_names_them(to):
    with pytest.raises(ValueError, match="notify: "):
        recipients(to, supervisors=[1], operators=[2])
