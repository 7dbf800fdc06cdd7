/**
 * One MQTT network connection: transport and nothing more. It reads the socket the way every
 * stream protocol does (`src/net/chunk_reader.ts`: while idle one small read is pending, no decoder
 * is kept; each read's bytes go straight to the synchronous {@link MqttFrameDecoder} and are
 * handled in the same step, see there why MQTT takes no stream step per read), dispatches each
 * packet to the handler that owns it end to end, ack included
 * (`handle_connect.ts`, `handle_publish.ts`, `handle_ack.ts`, `handle_subscribe.ts`,
 * `handle_ping.ts`, `handle_disconnect.ts`; PUBLISH out in `outbound.ts`), and maps every error to
 * its reason code in one place ({@link MqttConnection.fail}). On any malformed packet or protocol
 * violation the connection is closed (v5: after a DISCONNECT or CONNACK with the reason code, MQTT 5
 * §4.13); other sessions are not affected. Writes go through a bounded {@link ConnWriter}; the
 * keepalive is watched by the core's supervisor.
 *
 * @module
 */

import type { Packet } from "mqtt-packet";
import { type ChunkConsumer, type ReadOptions, serveChunks } from "../../net/chunk_reader.ts";
import { ConnWriter, type ConnWriterOptions } from "../../net/conn_writer.ts";
import { OrderedAnswers } from "../../net/ordered_answers.ts";
import type { StreamConn, TransportCredentials } from "../../net/stream_conn.ts";
import type {
  Attachment,
  CloseReason,
  DeadlineEntry,
  DevicePort,
  Logger,
  PublishOptions,
  SessionDescription,
  SessionHandle,
} from "../../core/mod.ts";
import {
  codecLoaded,
  encodePacket,
  loadCodec,
  MqttFrameDecoder,
  type ProtocolVersion,
} from "./codec.ts";
import { fastConnect } from "./_fast_codec.ts";
import { encodeAck } from "./_fast_codec.ts";
import { MqttMalformedError, MqttProtocolError } from "./errors.ts";
import {
  type AcceptedConnect,
  Client,
  handleConnect,
  refuseConnect,
  type Will,
} from "./handle_connect.ts";
import { handleAck } from "./handle_ack.ts";
import { handleDisconnect } from "./handle_disconnect.ts";
import { handlePing } from "./handle_ping.ts";
import { handlePublish, type PublishContext } from "./handle_publish.ts";
import { handleSubscribe, handleUnsubscribe } from "./handle_subscribe.ts";
import type { MqttServerOptions } from "./options.ts";
import { Outbound } from "./outbound.ts";
import { closeReasonCode, ReasonCode } from "./reason_codes.ts";
import type { MqttSession, Outgoing, SessionLink } from "./session.ts";
import type { SessionStore } from "./session_store.ts";
import type { SharedSubscriptions } from "./shared_subscriptions.ts";

/** What a connection needs of its server (one object shared by every connection). */
export interface ConnectionContext {
  /** The core, through MQTT's port. */
  port: DevicePort;
  /** Resolved options. */
  options: Required<MqttServerOptions>;
  /** Logger of the adapter. */
  log: Logger;
  /** Sessions by client id. */
  store: SessionStore;
  /** Shared subscription groups. */
  shared: SharedSubscriptions;
  /** Called once when the connection has ended and its session was released. */
  onClosed?: (c: MqttConnection) => void;
  /** Options of every connection's writer (made by the first connection). */
  writerOptions?: ConnWriterOptions<MqttConnection>;
  /** Options of every connection's socket reader (made by the first connection). */
  readOptions?: ReadOptions;
  /**
   * The state file, when sessions are persistent: a QoS 1/2 PUBLISH is acknowledged only once the
   * writes it caused (queued for offline persistent sessions, retained) are committed.
   */
  durable?: { readonly pending: boolean; flushed(): Promise<boolean> };
}

/** The writer options shared by the connections of a server (callbacks get the connection). */
function writerOptions(ctx: ConnectionContext): ConnWriterOptions<MqttConnection> {
  const { port, options } = ctx;
  const stats = port.stats;
  return {
    maxPendingBytes: options.maxPendingBytes,
    drainTimeoutMs: options.drainTimeoutMs,
    clock: port.clock,
    onBytes: (n) => stats.bytesOut(n),
    onStall: (reason, c) => c.close({ code: "slow_consumer", message: reason }),
    // Behind by a quarter of the limit: hold delivery (and so the publishers) until drained.
    highWaterBytes: options.maxPendingBytes / 4,
    lowWaterBytes: options.maxPendingBytes / 8, // (resume while the socket still has work)
    onHigh: (c) => port.hold(c),
    onLow: (c) => port.unhold(c),
  };
}

const PINGRESP = new Uint8Array([0xd0, 0]);
let nextConnection = 0;

/**
 * True when handling `p` leaves no view of its frame behind once the port has kept none of its
 * message: PUBLISH at QoS 0/1 without properties or retain (payload views go to the port) and the
 * acknowledgements and PINGREQ (numbers only). Anything else (CONNECT's will, v5 properties, QoS 2
 * state, retained messages) is assumed to keep its bytes.
 */
function leavesNoView(p: Packet): boolean {
  switch (p.cmd) {
    case "publish":
      return !(p.qos === 2 || p.retain || p.properties !== undefined);
    case "pingreq":
    case "puback":
    case "pubrec":
    case "pubrel":
    case "pubcomp":
      return true;
    default:
      return false;
  }
}

/**
 * Serves one accepted connection until it closes.
 *
 * @example
 * ```ts ignore
 * const c = new MqttConnection(ctx, conn);
 * await c.run(); // resolves when the connection has ended and its session was released
 * ```
 */
export class MqttConnection implements SessionHandle, SessionLink, ChunkConsumer {
  /** Unique id of this connection. */
  get sessionId(): string {
    return `mqtt-conn-${this.#number}`; // made when asked (logs): idle connections keep a number
  }
  /** The protocol label. */
  get protocol(): string {
    return this.ctx.port.protocol;
  }
  /** Client Receive Maximum (v5), for the session's inflight window. */
  receiveMaximum = 65535;
  /** The server's shared parts. */
  readonly ctx: ConnectionContext;
  /** Protocol level (set by the CONNECT handler). */
  version: ProtocolVersion = 4;
  /** The connected client and its session (set by {@link MqttConnection.accept}). */
  client: Client | undefined;
  /** The will (set at CONNECT, cleared by a normal DISCONNECT). */
  will: Will | undefined;
  /** Incoming PUBLISH state (topic aliases, last valid topic), made on the first PUBLISH. */
  publishContext: PublishContext | undefined;
  /** Outgoing PUBLISH state (topic aliases), made on the first PUBLISH out that needs it. */
  outbound: Outbound | undefined;
  #conn: StreamConn;
  #writer: ConnWriter<MqttConnection>;
  #closing = false;
  #normalDisconnect = false;
  #closeReason: CloseReason | undefined;
  #attachment: Attachment | undefined;
  #deadline: DeadlineEntry | undefined;
  #abort: AbortController | undefined;
  #publishOptions: PublishOptions | undefined; // made on the first PUBLISH (its signal only if it waits)
  #answers: OrderedAnswers | undefined; // made on the first PUBLISH
  #dec: MqttFrameDecoder | undefined; // only while a packet is split across reads
  #rest: Uint8Array | undefined; // the current read's bytes not decoded yet
  #pending: Promise<void> | undefined; // what the packet just handled made the connection wait for
  #held: Packet | undefined; // a PUBLISH decoded while the flow gate was closed, not yet handled
  #readMark = -1; // port.held when the current read's packets may leave no view behind, else -1
  #number: number;
  #keepAlive = 0;
  #connectedAt = 0;

  /** Wraps an accepted connection (TCP, TLS, or a WebSocket adapted to bytes). */
  constructor(ctx: ConnectionContext, conn: StreamConn) {
    this.ctx = ctx;
    this.#conn = conn;
    this.#number = ++nextConnection;
    this.#writer = new ConnWriter<MqttConnection>(
      conn,
      ctx.writerOptions ??= writerOptions(ctx),
      this,
    );
  }

  /** The peer's address and port, for logs (computed when needed: idle connections keep none). */
  get peer(): string {
    try {
      const a = this.#conn.remoteAddr as Deno.NetAddr;
      return `${a.hostname}:${a.port}`;
    } catch {
      return "?";
    }
  }

  /** The peer's host address (as admitted by the per-address limit). */
  get address(): string {
    try {
      return (this.#conn.remoteAddr as Deno.NetAddr).hostname;
    } catch {
      return "?";
    }
  }

  /** Credentials the transport carried (a WebSocket upgrade's token), handed over once. */
  takeTransportCredentials(): TransportCredentials | undefined {
    return this.#conn.takeCredentials?.();
  }

  /** Client id once connected. */
  get clientId(): string | undefined {
    return this.client?.clientId;
  }

  /** True once the connection is closing: nothing more is read or sent. */
  get closing(): boolean {
    return this.#closing;
  }

  /**
   * Starts reading and handling packets until the connection ends; then `end` releases the session
   * and tells the server (`onClosed`).
   */
  run(): void {
    const o = this.ctx.options;
    // Connect timeout, then keepalive: one supervisor deadline.
    this.#deadline = this.ctx.port.supervise(this, o.connectTimeoutMs);
    serveChunks(
      this.#conn,
      this,
      this.ctx.readOptions ??= { minBuffer: o.readBufferMin, maxBuffer: o.readBufferMax },
    );
  }

  // ---- ChunkConsumer: the connection's life, read by `serveChunks` ----

  /**
   * Decodes one read and dispatches its packets in order; a promise when one must be awaited (the
   * rest follow once it settles). A malformed packet fails the connection after the packets before
   * it were handled.
   */
  chunk(bytes: Uint8Array): Promise<void> | undefined {
    if (this.client === undefined && this.#dec === undefined && bytes[0] !== 0x10) {
      // [MQTT-3.1.0-1] Not the start of a CONNECT (TLS, HTTP, a port scan): not MQTT, refused now
      // rather than held until the connect timeout.
      throw new MqttProtocolError(
        `Cannot accept connection: first byte 0x${
          bytes[0].toString(16).padStart(2, "0")
        } is not a CONNECT packet (not MQTT?)`,
      );
    }
    if (!codecLoaded()) {
      // mqtt-packet is imported on first need (start-up: docs/operations.md): a read that is one
      // plain 3.1.1 CONNECT is answered without it, and the import starts once that is done;
      // any other read waits for it.
      const plain = this.client === undefined && this.#dec === undefined &&
        fastConnect(bytes) !== undefined;
      if (!plain) return loadCodec().then(() => this.chunk(bytes));
      setTimeout(() => loadCodec().catch(() => {/* the next read that needs it reports it */}), 0);
    }
    this.#rest = bytes;
    this.#readMark = this.ctx.port.held;
    return this.#dispatchRest();
  }

  /**
   * Decodes and dispatches the rest of the current read one packet at a time, until a handler
   * returns a promise or the flow gate is closed before a PUBLISH: then it continues once that
   * settles. Decoding each packet only when it is handled means a connection that waits holds its
   * read's bytes, not a batch of decoded packets (which, held by a hundred publishers across a
   * hold, were copied by every young-generation GC and promoted).
   */
  #dispatchRest(): Promise<void> | undefined {
    const port = this.ctx.port;
    const held = this.#held;
    if (held !== undefined && !this.#closing) {
      // A PUBLISH decoded while the gate was closed (its frame began in an earlier read).
      if (!port.flowOpen) return port.flowing().then(() => this.#dispatchRest());
      this.#held = undefined;
      const pending = this.#dispatch(held);
      if (pending !== undefined) return pending.then(() => this.#dispatchRest());
    }
    const dec = this.#decoder();
    let bytes = this.#rest!;
    while (bytes.length !== 0 && !this.#closing) {
      if (dec.buffered === 0 && bytes[0] >> 4 === 3 && !port.flowOpen) {
        // A PUBLISH is next and a subscriber is behind: stop here (no more reads either) until
        // it has drained, rather than publish into the held pipeline, where each message would
        // queue and this connection would then wait with a promise per publish (backpressure,
        // `flow_gate.ts`).
        this.#rest = bytes;
        return port.flowing().then(() => this.#dispatchRest());
      }
      bytes = bytes.subarray(dec.parse(bytes, this.#handle));
      const pending = this.#pending;
      if (pending !== undefined) {
        this.#pending = undefined;
        this.#rest = bytes;
        return pending.then(() => this.#dispatchRest());
      }
      if (this.#held !== undefined) {
        this.#rest = bytes;
        return port.flowing().then(() => this.#dispatchRest());
      }
    }
    this.#rest = undefined;
    // Nothing left over: an idle connection keeps no decoder (a new one starts the next read).
    if (dec.buffered === 0) this.#dec = undefined;
    return undefined;
  }

  /**
   * Handles one decoded packet for {@link #dispatchRest}; true (stop decoding) when the handler
   * must be awaited, the connection is closing, or the packet is a PUBLISH met with the flow gate
   * closed (kept in `#held` until it opens).
   */
  readonly #handle = (p: Packet): boolean => {
    if (this.#readMark >= 0 && !leavesNoView(p)) this.#readMark = -1;
    if (p.cmd === "publish" && !this.ctx.port.flowOpen) {
      this.#held = p; // handled once the gate opens (see #dispatchRest)
      return true;
    }
    const pending = this.#dispatch(p);
    if (pending === undefined) return this.#closing;
    this.#pending = pending;
    return true;
  };

  /**
   * Whether the last read's bytes may still be viewed: yes unless its packets are all of the kinds
   * that keep no view of their frame and the port kept none of the messages they gave.
   */
  keepsChunk(): boolean {
    return this.#readMark < 0 || this.#readMark !== this.ctx.port.held;
  }

  /** Counts bytes read. */
  onBytes(n: number): void {
    this.ctx.port.stats.bytesIn(n);
  }

  /** Reading has ended: release the session and tell the server. */
  async end(error?: unknown): Promise<void> {
    if (error !== undefined) this.fail(error);
    try {
      await this.#cleanup();
    } catch (err) {
      this.ctx.log.error("connection cleanup failed", { peer: this.peer, error: err });
    }
    this.ctx.onClosed?.(this);
  }

  #decoder(): MqttFrameDecoder {
    const o = this.ctx.options;
    return this.#dec ??= new MqttFrameDecoder({
      budget: this.ctx.port.budget,
      protocolVersion: this.client !== undefined ? this.version : undefined,
      // Until CONNECT is accepted, a smaller cap: an unauthenticated peer cannot make us buffer much.
      maxPacketSize: this.client !== undefined
        ? o.maxPacketSize
        : Math.min(o.maxConnectPacketSize, o.maxPacketSize),
    });
  }

  // ---- dispatch ----

  #dispatch(p: Packet): Promise<void> | undefined {
    this.#deadline?.touch();
    this.ctx.port.stats.frameIn();
    const c = this.client;
    if (!c) {
      // [MQTT-3.1.0-1] the first packet must be CONNECT.
      if (p.cmd !== "connect") {
        throw new MqttProtocolError(`Cannot accept ${p.cmd}: the first packet must be CONNECT`);
      }
      handleConnect(this, p);
      return;
    }
    switch (p.cmd) {
      case "publish":
        return handlePublish(this, c, p);
      case "puback":
      case "pubrec":
      case "pubrel":
      case "pubcomp":
        handleAck(this, c, p);
        return;
      case "subscribe":
        handleSubscribe(this, c, p);
        return;
      case "unsubscribe":
        handleUnsubscribe(this, c, p);
        return;
      case "pingreq":
        handlePing(this);
        return;
      case "disconnect":
        handleDisconnect(this, c, p);
        return;
      case "connect":
        // [MQTT-3.1.0-2] a second CONNECT is a protocol violation.
        throw new MqttProtocolError("Cannot accept CONNECT: the client is already connected");
      default:
        throw new MqttProtocolError(`Cannot accept ${p.cmd} from a client`);
    }
  }

  // ---- state changes, called by the handlers ----

  /**
   * The CONNECT was accepted (before CONNACK goes out): the connection takes the session, the
   * keepalive replaces the connect timeout, and presence attaches when it speaks for a device.
   */
  accept(c: AcceptedConnect, session: MqttSession): void {
    this.client = new Client(c, session);
    this.#keepAlive = c.keepAlive;
    this.#connectedAt = this.ctx.port.clock.now();
    this.will = c.will;
    this.receiveMaximum = c.receiveMaximum;
    if (this.#dec) this.#dec.maxPacketSize = this.ctx.options.maxPacketSize;
    if (c.keepAlive > 0) this.#deadline?.touch(c.keepAlive * 1500); // [MQTT-3.1.2-22] 1.5x
    else {
      this.#deadline?.cancel();
      this.#deadline = undefined;
    }
    // Presence when it speaks for a device; an anonymous client, once it publishes (a monitoring
    // subscriber or a tool that never does is no device and leaves no retained status).
    const anonymous = c.who.principal.kind === "anonymous";
    this.#attachment = this.ctx.port.attach(c.who, this, anonymous ? "on_publish" : true);
  }

  /** What the connection shows of itself (the management API's session and device detail). */
  describe(): SessionDescription {
    const c = this.client;
    return {
      remoteAddress: this.peer,
      protocolVersion: this.version === 5 ? "5" : this.version === 4 ? "3.1.1" : "3.1",
      keepAliveSec: this.#keepAlive,
      connectedAt: c ? this.#connectedAt : undefined,
      clientId: c?.clientId,
      subscriptions: c?.session.subscriptionList() ?? [],
    };
  }

  /** A normal DISCONNECT was received: close without a reason of our own. */
  disconnected(): void {
    this.#normalDisconnect = true;
    this.shutdown();
  }

  /** The options every PUBLISH of this connection is published with: wait, abortable on close. */
  get publishOptions(): PublishOptions {
    // deno-lint-ignore no-this-alias
    const self = this;
    return this.#publishOptions ??= {
      wait: true,
      get signal() { // made only when a publish has to wait
        return (self.#abort ??= new AbortController()).signal;
      },
      lane: this.ctx.port.lane(),
    };
  }

  /**
   * The PUBACK/PUBREC order of this connection: answers go out in the order the PUBLISHes came
   * while reading goes on, up to the lane's window (`limits.publishWindow`).
   */
  get answers(): OrderedAnswers {
    return this.#answers ??= new OrderedAnswers(
      this.publishOptions.lane!.window,
      (err) => this.fail(err),
    );
  }

  // ---- SessionLink ----

  /** Sends a PUBLISH of the session; false when dropped for the client's Maximum Packet Size. */
  sendPublish(out: Outgoing, packetId: number | undefined, dup: boolean): boolean {
    if (this.#closing) return true;
    return (this.outbound ??= new Outbound(this)).send(out, packetId, dup);
  }

  /** Sends a PUBREL. */
  sendPubrel(packetId: number): void {
    this.send({ cmd: "pubrel", messageId: packetId });
  }

  // ---- errors, writing, shutdown ----

  /** Closes the connection, telling a v5 client why (DISCONNECT, MQTT 5 §3.14). Idempotent. */
  close(reason: CloseReason): void {
    if (this.#closing) return;
    this.#closeReason = reason;
    if (this.client !== undefined && this.version === 5) {
      this.#sendDisconnect(closeReasonCode(reason.code), reason.message);
    }
    this.shutdown();
  }

  /**
   * The one place errors become wire codes: a malformed packet or protocol violation closes the
   * connection, after CONNACK (not yet connected, v5 or an unsupported level) or DISCONNECT (v5)
   * with its reason code; any other error just ends it.
   */
  fail(err: unknown): void {
    const { port, log } = this.ctx;
    if (err instanceof MqttMalformedError || err instanceof MqttProtocolError) {
      port.stats.error(err instanceof MqttMalformedError ? "malformed_packet" : "protocol_error");
      port.throttled.warn("closing", "closing connection", {
        peer: this.peer,
        clientId: this.clientId,
        reasonCode: err.reasonCode,
        why: err.message,
        offset: err instanceof MqttMalformedError ? err.offset : undefined,
      });
      if (this.#closing) return;
      if (this.client === undefined) {
        if (err.reasonCode === ReasonCode.UnsupportedProtocolVersion) {
          this.version = 4; // unknown level: answer in 3.1.1 form, return code 1
          refuseConnect(this, err.reasonCode, err.message);
        } else if (this.version === 5) {
          // The version is 5 only once a CONNECT was read: answer with CONNACK and the reason.
          refuseConnect(this, err.reasonCode, err.message);
        }
      } else if (this.version === 5) this.#sendDisconnect(err.reasonCode, err.message);
      this.#closeReason ??= { code: "protocol_error", message: err.message };
      this.shutdown();
      return;
    }
    if (!this.#closing) {
      log.debug("connection ended", { peer: this.peer, error: err });
      this.shutdown();
    }
  }

  #sendDisconnect(reasonCode: number, why: string): void {
    const packet = { cmd: "disconnect", reasonCode } as Packet & { properties?: object };
    if (this.client?.problemInformation !== false) {
      packet.properties = { reasonString: why.slice(0, 200) };
    }
    let bytes = encodePacket(packet, 5);
    if (bytes.length > (this.client?.maximumPacketSize ?? Infinity)) {
      bytes = encodePacket({ cmd: "disconnect", reasonCode }, 5); // [MQTT-3.1.2-29]
    }
    this.write(bytes);
  }

  /** Sends a packet (acks and PINGRESP by the fast encoder). Nothing once closing. */
  send(packet: Packet): void {
    if (this.#closing) return;
    const p = packet as {
      cmd: string;
      messageId?: number;
      reasonCode?: number;
      properties?: unknown;
    };
    if (
      (p.cmd === "puback" || p.cmd === "pubrec" || p.cmd === "pubrel" || p.cmd === "pubcomp") &&
      !p.reasonCode && p.properties === undefined
    ) {
      this.write(encodeAck(p.cmd, p.messageId!));
    } else if (p.cmd === "pingresp") this.write(PINGRESP);
    else {
      let bytes = encodePacket(packet, this.version);
      const max = this.client?.maximumPacketSize ?? Infinity;
      if (bytes.length > max && p.properties !== undefined) {
        // [MQTT-3.1.2-24]: never more than the client takes; a Reason String or User Property
        // is the first thing to leave out ([MQTT-3.4.2-2] and the like).
        bytes = encodePacket({ ...packet, properties: undefined } as Packet, this.version);
      }
      if (bytes.length > max) {
        this.close({
          code: "protocol_error",
          message:
            `Cannot send ${p.cmd}: ${bytes.length} bytes exceed the client's Maximum Packet ` +
            `Size of ${max} [MQTT-3.1.2-24]`,
        });
        return;
      }
      this.write(bytes);
    }
  }

  /** Queues encoded bytes; false when the writer refused them (the connection is closing). */
  write(bytes: Uint8Array): boolean {
    if (!this.#writer.write(bytes)) return false;
    this.ctx.port.stats.frameOut();
    return true;
  }

  /** Reserves `n` bytes in the writer to encode into (false: the writer is failing). */
  reserve(n: number): Uint8Array | undefined {
    return this.#writer.reserve(n);
  }

  /** The writer is behind (past its high water mark). */
  get behind(): boolean {
    return this.#writer.behind;
  }

  /** Bytes queued and not yet written. */
  get pendingBytes(): number {
    return this.#writer.pendingBytes;
  }

  /** Stops reading and closes the socket once pending writes are flushed (bounded). */
  shutdown(): void {
    if (this.#closing) return;
    this.#closing = true;
    this.#abort?.abort(new Error("connection closing"));
    this.#writer.flushed().finally(() => {
      try {
        this.#conn.close(this.#closeReason); // a WebSocket tells the peer why in its Close frame
      } catch { /* already closed */ }
    });
  }

  async #cleanup(): Promise<void> {
    const { port, store, log } = this.ctx;
    this.#deadline?.cancel();
    this.#dec?.release(); // a packet cut off by the close gives its reservation back
    this.shutdown();
    port.unhold(this); // sends are ignored from now on: nothing to wait for
    await this.#writer.flushed();
    try {
      this.#conn.close(this.#closeReason);
    } catch { /* already closed */ }
    const c = this.client;
    const why = this.#closeReason?.code ?? (this.#normalDisconnect ? "disconnect" : "peer_closed");
    if (c) {
      c.session.detach(this);
      const reason = this.#closeReason?.code;
      // Will: on any end but a normal DISCONNECT or a server shutdown ([MQTT-3.1.2-8]).
      // (A normal DISCONNECT has already cleared it unless v5 reason 0x04 asked to keep it.)
      store.release(this, c.clientId, reason === "shutting_down" ? undefined : this.will);
      this.#attachment?.detach(why);
    }
    // A client that connected gets a line with the reason (as mosquitto's "Client x closed its
    // connection" / "has exceeded timeout"); a socket that never did, only at debug.
    log[c ? "info" : "debug"](c ? "client disconnected" : "connection closed", {
      peer: this.peer,
      clientId: c?.clientId,
      reason: why,
      detail: this.#closeReason?.message,
    });
  }
}
