/**
 * The dashboard's rules panel: a table of the configured rules with their status, messages in,
 * outputs out, dropped, errors, timeouts and p99 latency, refreshed every second from the
 * management API (`GET /api/v1/admin/rules`), and an Enable/Disable button per rule
 * (`POST /api/v1/admin/rules/{name}/enable|disable`), usable when the account may change that
 * rule. The panel stays hidden for accounts that may not read `$ferry/admin/rules` (403).
 *
 * The page (`../page.ts`) places {@link RULES_PANEL_HTML} in its main view and
 * {@link RULES_PANEL_SCRIPT} in its script, after its helpers `$`, `esc` and `api`. Neither
 * contains a backtick or `${`: both are pasted into the page's template literal.
 *
 * @module
 */

/** The panel's markup: hidden until the first list loads. */
export const RULES_PANEL_HTML = `<section id="rules-panel" class="hidden">
    <h3>Rules <span id="rules-status" class="k"></span></h3>
    <table><thead><tr><th>rule</th><th>status</th><th>in</th><th>out</th><th>dropped</th><th>errors</th><th>timeouts</th><th>p99</th><th></th></tr></thead>
    <tbody id="rules"></tbody></table>
  </section>`;

/** The panel's script: polls the list while the app is shown; the buttons act on one rule. */
export const RULES_PANEL_SCRIPT = `
// ---- rules panel (panels/rules.ts) ----
const rulesView = { loading: false };
function ruleRow(r) {
  const on = r.status !== "disabled" && r.status !== "off" && r.status !== "closed";
  const p99 = r.latency.p99Ms === null ? (r.latency.count ? "> 5 s" : "—") : r.latency.p99Ms + " ms";
  const action = on ? "disable" : "enable";
  const button = r.status === "off" ? "" : '<button type="button" class="rule-toggle' + (on ? " danger" : "") + '" data-name="' + esc(r.name) +
    '" data-action="' + action + '"' + (r.mayChange ? "" : " disabled") + ">" + (on ? "Disable" : "Enable") + "</button>";
  return '<tr class="rule" data-name="' + esc(r.name) + '" data-status="' + esc(r.status) + '"><td>' + esc(r.name) +
    '</td><td class="' + (r.status === "running" ? "ok" : "bad") + '">' + esc(r.status) + "</td><td>" + r.in + "</td><td>" + r.out +
    "</td><td>" + r.dropped + "</td><td>" + r.errors + "</td><td>" + r.timeouts + "</td><td>" + p99 + "</td><td>" + button + "</td></tr>";
}
async function loadRules() {
  if (rulesView.loading || document.getElementById("app").classList.contains("hidden")) return;
  rulesView.loading = true;
  try {
    const r = await api("/api/v1/admin/rules");
    if (r.status === 403) { show($("rules-panel"), false); return; }
    if (!r.ok) return;
    const list = (await r.json()).items;
    show($("rules-panel"), true);
    $("rules").innerHTML = list.length ? list.map(ruleRow).join("") : '<tr><td colspan="9" class="k">no rules configured</td></tr>';
  } catch { /* logged out or offline: the next round tries again */ } finally {
    rulesView.loading = false;
  }
}
$("rules").addEventListener("click", async (e) => {
  const b = e.target.closest("button.rule-toggle");
  if (!b) return;
  b.disabled = true;
  const r = await api("/api/v1/admin/rules/" + encodeURIComponent(b.dataset.name) + "/" + b.dataset.action, { method: "POST", body: "{}" });
  const body = await r.json();
  $("rules-status").textContent = r.ok ? b.dataset.name + " " + b.dataset.action + "d" : "failed: " + body.error;
  rulesView.loading = false;
  loadRules();
});
setInterval(loadRules, 1000);
`;
