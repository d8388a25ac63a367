"""Posting a notification to an HTTP endpoint the admins configure (a chat tool, a pager)."""
import requests

from app.ports import Notifier


class NotifyError(Exception):
    pass


class HttpNotifier(Notifier):
    def __init__(self, timeout: float = 10.0):
        self.timeout = timeout

    def post(self, url: str, payload: dict) -> dict:
        """POST `payload` as JSON; raise NotifyError unless the endpoint answers 2xx."""
        try:
            response = requests.post(url, json=payload, timeout=self.timeout)
        except requests.RequestException as e:
            raise NotifyError(f"notification endpoint unreachable: {type(e).__name__}") from None
        if not 200 <= response.status_code < 300:
            raise NotifyError(f"notification endpoint answered HTTP {response.status_code}")
        return {"status": response.status_code}
