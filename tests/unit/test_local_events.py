"""The embedded event bus on its own: a slow reader never blocks the publisher."""
from app.adapters.events import LocalEvents


def test_local_backlog_drops_the_oldest_events_of_a_slow_reader():
    """A reader that does not keep up keeps the newest `backlog` events, never blocking the publisher."""
    bus = LocalEvents(backlog=3)
    slow = bus.subscribe(1)
    for n in range(5):
        bus.publish([1], {"type": "chat_message", "n": n})
    assert [slow.get(0)["n"] for _ in range(3)] == [2, 3, 4]
    assert slow.get(0.01) is None
    slow.close()
