// Team (admins): users (create with the token shown once, deactivate, reset a token, admin or not),
// roles (permissions, members) and the canned responses operators insert with "/".
"use strict";

(async () => {
  const {el} = CF;
  const $ = (id) => document.getElementById(id);
  const ADMIN = "CanManageChats";
  const data = {users: [], roles: [], canned: [], queues: []};

  const me = await CF.start({admin: true});
  if (!me) return;

  async function refresh() {
    try {
      const [users, roles, canned, queues] = await Promise.all([
        CF.api("GET", "/api/users?limit=1000"), CF.api("GET", "/api/roles?limit=1000"),
        CF.api("GET", "/api/canned-responses"), CF.api("GET", "/api/queues?limit=1000")]);
      Object.assign(data, {users, roles, canned, queues});
      CF.pageError(null);
      render();
    } catch (err) {
      CF.pageError(err);
    }
  }

  // One row action: errors go to the row's last cell, success reloads.
  async function act(tr, question, call) {
    CF.clearErrors(tr);
    if (question && !CF.confirmed(question)) return null;
    try {
      const answer = await call();
      await refresh();
      return answer;
    } catch (err) {
      tr.lastElementChild.append(el("div", {class: "form-error", role: "alert"}, err.message));
      return null;
    }
  }

  function showToken(user) {
    $("token-once").replaceChildren(el("div", {class: "banner ok"},
      `Token for ${user.login} (shown this once; hand it over now): `, el("span", {class: "token-once"}, user.token)));
  }

  const perms = (on, list) => (on ? [...new Set([...list, ADMIN])] : list.filter((p) => p !== ADMIN));

  function userRow(u) {
    const tr = el("tr", {dataset: {userId: u.id}});
    const self = u.id === me.id;
    tr.append(
      el("td", {}, el("strong", {class: "cell-clip", title: u.name}, u.name), el("span", {class: "muted cell-clip"}, u.login)),
      el("td", {}, u.roles.join(", ") || el("span", {class: "muted"}, "none")),
      el("td", {}, el("input", {type: "checkbox", checked: u.permissions.includes(ADMIN), disabled: self,
                                "aria-label": `Admin: ${u.login}`,
                                onchange: (e) => act(tr, null, () => CF.api("PATCH", `/api/users/${u.id}`,
                                                                            {permissions: perms(e.target.checked, u.permissions)}))})),
      el("td", {}, el("span", {class: `badge ${u.active ? "active" : "inactive"}`}, u.active ? "active" : "deactivated")),
      el("td", {}, el("div", {class: "row-buttons"},
        self ? null : el("button", {type: "button", class: u.active ? "danger" : "secondary",
          onclick: () => act(tr, u.active ? `Deactivate ${u.login}? Their tokens stop working at once.` : null,
                             () => CF.api("PATCH", `/api/users/${u.id}`, {active: !u.active}))},
          u.active ? "Deactivate" : "Activate"),
        el("button", {type: "button", class: "secondary",
          onclick: async () => {
            const answer = await act(tr, `Reset the token of ${u.login}? Their current token stops working.`,
                                     () => CF.api("POST", `/api/users/${u.id}/token`));
            if (answer) showToken(answer);
          }}, "Reset token"))));
    return tr;
  }

  function roleRow(r) {
    const tr = el("tr", {dataset: {roleId: r.id}});
    const members = data.users.filter((u) => r.members.includes(u.id));
    const others = data.users.filter((u) => !r.members.includes(u.id));
    const add = el("select", {"aria-label": `Add member to ${r.name}`,
      onchange: () => act(tr, null, () => CF.api("POST", `/api/roles/${r.id}/members`, {user_id: Number(add.value)}))},
      el("option", {value: ""}, "Add member…"), others.map((u) => el("option", {value: u.id}, `${u.name} (${u.login})`)));
    tr.append(
      el("td", {}, el("strong", {}, r.name)),
      el("td", {}, el("input", {type: "checkbox", checked: r.permissions.includes(ADMIN), "aria-label": `Admin: role ${r.name}`,
        onchange: (e) => act(tr, null, () => CF.api("PATCH", `/api/roles/${r.id}`, {permissions: perms(e.target.checked, r.permissions)}))})),
      el("td", {}, el("ul", {class: "operators", "aria-label": `Members of ${r.name}`}, members.map((u) =>
        el("li", {}, u.name, el("button", {type: "button", class: "link-danger", "aria-label": `Remove ${u.name} from ${r.name}`,
          onclick: () => act(tr, `Remove ${u.name} from ${r.name}?`, () => CF.api("DELETE", `/api/roles/${r.id}/members/${u.id}`))},
          "×")))), others.length ? add : null),
      el("td", {}, el("button", {type: "button", class: "danger",
        onclick: () => act(tr, `Delete role ${r.name}? Its members lose its permissions and queues it served lose them.`,
                           () => CF.api("DELETE", `/api/roles/${r.id}`))}, "Delete")));
    return tr;
  }

  function cannedRow(c) {
    const tr = el("tr", {dataset: {cannedId: c.id}});
    const queue = c.queue_id === null ? "every queue" : (data.queues.find((q) => q.id === c.queue_id) || {name: c.queue_id}).name;
    tr.append(el("td", {}, el("code", {}, "/" + c.shortcut)), el("td", {class: "canned-text"}, c.text), el("td", {}, queue),
      el("td", {}, el("button", {type: "button", class: "danger",
        onclick: () => act(tr, `Delete canned response /${c.shortcut}?`, () => CF.api("DELETE", `/api/canned-responses/${c.id}`))},
        "Delete")));
    return tr;
  }

  function fill(table, rows, make, empty, columns) {
    table.tBodies[0].replaceChildren(...(rows.length ? rows.map(make)
      : [el("tr", {}, el("td", {colspan: columns, class: "muted"}, empty))]));
  }

  function render() {
    fill($("users"), data.users, userRow, "No users.", 5);
    fill($("roles"), data.roles, roleRow, "No roles yet.", 4);
    fill($("canned"), data.canned, cannedRow, "No canned responses yet.", 4);
    const select = $("new-canned").elements.queue_id;
    const chosen = select.value;
    select.replaceChildren(select.options[0], ...data.queues.map((q) => el("option", {value: q.id}, q.name)));
    select.value = chosen;
  }

  function onSubmit(form, send) {
    form.addEventListener("submit", async (e) => {
      e.preventDefault();
      CF.clearErrors(form);
      try {
        await send(form.elements);
        form.reset();
        await refresh();
      } catch (err) {
        CF.showError(form, err);
      }
    });
  }

  onSubmit($("new-user"), async (f) => {
    const user = await CF.api("POST", "/api/users", {login: f.login.value.trim(), name: f.name.value.trim(),
                                                     permissions: f.admin.checked ? [ADMIN] : []});
    showToken(user);
  });
  onSubmit($("new-role"), (f) => CF.api("POST", "/api/roles", {name: f.name.value.trim(), permissions: f.admin.checked ? [ADMIN] : []}));
  onSubmit($("new-canned"), (f) => CF.api("POST", "/api/canned-responses", {
    shortcut: f.shortcut.value.trim().replace(/^\//, ""), text: f.text.value,
    queue_id: f.queue_id.value ? Number(f.queue_id.value) : null}));

  await refresh();
  $("team").hidden = false;
})();
