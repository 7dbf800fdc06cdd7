/**
 * The RFC 7252 message layer (§4, §5.2) on one UDP socket: receiving and decoding datagrams
 * (format errors: Reset for a CON, silence otherwise), Empty messages (ping → Reset), ACK and RST
 * settling what Ferry sent Confirmable, message-ID deduplication with the cached reply, message IDs
 * per endpoint for what Ferry originates, and the three ways a response goes out: piggybacked in
 * the ACK, separate (an empty ACK first, then a CON retransmitted until acknowledged), or NON.
 * Requests go up to the server as {@link Exchange}s; what a request means is not its business.
 *
 * @module
 */

import type { DeadlineEntry, DevicePort, Logger } from "../../core/mod.ts";
import { CoapSyntaxError, decodeMessage, encodeMessage, MAX_DATAGRAM } from "./codec.ts";
import { ExchangeCache } from "./exchange_cache.ts";
import {
  type CoapMessage,
  CoapType,
  Code,
  codeClass,
  emptyMessage,
  isRequestCode,
  isResponseCode,
} from "./message.ts";
import type { CoapServerOptions } from "./options.ts";
import { Retransmitter, type TransmitOutcome } from "./retransmitter.ts";

/** One request being answered. */
export interface Exchange {
  /** `host:port` of the client. */
  readonly endpoint: string;
  /** Where the response goes. */
  readonly addr: Deno.NetAddr;
  /** The request message. */
  readonly request: CoapMessage;
  /** Its slot in the deduplication table (the reply is kept there for duplicates). */
  readonly slot: number;
  /** An empty ACK went out: the response must be a separate CON (RFC 7252 §5.2.2). */
  separate: boolean;
  /** The response went out. */
  done: boolean;
  /** Deadline of the empty ACK (on the core's shared timer heap, no timer per request). */
  ackDeadline?: DeadlineEntry;
}

/** What the message layer needs from the server. */
export interface MessageLayerHost {
  /** The core, through CoAP's port (stats, clock, deadlines, closing). */
  readonly port: DevicePort;
  /** Effective options. */
  readonly options: Readonly<CoapServerOptions>;
  /** Logger. */
  readonly log: Logger;
  /** A new request (not a duplicate). */
  request(x: Exchange): void;
  /** A Reset that settled nothing Ferry sent Confirmable (a NON notification's, RFC 7641 §3.6). */
  reset(endpoint: string, messageId: number): void;
  /** Activity of an endpoint: a ping, an ACK, a RST or a duplicate (presence). */
  touched(endpoint: string): void;
}

/** `host:port` key of an endpoint (IPv6 hosts bracketed). */
export function endpointKey(addr: Deno.NetAddr): string {
  return addr.hostname.includes(":")
    ? `[${addr.hostname}]:${addr.port}`
    : `${addr.hostname}:${addr.port}`;
}

/**
 * The message layer of a {@link CoapServer}.
 *
 * @example
 * ```ts
 * import { Core } from "../../core/core.ts";
 * import { silentLogger } from "../../core/logger.ts";
 * import { MessageLayer } from "./message_layer.ts";
 * import { defaultCoapServerOptions } from "./options.ts";
 * const core = new Core({ anonymous: true, log: silentLogger });
 * const layer = new MessageLayer({
 *   port: core.port({ name: "coap" }), options: defaultCoapServerOptions, log: silentLogger,
 *   request: () => {}, reset: () => {}, touched: () => {},
 * });
 * if (layer.nextMid("127.0.0.1:9") === layer.nextMid("127.0.0.1:9")) throw new Error();
 * layer.close();
 * await core.close();
 * ```
 */
export class MessageLayer {
  #host: MessageLayerHost;
  #conn: Deno.DatagramConn | undefined;
  #closed = false;
  #exchanges: ExchangeCache;
  #mids = new Map<string, number>();
  #keys = new Map<string, Map<number, string>>();
  #keyCount = 0;
  #sending = 0;
  /** Retransmission of the Confirmable messages Ferry originates. */
  readonly retransmitter: Retransmitter;

  /** Creates the layer; {@link run} starts it on a socket. */
  constructor(host: MessageLayerHost) {
    this.#host = host;
    const o = host.options;
    const clock = host.port.clock;
    this.#exchanges = new ExchangeCache({ clock, maxEntries: o.maxExchanges });
    this.retransmitter = new Retransmitter({
      clock,
      ackTimeoutMs: o.ackTimeoutMs,
      ackRandomFactor: o.ackRandomFactor,
      maxRetransmit: o.maxRetransmit,
      random: o.random,
      send: (bytes, addr) => this.send(bytes, addr),
    });
  }

  /** True once closed. */
  get closed(): boolean {
    return this.#closed;
  }

  /** Receives on `conn` until it closes; resolves then. */
  async run(conn: Deno.DatagramConn): Promise<void> {
    this.#conn = conn;
    // One buffer for every datagram (without one, Deno allocates 64 KiB per receive): the decoder
    // copies what it keeps, so the bytes are not looked at after #onDatagram returns.
    const buf = new Uint8Array(MAX_DATAGRAM);
    const { stats } = this.#host.port;
    for (;;) {
      let data: Uint8Array;
      let addr: Deno.Addr;
      try {
        [data, addr] = await conn.receive(buf);
      } catch (err) {
        if (this.#closed) return;
        // ICMP errors of earlier sends surface here on some systems; keep serving.
        stats.error("receive_failed");
        this.#host.log.debug("receive failed", { error: err });
        continue;
      }
      if (this.#closed) return;
      try {
        this.#onDatagram(data, addr as Deno.NetAddr);
      } catch (err) {
        stats.error("internal");
        this.#host.log.error("datagram handling failed", { error: err });
      }
    }
  }

  /**
   * Sends a datagram. Bounded: datagrams the socket has not taken yet are capped; past it one is
   * dropped (a CON is retransmitted later, a lost ACK makes the client retransmit its request).
   */
  send(bytes: Uint8Array, addr: Deno.NetAddr): void {
    const conn = this.#conn;
    if (!conn || this.#closed) return;
    const { stats } = this.#host.port;
    if (this.#sending >= this.#host.options.maxPendingSends) {
      stats.drop("send_backlog");
      return;
    }
    this.#sending++;
    stats.frameOut();
    stats.bytesOut(bytes.length);
    conn.send(bytes, addr).then(this.#sent, this.#sendFailed); // (one promise per datagram)
  }

  #sent = (): void => {
    this.#sending--;
  };

  #sendFailed = (err: unknown): void => {
    this.#sending--;
    if (this.#closed) return;
    this.#host.port.stats.error("send_failed");
    this.#host.log.debug("send failed", { error: err });
  };

  /** Encodes and sends `msg`; returns the bytes. */
  sendMessage(msg: CoapMessage, addr: Deno.NetAddr): Uint8Array {
    const bytes = encodeMessage(msg);
    this.send(bytes, addr);
    return bytes;
  }

  /**
   * A message ID for a message Ferry originates to `endpoint`. RFC 7252 §4.4: IDs must not be
   * reused towards the same endpoint within EXCHANGE_LIFETIME, so each endpoint has its own
   * counter (random start): a server-wide counter would wrap in seconds under load. The table is
   * bounded like the deduplication table (least recently used endpoint forgotten first).
   */
  nextMid(endpoint: string): number {
    const m = this.#mids;
    const prev = m.get(endpoint);
    const mid = prev === undefined ? Math.floor(Math.random() * 0x10000) : (prev + 1) & 0xffff;
    m.delete(endpoint);
    if (m.size >= this.#host.options.maxExchanges) {
      const oldest = m.keys().next().value;
      if (oldest !== undefined) m.delete(oldest);
    }
    m.set(endpoint, mid);
    return mid;
  }

  /**
   * The key of `addr`, remembered per host and port: one string per endpoint, whose hash every
   * table keyed by endpoint then finds computed, rather than a new `host:port` string built and
   * hashed per datagram. At most `maxExchanges` keys in all (forgotten wholesale past it).
   */
  #endpointOf(addr: Deno.NetAddr): string {
    let ports = this.#keys.get(addr.hostname);
    let ep = ports?.get(addr.port);
    if (ep !== undefined) return ep;
    if (this.#keyCount >= this.#host.options.maxExchanges) { // bounded in all: start over
      this.#keys.clear();
      this.#keyCount = 0;
      ports = undefined;
    }
    if (ports === undefined) this.#keys.set(addr.hostname, ports = new Map());
    ports.set(addr.port, ep = endpointKey(addr));
    this.#keyCount++;
    return ep;
  }

  #onDatagram(data: Uint8Array, addr: Deno.NetAddr): void {
    const { stats } = this.#host.port;
    stats.frameIn();
    stats.bytesIn(data.length);
    const ep = this.#endpointOf(addr);
    let msg: CoapMessage;
    try {
      msg = decodeMessage(data);
    } catch (err) {
      if (!(err instanceof CoapSyntaxError)) throw err;
      stats.error(err.reason);
      stats.drop("bad_message");
      this.#host.log.debug("bad datagram", { endpoint: ep, error: err });
      // RFC 7252 §4.2: a Confirmable message with a format error is rejected with a Reset;
      // §4.3: other types are silently ignored; §3: unknown versions are silently ignored.
      if (!err.silent && err.header?.type === CoapType.CON) {
        this.sendMessage(emptyMessage(CoapType.RST, err.header.messageId), addr);
      }
      return;
    }
    switch (msg.type) {
      case CoapType.ACK:
        // RFC 7252 §4.2: an ACK carries a response or is Empty; anything else is ignored.
        if (msg.code !== Code.EMPTY && !isResponseCode(msg.code)) return stats.drop("bad_ack");
        this.#host.touched(ep);
        if (!this.retransmitter.settle(ep, msg.messageId, "ack")) stats.drop("stray_ack");
        return;
      case CoapType.RST:
        // RFC 7252 §4.2: a Reset MUST be Empty.
        if (msg.code !== Code.EMPTY) return stats.drop("bad_rst");
        this.#host.touched(ep);
        if (!this.retransmitter.settle(ep, msg.messageId, "rst")) {
          this.#host.reset(ep, msg.messageId);
        }
        return;
    }
    // CON or NON.
    if (msg.code === Code.EMPTY) {
      // RFC 7252 §4.3: an Empty CON is a ping, answered with a Reset ("CoAP ping").
      // An Empty NON is a format error: ignored (§4.3).
      if (msg.type === CoapType.CON) {
        this.#host.touched(ep);
        this.sendMessage(emptyMessage(CoapType.RST, msg.messageId), addr);
      } else stats.drop("empty_non");
      return;
    }
    if (isRequestCode(msg.code)) return this.#onRequest(msg, addr, ep);
    // A response in a CON/NON (we sent no request) or a reserved class 1/6/7 code: no context to
    // process it, RFC 7252 §4.2 (reject CON with Reset) and §4.3 (ignore NON).
    if (msg.type === CoapType.CON) {
      this.sendMessage(emptyMessage(CoapType.RST, msg.messageId), addr);
    }
    stats.drop(
      codeClass(msg.code) === 0 || isResponseCode(msg.code)
        ? "unexpected_response"
        : "reserved_code",
    );
  }

  #onRequest(msg: CoapMessage, addr: Deno.NetAddr, ep: string): void {
    const con = msg.type === CoapType.CON;
    const { options, port } = this.#host;
    // RFC 7252 §4.5: duplicate detection per endpoint over EXCHANGE_LIFETIME / NON_LIFETIME.
    const seen = this.#exchanges.get(ep, msg.messageId);
    if (seen >= 0) {
      port.stats.drop("duplicate");
      this.#host.touched(ep);
      if (!con) return; // §4.5: a duplicate NON is silently ignored
      // §4.5: the same ACK, the request not processed again; while it is still being processed
      // (no ACK yet) the duplicate is dropped: the answer or the empty ACK follows (§5.2.2).
      const reply = this.#exchanges.reply(seen);
      if (reply) this.send(reply, addr);
      return;
    }
    const slot = this.#exchanges.add(
      ep,
      msg.messageId,
      con ? options.exchangeLifetimeMs : options.nonLifetimeMs,
    );
    this.#host.request({ endpoint: ep, addr, request: msg, slot, separate: false, done: false });
  }

  /** What duplicates of the request of `x` get from now on (RFC 7252 §4.5). */
  #keepReply(x: Exchange, reply: Uint8Array): void {
    this.#exchanges.setReply(x.slot, x.endpoint, x.request.messageId, reply);
  }

  /** Rejects the request of `x` with a Reset (RFC 7252 §4.2, §4.3). */
  reject(x: Exchange): void {
    x.done = true;
    this.sendMessage(emptyMessage(CoapType.RST, x.request.messageId), x.addr);
  }

  /**
   * The answer of `x` is not ready: a CON gets an empty ACK after `separateResponseAfterMs` unless
   * the answer comes first, and the answer then goes as a separate response (RFC 7252 §5.2.2).
   * A duplicate arriving meanwhile is not acknowledged at once: the answer is usually microseconds
   * away (and then piggybacked); past the deadline the empty ACK goes out and is what duplicates
   * get (§4.5).
   */
  later(x: Exchange): void {
    if (x.request.type !== CoapType.CON || this.#host.port.closing) return;
    x.ackDeadline = this.#host.port.deadlines.add(
      this.#host.options.separateResponseAfterMs,
      () => {
        if (x.done || x.separate) return;
        x.separate = true;
        this.#keepReply(
          x,
          this.sendMessage(emptyMessage(CoapType.ACK, x.request.messageId), x.addr),
        );
      },
    );
  }

  /** No response goes out for `x` (RFC 7967): a CON still gets its empty ACK (§2). */
  acknowledge(x: Exchange): void {
    x.done = true;
    x.ackDeadline?.cancel();
    if (x.request.type === CoapType.CON && !x.separate) {
      this.#keepReply(x, this.sendMessage(emptyMessage(CoapType.ACK, x.request.messageId), x.addr));
    }
  }

  /**
   * Sends the response of `x`, made by `build` for the message type and ID it must have:
   * piggybacked in the ACK (same ID, RFC 7252 §5.2.1), NON to a NON request (§5.2.3), or a
   * separate CON retransmitted until acknowledged (§5.2.2). Says which: `"piggybacked"`,
   * `"non"`, or a promise of how the separate CON ended.
   */
  respond(
    x: Exchange,
    build: (type: CoapType, messageId: number) => CoapMessage,
  ): "piggybacked" | "non" | Promise<TransmitOutcome> {
    x.done = true;
    x.ackDeadline?.cancel();
    const req = x.request;
    if (req.type === CoapType.CON && !x.separate) {
      this.#keepReply(x, this.sendMessage(build(CoapType.ACK, req.messageId), x.addr));
      return "piggybacked";
    }
    const mid = this.nextMid(x.endpoint);
    if (req.type !== CoapType.CON) {
      this.sendMessage(build(CoapType.NON, mid), x.addr);
      return "non";
    }
    const bytes = encodeMessage(build(CoapType.CON, mid));
    return this.retransmitter.send(x.endpoint, mid, bytes, x.addr);
  }

  /**
   * Sends `messages` once each, without retransmission, and waits (at most 1 s) for the socket
   * to take them: the last words before closing.
   */
  async farewell(messages: Array<{ msg: CoapMessage; addr: Deno.NetAddr }>): Promise<void> {
    const conn = this.#conn;
    if (!conn || messages.length === 0) return;
    const { stats } = this.#host.port;
    const sends = messages.map(({ msg, addr }) => {
      const bytes = encodeMessage(msg);
      stats.frameOut();
      stats.bytesOut(bytes.length);
      return conn.send(bytes, addr).catch(() => {});
    });
    let timer: ReturnType<typeof setTimeout> | undefined;
    await Promise.race([
      Promise.all(sends),
      new Promise<void>((r) => timer = setTimeout(r, 1000)),
    ]);
    clearTimeout(timer);
  }

  /** Stops: closes the socket, cancels retransmissions, forgets exchanges. Idempotent. */
  close(): void {
    if (this.#closed) return;
    this.#closed = true;
    try {
      this.#conn?.close();
    } catch { /* already closed */ }
    this.retransmitter.close();
    this.#exchanges.clear();
    this.#mids.clear();
    this.#keys.clear();
    this.#keyCount = 0;
  }
}
