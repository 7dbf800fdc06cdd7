/**
 * What a CoAP resource is to the server: a path pattern, link attributes for
 * `/.well-known/core`, and a handler from {@link CoapRequest} to {@link CoapResponse}. The message
 * layer (deduplication, piggybacked or separate responses, Observe, Block1/Block2) is the server's
 * business; resources see whole requests and produce whole representations.
 *
 * @module
 */

import type { CoapMessage, CoapOption } from "./message.ts";

/** A request as a resource sees it. */
export interface CoapRequest {
  /** Method code (0.01 GET, 0.02 POST, ...). */
  method: number;
  /** Uri-Path segments. */
  path: string[];
  /** Uri-Query items, raw `key=value` strings. */
  query: string[];
  /** Variables bound by the resource pattern (`{id}` → `params.id`). */
  params: Record<string, string>;
  /** The (reassembled) request body. */
  payload: Uint8Array;
  /** Recognised options of the request. */
  options: CoapOption[];
  /** Content-Format of the body, when given. */
  contentFormat?: number;
  /** Accept option, when given. */
  accept?: number;
  /** Observe option of the request (0 register, 1 deregister), when given. */
  observe?: number;
  /** Whether the request came in a Confirmable message. */
  confirmable: boolean;
  /** `host:port` of the client, the key of its endpoint state. */
  endpoint: string;
  /** The client's IP address (for per-address limits). */
  remoteAddress: string;
  /** True when the server re-renders the resource for an Observe notification (RFC 7641 §4.2). */
  notification: boolean;
  /** The message as decoded (for resources that look at raw options). */
  message: CoapMessage;
}

/** A response as a resource produces it; the server adds token, type, ID, Observe and Block2. */
export interface CoapResponse {
  /** Response code. */
  code: number;
  /** Body. @default empty */
  payload?: Uint8Array;
  /** Content-Format option. */
  contentFormat?: number;
  /** Max-Age option in seconds (RFC 7252 §5.10.5). */
  maxAge?: number;
  /** ETag option. */
  etag?: Uint8Array;
  /** Location-Path segments (2.01 Created). */
  locationPath?: string[];
  /** Location-Query items. */
  locationQuery?: string[];
  /** Further options (any number, any order: the server sorts). */
  options?: CoapOption[];
  /**
   * Called once the message carrying this response is out of the server's hands: with `true` when
   * the client acknowledged a Confirmable notification or separate response, with `false` when a
   * NON notification or NON response was sent (no confirmation exists). Not called for a
   * piggybacked response (the ACK is the response) or when a transmission failed (`onLost`).
   */
  onDelivered?: (confirmed: boolean) => void;
  /** Called when a Confirmable notification/separate response carrying this was not confirmed. */
  onLost?: () => void;
  /**
   * Called when this response registered an observation (RFC 7641 §4.1): `end` ends it with a
   * final non-2.xx notification (§3.2), e.g. when the credentials it was made with are revoked.
   * Returns what to call once the observation ends, for whatever reason.
   */
  onObserved?: (end: (final: CoapResponse) => void) => () => void;
}

/** Link attributes of RFC 6690 §3 for `/.well-known/core`. */
export type LinkAttributes = Record<string, string | number | true>;

/** A resource served by {@link CoapServer}. */
export interface CoapResource {
  /**
   * Path pattern: `/a/b`, with `{name}` for one variable segment. Resources with a variable are
   * listed in `/.well-known/core` only through `link`.
   */
  path: string;
  /** Link attributes (`rt`, `if`, `ct`, `obs`, `sz`, `title`). */
  attributes?: LinkAttributes;
  /** Listed in `/.well-known/core`. @default true when the path has no variable */
  discoverable?: boolean;
  /** GET with Observe=0 registers an observer (RFC 7641). @default false */
  observable?: boolean;
  /**
   * Type of notifications: like the registration (CON registration → CON notifications), or
   * always one type. @default "like-request"
   */
  notifications?: "like-request" | "confirmable" | "non-confirmable";
  /** Methods served; others get 4.05 (RFC 7252 §5.9.2.6). @default all */
  methods?: number[];
  /** Content-Formats the resource can produce (checked against Accept, 4.06). @default any */
  produces?: number[];
  /**
   * Checked before a Block1 upload is buffered (on its first block): a response here (4.01,
   * 4.03, ...) refuses the transfer, so unauthenticated clients cannot fill reassembly buffers.
   */
  preflight?(req: CoapRequest): CoapResponse | undefined;
  /** Makes the response. Returning `null` on a notification re-render suppresses it. */
  handle(req: CoapRequest): CoapResponse | null | Promise<CoapResponse | null>;
}

/** A compiled path pattern. */
export interface PathMatcher {
  /** Binds variables when `path` matches. */
  match(path: readonly string[]): Record<string, string> | undefined;
  /** Number of literal segments (more specific patterns win). */
  readonly literals: number;
  /** Whether the pattern has variables. */
  readonly variable: boolean;
}

/**
 * Compiles `/a/{x}/b` into a matcher.
 *
 * @example
 * ```ts
 * import { compilePath } from "./resource.ts";
 * const m = compilePath("/d/{id}/telemetry");
 * if (m.match(["d", "s1", "telemetry"])?.id !== "s1" || m.match(["d", "s1"])) throw new Error();
 * ```
 */
export function compilePath(pattern: string): PathMatcher {
  const segs = pattern.split("/").filter((s) => s !== "");
  const vars = segs.map((s) => /^\{(\w+)\}$/.exec(s)?.[1]);
  return {
    literals: vars.filter((v) => v === undefined).length,
    variable: vars.some((v) => v !== undefined),
    match(path) {
      if (path.length !== segs.length) return undefined;
      const params: Record<string, string> = {};
      for (let i = 0; i < segs.length; i++) {
        const v = vars[i];
        if (v !== undefined) params[v] = path[i];
        else if (path[i] !== segs[i]) return undefined;
      }
      return params;
    },
  };
}

/** Value of query parameter `key` (first `key=value` item; `key` alone gives ""). */
export function queryParam(query: readonly string[], key: string): string | undefined {
  for (const q of query) {
    if (q === key) return "";
    if (q.startsWith(key + "=")) return q.slice(key.length + 1);
  }
  return undefined;
}
