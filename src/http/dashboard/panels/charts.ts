/**
 * The dashboard's charts panel: messages in and out per second by protocol, open connections by
 * protocol and the northbound spool's depth, each an SVG line chart with a time axis (clock time
 * of the samples) and its unit, drawn by the page's own script from the management API's short
 * history (`GET /api/v1/admin/history`: the charts survive a reload). The first load takes the
 * whole history; later ones only the samples after the last (`?since=`).
 *
 * Each line is a `polyline` with `data-series` (protocol), `data-points`, `data-max` and `data-last`,
 * which the browser tests read.
 *
 * @module
 */

import type { Panel } from "./panel.ts";

/** The charts: id suffix, title, unit, and which field of a sample they draw. */
const CHARTS = [
  ["messagesIn", "messages in", "msg/s"],
  ["messagesOut", "messages out", "msg/s"],
  ["connections", "connections", "connections"],
  ["spoolDepth", "spool depth", "messages"],
];

/** The charts panel. */
export const chartsPanel: Panel = {
  nav: ["charts-panel", "Charts"],
  html: `<section id="charts-panel" class="panel">
  <h2>Charts</h2>
  <p class="k" id="charts-status"></p>
  <div class="charts">${
    CHARTS.map(([key, title, unit]) =>
      `<figure class="chart" id="chart-${key}" data-title="${title}" data-unit="${unit}"></figure>`
    ).join("")
  }</div>
</section>`,
  script: `(() => {
  const CHARTS = ${JSON.stringify(CHARTS)};
  const COLORS = ["#58a6ff", "#3fb950", "#d29922", "#f778ba", "#a371f7", "#79c0ff", "#ff7b72"];
  const W = 460, H = 190, L = 56, R = 12, T = 12, B = 34;
  // gen: which start() a load belongs to (an answer for an earlier sign-in is dropped).
  const state = { intervalMs: 5000, capacity: 180, samples: [], timer: null, loading: false, gen: 0 };

  // 1, 2 or 5 times a power of ten, at least v: the top of the y axis.
  function niceMax(v) {
    if (!(v > 0)) return 1;
    const p = Math.pow(10, Math.floor(Math.log10(v)));
    for (const m of [1, 2, 5, 10]) if (m * p >= v) return m * p;
    return 10 * p;
  }
  function clock(t) { return new Date(t).toTimeString().slice(0, 8); }
  function num(v) { return v >= 100 ? String(Math.round(v)) : String(Math.round(v * 10) / 10); }

  // Per-protocol series of one field (the spool: one series, where there is a northbound).
  function seriesOf(key) {
    const out = new Map();
    for (const s of state.samples) {
      if (key === "spoolDepth") {
        if (s.spoolDepth === null) continue;
        if (!out.has("spool")) out.set("spool", []);
        out.get("spool").push([s.time, s.spoolDepth]);
        continue;
      }
      for (const [p, v] of Object.entries(s[key] || {})) {
        if (!out.has(p)) out.set(p, []);
        out.get(p).push([s.time, v]);
      }
    }
    return [...out.entries()].sort((a, b) => a[0] < b[0] ? -1 : 1);
  }

  function draw(fig, key, title, unit) {
    const series = seriesOf(key);
    const t1 = state.samples.length ? state.samples[state.samples.length - 1].time : Date.now();
    const t0 = t1 - state.capacity * state.intervalMs;
    let max = 0;
    for (const [, pts] of series) for (const [, v] of pts) max = Math.max(max, v);
    const top = niceMax(max);
    const x = (t) => L + (t - t0) / (t1 - t0 || 1) * (W - L - R);
    const y = (v) => T + (1 - v / top) * (H - T - B);
    const parts = [];
    // y axis: 0, half, top, with the unit.
    for (const v of [0, top / 2, top]) {
      parts.push('<line class="grid" x1="' + L + '" x2="' + (W - R) + '" y1="' + y(v) + '" y2="' + y(v) + '"/>');
      parts.push('<text class="tick y" x="' + (L - 6) + '" y="' + (y(v) + 4) + '" text-anchor="end">' + num(v) + "</text>");
    }
    parts.push('<text class="unit" transform="translate(12 ' + ((H - B + T) / 2) + ') rotate(-90)" text-anchor="middle">' + esc(unit) + "</text>");
    // x axis: five clock times across the window.
    parts.push('<line class="axis" x1="' + L + '" x2="' + (W - R) + '" y1="' + (H - B) + '" y2="' + (H - B) + '"/>');
    for (let i = 0; i <= 4; i++) {
      const t = t0 + (t1 - t0) * i / 4;
      parts.push('<text class="tick x" x="' + x(t) + '" y="' + (H - B + 16) + '" text-anchor="' + (i === 0 ? "start" : i === 4 ? "end" : "middle") + '">' + clock(t) + "</text>");
    }
    parts.push('<text class="tick" x="' + ((W + L - R) / 2) + '" y="' + (H - 2) + '" text-anchor="middle">time (' + Math.round(state.capacity * state.intervalMs / 60000) + " min)</text>");
    const legend = [];
    series.forEach(([name, pts], i) => {
      const color = COLORS[i % COLORS.length];
      const peak = Math.max(0, ...pts.map((p) => p[1]));
      const d = pts.filter((p) => p[0] >= t0).map((p) => x(p[0]).toFixed(1) + "," + y(p[1]).toFixed(1)).join(" ");
      parts.push('<polyline fill="none" stroke="' + color + '" stroke-width="1.5" data-series="' + esc(name) + '" data-points="' + pts.length + '" data-max="' + peak + '" data-last="' + pts[pts.length - 1][1] + '" points="' + d + '"/>');
      legend.push('<span style="color:' + color + '">' + esc(name) + " " + num(pts[pts.length - 1][1]) + " " + esc(unit) + "</span>");
    });
    if (!series.length) parts.push('<text class="tick" x="' + ((W + L) / 2) + '" y="' + (H / 2) + '" text-anchor="middle">' + (!state.samples.length ? "no samples yet" : key === "spoolDepth" ? "no northbound" : "none") + "</text>");
    fig.innerHTML = "<figcaption>" + esc(title) + " (" + esc(unit) + ")</figcaption>" +
      '<svg viewBox="0 0 ' + W + " " + H + '" width="' + W + '" height="' + H + '" role="img" aria-label="' + esc(title) + '">' + parts.join("") + "</svg>" +
      '<div class="legend">' + legend.join(" ") + "</div>";
  }

  function drawAll() {
    for (const [key, title, unit] of CHARTS) draw(document.getElementById("chart-" + key), key, title, unit);
  }

  async function load() {
    if (state.loading) return;
    const gen = state.gen;
    state.loading = true;
    try {
      const last = state.samples.length ? state.samples[state.samples.length - 1].time : null;
      const r = await api("/api/v1/admin/history" + (last === null ? "" : "?since=" + last));
      const body = await r.json();
      if (gen !== state.gen) return;
      if (!r.ok) { $("charts-status").textContent = "charts: " + body.error; show(document.querySelector("#charts-panel .charts"), false); return; }
      show(document.querySelector("#charts-panel .charts"), true);
      state.intervalMs = body.intervalMs; state.capacity = body.capacity;
      state.samples = state.samples.concat(body.samples).slice(-body.capacity);
      $("charts-status").textContent = "one sample every " + num(body.intervalMs / 1000) + " s, the last " + Math.round(body.capacity * body.intervalMs / 60000) + " min";
      drawAll();
    } catch { /* logged out or offline: the next tick tries again */ } finally { if (gen === state.gen) state.loading = false; }
  }

  PANELS.push({
    start() {
      state.gen++;
      state.loading = false;
      state.samples = [];
      load().then(() => {
        if (state.timer) clearInterval(state.timer);
        state.timer = setInterval(load, Math.max(1000, Math.min(state.intervalMs, 5000)));
      });
    },
    stop() { state.gen++; if (state.timer) clearInterval(state.timer); state.timer = null; },
  });
})();`,
};
