"""A local fake of the Telegram Bot API: POST /bot<token>/<method> answering as Telegram does, and
GET /file/bot<token>/<file_path> serving the files getFile names."""
import threading
import time

from fakes import JsonApiServer, Upload

DOWNLOAD_LIMIT = 20_000_000   # "bots can download files of up to 20MB in size"


class FakeTelegram(JsonApiServer):
    """Knows some bot tokens and files; records every call; can be told to fail sends or downloads."""

    def __init__(self, tokens=("123:good-token",)):
        self.tokens = set(tokens)
        self.calls: list[tuple[str, str, dict]] = []   # (token, method, payload)
        self.delivered: list[str] = []  # texts (or captions) of send* calls answered 200
        self.files: dict[str, tuple[str, bytes, int]] = {}   # file_id -> (file_path, content, file_size)
        self.fail_sends = 0          # answer this many send* calls with 500
        self.fail_downloads = 0      # answer this many file downloads with 500
        self.down = False            # answer every call with 502
        self.held = None             # a threading.Event: sendMessage is recorded, its answer waits for it
        self.delay = 0.0             # seconds before each sendMessage is answered (as a real API takes)
        self._next_message_id = 1000
        self._lock = threading.Lock()
        super().__init__()

    def answer(self, method: str, raw_path: str, body: dict):
        if raw_path.startswith("/file/"):
            return self.download(raw_path)
        answer = self.handle(raw_path, body)
        if self.delay and raw_path.endswith("/sendMessage"):
            time.sleep(self.delay)
        held = self.held
        if held is not None and raw_path.endswith("/sendMessage"):
            held.wait(30)  # the message is with Telegram; the caller has no answer yet
        return answer

    def hold_answers(self) -> threading.Event:
        """Hold back the answers to sendMessage until the returned event is set."""
        self.held = threading.Event()
        return self.held

    def add_file(self, file_id: str, content: bytes, file_path: str | None = None, size: int | None = None):
        """A file clients sent, as getFile will describe it (`size` may claim more than `content`)."""
        self.files[file_id] = (file_path or f"documents/{file_id}", content, len(content) if size is None else size)

    def sent(self, token=None, method="sendMessage") -> list[dict]:
        return [p for t, m, p in self.calls if m == method and (token is None or t == token)]

    def download(self, path: str):
        parts = path.strip("/").split("/", 2)
        with self._lock:
            self.calls.append((parts[1][3:] if len(parts) > 1 else "", "download", {"path": path}))
            if self.down or self.fail_downloads > 0:
                self.fail_downloads = max(0, self.fail_downloads - 1)
                return 500, {"ok": False, "error_code": 500, "description": "Internal Server Error"}
            if len(parts) == 3 and parts[1][3:] in self.tokens:
                for file_path, content, _ in self.files.values():
                    if file_path == parts[2]:
                        return 200, content, "application/octet-stream"
        return 404, {"ok": False, "error_code": 404, "description": "Not Found"}

    def handle(self, path: str, payload: dict):
        parts = path.strip("/").split("/")
        if len(parts) != 2 or not parts[0].startswith("bot"):
            return 404, {"ok": False, "error_code": 404, "description": "Not Found"}
        token, method = parts[0][3:], parts[1]
        with self._lock:
            self.calls.append((token, method, payload))
            if self.down:
                return 502, {"ok": False, "error_code": 502, "description": "Bad Gateway"}
            if token not in self.tokens:
                return 401, {"ok": False, "error_code": 401, "description": "Unauthorized"}
            if method == "getMe":
                return 200, {"ok": True, "result": {"id": 123, "is_bot": True, "first_name": "Chatflow test bot",
                                                    "username": "chatflow_test_bot"}}
            if method in ("setWebhook", "deleteWebhook"):
                return 200, {"ok": True, "result": True, "description": "Webhook was set"}
            if method == "answerCallbackQuery":
                if not isinstance(payload.get("callback_query_id"), str):
                    return 400, {"ok": False, "error_code": 400, "description": "Bad Request: query id is invalid"}
                return 200, {"ok": True, "result": True}
            if method == "getFile":
                known = self.files.get(payload.get("file_id"))
                if known is None:
                    return 400, {"ok": False, "error_code": 400, "description": "Bad Request: invalid file_id"}
                file_path, _, size = known
                if size > DOWNLOAD_LIMIT:
                    return 400, {"ok": False, "error_code": 400, "description": "Bad Request: file is too big"}
                return 200, {"ok": True, "result": {"file_id": payload["file_id"], "file_unique_id": "u" + file_path,
                                                    "file_size": size, "file_path": file_path}}
            if method in ("sendMessage", "sendPhoto", "sendDocument"):
                return self._send(method, payload)
            return 404, {"ok": False, "error_code": 404, "description": "Not Found: method not found"}

    def _send(self, method: str, payload: dict):
        if self.fail_sends > 0:
            self.fail_sends -= 1
            return 500, {"ok": False, "error_code": 500, "description": "Internal Server Error"}
        result = {"date": 1700000000, "chat": {"id": payload.get("chat_id"), "type": "private"}}
        if method == "sendMessage":
            text = payload.get("text")
            if not isinstance(text, str) or not 1 <= len(text) <= 4096:
                return 400, {"ok": False, "error_code": 400, "description": "Bad Request: message text is empty"}
            result["text"] = text
        else:
            part = "photo" if method == "sendPhoto" else "document"
            upload = payload.get(part)
            if not isinstance(upload, Upload) or not upload.content:
                return 400, {"ok": False, "error_code": 400,
                             "description": f"Bad Request: there is no {part} in the request"}
            if method == "sendPhoto":
                result["photo"] = [{"file_id": "sent-photo", "file_unique_id": "sp", "width": 1, "height": 1}]
            else:
                result["document"] = {"file_id": "sent-doc", "file_unique_id": "sd", "file_name": upload.filename}
            if payload.get("caption"):
                result["caption"] = payload["caption"]
        self._next_message_id += 1
        self.delivered.append(payload.get("text") or payload.get("caption") or "")
        return 200, {"ok": True, "result": {"message_id": self._next_message_id, **result}}


def update(update_id: int, user_id: int, text: str, first_name="Ann", last_name="Client") -> dict:
    """An Update as Telegram sends it to a webhook."""
    user = {"id": user_id, "is_bot": False, "first_name": first_name, "last_name": last_name,
            "username": f"user{user_id}"}
    return {"update_id": update_id, "message": {
        "message_id": update_id * 10, "from": user,
        "chat": {"id": user_id, "type": "private", "first_name": first_name, "last_name": last_name},
        "date": 1700000000, "text": text}}
