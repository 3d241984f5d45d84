/* memory-spine console: what every page shares. Plain JS, no build step.
 *
 * The bearer token (when the service wants one) lives in sessionStorage for this tab only, and goes out as an
 * Authorization header on the console's own fetch() calls: never in a URL, so never in a log or a history.
 * Everything from the service is put on the page as text (textContent), never parsed as HTML.
 */
"use strict";

const MS = (() => {
  const TOKEN_KEY = "memory-spine.token";

  function token() {
    try { return sessionStorage.getItem(TOKEN_KEY); } catch (e) { return null; }
  }
  function setToken(value) { sessionStorage.setItem(TOKEN_KEY, value); }
  function clearToken() { sessionStorage.removeItem(TOKEN_KEY); }

  class ApiError extends Error {
    constructor(status, body) {
      const err = (body && body.error) || {};
      super(err.message || `the service answered ${status}`);
      this.status = status;
      this.type = err.type;
      this.field = err.field;
    }
  }

  function loginUrl() {
    const here = location.pathname + location.search;
    return "/ui/login?next=" + encodeURIComponent(here);
  }

  /** fetch() a JSON endpoint of the service with the session's token; a 401 sends the user to sign in. */
  async function api(path, { method = "GET", body, tokenOverride, noRedirect } = {}) {
    const headers = { Accept: "application/json" };
    const t = tokenOverride !== undefined ? tokenOverride : token();
    if (t) headers.Authorization = "Bearer " + t;
    if (body !== undefined) headers["Content-Type"] = "application/json";
    // The page's namespace (?namespace=, picked in the header) goes with every call; a body's own wins.
    const ns = namespace();
    if (ns) headers["X-Memory-Namespace"] = ns;
    const resp = await fetch(path, {
      method, headers, body: body === undefined ? undefined : JSON.stringify(body),
      credentials: "omit", cache: "no-store",
    });
    let data = null;
    const text = await resp.text();
    if (text) { try { data = JSON.parse(text); } catch (e) { data = null; } }
    if (resp.status === 401 && !noRedirect) {
      clearToken();
      location.assign(loginUrl());
      throw new ApiError(401, data);
    }
    if (!resp.ok) throw new ApiError(resp.status, data);
    return data;
  }

  /** Build an element: el("a", {href: "/x", class: "y"}, "text", child, ...). Strings become text nodes. */
  function el(tag, attrs, ...children) {
    const node = document.createElement(tag);
    for (const [k, v] of Object.entries(attrs || {})) {
      if (v === null || v === undefined || v === false) continue;
      if (k === "class") node.className = v;
      else if (k === "text") node.textContent = v;
      else if (k === "dataset") Object.assign(node.dataset, v);
      else if (k.startsWith("on")) node.addEventListener(k.slice(2), v);
      else node.setAttribute(k, v === true ? "" : v);
    }
    for (const c of children.flat()) {
      if (c === null || c === undefined || c === false) continue;
      node.append(c instanceof Node ? c : document.createTextNode(String(c)));
    }
    return node;
  }

  function clear(node) { while (node.firstChild) node.removeChild(node.firstChild); return node; }
  const $ = (sel) => document.querySelector(sel);

  // -- formats --------------------------------------------------------------------------------------------
  const nf = new Intl.NumberFormat("en-US");
  function num(n) { return n === null || n === undefined ? "–" : nf.format(n); }
  function ms(v) {
    if (v === null || v === undefined || Number.isNaN(v)) return "–";
    if (v >= 10000) return (v / 1000).toFixed(1) + " s";
    if (v >= 1000) return (v / 1000).toFixed(2) + " s";
    if (v >= 100) return v.toFixed(0) + " ms";
    if (v >= 10) return v.toFixed(1) + " ms";
    return v.toFixed(2) + " ms";
  }
  function bytes(n) {
    if (n === null || n === undefined) return "–";
    const units = ["B", "KB", "MB", "GB", "TB"];
    let i = 0;
    while (n >= 1024 && i < units.length - 1) { n /= 1024; i += 1; }
    return (i === 0 ? n.toFixed(0) : n.toFixed(n >= 100 ? 0 : 1)) + " " + units[i];
  }
  function date(value) {
    if (value === null || value === undefined) return null;
    return typeof value === "number" ? new Date(value * 1000) : new Date(value);
  }
  function when(value) {
    const d = date(value);
    if (!d || Number.isNaN(d.getTime())) return "–";
    return d.toISOString().replace("T", " ").replace(/\.\d+Z$/, "Z");
  }
  function ago(value) {
    const d = date(value);
    if (!d) return "–";
    const s = (Date.now() - d.getTime()) / 1000;
    if (s < 0) return "just now";
    if (s < 60) return Math.round(s) + " s ago";
    if (s < 3600) return Math.round(s / 60) + " min ago";
    if (s < 86400) return Math.round(s / 3600) + " h ago";
    return Math.round(s / 86400) + " days ago";
  }
  /** A <time> showing "3 min ago" with the exact UTC time as its title and datetime. */
  function time(value) {
    const d = date(value);
    if (!d || Number.isNaN(d.getTime())) return el("span", {}, "–");
    return el("time", { datetime: d.toISOString(), title: when(value) }, ago(value));
  }
  function json(value) { return JSON.stringify(value, null, 2); }
  function short(text, n) { text = String(text); return text.length > n ? text.slice(0, n - 1) + "…" : text; }
  function badge(status, label) { return el("span", { class: "badge " + status }, label || status); }

  // -- page life ------------------------------------------------------------------------------------------
  function notice(text, bad) {
    const n = $("#notice");
    if (!n) return;
    n.textContent = text || "";
    n.classList.toggle("bad", !!bad);
  }
  /** Mark the page as drawn (tests and the render-time measurement wait for this). */
  function ready() { document.body.dataset.ready = "1"; }
  function fail(err) {
    if (err && err.status === 401) return; // on the way to the login page
    notice(err && err.message ? err.message : String(err), true);
    document.body.dataset.ready = "error";
  }
  /** Run the page's loader once the DOM is there; errors become a notice. */
  function page(load) {
    const run = async () => {
      try { await load(); } catch (err) { fail(err); }
    };
    if (document.readyState === "loading") document.addEventListener("DOMContentLoaded", run);
    else run();
  }
  function params() { return new URLSearchParams(location.search); }
  /** The namespace this page shows ("" = default): memory pages read it, workflow pages read `_kit/` of it. */
  function namespace() { return params().get("namespace") || ""; }
  function setParams(values) {
    const p = new URLSearchParams();
    if (namespace() && !("namespace" in values)) p.set("namespace", namespace());
    for (const [k, v] of Object.entries(values)) if (v !== "" && v !== null && v !== undefined) p.set(k, v);
    const qs = p.toString();
    history.replaceState(null, "", location.pathname + (qs ? "?" + qs : ""));
  }

  document.addEventListener("DOMContentLoaded", () => {
    const state = $("#session-state");
    const out = $("#sign-out");
    if (token() && state && out) {
      state.textContent = "Signed in for this tab";
      out.hidden = false;
      out.addEventListener("click", () => { clearToken(); location.assign("/ui/login"); });
    }
    namespacePicker();
    const flash = sessionStorage.getItem("memory-spine.flash");
    if (flash) { sessionStorage.removeItem("memory-spine.flash"); notice(flash); }
  });

  function flashNext(text) { sessionStorage.setItem("memory-spine.flash", text); }

  /** The header's namespace picker: users' namespaces (not the kit's `_kit/...`); links keep the choice. */
  async function namespacePicker() {
    const pick = $("#ns-picker");
    if (!pick || document.body.dataset.page === "login") return;
    const current = namespace() || "default";
    const names = new Set(["default", current]);
    try {
      const d = await api("/namespaces", { noRedirect: true });
      for (const n of d.namespaces) if (!n.namespace.startsWith("_")) names.add(n.namespace);
    } catch (e) { /* signed out or old service: the current one is still shown */ }
    clear(pick);
    for (const n of [...names].sort()) pick.append(el("option", { value: n, selected: n === current }, n));
    pick.addEventListener("change", () => {
      const p = params();
      if (pick.value === "default") p.delete("namespace"); else p.set("namespace", pick.value);
      p.delete("cursor");
      location.assign(location.pathname + (p.toString() ? "?" + p : ""));
    });
    document.addEventListener("click", (ev) => {
      const a = ev.target.closest && ev.target.closest("a[href^='/ui']");
      if (!a || !namespace() || a.href.includes("namespace=")) return;
      const url = new URL(a.href);
      url.searchParams.set("namespace", namespace());
      a.href = url.pathname + url.search;
    }, true);
  }

  return {
    api, ApiError, token, setToken, clearToken, el, clear, $, num, ms, bytes, when, ago, time, json, short,
    badge, notice, ready, fail, page, params, setParams, flashNext, namespace,
  };
})();
