// Reports (admin): the period's headline figures, a timeline and an operators chart (Chart.js),
// the queues with their service level, and live "now" tiles from /api/reports/live. The filters
// live in the URL (?from=&to=&tz=&queue_id=&channel_id=&bucket=, `to` inclusive), so a view can be
// linked; the API's `to` is exclusive, the day after.
"use strict";

(async () => {
  const me = await CF.start({admin: true});
  if (!me) return;
  const {api, el} = CF;
  const form = document.getElementById("filters");
  const charts = {};
  let live = null;

  // -- formatting ------------------------------------------------------------------------
  function duration(seconds) {
    if (seconds === null || seconds === undefined) return "–";
    if (seconds < 60) return `${Math.round(seconds)} s`;
    if (seconds < 3600) return `${Math.round(seconds / 60)} min`;
    if (seconds >= 2 * 86400) return `${Math.floor(seconds / 86400)} d ${Math.floor((seconds % 86400) / 3600)} h`;
    const h = Math.floor(seconds / 3600), m = Math.round((seconds % 3600) / 60);
    return m ? `${h} h ${m} min` : `${h} h`;
  }

  function share(level) {
    return level.share === null ? "–" : `${Math.round(level.share * 1000) / 10}%`;
  }

  function nextDay(date) {
    const d = new Date(date + "T00:00:00Z");
    d.setUTCDate(d.getUTCDate() + 1);
    return d.toISOString().slice(0, 10);
  }

  function today(tz) {
    return new Intl.DateTimeFormat("en-CA", {timeZone: tz}).format(new Date());  // YYYY-MM-DD
  }

  // -- filters ---------------------------------------------------------------------------
  function filters() {
    const f = Object.fromEntries(new FormData(form));
    return Object.fromEntries(Object.entries(f).filter(([, v]) => v !== ""));
  }

  function apiQuery(f, withPeriod = true) {
    const q = new URLSearchParams();
    if (withPeriod) {
      q.set("from", f.from);
      q.set("to", nextDay(f.to));
      q.set("tz", f.tz);
      if (f.bucket) q.set("bucket", f.bucket);
    }
    for (const key of ["queue_id", "channel_id"]) if (f[key]) q.set(key, f[key]);
    return q.toString();
  }

  async function fillFilters() {
    const params = new URLSearchParams(location.search);
    const tz = params.get("tz") || Intl.DateTimeFormat().resolvedOptions().timeZone || "UTC";
    const [queues, channels] = await Promise.all([api("GET", "/api/queues?limit=1000"),
                                                  api("GET", "/api/channels?limit=1000")]);
    form.queue_id.append(...queues.map((q) => el("option", {value: q.id}, q.name)));
    form.channel_id.append(...channels.map((c) => el("option", {value: c.id}, `${c.name} (${c.provider})`)));
    form.tz.value = tz;
    form.from.value = params.get("from") || today(tz);
    form.to.value = params.get("to") || form.from.value;
    for (const key of ["queue_id", "channel_id", "bucket"]) form[key].value = params.get(key) || "";
  }

  // -- the period --------------------------------------------------------------------------
  const HEADLINE = [
    ["opened", "opened", (o) => o.opened], ["accepted", "accepted", (o) => o.accepted],
    ["completed", "completed", (o) => o.completed], ["abandoned", "abandoned", (o) => o.abandoned],
    ["service_level", "within service level", (o) => `${share(o.service_level)}`],
    ["wait_p50", "wait to accept p50", (o) => duration(o.time_to_accept.p50)],
    ["wait_p90", "wait to accept p90", (o) => duration(o.time_to_accept.p90)],
    ["first_reply_p50", "first reply p50", (o) => duration(o.time_to_first_reply.p50)],
    ["handle_p50", "handle time p50", (o) => duration(o.handle_time.p50)],
    ["offers_missed", "offers missed", (o) => o.offers_missed],
    ["transferred", "transferred", (o) => o.transferred], ["escalated", "escalated", (o) => o.escalated],
  ];

  function showHeadline(overview) {
    document.getElementById("headline").replaceChildren(...HEADLINE.map(([key, label, value]) =>
      el("div", {class: "rp-tile", dataset: {figure: key}},
        el("span", {class: "rp-value"}, value(overview)), el("span", {class: "muted"}, label))));
    const level = overview.service_level;
    document.querySelector('[data-figure="service_level"] .muted').textContent =
      `within ${level.target_seconds} s (${level.within} of ${level.total})`;
  }

  function draw(id, config) {
    if (charts[id]) charts[id].destroy();
    charts[id] = new Chart(document.getElementById(id), config);
  }

  const OPTIONS = {animation: false, maintainAspectRatio: false, interaction: {mode: "index", intersect: false}};

  function showTimeline(timeline, bucket) {
    const buckets = timeline.buckets;
    draw("timeline-chart", {
      data: {
        labels: buckets.map((b) => bucket === "day" ? b.bucket.slice(0, 10) : b.bucket.slice(11, 16)),
        datasets: [
          {type: "bar", label: "opened", data: buckets.map((b) => b.opened), backgroundColor: "#2f6fed", yAxisID: "y"},
          {type: "bar", label: "completed", data: buckets.map((b) => b.completed), backgroundColor: "#12b76a",
           yAxisID: "y"},
          {type: "line", label: "wait p50 (s)", data: buckets.map((b) => b.time_to_accept.p50), borderColor: "#f79009",
           backgroundColor: "#f79009", pointRadius: 4, yAxisID: "wait"},
          {type: "line", label: "wait p90 (s)", data: buckets.map((b) => b.time_to_accept.p90), borderColor: "#b42318",
           backgroundColor: "#b42318", pointRadius: 4, yAxisID: "wait"},
        ],
      },
      options: {...OPTIONS, scales: {
        y: {beginAtZero: true, ticks: {precision: 0}, title: {display: true, text: "chats"}},
        wait: {position: "right", beginAtZero: true, grid: {drawOnChartArea: false},
               title: {display: true, text: "seconds"}}}},
    });
  }

  function showOperators(operators) {
    const rows = operators.operators;
    draw("operators-chart", {
      data: {
        labels: rows.map((o) => o.name || o.login),
        datasets: [
          {type: "bar", label: "accepted", data: rows.map((o) => o.accepted), backgroundColor: "#2f6fed", yAxisID: "y"},
          {type: "bar", label: "offers missed", data: rows.map((o) => o.offers_missed), backgroundColor: "#f04438",
           yAxisID: "y"},
          {type: "line", label: "handle time p50 (min)", yAxisID: "minutes", borderColor: "#667085",
           backgroundColor: "#667085", showLine: false, pointRadius: 5,
           data: rows.map((o) => o.handle_time.p50 === null ? null : Math.round(o.handle_time.p50 / 6) / 10)},
        ],
      },
      options: {...OPTIONS, scales: {
        y: {beginAtZero: true, ticks: {precision: 0}, title: {display: true, text: "chats"}},
        minutes: {position: "right", beginAtZero: true, grid: {drawOnChartArea: false},
                  title: {display: true, text: "minutes"}}}},
    });
  }

  function showQueues(queues) {
    document.querySelector("#queues tbody").replaceChildren(...queues.queues.map((q) =>
      el("tr", {dataset: {queue: q.queue_name}},
        el("td", {}, q.queue_name),
        el("td", {class: "num"}, q.opened), el("td", {class: "num"}, q.accepted),
        el("td", {class: "num"}, q.completed), el("td", {class: "num"}, q.abandoned),
        el("td", {class: "num", dataset: {figure: "service_level"}},
           `${share(q.service_level)} (${q.service_level.within}/${q.service_level.total})`),
        el("td", {class: "num"}, `${duration(q.time_to_accept.p50)} / ${duration(q.time_to_accept.p90)}`),
        el("td", {class: "num"}, duration(q.time_to_first_reply.p50)),
        el("td", {class: "num"}, duration(q.handle_time.p50)),
        el("td", {class: "num"}, q.waiting), el("td", {class: "num"}, duration(q.oldest_wait_seconds)))));
  }

  async function load() {
    const f = filters();
    const q = apiQuery(f);
    const [overview, queues, operators, timeline] = await Promise.all(
      ["overview", "queues", "operators", "timeline"].map((r) => api("GET", `/api/reports/${r}?${q}`)));
    showHeadline(overview);
    showTimeline(timeline, timeline.period.bucket);
    showOperators(operators);
    showQueues(queues);
    showNow(overview.now);
    document.body.dataset.loaded = q;  // for tests: which figures are on screen
  }

  // -- now ---------------------------------------------------------------------------------
  function showNow(now) {
    for (const node of document.querySelectorAll("[data-now]")) {
      const value = now[node.dataset.now];
      node.textContent = node.dataset.now === "oldest_wait_seconds" ? duration(value) : value;
    }
  }

  function listen() {
    if (live) live.close();
    const state = document.getElementById("live-state");
    live = CF.events({
      path: `/api/reports/live?${apiQuery(filters(), false)}`,
      onEvent: (event) => { if (event.type === "now") showNow(event); },
      onState: (s) => { state.dataset.state = s; state.textContent = s; },
    });
  }

  form.addEventListener("submit", async (e) => {
    e.preventDefault();
    const f = filters();
    history.replaceState(null, "", `?${new URLSearchParams(f)}`);
    try { CF.pageError(null); await load(); listen(); } catch (err) { CF.pageError(err); }
  });

  document.getElementById("csv").addEventListener("click", async () => {
    try {
      const blob = await CF.fetchBlob(`/api/reports/queues?${apiQuery(filters())}&format=csv`);
      const link = el("a", {href: URL.createObjectURL(blob), download: `chatflow-queues-${filters().from}.csv`});
      link.click();
      setTimeout(() => URL.revokeObjectURL(link.href), 10000);  // once the download has started
    } catch (err) { CF.pageError(err); }
  });

  try {
    await fillFilters();
    await load();
    listen();
  } catch (err) { CF.pageError(err); }
})();
