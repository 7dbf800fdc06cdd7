/**
 * Addresses, as every listener and the configuration see them.
 *
 * @module
 */

/**
 * True for a loopback host or address: `localhost`, `127.0.0.0/8`, `::1` (bracketed or not) and
 * IPv4-mapped `::ffff:127.x.x.x`.
 *
 * @example
 * ```ts
 * import { isLoopback } from "./address.ts";
 * if (!isLoopback("127.0.0.1") || !isLoopback("::ffff:127.0.0.1") || !isLoopback("[::1]")) throw new Error();
 * if (isLoopback("0.0.0.0") || isLoopback("10.0.0.1")) throw new Error();
 * ```
 */
export function isLoopback(host: string): boolean {
  return host === "localhost" || host === "::1" || host === "[::1]" ||
    /^(::ffff:)?127\./i.test(host);
}
