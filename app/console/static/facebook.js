// Connect Facebook pages (admin): Facebook's login sent the browser back here with ?login=<run>.
// The run's pages are listed by name with the channel already serving each; the checked ones
// become channels (or are reconnected) through the API, then the admin is back in Chat setup.
"use strict";

(async () => {
  const me = await CF.start({admin: true});
  if (!me) return;
  const {el} = CF;
  const root = document.getElementById("facebook");
  const form = document.getElementById("pick-pages");
  const stateLine = root.querySelector('[data-testid="login-state"]');
  const again = document.getElementById("login-again");
  const loginId = new URLSearchParams(location.search).get("login");

  again.addEventListener("click", async () => {
    CF.clearErrors(root);
    try { await CF.facebookLogin(); } catch (err) { CF.showError(root.querySelector("section"), err); }
  });

  function pageLabel(p) {
    const note = !p.channel_id ? `new, page ${p.id}`
      : p.channel_status === "needs_reconnect" ? `channel ${p.channel_id}: needs reconnect, picking it reconnects it`
      : p.channel_status === "refused" ? `channel ${p.channel_id}: refused by Facebook, picking it tries again`
      : `already connected as channel ${p.channel_id}${p.channel_active ? "" : " (inactive)"}: gets a fresh token`;
    // New pages and broken channels are checked; healthy connected ones are left alone unless picked.
    const checked = !p.channel_id || p.channel_status !== "ok";
    return el("label", {class: "check"}, el("input", {type: "checkbox", name: "page", value: p.id, checked}),
      ` ${p.name} `, el("span", {class: "muted"}, `(${note})`));
  }

  const SAY = {
    waiting: "Facebook has not sent you back yet.",
    failed: "Facebook sign-in did not work: ",
    expired: "This sign-in is too old to use.",
    done: "These pages were connected already.",
  };

  async function load() {
    if (!loginId || !/^\d+$/.test(loginId)) {
      stateLine.textContent = "Start from Chat setup: Connect Facebook pages.";
      again.hidden = false;
      return;
    }
    const [run, queues] = await Promise.all([CF.api("GET", `/api/channels/facebook/logins/${loginId}`),
                                             CF.api("GET", "/api/queues?limit=1000")]);
    if (run.state !== "ready") {
      stateLine.textContent = SAY[run.state] + (run.state === "failed" ? run.error : "");
      again.hidden = false;
      return;
    }
    stateLine.textContent = run.pages.length ? "Pick the pages whose Messenger conversations Chatflow should take."
      : "This Facebook account manages no pages (or did not grant access to any).";
    form.querySelector(".fb-page-list").replaceChildren(...run.pages.map(pageLabel));
    const select = form.elements.queue_id;
    select.replaceChildren(el("option", {value: ""}, queues.length ? "choose a queue…" : "no queues yet: add one in Chat setup"),
      ...queues.map((q) => el("option", {value: q.id}, q.name)));
    if (queues.length === 1) select.value = String(queues[0].id);
    form.hidden = !run.pages.length;
  }

  form.addEventListener("submit", async (e) => {
    e.preventDefault();
    CF.clearErrors(form);
    const button = form.querySelector('button[type="submit"]');
    button.disabled = true;
    try {
      const pageIds = [...form.querySelectorAll('input[name="page"]:checked')].map((i) => i.value);
      if (!pageIds.length) throw {message: "Pick at least one page.", details: {field: "page_ids"}};
      const queue = form.elements.queue_id.value;
      await CF.api("POST", `/api/channels/facebook/logins/${loginId}/pages`,
                   {page_ids: pageIds, queue_id: queue === "" ? null : Number(queue), active: form.elements.active.checked});
      location.assign("/console/setup#channels");
    } catch (err) {
      CF.showError(form, err);
    } finally {
      button.disabled = false;
    }
  });

  try { await load(); } catch (err) { CF.pageError(err); }
  root.hidden = false;
})();
