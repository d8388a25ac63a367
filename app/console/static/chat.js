// One chat, read-only, for admins (and operators of its queue): its messages of every kind as the
// operator panel shows them, and its history. Refreshed every few seconds while the chat is open.
"use strict";

(() => {
  const {api, el} = CF;
  const root = document.getElementById("chat-page");
  const id = Number(root.dataset.chatId);
  const POLL_MS = 5000;
  let timer = null;

  function render(chat, messages, history) {
    document.getElementById("chat-title").textContent = `Chat #${chat.id} with ${chat.contact.name}`;
    const state = document.getElementById("chat-state");
    state.textContent = chat.state.replace("_", " ");
    state.className = `badge ${chat.state}`;
    document.getElementById("chat-meta").textContent =
      `${chat.queue_name} · started ${CF.when(chat.created_at)}`
      + (chat.operator_id ? ` · operator #${chat.operator_id}` : "")
      + (chat.completed_at ? ` · completed ${CF.when(chat.completed_at)} (${chat.completion_reason})` : "");
    const box = document.getElementById("messages");
    box.replaceChildren(...messages.map((m) => el("li", {class: `msg ${m.direction} kind-${m.kind}`,
                                                         dataset: {messageId: m.id, kind: m.kind}},
      CFMessages.body(m),
      el("div", {class: "msg-meta muted"},
        el("span", {}, m.direction === "in" ? "Client" : (m.origin ? "Outside Chatflow" : "Operator")),
        el("time", {datetime: m.created_at}, CF.when(m.created_at)),
        m.direction === "out" ? el("span", {class: `badge ${m.status} msg-status`, title: m.error || null}, m.status)
          : null,
        CFMessages.ticks(m.status)))));
    if (!messages.length) box.append(el("li", {class: "muted"}, "No messages."));
    document.getElementById("history").replaceChildren(...history.map((e) =>
      el("li", {}, el("time", {datetime: e.at}, CF.when(e.at)), " ", el("strong", {}, e.event))));
  }

  async function load() {
    clearTimeout(timer);
    try {
      const [chat, messages, history] = await Promise.all([
        api("GET", `/api/chats/${id}`), api("GET", `/api/chats/${id}/messages?limit=1000`),
        api("GET", `/api/chats/${id}/history?limit=1000`)]);
      CF.pageError(null);
      render(chat, messages, history);
      if (chat.state !== "completed") timer = setTimeout(load, POLL_MS);
    } catch (err) {
      CF.pageError(err);
    }
  }

  document.getElementById("refresh").addEventListener("click", load);
  CF.start().then((me) => { if (me) load(); });
})();
