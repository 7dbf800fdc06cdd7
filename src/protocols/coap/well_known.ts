/**
 * The `/.well-known/core` resource of RFC 6690: the server's resources as a CoRE Link Format
 * document (§5), with the query filtering of §4.1.
 *
 * @module
 */

import { filterLinks, formatLinks, type Link } from "./link_format.ts";
import { Code, ContentFormat } from "./message.ts";
import { type CoapResource, compilePath } from "./resource.ts";

const text = new TextEncoder();

/**
 * Builds `/.well-known/core` for a resource list: every resource without a path variable (or
 * marked `discoverable`), with its attributes and `obs` for observable ones.
 *
 * @example
 * ```ts
 * import { createWellKnownResource } from "./well_known.ts";
 * const wk = createWellKnownResource([
 *   { path: "/obs", observable: true, attributes: { rt: "observe" }, handle: () => null },
 *   { path: "/d/{id}", handle: () => null },
 * ]);
 * const res = wk.handle({ query: [] } as never) as { payload: Uint8Array };
 * if (new TextDecoder().decode(res.payload) !== '</obs>;rt="observe";obs') throw new Error();
 * ```
 */
export function createWellKnownResource(resources: readonly CoapResource[]): CoapResource {
  const links: Link[] = [];
  for (const r of resources) {
    const listed = r.discoverable ?? !compilePath(r.path).variable;
    if (!listed) continue;
    const attributes = { ...r.attributes };
    if (r.observable && attributes.obs === undefined) attributes.obs = true;
    links.push({ href: r.path, attributes });
  }
  return {
    path: "/.well-known/core",
    methods: [Code.GET],
    produces: [ContentFormat.LINK_FORMAT],
    discoverable: false, // RFC 6690 §4: it need not list itself
    handle: (req) => ({
      code: Code.CONTENT,
      contentFormat: ContentFormat.LINK_FORMAT,
      payload: text.encode(formatLinks(filterLinks(links, req.query[0]))),
    }),
  };
}
