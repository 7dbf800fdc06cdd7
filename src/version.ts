/**
 * Ferry's version: the one in `deno.json`, which `ferry --version` prints.
 *
 * @module
 */

import denoJson from "../deno.json" with { type: "json" };

/**
 * Ferry's version (from `deno.json`).
 *
 * @example
 * ```ts
 * import { VERSION } from "./version.ts";
 * if (!/^\d+\.\d+\.\d+/.test(VERSION)) throw new Error(VERSION);
 * ```
 */
export const VERSION: string = denoJson.version;

/**
 * The `--version` line: Ferry's version, then the runtime's.
 *
 * @example
 * ```ts
 * import { VERSION, versionLine } from "./version.ts";
 * if (!versionLine().startsWith(`ferry ${VERSION} (deno `)) throw new Error(versionLine());
 * ```
 */
export function versionLine(): string {
  return `ferry ${VERSION} (deno ${Deno.version.deno}, ${Deno.build.target})`;
}
