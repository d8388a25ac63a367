"""The app's engine and outside parts, typed: `services()` instead of string keys in app.extensions.

`create_app` builds one `Services` and installs it; everything else asks `services()` (or
`services(app)` outside a request or job) for what it needs.
"""
from dataclasses import dataclass
from typing import TYPE_CHECKING, Callable

from flask import Flask, current_app

from app.engine.instances import Engine
from app.engine.ports import JobQueue
from app.ports import EventBus, FileStore, Notifier

if TYPE_CHECKING:  # app.channels asks services() for its adapters
    from app.channels.base import ChannelAdapter

KEY = "chatflow"


@dataclass(frozen=True)
class Services:
    engine: Engine
    jobs: JobQueue
    events: EventBus
    channels: "dict[str, ChannelAdapter]"  # by provider name
    files: FileStore
    notifier: Notifier
    health: Callable[[], dict]  # the jobs' part of /healthz


def install(app: Flask, services_: Services) -> None:
    app.extensions[KEY] = services_


def services(app: Flask | None = None) -> Services:
    """The services of `app`, or of the current app."""
    return (app or current_app).extensions[KEY]
