"""The website chat widget in a real browser: a visitor on a shop page of another origin (a second
local server) talks with an operator working the chat in the operator panel, both live; a reload
keeps the conversation; a page of an origin the channel does not allow cannot start a session.
On the embedded default; with REDIS_URL set, jobs run in a worker process and its events reach
both pages through Redis."""
import pytest
from playwright.sync_api import expect

from chat_helpers import configure, make_operator, make_queue, ok
from conftest import ROOT, shot

SHOP_PAGE = """<!doctype html><html lang="en"><head><meta charset="utf-8">
<meta name="viewport" content="width=device-width, initial-scale=1"><title>Shop</title>
<style>button {{ color: red; font-size: 40px }}</style></head>
<body><h1>A shop</h1><script src="{script}" async></script></body></html>"""


@pytest.fixture
def app(running_app):
    return running_app


def site(serve, script: str) -> str:
    """Another origin: a bare WSGI server with one page carrying the widget's script tag."""
    def page(environ, start_response):
        start_response("200 OK", [("Content-Type", "text/html; charset=utf-8")])
        return [SHOP_PAGE.format(script=script).encode()]
    return serve(page)


def test_a_visitor_and_an_operator_talk_live(app, api, serve, console):
    ok(api.deploy(*sorted((ROOT / "processes").glob("*.bpmn"))), 201)
    configure(api)
    queue = make_queue(api, "least_busy", name="Support")
    anna = make_operator(api, "anna", queue["id"])
    base = serve(app)
    script = f"{base}/widget/{{key}}.js"
    shop = site(serve, script.format(key="pending"))  # its address first: the channel allows it
    channel = ok(api.post("/api/channels", {"provider": "web", "name": "Shop", "queue_id": queue["id"],
                                            "allowed_origins": [shop], "title": "Shop help",
                                            "welcome_text": "Hello! Ask us anything."}), 201)
    shop = site(serve, script.format(key=channel["widget_key"]))
    ok(api.patch(f"/api/channels/{channel['id']}", {"allowed_origins": [shop]}))

    panel = console(base, anna.token)
    panel.on("dialog", lambda dialog: dialog.accept())
    panel.goto("/console/operator")
    expect(panel.locator("#live")).to_have_text("● Live")

    visitor = console(shop, None)
    visitor.set_viewport_size({"width": 360, "height": 640})
    errors = []
    visitor.on("pageerror", lambda error: errors.append(error))
    visitor.goto("/")
    widget = visitor.locator("#chatflow-widget")
    bubble = widget.get_by_role("button", name="Open chat")
    bubble.focus()
    visitor.keyboard.press("Enter")          # keyboard: the bubble opens the panel, focus in the text box
    dialog = widget.get_by_role("dialog", name="Shop help")
    expect(dialog).to_be_visible()
    expect(dialog).to_contain_text("Hello! Ask us anything.")
    assert dialog.bounding_box()["width"] <= 360
    box = dialog.get_by_label("Write a message…")
    expect(box).to_be_focused()
    box.fill("Hi, is <b>Sencha</b> in stock?")
    visitor.keyboard.press("Enter")
    log = dialog.get_by_role("log")
    expect(log.locator(".msg.in")).to_have_text(["Hi, is <b>Sencha</b> in stock?"])  # text, not HTML

    offer = panel.locator("#offered li.op-item", has_text="Website visitor")
    expect(offer).to_be_visible()
    offer.get_by_role("button", name="Accept").click()
    expect(dialog).to_contain_text("Anna joined the chat")
    panel.get_by_label("Reply").fill("Yes, plenty. Anna here.")
    panel.get_by_role("button", name="Send").click()
    expect(log.locator(".msg.out")).to_have_text(["Yes, plenty. Anna here."])   # live, no reload
    shot(visitor, "widget-conversation-360")

    visitor.reload()                          # the token in localStorage keeps the conversation
    widget.get_by_role("button", name="Open chat").click()
    expect(log.locator(".msg")).to_have_text(["Hello! Ask us anything.", "Hi, is <b>Sencha</b> in stock?",
                                              "Yes, plenty. Anna here."])

    panel.get_by_role("button", name="Complete chat").click()
    expect(panel.locator("#chat-ended")).to_have_text("You completed this chat.")
    expect(dialog).to_contain_text("This conversation has ended.")
    restart = dialog.get_by_role("button", name="Start a new conversation")
    restart.click()
    expect(log.locator(".msg")).to_have_text(["Hello! Ask us anything."])
    dialog.get_by_label("Write a message…").fill("Another question")
    visitor.keyboard.press("Enter")
    expect(log.locator(".msg.in")).to_have_text(["Another question"])
    expect(panel.locator("#offered li.op-item", has_text="Website visitor")).to_be_visible()
    assert errors == []

    # A page of an origin the channel does not allow: its session request is refused.
    stranger = console(site(serve, script.format(key=channel["widget_key"])), None)
    stranger.goto("/")
    refused = stranger.evaluate("""key => fetch(`%s/widget/api/${key}/sessions`, {method: "POST"})
                                   .then(r => r.status, e => "blocked")""" % base, channel["widget_key"])
    assert refused == "blocked"    # 403 without CORS headers: the browser lets the page read nothing
    stranger.locator("#chatflow-widget").get_by_role("button", name="Open chat").click()
    stranger.locator("#chatflow-widget").get_by_label("Write a message…").fill("hello?")
    stranger.keyboard.press("Enter")
    expect(stranger.locator("#chatflow-widget [role=alert]")).to_have_text("Could not send. Please try again.")
