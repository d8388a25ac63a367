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
from collections import defaultdict

from redis import Redis

from app.ports import EventBus, Subscription

# Pub/sub channels are server-wide, not per database: the database number is part of the
# name, so installations sharing one Redis server on different databases never hear each other.
CHANNEL = "chatflow:{db}:events:user:{user_id}"
SUBSCRIBE_TIMEOUT = 10.0


class RedisEvents(EventBus):
    def __init__(self, url: str):
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
        return RedisSubscription(self.redis, self.channel(user_id))


class RedisSubscription(Subscription):
    def __init__(self, redis: Redis, channel: str):
        self.pubsub = redis.pubsub()
        self.pubsub.subscribe(channel)
        # SUBSCRIBE is only sent above; wait until Redis confirms it, so that anything
        # published from here on (by any process) is received.
        deadline = time.monotonic() + SUBSCRIBE_TIMEOUT
        while (left := deadline - time.monotonic()) > 0:
            message = self.pubsub.get_message(timeout=left)
            if message is not None and message["type"] == "subscribe":
                return
        self.pubsub.close()
        raise TimeoutError(f"Redis did not confirm the subscription to {channel}")

    def get(self, timeout: float) -> dict | None:
        """The next event, or None when `timeout` seconds pass without one (health-check
        pongs are skipped)."""
        deadline = time.monotonic() + timeout
        while (left := deadline - time.monotonic()) > 0:
            message = self.pubsub.get_message(timeout=left)
            if message is not None and message["type"] == "message":
                return json.loads(message["data"])
        return None

    def close(self) -> None:
        self.pubsub.close()


class LocalEvents(EventBus):
    """Subscribers in this process (embedded default); a slow reader drops its oldest events."""

    def __init__(self, backlog: int = 1000):
        self.backlog = backlog
        self._queues: dict[int, set[queue.Queue]] = defaultdict(set)
        self._lock = threading.Lock()

    def publish(self, user_ids, event: dict) -> None:
        with self._lock:
            targets = [q for user_id in user_ids for q in self._queues.get(user_id, ())]
        for q in targets:
            while True:
                try:
                    q.put_nowait(event)
                    break
                except queue.Full:
                    try:
                        q.get_nowait()
                    except queue.Empty:
                        pass

    def subscribe(self, user_id: int) -> "LocalSubscription":
        q = queue.Queue(maxsize=self.backlog)
        with self._lock:
            self._queues[user_id].add(q)
        return LocalSubscription(self, user_id, q)

    def _unsubscribe(self, user_id: int, q: queue.Queue) -> None:
        with self._lock:
            self._queues[user_id].discard(q)
            if not self._queues[user_id]:
                del self._queues[user_id]


class LocalSubscription(Subscription):
    def __init__(self, events: LocalEvents, user_id: int, q: queue.Queue):
        self.events, self.user_id, self.q = events, user_id, q

    def get(self, timeout: float) -> dict | None:
        try:
            return self.q.get(timeout=timeout)
        except queue.Empty:
            return None

    def close(self) -> None:
        self.events._unsubscribe(self.user_id, self.q)
