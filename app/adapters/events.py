"""Live events for signed-in users, carried from whichever process caused them to the web
process that holds the user's `/api/events` stream.

Production: Redis pub/sub, one channel per user, so a chat offered by a `chatflow worker`
reaches a browser connected to any web process. Embedded default: subscribers live in this
process, as the jobs do. Events are hints, not a log: a client that (re)connects reloads
its lists from the API, so an event missed while disconnected loses nothing.
"""
import json
import queue
import threading
import time
import uuid
from collections import defaultdict

from redis import Redis

from app.ports import EventBus, Subscription

# Pub/sub channels are server-wide, not per database: the database number is part of the
# name, so installations sharing one Redis server on different databases never hear each other.
CHANNEL = "chatflow:{db}:events:user:{user_id}"
SUBSCRIBE_TIMEOUT = 10.0


class _OpenSubscriptions:
    """The subscriptions a bus handed out and not yet closed, so that stopping the app ends its
    streams and waits for their last words (a stream records its user's disconnect as it ends)."""

    def __init__(self):
        self._open: set = set()
        self._changed = threading.Condition()
        self._stopping = False

    def _opened(self, subscription) -> None:
        with self._changed:
            self._open.add(subscription)
            if self._stopping:
                subscription.ended = True

    def _closed(self, subscription) -> None:
        with self._changed:
            self._open.discard(subscription)
            self._changed.notify_all()

    def stop(self, timeout: float) -> int:
        with self._changed:
            self._stopping = True
            ending = list(self._open)
        for subscription in ending:
            subscription._end()
        with self._changed:
            self._changed.wait_for(lambda: not self._open, timeout)
            return len(self._open)


class RedisEvents(_OpenSubscriptions, EventBus):
    def __init__(self, url: str):
        super().__init__()
        self.redis = Redis.from_url(url, health_check_interval=30)
        self.db = self.redis.connection_pool.connection_kwargs.get("db", 0)

    def channel(self, user_id: int) -> str:
        return CHANNEL.format(db=self.db, user_id=user_id)

    def publish(self, user_ids, event: dict) -> None:
        payload = json.dumps(event)
        with self.redis.pipeline(transaction=False) as pipe:
            for user_id in user_ids:
                pipe.publish(self.channel(user_id), payload)
            pipe.execute()

    def subscribe(self, user_id: int) -> "RedisSubscription":
        subscription = RedisSubscription(self, self.channel(user_id))
        self._opened(subscription)
        return subscription


class RedisSubscription(Subscription):
    def __init__(self, bus: RedisEvents, channel: str):
        self.bus, self.ended = bus, False
        # Its own channel too: `_end` publishes there to wake a `get` blocked on the socket.
        self.wake_channel = f"{channel}:wake:{uuid.uuid4().hex}"
        self.pubsub = bus.redis.pubsub()
        self.pubsub.subscribe(channel, self.wake_channel)
        # SUBSCRIBE is only sent above; wait until Redis confirms it, so that anything
        # published from here on (by any process) is received.
        confirmed, deadline = 0, time.monotonic() + SUBSCRIBE_TIMEOUT
        while (left := deadline - time.monotonic()) > 0:
            message = self.pubsub.get_message(timeout=left)
            if message is not None and message["type"] == "subscribe":
                confirmed += 1
                if confirmed == 2:
                    return
        self.pubsub.close()
        raise TimeoutError(f"Redis did not confirm the subscription to {channel}")

    def get(self, timeout: float) -> dict | None:
        """The next event, or None when `timeout` seconds pass without one (health-check
        pongs are skipped)."""
        deadline = time.monotonic() + timeout
        while not self.ended and (left := deadline - time.monotonic()) > 0:
            message = self.pubsub.get_message(timeout=left)
            if message is not None and message["type"] == "message" and not self.ended:
                return json.loads(message["data"])
        return None

    def _end(self) -> None:
        self.ended = True
        self.bus.redis.publish(self.wake_channel, "end")

    def close(self) -> None:
        self.pubsub.close()
        self.bus._closed(self)


class LocalEvents(_OpenSubscriptions, EventBus):
    """Subscribers in this process (embedded default); a slow reader drops its oldest events."""

    def __init__(self, backlog: int = 1000):
        super().__init__()
        self.backlog = backlog
        self._queues: dict[int, set[queue.Queue]] = defaultdict(set)
        self._lock = threading.Lock()

    def publish(self, user_ids, event: dict) -> None:
        with self._lock:
            targets = [q for user_id in user_ids for q in self._queues.get(user_id, ())]
        for q in targets:
            _put_dropping_oldest(q, event)

    def subscribe(self, user_id: int) -> "LocalSubscription":
        q = queue.Queue(maxsize=self.backlog)
        with self._lock:
            self._queues[user_id].add(q)
        subscription = LocalSubscription(self, user_id, q)
        self._opened(subscription)
        return subscription

    def _unsubscribe(self, user_id: int, q: queue.Queue) -> None:
        with self._lock:
            self._queues[user_id].discard(q)
            if not self._queues[user_id]:
                del self._queues[user_id]


def _put_dropping_oldest(q: queue.Queue, item) -> None:
    while True:
        try:
            q.put_nowait(item)
            return
        except queue.Full:
            try:
                q.get_nowait()
            except queue.Empty:
                pass


_WAKE = object()  # what `_end` puts in the queue to wake a blocked `get`


class LocalSubscription(Subscription):
    def __init__(self, events: LocalEvents, user_id: int, q: queue.Queue):
        self.events, self.user_id, self.q, self.ended = events, user_id, q, False

    def get(self, timeout: float) -> dict | None:
        if self.ended:
            return None
        try:
            event = self.q.get(timeout=timeout)
        except queue.Empty:
            return None
        return None if event is _WAKE or self.ended else event

    def _end(self) -> None:
        self.ended = True
        _put_dropping_oldest(self.q, _WAKE)

    def close(self) -> None:
        self.events._unsubscribe(self.user_id, self.q)
        self.events._closed(self)
