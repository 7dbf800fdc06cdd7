/**
 * The responder: turns a resource's {@link CoapResponse} into the message that goes out (options
 * in order, ETag, Location-*, Content-Format, Max-Age, the Block1 echo), slicing large bodies into
 * Block2 blocks (RFC 7959 §2.4) and keeping each sliced body for the later blocks, so a client
 * gets one consistent representation and non-idempotent handlers run once. Also answers whether
 * a request's No-Response option (RFC 7967) suppresses a response.
 *
 * @module
 */

import type { Clock } from "../../core/mod.ts";
import { blockSize, encodeBlock, szxFor } from "./block.ts";
import { type CoapMessage, type CoapOption, type CoapType, Code, codeClass } from "./message.ts";
import { decodeUint, encodeString, encodeUint, Opt } from "./option_codec.ts";
import type { CoapResponse } from "./resource.ts";

const EMPTY = new Uint8Array(0);
const text = new TextEncoder();

/** What the server adds to a response besides the resource's own fields. */
export interface ResponseExtras {
  /** Observe sequence number of a registration response. */
  observe?: number;
  /** Block1 option to echo (RFC 7959 §2.3). */
  block1?: CoapOption;
  /** The Block2 block asked for (number and size exponent). */
  block2?: { num: number; szx: number };
  /** Key of the Block2 body cache (built only when a body is cached). */
  cacheKey?: () => string;
}

/** A body kept for its later Block2 blocks. */
export interface CachedBody {
  code: number;
  payload: Uint8Array;
  contentFormat?: number;
  etag?: Uint8Array;
  expiresAt: number;
}

/** Tunables of {@link Responder}. */
export interface ResponderOptions {
  /** Time source. */
  clock: Clock;
  /** Preferred Block2 size (16..1024): bodies over it are sent block-wise. */
  blockSize: number;
  /** Bodies kept at most. */
  maxBodies: number;
  /** How long a body is kept for its later blocks, ms. */
  bodyTimeoutMs: number;
}

/**
 * Builds responses.
 *
 * @example
 * ```ts
 * import { FakeClock } from "../../core/clock.ts";
 * import { Responder } from "./responder.ts";
 * const r = new Responder({ clock: new FakeClock(), blockSize: 16, maxBodies: 4, bodyTimeoutMs: 1000 });
 * const msg = r.build(2, 7, new Uint8Array([1]), { code: 69, payload: new Uint8Array(40) }, [], {
 *   cacheKey: () => "k",
 * });
 * // first block of three (16 bytes), Block2 NUM 0 M=1 SZX 0, Size2 40
 * if (msg.payload.length !== 16 || r.cached("k")?.payload.length !== 40) throw new Error();
 * ```
 */
export class Responder {
  #opts: ResponderOptions;
  #szx: number;
  #bodies = new Map<string, CachedBody>();

  /** Creates a responder. */
  constructor(options: ResponderOptions) {
    this.#opts = options;
    this.#szx = szxFor(options.blockSize);
  }

  /**
   * The message carrying `res`: of `type` with message ID `mid` and `token`, with `extraOptions`
   * (Observe, …) first. `extraOptions` may be extended in place: pass a fresh array.
   */
  build(
    type: CoapType,
    mid: number,
    token: Uint8Array,
    res: CoapResponse,
    extraOptions: CoapOption[],
    extra: ResponseExtras,
  ): CoapMessage {
    const options: CoapOption[] = res.options ? [...extraOptions, ...res.options] : extraOptions;
    if (res.etag) options.push({ number: Opt.ETAG, value: res.etag });
    if (res.locationPath) {
      for (const p of res.locationPath) {
        options.push({ number: Opt.LOCATION_PATH, value: encodeString(p) });
      }
    }
    if (res.locationQuery) {
      for (const q of res.locationQuery) {
        options.push({ number: Opt.LOCATION_QUERY, value: encodeString(q) });
      }
    }
    if (res.contentFormat !== undefined) {
      options.push({ number: Opt.CONTENT_FORMAT, value: encodeUint(res.contentFormat) });
    }
    if (res.maxAge !== undefined) {
      options.push({ number: Opt.MAX_AGE, value: encodeUint(res.maxAge) });
    }
    if (extra.block1) options.push(extra.block1);
    let payload = res.payload ?? EMPTY;
    // RFC 7959 §2.4: slice large bodies into Block2 blocks (also unasked, when over blockSize).
    const szx = extra.block2 ? extra.block2.szx : this.#szx;
    const size = blockSize(szx);
    if (extra.block2 || payload.length > size) {
      const num = extra.block2?.num ?? 0;
      const start = num * size;
      if (start >= payload.length && num > 0) {
        return {
          type,
          code: Code.BAD_REQUEST,
          messageId: mid,
          token,
          options: [],
          payload: text.encode("Block out of range"),
        };
      }
      if (payload.length > size && extra.cacheKey && codeClass(res.code) === 2) {
        this.#keep(extra.cacheKey(), res, payload);
      }
      const more = start + size < payload.length;
      options.push({ number: Opt.BLOCK2, value: encodeBlock({ num, more, szx }) });
      if (num === 0 && more) options.push({ number: Opt.SIZE2, value: encodeUint(payload.length) });
      payload = payload.subarray(start, Math.min(payload.length, start + size));
    }
    if (options.length > 1) options.sort((a, b) => a.number - b.number);
    return { type, code: res.code, messageId: mid, token, options, payload };
  }

  /** The body kept under `key` for its later blocks, unless it expired. */
  cached(key: string): CachedBody | undefined {
    const c = this.#bodies.get(key);
    return c && c.expiresAt > this.#opts.clock.now() ? c : undefined;
  }

  /** The block size exponent a request's Block2 value asks for, capped at the preferred size. */
  szx(asked: number): number {
    return Math.min(asked, this.#szx);
  }

  /** Forgets every kept body. */
  clear(): void {
    this.#bodies.clear();
  }

  #keep(key: string, res: CoapResponse, payload: Uint8Array): void {
    const now = this.#opts.clock.now();
    const bodies = this.#bodies;
    for (const [k, v] of bodies) { // time-ordered: drop the expired at the front
      if (v.expiresAt > now && bodies.size < this.#opts.maxBodies) break;
      bodies.delete(k);
    }
    bodies.delete(key);
    bodies.set(key, {
      code: res.code,
      payload,
      contentFormat: res.contentFormat,
      etag: res.etag,
      expiresAt: now + this.#opts.bodyTimeoutMs,
    });
  }
}

/**
 * True when the request's No-Response option suppresses a response with `code` (RFC 7967 §2.1:
 * bit 2 for 2.xx, 8 for 4.xx, 16 for 5.xx).
 *
 * @example
 * ```ts
 * import { suppressedByNoResponse } from "./responder.ts";
 * const req = { options: [{ number: 258, value: new Uint8Array([2]) }] } as never;
 * if (!suppressedByNoResponse(req, 68) || suppressedByNoResponse(req, 132)) throw new Error();
 * ```
 */
export function suppressedByNoResponse(req: CoapMessage, code: number): boolean {
  const noResponse = req.options.find((o) => o.number === Opt.NO_RESPONSE);
  if (!noResponse) return false;
  const bit = ({ 2: 2, 4: 8, 5: 16 } as Record<number, number>)[codeClass(code)] ?? 0;
  return (decodeUint(noResponse.value) & bit) !== 0;
}
