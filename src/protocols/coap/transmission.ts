/**
 * CoAP transmission parameters and the time values derived from them, RFC 7252 §4.8 and §4.8.2,
 * and the randomised initial retransmission timeout of §4.2.
 *
 * @module
 */

/** The base parameters of RFC 7252 §4.8. */
export interface TransmissionParameters {
  /** ACK_TIMEOUT in ms. @default 2000 */
  ackTimeoutMs: number;
  /** ACK_RANDOM_FACTOR. @default 1.5 */
  ackRandomFactor: number;
  /** MAX_RETRANSMIT. @default 4 */
  maxRetransmit: number;
}

/** RFC 7252 §4.8 defaults. */
export const DEFAULT_TRANSMISSION: TransmissionParameters = {
  ackTimeoutMs: 2000,
  ackRandomFactor: 1.5,
  maxRetransmit: 4,
};

/** MAX_LATENCY, RFC 7252 §4.8.2: 100 s. */
export const MAX_LATENCY_MS = 100_000;

/**
 * MAX_TRANSMIT_SPAN = ACK_TIMEOUT × (2^MAX_RETRANSMIT − 1) × ACK_RANDOM_FACTOR, RFC 7252 §4.8.2.
 *
 * @example
 * ```ts
 * import { DEFAULT_TRANSMISSION, maxTransmitSpanMs } from "./transmission.ts";
 * if (maxTransmitSpanMs(DEFAULT_TRANSMISSION) !== 45_000) throw new Error();
 * ```
 */
export function maxTransmitSpanMs(p: TransmissionParameters): number {
  return p.ackTimeoutMs * (2 ** p.maxRetransmit - 1) * p.ackRandomFactor;
}

/** MAX_TRANSMIT_WAIT = ACK_TIMEOUT × (2^(MAX_RETRANSMIT+1) − 1) × ACK_RANDOM_FACTOR (§4.8.2). */
export function maxTransmitWaitMs(p: TransmissionParameters): number {
  return p.ackTimeoutMs * (2 ** (p.maxRetransmit + 1) - 1) * p.ackRandomFactor;
}

/**
 * EXCHANGE_LIFETIME = MAX_TRANSMIT_SPAN + 2 × MAX_LATENCY + PROCESSING_DELAY (= ACK_TIMEOUT),
 * RFC 7252 §4.8.2: 247 s with the defaults.
 *
 * @example
 * ```ts
 * import { DEFAULT_TRANSMISSION, exchangeLifetimeMs } from "./transmission.ts";
 * if (exchangeLifetimeMs(DEFAULT_TRANSMISSION) !== 247_000) throw new Error();
 * ```
 */
export function exchangeLifetimeMs(p: TransmissionParameters): number {
  return maxTransmitSpanMs(p) + 2 * MAX_LATENCY_MS + p.ackTimeoutMs;
}

/** NON_LIFETIME = MAX_TRANSMIT_SPAN + MAX_LATENCY, RFC 7252 §4.8.2: 145 s with the defaults. */
export function nonLifetimeMs(p: TransmissionParameters): number {
  return maxTransmitSpanMs(p) + MAX_LATENCY_MS;
}

/**
 * The initial timeout of a Confirmable message: a random duration between ACK_TIMEOUT and
 * ACK_TIMEOUT × ACK_RANDOM_FACTOR, RFC 7252 §4.2.
 */
export function initialTimeoutMs(p: TransmissionParameters, random: () => number): number {
  return p.ackTimeoutMs * (1 + random() * (p.ackRandomFactor - 1));
}
