/* Memories: search (semantic / keyword / hybrid) or list newest first, with tag, importance, key and metadata
 * filters; bulk delete by filter, counted first (dry run). The form's state lives in the page's query string. */
"use strict";

MS.page(async () => {
  const form = MS.$("#search");
  const fields = ["q", "mode", "tags", "importance", "key_prefix", "where"];
  const list = MS.$("#results");
  const more = MS.$("#more");
  let cursor = null;

  const p = MS.params();
  for (const f of fields) if (p.has(f)) MS.$("#" + f).value = p.get(f);
  if (p.has("deleted")) MS.notice(`Deleted memory ${p.get("deleted")}.`);

  /** The filter fields of the form, as the API takes them; throws on a bad metadata filter. */
  function filter() {
    const out = {};
    const tags = MS.$("#tags").value.split(",").map((t) => t.trim()).filter(Boolean);
    if (tags.length) out.tags = tags;
    const importance = MS.$("#importance").value;
    if (importance) out.importance = importance;
    const prefix = MS.$("#key_prefix").value.trim();
    if (prefix) out.key_prefix = prefix;
    const where = MS.$("#where").value.trim();
    if (where) {
      let parsed;
      try { parsed = JSON.parse(where); } catch (e) { throw new Error("Metadata filter: not JSON (" + e.message + ")"); }
      if (!parsed || typeof parsed !== "object" || Array.isArray(parsed)) throw new Error("Metadata filter: give a JSON object");
      out.where = parsed;
    }
    return out;
  }

  function card(m) {
    const text = MS.el("div", { class: "text" },
      MS.el("a", { href: "/ui/memories/" + encodeURIComponent(m.id) }, MS.short(m.content, 300)));
    // The similarity (cosine) when the search scored it; else (keyword mode, exact keys) the rank score, labelled.
    const score = MS.el("div", { class: "score" });
    const similar = typeof m.score === "number";
    const value = similar ? m.score : m.rank_score;
    if (typeof value === "number") {
      const bar = MS.el("span");
      bar.style.width = Math.max(0, Math.min(1, value)) * 100 + "%";
      score.title = similar ? "cosine similarity with the query" : "rank score (no similarity in this mode)";
      score.append(MS.el("span", { class: similar ? "visually-hidden" : null }, similar ? "similarity " : "rank "),
        value.toFixed(3), MS.el("div", { class: "bar", "aria-hidden": "true" }, bar));
    }
    const meta = MS.el("div", { class: "meta" },
      MS.el("span", {}, ...(m.tags.length ? m.tags.map((t) => MS.el("span", { class: "chip" }, t)) : ["no tags"])),
      MS.el("span", {}, "importance ", MS.el("strong", {}, m.importance)),
      m.key ? MS.el("span", {}, "key ", MS.el("code", {}, m.key)) : null,
      MS.el("span", {}, "created ", MS.time(m.created_at)),
      ...Object.entries(m.metadata).slice(0, 6).map(([k, v]) =>
        MS.el("span", {}, MS.el("code", {}, `${k}=${MS.short(typeof v === "string" ? v : JSON.stringify(v), 40)}`))));
    return MS.el("li", { dataset: { id: m.id } }, text, score, meta);
  }

  async function run(append) {
    const q = MS.$("#q").value.trim();
    const mode = MS.$("#mode").value;
    const flt = filter();
    MS.setParams(Object.fromEntries(fields.map((f) => [f, f === "mode" && mode === "hybrid" ? "" : MS.$("#" + f).value.trim()])));
    if (!append) { MS.clear(list); cursor = null; }
    let rows, summary;
    if (q) {
      const started = performance.now();
      const d = await MS.api("/search", { method: "POST", body: { query: q, mode, limit: 50, explain: true, ...flt } });
      rows = d.results;
      const plan = d.plan ? `plan ${d.plan.plan}, ${MS.ms(d.plan.ms)} in the service` : "";
      summary = `${rows.length} result${rows.length === 1 ? "" : "s"} for “${q}” (${mode}${plan ? "; " + plan : ""};`
        + ` ${MS.ms(performance.now() - started)} in all)`;
      cursor = null;
    } else {
      const d = await MS.api("/ui/api/memories", { method: "POST", body: { ...flt, limit: 50, cursor } });
      rows = d.results;
      cursor = d.next_cursor;
      const shown = list.children.length + rows.length;
      summary = `${shown} newest memor${shown === 1 ? "y" : "ies"}${Object.keys(flt).length ? " matching the filters" : ""}${cursor ? " (more below)" : ""}`;
    }
    for (const m of rows) list.append(card(m));
    MS.$("#summary").textContent = summary;
    more.hidden = !cursor;
  }

  form.addEventListener("submit", async (event) => {
    event.preventDefault();
    MS.notice("");
    resetBulk();
    try { await run(false); } catch (err) { MS.fail(err); }
  });
  MS.$("#clear").addEventListener("click", async () => {
    for (const f of fields) MS.$("#" + f).value = f === "mode" ? "hybrid" : "";
    resetBulk();
    try { await run(false); } catch (err) { MS.fail(err); }
  });
  more.addEventListener("click", async () => {
    try { await run(true); } catch (err) { MS.fail(err); }
  });

  // -- bulk delete: count (dry run), then delete exactly what was counted --------------------------------------
  const bulkResult = MS.$("#bulk-result");
  const bulkDelete = MS.$("#bulk-delete");
  let counted = null;
  function resetBulk() { counted = null; bulkDelete.hidden = true; bulkResult.textContent = ""; }
  MS.$("#bulk-count").addEventListener("click", async () => {
    resetBulk();
    let flt;
    try { flt = filter(); } catch (err) { bulkResult.textContent = err.message; return; }
    if (!Object.keys(flt).length) {
      bulkResult.textContent = "Set at least one filter (tags, importance, key prefix or metadata): deleting everything is refused.";
      return;
    }
    try {
      const d = await MS.api("/memories", { method: "DELETE", body: { ...flt, dry_run: true } });
      counted = { flt, n: d.would_delete };
      bulkResult.textContent = `${MS.num(d.would_delete)} memor${d.would_delete === 1 ? "y matches" : "ies match"} these filters.`;
      if (d.would_delete > 0) {
        bulkDelete.textContent = `Delete ${MS.num(d.would_delete)} memor${d.would_delete === 1 ? "y" : "ies"}`;
        bulkDelete.hidden = false;
      }
    } catch (err) { bulkResult.textContent = err.message; }
  });
  bulkDelete.addEventListener("click", async () => {
    if (!counted) return;
    let now;
    try { now = filter(); } catch (err) { bulkResult.textContent = err.message; return; }
    if (JSON.stringify(now) !== JSON.stringify(counted.flt)) {
      resetBulk();
      bulkResult.textContent = "The filters changed since the count: count again.";
      return;
    }
    try {
      const d = await MS.api("/memories", { method: "DELETE", body: { ...counted.flt } });
      bulkDelete.hidden = true;
      counted = null;
      bulkResult.textContent = `Deleted ${MS.num(d.deleted)} memor${d.deleted === 1 ? "y" : "ies"}.`;
      await run(false);
    } catch (err) { bulkResult.textContent = err.message; }
  });

  await run(false);
  MS.ready();
});
