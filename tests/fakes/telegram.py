"""A local fake of the Telegram Bot API: POST /bot<token>/<method>, answering as Telegram does."""
import threading
import time

from fakes import JsonApiServer


class FakeTelegram(JsonApiServer):
    """Knows some bot tokens; records every call; can be told to fail sendMessage."""

    def __init__(self, tokens=("123:good-token",)):
        self.tokens = set(tokens)
        self.calls: list[tuple[str, str, dict]] = []   # (token, method, payload)
        self.delivered: list[str] = []  # texts of sendMessage calls answered 200
        self.fail_sends = 0          # answer this many sendMessage calls with 500
        self.down = False            # answer every call with 502
        self.held = None             # a threading.Event: sendMessage is recorded, its answer waits for it
        self.delay = 0.0             # seconds before each sendMessage is answered (as a real API takes)
        self._next_message_id = 1000
        self._lock = threading.Lock()
        super().__init__()

    def answer(self, method: str, raw_path: str, body: dict):
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

    def sent(self, token=None) -> list[dict]:
        return [p for t, m, p in self.calls if m == "sendMessage" and (token is None or t == token)]

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
            if method == "sendMessage":
                if self.fail_sends > 0:
                    self.fail_sends -= 1
                    return 500, {"ok": False, "error_code": 500, "description": "Internal Server Error"}
                text = payload.get("text")
                if not isinstance(text, str) or not 1 <= len(text) <= 4096:
                    return 400, {"ok": False, "error_code": 400, "description": "Bad Request: message text is empty"}
                self._next_message_id += 1
                self.delivered.append(text)
                return 200, {"ok": True, "result": {"message_id": self._next_message_id, "date": 1700000000,
                                                    "chat": {"id": payload.get("chat_id"), "type": "private"},
                                                    "text": text}}
            return 404, {"ok": False, "error_code": 404, "description": "Not Found: method not found"}


def update(update_id: int, user_id: int, text: str, first_name="Ann", last_name="Client") -> dict:
    """An Update as Telegram sends it to a webhook."""
    user = {"id": user_id, "is_bot": False, "first_name": first_name, "last_name": last_name,
            "username": f"user{user_id}"}
    return {"update_id": update_id, "message": {
        "message_id": update_id * 10, "from": user,
        "chat": {"id": user_id, "type": "private", "first_name": first_name, "last_name": last_name},
        "date": 1700000000, "text": text}}
