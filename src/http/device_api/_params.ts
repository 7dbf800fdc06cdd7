/**
 * Query and header parameters shared by the downlink handlers, parsed strictly.
 *
 * @module
 */

/**
 * A non-negative integer parameter; `undefined` when absent, `NaN` when malformed.
 *
 * @example
 * ```ts
 * import { intParam } from "./_params.ts";
 * if (intParam("12") !== 12 || intParam(null) !== undefined || !Number.isNaN(intParam("1e3"))) {
 *   throw new Error();
 * }
 * ```
 */
export function intParam(value: string | null): number | undefined {
  if (value === null || value === "") return undefined;
  return /^\d{1,15}$/.test(value) ? Number(value) : NaN;
}

/**
 * A long-poll `timeout` in seconds (decimals allowed) → milliseconds; `undefined` when absent,
 * `NaN` when malformed.
 *
 * @example
 * ```ts
 * import { secondsParam } from "./_params.ts";
 * if (secondsParam("1.5") !== 1500 || !Number.isNaN(secondsParam("-1"))) throw new Error();
 * ```
 */
export function secondsParam(value: string | null): number | undefined {
  if (value === null || value === "") return undefined;
  return /^\d{1,7}(\.\d{1,3})?$/.test(value) ? Math.round(Number(value) * 1000) : NaN;
}
