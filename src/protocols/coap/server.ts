/**
 * The CoAP listener: one UDP socket (`Deno.listenDatagram`, which needs the `net` unstable flag in
 * Deno 2) and the RFC 7252 message layer in front of the resources: CON/NON/ACK/RST, piggybacked
 * and separate responses, retransmission of the Confirmable messages it originates, message-ID
 * deduplication with cached replies, ping, critical-option checks; RFC 7641 Observe; RFC 7959
 * Block1 reassembly and Block2 slicing; `/.well-known/core` (RFC 6690). What the resources are is
 * decided by `mode`: Ferry's device resources (`device_resources.ts`) or the ETSI plugtest set
 * (`plugtest.ts`).
 *
 * @module
 */

import type { Core, DeadlineEntry, DevicePort, Logger, ProtocolSpec } from "../../core/mod.ts";
import type { ListenAddress, Listener } from "../listener.ts";
import { Block1Assembler, blockSize, decodeBlock, encodeBlock, szxFor } from "./block.ts";
import { CoapSyntaxError, decodeMessage, encodeMessage } from "./codec.ts";
import { createDeviceResources, type DeviceResources } from "./device_resources.ts";
import { ExchangeCache, type ExchangeEntry } from "./exchange_cache.ts";
import {
  type CoapMessage,
  type CoapOption,
  CoapType,
  Code,
  codeClass,
  emptyMessage,
  isRequestCode,
  isResponseCode,
} from "./message.ts";
import { Notifier } from "./notifier.ts";
import { type Observation, ObserverRegistry } from "./observe.ts";
import { createWellKnownResource } from "./well_known.ts";
import {
  decodeString,
  decodeUint,
  encodeString,
  encodeUint,
  firstBadCriticalOption,
  Opt,
  recognisedOptions,
} from "./option_codec.ts";
import { type CoapServerOptions, defaultCoapServerOptions } from "./options.ts";
import { createPlugtestResources } from "./plugtest.ts";
import {
  type CoapRequest,
  type CoapResource,
  type CoapResponse,
  compilePath,
  type PathMatcher,
} from "./resource.ts";
import { Retransmitter, type TransmitOutcome } from "./retransmitter.ts";

/** CoAP as the core knows it: the label of its messages, presence and metrics. */
export const COAP: ProtocolSpec = Object.freeze({ name: "coap" });

/** What a resource set gets from the server. */
export interface ResourceHost {
  /** The core, through CoAP's port. */
  readonly port: DevicePort;
  /** Effective options. */
  readonly options: Readonly<CoapServerOptions>;
  /** Logger of the listener. */
  readonly log: Logger;
  /** Aborted when the server closes (cancel timers of delayed handlers with it). */
  readonly signal: AbortSignal;
  /** Re-renders every observation of the target `path` (e.g. `/obs`) and notifies its observers. */
  notify(path: string): void;
  /** Number of observers of a target. */
  observers(path: string): number;
  /** Remembers which device an endpoint speaks for (pings and ACKs then refresh its presence). */
  bindEndpoint(endpoint: string, deviceId: string): void;
}

interface Route {
  resource: CoapResource;
  matcher: PathMatcher;
}

interface Exchange {
  endpoint: string;
  addr: Deno.NetAddr;
  request: CoapMessage;
  entry: ExchangeEntry;
  /** An empty ACK went out: the response must be a separate CON (RFC 7252 §5.2.2). */
  separate: boolean;
  /** The response went out. */
  done: boolean;
  /** Deadline of the empty ACK (on the core's shared timer heap, no timer per request). */
  ackDeadline?: DeadlineEntry;
}

interface CachedBody {
  code: number;
  payload: Uint8Array;
  contentFormat?: number;
  etag?: Uint8Array;
  expiresAt: number;
}

const EMPTY = new Uint8Array(0);
const text = new TextEncoder();

/** `host:port` key of an endpoint (IPv6 hosts bracketed). */
export function endpointKey(addr: Deno.NetAddr): string {
  return addr.hostname.includes(":")
    ? `[${addr.hostname}]:${addr.port}`
    : `${addr.hostname}:${addr.port}`;
}

/**
 * Serves CoAP over UDP on the core.
 *
 * @example
 * ```ts
 * import { Core } from "../../core/core.ts";
 * import { silentLogger } from "../../core/logger.ts";
 * import { CoapServer } from "./server.ts";
 * const core = new Core({ anonymous: true, log: silentLogger });
 * const server = new CoapServer(core, { port: 0 });
 * const { port } = await server.listen();
 * if (port === 0) throw new Error("no port");
 * await server.close();
 * await core.close();
 * ```
 */
export class CoapServer implements Listener {
  /** Listener name. */
  readonly name = "coap";
  #port: DevicePort;
  #opts: CoapServerOptions;
  #log: Logger;
  #conn: Deno.DatagramConn | undefined;
  #loop: Promise<void> | undefined;
  #closed = false;
  #abort = new AbortController();
  #routes: Route[] = [];
  #exchanges: ExchangeCache;
  #rt: Retransmitter;
  #observers: ObserverRegistry;
  #blocks: Block1Assembler;
  #block2 = new Map<string, CachedBody>();
  #endpointDevice = new Map<string, string>();
  #pending = new Set<Exchange>();
  #inflight = 0;
  #mids = new Map<string, number>();
  #device: DeviceResources | undefined;
  #notifier: Notifier;
  #sending = 0;

  /** Creates the server; call {@link listen} to start. */
  constructor(core: Core, options: Partial<CoapServerOptions> = {}) {
    const port = this.#port = core.port(COAP);
    this.#opts = { ...defaultCoapServerOptions, ...options };
    const o = this.#opts;
    if (!(o.blockSize >= 16 && o.blockSize <= 1024)) {
      throw new RangeError(
        `Cannot create CoAP server: blockSize ${o.blockSize} is not in 16..1024`,
      );
    }
    this.#log = port.log;
    const clock = port.clock;
    this.#exchanges = new ExchangeCache({ clock, maxEntries: o.maxExchanges });
    this.#rt = new Retransmitter({
      clock,
      ackTimeoutMs: o.ackTimeoutMs,
      ackRandomFactor: o.ackRandomFactor,
      maxRetransmit: o.maxRetransmit,
      random: o.random,
      send: (bytes, addr) => this.#send(bytes, addr),
    });
    this.#observers = new ObserverRegistry(o.maxObservers);
    this.#notifier = new Notifier({
      clock,
      log: this.#log,
      observers: this.#observers,
      retransmitter: this.#rt,
      confirmableIntervalMs: o.observeConfirmableIntervalMs,
      maxTrackedNon: o.maxObservers * 4,
      closed: () => this.#closed,
      nextMid: (ep) => this.#nextMid(ep),
      build: (type, mid, token, res, options, cacheKey) =>
        this.#buildResponse(type, mid, token, res, options, { cacheKey }),
      send: (bytes, addr) => this.#send(bytes, addr),
      counted: () => this.#port.stats.delivered(),
    });
    this.#blocks = new Block1Assembler({
      clock,
      maxBodySize: o.maxPayload,
      timeoutMs: o.blockTimeoutMs,
      maxTransfers: o.maxBlockTransfers,
    });
    const host: ResourceHost = {
      port,
      options: o,
      log: this.#log,
      signal: this.#abort.signal,
      notify: (path) => this.notify(path),
      observers: (path) => this.#observers.of(path).length,
      bindEndpoint: (ep, id) => this.#bindEndpoint(ep, id),
    };
    const resources: CoapResource[] = [];
    if (o.mode === "plugtest") resources.push(...createPlugtestResources(host));
    else {
      this.#device = createDeviceResources(host);
      resources.push(...this.#device.resources);
    }
    resources.push(...o.resources ?? []);
    resources.push(createWellKnownResource(resources));
    this.#routes = resources.map((resource) => ({ resource, matcher: compilePath(resource.path) }))
      .sort((a, b) => b.matcher.literals - a.matcher.literals);
  }

  /** Observers registered now. */
  get observerCount(): number {
    return this.#observers.size;
  }

  /** Confirmable messages awaiting an ACK. */
  get outstanding(): number {
    return this.#rt.size;
  }

  /** Binds the UDP socket and starts serving. */
  listen(): Promise<ListenAddress> {
    if (this.#conn) throw new TypeError("Cannot listen: already listening");
    if (this.#closed) throw new TypeError("Cannot listen: server is closed");
    this.#conn = Deno.listenDatagram({
      transport: "udp",
      hostname: this.#opts.hostname,
      port: this.#opts.port,
    });
    const addr = this.#conn.addr as Deno.NetAddr;
    this.#loop = this.#receiveLoop(this.#conn);
    this.#notifier.startSweep();
    this.#log.info("listening", {
      hostname: addr.hostname,
      port: addr.port,
      mode: this.#opts.mode,
    });
    return Promise.resolve({ hostname: addr.hostname, port: addr.port });
  }

  async #receiveLoop(conn: Deno.DatagramConn): Promise<void> {
    for (;;) {
      let data: Uint8Array;
      let addr: Deno.Addr;
      try {
        [data, addr] = await conn.receive();
      } catch (err) {
        if (this.#closed) return;
        // ICMP errors of earlier sends surface here on some systems; keep serving.
        this.#port.stats.error("receive_failed");
        this.#log.debug("receive failed", { error: err });
        continue;
      }
      if (this.#closed) return;
      try {
        this.#onDatagram(data, addr as Deno.NetAddr);
      } catch (err) {
        this.#port.stats.error("internal");
        this.#log.error("datagram handling failed", { error: err });
      }
    }
  }

  #send(bytes: Uint8Array, addr: Deno.NetAddr): void {
    const conn = this.#conn;
    if (!conn || this.#closed) return;
    // Bounded: datagrams the socket has not taken yet are capped; past it one is dropped (a CON
    // is retransmitted later, a lost ACK makes the client retransmit its request).
    if (this.#sending >= this.#opts.maxPendingSends) {
      this.#port.stats.drop("send_backlog");
      return;
    }
    this.#sending++;
    this.#port.stats.frameOut();
    this.#port.stats.bytesOut(bytes.length);
    conn.send(bytes, addr).then(this.#sent, this.#sendFailed); // (one promise per datagram)
  }

  #sent = (): void => {
    this.#sending--;
  };

  #sendFailed = (err: unknown): void => {
    this.#sending--;
    if (this.#closed) return;
    this.#port.stats.error("send_failed");
    this.#log.debug("send failed", { error: err });
  };

  #sendMessage(msg: CoapMessage, addr: Deno.NetAddr): Uint8Array {
    const bytes = encodeMessage(msg);
    this.#send(bytes, addr);
    return bytes;
  }

  /**
   * A message ID for a message Ferry originates to `endpoint`. RFC 7252 §4.4: IDs must not be
   * reused towards the same endpoint within EXCHANGE_LIFETIME, so each endpoint has its own
   * counter (random start): a server-wide counter would wrap in seconds under load. The table is
   * bounded like the deduplication table (least recently used endpoint forgotten first).
   */
  #nextMid(endpoint: string): number {
    const m = this.#mids;
    const prev = m.get(endpoint);
    const mid = prev === undefined ? Math.floor(Math.random() * 0x10000) : (prev + 1) & 0xffff;
    m.delete(endpoint);
    if (m.size >= this.#opts.maxExchanges) {
      const oldest = m.keys().next().value;
      if (oldest !== undefined) m.delete(oldest);
    }
    m.set(endpoint, mid);
    return mid;
  }

  #bindEndpoint(endpoint: string, deviceId: string): void {
    const m = this.#endpointDevice;
    if (m.get(endpoint) === deviceId) return;
    m.delete(endpoint);
    if (m.size >= this.#opts.maxExchanges) {
      const oldest = m.keys().next().value;
      if (oldest !== undefined) m.delete(oldest);
    }
    m.set(endpoint, deviceId);
  }

  #touchEndpoint(endpoint: string): void {
    const id = this.#endpointDevice.get(endpoint);
    if (id !== undefined && !this.#port.closing) {
      this.#port.seen(id, this.#opts.idleTimeoutMs);
    }
  }

  // ---- message layer (RFC 7252 §4) -------------------------------------------------------------

  #onDatagram(data: Uint8Array, addr: Deno.NetAddr): void {
    const stats = this.#port.stats;
    stats.frameIn();
    stats.bytesIn(data.length);
    const ep = endpointKey(addr);
    let msg: CoapMessage;
    try {
      msg = decodeMessage(data);
    } catch (err) {
      if (!(err instanceof CoapSyntaxError)) throw err;
      stats.error(err.reason);
      stats.drop("bad_message");
      this.#log.debug("bad datagram", { endpoint: ep, error: err });
      // RFC 7252 §4.2: a Confirmable message with a format error is rejected with a Reset;
      // §4.3: other types are silently ignored; §3: unknown versions are silently ignored.
      if (!err.silent && err.header?.type === CoapType.CON) {
        this.#sendMessage(emptyMessage(CoapType.RST, err.header.messageId), addr);
      }
      return;
    }
    switch (msg.type) {
      case CoapType.ACK:
        // RFC 7252 §4.2: an ACK carries a response or is Empty; anything else is ignored.
        if (msg.code !== Code.EMPTY && !isResponseCode(msg.code)) return this.#ignore("bad_ack");
        this.#touchEndpoint(ep);
        if (!this.#rt.settle(ep, msg.messageId, "ack")) {
          stats.drop("stray_ack");
        }
        return;
      case CoapType.RST:
        // RFC 7252 §4.2: a Reset MUST be Empty.
        if (msg.code !== Code.EMPTY) return this.#ignore("bad_rst");
        this.#touchEndpoint(ep);
        if (!this.#rt.settle(ep, msg.messageId, "rst")) {
          // RFC 7641 §3.6: a Reset in reply to a NON notification cancels the observation.
          this.#notifier.reset(ep, msg.messageId);
        }
        return;
    }
    // CON or NON.
    if (msg.code === Code.EMPTY) {
      // RFC 7252 §4.3: an Empty CON is a ping, answered with a Reset ("CoAP ping").
      // An Empty NON is a format error: ignored (§4.3).
      if (msg.type === CoapType.CON) {
        this.#touchEndpoint(ep);
        this.#sendMessage(emptyMessage(CoapType.RST, msg.messageId), addr);
      } else this.#ignore("empty_non");
      return;
    }
    if (isRequestCode(msg.code)) return this.#onRequest(msg, addr, ep);
    // A response in a CON/NON (we sent no request) or a reserved class 1/6/7 code: no context to
    // process it, RFC 7252 §4.2 (reject CON with Reset) and §4.3 (ignore NON).
    if (msg.type === CoapType.CON) {
      this.#sendMessage(emptyMessage(CoapType.RST, msg.messageId), addr);
    }
    this.#ignore(
      codeClass(msg.code) === 0 || isResponseCode(msg.code)
        ? "unexpected_response"
        : "reserved_code",
    );
  }

  #ignore(reason: string): void {
    this.#port.stats.drop(reason);
  }

  #onRequest(msg: CoapMessage, addr: Deno.NetAddr, ep: string): void {
    const con = msg.type === CoapType.CON;
    // RFC 7252 §4.5: duplicate detection per endpoint over EXCHANGE_LIFETIME / NON_LIFETIME.
    const seen = this.#exchanges.get(ep, msg.messageId);
    if (seen) {
      this.#port.stats.drop("duplicate");
      this.#touchEndpoint(ep);
      if (!con) return; // §4.5: a duplicate NON is silently ignored
      // §4.5: the same ACK, the request not processed again; while it is still being processed
      // (no ACK yet) the duplicate is dropped: the answer or the empty ACK follows (§5.2.2).
      if (seen.reply) this.#send(seen.reply, addr);
      return;
    }
    const entry = this.#exchanges.add(
      ep,
      msg.messageId,
      con ? this.#opts.exchangeLifetimeMs : this.#opts.nonLifetimeMs,
    );
    const x: Exchange = { endpoint: ep, addr, request: msg, entry, separate: false, done: false };
    // RFC 7252 §5.4.1: an unrecognised critical option → 4.02 for CON, reject a NON.
    const bad = firstBadCriticalOption(msg.options);
    if (bad !== undefined) {
      this.#port.stats.error("bad_option");
      if (!con) {
        entry.processing = false;
        this.#sendMessage(emptyMessage(CoapType.RST, msg.messageId), addr);
        return;
      }
      return this.#finish(x, {
        code: Code.BAD_OPTION,
        payload: text.encode(`Unrecognized critical option ${bad}`),
      });
    }
    const options = recognisedOptions(msg.options);
    // RFC 7252 §5.7.2: this server is no proxy.
    if (options.some((o) => o.number === Opt.PROXY_URI || o.number === Opt.PROXY_SCHEME)) {
      return this.#finish(x, { code: Code.PROXYING_NOT_SUPPORTED });
    }
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
      }
    }
    // RFC 7252 §6.5: a single empty Uri-Path is the root path.
    if (path.length === 1 && path[0] === "") path.length = 0;
    const route = this.#route(path);
    if (!route) return this.#finish(x, { code: Code.NOT_FOUND });
    const { resource, params } = route;
    if (resource.methods && !resource.methods.includes(msg.code)) {
      return this.#finish(x, { code: Code.METHOD_NOT_ALLOWED }); // RFC 7252 §5.9.2.6
    }
    if (accept !== undefined && resource.produces && !resource.produces.includes(accept)) {
      return this.#finish(x, { code: Code.NOT_ACCEPTABLE }); // RFC 7252 §5.10.4
    }
    const maxPayload = this.#opts.maxPayload;
    const tooLarge = (): CoapResponse => ({
      code: Code.REQUEST_ENTITY_TOO_LARGE, // RFC 7252 §5.9.2.9, RFC 7959 §4: Size1 says the limit
      options: [{ number: Opt.SIZE1, value: encodeUint(maxPayload) }],
    });
    if (size1 !== undefined && size1 > maxPayload) return this.#finish(x, tooLarge());
    let payload = msg.payload;
    let block1Echo: CoapOption | undefined;
    const req: CoapRequest = {
      method: msg.code,
      path,
      query,
      params,
      payload,
      options,
      contentFormat,
      accept,
      observe,
      confirmable: con,
      endpoint: ep,
      remoteAddress: addr.hostname,
      notification: false,
      message: msg,
    };
    if (block1) {
      const b = decodeBlock(block1);
      // RFC 7959 §2.2: SZX 7 is reserved → 4.00.
      if (!b) return this.#finish(x, { code: Code.BAD_REQUEST });
      if (b.num === 0 && resource.preflight) {
        const refused = resource.preflight(req);
        if (refused) return this.#finish(x, refused);
      }
      const target = `${ep}|${msg.code}|${path.join("/")}?${query.join("&")}`;
      const r = this.#blocks.offer(target, b, payload);
      switch (r.kind) {
        case "continue": // RFC 7959 §2.3: 2.31 Continue echoes the Block1 option
          return this.#finish(x, {
            code: Code.CONTINUE,
            options: [{ number: Opt.BLOCK1, value: encodeBlock(b) }],
          });
        case "incomplete": // RFC 7959 §2.9.2
          return this.#finish(x, { code: Code.REQUEST_ENTITY_INCOMPLETE });
        case "too_large":
          return this.#finish(x, tooLarge());
        case "busy":
          return this.#finish(x, this.#unavailable("block_transfers"));
        case "complete":
          payload = r.body;
          block1Echo = { number: Opt.BLOCK1, value: encodeBlock({ ...b, more: false }) };
      }
    } else if (payload.length > maxPayload) {
      return this.#finish(x, tooLarge());
    }
    let b2: { num: number; szx: number } | undefined;
    if (block2) {
      const b = decodeBlock(block2);
      if (!b) return this.#finish(x, { code: Code.BAD_REQUEST }); // RFC 7959 §2.2
      b2 = { num: b.num, szx: Math.min(b.szx, szxFor(this.#opts.blockSize)) };
    }
    req.payload = payload;
    // RFC 7959 §2.4: later blocks of a body rendered earlier come from the cache, so the
    // representation is consistent (and handlers with side effects run once).
    const cacheKey = `${ep}|${path.join("/")}?${query.join("&")}`;
    if (b2 && b2.num > 0) {
      const cached = this.#block2.get(cacheKey);
      if (cached && cached.expiresAt > this.#port.clock.now()) {
        return this.#finish(x, {
          code: cached.code,
          payload: cached.payload,
          contentFormat: cached.contentFormat,
          etag: cached.etag,
        }, { block2: b2 });
      }
      // A later block of a response to an unsafe method is not re-made by running it again.
      if (msg.code !== Code.GET) {
        return this.#finish(x, { code: Code.REQUEST_ENTITY_INCOMPLETE });
      }
    }
    let result: ReturnType<CoapResource["handle"]>;
    try {
      result = resource.handle(req);
    } catch (err) {
      this.#log.error("resource failed", { path: path.join("/"), error: err });
      this.#port.stats.error("handler_failed");
      return this.#finish(x, { code: Code.INTERNAL_SERVER_ERROR });
    }
    const complete = (res: CoapResponse | null) => {
      const r = res ?? { code: Code.CONTENT };
      const extra: FinishExtra = { block2: b2, block1: block1Echo, cacheKey };
      if (msg.code === Code.GET && resource.observable && observe !== undefined) {
        extra.observe = this.#observeRequest(x, req, resource, r, route.target);
      }
      this.#finish(x, r, extra);
    };
    if (!(result instanceof Promise)) return complete(result);
    // Asynchronous handler: bounded; a CON gets an empty ACK if it takes long (RFC 7252 §5.2.2).
    if (this.#inflight >= this.#opts.maxInflightRequests) {
      return this.#finish(x, this.#unavailable("inflight_requests"));
    }
    this.#inflight++;
    this.#pending.add(x);
    if (con) {
      const ackNow = () => {
        if (x.done || x.separate) return;
        x.separate = true;
        x.ackDeadline?.cancel();
        entry.reply = this.#sendMessage(emptyMessage(CoapType.ACK, msg.messageId), addr);
        entry.processing = false;
      };
      // A duplicate arriving meanwhile is not acknowledged at once: the answer is usually
      // microseconds away (and then piggybacked); past the deadline the empty ACK goes out and is
      // what duplicates get (RFC 7252 §4.5, §5.2.2).
      if (!this.#port.closing) {
        x.ackDeadline = this.#port.deadlines.add(this.#opts.separateResponseAfterMs, ackNow);
      }
    }
    result.then(complete, (err) => {
      this.#log.error("resource failed", { path: path.join("/"), error: err });
      this.#port.stats.error("handler_failed");
      this.#finish(x, { code: Code.INTERNAL_SERVER_ERROR });
    }).finally(() => {
      this.#inflight--;
      this.#pending.delete(x);
      x.ackDeadline?.cancel();
    });
  }

  #unavailable(reason: string): CoapResponse {
    this.#port.stats.drop(reason);
    return { code: Code.SERVICE_UNAVAILABLE, maxAge: this.#opts.retryAfterSec };
  }

  #route(path: string[]): (Route & { params: Record<string, string>; target: string }) | undefined {
    for (const r of this.#routes) {
      const params = r.matcher.match(path);
      if (params) return { ...r, params, target: "/" + path.join("/") };
    }
    return undefined;
  }

  // ---- Observe (RFC 7641) ----------------------------------------------------------------------

  /** Handles the Observe option of a GET; returns the sequence number to put in the response. */
  #observeRequest(
    x: Exchange,
    req: CoapRequest,
    resource: CoapResource,
    res: CoapResponse,
    target: string,
  ): number | undefined {
    const token = x.request.token;
    const existing = this.#observers.get(x.endpoint, token);
    if (req.observe === 1) { // RFC 7641 §3.6: deregistration
      if (existing) this.#observers.remove(existing);
      return undefined;
    }
    if (req.observe !== 0) return undefined;
    // RFC 7641 §4.1: only a 2.xx response registers (or keeps) the observer.
    if (codeClass(res.code) !== 2) {
      if (existing) this.#observers.remove(existing);
      return undefined;
    }
    const obs: Observation = {
      endpoint: x.endpoint,
      addr: x.addr,
      token,
      target,
      resource,
      // Kept lean (RFC 7641 §4.2 re-renders from path, query and Accept): no body, no options.
      request: {
        ...req,
        observe: undefined,
        payload: EMPTY,
        options: [],
        message: { ...req.message, options: [], payload: EMPTY },
      },
      confirmable: req.confirmable,
      seq: existing ? existing.seq : 1,
      lastConfirmableAt: this.#port.clock.now(),
      dirty: false,
    };
    if (existing?.inFlight !== undefined) this.#rt.cancel(existing.endpoint, existing.inFlight);
    // RFC 7641 §4.1: same endpoint and token replaces; a full list means no registration.
    if (!this.#observers.add(obs)) {
      this.#port.stats.drop("max_observers");
      return undefined;
    }
    obs.seq = (obs.seq + 1) & 0xffffff;
    return obs.seq;
  }

  /** Sends a notification to every observer of `target` (a path like `/obs`). */
  notify(target: string): void {
    this.#notifier.notify(target);
  }

  // ---- responses ---------------------------------------------------------------------------

  #buildResponse(
    type: CoapType,
    mid: number,
    token: Uint8Array,
    res: CoapResponse,
    extraOptions: CoapOption[],
    extra: FinishExtra,
  ): CoapMessage {
    const options: CoapOption[] = [...extraOptions, ...res.options ?? []];
    if (res.etag) options.push({ number: Opt.ETAG, value: res.etag });
    for (const p of res.locationPath ?? []) {
      options.push({ number: Opt.LOCATION_PATH, value: encodeString(p) });
    }
    for (const q of res.locationQuery ?? []) {
      options.push({ number: Opt.LOCATION_QUERY, value: encodeString(q) });
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
    const pref = szxFor(this.#opts.blockSize);
    const szx = extra.block2 ? extra.block2.szx : pref;
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
        this.#cacheBody(extra.cacheKey, res, payload);
      }
      const more = start + size < payload.length;
      options.push({ number: Opt.BLOCK2, value: encodeBlock({ num, more, szx }) });
      if (num === 0 && more) options.push({ number: Opt.SIZE2, value: encodeUint(payload.length) });
      payload = payload.subarray(start, Math.min(payload.length, start + size));
    }
    options.sort((a, b) => a.number - b.number);
    return { type, code: res.code, messageId: mid, token, options, payload };
  }

  #cacheBody(key: string, res: CoapResponse, payload: Uint8Array): void {
    const now = this.#port.clock.now();
    for (const [k, v] of this.#block2) { // time-ordered: drop the expired at the front
      if (v.expiresAt > now && this.#block2.size < this.#opts.maxBlockTransfers) break;
      this.#block2.delete(k);
    }
    this.#block2.delete(key);
    this.#block2.set(key, {
      code: res.code,
      payload,
      contentFormat: res.contentFormat,
      etag: res.etag,
      expiresAt: now + this.#opts.blockTimeoutMs,
    });
  }

  /** Sends the response of an exchange: piggybacked, separate (CON), or NON (RFC 7252 §5.2). */
  #finish(x: Exchange, res: CoapResponse, extra: FinishExtra = {}): void {
    if (x.done || this.#closed) return;
    x.done = true;
    const req = x.request;
    const con = req.type === CoapType.CON;
    // RFC 7967 §2.1: No-Response suppresses responses of the classes it names (2: 2.xx,
    // 8: 4.xx, 16: 5.xx); a CON still gets its (empty) ACK, RFC 7967 §2.
    const noResponse = req.options.find((o) => o.number === Opt.NO_RESPONSE);
    if (noResponse && extra.observe === undefined) {
      const mask = decodeUint(noResponse.value);
      const bit = { 2: 2, 4: 8, 5: 16 }[codeClass(res.code)] ?? 0;
      if (mask & bit) {
        x.entry.processing = false;
        if (con && !x.separate) {
          x.entry.reply = this.#sendMessage(emptyMessage(CoapType.ACK, req.messageId), x.addr);
        }
        return;
      }
    }
    const obsOpt: CoapOption[] = extra.observe !== undefined
      ? [{ number: Opt.OBSERVE, value: encodeUint(extra.observe) }]
      : [];
    if (con && !x.separate) { // RFC 7252 §5.2.1: piggybacked in the ACK, same message ID
      const msg = this.#buildResponse(CoapType.ACK, req.messageId, req.token, res, obsOpt, extra);
      x.entry.reply = this.#sendMessage(msg, x.addr);
      x.entry.processing = false;
      return;
    }
    const mid = this.#nextMid(x.endpoint);
    if (!con) { // RFC 7252 §5.2.3: a NON request gets a NON response
      x.entry.processing = false;
      this.#sendMessage(
        this.#buildResponse(CoapType.NON, mid, req.token, res, obsOpt, extra),
        x.addr,
      );
      res.onDelivered?.(false);
      return;
    }
    // RFC 7252 §5.2.2: separate response, Confirmable, retransmitted until acknowledged.
    const bytes = encodeMessage(
      this.#buildResponse(CoapType.CON, mid, req.token, res, obsOpt, extra),
    );
    this.#rt.send(x.endpoint, mid, bytes, x.addr).then((outcome: TransmitOutcome) => {
      if (outcome === "ack") res.onDelivered?.(true);
      else {
        res.onLost?.();
        if (extra.observe !== undefined) {
          const obs = this.#observers.get(x.endpoint, req.token);
          if (obs) this.#notifier.cancel(obs, outcome);
        }
      }
    });
  }

  // ---- shutdown ----------------------------------------------------------------------------

  /** Stops serving: cancels retransmissions, observers, transfers and pending handlers. Idempotent. */
  async close(): Promise<void> {
    if (!this.#closed) {
      this.#closed = true;
      this.#abort.abort(new Error("CoAP server closed"));
      await this.#farewell();
      try {
        this.#conn?.close();
      } catch { /* already closed */ }
      this.#notifier.close();
      this.#rt.close();
      this.#blocks.close();
      this.#observers.clear();
      this.#exchanges.clear();
      this.#block2.clear();
      this.#mids.clear();
      for (const x of this.#pending) {
        x.ackDeadline?.cancel();
        x.done = true;
      }
      this.#device?.close();
      this.#log.info("closed");
    }
    await this.#loop;
  }

  /**
   * Tells every observer the gateway is going away: a final NON 5.03 Service Unavailable with
   * Max-Age `retryAfterSec` and no Observe option, which ends the observation (RFC 7641 §3.2) and
   * says when to register again (RFC 7252 §5.9.3.4). Best effort: NON, not retransmitted; the wait
   * for the socket is bounded.
   */
  async #farewell(): Promise<void> {
    const conn = this.#conn;
    if (!conn) return;
    const sends: Promise<unknown>[] = [];
    for (const obs of this.#observers.all()) {
      const bytes = encodeMessage({
        type: CoapType.NON,
        code: Code.SERVICE_UNAVAILABLE,
        messageId: this.#nextMid(obs.endpoint),
        token: obs.token,
        options: [{ number: Opt.MAX_AGE, value: encodeUint(this.#opts.retryAfterSec) }],
        payload: EMPTY,
      });
      this.#port.stats.frameOut();
      this.#port.stats.bytesOut(bytes.length);
      sends.push(conn.send(bytes, obs.addr).catch(() => {}));
    }
    if (sends.length === 0) return;
    let timer: ReturnType<typeof setTimeout> | undefined;
    await Promise.race([
      Promise.all(sends),
      new Promise<void>((r) => timer = setTimeout(r, 1000)),
    ]);
    clearTimeout(timer);
  }

  /** Same as {@link close}. */
  [Symbol.asyncDispose](): Promise<void> {
    return this.close();
  }
}

interface FinishExtra {
  observe?: number;
  block1?: CoapOption;
  block2?: { num: number; szx: number };
  cacheKey?: string;
}
