// Chatflow website chat widget. Served by /widget/{widget_key}.js wrapped in a function that
// receives CONFIG {key, base, title, welcome, askContact}. Plain JavaScript, no build step.
// Lives in a shadow root so the host page's styles and ours never meet. Every text a visitor or
// an operator wrote is set with textContent: it is shown as text, never run as HTML.
// Strings: set window.ChatflowWidgetStrings = {send: "Senden", ...} before this script loads.
"use strict";
if (document.getElementById("chatflow-widget")) return;

var S = Object.assign({
  open: "Open chat", close: "Close chat", placeholder: "Write a message…", send: "Send",
  attach: "Attach a file", name: "Your name", email: "Your e-mail", start: "Start chat",
  you: "You", operator: "Operator", joined: "{name} joined the chat", waiting: "We will be with you shortly.",
  completed: "This conversation has ended.", restart: "Start a new conversation",
  error: "Could not send. Please try again.", tooMany: "Too many messages. Please wait {s} s."
}, window.ChatflowWidgetStrings || {});
var API = CONFIG.base + "/widget/api/" + encodeURIComponent(CONFIG.key);
var TOKEN = "chatflow:" + CONFIG.key + ":token", AFTER = "chatflow:" + CONFIG.key + ":after";
var store = { get: function (k) { try { return localStorage.getItem(k); } catch (e) { return null; } },
              set: function (k, v) { try { v == null ? localStorage.removeItem(k) : localStorage.setItem(k, v); } catch (e) {} } };

var CSS = [
  ":host{all:initial;font:14px/1.4 system-ui,-apple-system,'Segoe UI',Roboto,sans-serif;color:#1f2933}",
  "*{box-sizing:border-box;font:inherit}",
  ".bubble{position:fixed;right:16px;bottom:16px;width:56px;height:56px;border-radius:50%;border:0;",
  "background:#2563eb;color:#fff;font-size:26px;cursor:pointer;box-shadow:0 4px 14px rgba(0,0,0,.25);z-index:2147483000}",
  ".bubble:focus-visible,button:focus-visible,input:focus-visible,textarea:focus-visible{outline:3px solid #f59e0b;outline-offset:2px}",
  ".panel{position:fixed;right:16px;bottom:84px;width:min(360px,calc(100vw - 16px));height:min(520px,calc(100vh - 100px));",
  "display:flex;flex-direction:column;background:#fff;border-radius:12px;box-shadow:0 8px 30px rgba(0,0,0,.25);",
  "overflow:hidden;z-index:2147483000}",
  "@media (max-width:400px){.panel{right:8px;left:8px;width:auto}}",
  ".panel[hidden]{display:none}",
  "header{display:flex;align-items:center;gap:8px;padding:12px 14px;background:#2563eb;color:#fff}",
  "header h2{flex:1;margin:0;font-size:16px;font-weight:600}",
  "header button{background:none;border:0;color:#fff;font-size:20px;cursor:pointer;line-height:1}",
  ".log{flex:1;overflow-y:auto;padding:12px;display:flex;flex-direction:column;gap:6px;background:#f5f7fa}",
  ".msg{max-width:85%;padding:8px 10px;border-radius:10px;white-space:pre-wrap;word-wrap:break-word}",
  ".in{align-self:flex-end;background:#2563eb;color:#fff}",
  ".out,.welcome{align-self:flex-start;background:#fff;border:1px solid #e4e7eb}",
  ".note{align-self:center;color:#52606d;font-size:12px;text-align:center}",
  ".file{display:block;background:none;border:0;padding:0;color:inherit;text-decoration:underline;cursor:pointer}",
  "form{display:flex;gap:6px;padding:8px;border-top:1px solid #e4e7eb;align-items:flex-end}",
  "form.contact{flex-direction:column;align-items:stretch}",
  "textarea,input[type=text],input[type=email]{flex:1;min-width:0;border:1px solid #cbd2d9;border-radius:8px;padding:8px;resize:none}",
  "button.primary{background:#2563eb;color:#fff;border:0;border-radius:8px;padding:8px 12px;cursor:pointer}",
  "label.attach{cursor:pointer;padding:8px;font-size:18px}",
  "label.attach input{position:absolute;width:1px;height:1px;opacity:0}",
  ".restart{margin:8px;align-self:stretch}",
  ".error{color:#b91c1c;padding:0 10px 6px;font-size:12px}"
].join("");

var host = document.createElement("div");
host.id = "chatflow-widget";
var root = host.attachShadow({ mode: "open" });
function el(tag, attrs, text) {
  var node = document.createElement(tag);
  Object.keys(attrs || {}).forEach(function (k) { node.setAttribute(k, attrs[k]); });
  if (text != null) node.textContent = text;
  return node;
}
var style = el("style", {}, CSS);
var bubble = el("button", { "class": "bubble", type: "button", "aria-label": S.open, "aria-expanded": "false" }, "💬");
var panel = el("section", { "class": "panel", role: "dialog", "aria-label": CONFIG.title || S.open });
panel.hidden = true;
var header = el("header");
var closeBtn = el("button", { type: "button", "aria-label": S.close }, "×");
header.append(el("h2", {}, CONFIG.title), closeBtn);
var log = el("div", { "class": "log", role: "log", "aria-live": "polite" });
var error = el("div", { "class": "error", role: "alert" });
var contact = el("form", { "class": "contact" });
var nameIn = el("input", { type: "text", "aria-label": S.name, placeholder: S.name, maxlength: "200" });
var emailIn = el("input", { type: "email", "aria-label": S.email, placeholder: S.email, maxlength: "254" });
contact.append(nameIn, emailIn, el("button", { "class": "primary", type: "submit" }, S.start));
var compose = el("form", { "class": "compose" });
var text = el("textarea", { rows: "1", "aria-label": S.placeholder, placeholder: S.placeholder, maxlength: "4096" });
var attach = el("label", { "class": "attach", title: S.attach }, "📎");
var fileIn = el("input", { type: "file", "aria-label": S.attach });
attach.append(fileIn);
compose.append(attach, text, el("button", { "class": "primary", type: "submit" }, S.send));
var restart = el("button", { "class": "primary restart", type: "button" }, S.restart);
panel.append(header, log, error, contact, compose, restart);
root.append(style, bubble, panel);

var state = { token: store.get(TOKEN), conversation: null, stream: null };

function show(open) {
  panel.hidden = !open;
  bubble.setAttribute("aria-expanded", String(open));
  bubble.setAttribute("aria-label", open ? S.close : S.open);
  if (open) { render(); (contact.hidden ? text : nameIn).focus(); } else bubble.focus();
}
bubble.addEventListener("click", function () { show(panel.hidden); });
closeBtn.addEventListener("click", function () { show(false); });
panel.addEventListener("keydown", function (e) { if (e.key === "Escape") show(false); });
text.addEventListener("keydown", function (e) {
  if (e.key === "Enter" && !e.shiftKey) { e.preventDefault(); compose.requestSubmit(); }
});

function call(method, path, body, isForm) {
  var headers = {};
  if (state.token) headers.Authorization = "Visitor " + state.token;
  if (body && !isForm) headers["Content-Type"] = "application/json";
  return fetch(API + path, { method: method, headers: headers, mode: "cors",
                             body: body ? (isForm ? body : JSON.stringify(body)) : undefined })
    .then(function (r) {
      if (r.status === 401) { forget(); }
      return r.json().catch(function () { return {}; }).then(function (data) {
        if (!r.ok) { var err = new Error((data.error && data.error.message) || r.status); err.status = r.status;
                     err.retry = r.headers.get("Retry-After"); throw err; }
        return data;
      });
    });
}

function forget() {
  state.token = null; state.conversation = null; store.set(TOKEN, null); store.set(AFTER, null);
  if (state.stream) state.stream.abort();
}

function ensureSession(details) {
  if (state.token) return Promise.resolve();
  return call("POST", "/sessions", details || {}).then(function (s) {
    state.token = s.token; store.set(TOKEN, s.token); listen();
  });
}

function load() {
  if (!state.token) return Promise.resolve(render());
  return call("GET", "/messages").then(function (c) { state.conversation = c; render(); })
    .catch(function () { render(); });
}

function finished() {  // the visitor pressed "start a new conversation" after this chat
  var c = state.conversation;
  return c && c.chat_id != null && String(c.chat_id) === store.get(AFTER);
}

function render() {
  var c = finished() ? null : state.conversation;
  log.textContent = "";
  if (CONFIG.welcome) log.append(el("div", { "class": "msg welcome" }, CONFIG.welcome));
  (c ? c.messages : []).forEach(function (m) {
    var node = el("div", { "class": "msg " + (m.direction === "in" ? "in" : "out") }, m.text || "");
    m.attachments.forEach(function (a) {
      var link = el("button", { "class": "file", type: "button" }, "📄 " + a.name);
      link.addEventListener("click", function () { download(a); });
      node.append(link);
    });
    log.append(node);
  });
  if (c && c.operator_name && c.state === "in_work") log.append(el("div", { "class": "note" }, S.joined.replace("{name}", c.operator_name)));
  else if (c && (c.state === "queued" || c.state === "offered")) log.append(el("div", { "class": "note" }, S.waiting));
  var done = !!(c && c.state === "completed");
  if (done) log.append(el("div", { "class": "note" }, S.completed));
  contact.hidden = !(CONFIG.askContact && !state.token);
  compose.hidden = done || !contact.hidden;
  restart.hidden = !done;
  log.scrollTop = log.scrollHeight;
}

function download(a) {
  fetch(API + "/files/" + a.id, { headers: { Authorization: "Visitor " + state.token } })
    .then(function (r) { return r.blob(); })
    .then(function (blob) {
      var link = document.createElement("a");
      link.href = URL.createObjectURL(blob); link.download = a.name; link.click();
      setTimeout(function () { URL.revokeObjectURL(link.href); }, 10000);
    });
}

function fail(e) {
  error.textContent = e.status === 429 ? S.tooMany.replace("{s}", e.retry || "60") : S.error;
}

contact.addEventListener("submit", function (e) {
  e.preventDefault();
  var details = {};
  if (nameIn.value.trim()) details.name = nameIn.value.trim();
  if (emailIn.value.trim()) details.email = emailIn.value.trim();
  ensureSession(details).then(function () { error.textContent = ""; render(); text.focus(); }, fail);
});

compose.addEventListener("submit", function (e) {
  e.preventDefault();
  var body = text.value.trim(), file = fileIn.files[0];
  if (!body && !file) return;
  var payload = body ? { text: body } : null, isForm = false;
  if (file) { payload = new FormData(); payload.append("file", file); if (body) payload.append("text", body); isForm = true; }
  ensureSession().then(function () { return call("POST", "/messages", payload, isForm); })
    .then(function () { text.value = ""; fileIn.value = ""; error.textContent = ""; return load(); }, fail);
});

restart.addEventListener("click", function () {
  if (state.conversation) store.set(AFTER, String(state.conversation.chat_id));
  render(); text.focus();
});

// Live events over fetch (EventSource cannot send the Authorization header); any event means
// "something changed": the conversation is read again, so a missed event loses nothing.
function listen() {
  if (!state.token || state.stream) return;
  var controller = new AbortController();
  state.stream = controller;
  fetch(API + "/events", { headers: { Authorization: "Visitor " + state.token }, signal: controller.signal })
    .then(function (r) {
      if (!r.ok) throw new Error(r.status);
      var reader = r.body.getReader(), decoder = new TextDecoder(), buffer = "";
      load();
      function pump() {
        return reader.read().then(function (chunk) {
          if (chunk.done) throw new Error("stream ended");
          buffer += decoder.decode(chunk.value, { stream: true });
          var frames = buffer.split("\n\n");
          buffer = frames.pop();
          if (frames.some(function (f) { return /^event: (message|operator_joined|chat_completed)/m.test(f); })) load();
          return pump();
        });
      }
      return pump();
    })
    .catch(function () {})
    .then(function () {
      if (state.stream === controller) state.stream = null;
      if (state.token && !controller.signal.aborted) setTimeout(listen, 2000);
    });
}

function mount() {
  document.body.append(host);
  render();
  if (state.token) { load(); listen(); }
}
if (document.body) mount(); else document.addEventListener("DOMContentLoaded", mount);
