/* Sign in: check the token against the service, keep it in sessionStorage, go back where the user was.
 * A scoped token (memory-spine token create) signs in too: /whoami answers any valid token with its scope, which
 * the console says once; the service refuses (403) what lies outside it, and the pages show that message. */
"use strict";

MS.page(async () => {
  const form = MS.$("#login");
  const error = MS.$("#login-error");
  const next = MS.params().get("next") || "/ui";
  // Only a console page: never an outside address (an open redirect), never a protocol-relative one.
  const target = /^\/ui(\/|$|\?)/.test(next) && !next.startsWith("//") ? next : "/ui";
  form.addEventListener("submit", async (event) => {
    event.preventDefault();
    error.hidden = true;
    const value = MS.$("#token").value.trim();
    let scope;
    try {
      scope = await MS.api("/whoami", { tokenOverride: value, noRedirect: true });
    } catch (err) {
      error.textContent = err.status === 401 ? "The service refused this token." : err.message;
      error.hidden = false;
      return;
    }
    MS.setToken(value);
    if (scope && scope.namespaces) {
      MS.flashNext(`Signed in with a scoped token${scope.name ? " (" + scope.name + ")" : ""}: `
        + `${scope.rights.join(", ")} on ${scope.namespaces.join(", ")}.`);
    }
    MS.$("#token").value = "";
    location.assign(target);
  });
  MS.$("#token").focus();
  MS.ready();
});
