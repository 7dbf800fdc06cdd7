/**
 * The npm packages only the benchmark uses (aedes, the Node.js broker it compares with), by full
 * specifier: pinned in `dev.lock`, not in the gateway's `deno.lock` or import map.
 *
 * @module
 */

export { Aedes } from "npm:aedes@1.2.0";
