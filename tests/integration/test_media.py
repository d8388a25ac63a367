"""Messages of every kind over HTTP, from the payload corpus (tests/payloads/, sources in its
README) to what the operator reads: kinds, captions, payloads, edits, button presses, echoes,
receipts; files fetched from the fake Bot API and Graph API into the file store and served
only to who may see the chat; operators' files sent with sendPhoto/sendDocument and Messenger
attachments; Messenger contact names from the Graph profile."""
import io
import json
import time

import pytest
from sqlalchemy import select

from app.models.chat import Attachment, Contact, Message, StoredFile
from chat_helpers import configure, count, error, make_operator, make_queue, ok, rows
from conftest import ROOT, Api, wait_for
from fakes.facebook import sign

PAYLOADS = ROOT / "tests" / "payloads"
PROCESSES = sorted((ROOT / "processes").glob("*.bpmn"))
APP_SECRET = "media-app-secret"
TOKEN = "123:good-token"
PSID = "1254459154682919"
CDN = "https://scontent.xx.fbcdn.net/v/t1.15752-9/"
PNG = b"\x89PNG\r\n\x1a\n" + b"\x00" * 200
PDF = b"%PDF-1.4\n" + b"x" * 300


def payload(provider: str, name: str) -> dict:
    return json.loads((PAYLOADS / provider / f"{name}.json").read_text())


class World:
    """Lifecycle deployed; queue QA (`all`) with operator A, queue QB with operator B; a Telegram
    channel and a Messenger page (111) on QA."""

    def __init__(self, app, telegram, graph):
        self.api, self.telegram, self.graph = Api(app), telegram, graph
        ok(self.api.deploy(*PROCESSES), 201)
        configure(self.api)
        ok(self.api.put("/api/settings/FacebookAppSecret", {"value": APP_SECRET}))
        self.qa, self.qb = make_queue(self.api, "all", name="QA")["id"], make_queue(self.api, "all", name="QB")["id"]
        self.op_a, self.op_b = make_operator(self.api, "op-a", self.qa), make_operator(self.api, "op-b", self.qb)
        self.tg_channel = ok(self.api.post("/api/channels", {"provider": "telegram", "name": "Bot", "token": TOKEN,
                                                             "queue_id": self.qa}), 201)
        self.fb_channel = ok(self.api.post("/api/channels", {
            "provider": "facebook", "name": "Page", "page_id": "111", "page_access_token": "page-token-111",
            "queue_id": self.qa}), 201)
        with app.app_context():
            from app.extensions import db
            from app.models.chat import Channel
            self.secret = db.session.get(Channel, self.tg_channel["id"]).webhook_secret
            db.session.remove()

    # clients
    def telegram_sends(self, body: dict):
        for file in _telegram_files(body):
            self.telegram.add_file(file["file_id"], PNG if "photo" in str(body) else PDF)
        return ok(self.api.client.post(f"/webhooks/telegram/{self.tg_channel['id']}", json=body,
                                       headers={"X-Telegram-Bot-Api-Secret-Token": self.secret}))

    def messenger_sends(self, body: dict):
        raw = json.dumps(body).replace("PAGE_ID", "111")
        for name in {part.split("?")[0] for part in raw.split(CDN)[1:]}:
            self.graph.cdn[name] = PNG if name.endswith((".jpg", ".png")) else PDF
        raw = raw.replace(CDN, f"{self.graph.url}/cdn/").encode()
        return ok(self.api.client.post("/webhooks/facebook", data=raw, content_type="application/json",
                                       headers={"X-Hub-Signature-256": sign(raw, APP_SECRET)}))

    # reading
    def messages(self, who=None) -> list[dict]:
        (chat,) = ok(self.api.get("/api/chats?limit=1000")) or [None]
        return ok((who or self.api).get(f"/api/chats/{chat['id']}/messages"))

    def last(self) -> dict:
        return self.messages()[-1]

    def settled(self) -> dict:
        """The last message once none of its files is still pending."""
        return wait_for(lambda: (lambda m: m if all(a["status"] != "pending" for a in m["attachments"]) else None)
                        (self.last()), message="its files to be fetched")

    def chat_id(self) -> int:
        (chat,) = ok(self.api.get("/api/chats?limit=1000"))
        return chat["id"]

    def accepted_chat(self) -> int:
        chat_id = self.chat_id()
        wait_for(lambda: ok(self.api.get(f"/api/chats/{chat_id}"))["process_instance_id"], message="lifecycle")
        ok(self.op_a.accept(chat_id))
        return chat_id


def _telegram_files(body) -> list[dict]:
    message = body.get("message") or {}
    found = [max(message["photo"], key=lambda s: s["width"] * s["height"])] if "photo" in message else []
    return found + [message[k] for k in ("animation", "video", "video_note", "voice", "audio", "document",
                                         "sticker") if k in message]


@pytest.fixture
def world(running_app, telegram, graph):
    return World(running_app, telegram, graph)


# -- Telegram: every kind ------------------------------------------------------------------------
TELEGRAM_KINDS = {
    # corpus file: (kind, text, payload, [(attachment name, content type)])
    "text": ("text", "/start", None, []),
    "photo": ("image", "The broken device", None, [("photo.jpg", "image/jpeg")]),
    "video": ("video", "It rattles", None, [("unboxing.mp4", "video/mp4")]),
    "video_note": ("video", "", None, [("video_note.mp4", "video/mp4")]),
    "voice": ("voice", "", None, [("voice.ogg", "audio/ogg")]),
    "audio": ("audio", "Listen to this", None, [("noise.mp3", "audio/mpeg")]),
    "document": ("document", "Read my document", None, [("invoice-2041.pdf", "application/pdf")]),
    "animation": ("video", "", None, [("shrug.mp4", "video/mp4")]),
    "sticker": ("sticker", "\U0001F44D", {"emoji": "\U0001F44D"}, [("sticker.webp", "image/webp")]),
    "location": ("location", "", {"latitude": 52.520008, "longitude": 13.404954}, []),
    "venue": ("location", "", {"latitude": 48.858093, "longitude": 2.294694, "title": "Eiffel Tower",
                               "address": "Champ de Mars, 5 Av. Anatole France, 75007 Paris"}, []),
    "contact": ("contact", "", {"name": "Maria Client", "phone": "+4930123456"}, []),
    "callback_query": ("button", "Yes, thanks", {"title": "Yes, thanks", "data": "csat:yes"}, []),
    "poll": ("system", "The client sent a poll, which cannot be shown here", {"unsupported": "a poll"}, []),
}


@pytest.mark.parametrize("name", list(TELEGRAM_KINDS))
def test_telegram_kind_is_stored_whole_and_opens_a_chat(world, name):
    kind, text, data, files = TELEGRAM_KINDS[name]
    body = payload("telegram", name)
    assert world.telegram_sends(body)["duplicate"] is False
    message = world.settled()
    assert (message["direction"], message["kind"], message["text"], message["payload"]) == ("in", kind, text, data)
    assert [(a["name"], a["content_type"], a["status"]) for a in message["attachments"]] == \
        [(n, t, "stored") for n, t in files]
    for attachment in message["attachments"]:   # the largest photo size, byte for byte
        expected = world.telegram.files[_telegram_files(body)[0]["file_id"]][1]
        served = world.op_a.api.get(attachment["url"])
        assert served.status_code == 200 and served.data == expected and attachment["size"] == len(expected)
    # redelivered: nothing new
    assert world.telegram_sends(body)["duplicate"] is True
    assert count(world.api, Message) == 1 and count(world.api, Attachment) == len(files)


def test_callback_query_is_answered(world):
    world.telegram_sends(payload("telegram", "callback_query"))
    wait_for(lambda: world.telegram.sent(method="answerCallbackQuery"), message="answerCallbackQuery")
    assert world.telegram.sent(method="answerCallbackQuery") == [{"callback_query_id": "4382bfdwdsb323b2d9"}]


def test_edited_message_keeps_the_earlier_text(world):
    world.telegram_sends(payload("telegram", "text"))
    world.telegram_sends(payload("telegram", "edited_message"))
    message = world.last()
    assert message["text"] == "/start please"
    assert [e["text"] for e in message["edits"]] == ["/start"]
    world.telegram_sends(payload("telegram", "edited_message"))   # the same edit again changes nothing
    assert len(world.last()["edits"]) == 1 and count(world.api, Message) == 1


def test_set_webhook_asks_for_edits_and_button_presses(world):
    (call,) = world.telegram.sent(method="setWebhook")
    assert call["allowed_updates"] == ["message", "edited_message", "callback_query"]


# -- Messenger: every kind -----------------------------------------------------------------------
MESSENGER_KINDS = {
    "text": ("text", "hello, world!", None, []),
    "image": ("image", "", None, [("broken-device.jpg", "image/jpeg")]),
    "text_and_file": ("document", "Read my document", None, [("contract.pdf", "application/pdf")]),
    "video": ("video", "", None, [("clip.mp4", "video/mp4")]),
    "audio": ("audio", "", None, [("audioclip-1.mp4", "audio/mp4")]),
    "file": ("document", "", None, [("report.pdf", "application/pdf")]),
    "location": ("location", "", {"latitude": 52.520008, "longitude": 13.404954, "title": "Pinned Location",
                                  "address": ""}, []),
    "fallback": ("text", "Shared a link: Our opening hours https://example.com/hours", None, []),
    "sticker": ("sticker", "", {"sticker_id": 369239263222822, "like": True},
                [("39178562_1505197616293642_5411344281094848512_n.png", "image/png")]),
    "reel": ("text", "Shared a reel: https://www.facebook.com/reel/1094587624", None, []),
    "quick_reply": ("button", "Red", {"title": "Red", "data": "DEVELOPER_DEFINED_PAYLOAD_FOR_PICKING_RED"}, []),
    "postback": ("button", "Talk to a human", {"title": "Talk to a human", "data": "HUMAN_AGENT"}, []),
    "appointment_booking": ("system", "The client sent an attachment of type appointment_booking, which cannot "
                            "be shown here", {"unsupported": "an attachment of type appointment_booking"}, []),
}


@pytest.mark.parametrize("name", list(MESSENGER_KINDS))
def test_messenger_kind_is_stored_whole_and_opens_a_chat(world, name):
    kind, text, data, files = MESSENGER_KINDS[name]
    body = payload("messenger", name)
    assert world.messenger_sends(body)["stored"] == 1
    message = world.settled()
    assert (message["direction"], message["kind"], message["text"], message["payload"]) == ("in", kind, text, data)
    assert [(a["name"], a["content_type"], a["status"]) for a in message["attachments"]] == \
        [(n, t, "stored") for n, t in files]
    for attachment in message["attachments"]:
        assert world.op_a.api.get(attachment["url"]).data == world.graph.cdn[attachment["name"]]
    assert world.messenger_sends(body)["stored"] == 0
    assert count(world.api, Message) == 1


def test_messenger_edit_echoes_and_receipts(world):
    world.messenger_sends(payload("messenger", "text"))
    world.messenger_sends(payload("messenger", "message_edit"))
    edited = world.last()
    assert edited["text"] == "hello, world! (edited)" and edited["edits"][0]["text"] == "hello, world!"
    # our own echo is ignored; a reply typed in Meta's Page inbox is stored as outgoing, with its origin
    assert world.messenger_sends(payload("messenger", "echo_ours"))["stored"] == 0
    assert world.messenger_sends(payload("messenger", "echo_page_inbox"))["stored"] == 1
    inbox = world.last()
    assert (inbox["direction"], inbox["text"], inbox["origin"], inbox["status"]) == \
        ("out", "Hi, this is Anna from the shop", "app 263902037430900", "sent")
    # delivery and read watermarks move outgoing messages on, never back
    for kind, status in (("delivery", "delivered"), ("read", "read"), ("delivery", "read")):
        body = payload("messenger", kind)
        body["entry"][0]["messaging"][0][kind]["watermark"] = int(time.time() * 1000) + 1000
        world.messenger_sends(body)
        assert world.last()["status"] == status


def test_messenger_contact_is_named_from_the_graph_profile(world):
    world.graph.fail_profiles = 1   # the first try fails: the placeholder stays, a retry names them
    world.graph.profiles[PSID] = {"first_name": "Peter", "last_name": "Chang"}
    world.messenger_sends(payload("messenger", "text"))
    wait_for(lambda: [c for c in rows(world.api, select(Contact)) if c.name == "Peter Chang"],
             message="the contact to be named")
    asks = [c for c in world.graph.calls if c[1].endswith(f"/{PSID}")]
    assert len(asks) == 2 and all(c[2] == "page-token-111" for c in asks)


# -- files: limits, failures, stores, who may read them -------------------------------------------
def test_files_over_the_limit_are_recorded_not_fetched(world):
    body = payload("telegram", "document")
    body["message"]["document"]["file_size"] = 25_000_000   # Telegram's bots may download 20 MB
    world.telegram_sends(body)
    (attachment,) = world.settled()["attachments"]
    assert (attachment["status"], attachment["size"], attachment["name"]) == ("too_large", 25_000_000,
                                                                              "invoice-2041.pdf")
    assert not [c for c in world.telegram.calls if c[1] in ("getFile", "download")]
    error(world.op_a.api.get(attachment["url"]), 409, "file_not_stored")
    # no size in the update, but getFile says "file is too big"
    body = payload("telegram", "voice")
    world.telegram.add_file(body["message"]["voice"]["file_id"], b"x", size=30_000_000)
    del body["message"]["voice"]["file_size"]
    world.api.client.post(f"/webhooks/telegram/{world.tg_channel['id']}", json=body,
                          headers={"X-Telegram-Bot-Api-Secret-Token": world.secret})
    assert world.settled()["attachments"][0]["status"] == "too_large"


def test_fetch_retries_then_fails(world):
    world.telegram.fail_downloads = 1
    world.telegram_sends(payload("telegram", "document"))
    assert world.settled()["attachments"][0]["status"] == "stored"
    world.telegram.fail_downloads = 100
    body = payload("telegram", "photo")
    body["update_id"] += 100
    world.telegram_sends(body)
    (attachment,) = world.settled()["attachments"]
    assert attachment["status"] == "failed"
    (row,) = rows(world.api, select(Attachment).where(Attachment.id == attachment["id"]))
    assert row.attempts == 3 and "500" in row.error   # the replies' policy: 1 + 2 retries here


def test_files_are_served_only_to_who_may_see_the_chat(world):
    world.telegram_sends(payload("telegram", "photo"))
    url = world.settled()["attachments"][0]["url"]
    assert world.op_a.api.get(url).status_code == 200
    assert world.api.get(url).status_code == 200                          # admin
    error(world.op_b.api.get(url), 403, "forbidden")                       # operator of another queue
    assert world.api.get(url, token=None).status_code == 401
    error(world.api.get("/api/files/999999"), 404, "file_not_found")


def test_html_and_svg_are_downloads_and_images_are_inline(world):
    inline = world.op_a.api.get(_stored(world, "photo"))
    assert inline.headers["Content-Type"] == "image/jpeg"
    assert inline.headers["X-Content-Type-Options"] == "nosniff"
    assert not inline.headers.get("Content-Disposition", "").startswith("attachment")
    for n, (mime, name) in enumerate((("text/html", "page.html"), ("image/svg+xml", "logo.svg")), start=1):
        body = payload("telegram", "document")
        body["update_id"] += n
        body["message"]["document"].update(mime_type=mime, file_name=name, file_id=f"f-{name}")
        world.telegram_sends(body)
        wait_for(lambda: world.last()["attachments"][0]["status"] == "stored", message="stored")
        served = world.op_a.api.get(world.last()["attachments"][0]["url"])
        assert served.headers["Content-Disposition"].startswith("attachment"), served.headers
        assert served.headers["X-Content-Type-Options"] == "nosniff"
        assert "sandbox" in served.headers["Content-Security-Policy"]


def _stored(world, name):
    world.telegram_sends(payload("telegram", name))
    return world.settled()["attachments"][0]["url"]


@pytest.mark.parametrize("folder", [False, True])
def test_file_stores(make_app, telegram, graph, tmp_path, folder):
    """The database store keeps blobs in stored_files; the folder store (CHATFLOW_FILES_DIR) in files."""
    app = make_app(**({"FILES_DIR": str(tmp_path)} if folder else {}))
    world = World(app, telegram, graph)
    url = _stored(world, "document")
    assert world.op_a.api.get(url).data == PDF
    in_folder = [p for p in tmp_path.iterdir() if not p.name.startswith(".")]
    assert (len(in_folder), count(world.api, StoredFile)) == ((1, 0) if folder else (0, 1))
    if folder:
        assert in_folder[0].read_bytes() == PDF


# -- operators' files ----------------------------------------------------------------------------
def upload(api, chat_id, content, name, text=None, part="file", content_type=None):
    data = {part: (io.BytesIO(content), name, *([content_type] if content_type else []))}
    if text is not None:
        data["text"] = text
    return api.post(f"/api/chats/{chat_id}/messages", data=data, content_type="multipart/form-data")


def test_operator_sends_files_on_telegram(world):
    world.telegram_sends(payload("telegram", "text"))
    chat_id = world.accepted_chat()
    photo = ok(upload(world.op_a.api, chat_id, PNG, "label.png", text="Here is the label"), 201)
    assert (photo["kind"], photo["text"], photo["status"]) == ("image", "Here is the label", "pending")
    wait_for(lambda: world.telegram.sent(method="sendPhoto"), message="sendPhoto")
    (sent,) = world.telegram.sent(method="sendPhoto")
    assert sent["caption"] == "Here is the label" and sent["chat_id"] == "1111111"
    assert (sent["photo"].filename, sent["photo"].content) == ("label.png", PNG)
    ok(upload(world.op_a.api, chat_id, PDF, "manual.pdf"), 201)
    wait_for(lambda: world.telegram.sent(method="sendDocument"), message="sendDocument")
    assert world.telegram.sent(method="sendDocument")[0]["document"].content == PDF
    wait_for(lambda: all(m["status"] == "sent" for m in world.messages() if m["direction"] == "out"),
             message="both sent")
    # the operator reads back what they sent
    assert world.op_a.api.get(world.last()["attachments"][0]["url"]).data == PDF


def test_operator_sends_a_file_on_messenger_as_an_attachment_then_its_text(world):
    world.messenger_sends(payload("messenger", "text"))
    chat_id = world.accepted_chat()
    ok(upload(world.op_a.api, chat_id, PNG, "label.png", text="Your label"), 201)
    wait_for(lambda: len(world.graph.sent()) == 2, message="two Send API calls")
    (_, file_call), (_, text_call) = world.graph.sent()
    assert file_call["message"]["attachment"]["type"] == "image" and file_call["filedata"].content == PNG
    assert text_call["message"]["text"] == "Your label"


@pytest.mark.parametrize("case", ["empty", "too_large", "wrong_part", "no_file", "two_files"])
def test_bad_uploads_are_4xx_and_store_nothing(make_app, telegram, graph, case):
    world = World(make_app(MAX_FILE_BYTES=1000), telegram, graph)
    world.telegram_sends(payload("telegram", "text"))
    chat_id = world.accepted_chat()
    api = world.op_a.api
    if case == "empty":
        error(upload(api, chat_id, b"", "a.pdf"), 422, "invalid_value", "file")
    elif case == "too_large":
        error(upload(api, chat_id, b"x" * 1001, "a.pdf"), 413, "file_too_large", "file")
    elif case == "wrong_part":
        error(upload(api, chat_id, PDF[:100], "a.pdf", part="document"), 400, "unknown_part", "document")
    elif case == "no_file":
        error(api.post(f"/api/chats/{chat_id}/messages", data={"text": "hi"}, content_type="multipart/form-data"),
              400, "no_file", "file")
    else:
        data = {"file": [(io.BytesIO(b"a"), "a.txt"), (io.BytesIO(b"b"), "b.txt")]}
        error(api.post(f"/api/chats/{chat_id}/messages", data=data, content_type="multipart/form-data"),
              422, "invalid_value", "file")
    assert count(world.api, Message, Message.direction == "out") == 0
    assert count(world.api, Attachment) == 0 and count(world.api, StoredFile) == 0


def test_an_upload_may_exceed_the_body_limit_of_json_routes_up_to_the_file_limit(make_app, telegram, graph):
    world = World(make_app(MAX_CONTENT_LENGTH=200_000, MAX_FILE_BYTES=400_000), telegram, graph)
    world.telegram_sends(payload("telegram", "text"))
    chat_id = world.accepted_chat()
    ok(upload(world.op_a.api, chat_id, b"x" * 300_000, "big.bin"), 201)
    assert world.api.post("/api/queues", {"name": "x" * 300_000, "routing_rule": "all"}).status_code == 413


def test_text_replies_stay_as_they_were(world):
    world.telegram_sends(payload("telegram", "text"))
    chat_id = world.accepted_chat()
    reply = ok(world.op_a.reply(chat_id, "plain text"), 201)
    assert {k: reply[k] for k in ("direction", "text", "status", "kind", "attachments")} == \
        {"direction": "out", "text": "plain text", "status": "pending", "kind": "text", "attachments": []}
    wait_for(lambda: world.telegram.sent(), message="sendMessage")


def test_chat_action_process_reads_the_attachment_ids(world):
    world.telegram_sends(payload("telegram", "photo"))
    file_id = world.settled()["attachments"][0]["id"]
    chat_id = world.accepted_chat()
    action = ok(world.api.post("/api/chat-actions", {"name": "Create case", "queue_id": world.qa,
                                                     "process": "CreateCaseFromChat"}), 201)
    started = ok(world.op_a.api.post(f"/api/chats/{chat_id}/actions/{action['id']}"), 201)
    assert started["data"]["AttachmentIds"] == [file_id]
