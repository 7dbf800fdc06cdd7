/**
 * The dashboard's northbound panel: each bridge's link state and upstream, the spool's depth and
 * size, and the dead letters (messages the upstream would not take), each with retry (back to the
 * spool's tail) and delete buttons; through `GET /api/v1/admin/northbound` and its
 * `dead-letters` routes, refreshed every 2 s. Reading needs subscribe on
 * `$ferry/admin/northbound`, retry and delete publish on it.
 *
 * @module
 */

import type { Panel } from "./panel.ts";

/** The northbound panel. */
export const northboundPanel: Panel = {
  nav: ["northbound-panel", "Northbound"],
  html: `<section id="northbound-panel" class="panel">
  <h2>Northbound</h2>
  <p id="nb-status" class="k"></p>
  <div id="nb-body" class="hidden">
    <table><thead><tr><th>bridge</th><th>link</th><th>upstream</th></tr></thead><tbody id="nb-bridges"></tbody></table>
    <p id="nb-spool"></p>
    <h3>Dead letters <span id="nb-dead-count" class="k"></span></h3>
    <p id="nb-action" class="k"></p>
    <table><thead><tr><th>id</th><th>bridge</th><th>topic</th><th>size</th><th>reason</th><th>dead since</th><th></th></tr></thead>
    <tbody id="nb-dead"></tbody></table>
    <p><button id="nb-dead-more" type="button" class="hidden">more</button></p>
  </div>
</section>`,
  script: `(() => {
  // gen: which start() a load belongs to (an answer for an earlier sign-in is dropped).
  const state = { timer: null, shown: 100, gen: 0 };

  function bytes(n) { return n >= 1048576 ? (n / 1048576).toFixed(1) + " MiB" : n >= 1024 ? (n / 1024).toFixed(1) + " KiB" : n + " B"; }

  function letter(d) {
    return '<tr class="dead" data-id="' + d.id + '"><td>' + d.id + "</td><td>" + esc(d.bridge) + "</td><td>" + esc(d.topic) +
      "</td><td>" + bytes(d.size) + "</td><td>" + esc(d.reason) + (d.detail ? ' <span class="k">' + esc(d.detail) + "</span>" : "") +
      "</td><td>" + new Date(d.deadAt).toISOString().replace("T", " ").slice(0, 19) +
      '</td><td><button type="button" class="nb-retry">Retry</button> <button type="button" class="danger nb-delete">Delete</button></td></tr>';
  }

  async function load() {
    const gen = state.gen;
    try {
      const r = await api("/api/v1/admin/northbound");
      const nb = await r.json();
      if (gen !== state.gen) return;
      if (!r.ok) { $("nb-status").textContent = nb.error; show($("nb-body"), false); return; }
      $("nb-status").textContent = "";
      show($("nb-body"), true);
      $("nb-bridges").innerHTML = nb.bridges.map((b) => '<tr class="bridge" data-name="' + esc(b.name) + '"><td>' + esc(b.name) +
        '</td><td class="nb-state ' + (b.state === "live" ? "ok" : "bad") + '">' + esc(b.state) + "</td><td>" + esc(b.upstream) + "</td></tr>").join("");
      const sp = nb.spool;
      $("nb-spool").textContent = "spool: " + sp.messages + " messages, " + bytes(sp.bytes) + " of " + bytes(sp.maxBytes) +
        " · dead letters: " + sp.deadLetters + " (" + bytes(sp.deadLetterBytes) + ")";
      const d = await api("/api/v1/admin/northbound/dead-letters?limit=" + state.shown);
      const dl = await d.json();
      if (gen !== state.gen) return;
      if (!d.ok) { $("nb-dead-count").textContent = dl.error; return; }
      $("nb-dead").innerHTML = dl.items.map(letter).join("");
      $("nb-dead-count").textContent = "(" + sp.deadLetters + ")";
      show($("nb-dead-more"), dl.nextAfter !== null);
    } catch { /* logged out or offline */ }
  }

  async function act(action, id) {
    const r = await api("/api/v1/admin/northbound/dead-letters/" + action, { method: "POST", body: JSON.stringify({ ids: [id] }) });
    const body = await r.json();
    await load();
    $("nb-action").textContent = r.ok
      ? (action === "retry" ? "retried " + body.retried : "deleted " + body.deleted) + " (dead letter " + id + ")"
      : "cannot " + action + " dead letter " + id + ": " + body.error;
  }

  $("nb-dead").addEventListener("click", (e) => {
    const b = e.target.closest("button");
    if (!b) return;
    const id = Number(b.closest("tr.dead").dataset.id);
    if (b.classList.contains("nb-retry")) act("retry", id);
    else if (b.classList.contains("nb-delete")) act("delete", id);
  });
  $("nb-dead-more").addEventListener("click", () => { state.shown = Math.min(1000, state.shown + 100); load(); });

  PANELS.push({
    start() { state.gen++; $("nb-action").textContent = ""; load(); if (state.timer) clearInterval(state.timer); state.timer = setInterval(load, 2000); },
    stop() { state.gen++; if (state.timer) clearInterval(state.timer); state.timer = null; },
  });
})();`,
};
