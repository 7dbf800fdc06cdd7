/**
 * One MQTT network connection: reads the socket with `conn.read` into a small adaptive buffer
 * (without a stream pipeline per connection, unlike FBP/1's `src/net/burst_source.ts`: an idle
 * connection then holds one 64-byte buffer and one pending read, and no decoder unless a packet
 * is split across reads), decodes with the synchronous core of the MQTT decoder, handles one packet at a time (so a full pipeline stops socket reads), writes through a
 * bounded {@link ConnWriter}, watches keepalive via the core's supervisor, and carries a session.
 * On any malformed packet or protocol violation the connection is closed (v5: after a DISCONNECT
 * or CONNACK with the reason code, MQTT 5 §4.13); other sessions are not affected.
 *
 * @module
 */

import type { IConnackPacket, IDisconnectPacket, IPublishPacket, Packet } from "mqtt-packet";
import { Buffer } from "node:buffer";
import { isClosedError } from "../../net/closed_error.ts";
import { ConnWriter, type ConnWriterOptions } from "../../net/conn_writer.ts";
import type {
  Attachment,
  CloseReason,
  DeadlineEntry,
  DevicePort,
  Logger,
  PublishOptions,
  PublishResult,
  SessionHandle,
} from "../../core/mod.ts";
import { encodePacket, MqttFrameDecoder, type ProtocolVersion } from "./codec.ts";
import { encodeAck, encodePublish } from "./_fast_codec.ts";
import { MqttMalformedError, MqttProtocolError } from "./errors.ts";
import { type AcceptedConnect, evaluateConnect, type Will } from "./handle_connect.ts";
import { evaluatePublish, type PublishContext } from "./handle_publish.ts";
import { handleSubscribe, handleUnsubscribe, type SubscribeContext } from "./handle_subscribe.ts";
import type { MqttServerOptions } from "./options.ts";
import { toPublishProperties } from "./properties.ts";
import {
  closeReasonCode,
  connackReturnCode,
  ReasonCode,
  refusalReasonCode,
} from "./reason_codes.ts";
import type { MqttSession, Outgoing, SessionLink } from "./session.ts";
import type { SessionStore } from "./session_store.ts";
import type { SharedSubscriptions } from "./shared_subscriptions.ts";

/** What a connection needs of its server. */
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
  /**
   * The state file, when sessions are persistent: a QoS 1/2 PUBLISH is acknowledged only once the
   * writes it caused (queued for offline persistent sessions, retained) are committed.
   */
  durable?: { readonly pending: boolean; flushed(): Promise<void> };
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
const NO_BYTES: Uint8Array = new Uint8Array(0);
/** Fields of the PUBLISH being encoded on the hot path (one object, reused: encoding is sync). */
const PUBLISH_FIELDS = {
  topic: "",
  payload: NO_BYTES,
  qos: 0,
  retain: false,
  dup: false,
  messageId: undefined as number | undefined,
};

/** A Buffer view (no copy) of bytes, as mqtt-packet's encoder requires. */
function asBuffer(b: Uint8Array): Buffer {
  return Buffer.isBuffer(b) ? b : Buffer.from(b.buffer, b.byteOffset, b.byteLength);
}
let nextConnection = 0;

/**
 * What a connection keeps of its accepted CONNECT: a class with fixed fields, so an idle
 * connection holds a few words instead of the whole decision object.
 */
class Client {
  readonly clientId: string;
  readonly who: AcceptedConnect["who"];
  readonly deviceId: string | undefined;
  readonly sessionExpirySec: number;
  readonly maximumPacketSize: number;
  readonly topicAliasMaximum: number;
  readonly problemInformation: boolean;
  constructor(c: AcceptedConnect) {
    this.clientId = c.clientId;
    this.who = c.who;
    this.deviceId = c.deviceId;
    this.sessionExpirySec = c.sessionExpirySec;
    this.maximumPacketSize = c.maximumPacketSize;
    this.topicAliasMaximum = c.topicAliasMaximum;
    this.problemInformation = c.problemInformation;
  }
}

/**
 * Serves one accepted TCP connection until it closes.
 *
 * @example
 * ```ts ignore
 * const c = new MqttConnection(ctx, conn);
 * await c.run(); // resolves when the connection has ended and its session was released
 * ```
 */
export class MqttConnection implements SessionHandle, SessionLink {
  /** Unique id of this connection. */
  get sessionId(): string {
    return `mqtt-conn-${this.#number}`; // made when asked (logs): idle connections keep a number
  }
  /** Always `mqtt`. */
  get protocol(): "mqtt" {
    return "mqtt";
  }
  /** Client Receive Maximum (v5), for the session's inflight window. */
  receiveMaximum = 65535;
  #ctx: ConnectionContext;
  #conn: Deno.Conn;
  #writer: ConnWriter<MqttConnection>;
  #version: ProtocolVersion = 4;
  #connected = false;
  #closing = false;
  #normalDisconnect = false;
  #closeReason: CloseReason | undefined;
  #accepted: Client | undefined;
  #attachment: Attachment | undefined;
  #session: MqttSession | undefined;
  #deadline: DeadlineEntry | undefined;
  #abort: AbortController | undefined;
  #will: Will | undefined;
  #publishContext: PublishContext | undefined; // made on the first PUBLISH, then reused
  #publishOptions: PublishOptions | undefined; // likewise (its abort signal made only if it waits)
  #aliasesOut: Map<string, number> | undefined;
  #dec: MqttFrameDecoder | undefined;
  #size = 0; // next read's buffer size
  #packets: Packet[] | undefined; // decoded from the current read, dispatched up to #next
  #next = 0;
  #number: number;
  #tooLarge = false;
  /** The connection whose PUBLISH is being encoded (encoding is synchronous). */
  static #encoding: MqttConnection | undefined;
  /** Reserves the encoded PUBLISH's bytes in the writer of {@link MqttConnection.#encoding}. */
  static #reserve = (n: number): Uint8Array | undefined => MqttConnection.#encoding!.#reserveOut(n);
  #reserveOut(n: number): Uint8Array | undefined {
    // [MQTT-3.1.2-24], [MQTT-3.1.2-25]: never send more than the client accepts.
    if (n > (this.#accepted?.maximumPacketSize ?? Infinity)) {
      this.#tooLarge = true;
      return undefined;
    }
    return this.#writer.reserve(n);
  }
  get #sheddingBytes(): number {
    return this.#ctx.options.maxPendingBytes / 2;
  }

  /** Wraps an accepted connection. */
  constructor(ctx: ConnectionContext, conn: Deno.Conn) {
    this.#ctx = ctx;
    this.#conn = conn;
    this.#number = ++nextConnection;
    this.#writer = new ConnWriter<MqttConnection>(
      conn,
      ctx.writerOptions ??= writerOptions(ctx),
      this,
    );
  }

  /** The peer's address, for logs (computed when needed: idle connections do not keep it). */
  get #peer(): string {
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

  /** Client id once connected. */
  get clientId(): string | undefined {
    return this.#accepted?.clientId;
  }

  /** Reads and handles packets until the connection ends, then releases the session. Never rejects. */
  async run(): Promise<void> {
    // Few locals on purpose: an idle connection's suspended frame keeps every register of this
    // function, so decoding and dispatch live in synchronous methods with their state in fields.
    try {
      this.#start();
      while (!this.#closing) {
        const buf = new Uint8Array(this.#size);
        let n: number | null = null;
        try {
          n = await this.#conn.read(buf);
        } catch (err) {
          if (!isClosedError(err)) throw err;
        }
        if (n === null || this.#closing) break;
        let pending = this.#onRead(buf, n); // a promise only while the core takes a PUBLISH
        while (pending) {
          await pending;
          pending = this.#dispatchRest();
        }
      }
    } catch (err) {
      this.#fail(err);
    } finally {
      try {
        await this.#cleanup();
      } catch (err) {
        this.#ctx.log.error("connection cleanup failed", { peer: this.#peer, error: err });
      }
      this.#ctx.onClosed?.(this);
    }
  }

  #start(): void {
    const { port, options } = this.#ctx;
    // Connect timeout, then keepalive: one supervisor deadline.
    this.#deadline = port.supervise(this, options.connectTimeoutMs);
    this.#size = options.readBufferMin;
  }

  /** Decodes one read and dispatches its packets; returns a promise when one must be awaited. */
  #onRead(buf: Uint8Array, n: number): Promise<void> | undefined {
    const { port, options } = this.#ctx;
    port.stats.bytesIn(n);
    // Grow while reads fill the buffer; shrink when they come back small (cheap idle).
    const size = this.#size;
    if (n === size && size < options.readBufferMax) {
      this.#size = Math.min(options.readBufferMax, size * 4);
    } else if (n < size / 8 && size > options.readBufferMin) {
      this.#size = Math.max(options.readBufferMin, size / 4);
    }
    const dec = this.#dec ??= new MqttFrameDecoder({
      protocolVersion: this.#connected ? this.#version : undefined,
      // Until CONNECT is accepted, a smaller cap: an unauthenticated peer cannot make us buffer much.
      maxPacketSize: this.#connected
        ? options.maxPacketSize
        : Math.min(options.maxConnectPacketSize, options.maxPacketSize),
    });
    this.#packets = dec.push(n === buf.length ? buf : buf.subarray(0, n));
    // Nothing left over: an idle connection keeps no decoder (a new one starts the next read).
    if (dec.buffered === 0) this.#dec = undefined;
    this.#next = 0;
    return this.#dispatchRest();
  }

  /** Dispatches the packets of the current read from `#next` on, until one returns a promise. */
  #dispatchRest(): Promise<void> | undefined {
    const packets = this.#packets!;
    while (this.#next < packets.length && !this.#closing) {
      const pending = this.#dispatch(packets[this.#next++]);
      if (pending) return pending;
      const max = this.#ctx.options.maxPacketSize;
      const dec = this.#dec;
      if (this.#connected && dec && dec.maxPacketSize !== max) dec.maxPacketSize = max;
    }
    this.#packets = undefined;
    return undefined;
  }

  /** Closes the connection, telling a v5 client why (DISCONNECT, MQTT 5 §3.14). Idempotent. */
  close(reason: CloseReason): void {
    if (this.#closing) return;
    this.#closeReason = reason;
    if (this.#connected && this.#version === 5) {
      this.#sendDisconnect(closeReasonCode(reason.code), reason.message);
    }
    this.#shutdown();
  }

  // ---- SessionLink ----

  /** Sends a PUBLISH of the session; false when dropped for the client's Maximum Packet Size. */
  sendPublish(out: Outgoing, packetId: number | undefined, dup: boolean): boolean {
    if (this.#closing) return true;
    const { port } = this.#ctx;
    const stats = port.stats;
    if (out.qos === 0 && this.#writer.behind && this.#writer.pendingBytes > this.#sheddingBytes) {
      // Still behind after the core stopped waiting for us: QoS 0 may be dropped (MQTT 5 §4.3.1),
      // which keeps a slow subscriber connected with bounded memory.
      stats.drop("slow_subscriber");
      return true;
    }
    const msg = out.msg;
    if (
      msg.properties === undefined && out.subIds === undefined &&
      (this.#version !== 5 || !this.#accepted?.topicAliasMaximum)
    ) {
      // Hot path, nothing but the fixed fields: encoded straight into the writer's chunk.
      const f = PUBLISH_FIELDS;
      f.topic = msg.topic;
      f.payload = msg.payload;
      f.qos = out.qos;
      f.retain = out.retain;
      f.dup = dup;
      f.messageId = packetId;
      this.#tooLarge = false;
      MqttConnection.#encoding = this;
      const done = encodePublish(f, this.#version === 5, MqttConnection.#reserve);
      MqttConnection.#encoding = undefined;
      f.payload = NO_BYTES;
      if (done) {
        stats.frameOut();
        stats.delivered();
        return true;
      }
      if (!this.#tooLarge) return true; // the writer failed: the connection is closing
      stats.drop("too_large_for_client");
      return false;
    }
    const packet: IPublishPacket = {
      cmd: "publish",
      topic: msg.topic,
      payload: asBuffer(msg.payload),
      qos: out.qos,
      retain: out.retain,
      dup,
      messageId: packetId,
    };
    let newAlias: string | undefined;
    if (this.#version === 5) {
      const props = toPublishProperties(msg.properties, port.clock.now()) ?? {};
      if (out.subIds?.length) {
        props.subscriptionIdentifier = out.subIds.length === 1 ? out.subIds[0] : out.subIds;
      }
      const max = this.#accepted?.topicAliasMaximum ?? 0;
      if (max > 0) {
        // MQTT 5 §3.3.2.3.4: aliases are per connection, assigned while there is room.
        const aliases = this.#aliasesOut ??= new Map();
        const known = aliases.get(msg.topic);
        if (known !== undefined) {
          props.topicAlias = known;
          packet.topic = "";
        } else if (aliases.size < max) {
          props.topicAlias = aliases.size + 1;
          aliases.set(msg.topic, props.topicAlias);
          newAlias = msg.topic;
        }
      }
      if (Object.keys(props).length) packet.properties = props;
    }
    const bytes = packet.properties === undefined
      ? encodePublish(packet as Parameters<typeof encodePublish>[0], this.#version === 5)
      : encodePacket(packet, this.#version);
    if (bytes.length > (this.#accepted?.maximumPacketSize ?? Infinity)) {
      // [MQTT-3.1.2-24], [MQTT-3.1.2-25]: never send more than the client accepts.
      if (newAlias !== undefined) this.#aliasesOut!.delete(newAlias);
      stats.drop("too_large_for_client");
      return false;
    }
    this.#write(bytes);
    stats.delivered();
    return true;
  }

  /** Sends a PUBREL. */
  sendPubrel(packetId: number): void {
    this.#send({ cmd: "pubrel", messageId: packetId });
  }

  // ---- dispatch ----

  #dispatch(p: Packet): Promise<void> | undefined {
    this.#deadline?.touch();
    this.#ctx.port.stats.frameIn();
    if (!this.#connected) {
      // [MQTT-3.1.0-1] the first packet must be CONNECT.
      if (p.cmd !== "connect") {
        throw new MqttProtocolError(`Cannot accept ${p.cmd}: the first packet must be CONNECT`);
      }
      this.#onConnect(p);
      return;
    }
    const session = this.#session!;
    switch (p.cmd) {
      case "publish":
        return this.#onPublish(p);
      case "puback":
        session.puback(p.messageId!);
        return;
      case "pubrec":
        if (!session.pubrec(p.messageId!, p.reasonCode ?? 0)) {
          // Unknown id: complete the peer's flow (v5: Packet Identifier not found).
          this.#send(
            this.#version === 5
              ? {
                cmd: "pubrel",
                messageId: p.messageId,
                reasonCode: ReasonCode.PacketIdentifierNotFound,
              }
              : { cmd: "pubrel", messageId: p.messageId },
          );
        }
        return;
      case "pubcomp":
        session.pubcomp(p.messageId!);
        return;
      case "pubrel": {
        // [MQTT-4.3.3-11]: PUBCOMP whether or not the id is known (v5: 0x92 when unknown).
        const known = session.releaseInbound(p.messageId!);
        this.#send(
          this.#version === 5 && !known
            ? {
              cmd: "pubcomp",
              messageId: p.messageId,
              reasonCode: ReasonCode.PacketIdentifierNotFound,
            }
            : { cmd: "pubcomp", messageId: p.messageId },
        );
        return;
      }
      case "subscribe": {
        const r = handleSubscribe(p, this.#subscribeContext());
        if (r.refused.length) {
          this.#ctx.port.stats.drop("subscription_refused", r.refused.length);
          this.#ctx.log.info("subscription refused", {
            clientId: this.clientId,
            refused: r.refused,
          });
        }
        this.#send({ cmd: "suback", messageId: p.messageId, granted: r.granted });
        for (const out of r.retained) session.enqueue(out);
        return;
      }
      case "unsubscribe": {
        const codes = handleUnsubscribe(p, this.#subscribeContext());
        // [MQTT-3.10.4-4] UNSUBACK even when nothing matched.
        this.#send(
          this.#version === 5
            ? { cmd: "unsuback", messageId: p.messageId, granted: codes }
            : { cmd: "unsuback", messageId: p.messageId } as Packet,
        );
        return;
      }
      case "pingreq":
        this.#send({ cmd: "pingresp" });
        return;
      case "disconnect":
        this.#onDisconnect(p);
        return;
      case "connect":
        // [MQTT-3.1.0-2] a second CONNECT is a protocol violation.
        throw new MqttProtocolError("Cannot accept CONNECT: the client is already connected");
      default:
        throw new MqttProtocolError(`Cannot accept ${p.cmd} from a client`);
    }
  }

  #subscribeContext(): SubscribeContext {
    return {
      version: this.#version,
      who: this.#accepted!.who,
      session: this.#session!,
      shared: this.#ctx.shared,
      port: this.#ctx.port,
      maxSubscriptions: this.#ctx.options.maxSubscriptions,
    };
  }

  #onConnect(p: Packet & { cmd: "connect" }): void {
    const { port, options, store, log } = this.#ctx;
    const v = p.protocolVersion;
    if (v === 3 || v === 4 || v === 5) this.#version = v;
    const c = evaluateConnect(p, port, options, this.address);
    if (!c.ok) {
      log.info("connection refused", {
        peer: this.#peer,
        clientId: p.clientId,
        reasonCode: c.reasonCode,
        why: c.message,
      });
      port.stats.error("connect_refused");
      this.#refuse(c.reasonCode, c.message, p.properties?.maximumPacketSize);
      return;
    }
    const opened = store.open(c, this);
    if (!opened.ok) {
      this.#refuse(ReasonCode.QuotaExceeded, opened.message, c.maximumPacketSize);
      return;
    }
    this.#accepted = new Client(c);
    this.#session = opened.session;
    this.#will = c.will;
    this.receiveMaximum = c.receiveMaximum;
    this.#connected = true;
    if (c.keepAlive > 0) this.#deadline?.touch(c.keepAlive * 1500); // [MQTT-3.1.2-22] 1.5x
    else {
      this.#deadline?.cancel();
      this.#deadline = undefined;
    }
    this.#attachment = port.attach(c.who, this); // presence when it speaks for a device
    const connack: IConnackPacket = {
      cmd: "connack",
      // [MQTT-3.2.2-2] .. [MQTT-3.2.2-3]; 3.1 has no session present flag.
      sessionPresent: this.#version !== 3 && opened.present,
    };
    if (this.#version === 5) {
      connack.reasonCode = ReasonCode.Success;
      const props: NonNullable<IConnackPacket["properties"]> = {
        receiveMaximum: options.receiveMaximum,
        topicAliasMaximum: options.maxTopicAlias,
      };
      if (options.maxPacketSize < 268_435_455) props.maximumPacketSize = options.maxPacketSize;
      if (c.assigned) props.assignedClientIdentifier = c.clientId; // [MQTT-3.2.2-16]
      if (c.expiryCapped) props.sessionExpiryInterval = c.sessionExpirySec;
      if (c.serverKeepAlive !== undefined) props.serverKeepAlive = c.serverKeepAlive;
      connack.properties = props;
    } else connack.returnCode = 0;
    this.#send(connack);
    log.debug("client connected", {
      peer: this.#peer,
      clientId: c.clientId,
      version: this.#version,
      principal: c.who.principal.kind,
      sessionPresent: opened.present,
    });
    // [MQTT-4.4.0-1] resend in-flight messages, then the queue, after CONNACK.
    opened.session.attach(this);
  }

  #refuse(reasonCode: number, message: string, maxPacketSize = Infinity): void {
    // [MQTT-3.2.2-4] session present 0 on a refusal; [MQTT-3.2.2-5] then close.
    const connack: IConnackPacket = { cmd: "connack", sessionPresent: false };
    if (this.#version === 5) {
      connack.reasonCode = reasonCode;
      connack.properties = { reasonString: message.slice(0, 200) };
      // [MQTT-3.2.2-19] no Reason String that would exceed the client's Maximum Packet Size.
      if (encodePacket(connack, 5).length > maxPacketSize) delete connack.properties;
    } else connack.returnCode = connackReturnCode(reasonCode);
    this.#send(connack);
    this.#shutdown();
  }

  #onPublish(p: IPublishPacket): Promise<void> | undefined {
    const { port, options, log } = this.#ctx;
    const session = this.#session!;
    const c = this.#accepted!;
    const id = p.messageId;
    if (p.qos === 2 && session.hasInbound(id!)) {
      // [MQTT-4.3.3-10] a resent QoS 2 PUBLISH is acknowledged again but not delivered again.
      this.#send({ cmd: "pubrec", messageId: id });
      return;
    }
    if (p.qos === 2 && session.inboundCount >= options.receiveMaximum) {
      // [MQTT-3.3.4-9] more unacknowledged QoS 2 than our Receive Maximum.
      throw new MqttProtocolError("Cannot accept PUBLISH: Receive Maximum exceeded", {
        reasonCode: ReasonCode.ReceiveMaximumExceeded,
      });
    }
    const ctx = this.#publishContext ??= {
      version: this.#version,
      origin: session.id,
      maxTopicAlias: options.maxTopicAlias,
      now: 0,
    };
    ctx.now = port.clock.now();
    const d = evaluatePublish(p, ctx);
    if (!d.accept) {
      log.info("publish refused", { clientId: c.clientId, topic: p.topic, why: d.message });
      port.stats.drop("bad_payload");
      this.#refusePublish(p, d.reasonCode);
      return;
    }
    // Accepted at once when the core has room (no promise per message); otherwise the wait for
    // room (or for the durable stage) stops this connection's reads.
    const r = port.publish(c.who, d.draft, this.#publishOptions ??= this.#waitOptions());
    if (r instanceof Promise) return r.then((r) => this.#published(p, r));
    return this.#published(p, r);
  }

  /** Options of every publish of this connection: wait for room, abortable when it closes. */
  #waitOptions(): PublishOptions {
    // deno-lint-ignore no-this-alias
    const self = this;
    return {
      wait: true,
      get signal() { // made only when a publish has to wait
        return (self.#abort ??= new AbortController()).signal;
      },
    };
  }

  /** Acknowledges a PUBLISH with the core's answer ([MQTT-4.3.2-2], [MQTT-4.3.3-2]). */
  #published(p: IPublishPacket, r: PublishResult): Promise<void> | undefined {
    if (this.#closing) return;
    if (r.ok) {
      const durable = this.#ctx.durable;
      if (p.qos !== 0 && durable?.pending) {
        // Acknowledged means durable: wait for the commit of what this message caused.
        return durable.flushed().then(() => this.#acknowledge(p));
      }
      this.#acknowledge(p);
      return;
    }
    this.#ctx.log.debug("publish refused", {
      clientId: this.clientId,
      topic: p.topic,
      reason: r.reason,
    });
    if (p.qos === 0) return;
    if (this.#version !== 5 && r.reason !== "not_authorized") {
      // 3.1.1 cannot refuse a PUBLISH: close without acknowledging; the client sends it again.
      throw new MqttProtocolError(`Cannot accept PUBLISH: ${r.message}`);
    }
    this.#refusePublish(p, refusalReasonCode(r));
    return undefined;
  }

  /** Answers a refused QoS 1/2 PUBLISH: v5 with `reasonCode`; 3.1.1 acknowledges and drops it. */
  #refusePublish(p: IPublishPacket, reasonCode: number): void {
    // 3.1.1 cannot refuse a PUBLISH: acknowledge and drop, as mosquitto does.
    const rc = this.#version === 5 ? reasonCode : undefined;
    if (p.qos === 1) this.#send({ cmd: "puback", messageId: p.messageId, reasonCode: rc });
    if (p.qos === 2) {
      if (this.#version !== 5) this.#session!.addInbound(p.messageId!);
      this.#send({ cmd: "pubrec", messageId: p.messageId, reasonCode: rc });
    }
  }

  /** Acknowledges an accepted PUBLISH ([MQTT-4.3.2-2], [MQTT-4.3.3-2]: only once accepted). */
  #acknowledge(p: IPublishPacket): void {
    if (this.#closing) return;
    if (p.qos === 1) this.#send({ cmd: "puback", messageId: p.messageId });
    else if (p.qos === 2) {
      this.#session!.addInbound(p.messageId!);
      this.#send({ cmd: "pubrec", messageId: p.messageId });
    }
  }

  #onDisconnect(p: IDisconnectPacket): void {
    const c = this.#accepted!;
    if (this.#version === 5) {
      const exp = p.properties?.sessionExpiryInterval;
      if (exp !== undefined) {
        // [MQTT-3.14.2-2] 0 at CONNECT cannot become non-zero at DISCONNECT.
        if (c.sessionExpirySec === 0 && exp !== 0) {
          throw new MqttProtocolError("Cannot accept DISCONNECT: session expiry was 0");
        }
        this.#session!.expirySec = Math.min(exp, this.#ctx.options.sessionExpiryMaxSec);
      }
    }
    // [MQTT-3.14.4-3] DISCONNECT with 0x00 (or any 3.1.1 DISCONNECT) discards the will; v5 0x04
    // and error codes keep it, and it is published as for an abnormal close.
    if (this.#version !== 5 || (p.reasonCode ?? 0) === ReasonCode.Success) this.#will = undefined;
    this.#normalDisconnect = true;
    this.#shutdown();
  }

  // ---- errors, writing, shutdown ----

  #fail(err: unknown): void {
    const { port, log } = this.#ctx;
    if (err instanceof MqttMalformedError || err instanceof MqttProtocolError) {
      port.stats.error(err instanceof MqttMalformedError ? "malformed_packet" : "protocol_error");
      log.warn("closing connection", {
        peer: this.#peer,
        clientId: this.clientId,
        reasonCode: err.reasonCode,
        why: err.message,
        offset: err instanceof MqttMalformedError ? err.offset : undefined,
      });
      if (this.#closing) return;
      if (!this.#connected) {
        if (err.reasonCode === ReasonCode.UnsupportedProtocolVersion) {
          this.#version = 4; // unknown level: answer in 3.1.1 form, return code 1
          this.#refuse(err.reasonCode, err.message);
        } else if (this.#version === 5) {
          // The version is 5 only once a CONNECT was read: answer with CONNACK and the reason.
          this.#refuse(err.reasonCode, err.message);
        }
      } else if (this.#version === 5) this.#sendDisconnect(err.reasonCode, err.message);
      this.#closeReason ??= { code: "protocol_error", message: err.message };
      this.#shutdown();
      return;
    }
    if (!this.#closing) {
      log.debug("connection ended", { peer: this.#peer, error: err });
      this.#shutdown();
    }
  }

  #sendDisconnect(reasonCode: number, why: string): void {
    const packet: IDisconnectPacket = { cmd: "disconnect", reasonCode };
    if (this.#accepted?.problemInformation !== false) {
      packet.properties = { reasonString: why.slice(0, 200) };
    }
    let bytes = encodePacket(packet, 5);
    if (bytes.length > (this.#accepted?.maximumPacketSize ?? Infinity)) {
      bytes = encodePacket({ cmd: "disconnect", reasonCode }, 5); // [MQTT-3.1.2-29]
    }
    this.#write(bytes);
  }

  #send(packet: Packet): void {
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
      this.#write(encodeAck(p.cmd, p.messageId!));
    } else if (p.cmd === "pingresp") this.#write(PINGRESP);
    else this.#write(encodePacket(packet, this.#version));
  }

  #write(bytes: Uint8Array): void {
    if (this.#writer.write(bytes)) this.#ctx.port.stats.frameOut();
  }

  /** Stops reading and closes the socket once pending writes are flushed (bounded). */
  #shutdown(): void {
    if (this.#closing) return;
    this.#closing = true;
    this.#abort?.abort(new Error("connection closing"));
    this.#writer.flushed().finally(() => {
      try {
        this.#conn.close();
      } catch { /* already closed */ }
    });
  }

  async #cleanup(): Promise<void> {
    const { port, store, log } = this.#ctx;
    this.#deadline?.cancel();
    this.#shutdown();
    port.unhold(this); // sends are ignored from now on: nothing to wait for
    await this.#writer.flushed();
    try {
      this.#conn.close();
    } catch { /* already closed */ }
    const c = this.#accepted;
    if (c && this.#session) {
      this.#session.detach(this);
      const reason = this.#closeReason?.code;
      // Will: on any end but a normal DISCONNECT or a server shutdown ([MQTT-3.1.2-8]).
      // (A normal DISCONNECT has already cleared it unless v5 reason 0x04 asked to keep it.)
      store.release(this, c.clientId, reason === "shutting_down" ? undefined : this.#will);
      this.#attachment?.detach();
    }
    log.debug("connection closed", {
      peer: this.#peer,
      clientId: c?.clientId,
      reason: this.#closeReason?.code ?? (this.#normalDisconnect ? "disconnect" : "peer_closed"),
    });
  }
}
