"""Offers follow people who are there: presence (open console or heartbeat), inactive operators
and operators leaving a queue lose their offers at once, least_busy counts offers, and a waiting
chat's history stays short. Each test is a regression test for a day that broke routing before.
"""
from chat_helpers import (configure, deploy_lifecycle, error_code, events, history, instance, make_channel,
                          make_operator, make_queue, new_chat, ok, put_setting, wait_chat)
from conftest import Api, wait_for


def test_a_user_who_never_signed_in_is_never_offered_a_chat(chat_api):
    queue = make_queue(chat_api, "least_busy")
    ok(chat_api.post(f"/api/queues/{queue['id']}/operators",
                {"user_id": ok(chat_api.post("/api/users", {"login": "newbie"}), 201)["id"]}), 201)
    chat = new_chat(chat_api, make_channel(chat_api, queue["id"]).client())
    assert (chat["state"], chat["offered_to_id"]) == ("queued", None)
    newbie = [u for u in ok(chat_api.get("/api/users")) if u["login"] == "newbie"][0]
    assert (newbie["status"], newbie["connected"], newbie["presence"]) == ("inactive", False, "inactive")


def test_active_but_not_connected_gets_no_offer_until_connected(chat_api):
    queue = make_queue(chat_api, "least_busy")
    ann = make_operator(chat_api, "ann", queue["id"], connected=False)
    me = ann.me()
    assert (me["status"], me["connected"], me["presence"]) == ("active", False, "away")
    chat = new_chat(chat_api, make_channel(chat_api, queue["id"]).client())
    assert chat["state"] == "queued"
    assert ann.heartbeat()["presence"] == "available"       # coming back offers her the waiting chat
    assert wait_chat(chat_api, chat["id"], lambda c: c["state"] == "offered")["offered_to_id"] == ann.id


def test_a_watch_only_stream_is_no_presence_but_a_console_stream_is(chat_api):
    """Chat setup watches the admins' events with ?presence=false: an admin who also serves a
    queue is not offered chats because that page is open; the operator panel's stream counts."""
    queue = make_queue(chat_api, "least_busy")
    ann = make_operator(chat_api, "ann", queue["id"], connected=False)
    watching = ann.api.call("GET", "/api/events?presence=false", buffered=False)
    assert watching.status_code == 200 and watching.mimetype == "text/event-stream"
    assert (ann.me()["connected"], ann.me()["presence"]) == (False, "away")
    watching.close()
    working = ann.api.call("GET", "/api/events", buffered=False)
    assert working.status_code == 200
    assert (ann.me()["connected"], ann.me()["presence"]) == (True, "available")
    working.close()
    assert error_code(ann.api.get("/api/events?presence=maybe")) == "bad_query"


def test_going_inactive_withdraws_the_offer_and_routes_it_again_at_once(chat_api):
    queue = make_queue(chat_api, "least_busy")
    ann, bob = make_operator(chat_api, "ann", queue["id"]), make_operator(chat_api, "bob", queue["id"])
    channel = make_channel(chat_api, queue["id"])
    first = new_chat(chat_api, channel.client())
    assert first["offered_to_id"] == ann.id
    second = new_chat(chat_api, channel.client())
    assert second["offered_to_id"] == bob.id              # ann holds an offer: bob is less busy
    bob.set_status("inactive")
    moved = wait_chat(chat_api, second["id"], lambda c: c["offered_to_id"] == ann.id, timeout=5,
                      message="bob's offer to move to ann once he goes inactive")
    assert moved["state"] == "offered"
    (withdrawn,) = events(chat_api, second["id"], "offer_withdrawn")
    assert withdrawn["details"]["operator_id"] == bob.id and withdrawn["details"]["reason"] == "operator_inactive"
    assert bob.me()["chats_offered"] == 0 and ann.me()["chats_offered"] == 2
    # The re-offer restarted the acceptance timeout for ann: a full period from now.
    proc = instance(chat_api, moved["process_instance_id"])
    assert any(h.get("event") == "timer_restarted" for h in proc["history"])


def test_removed_from_the_queue_the_offer_moves_on_with_the_reason(chat_api):
    queue = make_queue(chat_api, "least_busy")
    ann, bob = make_operator(chat_api, "ann", queue["id"]), make_operator(chat_api, "bob", queue["id"])
    chat = new_chat(chat_api, make_channel(chat_api, queue["id"]).client())
    assert chat["offered_to_id"] == ann.id
    (entry,) = [o for o in ok(chat_api.get(f"/api/queues/{queue['id']}/operators")) if o["user_id"] == ann.id]
    assert chat_api.delete(f"/api/queues/{queue['id']}/operators/{entry['id']}").status_code == 204
    moved = wait_chat(chat_api, chat["id"], lambda c: c["offered_to_id"] == bob.id, timeout=5,
                      message="the offer to move to bob once ann leaves the queue")
    assert events(chat_api, chat["id"], "offer_withdrawn")[0]["details"]["reason"] == "removed_from_queue"
    assert ann.me()["status"] == "active"                  # she was not at fault: still active
    ok(bob.accept(moved["id"]))


def test_leaving_the_role_that_serves_the_queue_also_withdraws_the_offer(chat_api):
    queue = make_queue(chat_api, "least_busy")
    ok(chat_api.post("/api/roles", {"name": "support"}), 201)
    role = ok(chat_api.get("/api/roles"))[0]
    ok(chat_api.post(f"/api/queues/{queue['id']}/operators", {"role_id": role["id"]}), 201)
    ann, bob = make_operator(chat_api, "ann"), make_operator(chat_api, "bob")
    for op in (ann, bob):
        ok(chat_api.post(f"/api/roles/{role['id']}/members", {"user_id": op.id}), 201)
    chat = new_chat(chat_api, make_channel(chat_api, queue["id"]).client())
    assert chat["offered_to_id"] == ann.id
    ok(chat_api.patch(f"/api/users/{ann.id}", {"roles": []}))
    wait_chat(chat_api, chat["id"], lambda c: c["offered_to_id"] == bob.id, timeout=5,
              message="the offer to move to bob once ann leaves the role")
    assert events(chat_api, chat["id"], "offer_withdrawn")[0]["details"]["reason"] == "removed_from_queue"


def test_an_operator_gone_past_the_grace_loses_the_offer(make_app):
    """Heartbeats stop (API client gone): after the heartbeat runs out plus the grace, the offer moves on."""
    api = Api(make_app(PRESENCE_HEARTBEAT_SECONDS=3))
    deploy_lifecycle(api)
    configure(api, accept_timeout_minutes=5)
    put_setting(api, "OperatorPresenceGraceSeconds", 1)
    queue = make_queue(api, "least_busy")
    ann = make_operator(api, "ann", queue["id"])
    client = make_channel(api, queue["id"]).client()
    ann.heartbeat()                                       # her last one: connected for 3 s more
    chat = new_chat(api, client)
    assert chat["offered_to_id"] == ann.id
    bob = make_operator(api, "bob", queue["id"])
    # bob keeps sending heartbeats while waiting; ann has stopped.
    moved = wait_for(lambda: bob.heartbeat() and (c := ok(api.get(f"/api/chats/{chat['id']}")))["offered_to_id"]
                     == bob.id and c, timeout=12, interval=0.2, message="ann's offer to move to bob")
    assert moved["state"] == "offered"
    withdrawn = events(api, chat["id"], "offer_withdrawn")[0]["details"]
    assert (withdrawn["operator_id"], withdrawn["reason"]) == (ann.id, "operator_disconnected")
    assert ann.me()["presence"] == "away" and ann.me()["status"] == "active"


def test_least_busy_counts_offers_two_chats_go_to_two_operators(chat_api):
    queue = make_queue(chat_api, "least_busy")
    ann, bob = make_operator(chat_api, "ann", queue["id"]), make_operator(chat_api, "bob", queue["id"])
    channel = make_channel(chat_api, queue["id"])
    first, second = new_chat(chat_api, channel.client()), new_chat(chat_api, channel.client())
    assert {first["offered_to_id"], second["offered_to_id"]} == {ann.id, bob.id}
    offered = events(chat_api, second["id"], "offered")[0]["details"]
    assert [(c["operator_id"], c["chats_offered"]) for c in offered["candidates"]] == [(bob.id, 0), (ann.id, 1)]


def test_an_inactive_operator_who_accepts_is_told_they_are_inactive(chat_api):
    queue = make_queue(chat_api, "all")
    ann = make_operator(chat_api, "ann", queue["id"])
    make_operator(chat_api, "bob", queue["id"])
    chat = new_chat(chat_api, make_channel(chat_api, queue["id"]).client())
    ann.set_status("inactive")
    r = ann.accept(chat["id"])
    assert (r.status_code, error_code(r)) == (409, "operator_inactive")
    assert "inactive" in r.get_json()["error"]["message"]


def test_a_waiting_chat_records_that_it_waits_once_not_every_acceptance_period(chat_api):
    configure(chat_api, accept_timeout_minutes=0.01)             # 0.6 s: many periods pass quickly
    queue = make_queue(chat_api, "least_busy")
    chat = new_chat(chat_api, make_channel(chat_api, queue["id"]).client())
    wait_for(lambda: sum(h.get("event") == "timer_fired"
                         for h in instance(chat_api, chat["process_instance_id"])["history"]) >= 3,
             timeout=10, message="three acceptance periods to pass")
    assert [e["event"] for e in history(chat_api, chat["id"])].count("waiting_for_operator") == 1


def test_me_and_the_users_list_show_status_and_presence(chat_api):
    queue = make_queue(chat_api, "least_busy")
    ann = make_operator(chat_api, "ann", queue["id"])
    me = ann.me()
    assert (me["status"], me["connected"], me["presence"]) == ("active", True, "available")
    assert me["connected_until"]
    listed = {u["login"]: u for u in ok(chat_api.get("/api/users"))}
    assert (listed["ann"]["presence"], listed["admin"]["presence"]) == ("available", "inactive")
    assert chat_api.put("/api/settings/OperatorPresenceGraceSeconds", {"value": -1}).status_code == 422
