"""Fixed-window request counters (per visitor, per IP): in Redis when there is one, so every web
process counts together; in this process otherwise (the embedded default is one process)."""
import math
import threading
import time

from redis import Redis

WINDOW_SECONDS = 60


def verdict(count: int, limit: int, now: float, window: int = WINDOW_SECONDS) -> int | None:
    """None when the `count`-th request of the window that holds `now` is allowed, else the
    seconds until the window ends (what Retry-After says)."""
    if count <= limit:
        return None
    return max(1, math.ceil(window - now % window))


class LocalCounters:
    def __init__(self):
        self._counts: dict[tuple, int] = {}
        self._lock = threading.Lock()

    def hit(self, key: str, now: float, window: int = WINDOW_SECONDS) -> int:
        slot = int(now // window)
        with self._lock:
            # Forget past windows so the dict holds only the current one.
            self._counts = {k: v for k, v in self._counts.items() if k[1] == slot} \
                if len(self._counts) > 10_000 else self._counts
            self._counts[(key, slot)] = self._counts.get((key, slot), 0) + 1
            return self._counts[(key, slot)]


class RedisCounters:
    def __init__(self, url: str):
        self.redis = Redis.from_url(url)

    def hit(self, key: str, now: float, window: int = WINDOW_SECONDS) -> int:
        name = f"chatflow:ratelimit:{key}:{int(now // window)}"
        with self.redis.pipeline() as pipe:
            pipe.incr(name)
            pipe.expire(name, window + 5)
            count, _ = pipe.execute()
        return int(count)


def build(config):
    return RedisCounters(config["REDIS_URL"]) if config.get("REDIS_URL") else LocalCounters()


def check(counters, key: str, limit: int) -> int | None:
    """Count one request under `key`; the Retry-After seconds when it is one too many."""
    now = time.time()
    return verdict(counters.hit(key, now), limit, now)
