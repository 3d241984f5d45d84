/* The API docs (Swagger UI) with the console's sign-in: the token kept in this tab's sessionStorage goes out as
   an Authorization header on the schema request and on every "Try it out", so /docs works when auth is on. */
"use strict";

(function () {
  const TOKEN_KEY = "memory-spine.token"; // the key console.js keeps the token under
  let token = null;
  try { token = sessionStorage.getItem(TOKEN_KEY); } catch (e) { token = null; }

  function withToken(request) {
    if (token && !request.headers.Authorization) request.headers.Authorization = "Bearer " + token;
    return request;
  }

  async function start() {
    const probe = await fetch("/openapi.json", { headers: token ? { Authorization: "Bearer " + token } : {} });
    if (probe.status === 401) {
      location.assign("/ui/login?next=" + encodeURIComponent("/ui/docs"));
      return;
    }
    window.SwaggerUIBundle({
      url: "/openapi.json",
      dom_id: "#swagger-ui",
      requestInterceptor: withToken,
      deepLinking: true,
    });
  }

  document.addEventListener("DOMContentLoaded", start);
})();
