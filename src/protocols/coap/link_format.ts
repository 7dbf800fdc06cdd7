/**
 * CoRE Link Format, RFC 6690: serialises the resource list for `/.well-known/core` (§5) and applies
 * the query filter of §4.1 (`?href=/x*`, `?rt=sensor`, ...).
 *
 * @module
 */

import type { LinkAttributes } from "./resource.ts";

/** One link of a link-format document. */
export interface Link {
  /** Target URI reference, e.g. `/sensors/temp`. */
  href: string;
  /** Target attributes. */
  attributes?: LinkAttributes;
}

function attrValue(v: string | number): string {
  // RFC 6690 §2: ct and sz are tokens; rt, if, title, ... quoted strings.
  return typeof v === "number" ? String(v) : `"${v.replace(/["\\]/g, (c) => "\\" + c)}"`;
}

/**
 * Serialises links, RFC 6690 §2: `<href>;attr=value,...`.
 *
 * @example
 * ```ts
 * import { formatLinks } from "./link_format.ts";
 * const s = formatLinks([{ href: "/obs", attributes: { obs: true, rt: "observe", ct: 0 } }]);
 * if (s !== '</obs>;obs;rt="observe";ct=0') throw new Error(s);
 * ```
 */
export function formatLinks(links: readonly Link[]): string {
  return links.map((l) => {
    let s = `<${l.href}>`;
    for (const [k, v] of Object.entries(l.attributes ?? {})) {
      s += v === true ? `;${k}` : `;${k}=${attrValue(v)}`;
    }
    return s;
  }).join(",");
}

function matches(pattern: string, value: string): boolean {
  return pattern.endsWith("*") ? value.startsWith(pattern.slice(0, -1)) : value === pattern;
}

/**
 * Keeps the links matching a `/.well-known/core` query item (RFC 6690 §4.1): `href=` matches the
 * target, any other name matches an attribute; space-separated attribute values (`rt`, `if`)
 * match if any word does; a trailing `*` is a prefix match.
 *
 * @example
 * ```ts
 * import { filterLinks } from "./link_format.ts";
 * const links = [{ href: "/a", attributes: { rt: "x y" } }, { href: "/b" }];
 * if (filterLinks(links, "rt=y").length !== 1 || filterLinks(links, "href=/*").length !== 2) {
 *   throw new Error();
 * }
 * ```
 */
export function filterLinks(links: readonly Link[], query: string | undefined): Link[] {
  if (!query) return [...links];
  const eq = query.indexOf("=");
  const name = eq < 0 ? query : query.slice(0, eq);
  const pattern = eq < 0 ? "*" : query.slice(eq + 1);
  return links.filter((l) => {
    if (name === "href") return matches(pattern, l.href);
    const v = l.attributes?.[name];
    if (v === undefined) return false;
    if (v === true) return pattern === "*" || pattern === "";
    const s = String(v);
    return matches(pattern, s) || s.split(" ").some((w) => matches(pattern, w));
  });
}
