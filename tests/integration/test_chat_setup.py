"""Admin configuration over HTTP: settings (typed, defaults, secrets, the notification sound) and queues
with their operators (docs/api.md, "Admin routes"), on the embedded default app."""
import io

import pytest

from chat_helpers import deploy_lifecycle, error
from conftest import ROOT, Api

LIFECYCLE = ROOT / "processes" / "ChatLifecycle.bpmn"
MP3 = b"ID3\x04\x00\x00\x00\x00\x00\x00" + bytes(range(256)) * 8 + b"\xff\xfb\x90\x00"


@pytest.fixture
def api(make_app):
    return Api(make_app())


def user(api, login, **fields):
    resp = api.post("/api/users", {"login": login, **fields})
    assert resp.status_code == 201, resp.get_json()
    return resp.get_json()


# -- settings -----------------------------------------------------------------------------
def test_settings_list_codes_with_defaults(api):
    resp = api.get("/api/settings")
    assert resp.status_code == 200
    by_code = {s["code"]: s for s in resp.get_json()}
    assert {"OmniChatOperatorAcceptChatTimeout", "SimultaneousChats", "SiteUrl", "OmniChatNotificationSound",
            "FacebookAppSecret", "FacebookVerifyToken"} <= set(by_code)
    assert by_code["OmniChatOperatorAcceptChatTimeout"]["value"] == 5
    assert by_code["OmniChatOperatorAcceptChatTimeout"]["default"] == 5
    assert by_code["SimultaneousChats"]["value"] == 2
    assert by_code["SiteUrl"]["value"] is None
    assert api.get("/api/settings/SimultaneousChats").get_json()["value"] == 2
    error(api.get("/api/settings/NoSuchSetting"), 404)
    error(api.put("/api/settings/NoSuchSetting", {"value": 1}), 404)


def test_settings_need_an_admin(api):
    op = user(api, "op")
    error(api.as_user(op["token"]).get("/api/settings"), 403)
    error(api.as_user(op["token"]).put("/api/settings/SimultaneousChats", {"value": 3}), 403)
    error(api.get("/api/settings", token=None), 401)


@pytest.mark.parametrize("code,value", [
    ("OmniChatOperatorAcceptChatTimeout", 10),
    ("OmniChatOperatorAcceptChatTimeout", 0.05),
    ("SimultaneousChats", 1),
    ("SimultaneousChats", 100),
])
def test_settings_accept_valid_values(api, code, value):
    resp = api.put(f"/api/settings/{code}", {"value": value})
    assert resp.status_code == 200, resp.get_json()
    assert resp.get_json()["value"] == value
    assert api.get(f"/api/settings/{code}").get_json()["value"] == value


@pytest.mark.parametrize("code,value", [
    ("OmniChatOperatorAcceptChatTimeout", -1),
    ("OmniChatOperatorAcceptChatTimeout", 0),
    ("OmniChatOperatorAcceptChatTimeout", "5"),
    ("OmniChatOperatorAcceptChatTimeout", True),
    ("OmniChatOperatorAcceptChatTimeout", [5]),
    ("OmniChatOperatorAcceptChatTimeout", {"minutes": 5}),
    ("OmniChatOperatorAcceptChatTimeout", 10**9),
    ("SimultaneousChats", 0),
    ("SimultaneousChats", -2),
    ("SimultaneousChats", 101),
    ("SimultaneousChats", 1.5),
    ("SimultaneousChats", "2"),
    ("SimultaneousChats", False),
    ("SiteUrl", "chat.example.com"),
    ("SiteUrl", "ftp://chat.example.com"),
    ("SiteUrl", "https://"),
    ("SiteUrl", "https://chat example.com"),
    ("SiteUrl", "https://chat.example.com/?x=1"),
    ("SiteUrl", "javascript:alert(1)"),
    ("SiteUrl", 42),
    ("SiteUrl", "https://chat.example.com/" + "a" * 600),
    ("FacebookAppSecret", ""),
    ("FacebookVerifyToken", 7),
])
def test_settings_refuse_wrong_types_and_ranges(api, code, value):
    before = api.get(f"/api/settings/{code}").get_json()["value"]
    error(api.put(f"/api/settings/{code}", {"value": value}), 422, field="value")
    assert api.get(f"/api/settings/{code}").get_json()["value"] == before


def test_settings_malformed_body(api):
    resp = api.call("PUT", "/api/settings/SimultaneousChats", data="{not json", content_type="application/json")
    error(resp, 400)
    error(api.put("/api/settings/SimultaneousChats", [3]), 400)
    error(api.put("/api/settings/SimultaneousChats", {"value": 3, "extra": 1}), 422)


def test_setting_null_restores_default(api):
    assert api.put("/api/settings/SimultaneousChats", {"value": 7}).get_json()["value"] == 7
    assert api.put("/api/settings/OmniChatOperatorAcceptChatTimeout", {"value": 1.5}).status_code == 200
    resp = api.put("/api/settings/SimultaneousChats", {"value": None})
    assert resp.status_code == 200 and resp.get_json()["value"] == 2
    assert api.put("/api/settings/OmniChatOperatorAcceptChatTimeout", {"value": None}).get_json()["value"] == 5
    me = api.get("/api/me").get_json()
    assert me["simultaneous_chats_limit"] == 2


def test_site_url_is_normalised(api):
    resp = api.put("/api/settings/SiteUrl", {"value": "https://chat.example.com/"})
    assert resp.status_code == 200
    assert resp.get_json()["value"] == "https://chat.example.com"
    assert api.put("/api/settings/SiteUrl", {"value": "http://10.0.0.5:8080/chatflow"}).status_code == 200


def test_secret_settings_are_masked(api):
    for code in ("FacebookAppSecret", "FacebookVerifyToken"):
        resp = api.put(f"/api/settings/{code}", {"value": "very-secret-value"})
        assert resp.status_code == 200
        assert "very-secret-value" not in resp.get_data(as_text=True)
        assert resp.get_json()["value"] == "********"
        assert "very-secret-value" not in api.get(f"/api/settings/{code}").get_data(as_text=True)
    assert "very-secret-value" not in api.get("/api/settings").get_data(as_text=True)
    with api.app.app_context():  # still usable by the app
        from app.chats import settings
        assert settings.get("FacebookAppSecret") == "very-secret-value"


def _upload(api, content, content_type="audio/mpeg", filename="ding.mp3", token=...):
    return api.call("PUT", "/api/settings/OmniChatNotificationSound/file", token=token,
                    data={"file": (io.BytesIO(content), filename, content_type)}, content_type="multipart/form-data")


def test_notification_sound_upload_is_served_back(api):
    op = user(api, "op")
    error(api.as_user(op["token"]).get("/api/settings/OmniChatNotificationSound/file"), 404)
    resp = _upload(api, MP3)
    assert resp.status_code == 200, resp.get_json()
    assert resp.get_json()["value"]["url"] == "/api/settings/OmniChatNotificationSound/file"
    got = api.as_user(op["token"]).get("/api/settings/OmniChatNotificationSound/file")
    assert got.status_code == 200
    assert got.data == MP3
    assert got.mimetype == "audio/mpeg"
    error(api.get("/api/settings/OmniChatNotificationSound/file", token=None), 401)
    # a new upload replaces it
    assert _upload(api, b"OggS" + b"\x01" * 100, "audio/ogg", "ding.ogg").status_code == 200
    got = api.as_user(op["token"]).get("/api/settings/OmniChatNotificationSound/file")
    assert got.data == b"OggS" + b"\x01" * 100 and got.mimetype == "audio/ogg"


def test_notification_sound_with_a_non_ascii_name(api):
    assert _upload(api, MP3, filename="звук \"new\".mp3").status_code == 200
    got = api.get("/api/settings/OmniChatNotificationSound/file")
    assert got.status_code == 200 and got.data == MP3


def test_notification_sound_refuses_non_audio_and_bad_uploads(api):
    error(_upload(api, b"<html></html>", "text/html", "x.html"), 422, field="file")
    error(_upload(api, b"\x89PNG\r\n", "image/png", "x.png"), 422, field="file")
    error(_upload(api, b"", "audio/mpeg"), 422, field="file")
    error(_upload(api, b"\x00" * (2 * 1024 * 1024 + 1)), 422, field="file")
    error(api.call("PUT", "/api/settings/OmniChatNotificationSound/file", data={}, content_type="multipart/form-data"),
          400)
    op = user(api, "op")
    error(_upload(api, MP3, token=op["token"]), 403)
    error(api.get("/api/settings/OmniChatNotificationSound/file"), 404)
    # a file setting is not set through PUT {"value"}
    error(api.put("/api/settings/OmniChatNotificationSound", {"value": "https://x.example/ding.mp3"}), 422,
          field="value")


def test_notification_sound_null_clears_it(api):
    assert _upload(api, MP3).status_code == 200
    resp = api.put("/api/settings/OmniChatNotificationSound", {"value": None})
    assert resp.status_code == 200 and resp.get_json()["value"] is None
    error(api.get("/api/settings/OmniChatNotificationSound/file"), 404)


# -- queues -------------------------------------------------------------------------------
def test_queue_create_list_get_patch_delete(api):
    deploy_lifecycle(api)  # a queue needs its lifecycle deployed
    resp = api.post("/api/queues", {"name": "Support", "routing_rule": "all"})
    assert resp.status_code == 201, resp.get_json()
    q = resp.get_json()
    assert q["id"] and q["name"] == "Support" and q["routing_rule"] == "all"
    assert q["completion_timeout_minutes"] is None and q["lifecycle_process"] == "ChatLifecycle"
    q2 = api.post("/api/queues", {"name": "Sales", "routing_rule": "least_busy",
                                  "completion_timeout_minutes": 0.5}).get_json()
    assert q2["completion_timeout_minutes"] == 0.5
    assert [x["name"] for x in api.get("/api/queues").get_json()] == ["Support", "Sales"]
    assert [x["name"] for x in api.get("/api/queues?limit=1&offset=1").get_json()] == ["Sales"]
    assert api.get(f"/api/queues/{q['id']}").get_json() == q

    resp = api.patch(f"/api/queues/{q['id']}", {"routing_rule": "least_busy", "completion_timeout_minutes": 15})
    assert resp.status_code == 200
    assert resp.get_json()["routing_rule"] == "least_busy" and resp.get_json()["completion_timeout_minutes"] == 15
    resp = api.patch(f"/api/queues/{q['id']}", {"completion_timeout_minutes": None})
    assert resp.status_code == 200 and resp.get_json()["completion_timeout_minutes"] is None
    assert resp.get_json()["name"] == "Support"

    error(api.post("/api/queues", {"name": "Sales", "routing_rule": "all"}), 409, "name_taken")
    error(api.patch(f"/api/queues/{q['id']}", {"name": "Sales"}), 409, "name_taken")

    assert api.delete(f"/api/queues/{q2['id']}").status_code == 204
    error(api.get(f"/api/queues/{q2['id']}"), 404)
    error(api.delete(f"/api/queues/{q2['id']}"), 404)
    error(api.patch("/api/queues/9999", {"name": "x"}), 404)
    assert [x["name"] for x in api.get("/api/queues").get_json()] == ["Support"]


def test_queues_need_an_admin(api):
    op = user(api, "op")
    error(api.as_user(op["token"]).post("/api/queues", {"name": "Q", "routing_rule": "all"}), 403)
    error(api.as_user(op["token"]).get("/api/queues"), 403)
    error(api.get("/api/queues", token=None), 401)


@pytest.mark.parametrize("body,field", [
    ({"routing_rule": "all"}, "name"),
    ({"name": "", "routing_rule": "all"}, "name"),
    ({"name": "Q"}, "routing_rule"),
    ({"name": "Q", "routing_rule": "round_robin"}, "routing_rule"),
    ({"name": "Q", "routing_rule": None}, "routing_rule"),
    ({"name": "Q", "routing_rule": 1}, "routing_rule"),
    ({"name": "Q", "routing_rule": "all", "completion_timeout_minutes": 0}, "completion_timeout_minutes"),
    ({"name": "Q", "routing_rule": "all", "completion_timeout_minutes": -5}, "completion_timeout_minutes"),
    ({"name": "Q", "routing_rule": "all", "completion_timeout_minutes": "10"}, "completion_timeout_minutes"),
    ({"name": "Q", "routing_rule": "all", "completion_timeout_minutes": True}, "completion_timeout_minutes"),
    ({"name": "Q", "routing_rule": "all", "completion_timeout_minutes": 10**12}, "completion_timeout_minutes"),
    ({"name": "Q", "routing_rule": "all", "lifecycle_process": "NotDeployed"}, "lifecycle_process"),
    ({"name": "Q", "routing_rule": "all", "lifecycle_process": None}, "lifecycle_process"),
    ({"name": "Q", "routing_rule": "all", "colour": "red"}, "colour"),
])
def test_queue_validation(api, body, field):
    error(api.post("/api/queues", body), 422, field=field)
    assert api.get("/api/queues").get_json() == []


def test_queue_patch_validation(api):
    deploy_lifecycle(api)  # a queue needs its lifecycle deployed
    q = api.post("/api/queues", {"name": "Q", "routing_rule": "all", "completion_timeout_minutes": 3}).get_json()
    for body, field in [({"routing_rule": "random"}, "routing_rule"),
                        ({"completion_timeout_minutes": 0}, "completion_timeout_minutes"),
                        ({"completion_timeout_minutes": -1}, "completion_timeout_minutes"),
                        ({"lifecycle_process": "NotDeployed"}, "lifecycle_process"),
                        ({"name": None}, "name")]:
        error(api.patch(f"/api/queues/{q['id']}", body), 422, field=field)
    assert api.get(f"/api/queues/{q['id']}").get_json() == q
    error(api.call("POST", "/api/queues", data="nope", content_type="application/json"), 400)


def test_queue_lifecycle_process_must_be_deployed(api):
    error(api.post("/api/queues", {"name": "Q", "routing_rule": "all", "lifecycle_process": "ChatLifecycle"}),
          422, field="lifecycle_process")
    assert api.deploy(LIFECYCLE).status_code == 201
    resp = api.post("/api/queues", {"name": "Q", "routing_rule": "all", "lifecycle_process": "ChatLifecycle"})
    assert resp.status_code == 201
    error(api.patch(f"/api/queues/{resp.get_json()['id']}", {"lifecycle_process": "Missing"}), 422,
          field="lifecycle_process")


def test_queue_in_use_by_a_channel_cannot_be_deleted(api, telegram):
    deploy_lifecycle(api)  # a queue needs its lifecycle deployed
    assert api.put("/api/settings/SiteUrl", {"value": "https://chat.example.com"}).status_code == 200
    q = api.post("/api/queues", {"name": "Q", "routing_rule": "all"}).get_json()
    other = api.post("/api/queues", {"name": "Other", "routing_rule": "all"}).get_json()
    ch = api.post("/api/channels", {"provider": "telegram", "name": "Bot", "token": "123:good-token",
                                    "queue_id": q["id"]})
    assert ch.status_code == 201, ch.get_json()
    error(api.delete(f"/api/queues/{q['id']}"), 409, "queue_in_use")
    assert api.get(f"/api/queues/{q['id']}").status_code == 200
    # once the channel moves away the queue can go
    assert api.patch(f"/api/channels/{ch.get_json()['id']}", {"queue_id": other["id"]}).status_code == 200
    assert api.delete(f"/api/queues/{q['id']}").status_code == 204


def test_queue_operators_users_and_roles(api):
    deploy_lifecycle(api)  # a queue needs its lifecycle deployed
    q = api.post("/api/queues", {"name": "Q", "routing_rule": "all"}).get_json()
    alice, bob = user(api, "alice"), user(api, "bob")
    role = api.post("/api/roles", {"name": "Support"}).get_json()
    assert api.post(f"/api/roles/{role['id']}/members", {"user_id": bob["id"]}).status_code in (200, 201)

    e1 = api.post(f"/api/queues/{q['id']}/operators", {"user_id": alice["id"]})
    assert e1.status_code == 201, e1.get_json()
    e1 = e1.get_json()
    assert e1["user_id"] == alice["id"] and e1["role_id"] is None and e1["queue_id"] == q["id"]
    e2 = api.post(f"/api/queues/{q['id']}/operators", {"role_id": role["id"]}).get_json()
    assert e2["role_id"] == role["id"] and e2["user_id"] is None
    assert api.get(f"/api/queues/{q['id']}/operators").get_json() == [e1, e2]
    assert api.as_user(alice["token"]).get("/api/me").get_json()["queues"] == [q["id"]]
    assert api.as_user(bob["token"]).get("/api/me").get_json()["queues"] == [q["id"]]

    error(api.post(f"/api/queues/{q['id']}/operators", {"user_id": alice["id"]}), 409, "operator_exists")
    error(api.post(f"/api/queues/{q['id']}/operators", {"user_id": alice["id"], "role_id": role["id"]}), 422)
    error(api.post(f"/api/queues/{q['id']}/operators", {}), 422)
    error(api.post(f"/api/queues/{q['id']}/operators", {"user_id": None, "role_id": None}), 422)
    error(api.post(f"/api/queues/{q['id']}/operators", {"user_id": 9999}), 422, field="user_id")
    error(api.post(f"/api/queues/{q['id']}/operators", {"role_id": 9999}), 422, field="role_id")
    error(api.post(f"/api/queues/{q['id']}/operators", {"user_id": "1"}), 422, field="user_id")
    error(api.post("/api/queues/9999/operators", {"user_id": alice["id"]}), 404)
    error(api.get("/api/queues/9999/operators"), 404)

    # a user may serve several queues
    q2 = api.post("/api/queues", {"name": "Q2", "routing_rule": "least_busy"}).get_json()
    assert api.post(f"/api/queues/{q2['id']}/operators", {"user_id": alice["id"]}).status_code == 201
    assert sorted(api.as_user(alice["token"]).get("/api/me").get_json()["queues"]) == sorted([q["id"], q2["id"]])

    error(api.delete(f"/api/queues/{q2['id']}/operators/{e1['id']}"), 404)
    assert api.delete(f"/api/queues/{q['id']}/operators/{e1['id']}").status_code == 204
    assert api.get(f"/api/queues/{q['id']}/operators").get_json() == [e2]
    assert api.as_user(alice["token"]).get("/api/me").get_json()["queues"] == [q2["id"]]
    error(api.delete(f"/api/queues/{q['id']}/operators/{e1['id']}"), 404)
    error(api.as_user(alice["token"]).post(f"/api/queues/{q['id']}/operators", {"user_id": alice["id"]}), 403)


def test_queue_with_operators_can_be_deleted(api):
    deploy_lifecycle(api)  # a queue needs its lifecycle deployed
    q = api.post("/api/queues", {"name": "Q", "routing_rule": "all"}).get_json()
    alice = user(api, "alice")
    assert api.post(f"/api/queues/{q['id']}/operators", {"user_id": alice["id"]}).status_code == 201
    assert api.delete(f"/api/queues/{q['id']}").status_code == 204
    assert api.as_user(alice["token"]).get("/api/me").get_json()["queues"] == []


def test_queue_with_chat_actions_can_be_deleted(api):
    deploy_lifecycle(api)  # a queue needs its lifecycle deployed
    """Chat actions belong to their queue: deleting the queue deletes them, never a 500."""
    assert api.deploy(ROOT / "processes" / "CreateCaseFromChat.bpmn").status_code == 201
    q = api.post("/api/queues", {"name": "Q", "routing_rule": "all"}).get_json()
    action = api.post("/api/chat-actions", {"name": "Create case", "queue_id": q["id"],
                                            "process": "CreateCaseFromChat"})
    assert action.status_code == 201, action.get_json()
    assert api.delete(f"/api/queues/{q['id']}").status_code == 204
    assert api.get("/api/chat-actions").get_json() == []
