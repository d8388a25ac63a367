// Shared by every console page: the signed-in token, calls to /api, error display, the live
// event stream and a small DOM builder. Pages are plain scripts; there is no build step.
"use strict";

const CF = (() => {
  const TOKEN_KEY = "chatflow.token";

  class ApiError extends Error {
    constructor(status, body) {
      const error = (body && body.error) || {};
      super(error.message || `HTTP ${status}`);
      this.status = status;
      this.code = error.code || "http_" + status;
      this.details = error.details || {};
    }
  }

  function token() { return localStorage.getItem(TOKEN_KEY); }

  function setToken(value) {
    if (value) localStorage.setItem(TOKEN_KEY, value); else localStorage.removeItem(TOKEN_KEY);
  }

  function headers(extra) {
    const h = Object.assign({}, extra);
    if (token()) h.Authorization = "Bearer " + token();
    return h;
  }

  // What a person can act on when the server is away or a proxy answers instead of it.
  const UNREACHABLE = "Cannot reach the Chatflow server. Check your connection; nothing you typed is lost, "
    + "so try again in a moment.";
  const NOT_ANSWERING = "The Chatflow server is not answering right now (HTTP {status}). Try again in a moment.";

  async function answer(response) {
    const type = response.headers.get("Content-Type") || "";
    const body = response.status === 204 ? null
      : type.includes("json") ? await response.json() : await response.text();
    if (response.status === 401 && document.body.dataset.page !== "index") signIn();
    if (!response.ok && typeof body !== "object" && response.status >= 500) {
      throw new ApiError(response.status, {error: {code: "server_unavailable",
                                                   message: NOT_ANSWERING.replace("{status}", response.status)}});
    }
    if (!response.ok) throw new ApiError(response.status, typeof body === "object" ? body : null);
    return body;
  }

  // fetch() rejects (TypeError "Failed to fetch") when the server cannot be reached at all.
  async function send(path, init) {
    try {
      return await fetch(path, init);
    } catch (err) {
      if (err.name === "AbortError") throw err;
      throw new ApiError(0, {error: {code: "unreachable", message: UNREACHABLE}});
    }
  }

  // A JSON call to the API; resolves to the answer's body, rejects with an ApiError.
  async function api(method, path, body) {
    const init = {method, headers: headers(body === undefined ? {} : {"Content-Type": "application/json"})};
    if (body !== undefined) init.body = JSON.stringify(body);
    return answer(await send(path, init));
  }

  // A multipart upload: `files` go in parts named `file`, as the API expects.
  async function upload(method, path, files) {
    const form = new FormData();
    for (const file of files) form.append("file", file, file.name);
    return answer(await send(path, {method, headers: headers(), body: form}));
  }

  // Destructive actions ask first; `what` says what is lost ("Delete queue Sales?").
  function confirmed(what) {
    return window.confirm(what);
  }

  // Bytes (a sound, a diagram) behind the token, as an object URL or text.
  async function fetchBlob(path) {
    const response = await send(path, {headers: headers()});
    if (!response.ok) await answer(response);
    return response.blob();
  }

  function signIn() {
    location.href = "/console/?next=" + encodeURIComponent(location.pathname + location.search);
  }

  // el("tr", {class: "x", onclick: f}, "text", childNode): text is never parsed as HTML.
  function el(tag, attrs, ...children) {
    const node = document.createElement(tag);
    for (const [key, value] of Object.entries(attrs || {})) {
      if (value === null || value === undefined || value === false) continue;
      if (key.startsWith("on")) node.addEventListener(key.slice(2), value);
      else if (key === "dataset") Object.assign(node.dataset, value);
      else node.setAttribute(key, value === true ? "" : value);
    }
    for (const child of children.flat()) {
      if (child === null || child === undefined || child === false) continue;
      node.append(child instanceof Node ? child : document.createTextNode(String(child)));
    }
    return node;
  }

  function clearErrors(container) {
    container.querySelectorAll(".field-error, .form-error").forEach((n) => n.remove());
    container.querySelectorAll("[aria-invalid]").forEach((n) => n.removeAttribute("aria-invalid"));
  }

  // Put an API error next to each field it names (details.problems, else details.field), else at
  // the top of `container`. A 422 names every bad field of the request at once.
  function showError(container, err) {
    clearErrors(container);
    const message = err.message || String(err);
    const details = err.details || {};
    const problems = details.problems || (details.field ? [{field: details.field, message}] : []);
    let first = null, unplaced = problems.length === 0;
    for (const problem of problems) {
      const input = container.querySelector(`[name="${CSS.escape(problem.field)}"]`);
      if (!input) {
        unplaced = true;
        continue;
      }
      input.setAttribute("aria-invalid", "true");
      const label = input.closest("label") || input;
      const text = details.problems ? `${problem.field}: ${problem.message}` : problem.message;
      label.after(el("div", {class: "field-error", role: "alert", dataset: {field: problem.field}}, text));
      first = first || input;
    }
    if (unplaced) container.prepend(el("div", {class: "form-error", role: "alert"}, message));
    if (first) first.focus();
  }

  function pageError(err) {
    const banner = document.getElementById("page-error");
    banner.textContent = err ? (err.message || String(err)) : "";
    banner.hidden = !err;
  }

  // The signed-in user's live events (/api/events, Server-Sent Events). EventSource cannot send
  // an Authorization header, so the stream is read with fetch. On every (re)connect `onReady`
  // runs: the page reloads its lists then, so nothing missed while disconnected is lost.
  // `path`: another stream of the same shape (the Reports page's live figures).
  function events({onEvent, onReady, onState, path = "/api/events"}) {
    let stopped = false, controller = null, delay = 500;
    const setState = (state) => onState && onState(state);

    async function run() {
      while (!stopped) {
        controller = new AbortController();
        try {
          const response = await fetch(path, {headers: headers(), signal: controller.signal});
          if (response.status === 401) { signIn(); return; }
          if (!response.ok || !response.body) throw new Error("events: HTTP " + response.status);
          const reader = response.body.pipeThrough(new TextDecoderStream()).getReader();
          let buffer = "";
          for (;;) {
            const {value, done} = await reader.read();
            if (done) break;
            buffer += value;
            let end;
            while ((end = buffer.indexOf("\n\n")) >= 0) {
              const frame = buffer.slice(0, end);
              buffer = buffer.slice(end + 2);
              const data = frame.split("\n").filter((l) => l.startsWith("data:")).map((l) => l.slice(5).trim());
              if (!data.length) continue;  // a keep-alive comment
              const event = JSON.parse(data.join("\n"));
              if (event.type === "ready") { delay = 500; setState("live"); onReady && await onReady(event); }
              else { delay = 500; setState("live"); onEvent(event); }
            }
          }
        } catch (err) {
          if (stopped) return;
          console.warn("event stream:", err);
        }
        setState("reconnecting");
        await new Promise((r) => setTimeout(r, delay));
        delay = Math.min(delay * 2, 10000);
      }
    }
    run();
    return {close() { stopped = true; if (controller) controller.abort(); }};
  }

  // A lifecycle's `notify` (live event `notification`): a notice in the corner until dismissed,
  // linking to the chat on the Supervisor page (admins) or the operator panel.
  function notice(event, {admin} = {}) {
    let box = document.getElementById("notices");
    if (!box) {
      box = el("div", {id: "notices", class: "notices", role: "status", "aria-live": "polite"});
      document.body.append(box);
    }
    const href = admin ? `/console/supervisor?chat=${event.chat_id}` : `/console/operator?chat=${event.chat_id}`;
    const item = el("div", {class: "banner info notice", dataset: {chatId: event.chat_id}},
      el("span", {}, event.text), " ", el("a", {href}, `Open chat ${event.chat_id}`), " ",
      el("button", {type: "button", class: "link", "aria-label": "Dismiss"}, "✕"));
    item.querySelector("button").onclick = () => item.remove();
    box.append(item);
    return item;
  }

  // Connecting Facebook pages: the server starts a login run (a single-use state bound to this
  // sign-in and a cookie binding it to this browser) and names Facebook's dialog to go to.
  async function facebookLogin() {
    const {url} = await api("POST", "/api/channels/facebook/login");
    location.assign(url);
  }

  function when(iso) {
    return iso ? new Date(iso).toLocaleString() : "";
  }

  // Every page but sign-in needs a token; admin pages say so when the user is not an admin.
  async function start({admin} = {}) {
    if (!token()) { signIn(); return null; }
    let me;
    try { me = await api("GET", "/api/me"); } catch (err) { pageError(err); return null; }
    document.getElementById("nav").hidden = false;
    document.querySelectorAll("[data-admin]").forEach((a) => { a.hidden = !me.is_admin; });
    const current = document.querySelector(`[data-nav="${document.body.dataset.page}"]`);
    if (current) current.setAttribute("aria-current", "page");
    document.getElementById("who").textContent = me.name || me.login;
    const out = document.getElementById("sign-out");
    out.hidden = false;
    out.onclick = () => { setToken(null); location.href = "/console/"; };
    if (admin && !me.is_admin) {
      pageError({message: "This page needs the permission CanManageChats."});
      return null;
    }
    return me;
  }

  return {ApiError, token, setToken, api, upload, fetchBlob, el, clearErrors, showError, pageError,
          events, notice, when, start, confirmed, facebookLogin};
})();
