/**
 * The CoAP listener: one UDP socket (`Deno.listenDatagram`, which needs the `net` unstable flag in
 * Deno 2) and what stands between it and the resources, each part in its own file:
 *
 * - `message_layer.ts`: RFC 7252 §4 and §5.2 — CON/NON/ACK/RST, deduplication, ping, message IDs,
 *   retransmission, piggybacked/separate/NON responses;
 * - `request.ts`: the request's options → the `CoapRequest` a resource sees (critical options,
 *   proxying);
 * - `responder.ts`: the response message, Block2 slicing (RFC 7959) and No-Response (RFC 7967);
 * - `notifier.ts` / `observe.ts`: Observe (RFC 7641);
 * - `block.ts`: Block1 reassembly;
 *
 * and this file: routing a request to its resource, the resource's answer (synchronous or not,
 * bounded), and the listener's life (listen, close). What the resources are is decided by `mode`:
 * Ferry's device resources (`device_resources.ts`) or the ETSI plugtest set (`plugtest/`), plus
 * `/.well-known/core` (RFC 6690).
 *
 * @module
 */

import type { Core, DevicePort, Logger, ProtocolSpec } from "../../core/mod.ts";
import type { ListenAddress, Listener } from "../listener.ts";
import { Block1Assembler, decodeBlock, encodeBlock } from "./block.ts";
import { createDeviceResources, type DeviceResources } from "./device_resources.ts";
import { type CoapOption, CoapType, Code } from "./message.ts";
import { type Exchange, MessageLayer } from "./message_layer.ts";
import { Notifier } from "./notifier.ts";
import { ObserverRegistry } from "./observe.ts";
import { encodeUint, Opt } from "./option_codec.ts";
import { type CoapServerOptions, defaultCoapServerOptions } from "./options.ts";
import { createPlugtestResources } from "./plugtest/resources.ts";
import { parseRequest } from "./request.ts";
import { type CoapResource, type CoapResponse, compilePath, type PathMatcher } from "./resource.ts";
import type { ResourceHost } from "./resource_host.ts";
import { Responder, type ResponseExtras, suppressedByNoResponse } from "./responder.ts";
import { createWellKnownResource } from "./well_known.ts";

/** CoAP as the core knows it: the label of its messages, presence and metrics. */
export const COAP: ProtocolSpec = Object.freeze({ name: "coap" });

interface Route {
  resource: CoapResource;
  matcher: PathMatcher;
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
  #layer: MessageLayer;
  #responder: Responder;
  #observers: ObserverRegistry;
  #notifier: Notifier;
  #blocks: Block1Assembler;
  #endpointDevice = new Map<string, string>();
  #pending = new Set<Exchange>();
  #inflight = 0;
  #device: DeviceResources | undefined;

  /** Creates the server; call {@link listen} to start. */
  constructor(core: Core, options: Partial<CoapServerOptions> = {}) {
    const port = this.#port = core.port(COAP);
    const o = this.#opts = { ...defaultCoapServerOptions, ...options };
    if (!(o.blockSize >= 16 && o.blockSize <= 1024)) {
      throw new RangeError(
        `Cannot create CoAP server: blockSize ${o.blockSize} is not in 16..1024`,
      );
    }
    const log = this.#log = port.log;
    const clock = port.clock;
    this.#layer = new MessageLayer({
      port,
      options: o,
      log,
      request: (x) => this.#onRequest(x),
      // RFC 7641 §3.6: a Reset in reply to a NON notification cancels the observation.
      reset: (ep, mid) => this.#notifier.reset(ep, mid),
      touched: (ep) => this.#touchEndpoint(ep),
    });
    this.#responder = new Responder({
      clock,
      blockSize: o.blockSize,
      maxBodies: o.maxBlockTransfers,
      bodyTimeoutMs: o.blockTimeoutMs,
    });
    this.#observers = new ObserverRegistry(o.maxObservers);
    const layer = this.#layer;
    this.#notifier = new Notifier({
      clock,
      log,
      observers: this.#observers,
      retransmitter: layer.retransmitter,
      confirmableIntervalMs: o.observeConfirmableIntervalMs,
      maxTrackedNon: o.maxObservers * 4,
      closed: () => this.#closed,
      nextMid: (ep) => layer.nextMid(ep),
      build: (type, mid, token, res, options, cacheKey) =>
        this.#responder.build(type, mid, token, res, options, { cacheKey }),
      send: (bytes, addr) => layer.send(bytes, addr),
      counted: () => port.stats.delivered(),
      dropped: (reason) => port.stats.drop(reason),
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
      log,
      signal: this.#abort.signal,
      notify: (path) => this.notify(path),
      endObservations: (path, final) => this.#notifier.end(path, final),
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
    return this.#layer.retransmitter.size;
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
    this.#loop = this.#layer.run(this.#conn);
    this.#notifier.startSweep();
    this.#log.debug("listening", { // the gateway logs the one info line per listener
      hostname: addr.hostname,
      port: addr.port,
      mode: this.#opts.mode,
    });
    return Promise.resolve({ hostname: addr.hostname, port: addr.port });
  }

  /** Sends a notification to every observer of `target` (a path like `/obs`). */
  notify(target: string): void {
    this.#notifier.notify(target);
  }

  // ---- presence of endpoints ---------------------------------------------------------------

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
      this.#port.seen(id, this.#opts.idleTimeoutMs, endpoint);
    }
  }

  // ---- requests ----------------------------------------------------------------------------

  #onRequest(x: Exchange): void {
    if (this.#closed) return;
    const msg = x.request;
    const parsed = parseRequest(msg, x.endpoint, x.addr.hostname);
    if (!parsed.ok) {
      if (parsed.error) this.#port.stats.error(parsed.error);
      return parsed.res ? this.#finish(x, parsed.res) : this.#layer.reject(x);
    }
    const { req, block1, block2, size1 } = parsed;
    const { path, query } = req;
    const route = this.#route(path);
    if (!route) return this.#finish(x, { code: Code.NOT_FOUND });
    const { resource } = route;
    req.params = route.params;
    if (resource.methods && !resource.methods.includes(msg.code)) {
      return this.#finish(x, { code: Code.METHOD_NOT_ALLOWED }); // RFC 7252 §5.9.2.6
    }
    if (req.accept !== undefined && resource.produces && !resource.produces.includes(req.accept)) {
      return this.#finish(x, { code: Code.NOT_ACCEPTABLE }); // RFC 7252 §5.10.4
    }
    const maxPayload = this.#opts.maxPayload;
    const tooLarge = (): CoapResponse => ({
      code: Code.REQUEST_ENTITY_TOO_LARGE, // RFC 7252 §5.9.2.9, RFC 7959 §4: Size1 says the limit
      options: [{ number: Opt.SIZE1, value: encodeUint(maxPayload) }],
    });
    if (size1 !== undefined && size1 > maxPayload) return this.#finish(x, tooLarge());
    let block1Echo: CoapOption | undefined;
    if (block1) {
      const b = decodeBlock(block1);
      // RFC 7959 §2.2: SZX 7 is reserved → 4.00.
      if (!b) return this.#finish(x, { code: Code.BAD_REQUEST });
      if (b.num === 0 && resource.preflight) {
        const refused = resource.preflight(req);
        if (refused) return this.#finish(x, refused);
      }
      const target = `${x.endpoint}|${msg.code}|${path.join("/")}?${query.join("&")}`;
      const r = this.#blocks.offer(target, b, req.payload);
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
          req.payload = r.body;
          block1Echo = { number: Opt.BLOCK1, value: encodeBlock({ ...b, more: false }) };
      }
    } else if (req.payload.length > maxPayload) {
      return this.#finish(x, tooLarge());
    }
    let b2: { num: number; szx: number } | undefined;
    if (block2) {
      const b = decodeBlock(block2);
      if (!b) return this.#finish(x, { code: Code.BAD_REQUEST }); // RFC 7959 §2.2
      b2 = { num: b.num, szx: this.#responder.szx(b.szx) };
    }
    // RFC 7959 §2.4: later blocks of a body rendered earlier come from the cache, so the
    // representation is consistent (and handlers with side effects run once). The key is built
    // only when a body is large enough to be cached (most requests never need it).
    const cacheKey = () => `${x.endpoint}|${path.join("/")}?${query.join("&")}`;
    if (b2 && b2.num > 0) {
      const cached = this.#responder.cached(cacheKey());
      if (cached) {
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
      return this.#failed(x, path, err);
    }
    const complete = (res: CoapResponse | null) => {
      const r = res ?? { code: Code.CONTENT };
      const extra: ResponseExtras = { block2: b2, block1: block1Echo, cacheKey };
      if (msg.code === Code.GET && resource.observable && req.observe !== undefined) {
        extra.observe = this.#notifier.register(req, x.addr, resource, r, "/" + path.join("/"));
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
    this.#layer.later(x);
    result.then(complete, (err) => this.#failed(x, path, err)).finally(() => {
      this.#inflight--;
      this.#pending.delete(x);
      x.ackDeadline?.cancel();
    });
  }

  #failed(x: Exchange, path: string[], err: unknown): void {
    this.#log.error("resource failed", { path: path.join("/"), error: err });
    this.#port.stats.error("handler_failed");
    this.#finish(x, { code: Code.INTERNAL_SERVER_ERROR });
  }

  #unavailable(reason: string): CoapResponse {
    this.#port.stats.drop(reason);
    return { code: Code.SERVICE_UNAVAILABLE, maxAge: this.#opts.retryAfterSec };
  }

  #route(path: string[]): { resource: CoapResource; params: Record<string, string> } | undefined {
    for (const r of this.#routes) {
      const params = r.matcher.match(path);
      if (params) return { resource: r.resource, params };
    }
    return undefined;
  }

  /** Sends the response of an exchange, and tells the resource what became of it. */
  #finish(x: Exchange, res: CoapResponse, extra: ResponseExtras = {}): void {
    if (x.done || this.#closed) return;
    const req = x.request;
    // RFC 7967 §2.1: No-Response suppresses responses of the classes it names; a CON still gets
    // its (empty) ACK, RFC 7967 §2.
    if (extra.observe === undefined && suppressedByNoResponse(req, res.code)) {
      return this.#layer.acknowledge(x);
    }
    const outcome = this.#layer.respond(x, (type, mid) =>
      this.#responder.build(
        type,
        mid,
        req.token,
        res,
        // A fresh array: the responder adds the response's options to it.
        extra.observe !== undefined
          ? [{ number: Opt.OBSERVE, value: encodeUint(extra.observe) }]
          : [],
        extra,
      ));
    if (outcome === "piggybacked") return;
    if (outcome === "non") return res.onDelivered?.(false);
    // RFC 7252 §5.2.2: a separate response, retransmitted until acknowledged.
    outcome.then((how) => {
      if (how === "ack") return res.onDelivered?.(true);
      res.onLost?.();
      if (extra.observe !== undefined) {
        const obs = this.#observers.get(x.endpoint, req.token);
        if (obs) this.#notifier.cancel(obs, how);
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
      this.#layer.close();
      this.#notifier.close();
      this.#blocks.close();
      this.#observers.clear();
      this.#responder.clear();
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
  #farewell(): Promise<void> {
    const maxAge = [{ number: Opt.MAX_AGE, value: encodeUint(this.#opts.retryAfterSec) }];
    return this.#layer.farewell(
      this.#observers.all().map((obs) => ({
        addr: obs.addr,
        msg: {
          type: CoapType.NON,
          code: Code.SERVICE_UNAVAILABLE,
          messageId: this.#layer.nextMid(obs.endpoint),
          token: obs.token,
          options: maxAge,
          payload: new Uint8Array(0),
        },
      })),
    );
  }

  /** Same as {@link close}. */
  [Symbol.asyncDispose](): Promise<void> {
    return this.close();
  }
}
