"""Messages with files in the operator panel, in a real browser over HTTP: a client's photo shown
inline and their document as a download link, files the operator sends from the panel reaching
the fake Telegram as sendPhoto and sendDocument, and the same chat on the admin's chat page."""
import json
import re
import struct
import zlib

import pytest
from playwright.sync_api import expect

from chat_helpers import configure, make_channel, make_operator, make_queue, ok
from conftest import ADMIN_TOKEN, ROOT, shot, wait_for

PAYLOADS = ROOT / "tests" / "payloads" / "telegram"
PDF = b"%PDF-1.4\n%chatflow test document\n"


def png(width=8, height=6) -> bytes:
    """A real (tiny, red) PNG, so the browser can draw it."""
    def chunk(kind, data):
        return struct.pack(">I", len(data)) + kind + data + struct.pack(">I", zlib.crc32(kind + data))
    rows = b"".join(b"\x00" + b"\xff\x00\x00" * width for _ in range(height))
    return (b"\x89PNG\r\n\x1a\n" + chunk(b"IHDR", struct.pack(">IIBBBBB", width, height, 8, 2, 0, 0, 0))
            + chunk(b"IDAT", zlib.compress(rows)) + chunk(b"IEND", b""))


@pytest.fixture
def app(running_app):
    return running_app


def client_sends(api, channel, user_id: int, name: str, update_id: int):
    """A corpus update, as if this client sent it."""
    body = json.loads((PAYLOADS / f"{name}.json").read_text())
    body["update_id"] = update_id
    body["message"]["from"]["id"] = body["message"]["chat"]["id"] = user_id
    ok(api.client.post(f"/webhooks/telegram/{channel.id}", json=body,
                       headers={"X-Telegram-Bot-Api-Secret-Token": channel.secret}))


def test_files_in_the_operator_panel(app, api, serve, console, telegram):
    ok(api.deploy(*sorted((ROOT / "processes").glob("*.bpmn"))), 201)
    configure(api)
    queue = make_queue(api, "all", name="Support")
    anna = make_operator(api, "anna", queue["id"])
    channel = make_channel(api, queue["id"])
    telegram.add_file("AgACAgIAAxkBAAIBQ2VphotoL", png())
    telegram.add_file("BQACAgIAAxkBAAIBSGVdocument", PDF)
    client_sends(api, channel, 5551, "photo", 1)
    (chat,) = ok(api.get("/api/chats"))
    client_sends(api, channel, 5551, "document", 2)
    wait_for(lambda: ok(api.get(f"/api/chats/{chat['id']}"))["state"] == "queued"
             and all(a["status"] == "stored" for m in ok(api.get(f"/api/chats/{chat['id']}/messages"))
                     for a in m["attachments"]), message="the chat queued and its files fetched")
    ok(anna.accept(chat["id"]))

    base = serve(app)
    page = console(base, anna.token)
    page.goto("/console/operator")
    page.locator("#tab-mine").click()
    page.locator("#chat-list li.op-item a").first.click()   # the contact's name opens the chat
    log = page.get_by_role("log", name="Messages")
    photo = log.locator("li.msg.in img.msg-image")
    expect(photo).to_have_attribute("src", re.compile(r"^blob:"))
    wait_for(lambda: photo.evaluate("img => img.complete && img.naturalWidth") == 8, message="the photo drawn")
    expect(log.locator("li.msg.in").first).to_contain_text("The broken device")   # its caption
    document = log.locator("li.msg.in a.msg-document")
    expect(document).to_contain_text("invoice-2041.pdf")
    with page.expect_download() as download:
        document.click()
    assert open(download.value.path(), "rb").read() == PDF

    # the operator sends a photo with a caption, then a document
    page.locator("#reply-file").set_input_files({"name": "label.png", "mimeType": "image/png", "buffer": png()})
    page.get_by_label("Reply").fill("Your return label")
    page.get_by_role("button", name="Send").click()
    wait_for(lambda: telegram.sent(method="sendPhoto"), message="sendPhoto at the fake Telegram")
    (sent,) = telegram.sent(method="sendPhoto")
    assert sent["caption"] == "Your return label" and sent["photo"].content == png()
    page.locator("#reply-file").set_input_files({"name": "manual.pdf", "mimeType": "application/pdf", "buffer": PDF})
    page.get_by_role("button", name="Send").click()
    wait_for(lambda: telegram.sent(method="sendDocument"), message="sendDocument at the fake Telegram")
    assert telegram.sent(method="sendDocument")[0]["document"].filename == "manual.pdf"
    out = log.locator("li.msg.out")
    expect(out).to_have_count(2)
    expect(out.first.locator("img.msg-image")).to_be_visible()
    expect(out.last.locator("a.msg-document")).to_contain_text("manual.pdf")
    expect(out.last.locator(".msg-status")).to_have_text("sent")
    shot(page, "operator-panel-files")

    # the admin's view of the chat shows the same messages, read-only
    admin = console(base, ADMIN_TOKEN)
    admin.goto(f"/console/chats/{chat['id']}")
    messages = admin.get_by_role("log", name="Messages")
    expect(messages.locator("li.msg")).to_have_count(4)
    expect(messages.locator("li.msg.in img.msg-image")).to_have_attribute("src", re.compile(r"^blob:"))
    expect(messages.locator("li.msg.out a.msg-document")).to_contain_text("manual.pdf")
    expect(admin.locator("#history")).to_contain_text("accepted")
    shot(admin, "admin-chat-view")
