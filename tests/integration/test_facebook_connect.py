"""Connecting Facebook pages as Meta requires, over HTTP against the fake Graph API and login
dialog: the login run (dialog URL, state, code -> user token -> long-lived token -> pages, the
pick), the state's refusals (forged, replayed, expired, another browser), page subscription on
connect and activate and its removal on deactivate and delete, a refused subscription kept on the
channel, and a reconnect after the token expired."""
from datetime import timedelta
from urllib.parse import parse_qs, urlsplit

import pytest
import requests
from sqlalchemy import select, update

from app.extensions import db
from app.models.chat import Channel, FacebookLogin
from app.models.types import utcnow
from chat_helpers import count, error, ok, rows
from conftest import ADMIN_TOKEN, ROOT, Api
from fakes.facebook import APP_ID, APP_SECRET

FIELDS = ["messages", "messaging_postbacks", "message_echoes", "message_deliveries", "message_reads",
          "message_edits", "messaging_handovers", "standby"]
SITE = "https://chat.example.com"


@pytest.fixture
def api(make_app, graph):
    api = Api(make_app())
    assert api.deploy(ROOT / "processes" / "ChatLifecycle.bpmn").status_code == 201
    for code, value in (("FacebookAppId", APP_ID), ("FacebookAppSecret", APP_SECRET), ("SiteUrl", SITE)):
        ok(api.put(f"/api/settings/{code}", {"value": value}))
    return api


def queue(api, name="Support"):
    return ok(api.post("/api/queues", {"name": name, "routing_rule": "all"}), 201)


def start(api):
    """The console's button: the dialog URL, its query."""
    url = ok(api.post("/api/channels/facebook/login"))["url"]
    return url, {k: v[0] for k, v in parse_qs(urlsplit(url).query).items()}


def through_dialog(url, choice="Continue as Test User"):
    """What the admin's browser does at Facebook: open the dialog, follow one of its links."""
    page = requests.get(url, timeout=5)
    assert page.status_code == 200
    link = page.text.split(f'">{choice}</a>')[0].rsplit('href="', 1)[1].replace("&amp;", "&")
    return link


def come_back(api, link):
    """The dialog sends the browser to our callback (same browser: the test client keeps its cookies)."""
    assert link.startswith(f"{SITE}/oauth/facebook/callback?")
    return api.client.get(link[len(SITE):])


def login_id_of(response):
    assert response.status_code == 303, response.get_data(as_text=True)
    location = response.headers["Location"]
    assert location.startswith("/console/setup/facebook?login=")
    return int(location.rsplit("=", 1)[1])


def signed_in(api):
    return login_id_of(come_back(api, through_dialog(start(api)[0])))


def test_the_dialog_url_names_the_app_the_callback_the_scopes_and_a_state(api, graph):
    url, query = start(api)
    assert url.startswith(f"{graph.url}/dialog/oauth?")
    assert query["client_id"] == APP_ID
    assert query["redirect_uri"] == f"{SITE}/oauth/facebook/callback"
    assert query["scope"].split(",") == ["pages_show_list", "pages_messaging", "pages_manage_metadata"]
    assert len(query["state"]) >= 32
    # a second run has its own state; neither is stored as given
    assert start(api)[1]["state"] != query["state"]
    stored = rows(api, select(FacebookLogin))
    assert all(query["state"] not in (r.state_hash, r.browser_hash, r.token_hash) for r in stored)


def test_login_needs_the_app_id_secret_and_site_url(make_app, graph):
    api = Api(make_app())
    error(api.post("/api/channels/facebook/login"), 422, "setting_missing", field="FacebookAppId")
    ok(api.put("/api/settings/FacebookAppId", {"value": APP_ID}))
    ok(api.put("/api/settings/FacebookAppSecret", {"value": APP_SECRET}))
    resp = error(api.post("/api/channels/facebook/login"), 422, "setting_missing", field="SiteUrl")
    assert "SiteUrl" in resp["message"]
    error(api.put("/api/settings/FacebookAppId", {"value": "my app"}), 422, field="value")


def test_the_whole_flow_creates_subscribed_channels_and_keeps_no_user_token(api, graph):
    q = queue(api)
    login_id = signed_in(api)
    # code -> short-lived user token -> long-lived user token -> the pages, listed with the long-lived one
    exchanges = [c for c in graph.calls if c[1] == "/v25.0/oauth/access_token"]
    assert [("code" in b, b.get("grant_type")) for _, _, _, b in exchanges] == [(True, None),
                                                                                (False, "fb_exchange_token")]
    assert exchanges[0][3]["redirect_uri"] == f"{SITE}/oauth/facebook/callback"
    (listed,) = [t for m, p, t, _ in graph.calls if p == "/v25.0/me/accounts"]
    assert graph.token_kinds[listed] == "long"

    run = ok(api.get(f"/api/channels/facebook/logins/{login_id}"))
    assert run["state"] == "ready" and run["error"] is None
    assert [(p["id"], p["name"], p["channel_id"]) for p in run["pages"]] == [("111", "Acme Support", None),
                                                                             ("222", "Acme Sales", None)]
    made = ok(api.post(f"/api/channels/facebook/logins/{login_id}/pages",
                       {"page_ids": ["111", "222"], "queue_id": q["id"]}), 201)
    assert [(c["name"], c["page_id"], c["active"], c["status"]) for c in made] == [
        ("Acme Support", "111", True, "ok"), ("Acme Sales", "222", True, "ok")]
    assert graph.subscribed() == {"111": FIELDS, "222": FIELDS}
    assert {r.page_id: r.page_access_token for r in rows(api, select(Channel))} == {
        "111": "page-token-111", "222": "page-token-222"}
    # the run is spent: its page tokens are gone, and no user token was ever kept
    (stored,) = rows(api, select(FacebookLogin))
    assert stored.pages is None and stored.finished_at is not None
    user_tokens = set(graph.token_kinds)
    dump = repr([r.__dict__ for r in rows(api, select(FacebookLogin))] + [r.__dict__ for r in rows(api, select(Channel))])
    assert not any(t in dump for t in user_tokens)
    assert ok(api.get(f"/api/channels/facebook/logins/{login_id}"))["state"] == "done"
    error(api.post(f"/api/channels/facebook/logins/{login_id}/pages", {"page_ids": ["111"], "queue_id": q["id"]}),
          409, "login_not_ready")
    # a later run shows the pages as connected
    again = ok(api.get(f"/api/channels/facebook/logins/{signed_in(api)}"))
    assert [(p["channel_id"], p["channel_status"]) for p in again["pages"]] == [(made[0]["id"], "ok"),
                                                                               (made[1]["id"], "ok")]


def test_a_replayed_state_is_refused(api, graph):
    link = through_dialog(start(api)[0])
    login_id_of(come_back(api, link))
    calls = len(graph.calls)
    replay = come_back(api, link)
    assert replay.status_code == 400 and "already come back once" in replay.get_data(as_text=True)
    assert len(graph.calls) == calls   # Facebook is not asked again


def test_a_forged_or_missing_state_is_refused(api, graph):
    link = through_dialog(start(api)[0])
    forged = link.replace("state=", "state=x")
    resp = come_back(api, forged)
    assert resp.status_code == 400 and "not started here" in resp.get_data(as_text=True)
    assert api.client.get("/oauth/facebook/callback?code=abc").status_code == 400
    assert not [c for c in graph.calls if c[1] == "/v25.0/oauth/access_token"]
    # the genuine state still works once
    login_id_of(come_back(api, link))


def test_a_state_from_another_browser_is_refused(api, graph):
    link = through_dialog(start(api)[0])
    other_browser = Api(api.app)   # a fresh test client: no cookie
    resp = other_browser.client.get(link[len(SITE):])
    assert resp.status_code == 400 and "another browser" in resp.get_data(as_text=True)


def test_an_expired_state_is_refused(api, graph):
    link = through_dialog(start(api)[0])
    with api.app.app_context():
        db.session.execute(update(FacebookLogin).values(created_at=utcnow() - timedelta(minutes=31)))
        db.session.commit()
        db.session.remove()
    resp = come_back(api, link)
    assert resp.status_code == 400 and "older than" in resp.get_data(as_text=True)


def test_a_cancelled_dialog_shows_why(api, graph):
    login_id = login_id_of(come_back(api, through_dialog(start(api)[0], "Cancel")))
    run = ok(api.get(f"/api/channels/facebook/logins/{login_id}"))
    assert run["state"] == "failed" and "access_denied" in run["error"] and run["pages"] == []
    assert not [c for c in graph.calls if c[1] == "/v25.0/oauth/access_token"]


def test_a_run_belongs_to_the_sign_in_that_started_it(api, graph):
    boss = ok(api.post("/api/users", {"login": "boss", "name": "Boss", "permissions": ["CanManageChats"]}), 201)
    as_boss = api.as_user(boss["token"])
    login_id = signed_in(as_boss)
    assert ok(as_boss.get(f"/api/channels/facebook/logins/{login_id}"))["state"] == "ready"
    # another admin cannot open it, nor the same user signed in anew (a new token)
    error(api.get(f"/api/channels/facebook/logins/{login_id}"), 404, "login_not_found")
    renewed = ok(api.post(f"/api/users/{boss['id']}/token"), 201)["token"]
    error(api.as_user(renewed).get(f"/api/channels/facebook/logins/{login_id}"), 404, "login_not_found")
    error(api.as_user(renewed).post(f"/api/channels/facebook/logins/{login_id}/pages",
                                    {"page_ids": ["111"], "queue_id": queue(api)["id"]}), 404, "login_not_found")


def test_a_refused_subscription_keeps_the_channel_inactive_with_graphs_reason(api, graph):
    q = queue(api)
    graph.refuse_subscription["222"] = "(#200) The user must be an administrator of the page"
    login_id = signed_in(api)
    made = ok(api.post(f"/api/channels/facebook/logins/{login_id}/pages",
                       {"page_ids": ["111", "222"], "queue_id": q["id"]}), 201)
    assert [(c["page_id"], c["active"], c["status"]) for c in made] == [("111", True, "ok"),
                                                                       ("222", False, "refused")]
    assert "(#200) The user must be an administrator of the page" in made[1]["status_reason"]
    assert graph.subscribed() == {"111": FIELDS}
    # fixed at Meta, then activated: subscribed, and ok again
    del graph.refuse_subscription["222"]
    again = ok(api.patch(f"/api/channels/{made[1]['id']}", {"active": True}))
    assert (again["active"], again["status"], again["status_reason"]) == (True, "ok", None)
    assert set(graph.subscribed()) == {"111", "222"}


def test_activating_subscribes_and_deactivating_or_deleting_unsubscribes(api, graph):
    q = queue(api)
    ch = ok(api.post("/api/channels", {"provider": "facebook", "name": "Page", "page_id": "111",
                                       "page_access_token": "page-token-111", "queue_id": q["id"],
                                       "active": False}), 201)
    assert graph.subscribed() == {}
    ok(api.patch(f"/api/channels/{ch['id']}", {"active": True}))
    assert graph.subscribed() == {"111": FIELDS}
    ok(api.patch(f"/api/channels/{ch['id']}", {"active": False}))
    assert graph.subscribed() == {}
    assert [(m, p) for m, p, _, _ in graph.calls][-1] == ("DELETE", "/v25.0/111/subscribed_apps")
    ok(api.patch(f"/api/channels/{ch['id']}", {"active": True}))
    assert api.delete(f"/api/channels/{ch['id']}").status_code == 204
    assert graph.subscribed() == {} and count(api, Channel) == 0


def test_graph_down_on_activation_is_409_and_changes_nothing(api, graph):
    q = queue(api)
    ch = ok(api.post("/api/channels", {"provider": "facebook", "name": "Page", "page_id": "111",
                                       "page_access_token": "page-token-111", "queue_id": q["id"],
                                       "active": False}), 201)
    graph.down = True
    error(api.patch(f"/api/channels/{ch['id']}", {"active": True}), 409, "provider_unavailable")
    assert ok(api.get(f"/api/channels/{ch['id']}"))["active"] is False


def test_reconnecting_a_page_whose_token_expired(api, graph):
    q = queue(api)
    login_id = signed_in(api)
    (made,) = ok(api.post(f"/api/channels/facebook/logins/{login_id}/pages",
                          {"page_ids": ["111"], "queue_id": q["id"]}), 201)
    graph.expire("page-token-111")
    # switched off and on again: Graph refuses the expired token, the channel needs a reconnect
    ok(api.patch(f"/api/channels/{made['id']}", {"active": False}))
    refused = ok(api.patch(f"/api/channels/{made['id']}", {"active": True}))
    assert (refused["active"], refused["status"]) == (False, "needs_reconnect")
    # the admin runs the login again: the page shows it needs a reconnect; picking it brings a fresh token
    graph.pages["111"]["access_token"] = "page-token-111-renewed"
    run = ok(api.get(f"/api/channels/facebook/logins/{signed_in(api)}"))
    assert [(p["id"], p["channel_id"], p["channel_status"]) for p in run["pages"]][0] == \
        ("111", made["id"], "needs_reconnect")
    (back,) = ok(api.post(f"/api/channels/facebook/logins/{run['id']}/pages",
                          {"page_ids": ["111"], "queue_id": q["id"]}), 201)
    assert (back["id"], back["active"], back["status"], back["status_reason"]) == (made["id"], True, "ok", None)
    (row,) = rows(api, select(Channel))
    assert row.page_access_token == "page-token-111-renewed"
    assert graph.subscribed() == {"111": FIELDS}
