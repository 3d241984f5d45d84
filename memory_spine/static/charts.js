/* Small inline-SVG charts for the overview: horizontal bars, a rate timeline, latency percentiles.
 * Each chart is an <svg role="img"> with an aria-label that says in words what it shows.
 */
"use strict";

const Charts = (() => {
  const NS = "http://www.w3.org/2000/svg";
  const COLORS = { bar: "#3f73b8", ingest: "#2f7d4f", search: "#0b57a4", p50: "#7fb0e6", p95: "#3f73b8", p99: "#14233a" };

  function svg(width, height, label) {
    const s = document.createElementNS(NS, "svg");
    s.setAttribute("viewBox", `0 0 ${width} ${height}`);
    s.setAttribute("role", "img");
    s.setAttribute("aria-label", label);
    const t = document.createElementNS(NS, "title");
    t.textContent = label;
    s.append(t);
    return s;
  }
  function node(tag, attrs, text) {
    const n = document.createElementNS(NS, tag);
    for (const [k, v] of Object.entries(attrs)) n.setAttribute(k, v);
    if (text !== undefined) n.textContent = text;
    return n;
  }
  function empty(target, text) {
    MS.clear(target).append(MS.el("p", { class: "empty" }, text));
  }

  /** Horizontal bars: items [{label, value}], `format` renders a value. */
  function bars(target, items, { format = MS.num, label = "bar chart", labelWidth = 150, color = COLORS.bar } = {}) {
    if (!items.length) return empty(target, "Nothing to show yet.");
    const width = 560, row = 22, height = items.length * row + 4;
    const max = Math.max(...items.map((i) => i.value), 1);
    const plot = width - labelWidth - 90;
    const words = items.map((i) => `${i.label}: ${format(i.value)}`).join("; ");
    const s = svg(width, height, `${label}. ${words}`);
    items.forEach((item, k) => {
      const y = k * row + 2;
      s.append(node("text", { x: labelWidth - 8, y: y + 14, "text-anchor": "end" }, MS.short(item.label, 22)));
      const w = Math.max(1, (item.value / max) * plot);
      s.append(node("rect", { x: labelWidth, y: y + 3, width: w, height: row - 8, rx: 2, fill: item.color || color }));
      s.append(node("text", { x: labelWidth + w + 6, y: y + 14 }, format(item.value)));
    });
    MS.clear(target).append(s);
  }

  /** Ingest and search requests per second over time: series [{from, to, ingest, search}] (epoch seconds). */
  function rates(target, series) {
    if (!series.length) return empty(target, "No samples yet.");
    const width = 560, height = 170, left = 44, right = 10, top = 10, bottom = 24;
    const t0 = series[0].from, t1 = series[series.length - 1].to;
    const span = Math.max(t1 - t0, 1);
    const max = Math.max(...series.map((p) => Math.max(p.ingest, p.search)), 1);
    const x = (t) => left + ((t - t0) / span) * (width - left - right);
    const y = (v) => top + (1 - v / max) * (height - top - bottom);
    const last = series[series.length - 1];
    const label = `Requests per second. Latest interval: ingest ${last.ingest.toFixed(2)}/s, search ${last.search.toFixed(2)}/s; peak ${max.toFixed(2)}/s.`;
    const s = svg(width, height, label);
    for (const f of [0, 0.5, 1]) {
      const v = max * f;
      s.append(node("line", { x1: left, x2: width - right, y1: y(v), y2: y(v), stroke: "#e3e7ec" }));
      s.append(node("text", { x: left - 6, y: y(v) + 4, "text-anchor": "end", class: "muted" }, v >= 10 || v === 0 ? v.toFixed(0) : v.toFixed(1)));
    }
    for (const [name, color] of [["ingest", COLORS.ingest], ["search", COLORS.search]]) {
      let d = "";
      series.forEach((p, k) => {
        d += `${k ? "L" : "M"}${x(p.from).toFixed(1)},${y(p[name]).toFixed(1)} L${x(p.to).toFixed(1)},${y(p[name]).toFixed(1)} `;
      });
      s.append(node("path", { d, fill: "none", stroke: color, "stroke-width": 2 }));
    }
    const mins = Math.round(span / 60);
    s.append(node("text", { x: left, y: height - 6, class: "muted" }, mins >= 1 ? `${mins} min ago` : `${Math.round(span)} s ago`));
    s.append(node("text", { x: width - right, y: height - 6, "text-anchor": "end", class: "muted" }, "now"));
    const legend = MS.el("div", { class: "legend" },
      MS.el("span", {}, legendBox(COLORS.ingest), `ingest ${last.ingest.toFixed(2)}/s`),
      MS.el("span", {}, legendBox(COLORS.search), `search ${last.search.toFixed(2)}/s`));
    MS.clear(target).append(legend, s);
  }

  function legendBox(color) {
    const i = MS.el("i", { "aria-hidden": "true" });
    i.style.background = color;
    return i;
  }

  /** Latency percentiles per route on a log scale: rows [{method, route, count, p50, p95, p99}] in ms. */
  function latency(target, rows) {
    if (!rows.length) return empty(target, "No API requests served yet.");
    const width = 560, row = 30, labelWidth = 190, right = 70, top = 4;
    const height = rows.length * row + top + 22;
    const values = rows.flatMap((r) => [r.p50, r.p95, r.p99]).filter((v) => v > 0);
    const lo = Math.pow(10, Math.floor(Math.log10(Math.min(...values, 1))));
    const hi = Math.pow(10, Math.ceil(Math.log10(Math.max(...values, 1))));
    const plot = width - labelWidth - right;
    const x = (v) => labelWidth + ((Math.log10(Math.max(v, lo)) - Math.log10(lo)) / (Math.log10(hi) - Math.log10(lo) || 1)) * plot;
    const words = rows.map((r) => `${r.method} ${r.route}: p50 ${MS.ms(r.p50)}, p95 ${MS.ms(r.p95)}, p99 ${MS.ms(r.p99)}`).join("; ");
    const s = svg(width, height, `Request latency by route. ${words}`);
    for (let d = lo; d <= hi * 1.0001; d *= 10) {
      s.append(node("line", { x1: x(d), x2: x(d), y1: top, y2: height - 20, stroke: "#e3e7ec" }));
      s.append(node("text", { x: x(d), y: height - 6, "text-anchor": "middle", class: "muted" }, MS.ms(d)));
    }
    rows.forEach((r, k) => {
      const y = top + k * row;
      s.append(node("text", { x: labelWidth - 8, y: y + 13, "text-anchor": "end" }, MS.short(`${r.method} ${r.route}`, 26)));
      s.append(node("text", { x: labelWidth - 8, y: y + 25, "text-anchor": "end", class: "muted" }, `${MS.num(r.count)} request${r.count === 1 ? "" : "s"}`));
      s.append(node("line", { x1: x(r.p50), x2: x(r.p99), y1: y + 12, y2: y + 12, stroke: "#9aa7b8", "stroke-width": 2 }));
      for (const [q, color, size] of [["p50", COLORS.p50, 5], ["p95", COLORS.p95, 5], ["p99", COLORS.p99, 5]]) {
        s.append(node("circle", { cx: x(r[q]), cy: y + 12, r: size, fill: color }));
      }
      s.append(node("text", { x: width - right + 8, y: y + 16 }, MS.ms(r.p99)));
    });
    const legend = MS.el("div", { class: "legend" },
      ...["p50", "p95", "p99"].map((q) => MS.el("span", {}, legendBox(COLORS[q]), q)),
      MS.el("span", {}, "(right: p99)"));
    MS.clear(target).append(legend, s);
  }

  return { bars, rates, latency, COLORS };
})();
