/**
 * Reliable transmission of the Confirmable messages the server originates (separate responses and
 * CON notifications), RFC 7252 §4.2: the first retransmission after a random timeout between
 * ACK_TIMEOUT and ACK_TIMEOUT × ACK_RANDOM_FACTOR, the timeout doubled after each, at most
 * MAX_RETRANSMIT retransmissions; an ACK or RST with the same message ID from the same endpoint
 * ends it. Timers come from the injected clock.
 *
 * @module
 */

import type { Clock, TimerHandle } from "../../core/mod.ts";
import { initialTimeoutMs, type TransmissionParameters } from "./transmission.ts";

/** How a Confirmable transmission ended. */
export type TransmitOutcome = "ack" | "rst" | "timeout" | "cancelled";

/** Tunables of {@link Retransmitter}. */
export interface RetransmitterOptions extends TransmissionParameters {
  /** Time source. */
  clock: Clock;
  /** Sends (or re-sends) the datagram. */
  send: (bytes: Uint8Array, addr: Deno.NetAddr) => void;
  /** Source of randomness in [0, 1). @default Math.random */
  random?: () => number;
}

interface Outstanding {
  key: string;
  bytes: Uint8Array;
  addr: Deno.NetAddr;
  retransmits: number;
  timeoutMs: number;
  timer: TimerHandle | undefined;
  done: (outcome: TransmitOutcome) => void;
}

/**
 * Tracks outstanding Confirmable messages by (endpoint, message ID).
 *
 * @example
 * ```ts
 * import { FakeClock } from "../../core/clock.ts";
 * import { Retransmitter } from "./retransmitter.ts";
 * const clock = new FakeClock();
 * let sent = 0;
 * const rt = new Retransmitter({
 *   clock, send: () => sent++, ackTimeoutMs: 1000, ackRandomFactor: 1, maxRetransmit: 2,
 * });
 * const addr = { transport: "udp", hostname: "127.0.0.1", port: 9 } as const;
 * const outcome = rt.send("ep", 1, new Uint8Array(4), addr);
 * clock.tick(1000); // first retransmission
 * clock.tick(2000); // second
 * clock.tick(4000); // gives up
 * if (sent !== 3 || (await outcome) !== "timeout") throw new Error();
 * ```
 */
export class Retransmitter {
  #opts: RetransmitterOptions;
  #random: () => number;
  #out = new Map<string, Outstanding>();

  /** Creates a retransmitter. */
  constructor(options: RetransmitterOptions) {
    this.#opts = options;
    this.#random = options.random ?? Math.random;
  }

  /** Confirmable messages awaiting an ACK. */
  get size(): number {
    return this.#out.size;
  }

  /** True when a message to `endpoint` with `messageId` is outstanding. */
  has(endpoint: string, messageId: number): boolean {
    return this.#out.has(`${endpoint}#${messageId}`);
  }

  /** Sends `bytes` now and retransmits until ACK/RST or give-up; resolves with the outcome. */
  send(
    endpoint: string,
    messageId: number,
    bytes: Uint8Array,
    addr: Deno.NetAddr,
  ): Promise<TransmitOutcome> {
    const key = `${endpoint}#${messageId}`;
    this.#out.get(key)?.done("cancelled");
    return new Promise((resolve) => {
      const o: Outstanding = {
        key,
        bytes,
        addr,
        retransmits: 0,
        timeoutMs: initialTimeoutMs(this.#opts, this.#random),
        timer: undefined,
        done: (outcome) => {
          if (this.#out.get(key) !== o) return;
          this.#out.delete(key);
          if (o.timer !== undefined) this.#opts.clock.clearTimeout(o.timer);
          resolve(outcome);
        },
      };
      this.#out.set(key, o);
      this.#opts.send(bytes, addr);
      this.#arm(o);
    });
  }

  #arm(o: Outstanding): void {
    o.timer = this.#opts.clock.setTimeout(() => {
      o.timer = undefined;
      // RFC 7252 §4.2: give up after MAX_RETRANSMIT retransmissions.
      if (o.retransmits >= this.#opts.maxRetransmit) return o.done("timeout");
      o.retransmits++;
      o.timeoutMs *= 2; // RFC 7252 §4.2: "the timeout is doubled"
      this.#opts.send(o.bytes, o.addr);
      this.#arm(o);
    }, o.timeoutMs);
  }

  /** An ACK (`"ack"`) or RST (`"rst"`) arrived; true when it matched an outstanding message. */
  settle(endpoint: string, messageId: number, outcome: "ack" | "rst"): boolean {
    const o = this.#out.get(`${endpoint}#${messageId}`);
    if (!o) return false;
    o.done(outcome);
    return true;
  }

  /** Stops retransmitting one message (outcome `"cancelled"`). */
  cancel(endpoint: string, messageId: number): void {
    this.#out.get(`${endpoint}#${messageId}`)?.done("cancelled");
  }

  /** Stops every transmission. */
  close(): void {
    for (const o of [...this.#out.values()]) o.done("cancelled");
  }
}
