"""Console: the Reports page over HTTP in a real browser, on the known day (tests/report_day.py):
its numbers, its two Chart.js charts drawn, and the live "now" tiles following a change."""
from playwright.sync_api import expect

import report_day as day
from chat_helpers import ok
from conftest import ADMIN_TOKEN, Api, shot

# Pixels of a canvas that are not transparent: a drawn chart has many, an empty canvas none.
PAINTED = """(canvas) => {
  const {data} = canvas.getContext("2d").getImageData(0, 0, canvas.width, canvas.height);
  let n = 0;
  for (let i = 3; i < data.length; i += 4) if (data[i] > 0) n++;
  return n;
}"""


def test_reports_page_shows_the_known_day_and_follows_now(app, serve, console):
    ids = day.build(app)
    api = Api(app)
    base = serve(app)
    page = console(base, ADMIN_TOKEN)
    page.goto(f"/console/reports?from={day.DAY}&to={day.DAY}&tz=UTC")
    expect(page.locator("body[data-loaded]")).to_have_count(1)

    def figure(name):
        return page.locator(f'#headline [data-figure="{name}"] .rp-value')

    for name, text in (("opened", "6"), ("accepted", "3"), ("completed", "5"), ("abandoned", "1"),
                       ("service_level", "50%"), ("wait_p50", "40 s"), ("wait_p90", "5 min"),
                       ("first_reply_p50", "2 min"), ("handle_p50", "35 min"), ("offers_missed", "1")):
        expect(figure(name)).to_have_text(text)
    expect(page.locator('#headline [data-figure="service_level"] .muted')).to_have_text("within 60 s (2 of 4)")
    sales = page.locator('#queues tr[data-queue="Sales"] td')
    expect(sales.nth(1)).to_have_text("3")
    expect(sales.nth(5)).to_have_text("50% (1/2)")
    expect(page.locator('#queues tr[data-queue="Support"] td').nth(9)).to_have_text("1")   # chat 6 waits

    # both charts drawn by Chart.js with the day's data
    timeline = page.evaluate("""() => Chart.getChart("timeline-chart").data.datasets
                                  .map((d) => [d.label, d.data.reduce((a, b) => a + (b || 0), 0)])""")
    assert timeline[:2] == [["opened", 6], ["completed", 5]]
    operators = page.evaluate("""() => { const c = Chart.getChart("operators-chart");
                                   return [c.data.labels, c.data.datasets[0].data, c.data.datasets[1].data]; }""")
    assert operators == [["Ann", "Bob"], [3, 1], [1, 0]]   # accepts (ann took chat 3 twice), missed offers
    for canvas in ("#timeline-chart", "#operators-chart"):
        assert page.locator(canvas).evaluate(PAINTED) > 1000, canvas

    # live: chat 6 is still waiting; an admin completes it and the tile follows without a reload
    expect(page.locator("#live-state")).to_have_text("live")
    expect(page.locator('[data-now="waiting"]')).to_have_text("1")
    shot(page, "reports-known-day")
    waiting = ok(api.get(f"/api/chats?state=queued&queue_id={ids['support']}"))
    ok(api.post(f"/api/chats/{waiting[0]['id']}/complete"))
    expect(page.locator('[data-now="waiting"]')).to_have_text("0")
    expect(page.locator('[data-now="oldest_wait_seconds"]')).to_have_text("–")

    # a filter: the Sales queue alone, by the form
    page.select_option("select[name=queue_id]", str(ids["sales"]))
    page.click("#filters button[type=submit]")
    expect(page.locator("body")).to_have_attribute("data-loaded", f"from={day.DAY}&to=2026-03-11&tz=UTC"
                                                                  f"&queue_id={ids['sales']}")
    expect(figure("opened")).to_have_text("3")
    expect(page.locator("#queues tbody tr")).to_have_count(1)
