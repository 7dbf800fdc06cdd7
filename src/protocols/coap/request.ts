/**
 * Request parsing: a decoded request message's options → the {@link CoapRequest} a resource sees,
 * plus what the server acts on itself (Block1, Block2, Size1). Refuses what RFC 7252 says no
 * server may process: an unrecognised critical option (§5.4.1) and proxy requests (§5.7.2).
 *
 * @module
 */

import { type CoapMessage, CoapType, Code } from "./message.ts";
import {
  decodeString,
  decodeUint,
  firstBadCriticalOption,
  Opt,
  recognisedOptions,
} from "./option_codec.ts";
import type { CoapRequest, CoapResponse } from "./resource.ts";

const text = new TextEncoder();

/** A request ready for its resource. */
export interface ParsedRequest {
  readonly ok: true;
  /** The request as its resource sees it (`params` still empty: routing fills them in). */
  readonly req: CoapRequest;
  /** Block1 option value (RFC 7959 §2.2), when present. */
  readonly block1?: Uint8Array;
  /** Block2 option value, when present. */
  readonly block2?: Uint8Array;
  /** Size1 option (RFC 7959 §4), when present. */
  readonly size1?: number;
}

/**
 * A request refused before any resource sees it: answer `res` (a CON), or reject the message with
 * a Reset when `res` is absent (a NON with an unrecognised critical option, RFC 7252 §5.4.1).
 * `error` names the error counter to bump, if any.
 */
export interface RefusedRequest {
  readonly ok: false;
  readonly res?: CoapResponse;
  readonly error?: string;
}

/**
 * Parses the options of the request `msg` from `endpoint` (`host:port`, its key) at `address`.
 *
 * @example
 * ```ts
 * import { parseRequest } from "./request.ts";
 * import { decodeMessage } from "./codec.ts";
 * // CON GET /a?x=1
 * const msg = decodeMessage(new Uint8Array([0x40, 0x01, 0, 1, 0xb1, 0x61, 0x43, 0x78, 0x3d, 0x31]));
 * const r = parseRequest(msg, "127.0.0.1:5000", "127.0.0.1");
 * if (!r.ok || r.req.path.join("/") !== "a" || r.req.query[0] !== "x=1") throw new Error();
 * ```
 */
export function parseRequest(
  msg: CoapMessage,
  endpoint: string,
  address: string,
): ParsedRequest | RefusedRequest {
  const con = msg.type === CoapType.CON;
  // RFC 7252 §5.4.1: an unrecognised critical option → 4.02 for CON, reject a NON.
  const bad = firstBadCriticalOption(msg.options);
  if (bad !== undefined) {
    if (!con) return { ok: false, error: "bad_option" };
    return {
      ok: false,
      error: "bad_option",
      res: { code: Code.BAD_OPTION, payload: text.encode(`Unrecognized critical option ${bad}`) },
    };
  }
  const options = recognisedOptions(msg.options);
  const path: string[] = [];
  const query: string[] = [];
  let contentFormat: number | undefined;
  let accept: number | undefined;
  let observe: number | undefined;
  let block1: Uint8Array | undefined;
  let block2: Uint8Array | undefined;
  let size1: number | undefined;
  for (const o of options) {
    switch (o.number) {
      case Opt.URI_PATH:
        path.push(decodeString(o.value));
        break;
      case Opt.URI_QUERY:
        query.push(decodeString(o.value));
        break;
      case Opt.CONTENT_FORMAT:
        contentFormat = decodeUint(o.value);
        break;
      case Opt.ACCEPT:
        accept = decodeUint(o.value);
        break;
      case Opt.OBSERVE:
        observe = decodeUint(o.value);
        break;
      case Opt.BLOCK1:
        block1 = o.value;
        break;
      case Opt.BLOCK2:
        block2 = o.value;
        break;
      case Opt.SIZE1:
        size1 = decodeUint(o.value);
        break;
      case Opt.PROXY_URI:
      case Opt.PROXY_SCHEME: // RFC 7252 §5.7.2: this server is no proxy.
        return { ok: false, res: { code: Code.PROXYING_NOT_SUPPORTED } };
    }
  }
  // RFC 7252 §6.5: a single empty Uri-Path is the root path.
  if (path.length === 1 && path[0] === "") path.length = 0;
  const req: CoapRequest = {
    method: msg.code,
    path,
    query,
    params: {},
    payload: msg.payload,
    options,
    contentFormat,
    accept,
    observe,
    confirmable: con,
    endpoint,
    remoteAddress: address,
    notification: false,
    message: msg,
  };
  return { ok: true, req, block1, block2, size1 };
}
