/**
 * Every tunable of the CoAP listener: {@link CoapServerOptions}, their defaults, and the `coap`
 * config-schema fragment built on them (defaults written once, here). The CoAP wire options
 * (Uri-Path, Observe, Block1/2…) are in `option_codec.ts`.
 *
 * @module
 */

import type { Field } from "../../config/schema.ts";
import type { CoapResource } from "./resource.ts";

/** Tunables of {@link CoapServer} (the `coap` config section). JSON-friendly except `resources`. */
export interface CoapServerOptions {
  /** Address to bind. @default "127.0.0.1" */
  hostname: string;
  /** UDP port (0 picks a free one). @default 5683 */
  port: number;
  /** Resource set: Ferry's device resources or the ETSI plugtest set. @default "ferry" */
  mode: "ferry" | "plugtest";
  /** Largest request body, single datagram or Block1-reassembled; more gets 4.13 + Size1. @default 65536 */
  maxPayload: number;
  /** Preferred block size for Block2 (and the largest response payload sent unblocked), 16..1024. @default 1024 */
  blockSize: number;
  /** A device with no request for this long is marked offline. @default 300000 */
  idleTimeoutMs: number;
  /** ACK_TIMEOUT, RFC 7252 §4.8. @default 2000 */
  ackTimeoutMs: number;
  /** ACK_RANDOM_FACTOR, RFC 7252 §4.8. @default 1.5 */
  ackRandomFactor: number;
  /** MAX_RETRANSMIT, RFC 7252 §4.8. @default 4 */
  maxRetransmit: number;
  /** EXCHANGE_LIFETIME: how long a CON message ID is remembered, RFC 7252 §4.8.2. @default 247000 */
  exchangeLifetimeMs: number;
  /** NON_LIFETIME: how long a NON message ID is remembered, RFC 7252 §4.8.2. @default 145000 */
  nonLifetimeMs: number;
  /** Most remembered message IDs (all endpoints); the oldest is forgotten past it. @default 100000 */
  maxExchanges: number;
  /** A CON request whose response is not ready after this gets an empty ACK first (§5.2.2). @default 1000 */
  separateResponseAfterMs: number;
  /** Requests being handled asynchronously at once; more get 5.03. @default 1024 */
  maxInflightRequests: number;
  /** Datagrams handed to the socket and not yet sent; past it new ones are dropped. @default 4096 */
  maxPendingSends: number;
  /** Max-Age (s) of a 5.03 Service Unavailable (when to retry), RFC 7252 §5.9.3.4. @default 2 */
  retryAfterSec: number;
  /** Observers registered at once (RFC 7641); past it GET+Observe is served without registering. @default 10000 */
  maxObservers: number;
  /** Longest run of NON notifications before one is sent CON, RFC 7641 §4.5. @default 86400000 */
  observeConfirmableIntervalMs: number;
  /** Block1 uploads being reassembled at once; more get 5.03. @default 256 */
  maxBlockTransfers: number;
  /** A Block1 upload or cached Block2 body idle this long is dropped. @default 60000 */
  blockTimeoutMs: number;
  /** Extra resources to serve (embedding and tests; not part of the config file). */
  resources?: CoapResource[];
  /** Source of randomness for retransmission timeouts (tests). @default Math.random */
  random?: () => number;
}

/**
 * Defaults of every option.
 *
 * @example
 * ```ts
 * import { defaultCoapServerOptions } from "./options.ts";
 * if (defaultCoapServerOptions.ackTimeoutMs !== 2000) throw new Error();
 * ```
 */
export const defaultCoapServerOptions: CoapServerOptions = {
  hostname: "127.0.0.1",
  port: 5683,
  mode: "ferry",
  maxPayload: 65_536,
  blockSize: 1024,
  idleTimeoutMs: 300_000,
  ackTimeoutMs: 2000,
  ackRandomFactor: 1.5,
  maxRetransmit: 4,
  exchangeLifetimeMs: 247_000,
  nonLifetimeMs: 145_000,
  maxExchanges: 100_000,
  separateResponseAfterMs: 1000,
  maxInflightRequests: 1024,
  maxPendingSends: 4096,
  retryAfterSec: 2,
  maxObservers: 10_000,
  observeConfirmableIntervalMs: 86_400_000,
  maxBlockTransfers: 256,
  blockTimeoutMs: 60_000,
};

function int(def: number, min: number, max: number, doc: string): Field {
  return { type: "integer", min, max, default: def, doc };
}

/**
 * The `coap` section of the config file: `enabled` and the listener's tunables, with the defaults
 * of {@link defaultCoapServerOptions} (`config.ts` adds the deprecated command-queue keys, which
 * configure the core's store).
 *
 * @example
 * ```ts
 * import { coapConfigSchema } from "./options.ts";
 * if (coapConfigSchema.fields.ackTimeoutMs.type !== "integer") throw new Error();
 * ```
 */
export const coapConfigSchema: Extract<Field, { type: "object" }> = {
  type: "object",
  doc: "CoAP listener (UDP)",
  fields: {
    enabled: { type: "boolean", default: true, doc: "Start the CoAP listener" },
    port: {
      type: "integer",
      min: 0,
      max: 65535,
      default: 5683,
      doc: "CoAP port (0 picks a free port; the log says which)",
    },
    maxPayload: int(
      defaultCoapServerOptions.maxPayload,
      64,
      16 * 1024 * 1024,
      "Largest request body (after Block1 reassembly), bytes",
    ),
    blockSize: {
      type: "enum",
      values: [16, 32, 64, 128, 256, 512, 1024],
      default: defaultCoapServerOptions.blockSize,
      doc: "Block size for Block2 responses, bytes",
    },
    idleTimeoutMs: int(
      defaultCoapServerOptions.idleTimeoutMs,
      1000,
      7 * 86_400_000,
      "A CoAP device goes offline after this long without a request",
    ),
    ackTimeoutMs: int(
      defaultCoapServerOptions.ackTimeoutMs,
      100,
      60_000,
      "ACK_TIMEOUT (RFC 7252 §4.8)",
    ),
    ackRandomFactor: {
      type: "number",
      min: 1,
      max: 4,
      default: defaultCoapServerOptions.ackRandomFactor,
      doc: "ACK_RANDOM_FACTOR",
    },
    maxRetransmit: int(defaultCoapServerOptions.maxRetransmit, 0, 20, "MAX_RETRANSMIT"),
    exchangeLifetimeMs: int(
      defaultCoapServerOptions.exchangeLifetimeMs,
      1000,
      3_600_000,
      "EXCHANGE_LIFETIME: how long duplicates are recognised",
    ),
    separateResponseAfterMs: int(
      defaultCoapServerOptions.separateResponseAfterMs,
      0,
      60_000,
      "Send an empty ACK and a separate response when the answer takes longer",
    ),
    maxObservers: int(
      defaultCoapServerOptions.maxObservers,
      1,
      1_000_000,
      "Observe registrations kept at most",
    ),
    maxBlockTransfers: int(
      defaultCoapServerOptions.maxBlockTransfers,
      1,
      100_000,
      "Concurrent Block1 reassemblies",
    ),
    blockTimeoutMs: int(
      defaultCoapServerOptions.blockTimeoutMs,
      1000,
      3_600_000,
      "A Block1 transfer not finished in this time is dropped",
    ),
    retryAfterSec: int(
      defaultCoapServerOptions.retryAfterSec,
      1,
      3600,
      "Max-Age of a 5.03 when overloaded",
    ),
    nonLifetimeMs: int(
      defaultCoapServerOptions.nonLifetimeMs,
      1000,
      3_600_000,
      "NON_LIFETIME: how long NON duplicates are recognised",
    ),
    maxExchanges: int(
      defaultCoapServerOptions.maxExchanges,
      1,
      10_000_000,
      "Exchanges remembered for duplicate detection at most",
    ),
    maxInflightRequests: int(
      defaultCoapServerOptions.maxInflightRequests,
      1,
      1_000_000,
      "Requests being processed at once; more get 5.03",
    ),
    maxPendingSends: int(
      defaultCoapServerOptions.maxPendingSends,
      1,
      1_000_000,
      "Datagrams queued on the socket before new ones are dropped",
    ),
    observeConfirmableIntervalMs: int(
      defaultCoapServerOptions.observeConfirmableIntervalMs,
      1000,
      7 * 86_400_000,
      "A CON notification at least this often (RFC 7641 §4.5)",
    ),
  },
};
