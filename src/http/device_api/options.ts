/**
 * Every tunable of the HTTP device API: the `http.deviceApi` config-schema fragment,
 * {@link DeviceApiOptions} derived from it (one flat, JSON-friendly object), the defaults (written
 * once, in the fragment) and validation.
 *
 * @module
 */

import { defaults, type Infer, int, obj } from "../../config/schema.ts";

/** The device API's part of the `http.deviceApi` config section (the gateway adds `enabled`). */
export const deviceApiOptionsSchema = obj("HTTP device API under /api/v1 (docs/http-api.md)", {
  maxBodyBytes: int("Largest request body, bytes (413 past it)", {
    min: 1,
    max: 64 * 1024 * 1024,
    default: 262_144,
  }),
  maxBatch: int("Most messages in one batch request", { min: 1, max: 100_000, default: 1000 }),
  bodyTimeoutMs: int("A body not finished in this time gets 408", {
    min: 100,
    max: 600_000,
    default: 10_000,
  }),
  longPollMaxMs: int("Longest long-poll a client may ask for", {
    min: 100,
    max: 3_600_000,
    default: 60_000,
  }),
  longPollDefaultMs: int("Long-poll wait without ?timeout=", {
    min: 100,
    max: 3_600_000,
    default: 30_000,
  }),
  sseHeartbeatMs: int("SSE heartbeat interval", { min: 100, max: 3_600_000, default: 15_000 }),
  idleTimeoutMs: int("An HTTP device goes offline after this long without a request", {
    min: 1000,
    max: 7 * 86_400_000,
    default: 120_000,
  }),
  maxWaitersPerDevice: int("Open long-polls plus SSE streams per device", {
    min: 1,
    max: 1000,
    default: 4,
  }),
  overloadRetryAfterSec: int("Retry-After when the pipeline is full", {
    min: 1,
    max: 3600,
    default: 1,
  }),
});

/** {@link DeviceApiOptions} with every field set. */
export type ResolvedDeviceApiOptions = Infer<typeof deviceApiOptionsSchema>;

/**
 * Tunables of the HTTP device API: the keys of {@link deviceApiOptionsSchema} (its docs say what
 * each means), all optional; see {@link defaultDeviceApiOptions}.
 */
export type DeviceApiOptions = Partial<ResolvedDeviceApiOptions>;

/** The defaults of every option. */
export const defaultDeviceApiOptions: Readonly<ResolvedDeviceApiOptions> = Object.freeze(
  defaults(deviceApiOptionsSchema),
);

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
