"""Each outside part's implementations name their port as a base class and define every method
of it themselves, with the same parameters: a port and its implementations cannot drift apart."""
import inspect

import pytest

from app.adapters.events import LocalEvents, LocalSubscription, RedisEvents, RedisSubscription
from app.file_store import DatabaseStore, FolderStore
from app.adapters.inprocess import InProcessJobQueue
from app.adapters.notify import HttpNotifier
from app.adapters.rq_jobs import RQJobQueue
from app.channels.base import ChannelAdapter
from app.channels.facebook import FacebookChannel
from app.channels.telegram import TelegramChannel
from app.engine.ports import JobQueue
from app.ports import EventBus, FileStore, Notifier, Subscription

IMPLEMENTATIONS = [
    (JobQueue, RQJobQueue), (JobQueue, InProcessJobQueue),
    (EventBus, RedisEvents), (EventBus, LocalEvents),
    (Subscription, RedisSubscription), (Subscription, LocalSubscription),
    (FileStore, DatabaseStore), (FileStore, FolderStore),
    (Notifier, HttpNotifier),
    (ChannelAdapter, TelegramChannel), (ChannelAdapter, FacebookChannel),
]


def methods(port) -> list[str]:
    return [name for name, value in vars(port).items() if callable(value) and not name.startswith("_")]


@pytest.mark.parametrize("port, implementation", IMPLEMENTATIONS,
                         ids=[f"{i.__name__}-{p.__name__}" for p, i in IMPLEMENTATIONS])
def test_implementation_declares_and_defines_its_port(port, implementation):
    assert port in implementation.__mro__, f"{implementation.__name__} does not name {port.__name__} as its base"
    assert methods(port), f"{port.__name__} has no methods"
    for name in methods(port):
        own = next((c for c in implementation.__mro__ if name in vars(c)), None)
        assert own is not None and own is not port, f"{implementation.__name__} does not define {name}"
        wanted = list(inspect.signature(getattr(port, name)).parameters)
        given = list(inspect.signature(getattr(implementation, name)).parameters)
        assert given == wanted, f"{implementation.__name__}.{name}{given} != {port.__name__}.{name}{wanted}"
