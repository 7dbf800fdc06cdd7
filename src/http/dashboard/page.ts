/**
 * The dashboard page: one self-contained HTML document (no build step, no external assets). It
 * logs in with a service account, then follows `/dashboard/events` (Server-Sent Events): health,
 * upstream link, spool, message rates with small live charts, and a searchable device table with
 * a detail view and a command form.
 *
 * @module
 */

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
  <section class="cards">
    <div class="card"><div class="k">devices online</div><div class="v" id="online">0</div></div>
    <div class="card"><div class="k">connections</div><div class="v" id="connections">0</div></div>
    <div class="card"><div class="k">messages in /s</div><div class="v" id="rate-in">0</div><canvas id="chart-in" width="200" height="40"></canvas></div>
    <div class="card"><div class="k">messages out /s</div><div class="v" id="rate-out">0</div><canvas id="chart-out" width="200" height="40"></canvas></div>
    <div class="card"><div class="k">pipeline queue</div><div class="v" id="queue">0</div></div>
    <div class="card"><div class="k">upstream link</div><div class="v" id="upstream">—</div></div>
    <div class="card"><div class="k">spool depth</div><div class="v" id="spool">—</div></div>
  </section>
  <p><input id="search" placeholder="search devices" size="30"> <span id="count" class="k"></span></p>
  <table><thead><tr><th>device</th><th>protocol</th><th>state</th><th>last seen</th><th>in</th><th>out</th><th>errors</th></tr></thead>
  <tbody id="devices"></tbody></table>
  <section id="detail" class="hidden">
    <h3 id="detail-title"></h3>
    <form id="command-form">
      <input id="command-name" placeholder="command name" required pattern="[A-Za-z0-9._-]{1,64}">
      <input id="command-data" placeholder="data" size="40">
      <button id="command-send" type="submit">Send command</button>
      <span id="command-status" class="k"></span>
    </form>
    <h4>Recent messages</h4><div id="detail-messages"></div>
  </section>
</main>
<script>
"use strict";
const $ = (id) => document.getElementById(id);
const devices = new Map();
const history = { in: [], out: [] };
let last = null, selected = null, es = null;

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
    if (history.in.length > 60) { history.in.shift(); history.out.shift(); }
    $("rate-in").textContent = rin.toFixed(1); $("rate-out").textContent = rout.toFixed(1);
    spark($("chart-in"), history.in); spark($("chart-out"), history.out);
  }
  last = s;
}

function renderDevices() {
  const q = $("search").value.trim().toLowerCase();
  const rows = [...devices.values()].filter((d) => !q || d.id.toLowerCase().includes(q) || (d.protocol || "").includes(q))
    .sort((a, b) => (a.state === b.state ? a.id.localeCompare(b.id) : a.state === "online" ? -1 : 1));
  $("count").textContent = rows.length + " devices";
  $("devices").innerHTML = rows.slice(0, 300).map((d) =>
    '<tr class="dev" data-id="' + esc(d.id) + '"><td>' + esc(d.id) + "</td><td>" + esc(d.protocol || "—") +
    '</td><td class="' + (d.state === "online" ? "ok" : "bad") + '">' + d.state + "</td><td>" + ago(d.lastSeen) +
    "</td><td>" + d.messagesIn + "</td><td>" + d.messagesOut + "</td><td>" + d.errors + "</td></tr>").join("");
}

async function api(path, init) {
  const r = await fetch(path, { credentials: "same-origin", ...init, headers: { "content-type": "application/json", ...(init && init.headers) } });
  if (r.status === 401) { start(false); throw new Error("unauthorized"); }
  return r;
}

async function openDetail(id) {
  selected = id;
  show($("detail"), true);
  $("detail-title").textContent = id;
  const r = await api("/dashboard/api/devices/" + encodeURIComponent(id));
  const d = await r.json();
  $("detail-messages").innerHTML = d.recent.map((m) => "<pre>" + new Date(m.ts).toISOString() + " " + esc(m.topic) + " (" + m.size + " B) " + esc(m.preview) + "</pre>").join("") || '<p class="k">no recent messages</p>';
}

function connect() {
  if (es) es.close();
  es = new EventSource("/dashboard/events");
  es.addEventListener("summary", (e) => renderSummary(JSON.parse(e.data)));
  es.addEventListener("devices", (e) => { for (const d of JSON.parse(e.data)) devices.set(d.id, d); renderDevices(); });
  es.onerror = () => { fetch("/dashboard/api/me").then((r) => { if (r.status === 401) start(false); }); };
}

function start(loggedIn) {
  show($("login"), !loggedIn); show($("app"), loggedIn); show($("logout"), loggedIn);
  if (loggedIn) connect(); else if (es) { es.close(); es = null; }
}

$("login").addEventListener("submit", async (e) => {
  e.preventDefault();
  const r = await fetch("/dashboard/login", { method: "POST", headers: { "content-type": "application/json" }, body: JSON.stringify({ name: $("login-name").value, token: $("login-token").value }) });
  if (r.ok) { $("login-error").textContent = ""; start(true); }
  else $("login-error").textContent = r.status === 429 ? "too many attempts, wait a minute" : "sign-in failed";
});
$("logout").addEventListener("click", async () => { await fetch("/dashboard/logout", { method: "POST", headers: { "content-type": "application/json" }, body: "{}" }); start(false); });
$("search").addEventListener("input", renderDevices);
$("devices").addEventListener("click", (e) => { const tr = e.target.closest("tr.dev"); if (tr) openDetail(tr.dataset.id); });
$("command-form").addEventListener("submit", async (e) => {
  e.preventDefault();
  if (!selected) return;
  const r = await api("/dashboard/api/devices/" + encodeURIComponent(selected) + "/commands/" + encodeURIComponent($("command-name").value), { method: "POST", body: JSON.stringify({ data: $("command-data").value }) });
  $("command-status").textContent = r.ok ? "sent" : "failed: " + (await r.json()).error;
});

fetch("/dashboard/api/me").then((r) => start(r.ok));
</script>
</body>
</html>
`;
