/* Traces: stored workflow traces, newest first, filterable by workflow id and status. */
"use strict";

MS.page(async () => {
  const body = MS.$("#traces tbody");
  const more = MS.$("#more");
  const p = MS.params();
  MS.$("#workflow_id").value = p.get("workflow_id") || "";
  MS.$("#status").value = p.get("status") || "";
  let cursor = null;
  let longest = 1;

  async function load(append) {
    const wf = MS.$("#workflow_id").value.trim();
    const status = MS.$("#status").value;
    MS.setParams({ workflow_id: wf, status });
    if (!append) { cursor = null; MS.clear(body); longest = 1; }
    const q = new URLSearchParams({ limit: "50" });
    if (wf) q.set("workflow_id", wf);
    if (status) q.set("status", status);
    if (cursor) q.set("cursor", cursor);
    const d = await MS.api("/ui/api/traces?" + q.toString());
    cursor = d.next_cursor;
    longest = Math.max(longest, ...d.results.map((t) => t.duration_ms || 0));
    for (const t of d.results) {
      const bar = MS.el("span", { class: t.status === "error" ? "err" : "" });
      bar.style.width = ((t.duration_ms || 0) / longest) * 100 + "%";
      body.append(MS.el("tr", { dataset: { traceId: t.trace_id, status: t.status } },
        MS.el("td", {}, MS.el("a", { href: "/ui/traces/" + encodeURIComponent(t.trace_id) }, MS.el("code", {}, t.trace_id.slice(0, 16)))),
        MS.el("td", {}, t.workflow_id ? MS.el("a", { href: "/ui/workflows/" + encodeURIComponent(t.workflow_id) }, t.workflow_id) : "–",
          t.workflow && t.workflow !== t.workflow_id ? MS.el("span", { class: "why" }, t.workflow) : null),
        MS.el("td", {}, MS.badge(t.status || "neutral", t.status || "?"), t.truncated ? MS.el("span", { class: "why" }, "truncated") : null),
        MS.el("td", { class: "num" }, MS.num(t.span_count)),
        MS.el("td", {}, MS.el("div", { class: "dur" }, MS.el("span", { class: "track", "aria-hidden": "true" }, bar), MS.ms(t.duration_ms))),
        MS.el("td", {}, MS.time(t.stored_at))));
    }
    const n = body.children.length;
    MS.$("#summary").textContent = n
      ? `${MS.num(n)} trace${n === 1 ? "" : "s"}${wf ? ` of workflow ${wf}` : ""}${status ? ` with status ${status}` : ""}${cursor ? " (more below)" : ""}`
      : "No trace matches.";
    more.hidden = !cursor;
  }
  MS.$("#filter").addEventListener("submit", async (e) => { e.preventDefault(); try { await load(false); } catch (err) { MS.fail(err); } });
  more.addEventListener("click", async () => { try { await load(true); } catch (err) { MS.fail(err); } });
  await load(false);
  MS.ready();
});
