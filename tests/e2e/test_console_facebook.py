"""Connecting Facebook pages through the console in a real browser, against the fake Graph API and
login dialog: "Connect Facebook pages" goes to Facebook's dialog, its callback comes back to the
picker, the picked pages become subscribed channels; a forged or replayed state is refused; a page
token that expires shows on the channel row at once (live events) with its Reconnect button, which
runs the login again and brings a fresh token."""
import json

from playwright.sync_api import expect

from chat_helpers import make_operator, make_queue, ok
from conftest import ADMIN_TOKEN, ROOT, Api, shot, wait_for
from fakes.facebook import APP_ID, APP_SECRET, batch, message_event, sign

FIELDS = ["messages", "messaging_postbacks", "message_echoes", "message_deliveries", "message_reads",
          "message_edits", "messaging_handovers", "standby"]
PSID = "1254459154682919"


def prepared(app, serve):
    """The processes, a queue and the settings Facebook's login needs, SiteUrl being this server."""
    api = Api(app)
    assert api.deploy(*sorted((ROOT / "processes").glob("*.bpmn"))).status_code in (200, 201)
    base = serve(app)
    for code, value in (("FacebookAppId", APP_ID), ("FacebookAppSecret", APP_SECRET), ("SiteUrl", base)):
        ok(api.put(f"/api/settings/{code}", {"value": value}))
    return api, base, make_queue(api, name="Support")


def open_setup(console, base):
    page = console(base, ADMIN_TOKEN)
    page.script_errors = []
    page.on("pageerror", lambda e: page.script_errors.append(str(e)))
    page.callbacks = []
    page.on("request", lambda r: "/oauth/facebook/callback" in r.url and page.callbacks.append(r.url))
    page.goto("/console/setup")
    expect(page.get_by_role("heading", name="Chat setup")).to_be_visible()
    return page


def sign_in_at_facebook(page, start_button):
    """The admin presses a button that starts the login and consents at (fake) Facebook."""
    start_button.click()
    expect(page).to_have_title("Log in with Facebook")
    expect(page.locator("#scope")).to_have_text("pages_show_list, pages_messaging, pages_manage_metadata")
    page.get_by_role("link", name="Continue as Test User").click()
    expect(page.get_by_role("heading", name="Connect Facebook pages")).to_be_visible()


def channel_row(page, name):
    return page.get_by_test_id("channels-table").get_by_role("row").filter(has_text=name)


def test_admin_connects_pages_through_facebook_login(app, serve, console, graph):
    api, base, queue = prepared(app, serve)
    page = open_setup(console, base)

    sign_in_at_facebook(page, page.get_by_role("button", name="Connect Facebook pages"))
    picker = page.get_by_role("form", name="Pick Facebook pages")
    expect(picker.get_by_label("Acme Support")).to_be_checked()
    expect(picker).to_contain_text("new, page 111")
    picker.get_by_label("Acme Sales").uncheck()
    picker.get_by_label("Queue").select_option(label="Support")
    shot(page, "console-facebook-picker")
    picker.get_by_role("button", name="Connect pages").click()

    expect(page).to_have_url(f"{base}/console/setup#channels")
    row = channel_row(page, "Acme Support")
    expect(row).to_contain_text("page 111")
    expect(row.get_by_label("Active: Acme Support")).to_be_checked()
    expect(page.get_by_test_id("channels-table")).not_to_contain_text("Acme Sales")
    assert graph.subscribed() == {"111": FIELDS}
    (channel,) = ok(api.get("/api/channels"))
    assert (channel["page_id"], channel["queue_id"], channel["status"]) == ("111", queue["id"], "ok")
    # code -> user token -> long-lived user token -> /me/accounts with the long-lived one
    (listed,) = [t for m, p, t, _ in graph.calls if p == "/v25.0/me/accounts"]
    assert graph.token_kinds[listed] == "long"

    # The callback Facebook sent the browser to cannot be used again, nor can a made-up one.
    (callback,) = page.callbacks
    page.goto(callback)
    expect(page.get_by_role("heading", name="Facebook sign-in refused")).to_be_visible()
    expect(page.locator("body")).to_contain_text("already come back once")
    page.goto("/oauth/facebook/callback?code=stolen&state=made-up")
    expect(page.locator("body")).to_contain_text("not started here")
    assert len(ok(api.get("/api/channels"))) == 1

    # Deactivating the channel unsubscribes the page.
    page.goto("/console/setup")
    channel_row(page, "Acme Support").get_by_label("Active: Acme Support").uncheck()
    expect(channel_row(page, "Acme Support")).to_contain_text("inactive")
    wait_for(lambda: graph.subscribed() == {}, message="the page to be unsubscribed")
    assert page.script_errors == []


def test_an_expired_page_token_shows_on_the_row_and_reconnect_fixes_it(running_app, serve, console, graph):
    api, base, queue = prepared(running_app, serve)
    ok(api.post("/api/channels/facebook/pages", {"user_access_token": "user-token", "page_ids": ["111"],
                                                 "queue_id": queue["id"]}), 201)
    operator = make_operator(api, "anna", queue["id"])
    page = open_setup(console, base)
    row = channel_row(page, "Acme Support")
    expect(row).to_contain_text("page 111")
    expect(row.get_by_test_id("channel-status")).to_have_count(0)

    # A client writes; the operator answers after Facebook stopped accepting the page token.
    raw = json.dumps(batch(("111", [message_event(PSID, "111", "mid.e2e.1", "hello")], None))).encode()
    ok(api.client.post("/webhooks/facebook", data=raw, content_type="application/json",
                       headers={"X-Hub-Signature-256": sign(raw, APP_SECRET)}))
    chat_id = wait_for(lambda: next(iter(operator.chat_ids()), None), timeout=20, message="the chat offered")
    ok(operator.accept(chat_id))
    graph.expire("page-token-111")
    reply = ok(operator.reply(chat_id, "How can I help?"), 201)

    # The admin's open page shows it without a reload; the reply is failed with the reason.
    expect(row.get_by_test_id("channel-status")).to_contain_text("needs reconnect", timeout=20_000)
    expect(row.get_by_test_id("channel-status")).to_contain_text("Session has expired")
    shot(page, "console-facebook-needs-reconnect")
    failed = next(m for m in ok(operator.api.get(f"/api/chats/{chat_id}/messages")) if m["id"] == reply["id"])
    assert failed["status"] == "failed" and "reconnect" in failed["error"]

    # Reconnect runs the login again; the page is picked already; the fresh token is subscribed.
    graph.pages["111"]["access_token"] = "page-token-111-renewed"
    sign_in_at_facebook(page, row.get_by_role("button", name="Reconnect Acme Support"))
    picker = page.get_by_role("form", name="Pick Facebook pages")
    expect(picker).to_contain_text("needs reconnect")
    expect(picker.get_by_label("Acme Support")).to_be_checked()
    picker.get_by_label("Acme Sales").uncheck()
    picker.get_by_role("button", name="Connect pages").click()
    expect(page).to_have_url(f"{base}/console/setup#channels")
    expect(channel_row(page, "Acme Support")).to_contain_text("page 111")
    expect(channel_row(page, "Acme Support").get_by_test_id("channel-status")).to_have_count(0)
    assert graph.subscribed() == {"111": FIELDS}
    (channel,) = ok(api.get("/api/channels"))
    assert (channel["status"], channel["active"]) == ("ok", True)
    # and replies go out again, with the fresh token
    ok(operator.reply(chat_id, "Back again"), 201)
    wait_for(lambda: any(t == "page-token-111-renewed" for t, _ in graph.sent()), timeout=20,
             message="the reply sent with the fresh token")
    assert page.script_errors == []
