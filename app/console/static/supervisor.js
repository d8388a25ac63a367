// The supervisor's view (admins): every operator's status and load against the limit, every chat
// by state, queue, channel and operator, and any chat opened read-only to complete it. The page
// reloads from /api every few seconds (and at once after an action). The one live event it shows is
// a lifecycle's notice to supervisors (`notification`, e.g. a chat escalated to an overflow queue).
"use strict";

(async () => {
  const {el} = CF;
  const $ = (id) => document.getElementById(id);
  const EVERY_MS = 3000;
  const OPEN = ["queued", "offered", "in_work", "bot"];
  const filters = $("sv-filters");
  const data = {operators: [], chats: [], queues: [], channels: [], selected: Number(new URLSearchParams(location.search).get("chat")) || null};

  const me = await CF.start({admin: true});
  if (!me) return;

  function options(select, rows, label) {
    const chosen = select.value;
    select.replaceChildren(select.options[0], ...rows.map((r) => el("option", {value: r.id}, label(r))));
    select.value = chosen;
  }

  const operatorName = (id) => { const o = data.operators.find((x) => x.id === id); return o ? o.name : id ? `user ${id}` : "—"; };

  async function load() {
    const params = new URLSearchParams({sort: "activity", limit: 500});
    for (const name of ["q", "queue_id", "channel_id", "operator_id"]) {
      if (filters.elements[name].value.trim()) params.set(name, filters.elements[name].value.trim());
    }
    const wanted = filters.elements.state.value;
    if (wanted && wanted !== "any") params.set("state", wanted);
    try {
      const [operators, chats, queues, channels] = await Promise.all([
        CF.api("GET", "/api/operators"), CF.api("GET", "/api/chats?" + params),
        CF.api("GET", "/api/queues?limit=1000"), CF.api("GET", "/api/channels?limit=1000")]);
      Object.assign(data, {operators, queues, channels,
                           chats: wanted ? chats : chats.filter((c) => OPEN.includes(c.state))});
      CF.pageError(null);
      render();
      $("sv-updated").textContent = `Updated ${new Date().toLocaleTimeString()}`;
    } catch (err) {
      CF.pageError(err);
    }
  }

  function render() {
    options(filters.elements.queue_id, data.queues, (q) => q.name);
    options(filters.elements.channel_id, data.channels, (c) => c.name);
    options(filters.elements.operator_id, data.operators, (o) => o.name);
    $("operators").tBodies[0].replaceChildren(...(data.operators.length ? data.operators.map((o) =>
      el("tr", {dataset: {operatorId: o.id}},
        el("td", {}, el("span", {class: "cell-clip", title: o.login}, o.name)),
        el("td", {}, el("span", {class: `badge ${o.presence === "available" ? "active" : o.presence === "away" ? "waiting" : "inactive"}`},
                        o.presence), o.active ? null : " (deactivated)"),
        el("td", {class: "sv-load"}, `${o.chats_in_work} of ${o.simultaneous_chats_limit}`),
        el("td", {}, String(o.chats_offered)),
        el("td", {}, o.queues.map((id) => (data.queues.find((q) => q.id === id) || {name: id}).name).join(", "))))
      : [el("tr", {}, el("td", {colspan: 5, class: "muted"}, "Nobody serves a queue yet."))]));
    $("sv-chats").tBodies[0].replaceChildren(...(data.chats.length ? data.chats.map((c) =>
      el("tr", {dataset: {chatId: c.id}, "aria-current": c.id === data.selected ? "true" : null},
        el("td", {}, el("a", {href: `?chat=${c.id}`, onclick: (e) => { e.preventDefault(); select(c.id, true); }},
                        el("span", {class: "cell-clip", title: c.contact.name}, c.contact.name)),
           el("span", {class: "muted"}, ` #${c.id}`)),
        el("td", {}, el("span", {class: `badge ${c.state}`}, c.state.replace("_", " "))),
        el("td", {}, c.queue_name, el("span", {class: "muted"}, ` · ${c.channel ? c.channel.name : c.channel_id}`)),
        el("td", {class: "sv-operator"}, operatorName(c.operator_id || c.offered_to_id),
           c.state === "offered" ? el("span", {class: "muted"}, " (offered)") : null),
        el("td", {}, c.waiting_since ? waited(c.waiting_since) : "")))
      : [el("tr", {}, el("td", {colspan: 5, class: "muted"}, "No chat matches."))]));
  }

  function waited(iso) {
    const minutes = Math.max(0, Math.round((Date.now() - new Date(iso).getTime()) / 60000));
    return minutes < 60 ? `${minutes} min` : `${Math.floor(minutes / 60)} h ${minutes % 60} min`;
  }

  async function select(id, push) {
    data.selected = id;
    if (push) history.pushState({}, "", `?chat=${id}`);
    render();
    const panel = $("sv-chat");
    panel.hidden = false;
    $("sv-chat-result").replaceChildren();
    try {
      const [chat, messages, notes] = await Promise.all([CF.api("GET", `/api/chats/${id}`),
        CF.api("GET", `/api/chats/${id}/messages?limit=1000`), CF.api("GET", `/api/chats/${id}/notes`)]);
      if (data.selected !== id) return;
      $("sv-chat-title").textContent = `Chat with ${chat.contact.name}`;
      $("sv-chat-meta").textContent = `#${chat.id} · ${chat.state.replace("_", " ")} · ${chat.queue_name} · `
        + `operator ${operatorName(chat.operator_id)} · started ${CF.when(chat.created_at)}`;
      $("sv-chat-actions").replaceChildren(...(chat.state === "completed" ? [] : [
        el("button", {type: "button", class: "danger", onclick: () => complete(chat)}, "Complete chat")]));
      if (chat.state === "in_work") reassignControls(chat);
      const timeline = [...messages.map((m) => ({at: m.created_at, node: el("li", {class: `msg ${m.direction}`},
                          el("div", {class: "msg-text"}, m.text),
                          el("div", {class: "msg-meta muted"}, new Date(m.created_at).toLocaleTimeString(),
                             m.direction === "out" ? ` · ${m.status}` : "")) })),
                        ...notes.map((n) => ({at: n.created_at, node: el("li", {class: "msg note"},
                          el("div", {class: "msg-note-label"}, "Private note", n.author ? ` · ${n.author.name}` : ""),
                          el("div", {class: "msg-text"}, n.text))}))]
        .sort((a, b) => (a.at < b.at ? -1 : a.at > b.at ? 1 : 0));
      $("sv-messages").replaceChildren(...(timeline.length ? timeline.map((t) => t.node)
                                                          : [el("li", {class: "muted"}, "No messages yet.")]));
    } catch (err) {
      CF.showError(panel, err);
    }
  }

  // Reassign is the routing's transfer: offered to the chosen operator of the chat's queue.
  // Where the transfer route is not there (an older server) the control is simply not shown.
  async function reassignControls(chat) {
    let targets;
    try { targets = await CF.api("GET", `/api/chats/${chat.id}/transfer-targets`); } catch (err) { return; }
    if (data.selected !== chat.id) return;
    const pick = el("select", {"aria-label": "Reassign to"}, el("option", {value: ""}, "Reassign to…"),
      targets.operators.map((o) => el("option", {value: o.id, disabled: !o.available},
                                     `${o.name} (${o.available ? o.presence : o.reason})`)));
    const go = el("button", {type: "button", class: "secondary", onclick: async () => {
      if (!pick.value) return;
      const who = pick.selectedOptions[0].textContent;
      if (!CF.confirmed(`Reassign the chat with ${chat.contact.name} to ${who}?`)) return;
      go.disabled = true;
      try {
        await CF.api("POST", `/api/chats/${chat.id}/transfer`, {operator_id: Number(pick.value)});
        $("sv-chat-result").replaceChildren(el("div", {class: "banner ok"}, `Reassigned to ${who}.`));
      } catch (err) {
        CF.showError($("sv-chat-result"), err);
      } finally {
        go.disabled = false;
      }
      await load();
    }}, "Reassign");
    $("sv-chat-actions").append(pick, go);
  }

  async function complete(chat) {
    if (!CF.confirmed(`Complete the chat with ${chat.contact.name}? Its operator sees it end at once.`)) return;
    try {
      await CF.api("POST", `/api/chats/${chat.id}/complete`);
      $("sv-chat-result").replaceChildren(el("div", {class: "banner ok"}, "Completed."));
    } catch (err) {
      CF.showError($("sv-chat-result"), err);
    }
    await load();
    select(chat.id);
  }

  let typing = null;
  filters.addEventListener("input", () => { clearTimeout(typing); typing = setTimeout(load, 250); });
  filters.addEventListener("submit", (e) => { e.preventDefault(); load(); });
  window.addEventListener("popstate", () => {
    const id = Number(new URLSearchParams(location.search).get("chat")) || null;
    if (id) select(id); else { data.selected = null; $("sv-chat").hidden = true; render(); }
  });
  await load();
  if (data.selected) select(data.selected);
  setInterval(() => { if (!document.hidden) load(); }, EVERY_MS);
  // Only watching: an admin who also serves a queue is not made present by this page.
  CF.events({path: "/api/events?presence=false", onState: (live) => { document.body.dataset.live = live; },
             onEvent: (event) => {
               if (event.type !== "notification") return;
               CF.notice(event, {admin: true});
               load();
             }});
})();
