"""Website chat: the widget on the company's own pages is the provider.

Visitors write through the visitor API (app/api/widget.py), not a webhook, so there is nothing
to parse or register; a reply is "sent" by telling the visitor's open widget over the event bus,
and the widget reads it back from the visitor API. A widget that is closed finds it on its next
load: the message is stored, so nothing depends on the event arriving.
"""
from app.channels.base import ChannelRef, OutboundFile
from app.services import services

# A web channel's widget settings and their defaults (its `widget` column holds them).
WIDGET_DEFAULTS = {"allowed_origins": [], "title": "Chat with us", "welcome_text": "Hi! How can we help?",
                   "ask_contact": False}
# The channel `chatflow serve --demo` makes, whose widget /demo shows.
DEMO_CHANNEL = "Demo website"


def widget_setting(channel, name: str):
    """A web channel's widget setting (allowed_origins, title ...), or its default."""
    return (channel.widget or {}).get(name, WIDGET_DEFAULTS[name])


# The bus is keyed like users' streams; visitors' keys are strings, users' ints.
VISITOR_KEY = "visitor:{channel_id}:{visitor_id}"


def visitor_key(channel_id: int, visitor_id: str) -> str:
    return VISITOR_KEY.format(channel_id=channel_id, visitor_id=visitor_id)


def tell_visitor(channel_id: int, visitor_id: str, event: dict) -> None:
    """Publish now: a reply's delivery runs outside any transaction (app.chats.live tells after commit)."""
    bus = services().events
    if bus is not None:
        bus.publish([visitor_key(channel_id, visitor_id)], event)


class WebChannel:
    needs_site_url = False
    names_from_profile = False

    def __init__(self, config):
        self.config = config

    def parse(self, body, channel=None, app_id=None):
        raise ValueError("website chat has no webhook: visitors write through /widget/api")

    def register_webhook(self, channel, site_url):
        """Nothing to register: the widget script names the channel by its widget_key."""

    def unregister_webhook(self, channel):
        """Nothing to remove: an inactive channel's widget keeps working and its chats wait unrouted."""

    def send(self, channel: ChannelRef, address: str, text: str, file: OutboundFile | None, reference: str) -> str:
        tell_visitor(channel.id, address, {"type": "message", "message_id": int(reference)})
        return f"web-{reference}"

    def fetch_file(self, channel, ref: dict, max_bytes: int) -> bytes:
        raise ValueError("visitors' files are stored as they are uploaded")

    def acknowledge(self, channel, ack: dict) -> None:
        """Nothing to acknowledge."""

    def profile_name(self, channel, user_id: str):
        return None
