// Chat setup (admin): channels, queues with their operators, chat actions and settings.
// Every change goes through the API and then the lists are read again, so what the page shows is
// what the server holds. Errors go next to the field the API names (details.field), which is why
// inputs are named after the API's fields.
"use strict";

(async () => {
  const me = await CF.start({admin: true});
  if (!me) return;
  const {el} = CF;
  const root = document.getElementById("setup");

  const data = {queues: [], channels: [], actions: [], users: [], roles: [], processes: [], settings: [],
                operators: new Map()};  // queue id -> operator entries
  const openEdits = new Set();  // "queue:1", "action:2": edit rows kept open across re-renders

  // Settings the page knows how to present; any other code the API lists is shown by its code.
  const SETTINGS = {
    OmniChatOperatorAcceptChatTimeout: {label: "Acceptance timeout (minutes)", kind: "number"},
    SimultaneousChats: {label: "Simultaneous chats", kind: "number"},
    ServiceLevelSeconds: {label: "Service level target (seconds, reports)", kind: "number"},
    SiteUrl: {label: "Site URL", kind: "text"},
    SystemAdministratorsNotificationUrl: {label: "Administrators notification URL", kind: "text"},
    FacebookAppId: {label: "Facebook app id", kind: "text"},
    FacebookAppSecret: {label: "Facebook app secret", kind: "secret"},
    FacebookVerifyToken: {label: "Facebook verify token", kind: "secret"},
  };
  const SOUND = "OmniChatNotificationSound";

  // -- helpers ---------------------------------------------------------------------------
  // A typed number, null for empty, else the text as typed so the API names what is wrong.
  function numberOrText(text) {
    const t = text.trim();
    if (t === "") return null;
    const n = Number(t.replace(",", "."));
    return Number.isFinite(n) ? n : t;
  }

  // The fields of an edit form that differ from the row (undefined = leave as is): a PATCH then
  // never trips over a value the user did not touch.
  function changes(row, fields) {
    return Object.fromEntries(Object.entries(fields).filter(([k, v]) => v !== undefined && v !== row[k]));
  }

  function idOrNull(value) { return value === "" ? null : Number(value); }

  const queueName = (id) => (data.queues.find((q) => q.id === id) || {}).name || `queue ${id}`;
  const userName = (id) => { const u = data.users.find((x) => x.id === id); return u ? (u.name || u.login) : `user ${id}`; };
  const roleName = (id) => (data.roles.find((r) => r.id === id) || {}).name || `role ${id}`;
  const minutes = (m) => m === null || m === undefined ? "never" : `${m} min`;

  // Show an API error in a form. A form can fail because a setting is not set (Telegram needs
  // SiteUrl, Facebook's login its app id): that error also goes next to the setting, where it is fixed.
  function formError(form, err) {
    const field = err.details && err.details.field;
    const setting = field && root.querySelector(`form[data-code="${CSS.escape(field)}"]`);
    if (setting) {
      CF.showError(form, {message: err.message + " (see Settings below)", details: {}});
      CF.showError(setting, {message: err.message, details: {field: "value"}});
      return;
    }
    CF.showError(form, err);
  }

  // Submit handler: clear old errors, keep the submit buttons disabled while the call runs.
  function onSubmit(form, handler) {
    form.addEventListener("submit", async (e) => {
      e.preventDefault();
      CF.clearErrors(form);
      const buttons = form.querySelectorAll("button");
      buttons.forEach((b) => { b.disabled = true; });
      try { await handler(e); } catch (err) { formError(form, err); } finally {
        buttons.forEach((b) => { b.disabled = false; });
      }
    });
  }

  // A message in a table row (a refused delete, toggle or move), in its last cell.
  function rowError(tr, err, ...extra) {
    tr.querySelectorAll(".row-error").forEach((n) => n.remove());
    if (!err) return;
    tr.lastElementChild.append(el("div", {class: "row-error", role: "alert"}, err.message || String(err), ...extra));
  }

  function saved(form, text = "Saved") {
    const status = form.querySelector(".saved");
    if (status) status.textContent = text;
  }

  function queueOptions(select, selected, placeholder = "choose a queue…") {
    const value = selected !== undefined ? String(selected ?? "") : select.value;
    select.replaceChildren(
      el("option", {value: ""}, data.queues.length ? placeholder : "no queues yet: add one below"),
      ...data.queues.map((q) => el("option", {value: q.id}, q.name)));
    select.value = data.queues.some((q) => String(q.id) === value) ? value : "";
    if (!select.value && data.queues.length === 1 && selected === undefined) select.value = String(data.queues[0].id);
  }

  function processOptions(select, selected) {
    const value = selected !== undefined ? (selected ?? "") : select.value;
    select.replaceChildren(el("option", {value: ""}, select.dataset.defaultLabel || "choose a process…"),
      ...data.processes.map((p) => el("option", {value: p.key}, p.name && p.name !== p.key ? `${p.name} (${p.key})` : p.key)));
    if (value && !data.processes.some((p) => p.key === value)) select.append(el("option", {value}, `${value} (not deployed)`));
    select.value = value;
  }

  function empty(tbody, columns, text) {
    tbody.replaceChildren(el("tr", {class: "empty"}, el("td", {colspan: columns, class: "muted"}, text)));
  }

  // -- loading ---------------------------------------------------------------------------
  async function reload() {
    const all = "?limit=1000";
    const [queues, channels, actions, users, roles, processes, settings, unrouted, queued] = await Promise.all([
      CF.api("GET", "/api/queues" + all), CF.api("GET", "/api/channels" + all),
      CF.api("GET", "/api/chat-actions" + all), CF.api("GET", "/api/users" + all),
      CF.api("GET", "/api/roles" + all), CF.api("GET", "/api/processes" + all), CF.api("GET", "/api/settings"),
      CF.api("GET", "/api/chats?state=unrouted&limit=1000"), CF.api("GET", "/api/chats?state=queued&limit=1000")]);
    data.waiting = [...unrouted, ...queued.filter((c) => c.lifecycle_problem)];
    // A queue deleted since the list was read has no operators to show; the next reload drops it.
    const operators = await Promise.all(queues.map((q) => CF.api("GET", `/api/queues/${q.id}/operators${all}`)
      .catch((err) => { if (err.status === 404) return []; throw err; })));
    Object.assign(data, {queues, channels, actions, users, roles, processes, settings,
                         operators: new Map(queues.map((q, i) => [q.id, operators[i]]))});
    root.querySelectorAll("form select[data-queues]").forEach((s) => queueOptions(s));
    root.querySelectorAll("form select[data-processes]").forEach((s) => processOptions(s));
    renderChannels();
    renderWaiting();
    renderQueues();
    renderActions();
    renderSettings();
  }

  // Reloads run one after another, so an older one never paints over a newer one.
  let reloads = Promise.resolve();
  function refresh() {
    reloads = reloads.then(async () => {
      try { await reload(); CF.pageError(null); } catch (err) { CF.pageError(err); }
    });
    return reloads;
  }

  // -- channels --------------------------------------------------------------------------
  function renderChannels() {
    const tbody = root.querySelector('[data-testid="channels-table"] tbody');
    if (!data.channels.length) return empty(tbody, 6, "No channels yet: add a Telegram bot or Facebook pages below.");
    tbody.replaceChildren(...data.channels.map(channelRow));
  }

  function channelRow(c) {
    const tr = el("tr", {dataset: {id: c.id, testid: "channel-row"}});
    const patch = async (fields, control, undo) => {
      rowError(tr, null);
      control.disabled = true;
      try { await CF.api("PATCH", `/api/channels/${c.id}`, fields); await refresh(); } catch (err) {
        undo();
        rowError(tr, err);
      } finally { control.disabled = false; }
    };
    const active = el("input", {type: "checkbox", checked: c.active, "aria-label": `Active: ${c.name}`,
      onchange: () => patch({active: active.checked}, active, () => { active.checked = !active.checked; })});
    const queue = el("select", {"aria-label": `Queue of ${c.name}`,
      onchange: () => patch({queue_id: Number(queue.value)}, queue, () => { queue.value = String(c.queue_id); })});
    queueOptions(queue, c.queue_id);
    queue.firstElementChild.disabled = true;  // a channel always has a queue
    const remove = el("button", {type: "button", class: "danger", "aria-label": `Delete channel ${c.name}`,
      onclick: async () => {
        rowError(tr, null);
        if (!CF.confirmed(`Delete channel ${c.name}? Its bot stops reaching Chatflow.`)) return;
        try { await CF.api("DELETE", `/api/channels/${c.id}`); await refresh(); } catch (err) {
          if (err.code !== "channel_has_chats") return rowError(tr, err);
          // The chats must keep their channel: offer what works instead.
          rowError(tr, {message: "This channel has chats or messages, so it cannot be deleted. Deactivate it instead."},
            c.active ? el("button", {type: "button", class: "secondary", onclick: () => { active.click(); }}, "Deactivate") : null);
        }
      }}, "Delete");
    const who = c.provider === "telegram" ? (c.bot_username ? "@" + c.bot_username : "—")
      : c.provider === "web" ? el("code", {title: "paste this tag into the site's pages"}, c.snippet) : `page ${c.page_id}`;
    tr.append(el("td", {}, el("span", {class: "badge"}, c.provider)), el("td", {}, c.name), el("td", {class: "muted"}, who),
      el("td", {}, active, " ", el("span", {class: `badge ${c.active ? "active" : "inactive"}`}, c.active ? "active" : "inactive"),
        channelStatus(c)),
      el("td", {}, queue), el("td", {class: "row-buttons"}, reconnect(c, tr), remove));
    return tr;
  }

  // Why a channel does not work, in the provider's words: a page Facebook refused to subscribe,
  // or a token that stopped working (the login flow again brings a fresh one).
  function channelStatus(c) {
    if (c.status === "ok") return null;
    const label = c.status === "needs_reconnect" ? "needs reconnect" : c.status;
    return el("div", {class: "channel-status", dataset: {testid: "channel-status"}},
      el("span", {class: "badge error"}, label), " ", el("span", {class: "muted"}, c.status_reason || ""));
  }

  function reconnect(c, tr) {
    if (c.provider !== "facebook" || c.status !== "needs_reconnect") return null;
    return el("button", {type: "button", "aria-label": `Reconnect ${c.name}`, onclick: async (e) => {
      rowError(tr, null);
      e.currentTarget.disabled = true;
      try { await CF.facebookLogin(); } catch (err) { e.target.disabled = false; rowError(tr, err); }
    }}, "Reconnect");
  }

  const telegramForm = document.getElementById("add-telegram");
  onSubmit(telegramForm, async () => {
    const f = telegramForm.elements;
    await CF.api("POST", "/api/channels", {provider: "telegram", name: f.name.value.trim(), token: f.token.value.trim(),
                                           queue_id: idOrNull(f.queue_id.value), active: f.active.checked});
    telegramForm.reset();
    await refresh();
  });

  // Facebook: sign in at Facebook and pick the pages (facebook.js), or paste a user access token,
  // which lists the user's pages; the checked ones become channels.
  const facebookForm = document.getElementById("add-facebook");
  document.getElementById("facebook-login").addEventListener("click", async (e) => {
    CF.clearErrors(facebookForm);
    e.currentTarget.disabled = true;
    try { await CF.facebookLogin(); } catch (err) { e.target.disabled = false; formError(facebookForm, err); }
  });
  const fbPages = facebookForm.querySelector(".fb-pages");
  onSubmit(facebookForm, async (e) => {
    const f = facebookForm.elements;
    const userToken = f.user_access_token.value.trim();
    if (!e.submitter || e.submitter.value === "find") {
      const pages = await CF.api("POST", "/api/channels/facebook/pages", {user_access_token: userToken});
      facebookForm.querySelector(".fb-page-list").replaceChildren(...(pages.length ? pages.map((p) =>
        el("label", {class: "check"}, el("input", {type: "checkbox", name: "page", value: p.id, checked: !p.channel_id}),
          ` ${p.name} `, el("span", {class: "muted"}, p.channel_id ? `(already channel ${p.channel_id}: gets the new token)` : `(page ${p.id})`)))
        : [el("p", {class: "muted"}, "This user manages no pages.")]));
      fbPages.hidden = false;
      return;
    }
    const pageIds = [...facebookForm.querySelectorAll('input[name="page"]:checked')].map((i) => i.value);
    if (!pageIds.length) throw {message: "Pick at least one page.", details: {field: "page_ids"}};
    await CF.api("POST", "/api/channels/facebook/pages", {user_access_token: userToken, page_ids: pageIds,
                                                          queue_id: idOrNull(f.queue_id.value), active: f.active.checked});
    facebookForm.reset();
    fbPages.hidden = true;
    await refresh();
  });

  // -- queues ----------------------------------------------------------------------------
  function renderQueues() {
    const tbody = root.querySelector('[data-testid="queues-table"] tbody');
    if (!data.queues.length) return empty(tbody, 5, "No queues yet: add one below.");
    tbody.replaceChildren(...data.queues.flatMap((q) =>
      openEdits.has(`queue:${q.id}`) ? [queueRow(q), queueEditRow(q)] : [queueRow(q)]));
  }

  // -- chats waiting for an admin ----------------------------------------------------------------
  function renderWaiting() {
    const tbody = root.querySelector('[data-testid="unrouted-table"] tbody');
    if (!data.waiting.length) return empty(tbody, 4, "None: every chat is routed.");
    tbody.replaceChildren(...data.waiting.map((c) => {
      const tr = el("tr", {dataset: {id: c.id}});
      const channel = data.channels.find((ch) => ch.id === c.channel_id);
      const route = c.state === "unrouted" ? el("button", {type: "button", disabled: !(channel && channel.active),
        title: channel && channel.active ? null : "activate the channel first", onclick: async (e) => {
          rowError(tr, null);
          e.currentTarget.disabled = true;
          try { await CF.api("POST", `/api/chats/${c.id}/route`); await refresh(); } catch (err) { rowError(tr, err); }
        }}, "Route now") : null;
      tr.append(el("td", {}, `#${c.id} · ${c.contact.name}`), el("td", {}, channel ? channel.name : `#${c.channel_id}`),
        el("td", {}, c.state === "unrouted" ? "opened while the channel was inactive" : c.lifecycle_problem),
        el("td", {class: "row-buttons"}, route));
      return tr;
    }));
  }

  // -- routing preview: who would get a new chat of the queue now, and why ----------------------
  async function showPreview(q, tr, button) {
    const open = tr.nextElementSibling && tr.nextElementSibling.dataset.preview === String(q.id);
    if (open) { tr.nextElementSibling.remove(); button.setAttribute("aria-expanded", "false"); return; }
    rowError(tr, null);
    try {
      const p = await CF.api("GET", `/api/queues/${q.id}/routing-preview`);
      const rows = p.operators.map((o) => el("tr", {class: o.id === p.chosen ? "chosen" : null},
        el("td", {}, o.name || o.login), el("td", {}, el("span", {class: "badge " + o.presence}, o.presence)),
        el("td", {}, `${o.holds} of ${o.limit} (${o.chats_in_work} in work, ${o.chats_offered} offered)`),
        el("td", {}, o.last_accepted_at ? CF.when(o.last_accepted_at) : "never"), el("td", {}, o.reason)));
      const table = el("table", {class: "preview", "aria-label": `Routing preview of ${q.name}`},
        el("thead", {}, el("tr", {}, ...["Operator", "Presence", "Holds", "Last accepted", "Decision"].map((h) => el("th", {}, h)))),
        el("tbody", {}, ...(rows.length ? rows : [el("tr", {}, el("td", {colspan: 5, class: "muted"}, "No operators."))])));
      tr.after(el("tr", {class: "edit-row", dataset: {preview: q.id}}, el("td", {colspan: 5},
        el("p", {}, el("b", {}, p.rule), ": ", p.why), table)));
      button.setAttribute("aria-expanded", "true");
    } catch (err) { rowError(tr, err); }
  }

  function operatorsCell(q, tr) {
    const entries = data.operators.get(q.id) || [];
    const list = el("ul", {class: "operators", "aria-label": `Operators of ${q.name}`}, entries.map((o) => {
      const name = o.user_id ? userName(o.user_id) : `${roleName(o.role_id)} (role)`;
      return el("li", {}, name, el("button", {type: "button", class: "link-danger", "aria-label": `Remove ${name} from ${q.name}`,
        onclick: async () => {
          rowError(tr, null);
          if (!CF.confirmed(`Remove ${name} from ${q.name}? They get no more chats of this queue.`)) return;
          try { await CF.api("DELETE", `/api/queues/${q.id}/operators/${o.id}`); await refresh(); } catch (err) { rowError(tr, err); }
        }}, "×"));
    }));
    if (!entries.length) list.append(el("li", {class: "muted"}, "none"));
    // One picker for users and roles; it posts {user_id} or {role_id}, so errors about either
    // field belong next to it.
    const taken = new Set(entries.map((o) => o.user_id ? `user_id:${o.user_id}` : `role_id:${o.role_id}`));
    const users = data.users.filter((u) => !taken.has(`user_id:${u.id}`));
    const roles = data.roles.filter((r) => !taken.has(`role_id:${r.id}`));
    const picker = el("select", {name: "operator", "aria-label": `New operator for ${q.name}`},
      el("option", {value: ""}, "user or role…"),
      users.length ? el("optgroup", {label: "Users"}, users.map((u) =>
        el("option", {value: `user_id:${u.id}`}, u.name && u.name !== u.login ? `${u.name} (${u.login})` : u.login))) : null,
      roles.length ? el("optgroup", {label: "Roles"}, roles.map((r) => el("option", {value: `role_id:${r.id}`}, `${r.name} (role)`))) : null);
    const form = el("form", {class: "inline", "aria-label": `Add operator to ${q.name}`, novalidate: true}, picker,
      el("button", {type: "submit", class: "secondary"}, "Add operator"));
    onSubmit(form, async () => {
      if (!picker.value) throw {message: "Pick a user or a role.", details: {field: "operator"}};
      const [field, id] = picker.value.split(":");
      try {
        await CF.api("POST", `/api/queues/${q.id}/operators`, {[field]: Number(id)});
      } catch (err) {
        if (["user_id", "role_id"].includes(err.details && err.details.field)) err.details = {...err.details, field: "operator"};
        throw err;
      }
      await refresh();
    });
    return el("td", {}, list, form);
  }

  function queueRow(q) {
    const tr = el("tr", {dataset: {id: q.id, testid: "queue-row"}});
    const edit = el("button", {type: "button", class: "secondary", "aria-label": `Edit queue ${q.name}`,
      "aria-expanded": openEdits.has(`queue:${q.id}`) ? "true" : "false",
      onclick: () => { toggle(`queue:${q.id}`); renderQueues(); }}, "Edit");
    const remove = el("button", {type: "button", class: "danger", "aria-label": `Delete queue ${q.name}`, onclick: async () => {
      rowError(tr, null);
      if (!CF.confirmed(`Delete queue ${q.name}? Its chat actions are deleted with it.`)) return;
      try { await CF.api("DELETE", `/api/queues/${q.id}`); openEdits.delete(`queue:${q.id}`); await refresh(); } catch (err) {
        rowError(tr, err.code === "queue_in_use"
          ? {message: "Channels or chats use this queue: move or delete them first."} : err);
      }
    }}, "Delete");
    tr.append(el("td", {}, el("strong", {}, q.name),
                 q.lifecycle_process && q.lifecycle_process !== "ChatLifecycle" ? el("div", {class: "muted"}, q.lifecycle_process) : null),
      el("td", {}, el("span", {class: "badge"}, q.routing_rule)), el("td", {}, minutes(q.completion_timeout_minutes)));
    const preview = el("button", {type: "button", class: "secondary", "aria-expanded": "false",
      "aria-label": `Who gets the next chat of ${q.name}?`, onclick: (e) => showPreview(q, tr, e.currentTarget)},
      "Who gets the next chat?");
    tr.append(operatorsCell(q, tr), el("td", {class: "row-buttons"}, preview, " ", edit, " ", remove));
    return tr;
  }

  function toggle(key) { if (openEdits.has(key)) openEdits.delete(key); else openEdits.add(key); }

  function queueEditRow(q) {
    const rule = el("select", {name: "routing_rule"}, ["least_busy", "all"].map((r) => el("option", {value: r, selected: r === q.routing_rule}, r)));
    const lifecycle = el("select", {name: "lifecycle_process", dataset: {defaultLabel: "default (ChatLifecycle)"}});
    processOptions(lifecycle, q.lifecycle_process);
    const form = el("form", {class: "edit", "aria-label": `Editing queue ${q.name}`, novalidate: true},
      el("label", {}, "Name", el("input", {name: "name", value: q.name, autocomplete: "off"})),
      el("label", {}, "Routing rule", rule),
      el("label", {}, "Completion timeout (minutes)", el("input", {name: "completion_timeout_minutes", inputmode: "decimal",
        placeholder: "never", value: q.completion_timeout_minutes ?? ""}),
        el("small", {class: "muted"}, "running chats take it at their next reply")),
      el("label", {}, "Lifecycle process", lifecycle),
      el("button", {type: "submit"}, "Save"),
      el("button", {type: "button", class: "secondary", onclick: () => { openEdits.delete(`queue:${q.id}`); renderQueues(); }}, "Cancel"));
    onSubmit(form, async () => {
      const f = form.elements;
      const body = changes(q, {name: f.name.value.trim(), routing_rule: f.routing_rule.value,
                               completion_timeout_minutes: numberOrText(f.completion_timeout_minutes.value),
                               lifecycle_process: f.lifecycle_process.value || undefined});
      await CF.api("PATCH", `/api/queues/${q.id}`, body);
      openEdits.delete(`queue:${q.id}`);
      await refresh();
    });
    return el("tr", {class: "edit-row"}, el("td", {colspan: 5}, form));
  }

  const queueForm = document.getElementById("add-queue");
  onSubmit(queueForm, async () => {
    const f = queueForm.elements;
    const body = {name: f.name.value.trim(), routing_rule: f.routing_rule.value,
                  completion_timeout_minutes: numberOrText(f.completion_timeout_minutes.value)};
    if (f.lifecycle_process.value) body.lifecycle_process = f.lifecycle_process.value;
    await CF.api("POST", "/api/queues", body);
    queueForm.reset();
    await refresh();
  });

  // -- chat actions ----------------------------------------------------------------------
  function renderActions() {
    const tbody = root.querySelector('[data-testid="actions-table"] tbody');
    if (!data.actions.length) return empty(tbody, 4, "No chat actions yet.");
    tbody.replaceChildren(...data.actions.flatMap((a) =>
      openEdits.has(`action:${a.id}`) ? [actionRow(a), actionEditRow(a)] : [actionRow(a)]));
  }

  function actionRow(a) {
    const tr = el("tr", {dataset: {id: a.id, testid: "action-row"}});
    const edit = el("button", {type: "button", class: "secondary", "aria-label": `Edit action ${a.name}`,
      onclick: () => { toggle(`action:${a.id}`); renderActions(); }}, "Edit");
    const remove = el("button", {type: "button", class: "danger", "aria-label": `Delete action ${a.name}`, onclick: async () => {
      rowError(tr, null);
      if (!CF.confirmed(`Delete chat action ${a.name}? Operators no longer see its button.`)) return;
      try { await CF.api("DELETE", `/api/chat-actions/${a.id}`); openEdits.delete(`action:${a.id}`); await refresh(); } catch (err) { rowError(tr, err); }
    }}, "Delete");
    tr.append(el("td", {}, el("strong", {}, a.name)), el("td", {}, a.process), el("td", {}, queueName(a.queue_id)),
      el("td", {class: "row-buttons"}, edit, " ", remove));
    return tr;
  }

  function actionEditRow(a) {
    const process = el("select", {name: "process"});
    processOptions(process, a.process);
    const queue = el("select", {name: "queue_id"});
    queueOptions(queue, a.queue_id);
    const form = el("form", {class: "edit", "aria-label": `Editing action ${a.name}`, novalidate: true},
      el("label", {}, "Name", el("input", {name: "name", value: a.name, autocomplete: "off"})),
      el("label", {}, "Process", process), el("label", {}, "Queue", queue),
      el("button", {type: "submit"}, "Save"),
      el("button", {type: "button", class: "secondary", onclick: () => { openEdits.delete(`action:${a.id}`); renderActions(); }}, "Cancel"));
    onSubmit(form, async () => {
      const f = form.elements;
      await CF.api("PATCH", `/api/chat-actions/${a.id}`, changes(a, {name: f.name.value.trim(), process: f.process.value,
                                                                     queue_id: idOrNull(f.queue_id.value)}));
      openEdits.delete(`action:${a.id}`);
      await refresh();
    });
    return el("tr", {class: "edit-row"}, el("td", {colspan: 4}, form));
  }

  const actionForm = document.getElementById("add-action");
  onSubmit(actionForm, async () => {
    const f = actionForm.elements;
    await CF.api("POST", "/api/chat-actions", {name: f.name.value.trim(), process: f.process.value,
                                               queue_id: idOrNull(f.queue_id.value)});
    actionForm.reset();
    await refresh();
  });

  // -- settings --------------------------------------------------------------------------
  const settingsList = root.querySelector('[data-testid="settings"]');

  function renderSettings() {
    // Built and filled once (then after their own save), so a reload never overwrites typing.
    for (const s of data.settings) {
      if (s.code === SOUND) continue;
      let form = settingsList.querySelector(`form[data-code="${CSS.escape(s.code)}"]`);
      if (!form) {
        settingsList.append(form = settingForm(s));
        fillSetting(form, s);
      }
    }
    const sound = data.settings.find((s) => s.code === SOUND);
    root.querySelector('[data-testid="sound-state"]').textContent =
      sound && sound.value ? "A sound is uploaded: operators hear it on a new offer and a new client message."
        : "No sound uploaded: operators hear the built-in chime.";
    document.getElementById("clear-sound").hidden = !(sound && sound.value);
  }

  function settingForm(s) {
    const spec = SETTINGS[s.code] || {label: s.code, kind: typeof s.default === "number" ? "number" : "text"};
    const input = el("input", {name: "value", autocomplete: "off",
      type: spec.kind === "secret" ? "password" : "text", inputmode: spec.kind === "number" ? "decimal" : null});
    // Named by its code, not its label, so get_by_label(label) finds only the input.
    const form = el("form", {class: "setting", dataset: {code: s.code}, "aria-label": s.code, novalidate: true},
      el("label", {}, spec.label, input),
      el("button", {type: "submit", class: "secondary"}, "Save"),
      el("span", {class: "saved", role: "status"}),
      el("p", {class: "muted setting-help"}, el("code", {}, s.code), ": ", s.description,
        s.default !== null && s.default !== undefined ? ` (default ${s.default})` : ""));
    onSubmit(form, async () => {
      saved(form, "");
      const text = input.value;
      // Empty restores the default, except for secrets, where empty would silently erase one.
      const value = spec.kind === "number" ? numberOrText(text)
        : spec.kind === "secret" ? text : (text.trim() === "" ? null : text.trim());
      const answer = await CF.api("PUT", `/api/settings/${encodeURIComponent(s.code)}`, {value});
      fillSetting(form, answer);
      saved(form);
    });
    return form;
  }

  function fillSetting(form, s) {
    const spec = SETTINGS[s.code] || {};
    const input = form.elements.value;
    if (spec.kind === "secret") {
      input.value = "";  // never shown: the API answers it masked anyway
      input.placeholder = s.value ? "set (type a new one to replace it)" : "not set";
    } else {
      input.value = s.value === null || s.value === undefined ? "" : String(s.value);
      input.placeholder = s.default === null || s.default === undefined ? "not set" : `default ${s.default}`;
    }
  }

  const soundForm = document.getElementById("sound");
  const player = soundForm.querySelector("audio");
  onSubmit(soundForm, async () => {
    saved(soundForm, "");
    const file = soundForm.elements.file.files[0];
    if (!file) throw {message: "Choose an audio file first.", details: {field: "file"}};
    await CF.upload("PUT", `/api/settings/${SOUND}/file`, [file]);
    soundForm.reset();
    saved(soundForm, "Uploaded");
    await refresh();
  });

  document.getElementById("clear-sound").addEventListener("click", async () => {
    CF.clearErrors(soundForm);
    if (!CF.confirmed("Remove the uploaded sound? Operators hear the built-in chime instead.")) return;
    try {
      await CF.api("DELETE", `/api/settings/${SOUND}/file`);
      player.hidden = true;
      saved(soundForm, "Removed");
      await refresh();
    } catch (err) {
      CF.showError(soundForm, err);
    }
  });

  // The sound is behind the token, so it is fetched as a blob rather than linked.
  document.getElementById("play-sound").addEventListener("click", async () => {
    CF.clearErrors(soundForm);
    try {
      const blob = await CF.fetchBlob(`/api/settings/${SOUND}/file`);
      if (player.src) URL.revokeObjectURL(player.src);
      player.src = URL.createObjectURL(blob);
      player.hidden = false;
      await player.play();
    } catch (err) {
      if (err.status !== 404) { CF.showError(soundForm, err); return; }
      player.src = "/console/static/notify.wav";  // none uploaded: what operators hear
      player.hidden = false;
      await player.play().catch(() => {});
    }
  });

  // Shown once the lists are in, so no form can be used before its selects are filled.
  await refresh();
  root.hidden = false;
  // A channel that stops working (a page token Facebook refused) shows at once. Only watching:
  // an admin with Chat setup open is not thereby at work as an operator.
  CF.events({path: "/api/events?presence=false", onEvent: (event) => {
    if (event.type === "channel_status") refresh();
    if (event.type === "notification") CF.notice(event, {admin: true});   // e.g. a chat escalated
  }});
})();
