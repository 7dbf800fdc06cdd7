/**
 * The dashboard's retained-messages panel: the retained messages the account may read, listed by
 * topic filter in topic order a page at a time (`GET /api/v1/admin/retained`), each with a delete
 * button that clears it the MQTT way (`DELETE /api/v1/admin/retained?topic=…`: an empty retained
 * publish as the account, so its publish ACL decides).
 *
 * @module
 */

import type { Panel } from "./panel.ts";

/** The retained-messages panel. */
export const retainedPanel: Panel = {
  nav: ["retained-panel", "Retained"],
  html: `<section id="retained-panel" class="panel">
  <h2>Retained messages</h2>
  <form id="retained-form"><input id="retained-filter" value="#" size="40" placeholder="topic filter, e.g. devices/+/status">
    <button id="retained-search" type="submit">List</button> <span id="retained-count" class="k"></span></form>
  <p id="retained-status" class="k"></p>
  <table><thead><tr><th>topic</th><th>payload</th><th>size</th><th>QoS</th><th>retained at</th><th></th></tr></thead>
  <tbody id="retained-rows"></tbody></table>
  <p><button id="retained-more" type="button" class="hidden">more</button></p>
</section>`,
  script: `(() => {
  // gen: which start() a load belongs to (an answer for an earlier sign-in is dropped).
  const state = { after: null, gen: 0 };
  const PAGE = 50;

  function row(m) {
    const payload = m.encoding === "base64" ? "(base64) " + m.payload : m.payload;
    return '<tr class="ret" data-topic="' + esc(m.topic) + '"><td>' + esc(m.topic) + '</td><td class="payload">' +
      esc(payload.length > 300 ? payload.slice(0, 300) + "…" : payload) + "</td><td>" + m.size + " B</td><td>" + m.qos +
      "</td><td>" + new Date(m.ts).toISOString().replace("T", " ").slice(0, 19) +
      '</td><td><button type="button" class="danger ret-delete">Delete</button></td></tr>';
  }

  async function load(more) {
    const q = new URLSearchParams({ filter: $("retained-filter").value.trim() || "#", limit: String(PAGE) });
    if (more && state.after) q.set("after", state.after);
    const gen = state.gen;
    try {
      const r = await api("/api/v1/admin/retained?" + q);
      const body = await r.json();
      if (gen !== state.gen) return;
      if (!r.ok) { $("retained-count").textContent = "cannot list: " + body.error; $("retained-rows").innerHTML = ""; return; }
      const html = body.items.map(row).join("");
      if (more) $("retained-rows").insertAdjacentHTML("beforeend", html); else $("retained-rows").innerHTML = html;
      state.after = body.nextAfter;
      show($("retained-more"), !!body.nextAfter);
      $("retained-count").textContent = body.total + " retained";
    } catch { /* logged out or offline */ }
  }

  async function remove(topic) {
    const r = await api("/api/v1/admin/retained?topic=" + encodeURIComponent(topic), { method: "DELETE" });
    const done = r.status === 204 ? "cleared " + topic : "cannot clear " + topic + ": " + (await r.json()).error;
    await load(false);
    $("retained-status").textContent = done;
  }

  $("retained-form").addEventListener("submit", (e) => { e.preventDefault(); load(false); });
  $("retained-more").addEventListener("click", () => load(true));
  $("retained-rows").addEventListener("click", (e) => {
    const b = e.target.closest("button.ret-delete");
    if (b) remove(b.closest("tr.ret").dataset.topic);
  });

  PANELS.push({
    start() { state.gen++; $("retained-status").textContent = ""; load(false); },
    stop() { state.gen++; },
  });
})();`,
};
