"""The app's outside parts as small Protocols; `create_app` picks the implementations.

Each implementation names its port as a base class, and tests/unit/test_ports.py checks that it
defines every method of it with the same parameters, so a port and its implementations cannot
drift apart. The ports kept beside what uses them: `JobQueue` (app.engine.ports, the engine's)
and `ChannelAdapter` (app.channels.base, with the events and files a channel speaks).
"""
from typing import Protocol


class Subscription(Protocol):
    """One user's stream of live events, for as long as their `/api/events` request lasts."""

    ended: bool  # the bus is stopping: the stream should end (get answers None at once)

    def get(self, timeout: float) -> dict | None:
        """The next event, or None after `timeout` seconds without one (at once once `ended`)."""

    def close(self) -> None:
        """Stop listening; what was not read is dropped."""


class EventBus(Protocol):
    """Live events for signed-in users, from whichever process caused them."""

    def publish(self, user_ids, event: dict) -> None:
        """Tell each user in `user_ids` of `event`; nobody listening is no error."""

    def subscribe(self, user_id: int) -> Subscription:
        """Start listening for `user_id`'s events."""

    def stop(self, timeout: float) -> int:
        """End every subscription (`ended`, their `get` wakes) and wait up to `timeout` seconds
        for each to be closed; answers how many are still open."""


class FileStore(Protocol):
    """Where file bytes live (attachments, the notification sound)."""

    def put(self, content: bytes, name: str, content_type: str) -> str:
        """Keep the bytes; the key to read them back (part of the caller's transaction)."""

    def get(self, key: str) -> bytes | None:
        """The bytes under `key`, or None when they are gone."""


class Notifier(Protocol):
    """Posts a notification to an HTTP endpoint the admins configure (a chat tool, a pager)."""

    def post(self, url: str, payload: dict) -> dict:
        """POST `payload` as JSON; answers {"status"}; NotifyError unless the endpoint says 2xx."""
