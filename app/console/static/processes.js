// Processes page: deployed processes and their versions, upload and deploy, start an instance,
// the instances of a process. The selected process is the URL's hash (#Key), so it can be linked.
"use strict";

(() => {
  const {api, el} = CF;
  const PAGE = 50;  // instances per "Load more"; the API lists oldest first
  const deployForm = document.getElementById("deploy-form");
  const deployResult = document.getElementById("deploy-result");
  const detail = document.getElementById("process-detail");
  const startForm = document.getElementById("start-form");
  const startResult = document.getElementById("start-result");
  const stateSelect = document.querySelector("#instance-filter select[name=state]");
  const moreButton = document.getElementById("more-instances");
  let selected = null, instanceOffset = 0, viewer = null;

  // The same text as the API's message and `chatflow check`: "file:line element problem".
  function problemLine(p) {
    return `${p.file}:${p.line || "?"} ${p.element_id || "-"} ${p.problem}`;
  }

  function selectedKey() {
    return location.hash.length > 1 ? decodeURIComponent(location.hash.slice(1)) : null;
  }

  async function loadProcesses() {
    const processes = await api("GET", "/api/processes?limit=1000");
    const body = document.querySelector("#processes tbody");
    body.replaceChildren(...processes.map((p) => el("tr", {dataset: {key: p.key},
                                                           "aria-current": p.key === selected ? "true" : null},
      el("td", {}, el("a", {href: "#" + encodeURIComponent(p.key)}, p.key)),
      el("td", {}, p.name || ""),
      el("td", {class: "version"}, p.latest_version),
      el("td", {}, CF.when(p.deployed_at)))));
    document.getElementById("no-processes").hidden = processes.length > 0;
    return processes;
  }

  // -- deploy -----------------------------------------------------------------------
  function showDeployed(result) {
    deployResult.replaceChildren(el("div", {class: "banner ok", role: "status"},
      el("strong", {}, "Deployed."),
      el("table", {id: "deployed"},
        el("thead", {}, el("tr", {}, el("th", {}, "Process"), el("th", {}, "Version"), el("th", {}, "Result"))),
        el("tbody", {}, result.processes.map((p) => el("tr", {dataset: {key: p.key}},
          el("td", {}, el("a", {href: "#" + encodeURIComponent(p.key)}, p.key)),
          el("td", {}, p.version),
          el("td", {class: "outcome"}, p.new ? "new version" : "unchanged")))))));
  }

  function showRefused(err) {
    const problems = (err.details && err.details.problems) || [err.details];
    deployResult.replaceChildren(el("div", {class: "banner error problems", role: "alert"},
      el("strong", {}, `Refused: nothing was deployed (${problems.length} problem${problems.length === 1 ? "" : "s"}).`),
      el("ul", {id: "deploy-problems"}, problems.map((p) => el("li", {}, el("code", {}, problemLine(p)))))));
  }

  deployForm.addEventListener("submit", async (e) => {
    e.preventDefault();
    CF.clearErrors(deployForm);
    deployResult.replaceChildren();
    const files = [...deployForm.file.files];
    const button = deployForm.querySelector("button");
    button.disabled = true;
    try {
      const result = await CF.upload("POST", "/api/processes", files);
      showDeployed(result);
      deployForm.reset();
      await loadProcesses();
      if (!selected && result.processes.length) location.hash = encodeURIComponent(result.processes[0].key);
      else if (selected) await showProcess(selected);
    } catch (err) {
      if (err.code === "invalid_bpmn") showRefused(err);
      else CF.showError(deployForm, err.details && err.details.field ? err : {message: err.message, details: {field: "file"}});
    } finally {
      button.disabled = false;
    }
  });

  // -- one process ------------------------------------------------------------------
  async function showProcess(key) {
    selected = key;
    document.querySelectorAll("#processes tbody tr").forEach((tr) => {
      if (tr.dataset.key === key) tr.setAttribute("aria-current", "true"); else tr.removeAttribute("aria-current");
    });
    let process;
    try {
      process = await api("GET", `/api/processes/${encodeURIComponent(key)}`);
    } catch (err) {
      detail.hidden = true;
      CF.pageError(err);
      return;
    }
    CF.pageError(null);
    detail.hidden = false;
    document.getElementById("detail-title").textContent = process.name ? `${key} · ${process.name}` : key;
    document.querySelector("#versions tbody").replaceChildren(...process.versions.slice().reverse().map((v) =>
      el("tr", {dataset: {version: v.version}},
        el("td", {}, v.version),
        el("td", {}, v.filename),
        el("td", {}, CF.when(v.deployed_at)),
        el("td", {}, el("code", {title: v.content_hash}, v.content_hash.slice(0, 12))),
        el("td", {class: "actions"},
          el("button", {type: "button", class: "secondary", onclick: () => viewVersion(key, v.version)}, `View v${v.version}`),
          el("button", {type: "button", class: "secondary", onclick: () => downloadVersion(key, v)}, `Download v${v.version}`)))));
    document.getElementById("bpmn-view").hidden = true;
    startResult.replaceChildren();
    CF.clearErrors(startForm);
    await loadInstances(true);
  }

  function versionPath(key, number) {
    return `/api/processes/${encodeURIComponent(key)}/versions/${number}/bpmn`;
  }

  async function downloadVersion(key, v) {
    try {
      const url = URL.createObjectURL(await CF.fetchBlob(versionPath(key, v.version)));
      const link = el("a", {href: url, download: v.filename || `${key}-v${v.version}.bpmn`});
      document.body.append(link);
      link.click();
      link.remove();
      setTimeout(() => URL.revokeObjectURL(url), 10000);
    } catch (err) { CF.pageError(err); }
  }

  // The version's diagram (when bpmn-js is installed and the file has a layout) and its XML.
  async function viewVersion(key, number) {
    let xml;
    try { xml = await (await CF.fetchBlob(versionPath(key, number))).text(); } catch (err) { CF.pageError(err); return; }
    const view = document.getElementById("bpmn-view");
    const canvas = document.getElementById("version-canvas");
    const message = document.getElementById("version-canvas-message");
    document.getElementById("bpmn-view-title").textContent = `${key} version ${number}`;
    document.querySelector("#bpmn-xml pre").textContent = xml;
    view.hidden = false;
    message.hidden = true;
    canvas.hidden = false;
    try {
      viewer = await CF.drawDiagram(canvas, xml, viewer);
    } catch (err) {
      canvas.hidden = true;
      message.hidden = false;
      message.textContent = `${err.message} The XML is below.`;
    }
    view.scrollIntoView({block: "nearest"});
  }
  document.getElementById("bpmn-view-close").onclick = () => { document.getElementById("bpmn-view").hidden = true; };

  startForm.addEventListener("submit", async (e) => {
    e.preventDefault();
    CF.clearErrors(startForm);
    startResult.replaceChildren();
    let data;
    try {
      data = JSON.parse(startForm.data.value.trim() || "{}");
      if (data === null || typeof data !== "object" || Array.isArray(data)) throw new Error("give a JSON object, like {\"name\": \"value\"}");
    } catch (err) {
      CF.showError(startForm, {message: `Data: ${err.message}`, details: {field: "data"}});
      return;
    }
    const body = {data};
    if (startForm.business_key.value.trim()) body.business_key = startForm.business_key.value.trim();
    try {
      const instance = await api("POST", `/api/processes/${encodeURIComponent(selected)}/instances`, body);
      startResult.replaceChildren(el("div", {class: "banner ok", role: "status"}, "Started ",
        el("a", {href: `/console/instances/${instance.id}`}, `instance ${instance.id}`), " — now ",
        el("span", {class: `badge ${instance.state}`}, instance.state),
        instance.error ? ` (${instance.error})` : ""));
      await loadInstances(true);
    } catch (err) {
      CF.showError(startForm, err);
    }
  });

  // -- instances --------------------------------------------------------------------
  async function loadInstances(reset) {
    if (reset) instanceOffset = 0;
    const query = new URLSearchParams({process: selected, limit: PAGE, offset: instanceOffset});
    if (stateSelect.value) query.set("state", stateSelect.value);
    let instances;
    try { instances = await api("GET", `/api/process-instances?${query}`); } catch (err) { CF.pageError(err); return; }
    const body = document.querySelector("#instances tbody");
    const rows = instances.map((i) => el("tr", {dataset: {id: i.id}},
      el("td", {}, el("a", {href: `/console/instances/${i.id}`}, `#${i.id}`)),
      el("td", {}, i.version),
      el("td", {}, el("span", {class: `badge ${i.state}`}, i.state)),
      el("td", {}, i.business_key || ""),
      el("td", {}, CF.when(i.updated_at))));
    if (reset) body.replaceChildren(...rows); else body.append(...rows);
    instanceOffset += instances.length;
    document.getElementById("no-instances").hidden = instanceOffset > 0;
    moreButton.hidden = instances.length < PAGE;
  }
  stateSelect.addEventListener("change", () => loadInstances(true));
  moreButton.addEventListener("click", () => loadInstances(false));

  window.addEventListener("hashchange", () => { if (selectedKey()) showProcess(selectedKey()); });

  CF.start({admin: true}).then(async (me) => {
    if (!me) {  // not signed in, or not an admin: the banner says why; nothing here would work
      document.querySelectorAll("#deploy, .proc-layout").forEach((n) => { n.hidden = true; });
      return;
    }
    try { await loadProcesses(); } catch (err) { CF.pageError(err); return; }
    if (selectedKey()) await showProcess(selectedKey());
  });
})();
