"""The reports' pure arithmetic: periods and local buckets across DST, percentiles, service level."""
from datetime import datetime, timezone
from zoneinfo import ZoneInfo

import pytest

from app.reports.arithmetic import PeriodError, buckets, percentile, period, service_level, summary
from app.reports.table import flatten, rows, to_csv

UTC = timezone.utc
NOW = datetime(2026, 10, 25, 12, 0, tzinfo=UTC)


def test_percentiles_interpolate_between_ranks_as_percentile_cont():
    assert percentile([], 0.5) is None
    assert percentile([7], 0.9) == 7
    assert percentile([30, 360, 40], 0.5) == 40
    assert percentile([30, 40, 360], 0.9) == pytest.approx(296)
    assert percentile([1, 2, 3, 4], 0.5) == 2.5
    assert summary([600, 1200, 3600, 5380]) == {"count": 4, "avg": 2695.0, "p50": 2400.0, "p90": 4846.0}
    assert summary([]) == {"count": 0, "avg": None, "p50": None, "p90": None}


def test_service_level_counts_abandoned_waits_as_missed():
    assert service_level([40, 360, 30, 60], 1, 60) == {"target_seconds": 60, "within": 3, "total": 5, "share": 0.6}
    assert service_level([], 0, 60)["share"] is None
    assert service_level([], 2, 60)["share"] == 0


def test_a_day_in_berlin_when_summer_time_ends_has_25_hours():
    p = period("2026-10-25", None, "Europe/Berlin", None, NOW)
    assert (p.start, p.end) == (datetime(2026, 10, 24, 22, tzinfo=UTC), datetime(2026, 10, 25, 23, tzinfo=UTC))
    hours = p.buckets()
    assert p.bucket == "hour" and len(hours) == 25
    # 02:00 happens twice: once in summer time, once in winter time
    assert [b.label for b in hours[2:4]] == ["2026-10-25T02:00:00+02:00", "2026-10-25T02:00:00+01:00"]
    assert hours[3].start == datetime(2026, 10, 25, 1, tzinfo=UTC)


def test_a_day_in_berlin_when_summer_time_starts_has_23_hours():
    days = buckets(datetime(2026, 3, 28, tzinfo=UTC), datetime(2026, 3, 31, tzinfo=UTC), ZoneInfo("Europe/Berlin"), "day")
    assert [(b.label, (b.end - b.start).total_seconds() / 3600) for b in days] == [
        ("2026-03-28T00:00:00+01:00", 23.0),   # clipped: the period starts an hour into it
        ("2026-03-29T00:00:00+01:00", 23.0),
        ("2026-03-30T00:00:00+02:00", 24.0),
        ("2026-03-31T00:00:00+02:00", 2.0)]    # clipped at the period's end
    hours = buckets(datetime(2026, 3, 29, 0, tzinfo=UTC), datetime(2026, 3, 29, 3, tzinfo=UTC),
                    ZoneInfo("Europe/Berlin"), "hour")
    assert [b.label for b in hours] == ["2026-03-29T01:00:00+01:00", "2026-03-29T03:00:00+02:00",
                                        "2026-03-29T04:00:00+02:00"]


def test_half_and_three_quarter_hour_offsets():
    hours = buckets(datetime(2026, 3, 10, 9, tzinfo=UTC), datetime(2026, 3, 10, 10, tzinfo=UTC),
                    ZoneInfo("Asia/Kathmandu"), "hour")
    assert [(b.label, b.start.minute) for b in hours] == [("2026-03-10T14:00:00+05:45", 0),
                                                          ("2026-03-10T15:00:00+05:45", 15)]


def test_periods_default_to_today_and_refuse_what_they_cannot_read():
    p = period(None, None, None, None, NOW)
    assert (p.start, p.end, p.bucket) == (datetime(2026, 10, 25, tzinfo=UTC), datetime(2026, 10, 26, tzinfo=UTC),
                                          "hour")
    assert period("2026-10-01", "2026-10-08", "UTC", None, NOW).bucket == "day"
    assert period("2026-10-01T10:00", "2026-10-01T12:00+02:00", "Europe/Berlin", None, NOW).start == \
        datetime(2026, 10, 1, 8, tzinfo=UTC)
    for args, field in [(("10/01/2026", None, None, None), "from"), (("2026-10-02", "2026-10-01", None, None), "to"),
                        ((None, None, "Nowhere/Else", None), "tz"), ((None, None, None, "minute"), "bucket"),
                        (("2025-01-01", "2026-10-01", None, None), "to")]:
        with pytest.raises(PeriodError) as e:
            period(*args, NOW)
        assert e.value.field == field


def test_csv_rows_flatten_nested_figures():
    assert flatten({"a": 1, "b": {"c": None, "d": {"e": 2}}, "list": [1]}) == {"a": 1, "b.c": None, "b.d.e": 2}
    report = {"period": {}, "opened": 2, "now": {"waiting": 1}, "channels": [{"channel_id": 3, "opened": 2}]}
    table = rows("overview", report)
    assert table == [{"row": "total", "opened": 2, "now.waiting": 1}, {"row": "channel", "channel_id": 3, "opened": 2}]
    assert to_csv(table) == "row,opened,now.waiting,channel_id\r\ntotal,2,1,\r\nchannel,2,,3\r\n"
