/* Overview: totals, memories by tag, request rates and latency, sizes. Refreshed every 5 s while open. */
"use strict";

MS.page(async () => {
  const draw = (d) => {
    MS.$("#total").textContent = MS.num(d.total_memories);
    MS.$("#total-sub").textContent = `${MS.num(d.tag_count)} tags; embedder ${d.embedder ? d.embedder.model : "–"}`;
    MS.$("#db-size").textContent = MS.bytes(d.sizes.database_bytes);
    MS.$("#index-size").textContent = MS.num(d.sizes.index_elements) + " vectors";
    MS.$("#index-sub").textContent = d.sizes.index_bytes
      ? `${MS.bytes(d.sizes.index_bytes)} on disk; room for ${MS.num(d.sizes.index_capacity)}`
      : `not saved to disk yet; room for ${MS.num(d.sizes.index_capacity)}`;
    MS.$("#requests").textContent = MS.num(d.requests.all);
    MS.$("#requests-sub").textContent =
      `${MS.num(d.requests.ingest)} ingests, ${MS.num(d.requests.search)} searches, ${MS.num(d.requests.errors)} errors (5xx)`;
    Charts.bars(MS.$("#chart-tags"), d.tags.map((t) => ({ label: t.tag, value: t.count })), { label: "Memories by tag" });
    Charts.rates(MS.$("#chart-rates"), d.rates);
    Charts.latency(MS.$("#chart-latency"), d.latency);
    Charts.bars(MS.$("#chart-sizes"), [
      { label: "database", value: d.sizes.database_bytes || 0 },
      { label: "vector index file", value: d.sizes.index_bytes || 0, color: "#2f7d4f" },
    ], { format: MS.bytes, label: "Storage size" });
    const plans = Object.entries(d.plans || {}).sort((a, b) => b[1] - a[1]).map(([label, value]) => ({ label, value }));
    Charts.bars(MS.$("#chart-plans"), plans, { label: "Search plans chosen", color: "#7a4fb5" });
  };
  draw(await MS.api("/ui/api/overview"));
  MS.ready();
  setInterval(async () => {
    try { draw(await MS.api("/ui/api/overview")); } catch (err) { MS.fail(err); }
  }, 5000);
});
