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

CHANNEL = "chatflow:events:user:{}"


class RedisEvents:
    def __init__(self, url: str):
        self.redis = Redis.from_url(url, health_check_interval=30)

    def publish(self, user_ids, event: dict) -> None:
        payload = json.dumps(event)
        with self.redis.pipeline(transaction=False) as pipe:
            for user_id in user_ids:
                pipe.publish(CHANNEL.format(user_id), payload)
            pipe.execute()

    def subscribe(self, user_id: int) -> "RedisSubscription":
        return RedisSubscription(self.redis, CHANNEL.format(user_id))


class RedisSubscription:
    def __init__(self, redis: Redis, channel: str):
        self.pubsub = redis.pubsub(ignore_subscribe_messages=True)
        self.pubsub.subscribe(channel)  # subscribed from here on: nothing published later is missed

    def get(self, timeout: float) -> dict | None:
        """The next event, or None when `timeout` seconds pass without one."""
        deadline = time.monotonic() + timeout
        while (left := deadline - time.monotonic()) > 0:
            message = self.pubsub.get_message(timeout=left)
            if message is not None and message["type"] == "message":
                return json.loads(message["data"])
        return None

    def close(self) -> None:
        self.pubsub.close()


class LocalEvents:
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


class LocalSubscription:
    def __init__(self, events: LocalEvents, user_id: int, q: queue.Queue):
        self.events, self.user_id, self.q = events, user_id, q

    def get(self, timeout: float) -> dict | None:
        try:
            return self.q.get(timeout=timeout)
        except queue.Empty:
            return None

    def close(self) -> None:
        self.events._unsubscribe(self.user_id, self.q)
