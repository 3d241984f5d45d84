/* Workflows: every workflow known from its checkpoints, most recently updated first, 50 a page. */
"use strict";

MS.page(async () => {
  const body = MS.$("#workflows tbody");
  const limit = 50;
  const p = MS.params();
  let offset = Number(p.get("offset") || 0) || 0;
  MS.$("#prefix").value = p.get("prefix") || "";

  async function load() {
    const prefix = MS.$("#prefix").value.trim();
    MS.setParams({ prefix, offset: offset || "" });
    const d = await MS.api(`/ui/api/workflows?prefix=${encodeURIComponent(prefix)}&limit=${limit}&offset=${offset}`);
    MS.clear(body);
    for (const w of d.results) {
      const step = w.last_step === null || w.last_step === undefined ? "–"
        : `${w.last_step}${w.step_number ? ` (${w.step_number} of ${w.step_count})` : ""}`;
      body.append(MS.el("tr", { dataset: { workflowId: w.workflow_id, status: w.status } },
        MS.el("td", {}, MS.el("a", { href: "/ui/workflows/" + encodeURIComponent(w.workflow_id) }, w.workflow_id)),
        MS.el("td", {}, w.workflow || "–"),
        MS.el("td", {}, MS.badge(w.status), MS.el("span", { class: "why" }, MS.short(w.why, 140))),
        MS.el("td", {}, step),
        MS.el("td", {}, MS.time(w.updated_at))));
    }
    const end = offset + d.results.length;
    MS.$("#summary").textContent = d.total
      ? `Workflows ${MS.num(offset + 1)}–${MS.num(end)} of ${MS.num(d.total)}`
      : "No workflow has a checkpoint yet" + (prefix ? " with an id starting so." : ".");
    MS.$("#prev").disabled = offset === 0;
    MS.$("#next").disabled = end >= d.total;
  }

  MS.$("#filter").addEventListener("submit", async (e) => {
    e.preventDefault();
    offset = 0;
    try { await load(); } catch (err) { MS.fail(err); }
  });
  MS.$("#prev").addEventListener("click", async () => { offset = Math.max(0, offset - limit); try { await load(); } catch (err) { MS.fail(err); } });
  MS.$("#next").addEventListener("click", async () => { offset += limit; try { await load(); } catch (err) { MS.fail(err); } });
  await load();
  MS.ready();
});
