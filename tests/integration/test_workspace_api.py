"""The operator workspace's API: list rows (preview, waiting time, unread), search and filters,
server-side read markers, private notes, the client's context, canned responses, and the users
and roles routes the console's Team page uses. Over the app's test client on the embedded default."""
import io

import pytest

from chat_helpers import configure, error, make_channel, make_operator, make_queue, new_chat, ok
from conftest import ROOT, wait_for


@pytest.fixture
def app(make_app):
    """Embedded jobs on the suite's database: these are the workspace's queries, not job delivery."""
    return make_app()


def world(api, rule="all"):
    ok(api.deploy(*sorted((ROOT / "processes").glob("*.bpmn"))), 201)
    configure(api, simultaneous_chats=5)
    queue = make_queue(api, rule, name="Support")
    anna = make_operator(api, "anna", queue["id"])
    return queue, anna, make_channel(api, queue["id"], name="Support bot")


def listed(who, chat_id, query=""):
    """The row of one chat in the list of an operator (or of the admin's Api)."""
    (row,) = [c for c in ok(getattr(who, "api", who).get(f"/api/chats{query}")) if c["id"] == chat_id]
    return row


def test_list_rows_read_markers_search_and_filters(api, telegram):
    queue, anna, channel = world(api)
    other = make_queue(api, "all", name="Sales")
    ok(api.post(f"/api/queues/{other['id']}/operators", {"user_id": anna.id}), 201)
    sales = make_channel(api, other["id"], name="Sales bot")
    client = channel.client()
    chat = new_chat(api, client, "my parcel is late")
    client.writes("order 5512")
    row = listed(anna, chat["id"])
    assert row["unread"] == 2 and row["last_message"]["text"] == "order 5512"
    assert row["channel"] == {"name": "Support bot", "provider": "telegram"}
    first_in = ok(anna.api.get(f"/api/chats/{chat['id']}/messages"))[0]
    assert row["waiting_since"] == first_in["created_at"]   # since the first unanswered message

    # The marker is the server's: it moves forward only, and every list and the chat agree.
    read = ok(anna.api.put(f"/api/chats/{chat['id']}/read", {"message_id": first_in["id"]}))
    assert read["unread"] == 1
    assert ok(anna.api.put(f"/api/chats/{chat['id']}/read", {"message_id": 0}))["unread"] == 1
    assert ok(anna.api.put(f"/api/chats/{chat['id']}/read", {}))["unread"] == 0
    assert listed(anna, chat["id"])["unread"] == 0 and ok(anna.api.get(f"/api/chats/{chat['id']}"))["unread"] == 0
    assert listed(api, chat["id"])["unread"] == 2   # the admin has a marker of their own

    ok(anna.accept(chat["id"]))
    ok(anna.reply(chat["id"], "On it"), 201)
    row = listed(anna, chat["id"])
    assert row["waiting_since"] is None and row["last_message"]["direction"] == "out"
    client.writes("thanks")
    assert listed(anna, chat["id"])["unread"] == 1

    newer = new_chat(api, sales.client(), "hello sales")
    assert [c["id"] for c in ok(anna.api.get("/api/chats?sort=activity"))] == [newer["id"], chat["id"]]
    client.writes("still there?")
    assert [c["id"] for c in ok(anna.api.get("/api/chats?sort=activity"))] == [chat["id"], newer["id"]]
    assert [c["id"] for c in ok(anna.api.get("/api/chats"))] == [chat["id"], newer["id"]]  # by id
    for query, expected in ((f"?q={client.user_id}", [chat["id"]]),    # part of the contact's name
                            ("?q=PARCEL", [chat["id"]]),                 # any message's text, any case
                            ("?q=100%25", []),                           # % is a character, not a wildcard
                            (f"?queue_id={other['id']}", [newer["id"]]),
                            (f"?channel_id={channel.id}", [chat["id"]]),
                            ("?state=in_work", [chat["id"]]),
                            (f"?operator_id={anna.id}", [chat["id"]])):
        assert [c["id"] for c in ok(anna.api.get("/api/chats" + query))] == expected, query
        assert [c["id"] for c in ok(api.get("/api/chats" + query))] == expected, query
    error(anna.api.get("/api/chats?state=lost"), 400, "bad_query", "state")
    error(anna.api.put(f"/api/chats/{chat['id']}/read", {"message_id": "x"}), 422, "invalid_value", "message_id")


def test_private_notes_never_reach_the_client(api, telegram):
    queue, anna, channel = world(api)
    boris = make_operator(api, "boris", make_queue(api, "all", name="Other")["id"])
    chat = new_chat(api, channel.client())
    ok(anna.accept(chat["id"]))
    note = ok(anna.api.post(f"/api/chats/{chat['id']}/notes", {"text": "VIP: be gentle <b>"}), 201)
    assert note["author"]["name"] == "Anna" and note["text"] == "VIP: be gentle <b>"
    ok(anna.reply(chat["id"], "Hello!"), 201)
    assert [n["text"] for n in ok(api.get(f"/api/chats/{chat['id']}/notes"))] == ["VIP: be gentle <b>"]
    assert [m["text"] for m in ok(anna.api.get(f"/api/chats/{chat['id']}/messages"))] == ["hello", "Hello!"]
    wait_for(lambda: [m for m in telegram.sent() if m["text"] == "Hello!"], message="the reply delivered")
    assert not [m for m in telegram.sent() if "VIP" in m["text"]]
    error(boris.api.post(f"/api/chats/{chat['id']}/notes", {"text": "x"}), 403, "forbidden")
    error(anna.api.post(f"/api/chats/{chat['id']}/notes", {"text": "  "}), 422, field="text")


def test_context_lists_earlier_chats_and_cases(api, telegram):
    queue, anna, channel = world(api)
    action = ok(api.post("/api/chat-actions", {"name": "Create case", "queue_id": queue["id"],
                                               "process": "CreateCaseFromChat"}), 201)
    client = channel.client()
    first = new_chat(api, client, "first time")
    ok(anna.accept(first["id"]))
    case = ok(anna.api.post(f"/api/chats/{first['id']}/actions/{action['id']}"), 201)["data"]
    ok(anna.complete(first["id"]))
    second = new_chat(api, client, "back again")
    ok(anna.accept(second["id"]))
    context = ok(anna.api.get(f"/api/chats/{second['id']}/context"))
    assert context["contact"]["identities"][0]["channel_name"] == "Support bot"
    (earlier,) = context["earlier_chats"]
    assert earlier["id"] == first["id"] and earlier["operator"]["name"] == "Anna"
    assert earlier["completion_reason"] == "operator"
    assert [(c["number"], c["chat_id"]) for c in context["cases"]] == [(case["CaseNumber"], first["id"])]
    assert [m["text"] for m in ok(anna.api.get(f"/api/chats/{first['id']}/messages"))] == ["first time"]


def test_canned_responses(api):
    queue, anna, channel = world(api)
    other = make_queue(api, "all", name="Sales")
    greeting = ok(api.post("/api/canned-responses", {"shortcut": "Greeting", "text": "Hello! How can I help?"}), 201)
    assert greeting["shortcut"] == "greeting" and greeting["queue_id"] is None
    ok(api.post("/api/canned-responses", {"shortcut": "refund", "text": "Refunds take 5 days.",
                                          "queue_id": queue["id"]}), 201)
    sales = ok(api.post("/api/canned-responses", {"shortcut": "price", "text": "See our prices.",
                                                  "queue_id": other["id"]}), 201)
    # Operators: global ones and their queues'; a prefix filters as the `/` list does.
    assert [c["shortcut"] for c in ok(anna.api.get("/api/canned-responses"))] == ["greeting", "refund"]
    assert [c["shortcut"] for c in ok(anna.api.get("/api/canned-responses?prefix=re"))] == ["refund"]
    # Another queue's are not hers even when asked for: global ones only.
    assert [c["shortcut"] for c in ok(anna.api.get(f"/api/canned-responses?queue_id={other['id']}"))] == ["greeting"]
    assert len(ok(api.get("/api/canned-responses"))) == 3
    error(anna.api.get(f"/api/canned-responses/{sales['id']}"), 404, "canned_response_not_found")
    error(anna.api.post("/api/canned-responses", {"shortcut": "x", "text": "y"}), 403, "forbidden")
    error(api.post("/api/canned-responses", {"shortcut": "greeting", "text": "again"}), 409, "shortcut_taken", "shortcut")
    ok(api.post("/api/canned-responses", {"shortcut": "greeting", "text": "Hi sales", "queue_id": other["id"]}), 201)
    error(api.post("/api/canned-responses", {"shortcut": "two words", "text": "y"}), 422, field="shortcut")
    error(api.post("/api/canned-responses", {"shortcut": "x", "text": "y", "queue_id": 999}), 422, field="queue_id")
    changed = ok(api.patch(f"/api/canned-responses/{greeting['id']}", {"text": "Hi there!"}))
    assert changed["text"] == "Hi there!" and changed["shortcut"] == "greeting"
    assert api.delete(f"/api/canned-responses/{greeting['id']}").status_code == 204
    error(api.get(f"/api/canned-responses/{greeting['id']}"), 404)


def test_users_deactivate_reset_token_and_roles(api):
    user = ok(api.post("/api/users", {"login": "carla", "name": "Carla"}), 201)
    carla = api.as_user(user["token"])
    ok(carla.get("/api/me"))
    assert ok(api.patch(f"/api/users/{user['id']}", {"active": False}))["active"] is False
    error(carla.get("/api/me"), 401, "unauthorized")
    ok(api.patch(f"/api/users/{user['id']}", {"active": True}))
    ok(carla.get("/api/me"))
    fresh = ok(api.post(f"/api/users/{user['id']}/token"), 201)
    error(carla.get("/api/me"), 401, "unauthorized")   # the old token is revoked
    assert ok(api.as_user(fresh["token"]).get("/api/me"))["login"] == "carla"
    admin_id = ok(api.get("/api/me"))["id"]
    error(api.patch(f"/api/users/{admin_id}", {"active": False}), 409, "cannot_deactivate_self")

    role = ok(api.post("/api/roles", {"name": "Leads"}), 201)
    ok(api.post(f"/api/roles/{role['id']}/members", {"user_id": user["id"]}), 201)
    assert ok(api.patch(f"/api/roles/{role['id']}", {"permissions": ["CanManageChats"]}))["members"] == [user["id"]]
    assert ok(api.as_user(fresh["token"]).get("/api/me"))["is_admin"] is True
    assert api.delete(f"/api/roles/{role['id']}/members/{user['id']}").status_code == 204
    assert ok(api.as_user(fresh["token"]).get("/api/me"))["is_admin"] is False
    error(api.patch(f"/api/roles/{role['id']}", {"permissions": ["Root"]}), 422, field="permissions")
    assert api.delete(f"/api/roles/{role['id']}").status_code == 204
    assert ok(api.get("/api/roles")) == []
    (op,) = [o for o in ok(api.get("/api/operators")) if o["login"] == "carla"] or [None]
    assert op is None   # serves no queue: not an operator


def test_the_uploaded_sound_can_be_removed(api):
    ok(api.call("PUT", "/api/settings/OmniChatNotificationSound/file", content_type="multipart/form-data",
                data={"file": (io.BytesIO(b"RIFF0000WAVE"), "ding.wav", "audio/wav")}))
    assert api.get("/api/settings/OmniChatNotificationSound/file").status_code == 200
    assert api.delete("/api/settings/OmniChatNotificationSound/file").status_code == 204
    assert ok(api.get("/api/settings/OmniChatNotificationSound"))["value"] is None
    error(api.get("/api/settings/OmniChatNotificationSound/file"), 404)
    assert api.delete("/api/settings/OmniChatNotificationSound/file").status_code == 204  # nothing left: still fine
