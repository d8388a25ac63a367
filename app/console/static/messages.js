// How a chat message of any kind looks in the console (operator panel; any page showing a chat).
// Clients' text is always put in as text. Files are fetched with the token (they are not public)
// and shown from blob URLs: images inline (click to open), audio and video with players,
// anything else as a download link with its name and size.
"use strict";

const CFMessages = (() => {
  const el = CF.el;
  const blobs = new Map();   // file url -> Promise of an object URL, fetched once per page
  const TICKS = {sent: "✓", delivered: "✓✓", read: "✓✓"};
  const FILE_STATES = {pending: "arriving…", failed: "could not be fetched from the provider",
                       too_large: "is over the size limit and was not fetched"};

  function objectUrl(url) {
    if (!blobs.has(url)) blobs.set(url, CF.fetchBlob(url).then((blob) => URL.createObjectURL(blob)));
    return blobs.get(url);
  }

  function size(bytes) {
    if (bytes === null || bytes === undefined) return "";
    if (bytes < 1024) return `${bytes} B`;
    if (bytes < 1024 * 1024) return `${(bytes / 1024).toFixed(0)} KB`;
    return `${(bytes / 1024 / 1024).toFixed(1)} MB`;
  }

  // A node whose `attr` is set to the file's object URL once it has arrived.
  function withBlob(node, attr, url) {
    objectUrl(url).then((u) => { node[attr] = u; }, () => { node.title = "could not load the file"; });
    return node;
  }

  function download(a, e) {
    e.preventDefault();
    objectUrl(a.dataset.url).then((u) => {
      const link = el("a", {href: u, download: a.dataset.name});
      document.body.append(link);
      link.click();
      link.remove();
    }, (err) => CF.pageError(err));
  }

  function attachment(a, kind) {
    const label = `${a.name} ${size(a.size) ? "(" + size(a.size) + ")" : ""}`.trim();
    if (a.status !== "stored") {
      return el("div", {class: `msg-file ${a.status}`, dataset: {fileStatus: a.status}},
                `📎 ${label} ${FILE_STATES[a.status] || a.status}`);
    }
    const type = a.content_type || "";
    if ((kind === "image" || kind === "sticker") && type.startsWith("image/")) {
      const img = withBlob(el("img", {class: "msg-image", alt: a.name, dataset: {fileId: a.id}}), "src", a.url);
      const open = el("a", {href: "#", class: "msg-image-link", title: "Open full size",
                            onclick: (e) => { e.preventDefault(); objectUrl(a.url).then((u) => window.open(u, "_blank")); }},
                      img);
      return open;
    }
    if (type.startsWith("video/") && type !== "video/webm" || kind === "video") {
      return withBlob(el("video", {class: "msg-player", controls: true, preload: "metadata",
                                   dataset: {fileId: a.id}}), "src", a.url);
    }
    if (type.startsWith("audio/") || kind === "audio" || kind === "voice") {
      return withBlob(el("audio", {class: "msg-player", controls: true, preload: "metadata",
                                   dataset: {fileId: a.id}}), "src", a.url);
    }
    return el("a", {href: "#", class: "msg-document", dataset: {url: a.url, name: a.name, fileId: a.id},
                    onclick: (e) => download(e.currentTarget, e)}, `📄 ${label}`);
  }

  function osm(lat, lon) {
    return `https://www.openstreetmap.org/?mlat=${lat}&mlon=${lon}#map=16/${lat}/${lon}`;
  }

  function payloadNode(m) {
    const p = m.payload || {};
    if (m.kind === "location" && p.latitude !== undefined) {
      return el("div", {class: "msg-location"},
        el("a", {href: osm(p.latitude, p.longitude), target: "_blank", rel: "noopener noreferrer"},
           `📍 ${p.title || "Location"}`),
        p.address ? el("div", {class: "muted"}, p.address) : null,
        el("div", {class: "muted"}, `${p.latitude}, ${p.longitude}`));
    }
    if (m.kind === "contact") {
      return el("div", {class: "msg-contact"}, el("strong", {}, `👤 ${p.name || "Contact"}`),
                p.phone ? el("div", {}, el("a", {href: `tel:${p.phone}`}, p.phone)) : null);
    }
    if (m.kind === "button") {
      return el("div", {class: "msg-button", title: p.data ? `data: ${p.data}` : null},
                "Pressed ", el("span", {class: "msg-button-title"}, p.title || p.data || "a button"));
    }
    return null;
  }

  // The content of one message: files, structured payload, text (or caption), edits, origin.
  function body(m) {
    const files = (m.attachments || []).map((a) => attachment(a, m.kind));
    const special = payloadNode(m);
    const showText = m.text && !(m.kind === "button" && special);
    const edits = m.edits || [];
    return [
      files.length ? el("div", {class: "msg-files"}, files) : null,
      special,
      showText ? el("div", {class: `msg-text${m.kind === "system" ? " msg-system" : ""}`}, m.text) : null,
      edits.length ? el("span", {class: "msg-edited muted",
                                 title: "Earlier: " + edits.map((e) => e.text).join(" → ")}, "edited") : null,
      m.origin ? el("div", {class: "msg-origin muted"}, `sent outside Chatflow (${m.origin})`) : null,
    ];
  }

  function ticks(status) {
    return TICKS[status] ? el("span", {class: `msg-ticks ${status}`, title: status}, TICKS[status]) : null;
  }

  return {body, ticks, size};
})();
