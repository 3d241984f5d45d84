/* One workflow: its status and why, how to resume it when paused or stopped, its steps in order (output,
 * duration, attempts, breaker / budget / fallback / escalation events), its runs (traces), escalations and
 * the dedup records of its exactly-once actions. */
"use strict";

MS.page(async () => {
  const id = document.body.dataset.workflowId;
  const { el } = MS;

  function eventText(e) {
    const a = e.attributes || {};
    switch (e.kind) {
      case "breaker": return `circuit ${a.breaker}: ${a.from} → ${a.to} (${a.reason})`;
      case "budget": return `budget ceiling: ${a.resource} ${a.used} of ${a.limit}`;
      case "scope": return `outside the scope: ${a.kind} ${a.value}`;
      case "escalation": return `escalated (${a.kind}): ${a.reason}`;
      case "fallback": return e.name === "fallback.degraded" ? `fell back to ${a.used}: ${a.path}` : `link ${a.link} failed: ${a.error}`;
      case "rate limit": return `waited ${a.seconds} s for rate limit ${a.limit}`;
      case "fan-out": return `branch ${a.branch} failed (${a.kind}): ${a.error}`;
      case "strategy": return `switched strategy to ${a.to} at attempt ${a.attempt}`;
      case "retry": return `${e.span} needed ${a.attempts} attempts`;
      case "error": return `${(a["exception.type"] || "").split(".").pop()}: ${a["exception.message"] || ""}`;
      default: return e.name;
    }
  }

  function events(list) {
    if (!list.length) return null;
    return el("ul", { class: "events" }, list.map((e) =>
      el("li", { dataset: { kind: e.kind } },
        el("span", { class: "ev " + e.kind.replace(" ", "-").replace("rate-limit", "rate") }, e.kind),
        eventText(e), " ",
        el("a", { href: `/ui/traces/${encodeURIComponent(e.trace_id)}#${e.span_id}`, class: "sub" }, `in ${e.span}`))));
  }

  // The page's origin as one shell word ([::1] would be a glob pattern unquoted); it holds no single quote.
  function shellWord(text) {
    return /^[\w@%+=:,.\/-]+$/.test(text) ? text : `'${text}'`;
  }

  function resumeBox(w) {
    const box = MS.$("#resume");
    MS.clear(box);
    const open = w.escalations.filter((e) => e.status === "open");
    const rerun = w.workflow === "code-review"
      ? `python examples/code_review.py --memory-url ${shellWord(location.origin)} --workflow-id ${w.workflow_id_shell}`
      : `await run_workflow(client, ${JSON.stringify(w.workflow_id)}, steps)  # the same id and steps`;
    const resumeAfter = w.steps.filter((s) => s.state === "done").map((s) => s.name).pop();
    if (w.status === "paused") {
      const code = [
        "from workflow_kit import MemoryClient, resume",
        "",
        `async with MemoryClient("${location.origin}") as client:`,
        `    await resume(client, ${JSON.stringify(w.workflow_id)}, note="looked at it: go on", by="you")`,
      ].join("\n");
      box.append(
        el("h2", {}, "Paused for a person"),
        el("p", {}, `${open.length} open escalation${open.length === 1 ? "" : "s"}: ${open.map((e) => `${e.kind}: ${e.reason}`).join("; ")}.`),
        el("p", {}, "To let it go on, mark the escalations resolved (workflow_kit's resume(), or the button below), then run the workflow again with the same id: it resumes after its last checkpoint"
          + (resumeAfter ? ` (step ${resumeAfter}).` : ".")),
        el("pre", {}, el("code", {}, code)),
        el("button", { type: "button", class: "primary", id: "resolve", onclick: () => resolve(open) }, "Mark escalations resolved"));
      box.hidden = false;
    } else if (w.status === "stopped" || w.status === "failed") {
      box.append(
        el("h2", {}, w.status === "failed" ? "Its last run failed" : "Not running"),
        el("p", {}, "Run it again with the same workflow id: it resumes after its last checkpoint"
          + (resumeAfter ? ` (step ${resumeAfter}), ` : ", ") + "and exactly-once actions already done are not repeated:"),
        el("pre", {}, el("code", {}, rerun)));
      box.hidden = false;
    } else {
      box.hidden = true;
    }
  }

  async function resolve(open) {
    // What workflow_kit.autonomy.resume() does: each open escalation's metadata says resolved, by whom, when.
    try {
      for (const e of open) {
        // The escalation is the kit's record: addressed in its own namespace (`_kit/...`), not the page's.
        const ns = e.namespace ? "?namespace=" + encodeURIComponent(e.namespace) : "";
        await MS.api("/memories/" + encodeURIComponent(e.id) + ns, {
          method: "PATCH",
          body: { metadata: { status: "resolved", resolution: "resolved in the console", resolved_by: "console", resolved_at: new Date().toISOString() } },
        });
      }
      MS.notice(`Resolved ${open.length} escalation${open.length === 1 ? "" : "s"}: run the workflow again to resume it.`);
      await load();
    } catch (err) { MS.fail(err); }
  }

  function stepItem(s, longest) {
    const bar = el("span", { class: s.state === "failed" ? "err" : "" });
    bar.style.width = ((s.duration_ms || 0) / longest) * 100 + "%";
    const head = el("div", { class: "step-head" },
      el("h3", {}, s.name), MS.badge(s.state),
      el("span", { class: "sub" }, s.duration_ms !== null && s.duration_ms !== undefined ? MS.ms(s.duration_ms) : "not run"),
      el("span", { class: "sub" }, `${s.attempts.length} attempt${s.attempts.length === 1 ? "" : "s"}`
        + (s.retries ? ` (${s.retries} retr${s.retries === 1 ? "y" : "ies"})` : "")),
      s.checkpointed_at ? el("span", { class: "sub" }, "checkpointed ", MS.time(s.checkpointed_at)) : null);
    const dur = el("div", { class: "dur" }, el("span", { class: "track", "aria-hidden": "true" }, bar));
    const attempts = s.attempts.length ? el("details", {},
      el("summary", {}, "Attempts"),
      el("table", { class: "data" },
        el("thead", {}, el("tr", {}, ["Started", "Status", "Duration", "Error", "Trace"].map((h) => el("th", { scope: "col" }, h)))),
        el("tbody", {}, s.attempts.map((a) => el("tr", {},
          el("td", {}, MS.when(a.start)), el("td", {}, MS.badge(a.status)), el("td", { class: "num" }, MS.ms(a.duration_ms)),
          el("td", {}, a.error || ""),
          el("td", {}, el("a", { href: `/ui/traces/${encodeURIComponent(a.trace_id)}#${a.span_id}` }, a.trace_id.slice(0, 12)))))))) : null;
    const output = s.state === "done" ? el("details", {}, el("summary", {}, "Output"), el("pre", { class: "json" }, MS.json(s.output))) : null;
    return el("li", { class: s.state, dataset: { step: s.name, state: s.state } }, head, dur, events(s.events), output, attempts);
  }

  async function load() {
    const w = await MS.api("/ui/api/workflows/" + encodeURIComponent(id));
    MS.clear(MS.$("#status-badge")).append(MS.badge(w.status));
    MS.$("#why").textContent = w.why;
    resumeBox(w);
    const facts = MS.clear(MS.$("#facts"));
    const fact = (k, v) => facts.append(el("div", {}, el("dt", {}, k), el("dd", {}, v)));
    fact("name", w.workflow || "–");
    fact("last update", MS.time(w.updated_at));
    fact("checkpoints", MS.num(w.checkpoint_count));
    fact("runs", MS.num(w.runs.length));
    if (w.usage) fact("spent", `${MS.num(w.usage.tokens)} tokens, $${Number(w.usage.cost).toFixed(4)}, ${w.usage.steps} agent calls`);
    if (w.claim) fact("held by", `${w.claim.holder} until ${MS.when(w.claim.expires_at)}`);

    const longest = Math.max(1, ...w.steps.map((s) => s.duration_ms || 0));
    MS.clear(MS.$("#steps")).append(...w.steps.map((s) => stepItem(s, longest)));

    const runs = MS.clear(MS.$("#runs tbody"));
    for (const r of w.runs) {
      runs.append(el("tr", { dataset: { traceId: r.trace_id } },
        el("td", {}, MS.when(r.started_at)),
        el("td", {}, MS.badge(r.status || "neutral", r.status || "?"), r.error ? el("span", { class: "why" }, r.error) : null,
          events(r.events || [])),
        el("td", { class: "num" }, MS.ms(r.duration_ms)),
        el("td", {}, r.replayed ? "none (replayed the stored result)"
          : (r.steps || []).map((s) => s.status === "error" ? `${s.name} (failed)` : s.name).join(", ") || "none"),
        el("td", {}, r.trace_id && r.span_count
          ? el("a", { href: "/ui/traces/" + encodeURIComponent(r.trace_id) }, el("code", {}, r.trace_id.slice(0, 16)))
          : el("span", { class: "why" }, r.status === "died" ? "killed before storing its trace" : "no stored trace"))));
    }
    if (!w.runs.length) runs.append(el("tr", {}, el("td", { colspan: "5" }, "No run recorded.")));

    const esc = MS.clear(MS.$("#escalations"));
    if (!w.escalations.length) esc.append(el("p", { class: "sub" }, "None."));
    else esc.append(el("table", { class: "data" },
      el("thead", {}, el("tr", {}, ["Raised", "Status", "Kind", "Step", "Reason", "Record"].map((h) => el("th", { scope: "col" }, h)))),
      el("tbody", {}, w.escalations.map((e) => el("tr", {},
        el("td", {}, MS.time(e.raised_at || e.created_at)), el("td", {}, MS.badge(e.status || "neutral", e.status || "?"),
          e.resolution ? el("span", { class: "why" }, e.resolution) : null),
        el("td", {}, e.kind), el("td", {}, e.step || "–"), el("td", {}, e.reason),
        el("td", {}, el("a", { href: "/ui/memories/" + encodeURIComponent(e.id) }, "open")))))));

    const dd = MS.clear(MS.$("#dedup"));
    if (!w.dedup.length) dd.append(el("p", { class: "sub" }, "No exactly-once action ran in this workflow's stored traces."));
    else dd.append(el("table", { class: "data" },
      el("thead", {}, el("tr", {}, ["Action", "Step", "Outcome", "Result", "Executed", "Record"].map((h) => el("th", { scope: "col" }, h)))),
      el("tbody", {}, w.dedup.map((d) => el("tr", { dataset: { key: d.key } },
        el("td", {}, d.action || d.span, el("span", { class: "why" }, d.key)), el("td", {}, d.step),
        el("td", {}, d.outcome || "–"), el("td", {}, el("code", {}, MS.short(JSON.stringify(d.result), 80))),
        el("td", {}, d.executed_at ? MS.time(d.executed_at) : "–"),
        el("td", {}, d.id ? el("a", { href: "/ui/memories/" + encodeURIComponent(d.id) }, "open") : "missing"))))));
    MS.$("#state").textContent = w.state === undefined || w.state === null ? "–" : MS.json(w.state);
  }

  await load();
  MS.ready();
});
