"""Reports over HTTP against a known day of chats (tests/report_day.py): every figure of the
overview, queue, operator and timeline reports, time-zone bucketing, an empty period, CSV."""
import csv
import io

import pytest

import report_day as day
from chat_helpers import error, ok
from conftest import Api

Q = f"from={day.DAY}&to=2026-03-11"


@pytest.fixture
def known(app, monkeypatch):
    monkeypatch.setattr("app.api.reports.utcnow", lambda: day.NOW)
    return Api(app), day.build(app)


def figures(row: dict, keys) -> dict:
    return {k: row[k] for k in keys}


def test_overview_of_the_known_day(known):
    api, ids = known
    report = ok(api.get(f"/api/reports/overview?{Q}"))
    assert figures(report, day.TOTAL) == day.TOTAL
    assert report["period"] == {"from": "2026-03-10T00:00:00+00:00", "to": "2026-03-11T00:00:00+00:00", "tz": "UTC",
                                "bucket": "hour", "queue_id": None, "channel_id": None, "service_level_seconds": 60}
    assert figures(report["now"], day.NOW_TILES) == day.NOW_TILES
    by_channel = {c["channel_name"]: c for c in report["channels"]}
    assert figures(by_channel["Sales bot"], day.TOTAL) == figures(day.SALES, day.TOTAL)
    assert figures(by_channel["Support page"], day.TOTAL) == figures(day.SUPPORT, day.TOTAL)
    # the channel filter gives the channel's figures, the queue filter the queue's
    only = ok(api.get(f"/api/reports/overview?{Q}&channel_id={ids['facebook']}"))
    assert figures(only, day.TOTAL) == figures(day.SUPPORT, day.TOTAL)
    assert [c["channel_name"] for c in only["channels"]] == ["Support page"]
    assert only["now"]["waiting"] == 1
    sales = ok(api.get(f"/api/reports/overview?{Q}&queue_id={ids['sales']}"))
    assert figures(sales, day.TOTAL) == figures(day.SALES, day.TOTAL)
    assert sales["now"]["waiting"] == 0 and sales["now"]["oldest_wait_seconds"] is None


def test_queues_operators_and_the_service_level_setting(known):
    api, ids = known
    queues = {q["queue_name"]: q for q in ok(api.get(f"/api/reports/queues?{Q}"))["queues"]}
    assert figures(queues["Sales"], day.SALES) == day.SALES
    assert figures(queues["Support"], day.SUPPORT) == day.SUPPORT
    operators = {o["login"]: o for o in ok(api.get(f"/api/reports/operators?{Q}"))["operators"]}
    assert figures(operators["ann"], day.ANN) == day.ANN
    assert figures(operators["bob"], day.BOB) == day.BOB
    assert operators["bob"]["chats_in_work"] == 1 and operators["ann"]["status"] == "active"
    # Support's figures for ann: her two accepts and the completion of chat 3 only
    support = {o["login"]: o for o in ok(api.get(f"/api/reports/operators?{Q}&queue_id={ids['support']}"))["operators"]}
    assert figures(support["ann"], day.ANN) == {"offers": 0, "offers_missed": 0, "accepted": 2, "completed": 1,
                                                "handle_time": day.s(1, 570.0, 570.0, 570.0)}
    ok(api.put("/api/settings/ServiceLevelSeconds", {"value": 35}))
    overview = ok(api.get(f"/api/reports/overview?{Q}"))
    assert overview["service_level"] == {"target_seconds": 35, "within": 1, "total": 4, "share": 0.25}


def test_timeline_buckets_in_utc_and_other_time_zones(known):
    api, _ = known
    hours = ok(api.get(f"/api/reports/timeline?{Q}"))["buckets"]
    assert len(hours) == 24 and hours[9]["bucket"] == "2026-03-10T09:00:00+00:00"
    assert [(h["opened"], h["completed"]) for h in hours] == \
        [(0, 1)] + [(0, 0)] * 8 + [(2, 1), (0, 1)] + [(0, 0)] * 2 + [(1, 1)] + [(0, 0)] * 8 + [(1, 1), (2, 0)]
    assert figures(hours[9], ("accepted", "offers", "offers_missed", "escalated")) == \
        {"accepted": 2, "offers": 3, "offers_missed": 1, "escalated": 1}
    assert hours[9]["time_to_accept"] == day.s(2, 200.0, 200.0, 328.0)
    assert hours[0]["handle_time"] == day.s(1, 5380.0, 5380.0, 5380.0)
    assert hours[13]["transferred"] == 1 and hours[22]["abandoned"] == 1
    assert sum(h["opened"] for h in hours) == day.TOTAL["opened"]
    # New York is at UTC-4 since 8 March: the UTC day spans two local days
    ny = ok(api.get(f"/api/reports/timeline?from=2026-03-10T00:00:00Z&to=2026-03-11T00:00:00Z"
                    f"&tz=America/New_York&bucket=day"))
    assert [(b["bucket"], b["start"], b["opened"], b["completed"]) for b in ny["buckets"]] == [
        ("2026-03-09T00:00:00-04:00", "2026-03-10T00:00:00+00:00", 0, 1),
        ("2026-03-10T00:00:00-04:00", "2026-03-10T04:00:00+00:00", 6, 4)]
    # Kolkata is at UTC+5:30: its day 10 March is 18:30 (9th) to 18:30 UTC, its hours start at :30 UTC
    kolkata = ok(api.get(f"/api/reports/timeline?{Q}&tz=Asia/Kolkata"))
    assert kolkata["period"]["from"] == "2026-03-09T18:30:00+00:00"
    by_label = {b["bucket"]: b for b in kolkata["buckets"]}
    assert len(by_label) == 24
    assert figures(by_label["2026-03-10T14:00:00+05:30"], ("opened", "offers", "accepted", "completed")) == \
        {"opened": 2, "offers": 3, "accepted": 2, "completed": 1}   # 08:30-09:30 UTC: chats 1 and 2
    assert figures(by_label["2026-03-10T15:00:00+05:30"], ("offers", "accepted", "escalated", "completed")) == \
        {"offers": 0, "accepted": 0, "escalated": 1, "completed": 1}   # 09:30-10:30 UTC: chat 2 ends
    # chat 0 opened at 23:00 UTC on the 9th, inside; chats 4, 5 and 6 after 18:30 UTC on the 10th, outside
    assert sum(b["opened"] for b in kolkata["buckets"]) == 4


def test_an_empty_period(known):
    api, _ = known
    q = "from=2026-01-01&to=2026-01-02"
    overview = ok(api.get(f"/api/reports/overview?{q}"))
    assert figures(overview, day.TOTAL) == {
        **{k: 0 for k in ("opened", "accepted", "completed", "abandoned", "transferred", "escalated", "offers",
                          "offers_missed")}, "completed_by_reason": {},
        **{k: day.NONE for k in ("time_to_first_offer", "time_to_accept", "time_to_first_reply", "handle_time")},
        "service_level": {"target_seconds": 60, "within": 0, "total": 0, "share": None}}
    assert overview["now"]["waiting"] == 1   # now is now, whatever the period
    queues = ok(api.get(f"/api/reports/queues?{q}"))["queues"]
    assert [(x["queue_name"], x["opened"], x["service_level"]["share"]) for x in queues] == \
        [("Sales", 0, None), ("Support", 0, None)]
    assert all(o["offers"] == 0 and o["handle_time"] == day.NONE
               for o in ok(api.get(f"/api/reports/operators?{q}"))["operators"])
    timeline = ok(api.get(f"/api/reports/timeline?{q}"))["buckets"]
    assert len(timeline) == 24 and not any(b["opened"] or b["completed"] for b in timeline)


def test_csv_by_accept_header_or_format(known):
    api, _ = known
    response = api.get(f"/api/reports/queues?{Q}", headers={"Accept": "text/csv"})
    assert response.status_code == 200 and response.mimetype == "text/csv"
    assert "attachment" in response.headers["Content-Disposition"]
    rows = list(csv.DictReader(io.StringIO(response.get_data(as_text=True))))
    assert [(r["queue_name"], r["opened"], r["time_to_accept.p90"], r["service_level.share"],
             r["completed_by_reason.timeout"]) for r in rows] == [("Sales", "3", "328.0", "0.5", "1"),
                                                                   ("Support", "3", "30.0", "0.5", "")]
    timeline = api.get(f"/api/reports/timeline?{Q}&format=csv")
    assert timeline.mimetype == "text/csv"
    assert len(list(csv.DictReader(io.StringIO(timeline.get_data(as_text=True))))) == 24
    overview = list(csv.DictReader(io.StringIO(api.get(f"/api/reports/overview?{Q}&format=csv").get_data(as_text=True))))
    assert [(r["row"], r["opened"], r.get("channel_name", "")) for r in overview] == \
        [("total", "6", ""), ("channel", "3", "Sales bot"), ("channel", "3", "Support page")]
    assert overview[0]["now.oldest_wait_seconds"] == "660.0"
    assert ok(api.get(f"/api/reports/operators?{Q}", headers={"Accept": "application/json"}))["operators"]


@pytest.mark.parametrize("query, field", [
    ("from=yesterday", "from"), ("from=2026-03-10&to=2026-03-09", "to"), ("tz=Mars/Olympus", "tz"),
    ("bucket=week", "bucket"), ("from=2025-01-01&to=2026-03-01", "to"), ("queue_id=x", "queue_id"),
    ("format=xml", "format")])
def test_bad_queries_name_their_parameter(api, query, field):
    error(api.get(f"/api/reports/timeline?{query}"), 400, "bad_query", field)
