/**
 * The dashboard's sessions panel: the client sessions the protocol adapters hold (MQTT's, connected
 * or persisted), paged by the server (`GET /api/v1/admin/sessions`, cursor stack for "prev"),
 * filtered by client-id prefix and connected state; one session's subscriptions
 * (`GET /api/v1/admin/sessions/{clientId}`); a drop button (`DELETE …`: the session is discarded,
 * a connected client closed first); and "who gets a topic": the subscriptions whose filter
 * matches it (`GET /api/v1/admin/subscriptions?topic=`). Reading needs subscribe on
 * `$ferry/admin/sessions`, dropping publish on it.
 *
 * @module
 */

import type { Panel } from "./panel.ts";

/** The sessions and subscriptions panel. */
export const sessionsPanel: Panel = {
  nav: ["sessions-panel", "Sessions"],
  html: `<section id="sessions-panel" class="panel">
  <h2>Sessions and subscriptions</h2>
  <p><input id="sessions-prefix" placeholder="client id starts with" size="24">
    <select id="sessions-connected"><option value="">connected or not</option><option value="true">connected</option><option value="false">offline (persisted)</option></select>
    <button id="sessions-prev" type="button">&larr; prev</button> <button id="sessions-next" type="button">next &rarr;</button>
    <span id="sessions-count" class="k"></span></p>
  <p id="sessions-status" class="k"></p>
  <table><thead><tr><th>client id</th><th>protocol</th><th>state</th><th>owner</th><th>remote address</th><th>expiry</th><th>queued</th><th>in flight</th><th>subscriptions</th><th></th></tr></thead>
  <tbody id="sessions-rows"></tbody></table>
  <div id="session-detail" class="hidden"><h3 id="session-detail-title"></h3><p id="session-detail-info" class="k"></p>
    <table><thead><tr><th>filter</th><th>QoS</th></tr></thead><tbody id="session-subs"></tbody></table></div>
  <h3>Who gets a topic</h3>
  <form id="subs-form"><input id="subs-topic" placeholder="topic, e.g. devices/d1/commands/reboot" size="40" required>
    <button id="subs-search" type="submit">Find subscriptions</button> <span id="subs-count" class="k"></span></form>
  <table><thead><tr><th>client id</th><th>protocol</th><th>filter</th><th>QoS</th></tr></thead><tbody id="subs-rows"></tbody></table>
</section>`,
  script: `(() => {
  // gen: which start() a load belongs to (an answer for an earlier sign-in is dropped).
  const state = { cursors: [null], page: 0, next: null, timer: null, gen: 0 };

  function expiry(s) {
    if (s.expirySec === 0) return "with the connection";
    if (s.expirySec >= 4294967295) return "never";
    return s.expiresAt ? "at " + new Date(s.expiresAt).toISOString().replace("T", " ").slice(0, 19) : s.expirySec + " s after disconnect";
  }

  function row(s) {
    const c = s.connection;
    return '<tr class="session" data-id="' + esc(s.clientId) + '" data-protocol="' + esc(s.protocol) + '"><td>' + esc(s.clientId) + "</td><td>" + esc(s.protocol) +
      (c && c.protocolVersion ? " " + esc(c.protocolVersion) : "") + '</td><td class="' + (s.connected ? "ok" : "bad") + '">' + (s.connected ? "connected" : "offline") +
      "</td><td>" + esc(s.owner || "—") + "</td><td>" + esc(c && c.remoteAddress || "—") + "</td><td>" + esc(expiry(s)) + "</td><td>" + s.queued + "</td><td>" + s.inflight +
      "</td><td>" + s.subscriptionCount + '</td><td><button type="button" class="session-subs">Subscriptions</button> <button type="button" class="danger session-drop">Drop</button></td></tr>';
  }

  async function load() {
    const gen = state.gen;
    const q = new URLSearchParams({ limit: "50" });
    const prefix = $("sessions-prefix").value.trim(), connected = $("sessions-connected").value;
    if (prefix) q.set("prefix", prefix);
    if (connected) q.set("connected", connected);
    const cursor = state.cursors[state.page];
    if (cursor) q.set("cursor", cursor);
    try {
      const r = await api("/api/v1/admin/sessions?" + q);
      const body = await r.json();
      if (gen !== state.gen) return;
      if (!r.ok) { $("sessions-count").textContent = "cannot list sessions: " + body.error; $("sessions-rows").innerHTML = ""; return; }
      state.next = body.nextCursor;
      $("sessions-rows").innerHTML = body.items.map(row).join("");
      $("sessions-count").textContent = body.total + " sessions";
      $("sessions-prev").disabled = state.page === 0;
      $("sessions-next").disabled = !body.nextCursor;
    } catch { /* logged out or offline */ }
  }

  function first() { state.cursors = [null]; state.page = 0; load(); }

  async function detail(id, protocol) {
    const r = await api("/api/v1/admin/sessions/" + encodeURIComponent(id) + "?protocol=" + encodeURIComponent(protocol));
    const s = await r.json();
    show($("session-detail"), true);
    $("session-detail-title").textContent = id;
    if (!r.ok) { $("session-detail-info").textContent = s.error; $("session-subs").innerHTML = ""; return; }
    $("session-detail-info").textContent = (s.connected ? "connected" : "offline") + " · " + s.protocol + " · clean start " + s.cleanStart +
      " · " + s.queued + " queued · " + s.inflight + " in flight";
    $("session-subs").innerHTML = (s.subscriptions || []).map((x) => '<tr class="sub"><td>' + esc(x.filter) + "</td><td>" + x.qos + "</td></tr>").join("");
  }

  async function drop(id, protocol) {
    const r = await api("/api/v1/admin/sessions/" + encodeURIComponent(id) + "?protocol=" + encodeURIComponent(protocol), { method: "DELETE" });
    const body = await r.json();
    const done = r.ok ? "dropped " + id + (body.kicked ? " (disconnected)" : "") : "cannot drop " + id + ": " + body.error;
    await load();
    $("sessions-status").textContent = done;
  }

  async function whoGets() {
    const q = new URLSearchParams({ topic: $("subs-topic").value.trim(), limit: "100" });
    const r = await api("/api/v1/admin/subscriptions?" + q);
    const body = await r.json();
    if (!r.ok) { $("subs-count").textContent = body.error; $("subs-rows").innerHTML = ""; return; }
    $("subs-rows").innerHTML = body.items.map((x) => '<tr class="sub" data-id="' + esc(x.clientId) + '"><td>' + esc(x.clientId) + "</td><td>" + esc(x.protocol) +
      "</td><td>" + esc(x.filter) + "</td><td>" + x.qos + "</td></tr>").join("");
    $("subs-count").textContent = body.total + " subscriptions match";
  }

  $("sessions-prefix").addEventListener("input", first);
  $("sessions-connected").addEventListener("change", first);
  $("sessions-next").addEventListener("click", () => { if (!state.next) return; state.cursors[state.page + 1] = state.next; state.page++; load(); });
  $("sessions-prev").addEventListener("click", () => { if (state.page > 0) { state.page--; load(); } });
  $("sessions-rows").addEventListener("click", (e) => {
    const b = e.target.closest("button");
    if (!b) return;
    const tr = b.closest("tr.session");
    if (b.classList.contains("session-subs")) detail(tr.dataset.id, tr.dataset.protocol);
    else if (b.classList.contains("session-drop")) drop(tr.dataset.id, tr.dataset.protocol);
  });
  $("subs-form").addEventListener("submit", (e) => { e.preventDefault(); whoGets(); });

  PANELS.push({
    start() {
      state.gen++; $("sessions-status").textContent = ""; show($("session-detail"), false); first();
      if (state.timer) clearInterval(state.timer);
      state.timer = setInterval(load, 2000);
    },
    stop() { state.gen++; if (state.timer) clearInterval(state.timer); state.timer = null; },
  });
})();`,
};
