// The operator panel: my status, the chats offered to me / waiting in my `all` queues / in work,
// one chat's conversation with replies, completion and the queue's actions.
// The lists are never patched from events: on every (re)connect and every event that may change
// them they are reloaded from /api, so the page shows exactly what the API says. Only the open
// chat's messages are patched in place (new client messages, delivery statuses).
"use strict";

(() => {
  const $ = (id) => document.getElementById(id);
  const {el} = CF;

  const REASONS = {
    operator: "You completed this chat.",
    timeout: "This chat was completed automatically: nobody wrote within the queue's completion timeout.",
    admin: "An administrator completed this chat.",
  };
  const STATUS_TEXT = {uncertain: "may have been delivered"};
  const RESENDABLE = ["uncertain", "failed"];
  const ACCEPT_ERRORS = {
    chat_taken: "Another operator has already taken this chat.",
    not_offered_to_you: "This chat is no longer offered to you.",
  };

  const state = {
    me: null,
    chats: [],
    acceptErrors: new Map(),   // chat id -> message, shown in place until the next accept
    unread: new Map(),         // chat id in work -> client messages since last opened
    missedChat: null,          // the offer whose acceptance timeout made me inactive
    selected: null,            // the open chat's id
    view: null,                // {chat, messages: Map(id -> message), ended: reason | null}
    viewSeq: 0,
    lateStatus: new Map(),     // message id -> status from message_status (may beat the POST answer)
  };

  // -- notification sound ------------------------------------------------------------------
  // The uploaded sound if there is one (fetched once, with the token), else a short Web Audio
  // beep. Browsers refuse sound before a user gesture: clicks on this page unlock it, and an
  // "Enable sound" button appears when playing was refused.
  const sound = (() => {
    const audio = $("notify-sound");
    const button = $("enable-sound");
    let file = null, ctx = null, lastPlayed = 0;

    function load() {
      file = CF.fetchBlob("/api/settings/OmniChatNotificationSound/file")
        .then((blob) => { audio.src = URL.createObjectURL(blob); return true; })
        .catch(() => false);  // 404: none uploaded (anything else: the beep is better than silence)
      return file;
    }

    function context() {
      const AudioContext = window.AudioContext || window.webkitAudioContext;
      if (!ctx && AudioContext) ctx = new AudioContext();
      return ctx;
    }

    // Run inside click handlers: a context created or resumed during a gesture may play later.
    function unlock() {
      const c = context();
      if (c && c.state === "suspended") c.resume().catch(() => {});
    }

    async function beep() {
      const c = context();
      if (!c) throw new Error("no Web Audio");
      if (c.state !== "running") {
        // resume() never settles while autoplay is refused: give it a moment, then give up.
        await Promise.race([c.resume(), new Promise((r) => setTimeout(r, 300))]);
        if (c.state !== "running") throw new Error("sound is blocked until you click");
      }
      const osc = c.createOscillator(), gain = c.createGain();
      osc.type = "sine";
      osc.frequency.value = 880;
      gain.gain.setValueAtTime(0.2, c.currentTime);
      gain.gain.exponentialRampToValueAtTime(0.001, c.currentTime + 0.25);
      osc.connect(gain).connect(c.destination);
      osc.start();
      osc.stop(c.currentTime + 0.25);
    }

    async function play() {
      const now = Date.now();
      if (now - lastPlayed < 700) return;  // several chats at once: one sound
      lastPlayed = now;
      try {
        if (await (file || load())) {
          audio.currentTime = 0;
          await audio.play();
        } else {
          await beep();
        }
        button.hidden = true;
      } catch (err) {
        console.warn("notification sound:", err);
        button.hidden = false;
      }
    }

    button.addEventListener("click", () => { unlock(); lastPlayed = 0; play(); });
    return {load, play, unlock};
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
      ? `You did not accept chat #${state.missedChat} in time, so it went to another operator and you were set inactive. `
        + "No chats are offered or shown to you until you are active again."
      : "You are inactive: no chats are offered or shown to you.";
    $("inactive-banner").hidden = active;
  }

  async function setStatus(status) {
    sound.unlock();  // this click is the gesture that lets the panel play sounds later
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
  let refreshing = null, again = false;

  // Reload my status and the lists; calls during a reload coalesce into one more reload.
  function refresh() {
    if (refreshing) { again = true; return refreshing; }
    refreshing = (async () => {
      try {
        do {
          again = false;
          try {
            const [me, chats] = await Promise.all([CF.api("GET", "/api/me"),
                                                   CF.api("GET", "/api/chats?view=operator&limit=1000")]);
            state.me = me;
            state.chats = chats;
            CF.pageError(null);
            renderMe();
            renderLists();
          } catch (err) {
            CF.pageError(err);
          }
        } while (again);
      } finally {
        // Cleared in the same step as the last `again` check (not in a later .finally
        // callback), so an event arriving in between is never dropped.
        refreshing = null;
      }
    })();
    return refreshing;
  }

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

  function chatItem(chat, kind) {
    const name = chat.contact.name;
    const error = state.acceptErrors.get(chat.id);
    const unread = state.unread.get(chat.id);
    const button = kind === "work"
      ? el("button", {type: "button", class: "secondary", "aria-label": `Open chat with ${name}`,
                      onclick: () => openChat(chat.id)}, "Open")
      : el("button", {type: "button", "aria-label": `Accept chat with ${name}`,
                      onclick: (e) => accept(chat, e.currentTarget)}, "Accept");
    return el("li", {class: "op-item" + (chat.id === state.selected ? " selected" : ""),
                     dataset: {chatId: chat.id}, "aria-current": chat.id === state.selected ? "true" : null},
      el("div", {class: "op-item-main"},
        el("strong", {class: "op-contact"}, name),
        unread ? el("span", {class: "badge pending", title: "new client messages"}, `${unread} new`) : null,
        el("div", {class: "muted"},
          el("span", {class: "op-queue"}, queueName(chat)), " · ",
          el("time", {class: "op-age", datetime: chat.created_at, title: CF.when(chat.created_at)},
             age(chat.created_at)))),
      button,
      error ? el("div", {class: "field-error", role: "alert"}, error) : null);
  }

  function fill(list, chats, kind, empty) {
    list.replaceChildren(...(chats.length ? chats.map((c) => chatItem(c, kind))
                                          : [el("li", {class: "muted op-empty"}, empty)]));
  }

  function renderLists() {
    const me = state.me;
    const offered = state.chats.filter((c) => c.state === "offered" && c.offered_to_id === me.id);
    const visible = state.chats.filter((c) => c.state === "queued");
    const work = state.chats.filter((c) => c.state === "in_work" && c.operator_id === me.id);
    const idle = me.status === "active" ? "Nothing right now." : "Nothing: you are inactive.";
    fill($("offered"), offered, "offer", idle);
    fill($("visible"), visible, "offer", idle);
    fill($("in-work"), work, "work", "No chats in work.");
    // An accept error whose chat has left the lists (taken by someone else) is still said.
    const listed = new Set(state.chats.map((c) => c.id));
    const gone = [...state.acceptErrors].filter(([id]) => !listed.has(id));
    $("lists-notice").replaceChildren(...gone.map(([id, message]) =>
      el("div", {class: "form-error"}, `Chat #${id}: ${message}`)));
  }

  async function accept(chat, button) {
    sound.unlock();
    state.acceptErrors.clear();
    button.disabled = true;
    try {
      await CF.api("POST", `/api/chats/${chat.id}/accept`);
      await refresh();
      openChat(chat.id);
    } catch (err) {
      if (!(err instanceof CF.ApiError)) { CF.pageError(err); return; }
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
  const form = $("reply-form");
  const messagesBox = $("messages");

  async function openChat(id) {
    const seq = ++state.viewSeq;
    const changed = state.selected !== id;
    state.selected = id;
    state.unread.delete(id);
    if (changed) {
      const known = state.chats.find((c) => c.id === id);
      state.view = {chat: known || null, messages: new Map(), ended: null};
      CF.clearErrors(form);
      form.text.value = "";
      $("action-result").replaceChildren();
      $("actions").replaceChildren();
      renderChat();
    }
    renderLists();
    try {
      const [chat, messages, actions] = await Promise.all([
        CF.api("GET", `/api/chats/${id}`),
        CF.api("GET", `/api/chats/${id}/messages?limit=1000`),
        CF.api("GET", `/api/chats/${id}/actions`)]);
      if (seq !== state.viewSeq) return;  // another chat was opened meanwhile
      state.view.chat = chat;
      if (chat.state === "completed") state.view.ended = chat.completion_reason;
      // Statuses heard meanwhile (state.lateStatus) still win at render: this answer may be older.
      for (const m of messages) state.view.messages.set(m.id, m);
      renderChat();
      renderActions(actions);
    } catch (err) {
      if (seq === state.viewSeq) CF.showError($("chat-body"), err);
    }
  }

  function renderChat() {
    const view = state.view;
    const chat = view && view.chat;
    $("chat-hint").hidden = !!view;
    $("chat-body").hidden = !view;
    if (!view) { $("chat-title").textContent = "No chat selected"; return; }
    $("chat-title").textContent = chat ? `Chat with ${chat.contact.name}` : `Chat #${state.selected}`;
    $("chat-meta").replaceChildren(...(chat
      ? [el("a", {href: `/console/chats/${chat.id}`, title: "The chat on its own page, with its history"},
            `#${chat.id}`),
         ` · ${queueName(chat)} · started ${CF.when(chat.created_at)}`
         + (chat.accepted_at ? ` · accepted ${CF.when(chat.accepted_at)}` : "")]
      : []));
    const ended = view.ended;
    $("chat-ended").hidden = !ended;
    $("chat-ended").textContent = ended ? (REASONS[ended] || `This chat was completed (${ended}).`) : "";
    for (const control of form.elements) control.disabled = !!ended;
    renderMessages();
  }

  function renderMessages() {
    const view = state.view;
    const list = [...view.messages.values()].sort((a, b) => a.id - b.id);
    const atBottom = messagesBox.scrollHeight - messagesBox.scrollTop - messagesBox.clientHeight < 40;
    messagesBox.replaceChildren(...list.map((m) => {
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
          RESENDABLE.includes(status) && !view.ended
            ? el("button", {type: "button", class: "send-again", onclick: (e) => sendAgain(m, e.target)},
                 "Send again") : null),
        status === "uncertain"
          ? el("div", {class: "msg-note muted"}, "The provider did not answer: the client may have it already.")
          : null);
    }));
    if (!list.length) messagesBox.append(el("li", {class: "muted"}, "No messages yet."));
    if (atBottom) messagesBox.scrollTop = messagesBox.scrollHeight;  // unless reading older ones
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

  function addMessage(message) {
    if (!state.view) return;
    state.view.messages.set(message.id, message);
    renderMessages();
  }

  form.addEventListener("submit", async (e) => {
    e.preventDefault();
    CF.clearErrors(form);
    const id = state.selected;
    const send = form.querySelector("button[type=submit]");
    send.disabled = true;
    try {
      // No check here: the API's answer (e.g. empty text) is shown next to the box.
      const file = form.file.files[0];
      const message = file ? await sendFile(id, file, form.text.value)
        : await CF.api("POST", `/api/chats/${id}/messages`, {text: form.text.value});
      if (state.selected === id) { form.text.value = ""; clearFile(); addMessage(message); }
    } catch (err) {
      CF.showError(form, err);
    } finally {
      send.disabled = !!(state.view && state.view.ended);
    }
  });

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

  // Ctrl/Cmd+Enter sends, as in most chat tools; Enter alone makes a new line.
  form.text.addEventListener("keydown", (e) => {
    if (e.key === "Enter" && (e.ctrlKey || e.metaKey)) { e.preventDefault(); form.requestSubmit(); }
  });

  $("complete").addEventListener("click", async (e) => {
    const id = state.selected;
    CF.clearErrors(form);
    e.currentTarget.disabled = true;
    try {
      const chat = await CF.api("POST", `/api/chats/${id}/complete`);
      if (state.selected === id) {
        state.view.chat = chat;
        state.view.ended = chat.completion_reason || "operator";
        renderChat();
      }
    } catch (err) {
      CF.showError(form, err);
      e.currentTarget.disabled = false;
    }
    refresh();
  });

  // -- chat actions ------------------------------------------------------------------------
  function renderActions(actions) {
    const box = $("actions");
    box.replaceChildren(...actions.map((action) =>
      el("button", {type: "button", class: "secondary", onclick: (e) => runAction(action, e.currentTarget)},
         action.name)));
    if (!actions.length) box.append(el("span", {class: "muted"}, "This chat's queue has no actions."));
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
    } catch (err) {
      result.replaceChildren();
      CF.showError(result, err);
    } finally {
      button.disabled = false;
    }
  }

  // -- live events -------------------------------------------------------------------------
  function setLive(liveState) {
    const badge = $("live");
    badge.dataset.state = liveState;
    badge.textContent = liveState === "live" ? "● Live" : "Reconnecting…";
    badge.title = liveState === "live" ? "Updates arrive as they happen"
      : "The live connection dropped; the lists reload when it is back";
  }

  function onEvent(event) {
    switch (event.type) {
      case "chat_offered":
      case "chat_visible":
        sound.play();
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
        state.unread.delete(event.chat_id);
        if (event.chat_id === state.selected && state.view) {
          state.view.ended = event.reason || "operator";
          renderChat();
        }
        refresh();
        break;
      case "status_changed":
        if (state.me) { state.me.status = event.status; renderMe(); }
        refresh();
        break;
      case "chat_message":
        if (event.chat_id === state.selected) addMessage(event.message);
        else if (event.message.direction === "in") {
          state.unread.set(event.chat_id, (state.unread.get(event.chat_id) || 0) + 1);
          renderLists();
        }
        break;
      case "message_updated":   // an edit, a file fetched, a receipt
        if (event.chat_id === state.selected) addMessage(event.message);
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
    sound.load();
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
