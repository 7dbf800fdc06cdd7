/**
 * The dashboard page: one self-contained HTML document (no build step, no external assets). It
 * logs in with a service account, then follows `/dashboard/events?devices=0` (Server-Sent
 * Events): health, upstream link, spool, message rates with small live charts. The device table is
 * paged, searched (id prefix), filtered (state, protocol) and sorted (id, last seen) by the server,
 * through the management API (`/api/v1/admin/devices`), one page at a time, refreshed every
 * second; a detail view has the command form and, for accounts allowed to manage devices, the
 * disconnect / rotate / remove buttons and an add form. Below it, the panels of `./panels/`:
 * charts from the management API's short history, retained messages, the northbound.
 *
 * The rules panel is its own file (`panels/rules.ts`).
 *
 * @module
 */

import { panelsHtml, panelsNav, panelsScript } from "./panels/mod.ts";
import { RULES_PANEL_HTML, RULES_PANEL_SCRIPT } from "./panels/rules.ts";

/** The HTML of the dashboard. */
export const DASHBOARD_HTML = `<!doctype html>
<html lang="en">
<head>
<meta charset="utf-8">
<meta name="viewport" content="width=device-width, initial-scale=1">
<title>Ferry gateway</title>
<style>
  :root { --bg:#0f1720; --panel:#17212c; --text:#e6edf3; --muted:#8b9bab; --ok:#3fb950; --bad:#f85149; --accent:#58a6ff; }
  * { box-sizing: border-box; }
  body { margin:0; font:14px/1.4 system-ui, sans-serif; background:var(--bg); color:var(--text); }
  header { display:flex; align-items:center; gap:16px; padding:12px 20px; background:var(--panel); }
  header h1 { font-size:18px; margin:0; }
  main { padding:16px 20px; }
  .cards { display:grid; grid-template-columns:repeat(auto-fit,minmax(180px,1fr)); gap:12px; }
  .card { background:var(--panel); border-radius:8px; padding:12px; }
  .card .v { font-size:22px; font-weight:600; }
  .card .k { color:var(--muted); font-size:12px; }
  canvas { width:100%; height:40px; }
  .ok { color:var(--ok); } .bad { color:var(--bad); }
  table { width:100%; border-collapse:collapse; margin-top:12px; }
  th, td { text-align:left; padding:6px 8px; border-bottom:1px solid #263241; }
  th.sort { cursor:pointer; text-decoration:underline dotted; } th.sorted { color:var(--accent); }
  select { font:inherit; padding:6px 8px; border-radius:6px; border:1px solid #30404f; background:#0d141b; color:var(--text); }
  button.danger { background:var(--bad); }
  tr.dev { cursor:pointer; } tr.dev:hover { background:#1c2835; }
  input, button { font:inherit; padding:6px 8px; border-radius:6px; border:1px solid #30404f; background:#0d141b; color:var(--text); }
  button { background:var(--accent); color:#05111c; border:0; cursor:pointer; }
  #login { max-width:320px; margin:80px auto; display:flex; flex-direction:column; gap:10px; }
  #detail { background:var(--panel); border-radius:8px; padding:12px; margin-top:12px; }
  pre { white-space:pre-wrap; word-break:break-all; margin:0; font-size:12px; color:var(--muted); }
  .hidden { display:none !important; }
</style>
</head>
<body>
<header><h1>Ferry</h1><span id="health" class="k">…</span><span style="flex:1"></span><button id="logout" class="hidden">Log out</button></header>
<form id="login" class="hidden">
  <h2>Sign in</h2>
  <input id="login-name" name="name" placeholder="service account" autocomplete="username" required>
  <input id="login-token" name="token" type="password" placeholder="token" autocomplete="current-password" required>
  <button id="login-submit" type="submit">Sign in</button>
  <span id="login-error" class="bad"></span>
</form>
<main id="app" class="hidden">
  ${panelsNav()}
  <section class="cards">
    <div class="card"><div class="k">devices online</div><div class="v" id="online">0</div></div>
    <div class="card"><div class="k">connections</div><div class="v" id="connections">0</div></div>
    <div class="card"><div class="k">messages in /s</div><div class="v" id="rate-in">0</div><canvas id="chart-in" width="200" height="40"></canvas><div class="k" id="span-in"></div></div>
    <div class="card"><div class="k">messages out /s</div><div class="v" id="rate-out">0</div><canvas id="chart-out" width="200" height="40"></canvas><div class="k" id="span-out"></div></div>
    <div class="card"><div class="k">pipeline queue</div><div class="v" id="queue">0</div></div>
    <div class="card"><div class="k">upstream link</div><div class="v" id="upstream">—</div></div>
    <div class="card"><div class="k">spool depth</div><div class="v" id="spool">—</div></div>
  </section>
  <p><input id="search" placeholder="device id starts with" size="30">
    <select id="filter-state"><option value="">any state</option><option value="online">online</option><option value="offline">offline</option></select>
    <select id="filter-protocol"><option value="">any protocol</option><option>mqtt</option><option>binary</option><option>coap</option><option>http</option></select>
    <button id="page-prev" type="button">&larr; prev</button> <button id="page-next" type="button">next &rarr;</button>
    <span id="count" class="k"></span> <span id="page-info" class="k"></span></p>
  <form id="add-form" class="hidden"><input id="add-id" placeholder="new device id" pattern="[A-Za-z0-9._:-]{1,64}" required> <button id="add-submit" type="submit">Add device</button> <span id="add-status" class="k"></span></form>
  <table><thead><tr><th class="sort" id="sort-id" data-sort="id">device</th><th>protocol</th><th>state</th><th class="sort" id="sort-lastSeen" data-sort="lastSeen">last seen</th><th>in</th><th>out</th><th>errors</th></tr></thead>
  <tbody id="devices"></tbody></table>
  <section id="detail" class="hidden">
    <h3 id="detail-title"></h3>
    <p id="detail-info" class="k"></p>
    <p id="manage" class="hidden"><button id="device-disconnect" type="button">Disconnect</button> <button id="device-rotate" type="button">New token</button> <button id="device-remove" type="button" class="danger">Remove</button> <span id="manage-status" class="k"></span></p>
    <form id="command-form">
      <input id="command-name" placeholder="command name" required pattern="[A-Za-z0-9._-]{1,64}">
      <input id="command-data" placeholder="data" size="40">
      <button id="command-send" type="submit">Send command</button>
      <span id="command-status" class="k"></span>
    </form>
    <h4>Recent messages</h4><div id="detail-messages"></div>
  </section>
  ${panelsHtml()}
  ${RULES_PANEL_HTML}
</main>
<script>
"use strict";
const $ = (id) => document.getElementById(id);
const history = { in: [], out: [], since: 0 };
const HISTORY = 600;
let last = null, selected = null, es = null, me = null, refresher = null;
// The table's view: server-side paging (cursor stack for "prev"), filters and sort.
const view = { sort: "id", order: "asc", cursors: [null], page: 0, limit: 50, next: null, loading: false, again: false };

function show(el, on) { el.classList.toggle("hidden", !on); }
function ago(ts) { if (!ts) return "never"; const s = Math.max(0, Math.round((Date.now() - ts) / 1000)); return s < 60 ? s + " s ago" : Math.round(s / 60) + " min ago"; }
function esc(s) { return String(s).replace(/[&<>"']/g, (c) => ({ "&": "&amp;", "<": "&lt;", ">": "&gt;", '"': "&quot;", "'": "&#39;" })[c]); }

function spark(canvas, values) {
  const g = canvas.getContext("2d"), w = canvas.width, h = canvas.height;
  g.clearRect(0, 0, w, h);
  const max = Math.max(1, ...values);
  g.strokeStyle = "#58a6ff"; g.beginPath();
  values.forEach((v, i) => { const x = (i / Math.max(1, values.length - 1)) * w, y = h - (v / max) * (h - 2) - 1; i ? g.lineTo(x, y) : g.moveTo(x, y); });
  g.stroke();
}

function renderSummary(s) {
  $("health").textContent = s.status + " · up " + Math.round(s.uptimeSeconds) + " s";
  $("online").textContent = s.devicesOnline;
  $("connections").textContent = s.connections;
  $("queue").textContent = s.queueDepth + " / " + s.queueCapacity;
  $("upstream").textContent = s.upstream ? s.upstream.state : "not configured";
  $("spool").textContent = s.spool ? s.spool.messages : "—";
  if (last) {
    const dt = (s.time - last.time) / 1000 || 1;
    const rin = Math.max(0, (s.messagesIn - last.messagesIn) / dt), rout = Math.max(0, (s.messagesOut - last.messagesOut) / dt);
    history.in.push(rin); history.out.push(rout);
    if (history.in.length > HISTORY) { history.in.shift(); history.out.shift(); }
    $("rate-in").textContent = rin.toFixed(1); $("rate-out").textContent = rout.toFixed(1);
    drawCharts();
  }
  last = s;
}

// Time axis: the span the chart covers, and its peak in messages per second.
function drawCharts() {
  spark($("chart-in"), history.in); spark($("chart-out"), history.out);
  const span = Math.round(history.in.length * (history.intervalMs || 1000) / 1000);
  const label = (v) => (span >= 120 ? Math.round(span / 60) + " min" : span + " s") + " ago → now · peak " + Math.max(0, ...v).toFixed(1) + " msg/s";
  $("span-in").textContent = label(history.in); $("span-out").textContent = label(history.out);
}

// The server's short history: the charts survive a reload.
async function loadHistory() {
  const r = await fetch("/dashboard/api/history");
  if (!r.ok) return;
  const h = await r.json();
  history.in = []; history.out = []; history.intervalMs = h.intervalMs;
  for (let i = 1; i < h.samples.length; i++) {
    const a = h.samples[i - 1], b = h.samples[i], dt = (b.time - a.time) / 1000 || 1;
    history.in.push(Math.max(0, (b.messagesIn - a.messagesIn) / dt));
    history.out.push(Math.max(0, (b.messagesOut - a.messagesOut) / dt));
  }
  drawCharts();
}

function row(d) {
  return '<tr class="dev" data-id="' + esc(d.id) + '"><td>' + esc(d.id) + "</td><td>" + esc(d.protocol || "—") +
    '</td><td class="' + (d.state === "online" ? "ok" : "bad") + '">' + d.state + "</td><td>" + ago(d.lastSeen) +
    "</td><td>" + d.messagesIn + "</td><td>" + d.messagesOut + "</td><td>" + d.errors + "</td></tr>";
}

function query() {
  const q = new URLSearchParams({ limit: String(view.limit), sort: view.sort, order: view.order });
  const prefix = $("search").value.trim(), state = $("filter-state").value, protocol = $("filter-protocol").value;
  if (prefix) q.set("prefix", prefix);
  if (state) q.set("state", state);
  if (protocol) q.set("protocol", protocol);
  const cursor = view.cursors[view.page];
  if (cursor) q.set("cursor", cursor);
  return q;
}

// Loads the current page; one request at a time (a change meanwhile loads again after it).
async function loadDevices() {
  if (view.loading) { view.again = true; return; }
  view.loading = true;
  try {
    const r = await api("/api/v1/admin/devices?" + query());
    if (!r.ok) { $("count").textContent = "cannot list devices: " + (await r.json()).error; return; }
    const p = await r.json();
    view.next = p.nextCursor;
    $("devices").innerHTML = p.items.map(row).join("");
    $("count").textContent = p.total + " devices";
    const first = view.page * view.limit;
    $("page-info").textContent = p.items.length ? "showing " + (first + 1) + "–" + (first + p.items.length) : "";
    $("page-prev").disabled = view.page === 0;
    $("page-next").disabled = !p.nextCursor;
    for (const k of ["id", "lastSeen"]) {
      $("sort-" + k).classList.toggle("sorted", view.sort === k);
      $("sort-" + k).textContent = (k === "id" ? "device" : "last seen") + (view.sort === k ? (view.order === "asc" ? " ▲" : " ▼") : "");
    }
  } catch { /* logged out or offline: the next refresh tries again */ } finally {
    view.loading = false;
    if (view.again) { view.again = false; loadDevices(); }
  }
}

function firstPage() { view.cursors = [null]; view.page = 0; loadDevices(); }

// A 401 signs the page out, unless it answers a request of an earlier sign-in (sent before a
// log-out, answered after the next login).
let signIns = 0;
async function api(path, init) {
  const n = signIns;
  const r = await fetch(path, { credentials: "same-origin", ...init, headers: { "content-type": "application/json", ...(init && init.headers) } });
  if (r.status === 401) { if (n === signIns) start(false); throw new Error("unauthorized"); }
  return r;
}

async function openDetail(id) {
  selected = id;
  show($("detail"), true);
  $("detail-title").textContent = id;
  $("manage-status").textContent = "";
  show($("manage"), !!(me && me.may.manage));
  const a = await api("/api/v1/admin/devices/" + encodeURIComponent(id));
  if (a.ok) {
    const x = await a.json();
    $("detail-info").textContent = x.state + (x.protocol ? " on " + x.protocol : "") + " · last seen " + ago(x.lastSeen) +
      " · " + (x.registered ? "registered" : "not registered") + " · " + x.pendingCommands + " pending commands" +
      (x.session ? " · session " + x.session.id : "");
  } else $("detail-info").textContent = "";
  const r = await api("/dashboard/api/devices/" + encodeURIComponent(id));
  if (!r.ok) { $("detail-messages").innerHTML = ""; return; }
  const d = await r.json();
  $("detail-messages").innerHTML = d.recent.map((m) => "<pre>" + new Date(m.ts).toISOString() + " " + esc(m.topic) + " (" + m.size + " B) " + esc(m.preview) + "</pre>").join("") || '<p class="k">no recent messages</p>';
}

function connect() {
  if (es) es.close();
  es = new EventSource("/dashboard/events?devices=0");
  es.addEventListener("summary", (e) => renderSummary(JSON.parse(e.data)));
  es.onerror = () => { fetch("/dashboard/api/me").then((r) => { if (r.status === 401) start(false); }); };
}

async function start(loggedIn) {
  signIns++;
  show($("login"), !loggedIn); show($("app"), loggedIn); show($("logout"), loggedIn);
  if (refresher) { clearInterval(refresher); refresher = null; }
  if (!loggedIn) { if (es) { es.close(); es = null; } for (const p of PANELS) p.stop(); return; }
  const r = await fetch("/dashboard/api/me");
  me = r.ok ? await r.json() : null;
  show($("add-form"), !!(me && me.may.manage));
  await loadHistory();
  connect();
  firstPage();
  refresher = setInterval(loadDevices, 1000);
  for (const p of PANELS) p.start(me);
}

async function manage(action) {
  if (!selected) return;
  const id = selected, path = "/api/v1/admin/devices/" + encodeURIComponent(id);
  const r = action === "remove" ? await api(path, { method: "DELETE" }) : await api(path + "/" + action, { method: "POST", body: "{}" });
  const body = r.status === 204 ? {} : await r.json();
  $("manage-status").textContent = r.ok ? (action === "rotate" ? "new token: " + body.token : action === "remove" ? "removed" : "disconnected") : "failed: " + body.error;
  loadDevices();
}

$("login").addEventListener("submit", async (e) => {
  e.preventDefault();
  const r = await fetch("/dashboard/login", { method: "POST", headers: { "content-type": "application/json" }, body: JSON.stringify({ name: $("login-name").value, token: $("login-token").value }) });
  if (r.ok) { $("login-error").textContent = ""; start(true); }
  else $("login-error").textContent = r.status === 429 ? "too many attempts, wait a minute" : "sign-in failed";
});
$("logout").addEventListener("click", async () => { await fetch("/dashboard/logout", { method: "POST", headers: { "content-type": "application/json" }, body: "{}" }); start(false); });
$("search").addEventListener("input", firstPage);
$("filter-state").addEventListener("change", firstPage);
$("filter-protocol").addEventListener("change", firstPage);
$("page-next").addEventListener("click", () => { if (!view.next) return; view.cursors[view.page + 1] = view.next; view.page++; loadDevices(); });
$("page-prev").addEventListener("click", () => { if (view.page > 0) { view.page--; loadDevices(); } });
for (const th of document.querySelectorAll("th.sort")) {
  th.addEventListener("click", () => {
    const k = th.dataset.sort;
    if (view.sort === k) view.order = view.order === "asc" ? "desc" : "asc";
    else { view.sort = k; view.order = k === "id" ? "asc" : "desc"; }
    firstPage();
  });
}
$("device-disconnect").addEventListener("click", () => manage("disconnect"));
$("device-rotate").addEventListener("click", () => manage("rotate"));
$("device-remove").addEventListener("click", () => manage("remove"));
$("add-form").addEventListener("submit", async (e) => {
  e.preventDefault();
  const r = await api("/api/v1/admin/devices", { method: "POST", body: JSON.stringify({ id: $("add-id").value }) });
  const body = await r.json();
  $("add-status").textContent = r.ok ? "added " + body.id + ", token: " + body.token : "failed: " + body.error;
  loadDevices();
});
$("devices").addEventListener("click", (e) => { const tr = e.target.closest("tr.dev"); if (tr) openDetail(tr.dataset.id); });
$("command-form").addEventListener("submit", async (e) => {
  e.preventDefault();
  if (!selected) return;
  const r = await api("/dashboard/api/devices/" + encodeURIComponent(selected) + "/commands/" + encodeURIComponent($("command-name").value), { method: "POST", body: JSON.stringify({ data: $("command-data").value }) });
  $("command-status").textContent = r.ok ? "sent" : "failed: " + (await r.json()).error;
});

// The panels (./panels/): charts, retained messages, northbound.
${panelsScript()}

${RULES_PANEL_SCRIPT}
fetch("/dashboard/api/me").then((r) => start(r.ok));
</script>
</body>
</html>
`;
