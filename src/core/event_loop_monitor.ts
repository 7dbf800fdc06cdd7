/**
 * Event-loop lag: a timer that should fire every `intervalMs` records how late it fires. A
 * gateway whose loop lags is saturated (CPU, GC, or a blocking call).
 *
 * @module
 */

import type { MetricsRegistry } from "./metrics.ts";

/**
 * Starts measuring; exports `ferry_event_loop_lag_seconds` (last) and `_max` (since start).
 * Returns a function that stops it.
 *
 * @example
 * ```ts
 * import { MetricsRegistry } from "./metrics.ts";
 * import { monitorEventLoop } from "./event_loop_monitor.ts";
 * const m = new MetricsRegistry();
 * const stop = monitorEventLoop(m, 10);
 * await new Promise((r) => setTimeout(r, 30));
 * stop();
 * if (!m.render().includes("ferry_event_loop_lag_seconds")) throw new Error();
 * ```
 */
export function monitorEventLoop(metrics: MetricsRegistry, intervalMs = 500): () => void {
  let last = 0;
  let max = 0;
  metrics.gauge(
    "ferry_event_loop_lag_seconds",
    "Event-loop lag at the last sample",
    () => last / 1000,
  );
  metrics.gauge(
    "ferry_event_loop_lag_max_seconds",
    "Largest event-loop lag seen",
    () => max / 1000,
  );
  let expected = performance.now() + intervalMs;
  const timer = setInterval(() => {
    const now = performance.now();
    last = Math.max(0, now - expected);
    max = Math.max(max, last);
    expected = now + intervalMs;
  }, intervalMs);
  Deno.unrefTimer(timer as unknown as number);
  return () => clearInterval(timer);
}
