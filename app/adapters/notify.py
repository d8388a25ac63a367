"""Posting a notification to an HTTP endpoint the admins configure (a chat tool, a pager)."""
import requests


class NotifyError(Exception):
    pass


def post_notification(url: str, payload: dict, timeout: float = 10.0) -> dict:
    """POST `payload` as JSON; raise NotifyError unless the endpoint answers 2xx."""
    try:
        response = requests.post(url, json=payload, timeout=timeout)
    except requests.RequestException as e:
        raise NotifyError(f"notification endpoint unreachable: {type(e).__name__}") from None
    if not 200 <= response.status_code < 300:
        raise NotifyError(f"notification endpoint answered HTTP {response.status_code}")
    return {"status": response.status_code}
