/**
 * Every tunable of the HTTP device API in one flat, JSON-friendly object, with defaults and
 * validation. The gateway maps its `http.deviceApi` config section onto {@link DeviceApiOptions}.
 *
 * @module
 */

/** Tunables of the HTTP device API (all optional; see {@link defaultDeviceApiOptions}). */
export interface DeviceApiOptions {
  /** Largest request body accepted (bytes); larger bodies get 413. @default 262144 */
  maxBodyBytes?: number;
  /** Most messages in one batch request (JSON array or NDJSON); more get 413. @default 1000 */
  maxBatch?: number;
  /**
   * Time allowed to receive a whole request body (ms). A body still unfinished after it gets 408
   * and the response is aborted. @default 10000
   */
  bodyTimeoutMs?: number;
  /** Longest long-poll wait a client may ask for with `?timeout=` (ms). @default 60000 */
  longPollMaxMs?: number;
  /** Long-poll wait when the request gives no `timeout` (ms). @default 30000 */
  longPollDefaultMs?: number;
  /** Interval of SSE comment heartbeats, which also refresh presence (ms). @default 15000 */
  sseHeartbeatMs?: number;
  /** An HTTP device goes offline after this long without a request (ms). @default 120000 */
  idleTimeoutMs?: number;
  /** Open long-polls plus SSE streams per device; more get 429. @default 4 */
  maxWaitersPerDevice?: number;
  /** `Retry-After` (s) sent when the pipeline is full. @default 1 */
  overloadRetryAfterSec?: number;
}

/** {@link DeviceApiOptions} with every field set. */
export type ResolvedDeviceApiOptions = Required<DeviceApiOptions>;

/** The defaults of every option. */
export const defaultDeviceApiOptions: Readonly<ResolvedDeviceApiOptions> = Object.freeze({
  maxBodyBytes: 262_144,
  maxBatch: 1000,
  bodyTimeoutMs: 10_000,
  longPollMaxMs: 60_000,
  longPollDefaultMs: 30_000,
  sseHeartbeatMs: 15_000,
  idleTimeoutMs: 120_000,
  maxWaitersPerDevice: 4,
  overloadRetryAfterSec: 1,
});

const MIN_ONE = new Set<keyof DeviceApiOptions>([
  "maxBodyBytes",
  "maxBatch",
  "bodyTimeoutMs",
  "longPollMaxMs",
  "sseHeartbeatMs",
  "idleTimeoutMs",
  "maxWaitersPerDevice",
  "overloadRetryAfterSec",
]);

/**
 * Fills in defaults and checks ranges.
 *
 * @throws {RangeError} when a value is not a finite number in range.
 * @example
 * ```ts
 * import { resolveDeviceApiOptions } from "./options.ts";
 * const o = resolveDeviceApiOptions({ maxBatch: 50 });
 * if (o.maxBatch !== 50 || o.maxBodyBytes !== 262144) throw new Error();
 * let threw = false;
 * try { resolveDeviceApiOptions({ maxBodyBytes: 0 }); } catch { threw = true; }
 * if (!threw) throw new Error("accepted a zero body limit");
 * ```
 */
export function resolveDeviceApiOptions(options: DeviceApiOptions = {}): ResolvedDeviceApiOptions {
  const o: ResolvedDeviceApiOptions = { ...defaultDeviceApiOptions };
  for (const [k, v] of Object.entries(options) as [keyof DeviceApiOptions, unknown][]) {
    if (v === undefined) continue;
    if (!(k in defaultDeviceApiOptions)) {
      throw new RangeError(`Cannot configure the HTTP device API: unknown option "${k}"`);
    }
    const min = MIN_ONE.has(k) ? 1 : 0;
    if (typeof v !== "number" || !Number.isFinite(v) || v < min) {
      throw new RangeError(
        `Cannot configure the HTTP device API: ${k} must be a number >= ${min}, got ${String(v)}`,
      );
    }
    o[k] = v;
  }
  if (o.longPollDefaultMs > o.longPollMaxMs) o.longPollDefaultMs = o.longPollMaxMs;
  return o;
}
