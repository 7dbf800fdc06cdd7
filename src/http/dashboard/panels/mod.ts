/**
 * The dashboard's panels beyond the device table (`../page.ts` places them): charts from the
 * short history, sessions and subscriptions, retained messages, the northbound. Each is a {@link Panel} in its own file.
 *
 * @module
 */

import { chartsPanel } from "./charts.ts";
import { northboundPanel } from "./northbound.ts";
import type { Panel } from "./panel.ts";
import { retainedPanel } from "./retained.ts";
import { sessionsPanel } from "./sessions.ts";

export type { Panel } from "./panel.ts";

/** The panels, in page order. */
export const PANELS: readonly Panel[] = [
  chartsPanel,
  sessionsPanel,
  retainedPanel,
  northboundPanel,
];

/** Their shared styles. */
const STYLE = `<style>
  nav.panels a { color:var(--accent); margin-right:12px; text-decoration:none; }
  section.panel { background:var(--panel); border-radius:8px; padding:12px; margin-top:16px; }
  section.panel h2 { font-size:16px; margin:0 0 8px; }
  .charts { display:grid; grid-template-columns:repeat(auto-fit,minmax(470px,1fr)); gap:12px; }
  figure.chart { margin:0; }
  figure.chart figcaption { color:var(--muted); font-size:12px; }
  figure.chart svg { max-width:100%; height:auto; }
  figure.chart .grid { stroke:#263241; } figure.chart .axis { stroke:#8b9bab; }
  figure.chart text { fill:var(--muted); font-size:10px; }
  figure.chart .legend span { margin-right:10px; font-size:12px; }
  td.payload { font-family:monospace; font-size:12px; word-break:break-all; max-width:420px; }
</style>`;

/**
 * The panels' links for the header.
 *
 * @example
 * ```ts
 * import { panelsNav } from "./mod.ts";
 * if (!panelsNav().includes('href="#northbound-panel"')) throw new Error();
 * ```
 */
export function panelsNav(): string {
  return `<nav class="panels"><a href="#app">Devices</a>${
    PANELS.map((p) => `<a href="#${p.nav[0]}">${p.nav[1]}</a>`).join("")
  }</nav>`;
}

/** The panels' sections (and their styles). */
export function panelsHtml(): string {
  return STYLE + PANELS.map((p) => p.html).join("\n");
}

/**
 * The panels' scripts, after the registry they push onto (`PANELS`).
 *
 * @example
 * ```ts
 * import { panelsScript } from "./mod.ts";
 * const s = panelsScript();
 * if (!s.startsWith("const PANELS = [];") || s.includes("</script")) throw new Error();
 * ```
 */
export function panelsScript(): string {
  return "const PANELS = [];\n" + PANELS.map((p) => p.script).join("\n");
}
