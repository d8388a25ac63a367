"""What every channel speaks, whatever its provider: the events a webhook turns into, the
file a reply carries, the error a provider call raises, and the interface a channel implements.

Chat and job code know only this module; each provider's module translates its own wire
format into these events and these calls into its own API.
"""
from dataclasses import dataclass, field
from datetime import datetime
from typing import Protocol

import requests
import urllib3

from app.models.states import MessageKind

KINDS = tuple(MessageKind)


class ProviderError(Exception):
    """A provider call failed. `retryable` says whether trying again later may succeed;
    `maybe_delivered` that the request may have reached the provider all the same (no answer
    came), so sending it again could deliver it twice; `code` names a refusal the caller shows
    (token_refused, webhook_refused, file_too_large)."""

    def __init__(self, message: str, retryable: bool, maybe_delivered: bool = False, code: str | None = None):
        super().__init__(message)
        self.retryable, self.maybe_delivered, self.code = retryable, maybe_delivered, code


def transport_error(what: str, error: requests.RequestException) -> ProviderError:
    """No answer: known not delivered only when no connection was made (refused, connect timeout)."""
    cause = getattr(error.args[0], "reason", None) if error.args else None
    not_sent = isinstance(error, requests.ConnectTimeout) or (
        isinstance(error, requests.ConnectionError)
        and isinstance(cause, (urllib3.exceptions.NewConnectionError, urllib3.exceptions.ConnectTimeoutError)))
    return ProviderError(f"{what}: {type(error).__name__}{'' if not_sent else ' (no answer: may have been delivered)'}",
                         retryable=True, maybe_delivered=not not_sent)


def provider_call(what: str, method: str, url: str, **kwargs) -> tuple[requests.Response, dict]:
    """One HTTP call to a provider: (response, its JSON body, {} when it has none); no answer at
    all is a ProviderError saying whether the request may have been delivered."""
    try:
        response = requests.request(method, url, **kwargs)
    except requests.RequestException as e:
        raise transport_error(what, e) from None
    try:
        body = response.json()
    except ValueError:
        body = {}
    return response, body if isinstance(body, dict) else {}


@dataclass(frozen=True)
class ChannelRef:
    """What a provider call needs of a channel, read from its row beforehand: calls are made
    with no database transaction open."""

    id: int
    provider: str
    token: str | None = field(default=None, repr=False)
    page_id: str | None = None
    page_access_token: str | None = field(default=None, repr=False)

    @classmethod
    def of(cls, channel) -> "ChannelRef":
        return cls(channel.id, channel.provider, channel.token, channel.page_id, channel.page_access_token)


class UnsupportedUpdate(Exception):
    """A well-formed delivery that carries nothing for an operator (a group chat, a bot being
    blocked): logged and answered 200."""


@dataclass(frozen=True)
class InboundFile:
    """A file a client sent, not yet downloaded: `ref` is what the channel needs to fetch it."""

    ref: dict
    name: str
    content_type: str
    size: int | None = None


@dataclass(frozen=True)
class InboundMessage:
    """A message in a conversation with a client, as any channel delivers it.

    Normally the client's (`direction` in). A message a person sent to the client from the
    provider's own tools (Meta's Page inbox) arrives as `direction` out with its `origin`.
    """

    external_id: str   # for idempotency (Telegram update_id, Messenger mid)
    user_id: str       # the provider's id of the client
    address: str       # where replies go
    name: str = ""
    kind: str = "text"
    text: str = ""     # the text, or the caption of a file
    payload: dict | None = None   # location, contact, button: see README "Message kinds"
    files: tuple[InboundFile, ...] = ()
    provider_message_id: str | None = None   # what a later edit or receipt names
    direction: str = "in"
    origin: str | None = None
    bot_holds: bool = False       # an external bot owns the conversation (Messenger standby)
    ack: dict | None = None       # the channel must acknowledge receipt (Telegram callback query)


@dataclass(frozen=True)
class InboundEdit:
    """The client changed a message they sent earlier."""

    user_id: str
    provider_message_id: str
    text: str | None = None
    payload: dict | None = None   # a live location moving


@dataclass(frozen=True)
class Receipt:
    """Our messages to a client up to `watermark` were delivered to (or read by) them."""

    user_id: str
    status: str        # delivered | read
    watermark: datetime


@dataclass(frozen=True)
class ThreadControl:
    """An external bot platform passed the conversation to us (`passed`) or took it back."""

    user_id: str
    passed: bool


@dataclass(frozen=True)
class OutboundFile:
    name: str
    content_type: str
    content: bytes = field(repr=False)

    @property
    def is_image(self) -> bool:
        return self.content_type in ("image/jpeg", "image/png", "image/gif", "image/webp")


class ChannelAdapter(Protocol):
    """One provider. Implementations are registered by provider name in `app.channels`.

    `channel` arguments hold the credentials: a ChannelRef for the calls made outside a
    transaction (send, fetch_file, acknowledge, profile_name), the Channel row for
    register_webhook (which records what it learns there). Nothing here touches the database.
    """

    # True when the provider calls a URL of ours that SiteUrl must make public.
    needs_site_url: bool
    # True when updates carry no client name and profile_name must be asked.
    names_from_profile: bool

    def parse(self, body, channel=None, app_id: str | None = None) -> tuple[list, list[str]]:
        """(events, skipped reasons) of one webhook body; ValueError when it is malformed.
        Events are InboundMessage, InboundEdit, Receipt or ThreadControl; channels that serve
        several accounts from one URL (Messenger pages) answer (account id, event) pairs.
        `app_id`: our app's id at the provider (setting FacebookAppId), which echoes of our sends carry."""

    def register_webhook(self, channel, site_url: str | None) -> None:
        """Check the channel's credentials and point the provider at our webhook."""

    def unregister_webhook(self, channel) -> None:
        """Stop the provider calling our webhook for this channel (it was deactivated)."""

    def send(self, channel, address: str, text: str, file: OutboundFile | None, reference: str) -> str | None:
        """Send a message (text, a file, or a file with its caption); the provider's message id.
        `reference` is ours for the message, for the provider to echo back."""

    def fetch_file(self, channel, ref: dict, max_bytes: int) -> bytes:
        """The bytes of an inbound file; ProviderError(code="file_too_large") above max_bytes."""

    def acknowledge(self, channel, ack: dict) -> None:
        """Tell the provider an inbound event was received (a Telegram callback query)."""

    def profile_name(self, channel, user_id: str) -> str | None:
        """The client's name from the provider's profile API, when it has one."""
