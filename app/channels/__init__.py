"""Channels by provider name. A new channel is one module implementing `ChannelAdapter`
(app/channels/base.py) plus its line in PROVIDERS; chat and job code ask `adapter(name)`.

Import rule: the standard library, `requests`, and Flask's `current_app` for the registry;
nothing else of `app`. Adapters get credentials as arguments and never touch the database.
"""
from importlib import import_module

from app.services import services

# provider name -> "module:class"; the class is built with the app's configuration.
PROVIDERS = {
    "telegram": "app.channels.telegram:TelegramChannel",
    "facebook": "app.channels.facebook:FacebookChannel",
    "web": "app.channels.web:WebChannel",
}


def build(config) -> dict:
    """One adapter per provider (each reads its base URL from the config), by provider name."""
    adapters = {}
    for name, target in PROVIDERS.items():
        module, cls = target.split(":")
        adapters[name] = getattr(import_module(module), cls)(config)
    return adapters


def adapter(provider: str):
    """The current app's adapter for `provider`; KeyError for a provider nobody registered."""
    return services().channels[provider]
