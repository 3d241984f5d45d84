/* One trace as a waterfall: every span a row, indented under its parent, its bar placed at its start offset
 * and as long as its duration, errors in red. A click (or Enter) on a row shows the span's inputs, outputs,
 * reasoning, attributes and events below. A #<span_id> in the address opens that span. */
"use strict";

MS.page(async () => {
  const id = document.body.dataset.traceId;
  const { el } = MS;
  const t = await MS.api("/ui/api/traces/" + encodeURIComponent(id));
  const total = t.total_ms || 1;

  MS.clear(MS.$("#status-badge")).append(MS.badge(t.status || "neutral", t.status || "?"));
  const facts = MS.$("#facts");
  const fact = (k, v) => facts.append(el("div", {}, el("dt", {}, k), el("dd", {}, v)));
  fact("workflow", t.workflow_id ? el("a", { href: "/ui/workflows/" + encodeURIComponent(t.workflow_id) }, t.workflow_id) : "–");
  fact("name", t.workflow || "–");
  fact("started", MS.when(t.started_at));
  fact("duration", MS.ms(t.total_ms));
  fact("spans", MS.num(t.spans.length));
  fact("errors", MS.num(t.error_count));
  if (t.truncated) fact("note", "stored truncated: recorded values were dropped to fit the service's size cap");

  const wf = MS.$("#waterfall");
  const ticks = el("div", { class: "ticks", "aria-hidden": "true" });
  for (const f of [0, 0.25, 0.5, 0.75, 1]) {
    const tick = el("span", {}, MS.ms(total * f));
    tick.style.left = f * 100 + "%";
    ticks.append(tick);
  }
  wf.append(el("div", { class: "wf-axis" }, el("span", {}, "span"), ticks, el("span", {}, "duration")));

  const rows = new Map();
  let selected = null;
  for (const s of t.spans) {
    const bar = el("span", { class: `bar ${s.status === "error" ? "error" : s.kind}` });
    bar.style.left = (s.offset_ms / total) * 100 + "%";
    bar.style.width = Math.max((s.duration_ms / total) * 100, 0.15) + "%";
    const name = el("span", { class: "name" }, el("span", { class: "indent" }), s.name, el("span", { class: "kind" }, s.kind));
    name.firstChild.style.paddingLeft = s.depth * 1.1 + "rem";
    const row = el("button", {
      type: "button",
      class: "wf-row" + (s.status === "error" ? " error" : ""),
      "aria-pressed": "false",
      "aria-label": `${s.name} (${s.kind}), starts at ${MS.ms(s.offset_ms)}, takes ${MS.ms(s.duration_ms)}${s.status === "error" ? ", failed" : ""}`,
      dataset: {
        spanId: s.span_id, parentId: s.parent_id || "", depth: String(s.depth), kind: s.kind,
        offsetMs: String(s.offset_ms), durationMs: String(s.duration_ms), status: s.status,
      },
      onclick: () => select(s.span_id),
    }, name, el("span", { class: "track" }, bar), el("span", { class: "ms" }, MS.ms(s.duration_ms)));
    rows.set(s.span_id, { row, span: s });
    wf.append(row);
  }

  MS.$("#show-memory").addEventListener("change", (e) => {
    for (const { row, span } of rows.values()) row.classList.toggle("hidden", !e.target.checked && span.kind === "memory");
  });

  function block(title, value) {
    if (value === undefined) return null;
    return [el("h3", {}, title), el("pre", { class: "json" }, typeof value === "string" ? value : MS.json(value))];
  }

  function select(spanId) {
    const found = rows.get(spanId);
    if (!found) return;
    if (selected) selected.setAttribute("aria-pressed", "false");
    selected = found.row;
    selected.setAttribute("aria-pressed", "true");
    const s = found.span;
    const parent = s.parent_id && rows.get(s.parent_id) ? rows.get(s.parent_id).span.name : null;
    MS.$("#detail-title").textContent = s.name;
    const d = MS.clear(MS.$("#detail"));
    const facts = el("dl", { class: "facts inline" });
    const fact = (k, v) => facts.append(el("div", {}, el("dt", {}, k), el("dd", {}, v)));
    fact("kind", s.kind);
    fact("status", MS.badge(s.status));
    fact("starts at", "+" + MS.ms(s.offset_ms));
    fact("duration", MS.ms(s.duration_ms));
    fact("span id", el("code", {}, s.span_id));
    fact("parent", parent ? el("button", { type: "button", class: "link", onclick: () => select(s.parent_id) }, parent) : "none");
    d.append(facts);
    if (s.error) d.append(el("p", { class: "error" }, s.error));
    d.append(...[block("Inputs", s.inputs), block("Outputs", s.outputs), block("Reasoning", s.reasoning)].flat().filter(Boolean));
    if (s.inputs === undefined && s.outputs === undefined && s.reasoning === undefined) {
      d.append(el("p", { class: "sub" }, "This span recorded no inputs, outputs or reasoning."));
    }
    const attrs = Object.entries(s.attributes || {});
    if (attrs.length) {
      d.append(el("h3", {}, "Attributes"), el("table", { class: "data" }, el("tbody", {}, attrs.map(([k, v]) =>
        el("tr", {}, el("th", { scope: "row" }, k), el("td", {}, el("code", {}, typeof v === "string" ? v : JSON.stringify(v))))))));
    }
    if ((s.events || []).length) {
      d.append(el("h3", {}, "Events"), el("ul", { class: "events" }, s.events.map((e) => {
        const a = Object.assign({}, e.attributes);
        const stack = a["exception.stacktrace"];
        delete a["exception.stacktrace"];
        return el("li", {}, el("strong", {}, e.name), ` at +${MS.ms((e.time - t.started_at) * 1000)} `,
          el("code", {}, JSON.stringify(a)),
          stack ? el("details", {}, el("summary", {}, "Stack trace"), el("pre", { class: "json" }, stack)) : null);
      })));
    }
    MS.$("#detail-panel").hidden = false;
    history.replaceState(null, "", "#" + spanId);
  }

  const wanted = location.hash.slice(1);
  if (wanted && rows.has(wanted)) select(wanted);
  MS.ready();
});
