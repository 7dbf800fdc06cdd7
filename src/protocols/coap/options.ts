/**
 * Every tunable of the CoAP listener: the `coap` config-schema fragment, {@link CoapServerOptions}
 * derived from it, and the defaults (written once, in the fragment). The CoAP wire options
 * (Uri-Path, Observe, Block1/2…) are in `option_codec.ts`.
 *
 * @module
 */

import { defaults, type Infer, int, num, obj, oneOf } from "../../config/schema.ts";
import { portField } from "../../net/options.ts";
import type { CoapResource } from "./resource.ts";

/** The `coap` section of the config (without `enabled` and the deprecated command keys). */
export const coapOptionsSchema = obj("CoAP listener (UDP)", {
  port: portField(5683, "CoAP"),
  maxPayload: int("Largest request body (after Block1 reassembly), bytes", {
    min: 64,
    max: 16 * 1024 * 1024,
    default: 65_536,
  }),
  blockSize: oneOf([16, 32, 64, 128, 256, 512, 1024], "Block size for Block2 responses, bytes", {
    default: 1024,
  }),
  idleTimeoutMs: int("A CoAP device goes offline after this long without a request", {
    min: 1000,
    max: 7 * 86_400_000,
    default: 300_000,
  }),
  ackTimeoutMs: int("ACK_TIMEOUT (RFC 7252 §4.8)", { min: 100, max: 60_000, default: 2000 }),
  ackRandomFactor: num("ACK_RANDOM_FACTOR", { min: 1, max: 4, default: 1.5 }),
  maxRetransmit: int("MAX_RETRANSMIT", { min: 0, max: 20, default: 4 }),
  exchangeLifetimeMs: int("EXCHANGE_LIFETIME: how long duplicates are recognised", {
    min: 1000,
    max: 3_600_000,
    default: 247_000,
  }),
  separateResponseAfterMs: int(
    "Send an empty ACK and a separate response when the answer takes longer",
    { min: 0, max: 60_000, default: 1000 },
  ),
  maxObservers: int("Observe registrations kept at most", {
    min: 1,
    max: 1_000_000,
    default: 10_000,
  }),
  maxBlockTransfers: int("Concurrent Block1 reassemblies", { min: 1, max: 100_000, default: 256 }),
  blockTimeoutMs: int("A Block1 transfer not finished in this time is dropped", {
    min: 1000,
    max: 3_600_000,
    default: 60_000,
  }),
  retryAfterSec: int("Max-Age of a 5.03 when overloaded", { min: 1, max: 3600, default: 2 }),
  nonLifetimeMs: int("NON_LIFETIME: how long NON duplicates are recognised", {
    min: 1000,
    max: 3_600_000,
    default: 145_000,
  }),
  maxExchanges: int("Exchanges remembered for duplicate detection at most", {
    min: 1,
    max: 10_000_000,
    default: 100_000,
  }),
  maxInflightRequests: int("Requests being processed at once; more get 5.03", {
    min: 1,
    max: 1_000_000,
    default: 1024,
  }),
  maxPendingSends: int("Datagrams queued on the socket before new ones are dropped", {
    min: 1,
    max: 1_000_000,
    default: 4096,
  }),
  observeConfirmableIntervalMs: int("A CON notification at least this often (RFC 7641 §4.5)", {
    min: 1000,
    max: 7 * 86_400_000,
    default: 86_400_000,
  }),
});

/** Tunables of {@link CoapServer}: the `coap` config section plus what the file cannot say. */
export type CoapServerOptions = Infer<typeof coapOptionsSchema> & {
  /** Address to bind. @default "127.0.0.1" */
  hostname: string;
  /** Resource set: Ferry's device resources or the ETSI plugtest set. @default "ferry" */
  mode: "ferry" | "plugtest";
  /** Extra resources to serve (embedding and tests; not part of the config file). */
  resources?: CoapResource[];
  /** Source of randomness for retransmission timeouts (tests). @default Math.random */
  random?: () => number;
};

/**
 * Defaults of every option.
 *
 * @example
 * ```ts
 * import { defaultCoapServerOptions } from "./options.ts";
 * if (defaultCoapServerOptions.ackTimeoutMs !== 2000) throw new Error();
 * ```
 */
export const defaultCoapServerOptions: Readonly<CoapServerOptions> = Object.freeze({
  hostname: "127.0.0.1",
  mode: "ferry" as const,
  ...defaults(coapOptionsSchema),
});
