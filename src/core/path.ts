/**
 * POSIX path helpers: the directory of the device file, state file and config file, and the rule
 * engine's files and sandbox root. `node:path` does the same, but its first call loads Node's
 * process and assertion layers (~20 ms at start-up, measured: docs/operations.md "Start-up").
 * Ferry's paths are POSIX paths (Linux gateways); results agree with `node:path/posix`
 * (tests/path_test.ts).
 *
 * @module
 */

/** The path separator. */
export const sep = "/";

/** `path` with `.` and empty segments dropped and `..` applied; no trailing `/` but the root. */
function normalize(path: string): string {
  const absolute = path.startsWith("/");
  const out: string[] = [];
  for (const seg of path.split("/")) {
    if (seg === "" || seg === ".") continue;
    if (seg === "..") {
      if (out.length && out[out.length - 1] !== "..") out.pop();
      else if (!absolute) out.push("..");
    } else out.push(seg);
  }
  const body = out.join("/");
  return absolute ? `/${body}` : body || ".";
}

/**
 * The absolute path of the segments joined right to left until one is absolute, from the current
 * directory otherwise (as `path.posix.resolve`).
 *
 * @example
 * ```ts
 * import { resolve } from "./path.ts";
 * if (resolve("/etc/ferry", "../rules/./a.ts") !== "/etc/rules/a.ts") throw new Error();
 * ```
 */
export function resolve(...paths: string[]): string {
  let joined = "";
  for (let i = paths.length - 1; i >= 0 && !joined.startsWith("/"); i--) {
    if (paths[i] === "") continue;
    joined = joined ? `${paths[i]}/${joined}` : paths[i];
  }
  if (!joined.startsWith("/")) joined = joined ? `${Deno.cwd()}/${joined}` : Deno.cwd();
  return normalize(joined);
}

/**
 * The directory part of `path` (as `path.posix.dirname`).
 *
 * @example
 * ```ts
 * import { dirname } from "./path.ts";
 * if (dirname("/etc/ferry/ferry.json") !== "/etc/ferry" || dirname("a.ts") !== ".") throw new Error();
 * ```
 */
export function dirname(path: string): string {
  if (path.length === 0) return ".";
  const hasRoot = path[0] === "/";
  let end = -1;
  let matchedSlash = true;
  for (let i = path.length - 1; i >= 1; --i) {
    if (path[i] === "/") {
      if (!matchedSlash) {
        end = i;
        break;
      }
    } else matchedSlash = false;
  }
  if (end === -1) return hasRoot ? "/" : ".";
  if (hasRoot && end === 1) return "//";
  return path.slice(0, end);
}

/**
 * The last part of `path` (as `path.posix.basename`).
 *
 * @example
 * ```ts
 * import { basename } from "./path.ts";
 * if (basename("/etc/rules/scale.ts") !== "scale.ts" || basename("/a/b/") !== "b") throw new Error();
 * ```
 */
export function basename(path: string): string {
  let end = path.length;
  while (end > 0 && path[end - 1] === "/") end--;
  return path.slice(path.lastIndexOf("/", end - 1) + 1, end);
}
