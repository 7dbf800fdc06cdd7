/**
 * The message of anything thrown, for logs and problem details.
 *
 * @module
 */

/**
 * `err.message` for an `Error`, else the value as a string.
 *
 * @example
 * ```ts
 * import { errorMessage } from "./error_message.ts";
 * if (errorMessage(new RangeError("x")) !== "x" || errorMessage(7) !== "7") throw new Error();
 * ```
 */
export function errorMessage(err: unknown): string {
  return err instanceof Error ? err.message : String(err);
}
