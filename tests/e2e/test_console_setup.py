"""The admin's Chat setup page in a real browser: queues with operators, Telegram channels, chat
actions and settings are made through the page alone, and the API's errors land next to the
field they concern (checked against the API afterwards)."""
import io
import math
import struct
import wave

from playwright.sync_api import expect

from chat_helpers import configure, make_channel, make_queue, ok
from conftest import ADMIN_TOKEN, ROOT, shot


def deploy_processes(api):
    assert api.deploy(*sorted((ROOT / "processes").glob("*.bpmn"))).status_code in (200, 201)


def field_error(form, field):
    """The error shown right after the label of the input named `field` (where CF.showError puts it)."""
    return form.locator(f'label:has([name="{field}"]) + .field-error[data-field="{field}"]')


def open_setup(app, serve, console, token=ADMIN_TOKEN, init_script=None):
    """The page, with its uncaught script errors collected in `page.script_errors`."""
    page = console(serve(app), token)
    page.on("dialog", lambda dialog: dialog.accept())  # deletes ask first
    page.script_errors = []
    page.on("pageerror", lambda e: page.script_errors.append(str(e)))
    if init_script:
        page.add_init_script(init_script)
    page.goto("/console/setup")
    return page


def healthy(page):
    """Nothing went wrong outside the expected errors: no banner, no uncaught script error."""
    expect(page.locator("#page-error")).to_be_hidden()
    assert page.script_errors == []


def test_admin_sets_up_queue_channel_and_action_through_the_page(app, api, serve, console, telegram):
    deploy_processes(api)
    anna = ok(api.post("/api/users", {"login": "anna", "name": "Anna"}), 201)
    ok(api.post("/api/roles", {"name": "Night shift"}), 201)
    page = open_setup(app, serve, console)
    expect(page.get_by_role("heading", name="Chat setup")).to_be_visible()

    # Telegram needs the public URL for its webhook: set it first, in Settings.
    site = page.get_by_role("form", name="SiteUrl")
    site.get_by_label("Site URL").fill("https://chat.example.com")
    site.get_by_role("button", name="Save").click()
    expect(site.get_by_role("status")).to_have_text("Saved")

    queue_form = page.get_by_role("form", name="Add queue")
    queue_form.get_by_label("Name").fill("Support")
    queue_form.get_by_label("Routing rule").select_option("least_busy")
    queue_form.get_by_label("Completion timeout (minutes)").fill("2.5")
    queue_form.get_by_role("button", name="Add queue").click()
    queue_row = page.get_by_test_id("queues-table").get_by_role("row").filter(has_text="Support")
    expect(queue_row).to_contain_text("least_busy")
    expect(queue_row).to_contain_text("2.5 min")
    expect(queue_form.get_by_label("Name")).to_have_value("")  # the form is ready for the next one

    # Operators: a user and a role are picked from one list; the role is removed again.
    operators = page.get_by_role("list", name="Operators of Support")
    for choice in ("Anna (anna)", "Night shift (role)"):
        page.get_by_label("New operator for Support").select_option(label=choice)
        page.get_by_role("form", name="Add operator to Support").get_by_role("button", name="Add operator").click()
        expect(operators).to_contain_text(choice.split(" (")[0])
    page.get_by_role("button", name="Remove Night shift (role) from Support").click()
    expect(operators.get_by_role("listitem")).to_have_text(["Anna×"])

    bot = page.get_by_role("form", name="Add Telegram bot")
    bot.get_by_label("Name").fill("Support bot")
    bot.get_by_label("Bot token").fill("123:good-token")
    bot.get_by_label("Queue").select_option(label="Support")
    expect(bot.get_by_label("Active")).to_be_checked()
    bot.get_by_role("button", name="Add bot").click()
    channel_row = page.get_by_test_id("channels-table").get_by_role("row").filter(has_text="Support bot")
    expect(channel_row).to_contain_text("@chatflow_test_bot")
    expect(channel_row.get_by_label("Queue of Support bot").locator("option:checked")).to_have_text("Support")
    expect(channel_row.get_by_label("Active: Support bot")).to_be_checked()
    expect(bot.get_by_label("Bot token")).to_have_value("")  # the secret is not kept on the page

    action = page.get_by_role("form", name="Add chat action")
    action.get_by_label("Name").fill("Create case")
    action.get_by_label("Process").select_option("CreateCaseFromChat")
    action.get_by_label("Queue").select_option(label="Support")
    action.get_by_role("button", name="Add action").click()
    action_row = page.get_by_test_id("actions-table").get_by_role("row").filter(has_text="Create case")
    expect(action_row).to_contain_text("CreateCaseFromChat")
    expect(action_row).to_contain_text("Support")
    shot(page, "console-setup")
    healthy(page)

    (queue,) = ok(api.get("/api/queues"))
    assert (queue["name"], queue["routing_rule"], queue["completion_timeout_minutes"]) == ("Support", "least_busy", 2.5)
    assert [o["user_id"] for o in ok(api.get(f"/api/queues/{queue['id']}/operators"))] == [anna["id"]]
    (channel,) = ok(api.get("/api/channels"))
    assert (channel["provider"], channel["name"], channel["queue_id"], channel["active"]) == \
        ("telegram", "Support bot", queue["id"], True)
    assert "token" not in channel
    hooks = [p for t, m, p in telegram.calls if m == "setWebhook" and t == "123:good-token"]
    assert [h["url"] for h in hooks] == [f"https://chat.example.com/webhooks/telegram/{channel['id']}"]
    (made,) = ok(api.get("/api/chat-actions"))
    assert (made["name"], made["process"], made["queue_id"]) == ("Create case", "CreateCaseFromChat", queue["id"])
    assert "123:good-token" not in page.content()


def test_api_errors_show_next_to_their_field(app, api, serve, console, telegram):
    deploy_processes(api)
    make_queue(api, name="Support")
    page = open_setup(app, serve, console)

    # No SiteUrl yet: the Telegram form says so and so does the SiteUrl setting, where it is fixed.
    bot = page.get_by_role("form", name="Add Telegram bot")
    bot.get_by_label("Name").fill("Bot")
    bot.get_by_label("Bot token").fill("123:good-token")
    bot.get_by_role("button", name="Add bot").click()  # the only queue is preselected
    expect(bot.locator(".form-error")).to_contain_text("SiteUrl")
    expect(field_error(page.get_by_role("form", name="SiteUrl"), "value")).to_contain_text("SiteUrl")
    site = page.get_by_role("form", name="SiteUrl")
    site.get_by_label("Site URL").fill("not a url")
    site.get_by_role("button", name="Save").click()
    expect(field_error(site, "value")).to_contain_text("http(s) URL")
    site.get_by_label("Site URL").fill("https://chat.example.com")
    site.get_by_role("button", name="Save").click()
    expect(site.get_by_role("status")).to_have_text("Saved")

    # The fake Bot API knows only 123:good-token.
    bot.get_by_label("Bot token").fill("999:bad-token")
    bot.get_by_role("button", name="Add bot").click()
    expect(field_error(bot, "token")).to_contain_text("Telegram refused it")
    expect(bot.get_by_label("Bot token")).to_have_attribute("aria-invalid", "true")
    expect(bot.locator(".form-error")).to_have_count(0)
    bot.get_by_label("Bot token").fill("")
    bot.get_by_role("button", name="Add bot").click()
    expect(field_error(bot, "token")).to_contain_text("required")

    queue_form = page.get_by_role("form", name="Add queue")
    queue_form.get_by_label("Name").fill("Support")
    queue_form.get_by_role("button", name="Add queue").click()
    expect(field_error(queue_form, "name")).to_contain_text("exists")
    queue_form.get_by_label("Name").fill("Sales")
    queue_form.get_by_label("Completion timeout (minutes)").fill("-5")
    queue_form.get_by_role("button", name="Add queue").click()
    expect(field_error(queue_form, "completion_timeout_minutes")).to_contain_text("above 0")
    expect(field_error(queue_form, "name")).to_have_count(0)

    # Editing a queue: the same checks, in the row's edit form.
    queue_row = page.get_by_test_id("queues-table").get_by_role("row").filter(has_text="Support")
    queue_row.get_by_role("button", name="Edit queue Support").click()
    edit = page.get_by_role("form", name="Editing queue Support")
    edit.get_by_label("Completion timeout (minutes)").fill("soon")
    edit.get_by_role("button", name="Save").click()
    expect(field_error(edit, "completion_timeout_minutes")).to_contain_text("must be number")
    edit.get_by_label("Completion timeout (minutes)").fill("10")
    edit.get_by_label("Routing rule").select_option("all")
    edit.get_by_role("button", name="Save").click()
    expect(edit).to_have_count(0)
    expect(queue_row).to_contain_text("10 min")
    expect(queue_row).to_contain_text("all")

    action = page.get_by_role("form", name="Add chat action")
    action.get_by_label("Name").fill("Create case")
    action.get_by_role("button", name="Add action").click()  # no process picked
    expect(field_error(action, "process")).to_contain_text("process")
    shot(page, "console-setup-errors")
    healthy(page)

    assert ok(api.get("/api/channels")) == []
    assert [(q["name"], q["routing_rule"], q["completion_timeout_minutes"]) for q in ok(api.get("/api/queues"))] \
        == [("Support", "all", 10)]
    assert ok(api.get("/api/chat-actions")) == []
    assert ("999:bad-token", "getMe") in [(t, m) for t, m, _ in telegram.calls]
    assert not [m for t, m, _ in telegram.calls if m == "setWebhook"]


def test_facebook_pages_and_a_channel_with_chats(app, api, serve, console, telegram, graph):
    deploy_processes(api)
    configure(api)
    queue = make_queue(api, name="Support")
    channel = make_channel(api, queue["id"], name="Busy bot")
    channel.client().writes("hello")
    page = open_setup(app, serve, console)

    # Facebook: the user token lists the pages; the checked ones become channels of the queue.
    fb = page.get_by_role("form", name="Add Facebook pages")
    fb.get_by_label("User access token").fill("wrong")
    fb.get_by_role("button", name="Find pages").click()
    expect(field_error(fb, "user_access_token")).to_contain_text("Facebook refused it")
    fb.get_by_label("User access token").fill("user-token")
    fb.get_by_role("button", name="Find pages").click()
    fb.get_by_label("Acme Sales").uncheck()
    expect(fb.get_by_label("Acme Support")).to_be_checked()
    fb.get_by_label("Queue").select_option(label="Support")
    fb.get_by_role("button", name="Connect pages").click()
    expect(page.get_by_test_id("channels-table").get_by_role("row").filter(has_text="Acme Support")) \
        .to_contain_text("page 111")
    expect(page.get_by_test_id("channels-table")).not_to_contain_text("Acme Sales")
    assert [(c["provider"], c.get("page_id"), c["queue_id"]) for c in ok(api.get("/api/channels"))] == \
        [("telegram", None, queue["id"]), ("facebook", "111", queue["id"])]

    # A channel with chats: deleting it is refused next to it, with deactivation offered instead.

    row = page.get_by_test_id("channels-table").get_by_role("row").filter(has_text="Busy bot")
    row.get_by_role("button", name="Delete channel Busy bot").click()
    expect(row.get_by_role("alert")).to_contain_text("Deactivate it instead")
    row.get_by_role("button", name="Deactivate").click()
    expect(row.get_by_label("Active: Busy bot")).not_to_be_checked()
    expect(row).to_contain_text("inactive")
    assert ok(api.get(f"/api/channels/{channel.id}"))["active"] is False
    healthy(page)


def tiny_wav(seconds=1.0, rate=8000) -> bytes:
    """A short 440 Hz tone as a valid WAV file."""
    out = io.BytesIO()
    with wave.open(out, "wb") as w:
        w.setnchannels(1)
        w.setsampwidth(2)
        w.setframerate(rate)
        w.writeframes(b"".join(struct.pack("<h", int(8000 * math.sin(2 * math.pi * 440 * i / rate)))
                               for i in range(int(seconds * rate))))
    return out.getvalue()


def test_settings_and_notification_sound(app, api, serve, console):
    # Count real play() calls: the test fails if the button plays nothing.
    page = open_setup(app, serve, console, init_script="""
        window.plays = 0;
        const play = HTMLMediaElement.prototype.play;
        HTMLMediaElement.prototype.play = function () { window.plays += 1; return play.apply(this, arguments); };
    """)

    limit = page.get_by_role("form", name="SimultaneousChats")
    expect(limit.get_by_label("Simultaneous chats")).to_have_value("2")
    limit.get_by_label("Simultaneous chats").fill("2.5")
    limit.get_by_role("button", name="Save").click()
    expect(field_error(limit, "value")).to_contain_text("whole number")
    limit.get_by_label("Simultaneous chats").fill("4")
    limit.get_by_role("button", name="Save").click()
    expect(limit.get_by_role("status")).to_have_text("Saved")
    assert ok(api.get("/api/settings/SimultaneousChats"))["value"] == 4

    accept = page.get_by_role("form", name="OmniChatOperatorAcceptChatTimeout")
    accept.get_by_label("Acceptance timeout (minutes)").fill("0.5")
    accept.get_by_role("button", name="Save").click()
    expect(accept.get_by_role("status")).to_have_text("Saved")
    assert ok(api.get("/api/settings/OmniChatOperatorAcceptChatTimeout"))["value"] == 0.5

    sound = page.get_by_role("form", name="Notification sound")
    expect(sound.get_by_test_id("sound-state")).to_contain_text("No sound")
    sound.get_by_role("button", name="Play").click()   # none uploaded: the chime operators hear instead
    page.wait_for_function("""() => window.plays === 1 && document.querySelector(
        '[data-testid="notification-sound-player"]').src.endsWith('/console/static/notify.wav')""")
    expect(sound.get_by_role("button", name="Remove")).to_be_hidden()
    wav = tiny_wav()
    sound.get_by_label("Sound file").set_input_files({"name": "ding.wav", "mimeType": "audio/wav", "buffer": wav})
    sound.get_by_role("button", name="Upload").click()
    expect(sound.get_by_role("status")).to_have_text("Uploaded")
    expect(sound.get_by_test_id("sound-state")).to_contain_text("A sound is uploaded")
    stored = api.get("/api/settings/OmniChatNotificationSound/file")
    assert (stored.status_code, stored.data) == (200, wav)

    sound.get_by_role("button", name="Play").click()
    page.wait_for_function("""() => {
        const a = document.querySelector('[data-testid="notification-sound-player"]');
        return window.plays === 2 && a.currentTime > 0 && a.error === null;
    }""")
    expect(sound.locator(".form-error, .field-error")).to_have_count(0)
    shot(page, "console-setup-settings")
    sound.get_by_role("button", name="Remove").click()   # asks first (accepted by the page's dialog handler)
    expect(sound.get_by_role("status")).to_have_text("Removed")
    expect(sound.get_by_test_id("sound-state")).to_contain_text("No sound uploaded")
    assert api.get("/api/settings/OmniChatNotificationSound/file").status_code == 404
    healthy(page)


def test_a_non_admin_sees_the_permission_message_and_no_tables(app, api, serve, console):
    operator = ok(api.post("/api/users", {"login": "olga"}), 201)
    page = open_setup(app, serve, console, operator["token"])
    expect(page.locator("#page-error")).to_contain_text("needs the permission CanManageChats")
    expect(page.get_by_role("heading", name="Chat setup")).to_have_count(0)
    expect(page.get_by_role("table")).to_have_count(0)
    expect(page.get_by_test_id("queues-table")).to_be_hidden()
    expect(page.get_by_role("link", name="Operator panel")).to_be_visible()
