// Sign-in: the token is checked against /api/me, kept in localStorage, and the user lands on
// their page (admins on Chat setup, operators on their panel), or back where they were sent from.
"use strict";

(() => {
  const form = document.getElementById("sign-in");
  const next = new URLSearchParams(location.search).get("next");
  form.addEventListener("submit", async (e) => {
    e.preventDefault();
    CF.clearErrors(form);
    CF.setToken(form.token.value.trim());
    try {
      const me = await CF.api("GET", "/api/me");
      location.href = next && next.startsWith("/console/") ? next : (me.is_admin ? "/console/setup" : "/console/operator");
    } catch (err) {
      CF.setToken(null);
      if (err.status === 401) err.details = {field: "token"};
      CF.showError(form, err);
    }
  });
  if (CF.token() && !next) CF.api("GET", "/api/me").then(
    (me) => { location.href = me.is_admin ? "/console/setup" : "/console/operator"; }, () => {});
})();
