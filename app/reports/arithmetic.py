"""The reports' arithmetic the databases cannot share: periods and buckets in a time zone,
percentiles, service level. Pure functions; the queries hand them numbers and instants.
"""
import math
from dataclasses import dataclass
from datetime import date, datetime, time, timedelta, timezone
from zoneinfo import ZoneInfo, ZoneInfoNotFoundError

BUCKETS = ("hour", "day")
MAX_PERIOD = timedelta(days=366)


class PeriodError(ValueError):
    """A period that cannot be read; `field` names the query parameter at fault."""

    def __init__(self, field: str, message: str):
        super().__init__(message)
        self.field = field


@dataclass(frozen=True)
class Bucket:
    start: datetime  # UTC, inclusive
    end: datetime    # UTC, exclusive
    label: str       # the local start, ISO 8601 with its offset that day


@dataclass(frozen=True)
class Period:
    start: datetime  # UTC, inclusive
    end: datetime    # UTC, exclusive
    tz: ZoneInfo
    bucket: str

    def buckets(self) -> list[Bucket]:
        return buckets(self.start, self.end, self.tz, self.bucket)


def zone(name: str | None) -> ZoneInfo:
    try:
        return ZoneInfo(name or "UTC")
    except (ZoneInfoNotFoundError, ValueError):
        raise PeriodError("tz", f"unknown time zone {name!r}; use an IANA name such as Europe/Berlin") from None


def local_midnight(day: date, tz: ZoneInfo) -> datetime:
    """The first instant of a local day, in UTC. Where DST skips midnight, ZoneInfo reads the
    missing wall time with the offset before the change: exactly the instant the day starts."""
    return datetime.combine(day, time(0), tz).astimezone(timezone.utc)


def parse_instant(value: str, tz: ZoneInfo, field: str) -> datetime:
    """ISO date (that local midnight) or date-time (without an offset: local time in `tz`), as UTC."""
    try:
        if len(value) == 10:
            return local_midnight(date.fromisoformat(value), tz)
        instant = datetime.fromisoformat(value.replace("Z", "+00:00"))
    except ValueError:
        raise PeriodError(field, f"{field}: not an ISO 8601 date or date-time: {value!r}") from None
    if instant.tzinfo is None:
        instant = instant.replace(tzinfo=tz)
    return instant.astimezone(timezone.utc)


def period(start: str | None, end: str | None, tz_name: str | None, bucket: str | None,
           now: datetime) -> Period:
    """The period a report covers: [from, to) in UTC. Default: today in `tz`; bucket default:
    hour up to two days, else day."""
    tz = zone(tz_name)
    today = now.astimezone(tz).date()
    lo = parse_instant(start, tz, "from") if start else local_midnight(today, tz)
    if end:
        hi = parse_instant(end, tz, "to")
    else:
        hi = local_midnight(lo.astimezone(tz).date() + timedelta(days=1), tz)
    if hi <= lo:
        raise PeriodError("to", "to: must be after from")
    if hi - lo > MAX_PERIOD:
        raise PeriodError("to", f"the period may span at most {MAX_PERIOD.days} days")
    if bucket is not None and bucket not in BUCKETS:
        raise PeriodError("bucket", f"bucket: one of {', '.join(BUCKETS)}")
    return Period(lo, hi, tz, bucket or ("hour" if hi - lo <= timedelta(days=2) else "day"))


def _floor(instant: datetime, tz: ZoneInfo, bucket: str) -> datetime:
    local = instant.astimezone(tz)
    if bucket == "day":
        return local_midnight(local.date(), tz)
    return local.replace(minute=0, second=0, microsecond=0).astimezone(timezone.utc)


def buckets(start: datetime, end: datetime, tz: ZoneInfo, bucket: str) -> list[Bucket]:
    """Local hours or days covering [start, end), clipped to it. Days are 23 or 25 hours long
    where DST changes; hours follow the local clock (an hour repeated in autumn is two buckets)."""
    out, lo = [], _floor(start, tz, bucket)
    while lo < end:
        if bucket == "day":
            hi = local_midnight(lo.astimezone(tz).date() + timedelta(days=1), tz)
        else:
            hi = _floor(lo + timedelta(hours=1), tz, "hour")
            if hi <= lo:  # a half-hour offset change: the clock's hour starts later
                hi = lo + timedelta(hours=1)
        out.append(Bucket(max(lo, start), min(hi, end), lo.astimezone(tz).isoformat()))
        lo = hi
    return out


def percentile(values: list[float], p: float) -> float | None:
    """Linear interpolation between closest ranks (PostgreSQL's percentile_cont); None when empty."""
    if not values:
        return None
    ordered = sorted(values)
    rank = (len(ordered) - 1) * p
    lo, hi = math.floor(rank), math.ceil(rank)
    return ordered[lo] + (ordered[hi] - ordered[lo]) * (rank - lo)


def summary(values: list[float]) -> dict:
    """Count, mean, p50 and p90 of durations in seconds (None when there are none), to the millisecond."""
    def r(x):
        return None if x is None else round(x, 3)
    return {"count": len(values), "avg": r(sum(values) / len(values)) if values else None,
            "p50": r(percentile(values, 0.5)), "p90": r(percentile(values, 0.9))}


def service_level(accept_waits: list[float], abandoned: int, target_seconds: float) -> dict:
    """Share of chats whose wait ended in the period that were accepted within the target.

    A wait ends when the chat is accepted or when it completes without ever being accepted
    (abandoned, counted as missing the target). None when no wait ended.
    """
    within = sum(1 for w in accept_waits if w <= target_seconds)
    total = len(accept_waits) + abandoned
    return {"target_seconds": target_seconds, "within": within, "total": total,
            "share": round(within / total, 4) if total else None}
