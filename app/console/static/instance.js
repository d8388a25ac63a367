// Process instance page: the diagram of the version the instance runs (bpmn-js navigated viewer,
// served from node_modules) with active / completed / failed elements marked, and beside it the
// state, what it waits for, its data, error and history. Admins may retry or cancel.
"use strict";

(() => {
  const {api, el} = CF;
  const root = document.getElementById("instance");
  const id = Number(root.dataset.instanceId);
  const path = `/api/process-instances/${id}`;
  const LIVE = ["running", "waiting"];  // states worth polling: they change without this page
  const POLL_MS = 3000;
  // Marker classes on `.djs-element` (the viewer's SVG groups, data-element-id = BPMN id).
  const MARKERS = {active: "cf-active", completed: "cf-completed", errored: "cf-errored"};
  const LABELS = {active: "Active", completed: "Completed", errored: "Failed"};
  const canvasEl = document.getElementById("canvas");
  const message = document.getElementById("diagram-message");
  const autoRefresh = document.getElementById("auto-refresh");
  const retryButton = document.getElementById("retry");
  const cancelButton = document.getElementById("cancel");
  const actionResult = document.getElementById("instance-result");
  let me = null, current = null, viewer = null, importedXml = null, marked = [], busy = false;
  let seq = 0;  // bumped by every read and action: an answer overtaken by a newer one is dropped

  function diagramMessage(text) {
    message.textContent = text || "";
    message.hidden = !text;
  }

  // -- diagram ----------------------------------------------------------------------
  async function loadDiagram() {
    let diagram;
    try {
      diagram = await api("GET", `${path}/diagram`);
    } catch (err) {
      diagramMessage(`The diagram could not be loaded: ${err.message}`);
      return;
    }
    if (diagram.xml !== importedXml) {  // an instance's XML never changes: draw once, then re-mark
      canvasEl.hidden = false;
      try {
        viewer = await CF.drawDiagram(canvasEl, diagram.xml, viewer);
      } catch (err) {
        importedXml = null;
        canvasEl.hidden = true;
        diagramMessage(`${err.message} The elements' states are listed below.`);
        listStates(diagram);
        return;
      }
      importedXml = diagram.xml;
      marked = [];
      diagramMessage(null);
    }
    mark(diagram);
    listStates(diagram);
  }

  function mark(diagram) {
    const canvas = viewer.get("canvas");
    const registry = viewer.get("elementRegistry");
    for (const [element, marker] of marked) canvas.removeMarker(element, marker);
    marked = [];
    for (const [kind, marker] of Object.entries(MARKERS)) {
      for (const element of diagram[kind] || []) {
        if (!registry.get(element)) continue;  // not drawn (e.g. inside a collapsed subprocess)
        canvas.addMarker(element, marker);
        marked.push([element, marker]);
      }
    }
  }

  function elementName(element) {
    const shape = importedXml && viewer && viewer.get("elementRegistry").get(element);
    const name = shape && shape.businessObject && shape.businessObject.name;
    return name ? `${name} (${element})` : element;
  }

  // The states as text too: for screen readers, and when no diagram can be drawn.
  function listStates(diagram) {
    const list = document.getElementById("element-states");
    list.replaceChildren(...Object.keys(MARKERS).flatMap((kind) => (diagram[kind] || []).length ? [
      el("dt", {}, el("span", {class: `swatch ${MARKERS[kind]}`}), ` ${LABELS[kind]}`),
      el("dd", {dataset: {kind}}, diagram[kind].map(elementName).join(", "))] : []));
  }

  // -- details ----------------------------------------------------------------------
  function render(instance) {
    current = instance;
    document.title = `Instance ${instance.id} · ${instance.process} · Chatflow`;
    document.getElementById("instance-title").textContent = `Instance ${instance.id} · ${instance.process}`;
    const badge = document.getElementById("instance-state");
    badge.className = `badge ${instance.state}`;
    badge.textContent = instance.state;

    const processLink = me && me.is_admin
      ? el("a", {href: `/console/processes#${encodeURIComponent(instance.process)}`}, instance.process) : instance.process;
    const about = [["Process", processLink], ["Version", instance.version],
                   ["Business key", instance.business_key || "—"], ["Started", CF.when(instance.created_at)],
                   ["Updated", CF.when(instance.updated_at)]];
    document.getElementById("instance-about").replaceChildren(
      ...about.flatMap(([term, value]) => [el("dt", {}, term), el("dd", {}, value)]));

    document.getElementById("error-card").hidden = !instance.error;
    document.getElementById("instance-error").textContent = instance.error || "";

    const waits = instance.waiting_for || [];
    document.querySelector("#waiting-for tbody").replaceChildren(...waits.map((w) => el("tr", {dataset: {task: w.task}},
      el("td", {}, el("code", {}, w.task)),
      el("td", {}, w.kind, w.message ? el("span", {class: "muted"}, ` ${w.message}`) : null),
      el("td", {}, w.due_at ? el("time", {datetime: w.due_at}, CF.when(w.due_at)) : "—"))));
    document.getElementById("waiting-for").hidden = !waits.length;
    document.getElementById("waiting-none").hidden = waits.length > 0;

    document.getElementById("instance-data").textContent = JSON.stringify(instance.data || {}, null, 2);

    document.querySelector("#history tbody").replaceChildren(...(instance.history || []).map((h) =>
      el("tr", {class: h.event === "error" ? "error-row" : null},
        el("td", {}, el("time", {datetime: h.at}, CF.when(h.at))),
        el("td", {}, h.task ? el("code", {}, h.task) : "—"),
        el("td", {}, h.event),
        el("td", {class: "muted"}, h.details ? JSON.stringify(h.details) : ""))));

    const admin = !!(me && me.is_admin);
    retryButton.hidden = !(admin && instance.state === "error");
    cancelButton.hidden = !(admin && (LIVE.includes(instance.state) || instance.state === "error"));
  }

  // Reads the instance; the diagram (a heavier call) only when the instance changed.
  async function load(force) {
    if (busy) return;
    busy = true;
    const mine = ++seq;
    try {
      const instance = await api("GET", path);
      if (mine !== seq) return;  // Retry/Cancel answered meanwhile: this read is older
      const changed = force || !current || instance.updated_at !== current.updated_at || instance.state !== current.state;
      CF.pageError(null);
      if (changed) {
        render(instance);
        await loadDiagram();
      }
    } catch (err) {
      CF.pageError(err);
      if (!current) root.hidden = true;  // 403 / 404: nothing of this instance to show
    } finally {
      busy = false;
    }
  }

  async function act(verb, button) {
    actionResult.replaceChildren();
    button.disabled = true;
    ++seq;
    try {
      const instance = await api("POST", `${path}/${verb}`);
      actionResult.replaceChildren(el("div", {class: instance.state === "error" ? "banner warn" : "banner ok", role: "status"},
        `${verb === "retry" ? "Retried" : "Cancelled"}: the instance is now ${instance.state}.`,
        instance.error ? ` ${instance.error}` : ""));
      render(instance);
      await loadDiagram();
    } catch (err) {
      actionResult.replaceChildren(el("div", {class: "banner error", role: "alert"}, err.message));
    } finally {
      button.disabled = false;
    }
  }

  retryButton.addEventListener("click", () => act("retry", retryButton));
  cancelButton.addEventListener("click", () => {
    if (confirm(`Cancel instance ${id}? It ends where it stands.`)) act("cancel", cancelButton);
  });
  document.getElementById("refresh").addEventListener("click", () => load(true));

  // One GET every few seconds while the instance may still move (timers, messages, workers).
  setInterval(() => {
    if (autoRefresh.checked && !document.hidden && current && LIVE.includes(current.state)) load(false);
  }, POLL_MS);

  CF.start().then((user) => {
    if (!user) { root.hidden = true; return; }
    me = user;
    load(true);
  });
})();
