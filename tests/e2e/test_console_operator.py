"""The operator panel (/console/operator) in a real browser against the app over HTTP: live offers
with a sound, accepting, the conversation with delivery statuses, replies that reach the fake
Telegram, chat actions, completion, `all` routing between two panels, and the acceptance timeout
that makes an operator inactive. On the embedded default; with REDIS_URL set, jobs run in a real
worker process and its events reach the panel through Redis.

The panel is loaded once per operator and never reloaded: everything after that arrives through
/api/events. `window.__loaded` counts the tab's page loads (in sessionStorage, which a reload
keeps) and is checked at the end to prove it.
"""
import io
import math
import re
import struct
import wave

import pytest
from playwright.sync_api import expect

from chat_helpers import configure, history, make_channel, make_operator, make_queue, ok, wait_chat
from conftest import ROOT, shot, wait_for

# Counts the sounds the page tries to make: an <audio> play() (the uploaded file) or a started
# Web Audio source (the fallback beep). `window.__blockPlay` makes play() refuse, as a browser's
# autoplay policy does before any user gesture.
SOUND_PROBE = """
window.__sounds = [];
sessionStorage.loads = (+sessionStorage.loads || 0) + 1;  // survives a reload of the tab
window.__loaded = +sessionStorage.loads;
const realPlay = HTMLMediaElement.prototype.play;
HTMLMediaElement.prototype.play = function () {
  window.__sounds.push("file");
  if (window.__blockPlay) return Promise.reject(new DOMException("autoplay refused", "NotAllowedError"));
  return realPlay.call(this);
};
const realStart = AudioScheduledSourceNode.prototype.start;
AudioScheduledSourceNode.prototype.start = function (...args) {
  window.__sounds.push("beep");
  return realStart.apply(this, args);
};
"""


@pytest.fixture
def app(running_app):
    return running_app


def case_instance(api, case) -> int:
    """The CreateCaseFromChat instance that made this case."""
    (instance,) = [i for i in ok(api.get("/api/process-instances?process=CreateCaseFromChat"))
                   if i["data"].get("CaseId") == case["id"]]
    return instance["id"]


def world(api, rule, accept_timeout_minutes=5, completion_timeout_minutes=None):
    ok(api.deploy(*sorted((ROOT / "processes").glob("*.bpmn"))), 201)
    configure(api, accept_timeout_minutes=accept_timeout_minutes)
    return make_queue(api, rule, completion_timeout_minutes, name="Support")


def panel(console, base, operator, block_play=False):
    """The operator's panel, loaded once and live; `page.js_errors` collects uncaught script errors."""
    page = console(base, operator.token)
    page.on("dialog", lambda dialog: dialog.accept())  # "Complete the chat …?"
    page.js_errors = []
    page.on("pageerror", lambda error: page.js_errors.append(error))
    page.add_init_script(SOUND_PROBE + ("window.__blockPlay = true;" if block_play else ""))
    page.goto("/console/operator")
    expect(page.locator("#live")).to_have_text("● Live")
    return page


def item(page, where, client):
    """The list entry of a client's chat (contact name "Client<telegram id> Client"): pinned among
    the offers, or in the tab `where` (mine, waiting), which is selected first."""
    if where == "offered":
        return page.locator("#offered li.op-item", has_text=f"Client{client.user_id}")
    page.locator(f"#tab-{where}").click()
    return page.locator("#chat-list li.op-item", has_text=f"Client{client.user_id}")


def sounds(page):
    return page.evaluate("window.__sounds")


def wav() -> bytes:
    out = io.BytesIO()
    with wave.open(out, "wb") as w:
        w.setnchannels(1)
        w.setsampwidth(2)
        w.setframerate(8000)
        w.writeframes(b"".join(struct.pack("<h", int(8000 * math.sin(i / 4))) for i in range(800)))
    return out.getvalue()


def test_operator_works_a_chat_live(app, api, serve, console, telegram):
    queue = world(api, "least_busy")
    anna = make_operator(api, "anna", queue["id"])
    channel = make_channel(api, queue["id"])
    action = ok(api.post("/api/chat-actions", {"name": "Create case", "queue_id": queue["id"],
                                               "process": "CreateCaseFromChat"}), 201)
    page = panel(console, serve(app), anna)
    expect(page.locator("#status")).to_have_text("active")
    expect(page.locator("#load")).to_have_text("0 of 2 chats in work")

    client = channel.client()
    client.writes("hi, my order is late")
    offer = item(page, "offered", client)
    expect(offer).to_be_visible(timeout=5000)   # live: pushed, not reloaded (the load count is checked below)
    expect(offer).to_contain_text("Support")  # the queue's name, as /api/chats gives it
    expect(offer.locator("time.op-age")).to_have_text(re.compile(r"^\d+ s$"))  # waiting since the message
    expect(offer.locator(".op-preview")).to_have_text("hi, my order is late")
    wait_for(lambda: "file" in sounds(page), timeout=2, message="the notification sound (none uploaded: the built-in one)")
    assert page.eval_on_selector("#notify-sound", "a => a.src").endswith("/console/static/notify.wav")
    shot(page, "operator-panel-offer")

    offer.get_by_role("button", name="Accept").click()
    expect(item(page, "mine", client)).to_be_visible()
    expect(page.locator("#offered li.op-item")).to_have_count(0)
    expect(page.get_by_role("heading", name=f"Chat with Client{client.user_id} Client")).to_be_visible()
    log = page.get_by_role("log", name="Messages")
    expect(log.locator("li.msg.in .msg-text")).to_have_text(["hi, my order is late"])
    expect(page.locator("#load")).to_have_text("1 of 2 chats in work")

    # An empty reply: the API's error is shown next to the box.
    page.get_by_role("button", name="Send").click()
    expect(page.locator(".field-error[data-field=text]")).to_contain_text("must not be empty")

    page.get_by_label("Reply").fill("Hello, Anna here. Let me check.")
    page.get_by_role("button", name="Send").click()
    wait_for(lambda: [m for m in telegram.sent() if m["text"] == "Hello, Anna here. Let me check."],
             message="sendMessage at the fake Telegram")
    out = log.locator("li.msg.out")
    expect(out).to_contain_text("Hello, Anna here. Let me check.")
    expect(out.locator(".msg-status")).to_have_text("sent")
    expect(page.locator(".field-error")).to_have_count(0)

    client.writes("thanks, order 1234")
    expect(log.locator("li.msg.in").last).to_contain_text("thanks, order 1234", timeout=5000)

    page.get_by_role("group", name="Actions").get_by_role("button", name=action["name"]).click()
    result = page.locator("#action-result")
    expect(result).to_contain_text("created")
    (case,) = ok(api.get("/api/cases"))
    expect(result).to_contain_text(f"Case {case['number']} created")
    expect(result).to_contain_text(f"process instance {case_instance(api, case)}")
    expect(result.get_by_role("link")).to_have_count(0)  # the instance page is for admins
    shot(page, "operator-chat-view-case")

    page.get_by_role("button", name="Complete chat").click()
    expect(page.locator("#chat-ended")).to_have_text("You completed this chat.")
    expect(page.locator("#chat-list li.op-item")).to_have_count(0)
    expect(page.get_by_label("Reply")).to_be_hidden()
    assert ok(api.get(f"/api/chats/{case['chat_id']}"))["state"] == "completed"
    assert page.evaluate("window.__loaded") == 1   # never reloaded
    assert page.js_errors == []


def test_all_routing_two_panels(app, api, serve, console, telegram):
    queue = world(api, "all", completion_timeout_minutes=0.02)  # 1.2 s after the last reply
    anna = make_operator(api, "anna", queue["id"])
    boris = make_operator(api, "boris", queue["id"])
    channel = make_channel(api, queue["id"])
    ok(api.call("PUT", "/api/settings/OmniChatNotificationSound/file", content_type="multipart/form-data",
                data={"file": (io.BytesIO(wav()), "ding.wav", "audio/wav")}))
    base = serve(app)
    page_a = panel(console, base, anna)
    page_b = panel(console, base, boris, block_play=True)  # autoplay refused: "Enable sound"

    client = channel.client()
    client.writes("anyone there?")
    for page in (page_a, page_b):
        expect(item(page, "waiting", client)).to_be_visible(timeout=5000)
    wait_for(lambda: "file" in sounds(page_a), timeout=2, message="the uploaded sound on Anna's panel")
    expect(page_a.get_by_role("button", name="Enable sound")).to_be_hidden()
    enable = page_b.get_by_role("button", name="Enable sound")
    expect(enable).to_be_visible()
    page_b.evaluate("window.__blockPlay = false")  # as after a click, the browser allows sound
    enable.click()
    expect(enable).to_be_hidden()

    # Boris clicks Accept, but his request is held until Anna has taken the chat.
    held = []
    page_b.route("**/api/chats/*/accept", lambda route: held.append(route))
    item(page_b, "waiting", client).get_by_role("button", name="Accept").click()
    wait_for(lambda: held, message="Boris's accept request")

    item(page_a, "waiting", client).get_by_role("button", name="Accept").click()
    expect(item(page_a, "mine", client)).to_be_visible()
    expect(page_b.locator("#chat-list li.op-item")).to_have_count(0)   # chat_taken, live
    expect(item(page_b, "mine", client)).to_have_count(0)

    held[0].continue_()
    expect(page_b.locator("#lists-notice")).to_contain_text("Another operator has already taken this chat.")
    shot(page_b, "operator-panel-taken")

    # Anna replies; nobody writes within the completion timeout: the chat ends, told live. The
    # timer's job may come late on a loaded machine: the chat's row is waited for, then the page.
    (chat,) = ok(api.get("/api/chats"))
    page_a.get_by_label("Reply").fill("Anything else?")
    page_a.get_by_role("button", name="Send").click()
    wait_chat(api, chat["id"], lambda c: c["state"] == "completed", timeout=30, message="the completion timeout")
    expect(page_a.locator("#chat-ended")).to_contain_text("completed automatically")
    expect(page_a.locator("#chat-list li.op-item")).to_have_count(0)
    expect(page_a.get_by_role("button", name="Send")).to_be_hidden()
    assert page_a.evaluate("window.__loaded") == page_b.evaluate("window.__loaded") == 1
    assert page_a.js_errors == page_b.js_errors == []


def test_acceptance_timeout_makes_inactive(app, api, serve, console, telegram):
    queue = world(api, "least_busy", accept_timeout_minutes=0.02)   # 1.2 seconds
    anna = make_operator(api, "anna", queue["id"])
    boris = make_operator(api, "boris", queue["id"])  # offered next
    channel = make_channel(api, queue["id"])
    page = panel(console, serve(app), anna)

    client = channel.client()
    client.writes("hello?")
    offer = item(page, "offered", client)
    expect(offer).to_be_visible()   # for about the 1.2 s the offer lasts

    # Nobody clicks: the offer goes to Boris and Anna is inactive, told live.
    expect(page.locator("#status")).to_have_text("inactive", timeout=5000)
    expect(offer).to_have_count(0)
    (chat,) = ok(api.get("/api/chats"))
    chat_id = chat["id"]
    banner = page.locator("#inactive-banner")
    expect(banner).to_be_visible()
    expect(banner).to_contain_text(f"did not accept chat #{chat_id} in time")
    # The offer moves to Boris, who takes it (nothing comes back to Anna). Should a loaded machine
    # make him miss his own 1.2 s, he is set inactive in turn, sets himself active and gets it again.
    def boris_took_it() -> bool:
        if ok(api.get(f"/api/chats/{chat_id}"))["offered_to_id"] == boris.id:
            return boris.accept(chat_id).status_code == 200
        if boris.me()["status"] == "inactive":
            boris.set_status("active")
        return False

    wait_for(boris_took_it, message="Boris to take the chat passed on to him")
    moves = [(e["event"], e["details"].get("operator_id")) for e in history(api, chat_id)
             if e["event"] in ("offered", "offer_timed_out")]
    assert moves[:3] == [("offered", anna.id), ("offer_timed_out", anna.id), ("offered", boris.id)], moves
    assert anna.me()["status"] == "inactive"
    shot(page, "operator-panel-inactive")

    page.get_by_role("button", name="Set active").click()
    expect(page.locator("#status")).to_have_text("active")
    expect(banner).to_be_hidden()
    expect(page.get_by_role("button", name="Set inactive")).to_be_visible()
    assert anna.me()["status"] == "active"
    assert page.evaluate("window.__loaded") == 1
    assert page.js_errors == []

