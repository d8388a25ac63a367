// The operator panel: my status; my chats, offers and waiting chats (and all chats for admins)
// with search and filters; one chat's conversation with replies, private notes, canned responses,
// completion and the queue's actions; the client's context; sounds, notifications and shortcuts.
// The lists are never patched from events: on every (re)connect and every event that may change
// them they are reloaded from /api, so the page shows exactly what the API says (unread counts
// included: they come from the server's read markers). Only the open chat's messages are patched
// in place (new client messages, notes, delivery statuses). The open chat is in the URL (?chat=).
"use strict";

(() => {
  const $ = (id) => document.getElementById(id);
  const {el} = CF;

  const MAX_TEXT = 4096;  // the API's limit for one message (Telegram's)
  const REASONS = {
    operator: "You completed this chat.",
    timeout: "This chat was completed automatically: nobody wrote within the queue's completion timeout.",
    admin: "An administrator completed this chat.",
    transferred: "You transferred this chat.",
  };
  const STATUS_TEXT = {uncertain: "may have been delivered"};
  const RESENDABLE = ["uncertain", "failed"];
  const ACCEPT_ERRORS = {
    chat_taken: "Another operator has already taken this chat.",
    not_offered_to_you: "This chat is no longer offered to you.",
  };
  // Offers to me are few (at most the chat limit) and cannot wait: they are pinned above the tabs.
  const OFFERED = (s) => s.chats.filter((c) => c.state === "offered" && c.offered_to_id === s.me.id);
  const TABS = {
    mine: {empty: "No chats in work.", rows: (s) => s.chats.filter((c) => c.state === "in_work" && c.operator_id === s.me.id)},
    waiting: {empty: "Nothing waiting in your queues.", rows: (s) => s.chats.filter((c) => c.state === "queued")},
    all: {empty: "No chat matches.", rows: (s) => s.allChats},
  };

  // Per browser: drafts per chat, the tab, and the Ctrl+Enter habit.
  const store = {
    get: (key, fallback = null) => { const v = localStorage.getItem("chatflow." + key); return v === null ? fallback : v; },
    set: (key, value) => { if (value) localStorage.setItem("chatflow." + key, value); else localStorage.removeItem("chatflow." + key); },
  };

  const state = {
    me: null,
    chats: [],                 // what I may see as an operator, most recently active first
    allChats: [],              // admins' All tab
    tab: store.get("tab", "mine"),
    acceptErrors: new Map(),   // chat id -> message, shown in place until the next accept
    missedChat: null,          // the offer whose acceptance timeout made me inactive
    selected: null,            // the open chat's id
    view: null,                // {chat, messages: Map, notes: Map, ended: reason | null, canned: []}
    viewSeq: 0,
    lateStatus: new Map(),     // message id -> status from message_status (may beat the POST answer)
    names: {queue: new Map(), channel: new Map()},  // filter options, as rows name them
  };

  const draftKey = (id) => `draft.${state.me.id}.${id}`;

  // -- sound and desktop notifications ----------------------------------------------------
  // The uploaded sound if there is one (fetched once, with the token), else the built-in chime
  // shipped with the console. Browsers refuse sound before a user gesture: an "Enable sound"
  // button appears when playing was refused, and any click on the page unlocks it.
  const sound = (() => {
    const audio = $("notify-sound");
    const button = $("enable-sound");
    const builtIn = document.querySelector("script[src$='operator.js']").src.replace(/operator\.js.*$/, "notify.wav");
    let loaded = null, lastPlayed = 0;

    function load() {
      loaded = CF.fetchBlob("/api/settings/OmniChatNotificationSound/file")
        .then((blob) => { audio.src = URL.createObjectURL(blob); })
        .catch(() => { audio.src = builtIn; });  // none uploaded (or unreadable): the built-in chime
      return loaded;
    }

    async function play() {
      const now = Date.now();
      if (now - lastPlayed < 700) return;  // several events at once: one sound
      lastPlayed = now;
      try {
        await (loaded || load());
        audio.currentTime = 0;
        await audio.play();
        button.hidden = true;
      } catch (err) {
        console.warn("notification sound:", err);
        button.hidden = false;
      }
    }

    button.addEventListener("click", () => { lastPlayed = 0; play(); });
    return {load, play};
  })();

  const desktop = (() => {
    const button = $("enable-notifications");
    const supported = "Notification" in window;
    const wanted = () => supported && store.get("notifications") === "on" && Notification.permission === "granted";
    function render() { button.hidden = !supported || wanted() || Notification.permission === "denied"; }
    button.addEventListener("click", async () => {
      if (await Notification.requestPermission() === "granted") store.set("notifications", "on");
      render();
    });
    render();
    return {
      // Only while the panel is not looked at: on screen the sound and the lists say enough.
      show(title, body, chatId) {
        if (!wanted() || !document.hidden) return;
        const n = new Notification(title, {body, tag: `chat-${chatId}`});
        n.onclick = () => { window.focus(); if (chatId) openChat(chatId, {push: true}); n.close(); };
      },
    };
  })();

  // -- status ------------------------------------------------------------------------------
  const toggle = $("status-toggle");
  const statusArea = $("status-area");

  function renderMe() {
    const me = state.me;
    const active = me.status === "active";
    const badge = $("status");
    badge.textContent = me.status;
    badge.className = "badge " + me.status;
    toggle.textContent = active ? "Set inactive" : "Set active";
    toggle.className = active ? "secondary" : "";
    toggle.disabled = false;
    $("load").textContent = `${me.chats_in_work} of ${me.simultaneous_chats_limit} chats in work`;
    if (active) state.missedChat = null;
    $("inactive-text").textContent = state.missedChat
      ? `You did not accept chat #${state.missedChat} in time, so it was taken back from you (and offered to `
        + "the next available operator, if there is one) and you were set inactive. "
        + "No chats are offered or shown to you until you are active again."
      : "You are inactive: no chats are offered or shown to you.";
    $("inactive-banner").hidden = active;
    $("tab-all").hidden = !me.is_admin;
    if (!TABS[state.tab] || (state.tab === "all" && !me.is_admin)) state.tab = "mine";
  }

  async function setStatus(status) {
    CF.clearErrors(statusArea);
    toggle.disabled = true;
    try {
      state.me = await CF.api("PUT", "/api/me/status", {status});
      if (status === "active") state.missedChat = null;
      renderMe();
    } catch (err) {
      CF.showError(statusArea, err);
    } finally {
      toggle.disabled = false;
    }
    refresh();
  }

  toggle.addEventListener("click", () => setStatus(state.me.status === "active" ? "inactive" : "active"));
  $("inactive-activate").addEventListener("click", () => setStatus("active"));

  // -- chat lists --------------------------------------------------------------------------
  const filters = $("list-filters");
  let refreshing = null, again = false;

  function query(extra) {
    const params = new URLSearchParams({sort: "activity", ...extra});
    for (const name of ["q", "queue_id", "channel_id"]) {
      const value = filters.elements[name].value.trim();
      if (value) params.set(name, value);
    }
    return params.toString();
  }

  // Reload my status and the lists; calls during a reload coalesce into one more reload.
  function refresh() {
    if (refreshing) { again = true; return refreshing; }
    refreshing = (async () => {
      try {
        do {
          again = false;
          try {
            const all = state.tab === "all" && state.me.is_admin;
            const state_ = filters.elements.state.value;
            const [me, chats, allChats] = await Promise.all([
              CF.api("GET", "/api/me"),
              CF.api("GET", "/api/chats?" + query({view: "operator", limit: 1000})),
              all ? CF.api("GET", "/api/chats?" + query({limit: 300, ...(state_ ? {state: state_} : {})})) : null]);
            state.me = me;
            state.chats = chats;
            if (allChats) state.allChats = allChats;
            CF.pageError(null);
            renderMe();
            renderLists();
          } catch (err) {
            CF.pageError(err);
          }
        } while (again);
      } finally {
        // Cleared in the same step as the last `again` check, so an event arriving in between is never dropped.
        refreshing = null;
      }
    })();
    return refreshing;
  }

  let typing = null;
  filters.addEventListener("input", () => { clearTimeout(typing); typing = setTimeout(refresh, 250); });
  filters.addEventListener("submit", (e) => { e.preventDefault(); refresh(); });

  document.querySelectorAll(".op-tabs [role=tab]").forEach((tab) => tab.addEventListener("click", () => {
    state.tab = tab.dataset.tab;
    store.set("tab", state.tab);
    renderLists();
    if (state.tab === "all") refresh();
  }));

  function queueName(chat) {
    return chat.queue_name || `Queue ${chat.queue_id}`;
  }

  function age(iso) {
    const seconds = Math.max(0, Math.round((Date.now() - new Date(iso).getTime()) / 1000));
    if (seconds < 60) return `${seconds} s`;
    if (seconds < 3600) return `${Math.floor(seconds / 60)} min`;
    if (seconds < 86400) return `${Math.floor(seconds / 3600)} h ${Math.floor(seconds % 3600 / 60)} min`;
    return `${Math.floor(seconds / 86400)} d`;
  }

  function chatLink(id, ...children) {
    return el("a", {href: `?chat=${id}`, onclick: (e) => {
      if (e.ctrlKey || e.metaKey || e.shiftKey) return;  // a new tab or window, as links do
      e.preventDefault();
      openChat(id, {push: true});
    }}, ...children);
  }

  function chatItem(chat, tab) {
    const name = chat.contact.name;
    const error = state.acceptErrors.get(chat.id);
    const unread = chat.id === state.selected ? 0 : chat.unread;
    const last = chat.last_message;
    const offer = tab === "offered" || (tab === "waiting" && chat.state === "queued");
    const channel = chat.channel ? chat.channel.name : `Channel ${chat.channel_id}`;
    return el("li", {class: "op-item" + (chat.id === state.selected ? " selected" : ""),
                     dataset: {chatId: chat.id}, "aria-current": chat.id === state.selected ? "true" : null},
      el("div", {class: "op-item-main"},
        el("div", {class: "op-item-top"},
          chatLink(chat.id, el("strong", {class: "op-contact", title: name}, name)),
          unread ? el("span", {class: "badge pending op-unread", title: "unread client messages"}, `${unread} new`) : null),
        el("div", {class: "op-item-where muted"},
          el("span", {class: "op-channel"}, channel), " · ", el("span", {class: "op-queue"}, queueName(chat)),
          tab === "all" ? [" · ", el("span", {class: `badge ${chat.state}`}, chat.state.replace("_", " "))] : null),
        last ? el("div", {class: "op-preview muted"}, last.direction === "out" ? "You: " : "", last.text) : null,
        chat.waiting_since
          ? el("div", {class: "op-waiting"}, "waiting ",
               el("time", {class: "op-age", datetime: chat.waiting_since, title: CF.when(chat.waiting_since)},
                  age(chat.waiting_since)))
          : null),
      offer ? el("button", {type: "button", "aria-label": `Accept chat with ${name}`,
                            onclick: (e) => accept(chat, e.currentTarget)}, "Accept") : null,
      error ? el("div", {class: "field-error", role: "alert"}, error) : null);
  }

  function rememberNames(chats) {
    for (const c of chats) {
      state.names.queue.set(String(c.queue_id), queueName(c));
      if (c.channel) state.names.channel.set(String(c.channel_id), c.channel.name);
    }
    for (const kind of ["queue", "channel"]) {
      const select = filters.elements[`${kind}_id`];
      const chosen = select.value;
      const options = [...state.names[kind]].sort((a, b) => a[1].localeCompare(b[1]));
      select.replaceChildren(select.options[0], ...options.map(([id, name]) => el("option", {value: id}, name)));
      select.value = chosen;
    }
  }

  function renderLists() {
    const me = state.me;
    rememberNames(state.chats.concat(state.allChats));
    for (const [name, tab] of Object.entries(TABS)) {
      const button = $(`tab-${name}`);
      button.setAttribute("aria-selected", String(name === state.tab));
      if (name === "all") continue;
      const rows = tab.rows(state);
      const unread = rows.reduce((n, c) => n + (c.id === state.selected ? 0 : c.unread), 0);
      button.querySelector(".count").textContent = rows.length ? String(rows.length) : "";
      button.classList.toggle("has-unread", name === "mine" && unread > 0);
    }
    const offers = OFFERED(state);
    $("offers-area").hidden = !offers.length;
    $("offered").replaceChildren(...offers.map((c) => chatItem(c, "offered")));
    filters.querySelector("[data-for-tab=all]").hidden = state.tab !== "all";
    const rows = TABS[state.tab].rows(state);
    const inactive = me.status !== "active" && state.tab === "waiting";
    $("chat-list").replaceChildren(...(rows.length ? rows.map((c) => chatItem(c, state.tab))
      : [el("li", {class: "muted op-empty"}, inactive ? "Nothing: you are inactive." : TABS[state.tab].empty)]));
    // An accept error whose chat has left the lists (taken by someone else) is still said.
    const listed = new Set(state.chats.map((c) => c.id));
    const gone = [...state.acceptErrors].filter(([id]) => !listed.has(id));
    $("lists-notice").replaceChildren(...gone.map(([id, message]) =>
      el("div", {class: "form-error"}, `Chat #${id}: ${message}`)));
    renderTitle();
  }

  // The tab's title counts what needs me: unread client messages in my chats, and offers.
  function renderTitle() {
    const mine = TABS.mine.rows(state).reduce((n, c) => n + (c.id === state.selected && !document.hidden ? 0 : c.unread), 0);
    const count = mine + OFFERED(state).length;
    document.title = (count ? `(${count}) ` : "") + "Operator panel · Chatflow";
  }

  async function accept(chat, button) {
    state.acceptErrors.clear();
    button.disabled = true;
    try {
      await CF.api("POST", `/api/chats/${chat.id}/accept`);
      state.tab = "mine";
      store.set("tab", "mine");
      await refresh();
      openChat(chat.id, {push: true});
    } catch (err) {
      if (!(err instanceof CF.ApiError) || !err.status) { CF.pageError(err); button.disabled = false; return; }
      state.acceptErrors.set(chat.id, ACCEPT_ERRORS[err.code] || err.message);
      renderLists();  // in place at once; the reload then tells what became of the chat
      await refresh();
    }
  }

  // Ages move on by themselves.
  setInterval(() => {
    document.querySelectorAll("time.op-age").forEach((t) => { t.textContent = age(t.getAttribute("datetime")); });
  }, 5000);

  // -- chat view ---------------------------------------------------------------------------
  const grid = document.querySelector(".op-grid");
  const form = $("reply-form");
  const box = form.elements.text;
  const messagesBox = $("messages");

  const mode = () => form.elements.mode.value;
  const mayReply = () => {
    const view = state.view;
    return !!(view && view.chat && !view.ended && view.chat.state === "in_work" && view.chat.operator_id === state.me.id);
  };

  function urlChat() {
    const id = Number(new URLSearchParams(location.search).get("chat"));
    return Number.isInteger(id) && id > 0 ? id : null;
  }

  function closeChat({push} = {}) {
    state.selected = null;
    state.view = null;
    state.viewSeq++;
    if (push) history.pushState({}, "", location.pathname);
    grid.classList.remove("chat-open");
    $("context").hidden = true;
    renderChat();
    renderLists();
  }

  async function openChat(id, {push} = {}) {
    const seq = ++state.viewSeq;
    const changed = state.selected !== id;
    if (push && urlChat() !== id) history.pushState({chat: id}, "", `?chat=${id}`);
    state.selected = id;
    grid.classList.add("chat-open");
    if (changed) {
      const known = state.chats.concat(state.allChats).find((c) => c.id === id);
      state.view = {chat: known || null, messages: new Map(), notes: new Map(), ended: null, canned: []};
      CF.clearErrors(form);
      form.elements.mode.value = "reply";
      box.value = store.get(draftKey(id), "");
      closeCanned();
      $("action-result").replaceChildren();
      $("actions").replaceChildren();
      $("context-body").replaceChildren();
      renderChat();
      // On a phone the list is hidden while a chat is open; on a wide screen the chat view is
      // sticky. Either way the top of the chat is where the eye is.
      $("chat-view").scrollIntoView({block: "nearest"});
    }
    renderLists();
    try {
      const [chat, messages, notes] = await Promise.all([
        CF.api("GET", `/api/chats/${id}`),
        CF.api("GET", `/api/chats/${id}/messages?limit=1000`),
        CF.api("GET", `/api/chats/${id}/notes`)]);
      if (seq !== state.viewSeq) return;  // another chat was opened meanwhile
      state.view.chat = chat;
      if (chat.state === "completed") state.view.ended = chat.completion_reason || "operator";
      // Statuses heard meanwhile (state.lateStatus) still win at render: this answer may be older.
      for (const m of messages) state.view.messages.set(m.id, m);
      for (const n of notes) state.view.notes.set(n.id, n);
      renderChat();
      markRead();
      loadSidePanels(id, seq, chat);
      loadTransferTargets(chat);
    } catch (err) {
      if (seq === state.viewSeq) CF.showError($("chat-body"), err);
    }
  }

  async function loadSidePanels(id, seq, chat) {
    const [actions, context, canned] = await Promise.all([
      mayReply() ? CF.api("GET", `/api/chats/${id}/actions`).catch(() => []) : [],
      CF.api("GET", `/api/chats/${id}/context`).catch(() => null),
      CF.api("GET", `/api/canned-responses?queue_id=${chat.queue_id}`).catch(() => [])]);
    if (seq !== state.viewSeq) return;
    state.view.canned = canned;
    renderActions(actions);
    renderContext(context);
  }

  window.addEventListener("popstate", () => {
    const id = urlChat();
    if (id) openChat(id); else closeChat();
  });
  $("chat-close").addEventListener("click", () => closeChat({push: true}));

  function renderChat() {
    const view = state.view;
    const chat = view && view.chat;
    $("chat-hint").hidden = !!view;
    $("chat-body").hidden = !view;
    $("chat-close").hidden = !view;
    if (!view) { $("chat-title").textContent = "No chat selected"; return; }
    $("chat-title").textContent = chat ? `Chat with ${chat.contact.name}` : `Chat #${state.selected}`;
    $("chat-meta").replaceChildren(...(chat
      ? [el("a", {href: `/console/chats/${chat.id}`, title: "The chat on its own page, with its history"},
            `#${chat.id}`),
         ` · ${chat.channel ? chat.channel.name + " · " : ""}${queueName(chat)} · started ${CF.when(chat.created_at)}`
         + (chat.accepted_at ? ` · accepted ${CF.when(chat.accepted_at)}` : "")]
      : []));
    const ended = view.ended;
    const banner = $("chat-ended");
    banner.hidden = !chat || (!ended && mayReply());
    banner.className = "banner " + (ended ? "ok" : "info");
    const acceptable = chat && (chat.state === "queued" || (chat.state === "offered" && chat.offered_to_id === state.me.id));
    banner.replaceChildren(ended ? (REASONS[ended] || `This chat was completed (${ended}).`)
      : acceptable ? "Accept this chat to reply to the client. "
      : chat && chat.state !== "in_work" ? "This chat is not yours: you can read it and leave private notes."
      : chat ? "This chat is in work by another operator: you can read it and leave private notes." : "",
      ...(acceptable ? [el("button", {type: "button", onclick: (e) => accept(chat, e.currentTarget)}, "Accept")] : []));
    const replying = mayReply();
    form.hidden = !chat || !!ended;
    form.querySelector("[value=reply]").disabled = !replying;
    if (!replying && mode() === "reply") form.elements.mode.value = "note";
    if (replying && !view.couldReply) form.elements.mode.value = "reply";  // just accepted: reply first
    view.couldReply = replying;
    $("complete").hidden = !replying;
    $("actions-area").hidden = !replying;
    renderCompose();
    renderMessages();
  }

  // Messages and private notes in one timeline; notes are the staff's, drawn apart.
  function messageItem(m) {
    const status = m.direction === "out" ? (state.lateStatus.get(m.id) || m.status) : null;
    return el("li", {class: `msg ${m.direction} kind-${m.kind || "text"}`,
                     dataset: {messageId: m.id, direction: m.direction, kind: m.kind || "text"}},
      CFMessages.body(m),
      el("div", {class: "msg-meta muted"},
        el("span", {class: "visually-hidden"}, m.direction === "in" ? "Client" : "You"),
        el("time", {datetime: m.created_at}, new Date(m.created_at).toLocaleTimeString()),
        status ? el("span", {class: `badge ${status} msg-status`, title: m.error || null},
                    STATUS_TEXT[status] || status) : null,
        CFMessages.ticks(status),
        RESENDABLE.includes(status) && !state.view.ended
          ? el("button", {type: "button", class: "send-again", onclick: (e) => sendAgain(m, e.target)},
               "Send again") : null),
      status === "uncertain"
        ? el("div", {class: "msg-note muted"}, "The provider did not answer: the client may have it already.")
        : null);
  }

  // Only the operator decides to send a reply again that may have gone out (or failed).
  async function sendAgain(message, button) {
    button.disabled = true;
    try {
      const answer = await CF.api("POST", `/api/chats/${state.selected}/messages/${message.id}/send-again`);
      state.lateStatus.delete(message.id);
      addMessage(answer);
    } catch (err) {
      button.disabled = false;
      CF.pageError(err);
    }
  }

  function noteItem(n) {
    return el("li", {class: "msg note", dataset: {noteId: n.id}},
      el("div", {class: "msg-note-label"}, "Private note", n.author ? ` · ${n.author.name}` : "",
         el("span", {class: "muted"}, " · not sent to the client")),
      el("div", {class: "msg-text"}, n.text),
      el("div", {class: "msg-meta muted"}, el("time", {datetime: n.created_at}, new Date(n.created_at).toLocaleTimeString())));
  }

  function renderMessages() {
    const view = state.view;
    const timeline = [...[...view.messages.values()].map((m) => [m.created_at, 0, m.id, messageItem, m]),
                      ...[...view.notes.values()].map((n) => [n.created_at, 1, n.id, noteItem, n])]
      .sort((a, b) => (a[0] < b[0] ? -1 : a[0] > b[0] ? 1 : a[1] - b[1] || a[2] - b[2]));
    const atBottom = messagesBox.scrollHeight - messagesBox.scrollTop - messagesBox.clientHeight < 40;
    messagesBox.replaceChildren(...timeline.map(([, , , item, row]) => item(row)));
    if (!timeline.length) messagesBox.append(el("li", {class: "muted"}, "No messages yet."));
    if (atBottom) messagesBox.scrollTop = messagesBox.scrollHeight;  // unless reading older ones
  }

  function addMessage(message) {
    if (!state.view) return;
    state.view.messages.set(message.id, message);
    renderMessages();
  }

  // The read marker follows what the open chat shows (debounced: a burst of messages, one call).
  let marking = null;
  function markRead() {
    clearTimeout(marking);
    marking = setTimeout(async () => {
      const view = state.view;
      if (!view || document.hidden) return;
      const newest = Math.max(0, ...view.messages.keys());
      const row = state.chats.find((c) => c.id === state.selected);
      try {
        const answer = await CF.api("PUT", `/api/chats/${state.selected}/read`, newest ? {message_id: newest} : {});
        if (row) row.unread = answer.unread;
        renderLists();
      } catch (err) {
        console.warn("read marker:", err);  // the count stays until the next reload: no harm done
      }
    }, 150);
  }
  document.addEventListener("visibilitychange", () => { if (!document.hidden && state.view) markRead(); renderTitle(); });

  // -- composing: drafts, Enter, the limit, canned responses -------------------------------
  const ctrlEnter = $("ctrl-enter");
  ctrlEnter.checked = store.get("sendKey") === "ctrl-enter";
  ctrlEnter.addEventListener("change", () => { store.set("sendKey", ctrlEnter.checked ? "ctrl-enter" : null); renderCompose(); });
  form.addEventListener("change", (e) => { if (e.target.name === "mode") { renderCompose(); box.focus(); } });

  function renderCompose() {
    const note = mode() === "note";
    form.classList.toggle("noting", note);
    $("reply-label").textContent = note ? "Private note (only staff see it)" : "Reply";
    $("send").textContent = note ? "Add note" : "Send";
    $("reply-hint").textContent = ctrlEnter.checked ? "Ctrl+Enter sends · Enter makes a new line · / for canned responses"
      : "Enter sends · Shift+Enter makes a new line · / for canned responses";
    const over = box.value.length - MAX_TEXT;
    const count = $("reply-count");
    count.textContent = over > 0 ? `${box.value.length} / ${MAX_TEXT}: ${over} character${over === 1 ? "" : "s"} over `
      + "the limit of one message. Shorten it or send it in parts." : box.value.length > MAX_TEXT - 300
      ? `${box.value.length} / ${MAX_TEXT}` : "";
    count.className = over > 0 ? "field-error over" : "muted";
    box.setAttribute("aria-invalid", over > 0 ? "true" : "false");
    $("send").disabled = over > 0 || !!(state.view && state.view.ended);
  }

  box.addEventListener("input", () => {
    if (state.selected) store.set(draftKey(state.selected), box.value);
    renderCompose();
    updateCanned();
  });

  async function send() {
    CF.clearErrors(form);
    const id = state.selected;
    const text = box.value;
    if (text.length > MAX_TEXT) { renderCompose(); return; }
    const note = mode() === "note";
    const button = $("send");
    button.disabled = true;
    try {
      // No other check here: the API's answer (e.g. empty text) is shown next to the box.
      const file = !note && form.file.files[0];
      const answer = file ? await sendFile(id, file, text)
        : await CF.api("POST", `/api/chats/${id}/${note ? "notes" : "messages"}`, {text});
      store.set(draftKey(id), null);
      if (state.selected === id) {
        box.value = "";
        if (file) clearFile();
        if (note) { state.view.notes.set(answer.id, answer); renderMessages(); } else addMessage(answer);
      }
    } catch (err) {
      CF.showError(form, err);
    } finally {
      renderCompose();
    }
  }

  form.addEventListener("submit", (e) => { e.preventDefault(); send(); });

  // A file goes as multipart (part `file`), the reply box as its caption.
  async function sendFile(id, file, text) {
    const data = new FormData();
    data.append("file", file, file.name);
    if (text) data.append("text", text);
    const response = await fetch(`/api/chats/${id}/messages`, {
      method: "POST", headers: {Authorization: "Bearer " + CF.token()}, body: data});
    const body = await response.json().catch(() => null);
    if (!response.ok) throw new CF.ApiError(response.status, body);
    return body;
  }

  function clearFile() {
    form.file.value = "";
    $("reply-file-name").textContent = "";
  }

  form.file.addEventListener("change", () => {
    const file = form.file.files[0];
    $("reply-file-name").textContent = file ? `${file.name} (${CFMessages.size(file.size)})` : "";
  });

  box.addEventListener("keydown", (e) => {
    if (canned.open && canned.key(e)) return;
    if (e.key !== "Enter" || e.isComposing) return;
    const modifier = e.ctrlKey || e.metaKey;
    if (ctrlEnter.checked ? modifier : !e.shiftKey) { e.preventDefault(); send(); }
  });

  // Typing "/" (at the start or after a space) opens the canned responses of the chat's queue,
  // filtered by what follows; Enter or Tab inserts the chosen one, Esc closes the list.
  const canned = {open: false, items: [], index: 0};
  const cannedList = $("canned-list");

  function cannedToken() {
    const before = box.value.slice(0, box.selectionStart);
    const match = /(^|\s)\/([\w-]*)$/.exec(before);
    return match ? {start: before.length - match[2].length - 1, word: match[2].toLowerCase()} : null;
  }

  function updateCanned() {
    const token = state.view && cannedToken();
    if (!token) { closeCanned(); return; }
    canned.items = state.view.canned.filter((c) => c.shortcut.startsWith(token.word));
    canned.index = Math.min(canned.index, Math.max(0, canned.items.length - 1));
    canned.open = true;
    cannedList.hidden = false;
    cannedList.replaceChildren(...(canned.items.length ? canned.items.map((c, i) =>
      el("li", {role: "option", id: `canned-${c.id}`, "aria-selected": String(i === canned.index),
                onmousedown: (e) => { e.preventDefault(); insertCanned(c); }},
         el("strong", {}, "/" + c.shortcut), " ", el("span", {class: "muted"}, c.text)))
      : [el("li", {class: "muted"}, state.view.canned.length ? "No canned response starts so."
                                                              : "No canned responses for this queue yet.")]));
    box.setAttribute("aria-activedescendant", canned.items.length ? `canned-${canned.items[canned.index].id}` : "");
  }

  function closeCanned() {
    canned.open = false;
    canned.index = 0;
    cannedList.hidden = true;
    box.removeAttribute("aria-activedescendant");
  }

  function insertCanned(item) {
    const token = cannedToken();
    const start = token ? token.start : box.selectionStart;
    const end = box.selectionStart;
    box.setRangeText(item.text, start, end, "end");
    closeCanned();
    box.dispatchEvent(new Event("input"));
    box.focus();
  }

  canned.key = (e) => {
    if (e.key === "Escape") { closeCanned(); e.preventDefault(); return true; }
    if (!canned.items.length) return false;
    if (e.key === "ArrowDown" || e.key === "ArrowUp") {
      canned.index = (canned.index + (e.key === "ArrowDown" ? 1 : -1) + canned.items.length) % canned.items.length;
      updateCanned();
      e.preventDefault();
      return true;
    }
    if ((e.key === "Enter" && !e.shiftKey) || e.key === "Tab") {
      insertCanned(canned.items[canned.index]);
      e.preventDefault();
      return true;
    }
    return false;
  };
  box.addEventListener("blur", () => setTimeout(closeCanned, 100));
  box.addEventListener("click", updateCanned);

  async function complete() {
    const id = state.selected;
    const chat = state.view && state.view.chat;
    if (!id || !mayReply() || !CF.confirmed(`Complete the chat with ${chat ? chat.contact.name : "#" + id}? `
                                             + "The client's next message starts a new chat.")) return;
    const button = $("complete");
    CF.clearErrors(form);
    button.disabled = true;
    try {
      const answer = await CF.api("POST", `/api/chats/${id}/complete`);
      store.set(draftKey(id), null);
      if (state.selected === id) {
        state.view.chat = answer;
        state.view.ended = answer.completion_reason || "operator";
        renderChat();
      }
    } catch (err) {
      CF.showError(form, err);
    } finally {
      button.disabled = false;
    }
    refresh();
  }
  $("complete").addEventListener("click", complete);

  // -- transfer ----------------------------------------------------------------------------
  // A chat in work goes to a colleague of its queue (offered to them) or to another queue.
  const transferForm = $("transfer-form");

  async function loadTransferTargets(chat) {
    const area = $("transfer-area");
    area.hidden = !(chat.state === "in_work" && chat.operator_id === state.me.id);
    if (area.hidden) return;
    CF.clearErrors(transferForm);
    const targets = await CF.api("GET", `/api/chats/${chat.id}/transfer-targets`);
    if (state.selected !== chat.id) return;
    const select = $("transfer-target");
    const operators = targets.operators.map((o) => el("option", {value: `operator:${o.id}`, disabled: !o.available},
      o.available ? `${o.name} (${o.presence}, holds ${o.holds})` : `${o.name}: ${o.reason}`));
    const queues = targets.queues.map((q) => el("option", {value: `queue:${q.id}`}, `Queue ${q.name}`));
    select.replaceChildren(
      el("optgroup", {label: "Operators of this queue"}, ...operators),
      el("optgroup", {label: "Another queue (routed by its rule)"}, ...queues));
    const first = [...select.options].find((o) => !o.disabled);
    if (first) first.selected = true;
  }

  transferForm.addEventListener("submit", async (e) => {
    e.preventDefault();
    const id = state.selected;
    const [kind, target] = transferForm.operator_id.value.split(":");
    CF.clearErrors(transferForm);
    const button = transferForm.querySelector("button");
    button.disabled = true;
    try {
      const body = {[kind === "queue" ? "queue_id" : "operator_id"]: Number(target)};
      if (transferForm.note.value.trim()) body.note = transferForm.note.value.trim();
      await CF.api("POST", `/api/chats/${id}/transfer`, body);
      transferForm.note.value = "";
      $("transfer-area").hidden = true;
      if (state.selected === id) {
        state.view.ended = "transferred";
        renderChat();
      }
    } catch (err) {
      CF.showError(transferForm, err);
    } finally {
      button.disabled = false;
    }
    refresh();
  });

  // -- chat actions ------------------------------------------------------------------------
  function renderActions(actions) {
    const area = $("actions");
    area.replaceChildren(...actions.map((action) =>
      el("button", {type: "button", class: "secondary", onclick: (e) => runAction(action, e.currentTarget)},
         action.name)));
    if (!actions.length) area.append(el("span", {class: "muted"}, "This chat's queue has no actions."));
  }

  async function runAction(action, button) {
    const id = state.selected;
    const result = $("action-result");
    CF.clearErrors(result);
    result.replaceChildren(el("span", {class: "muted"}, `${action.name}…`));
    button.disabled = true;
    try {
      const answer = await CF.api("POST", `/api/chats/${id}/actions/${action.id}`);
      if (state.selected !== id) return;
      const data = answer.data || {};
      const failed = answer.state === "error";
      result.replaceChildren(el("div", {class: "banner " + (failed ? "error" : "ok")},
        data.CaseNumber && !failed ? el("strong", {}, `Case ${data.CaseNumber} created`) : el("strong", {}, action.name),
        " · ",
        // The instance page reads the process API, which is for admins.
        state.me.is_admin ? el("a", {href: `/console/instances/${answer.process_instance_id}`},
                               `process instance ${answer.process_instance_id}`)
          : `process instance ${answer.process_instance_id}`, " ",
        el("span", {class: "badge " + answer.state}, answer.state),
        answer.error ? el("div", {}, answer.error) : null));
      CF.api("GET", `/api/chats/${id}/context`).then((c) => { if (state.selected === id) renderContext(c); }, () => {});
    } catch (err) {
      result.replaceChildren();
      CF.showError(result, err);
    } finally {
      button.disabled = false;
    }
  }

  // -- the client's context ----------------------------------------------------------------
  function renderContext(context) {
    const panel = $("context");
    panel.hidden = !context;
    if (!context) return;
    const {contact, earlier_chats: earlier, cases} = context;
    const who = (c) => c.operator ? c.operator.name : "nobody";
    $("context-body").replaceChildren(
      el("p", {class: "op-context-name"}, el("strong", {}, contact.name)),
      el("ul", {class: "op-identities"}, contact.identities.map((i) =>
        el("li", {}, el("span", {class: "badge"}, i.provider), " ", i.channel_name || `channel ${i.channel_id}`,
           el("span", {class: "muted"}, ` · id ${i.external_id}`)))),
      el("h3", {}, "Earlier chats"),
      earlier.length ? el("ul", {class: "op-earlier"}, earlier.map((c) =>
        el("li", {dataset: {chatId: c.id}},
          chatLink(c.id, `#${c.id} · ${new Date(c.created_at).toLocaleDateString()}`),
          el("div", {class: "muted"}, `${who(c)} · ${c.queue_name} · `,
             c.completion_reason ? `completed (${c.completion_reason})` : c.state.replace("_", " ")))))
        : el("p", {class: "muted"}, "None: this is their first chat."),
      el("h3", {}, "Cases"),
      cases.length ? el("ul", {class: "op-cases"}, cases.map((k) =>
        el("li", {dataset: {caseId: k.id}},
          el("strong", {}, k.number || `#${k.id}`), " ", k.subject, " ", el("span", {class: "badge"}, k.status),
          k.chat_id ? [" · ", chatLink(k.chat_id, `chat #${k.chat_id}`)] : null)))
        : el("p", {class: "muted"}, "No cases."));
  }

  // -- keyboard shortcuts -------------------------------------------------------------------
  const overlay = $("shortcuts");
  function showShortcuts(show) {
    overlay.hidden = !show;
    if (show) $("shortcuts-close").focus();
  }
  $("show-shortcuts").addEventListener("click", () => showShortcuts(true));
  $("shortcuts-close").addEventListener("click", () => showShortcuts(false));
  overlay.addEventListener("click", (e) => { if (e.target === overlay) showShortcuts(false); });

  function step(delta) {
    const rows = TABS[state.tab].rows(state);
    if (!rows.length) return;
    const at = rows.findIndex((c) => c.id === state.selected);
    const next = rows[at < 0 ? (delta > 0 ? 0 : rows.length - 1) : (at + delta + rows.length) % rows.length];
    openChat(next.id, {push: true});
    const item = document.querySelector(`#chat-list [data-chat-id="${next.id}"]`);
    if (item) item.scrollIntoView({block: "nearest"});
  }

  document.addEventListener("keydown", (e) => {
    if (e.key === "Escape" && !overlay.hidden) { showShortcuts(false); return; }
    const typingHere = e.target.closest("input, textarea, select");
    if (e.key === "?" && !typingHere && !e.altKey && !e.ctrlKey && !e.metaKey) {
      showShortcuts(overlay.hidden);
      e.preventDefault();
      return;
    }
    if (!e.altKey || e.ctrlKey || e.metaKey) return;
    const key = e.code.replace(/^Key/, "").toLowerCase();
    const actions = {
      arrowdown: () => step(1),
      arrowup: () => step(-1),
      a: () => {
        const oldest = OFFERED(state).concat(TABS.waiting.rows(state))
          .sort((x, y) => (x.created_at < y.created_at ? -1 : 1))[0];
        const button = oldest && document.querySelector(`.op-lists [data-chat-id="${oldest.id}"] button`);
        if (oldest) accept(oldest, button || document.createElement("button"));
      },
      c: complete,
      r: () => { if (!form.hidden) box.focus(); },
      k: () => {
        if (form.hidden) return;
        box.focus();
        if (!cannedToken()) box.setRangeText((box.selectionStart && !/\s$/.test(box.value.slice(0, box.selectionStart)) ? " /" : "/"),
                                             box.selectionStart, box.selectionEnd, "end");
        updateCanned();
      },
    };
    if (actions[key]) { e.preventDefault(); actions[key](); }
  });

  // -- live events -------------------------------------------------------------------------
  function setLive(liveState) {
    const badge = $("live");
    badge.dataset.state = liveState;
    badge.textContent = liveState === "live" ? "● Live" : "Reconnecting…";
    badge.title = liveState === "live" ? "Updates arrive as they happen"
      : "The live connection dropped; the lists reload when it is back";
  }

  let later = null;
  const refreshSoon = () => { clearTimeout(later); later = setTimeout(refresh, 200); };

  function onEvent(event) {
    switch (event.type) {
      case "chat_offered":
      case "chat_visible":
        sound.play();
        desktop.show("New chat waiting", "A client is waiting for an operator.", event.chat_id);
        refresh();
        break;
      case "chat_withdrawn":
        if (event.reason === "accept_timeout") state.missedChat = event.chat_id;
        refresh();
        break;
      case "chat_taken":
        refresh();
        break;
      case "chat_completed":
        if (event.chat_id === state.selected && state.view) {
          state.view.ended = event.reason || "operator";
          renderChat();
        }
        refresh();
        break;
      case "notification":   // e.g. the escalation lifecycle telling supervisors
        CF.notice(event, {admin: state.me && state.me.is_admin});
        desktop.show("Chat escalated", event.text, event.chat_id);
        break;
      case "status_changed":
        if (state.me) { state.me.status = event.status; renderMe(); }
        refresh();
        break;
      case "chat_message": {
        const onScreen = event.chat_id === state.selected && !document.hidden;
        if (event.chat_id === state.selected) {
          addMessage(event.message);
          if (onScreen) markRead();
        }
        const row = state.chats.find((c) => c.id === event.chat_id);
        if (event.message.direction === "in" && !onScreen) {
          if (row) { row.unread += 1; renderLists(); }
          if (row && row.state === "in_work") {
            sound.play();
            desktop.show(`New message from ${row.contact.name}`, event.message.text.slice(0, 120), event.chat_id);
          }
        }
        refreshSoon();  // preview, waiting time and order
        break;
      }
      case "message_updated":   // an edit, a file fetched, a receipt
        if (event.chat_id === state.selected) addMessage(event.message);
        break;
      case "chat_note":
        if (event.chat_id === state.selected && state.view) {
          state.view.notes.set(event.note.id, event.note);
          renderMessages();
        }
        break;
      case "message_status": {
        state.lateStatus.set(event.message_id, event.status);
        const m = state.view && state.view.messages.get(event.message_id);
        if (m) { m.status = event.status; renderMessages(); }
        break;
      }
    }
  }

  async function main() {
    const me = await CF.start();
    if (!me) return;
    state.me = me;
    renderMe();
    renderCompose();
    sound.load();
    const first = urlChat();
    if (first) openChat(first);
    CF.events({
      onEvent,
      onState: setLive,
      onReady: async () => {
        await refresh();
        if (state.selected) openChat(state.selected);  // messages missed while disconnected
      },
    });
  }

  main();
})();
