/* One memory: its fields, its history (each kept version, what changed, revert to one), an edit form (PATCH:
 * content re-embeds, tags replace, metadata merges; a key removed from the JSON is sent as null, which removes
 * it) and delete with a confirmation. A deleted memory still kept shows its history and a restore button. */
"use strict";

MS.page(async () => {
  const id = document.body.dataset.memoryId;
  const path = "/memories/" + encodeURIComponent(id);
  let current = null;

  function show(m) {
    current = m;
    const facts = MS.clear(MS.$("#record"));
    const add = (k, v) => facts.append(MS.el("dt", {}, k), MS.el("dd", {}, v));
    add("id", MS.el("code", {}, m.id));
    add("key", m.key ? MS.el("code", {}, m.key) : "none");
    add("tags", m.tags.length ? m.tags.map((t) => MS.el("span", { class: "chip" }, t)) : "none");
    add("importance", m.importance);
    add("created", MS.when(m.created_at));
    add("updated", MS.when(m.updated_at));
    add("expires", m.expires_at ? MS.when(m.expires_at) : "never");
    if (m.key && m.key.startsWith("trace:")) {
      add("trace", MS.el("a", { href: "/ui/traces/" + encodeURIComponent(m.key.slice(6)) }, "open as a waterfall"));
    }
    if (m.metadata && typeof m.metadata.workflow_id === "string") {
      add("workflow", MS.el("a", { href: "/ui/workflows/" + encodeURIComponent(m.metadata.workflow_id) }, m.metadata.workflow_id));
    }
    MS.$("#content").textContent = m.content;
    MS.$("#metadata").textContent = MS.json(m.metadata);
    MS.$("#edit-content").value = m.content;
    MS.$("#edit-tags").value = m.tags.join(", ");
    MS.$("#edit-importance").value = m.importance;
    MS.$("#edit-metadata").value = MS.json(m.metadata);
  }

  MS.$("#edit").addEventListener("submit", async (event) => {
    event.preventDefault();
    let metadata;
    try {
      metadata = JSON.parse(MS.$("#edit-metadata").value || "{}");
      if (!metadata || typeof metadata !== "object" || Array.isArray(metadata)) throw new Error("give a JSON object");
    } catch (err) { MS.notice("Metadata: " + err.message, true); return; }
    const patch = {};
    const content = MS.$("#edit-content").value;
    if (content !== current.content) patch.content = content;
    const tags = MS.$("#edit-tags").value.split(",").map((t) => t.trim()).filter(Boolean);
    if (JSON.stringify(tags) !== JSON.stringify(current.tags)) patch.tags = tags;
    const importance = MS.$("#edit-importance").value;
    if (importance !== current.importance) patch.importance = importance;
    const merge = {};
    for (const k of Object.keys(current.metadata)) if (!(k in metadata)) merge[k] = null;
    for (const [k, v] of Object.entries(metadata)) if (JSON.stringify(v) !== JSON.stringify(current.metadata[k])) merge[k] = v;
    if (Object.keys(merge).length) patch.metadata = merge;
    if (!Object.keys(patch).length) { MS.notice("Nothing changed."); return; }
    try {
      show(await MS.api(path, { method: "PATCH", body: patch }));
      showHistory(await MS.api(path + "/history"));
      MS.notice("Saved.");
    } catch (err) { MS.notice(err.field ? `${err.field}: ${err.message}` : err.message, true); }
  });

  const confirmBox = MS.$("#confirm-delete");
  MS.$("#delete").addEventListener("click", () => { confirmBox.hidden = false; MS.$("#delete-yes").focus(); });
  MS.$("#delete-no").addEventListener("click", () => { confirmBox.hidden = true; });
  MS.$("#delete-yes").addEventListener("click", async () => {
    try {
      await MS.api(path, { method: "DELETE" });
      location.assign("/ui/memories?deleted=" + encodeURIComponent(id));
    } catch (err) { MS.fail(err); }
  });

  function showHistory(h) {
    const body = MS.clear(MS.$("#history tbody"));
    const deleted = h.current_version === null;
    MS.$("#history-note").textContent = h.versions.length === 1 ? "No earlier version is kept." :
      `${h.versions.length} versions, newest first.`;
    for (const v of h.versions) {
      let action = "";
      if (!v.current) {
        const label = deleted ? "Restore this version" : "Revert to this";
        action = MS.el("button", { type: "button", class: "revert", "data-version": String(v.version) }, label);
        action.addEventListener("click", async () => {
          try {
            const m = deleted
              ? await MS.api(path + "/restore", { method: "POST", body: { version: v.version } })
              : await MS.api(path + "/revert", { method: "POST", body: { version: v.version, if_version: current.version } });
            await load();
            MS.notice(`${deleted ? "Restored" : "Reverted to"} version ${v.version}: now version ${m.version}.`);
          } catch (err) { MS.notice(err.field ? `${err.field}: ${err.message}` : err.message, true); }
        });
      }
      body.append(MS.el("tr", { "data-version": String(v.version) },
        MS.el("td", {}, MS.el("code", {}, String(v.version)), v.current ? " " : "", v.current ? MS.badge("ok", "current") : ""),
        MS.el("td", {}, MS.when(v.valid_from)),
        MS.el("td", {}, v.changed === null ? "first kept" : (v.changed.length ? v.changed.join(", ") : "nothing")),
        MS.el("td", {}, v.ended_by || "–"),
        MS.el("td", {}, MS.short(v.content, 80)),
        MS.el("td", {}, action)));
    }
  }

  async function load() {
    // One request: the history's newest entry is the live record (with its version) unless it was deleted.
    const h = await MS.api(path + "/history");
    const record = h.current_version === null ? null : h.versions[0];
    const deleted = record === null;
    for (const sel of ["#record-panel", "#edit-panel", "#delete-panel"]) MS.$(sel).hidden = deleted;
    MS.$("#deleted-panel").hidden = !deleted;
    if (deleted) {
      MS.$("#deleted-note").textContent = `Deleted ${MS.when(h.deleted_at)}. Restoring brings back version ` +
        `${h.versions[0].version} as a new version.`;
    } else {
      show(record);
    }
    showHistory(h);
  }

  MS.$("#restore").addEventListener("click", async () => {
    try {
      const m = await MS.api(path + "/restore", { method: "POST" });
      await load();
      MS.notice(`Restored: now version ${m.version}.`);
    } catch (err) { MS.notice(err.message, true); }
  });

  await load();
  MS.ready();
});
