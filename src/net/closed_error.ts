/**
 * Which read and write errors only mean that the peer or the socket is gone (a normal end of a
 * connection, not a fault to report).
 *
 * @module
 */

/**
 * True for the errors of a socket that was closed or reset.
 *
 * @example
 * ```ts
 * import { isClosedError } from "./closed_error.ts";
 * if (!isClosedError(new Deno.errors.ConnectionReset("reset"))) throw new Error();
 * if (isClosedError(new TypeError("bug"))) throw new Error();
 * ```
 */
export function isClosedError(err: unknown): boolean {
  return err instanceof Deno.errors.BadResource || err instanceof Deno.errors.ConnectionReset ||
    err instanceof Deno.errors.Interrupted || err instanceof Deno.errors.BrokenPipe ||
    err instanceof Deno.errors.NotConnected;
}
