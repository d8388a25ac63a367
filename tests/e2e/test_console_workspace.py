"""The operator workspace and the admin pages in a real browser, at 1,280 px and 390 px wide.

One operator works a busy day in one tab: 31 chats waiting (one client with a 64-character name
without spaces, one who wrote before and has a case), a 4,000-character message, Enter to send,
a canned response inserted with `/`, a private note that never reaches the fake Telegram, the
client's earlier chat and case in the side panel, a reload that keeps the open chat, the draft and
the unread counts. Every control is checked by its box against the viewport, at both widths.
Then an admin walks every page at both widths (screenshots for the README's folder), completes a
chat from the supervisor view (the operator's panel hears it live) and manages a user.
"""
import pytest
from playwright.sync_api import expect

from chat_helpers import configure, make_channel, make_operator, make_queue, new_chat, ok, telegram_channel
from conftest import ADMIN_TOKEN, ROOT, shot, wait_for
from fakes.telegram import update

WIDE, PHONE = {"width": 1280, "height": 900}, {"width": 390, "height": 844}
LONG_NAME = "W" * 64   # Telegram allows 64 characters, spaces optional
LONG_TEXT = ("Lorem-ipsum-dolor-sit-amet," * 200)[:4000]  # one unbroken word of 4,000 characters


@pytest.fixture
def app(running_app):
    return running_app


def writes(api, channel, user_id, text, first_name=None, _ids=iter(range(500_000, 600_000))):
    """A Telegram client writes (first_name: the contact's name; no last name)."""
    body = update(next(_ids), user_id, text, first_name=first_name or f"Client{user_id}", last_name="")
    ok(api.client.post(f"/webhooks/telegram/{channel.id}", json=body,
                       headers={"X-Telegram-Bot-Api-Secret-Token": channel.secret}))


def off_screen(page, selectors) -> list[str]:
    """The visible elements (of each selector) whose box is not inside the viewport's width, and
    whether the page itself scrolls sideways."""
    return page.evaluate("""(selectors) => {
        const bad = [], width = document.documentElement.clientWidth;
        if (document.documentElement.scrollWidth > width) bad.push(`page ${document.documentElement.scrollWidth} > ${width}`);
        for (const s of selectors) for (const e of document.querySelectorAll(s)) {
            const r = e.getBoundingClientRect();
            if (!r.width || getComputedStyle(e).visibility === "hidden") continue;
            if (r.left < -0.5 || r.right > width + 0.5) bad.push(`${s}: ${Math.round(r.left)}..${Math.round(r.right)} of ${width}`);
        }
        return bad;
    }""", selectors)


def in_view(page, selector) -> bool:
    return page.eval_on_selector(selector, """e => { const r = e.getBoundingClientRect();
        return r.top >= 0 && r.top < innerHeight && r.bottom > 0 && r.height > 0; }""")


CONTROLS = ["#chat-title", "textarea[name=text]", "#send", "#complete", ".op-tabs [role=tab]", "#chat-list li.op-item",
            "#offered li.op-item button", ".msg", "#context", "#status-toggle"]


def test_an_operators_day_at_two_widths(app, api, serve, console, telegram):
    ok(api.deploy(*sorted((ROOT / "processes").glob("*.bpmn"))), 201)
    configure(api, simultaneous_chats=5)
    queue = make_queue(api, "all", name="Support")
    anna = make_operator(api, "anna", queue["id"])
    channel = make_channel(api, queue["id"], name="Support bot")
    action = ok(api.post("/api/chat-actions", {"name": "Create case", "queue_id": queue["id"],
                                               "process": "CreateCaseFromChat"}), 201)
    ok(api.post("/api/canned-responses", {"shortcut": "greeting", "text": "Hello! How can I help you today?"}), 201)

    # A returning client: an earlier chat, worked by Anna, with a case.
    returning = channel.client()
    earlier = new_chat(api, returning, "my parcel is late")
    ok(anna.accept(earlier["id"]))
    case = ok(anna.api.post(f"/api/chats/{earlier['id']}/actions/{action['id']}"), 201)["data"]
    ok(anna.complete(earlier["id"]))
    writes(api, channel, returning.user_id, "it is late again", first_name=f"Client{returning.user_id}")
    # 30 more clients write; the one with the long name is among the first.
    writes(api, channel, 880_000, "hello from a long name", first_name=LONG_NAME)
    for n in range(29):
        writes(api, channel, 880_001 + n, f"question number {n}")
    wait_for(lambda: len([c for c in ok(api.get("/api/chats?state=queued&limit=100")) if c["process_instance_id"]]) == 31,
             timeout=30, message="31 chats queued")

    page = console(serve(app), anna.token)
    page.on("dialog", lambda dialog: dialog.accept())
    errors = []
    page.on("pageerror", lambda e: errors.append(e))
    page.goto("/console/operator")
    expect(page.locator("#live")).to_have_text("● Live")
    page.locator("#tab-waiting").click()
    rows = page.locator("#chat-list li.op-item")
    expect(rows).to_have_count(31)

    # The 30th chat of the list opens in view, with the list still scrolled where it was.
    thirtieth = rows.nth(29)
    thirtieth.scroll_into_view_if_needed()
    thirtieth.locator("a").first.click()
    expect(page.locator("#chat-view .msg.in")).to_have_count(1)
    assert in_view(page, "#chat-title") and in_view(page, "#messages"), "the open chat is in view"
    assert "chat=" in page.url

    # The long name: accepted, replied to, its list row and every control on screen.
    long_row = rows.filter(has_text=LONG_NAME)
    long_row.get_by_role("button", name="Accept").click()
    expect(page.locator("#chat-title")).to_contain_text(LONG_NAME)
    expect(page.locator("#complete")).to_be_visible()
    long_chat = int(page.url.split("chat=")[1])
    writes(api, channel, 880_000, LONG_TEXT, first_name=LONG_NAME)
    expect(page.locator("#messages .msg.in")).to_have_count(2)
    page.locator("#tab-mine").click()
    assert off_screen(page, CONTROLS) == []

    # Enter sends; Shift+Enter is a new line.
    box = page.locator("#reply-form textarea")
    expect(page.locator("#reply-hint")).to_contain_text("Enter sends")
    box.fill("Hello,")
    box.press("Shift+Enter")
    box.type("one moment please")
    box.press("Enter")
    wait_for(lambda: [m for m in telegram.sent() if m["text"] == "Hello,\none moment please"], message="Enter sent it")
    expect(box).to_have_value("")

    # "/" opens the canned responses; Enter inserts one, a second Enter sends it.
    box.type("/gre")
    expect(page.get_by_role("listbox", name="Canned responses")).to_contain_text("/greeting")
    box.press("Enter")
    expect(box).to_have_value("Hello! How can I help you today?")
    box.press("Enter")
    wait_for(lambda: [m for m in telegram.sent() if m["text"] == "Hello! How can I help you today?"], message="canned")

    # A private note: shown apart in the conversation, never sent to the client.
    page.get_by_label("Private note", exact=True).check()
    page.get_by_label("Private note (only staff see it)").fill("VIP: answer within the hour")
    page.get_by_role("button", name="Add note").click()
    expect(page.locator("#messages .msg.note")).to_contain_text("VIP: answer within the hour")
    page.get_by_label("Message to the client").check()

    # Too long: said at once, Send refused, nothing cut.
    box.fill("x" * 4097)
    expect(page.locator("#reply-count")).to_contain_text("1 character over")
    expect(page.locator("#send")).to_be_disabled()
    assert len(box.input_value()) == 4097
    box.fill("")

    # The server cannot be reached: a sentence a person can act on, the text kept.
    page.route("**/api/chats/*/messages", lambda route: route.abort() if route.request.method == "POST" else route.continue_())
    box.fill("are you still there?")
    box.press("Enter")
    expect(page.locator("#reply-form .form-error")).to_contain_text("Cannot reach the Chatflow server")
    expect(box).to_have_value("are you still there?")
    page.unroute("**/api/chats/*/messages")
    shot(page, "workspace-operator-1280")

    # The returning client: their earlier chat and its case in the side panel.
    page.locator("#tab-waiting").click()
    rows.filter(has_text=f"Client{returning.user_id}").get_by_role("button", name="Accept").click()
    context = page.locator("#context")
    expect(context.locator(".op-earlier li")).to_contain_text(f"#{earlier['id']}")
    expect(context.locator(".op-earlier li")).to_contain_text("Anna")
    expect(context.locator(".op-cases li")).to_contain_text(case["CaseNumber"])

    # A draft in one chat, client messages in another; a reload keeps the chat, the draft and the counts.
    box.fill("a draft I have not sent")
    writes(api, channel, 880_000, "are you there?", first_name=LONG_NAME)
    writes(api, channel, 880_000, "hello??", first_name=LONG_NAME)
    unread = page.locator(f'#chat-list li[data-chat-id="{long_chat}"] .op-unread')
    page.locator("#tab-mine").click()
    expect(unread).to_have_text("2 new")
    expect(page).to_have_title("(2) Operator panel · Chatflow")
    url = page.url
    page.reload()
    expect(page.locator("#live")).to_have_text("● Live")
    assert page.url == url
    expect(page.locator("#chat-title")).to_contain_text(f"Client{returning.user_id}")
    expect(box).to_have_value("a draft I have not sent")
    expect(unread).to_have_text("2 new")
    expect(page).to_have_title("(2) Operator panel · Chatflow")

    # Shortcuts: ? lists them; Alt+Down opens the next chat of the list.
    page.locator("body").press("?")
    expect(page.get_by_role("dialog", name="Keyboard shortcuts")).to_be_visible()
    page.keyboard.press("Escape")
    expect(page.get_by_role("dialog", name="Keyboard shortcuts")).to_be_hidden()

    # Back in the long-named chat, which marks it read; then the phone width.
    page.locator(f'#chat-list li[data-chat-id="{long_chat}"] a').click()
    expect(page.locator("#chat-title")).to_contain_text(LONG_NAME)
    expect(unread).to_have_count(0)
    page.set_viewport_size(PHONE)
    assert off_screen(page, CONTROLS) == []
    assert in_view(page, "#chat-title")
    shot(page, "workspace-operator-chat-390")
    page.get_by_role("button", name="Back to the list").click()
    expect(page.locator("#chat-list")).to_be_visible()
    assert off_screen(page, CONTROLS) == []
    shot(page, "workspace-operator-list-390")
    page.go_back()   # the back button reopens the chat
    expect(page.locator("#chat-title")).to_contain_text(LONG_NAME)
    # the page moves the read marker 150 ms after it shows the chat (debounced)
    wait_for(lambda: ok(anna.api.get(f"/api/chats/{long_chat}"))["unread"] == 0, message="the chat marked read")
    assert not [m for m in telegram.sent() if "VIP" in m["text"]], "a private note reached the client"
    assert errors == []


# Each page, and what shows once it has loaded its data.
PAGES = {"/console/operator": "#live[data-state=live]", "/console/reports": "#nav",
         "/console/supervisor": "#sv-chats tbody tr", "/console/setup": "#setup", "/console/team": "#team",
         "/console/processes": "#processes tbody tr"}


def test_admin_pages_at_two_widths_supervisor_and_team(app, api, serve, console, telegram):
    ok(api.deploy(*sorted((ROOT / "processes").glob("*.bpmn"))), 201)
    configure(api)
    queue = make_queue(api, "all", name="Support")
    anna = make_operator(api, "anna", queue["id"])
    channel = make_channel(api, queue["id"], name="Support bot")
    chat = new_chat(api, channel.client(), "please help")
    ok(anna.accept(chat["id"]))
    moving = new_chat(api, channel.client(), "a question for Boris")
    ok(anna.accept(moving["id"]))
    boris = make_operator(api, "boris", queue["id"])
    ok(api.post("/api/canned-responses", {"shortcut": "bye", "text": "Goodbye!", "queue_id": queue["id"]}), 201)
    base = serve(app)

    admin, guest = console(base, ADMIN_TOKEN), console(base, None)
    admin.on("dialog", lambda dialog: dialog.accept())
    errors = []
    admin.on("pageerror", lambda e: errors.append(e))
    boxes = ["main .card", "button", "table", "input", "select"]
    # Screenshots at the two widths people use most; the narrowest and widest common screens checked too.
    for size, label in ((WIDE, "1280"), (PHONE, "390"), ({"width": 360, "height": 740}, None),
                        ({"width": 1920, "height": 1080}, None)):
        guest.set_viewport_size(size)
        guest.goto("/console/")
        expect(guest.locator("#sign-in")).to_be_visible()
        assert off_screen(guest, boxes) == [], ("sign-in", size)
        if label:
            shot(guest, f"page-sign-in-{label}")
        admin.set_viewport_size(size)
        for path, loaded in PAGES.items():
            admin.goto(path)
            expect(admin.locator(loaded).first).to_be_visible()
            assert off_screen(admin, boxes) == [], (path, size)
            if label:
                shot(admin, f"page-{path.removeprefix('/console/')}-{label}")
        assert admin.eval_on_selector("link[rel=icon]", "l => l.href").endswith("favicon.svg")

    # Supervisor: Anna's load; reassigning one of her chats moves it from her panel to Boris's, live.
    panel, boris_panel = console(base, anna.token), console(base, boris.token)
    boris_panel.goto("/console/operator")
    panel.goto(f"/console/operator?chat={chat['id']}")
    for p in (panel, boris_panel):
        expect(p.locator("#live")).to_have_text("● Live")
    mine = panel.locator(f'#chat-list li[data-chat-id="{moving["id"]}"]')
    expect(mine).to_be_visible()
    admin.set_viewport_size(WIDE)
    admin.goto("/console/supervisor")
    expect(admin.locator('#operators tr', has_text="Anna")).to_contain_text("2 of 2")
    expect(admin.locator('#operators tr', has_text="Boris")).to_contain_text("available")
    admin.locator(f'#sv-chats tr[data-chat-id="{moving["id"]}"] a').click()
    expect(admin.get_by_label("Reassign to").locator(f'option[value="{boris.id}"]')).to_contain_text("Boris")
    admin.get_by_label("Reassign to").select_option(value=str(boris.id))
    admin.get_by_role("button", name="Reassign").click()
    expect(admin.locator("#sv-chat-result")).to_contain_text("Reassigned to Boris")
    expect(mine).to_have_count(0)
    expect(boris_panel.locator(f'#offered li[data-chat-id="{moving["id"]}"]')).to_be_visible()
    shot(admin, "page-supervisor-reassigned-1280")

    # Completing a chat from the supervisor view ends it on Anna's panel, live.
    admin.locator(f'#sv-chats tr[data-chat-id="{chat["id"]}"] a').click()
    expect(admin.get_by_role("log", name="Messages (read-only)")).to_contain_text("please help")
    admin.get_by_role("button", name="Complete chat").click()
    expect(panel.locator("#chat-ended")).to_have_text("An administrator completed this chat.")
    expect(admin.locator(f'#sv-chats tr[data-chat-id="{chat["id"]}"]')).to_have_count(0)   # open chats only

    # Team: a new user's token is shown once and works; deactivating them closes the door.
    admin.goto("/console/team")
    form = admin.get_by_role("form", name="Add user")
    form.get_by_label("Login").fill("carla")
    form.get_by_role("button", name="Add user").click()
    token = admin.locator("#token-once .token-once").inner_text()
    assert ok(api.as_user(token).get("/api/me"))["login"] == "carla"
    row = admin.locator("#users tr", has_text="carla")
    row.get_by_role("button", name="Deactivate").click()
    expect(row.locator(".badge")).to_have_text("deactivated")
    assert api.as_user(token).get("/api/me").status_code == 401
    expect(admin.locator("#canned tr", has_text="/bye")).to_contain_text("Support")
    shot(admin, "page-team-after-1280")
    assert errors == []
