/**
 * A small MQTT 3.1.1 / 5.0 client for the northbound link, on the same `npm:mqtt-packet` codec as
 * the device-side broker: CONNECT (clean session or not, session expiry, username/password, will),
 * PUBLISH at QoS 0/1/2 with caller-chosen packet ids and (v5) topic aliases, PUBACK both ways,
 * PUBREC/PUBREL/PUBCOMP, SUBSCRIBE, PINGREQ keepalive and DISCONNECT, over `Deno.connect` or
 * `Deno.connectTls` (CA, client certificate and key). The broker's v5 CONNACK limits (Receive
 * Maximum, Maximum Packet Size, Topic Alias Maximum) are read into {@link MqttClient.limits}.
 *
 * It holds no retry logic and no queue: the bridge owns packet ids, the in-flight window and
 * reconnection. Writes issued in one event-loop turn go out as one socket write.
 *
 * @module
 */

import mqttPacket, { type IConnackPacket, type Packet } from "mqtt-packet";
import { Buffer } from "node:buffer";
import { type Clock, systemClock, type TimerHandle } from "../core/clock.ts";

/** Connection settings of {@link MqttClient.connect}. */
export interface MqttClientOptions {
  /** Broker host. */
  hostname: string;
  /** Broker port. */
  port: number;
  /** Use TLS. @default false */
  tls?: boolean;
  /** Extra CA certificates (PEM) to trust for TLS. */
  caCerts?: string[];
  /** Client certificate chain (PEM) for mutual TLS. */
  cert?: string;
  /** Client private key (PEM) for mutual TLS. */
  key?: string;
  /** Client identifier. */
  clientId: string;
  /** User name. */
  username?: string;
  /** Password. */
  password?: string;
  /** Keepalive in seconds (0 disables). @default 30 */
  keepAliveSec?: number;
  /** 4 = MQTT 3.1.1, 5 = MQTT 5.0. @default 4 */
  protocolVersion?: 4 | 5;
  /** Start a clean session (3.1.1) / clean start (5). @default false */
  clean?: boolean;
  /** MQTT 5 session expiry interval in seconds. @default 86400 */
  sessionExpirySec?: number;
  /** Will message the broker publishes if the link dies. */
  will?: { topic: string; payload: Uint8Array; qos: 0 | 1; retain: boolean };
  /** Milliseconds to wait for the TCP/TLS connection and CONNACK. @default 10000 */
  connectTimeoutMs?: number;
  /** Time source for keepalive and timeouts. @default systemClock */
  clock?: Clock;
}

/** An incoming PUBLISH. */
export interface IncomingPublish {
  /** Topic name. */
  topic: string;
  /** Payload bytes. */
  payload: Uint8Array;
  /** QoS. */
  qos: 0 | 1 | 2;
  /** Packet id (QoS > 0). */
  messageId?: number;
  /** Retain flag. */
  retain: boolean;
}

/** What the broker allows this connection (MQTT 5 CONNACK properties; defaults for 3.1.1). */
export interface UpstreamLimits {
  /** Unacknowledged QoS 1/2 publishes the broker accepts at once [MQTT-3.2.2.3.3]. */
  receiveMaximum: number;
  /** Largest packet the broker accepts, bytes [MQTT-3.2.2.3.6]. */
  maximumPacketSize: number;
  /** Highest topic alias the broker accepts (0: none) [MQTT-3.2.2.3.8]. */
  topicAliasMaximum: number;
}

/** The broker refused the connection (CONNACK with a non-zero code). */
export class MqttConnectError extends Error {
  override name = "MqttConnectError";
  /** CONNACK return code (3.1.1) or reason code (5). */
  readonly code: number;
  /** Creates the error. */
  constructor(code: number, message: string) {
    super(message);
    this.code = code;
  }
}

const encodeOpts = (v: 4 | 5) => ({ protocolVersion: v });

/** A PUBLISH the client sends. */
export interface OutgoingPublish {
  /** Topic name (empty when a v5 topic alias stands for it). */
  topic: string;
  /** Payload bytes. */
  payload: Uint8Array;
  /** QoS. */
  qos: 0 | 1 | 2;
  /** RETAIN flag. */
  retain?: boolean;
  /** DUP flag (a resend). */
  dup?: boolean;
  /** Packet id (QoS > 0). */
  messageId?: number;
  /** v5 Topic Alias. */
  topicAlias?: number;
}
const utf8 = new TextEncoder();

/**
 * Encodes a PUBLISH (the hot path; `mqtt-packet`'s generic encoder costs several times more per
 * message). Layout per MQTT 3.1.1 §3.3 / MQTT 5 §3.3: fixed header (type 3, DUP, QoS, RETAIN),
 * Remaining Length, topic (empty when a v5 topic alias stands for it), packet id (QoS > 0),
 * [v5: properties: none, or the Topic Alias (0x23)], payload.
 *
 * @example
 * ```ts
 * import { encodePublish } from "./mqtt_client.ts";
 * const b = encodePublish(4, { topic: "a", payload: new Uint8Array([9]), qos: 1, messageId: 5 });
 * if (b.join() !== [0x32, 6, 0, 1, 97, 0, 5, 9].join()) throw new Error(b.join());
 * ```
 */
export function encodePublish(
  version: 4 | 5,
  p: OutgoingPublish,
): Uint8Array {
  const topic = utf8.encode(p.topic);
  if (topic.length > 65535) throw new RangeError("Cannot publish: topic longer than 65535 bytes");
  const alias = version === 5 && p.topicAlias ? p.topicAlias : 0;
  const remaining = 2 + topic.length + (p.qos > 0 ? 2 : 0) +
    (version === 5 ? (alias ? 4 : 1) : 0) + p.payload.length;
  if (remaining > 268_435_455) throw new RangeError("Cannot publish: packet too large");
  let lenBytes = 1;
  for (let x = remaining; x > 127; x = Math.floor(x / 128)) lenBytes++;
  const out = new Uint8Array(1 + lenBytes + remaining);
  out[0] = 0x30 | (p.dup ? 0x08 : 0) | (p.qos << 1) | (p.retain ? 1 : 0);
  let o = 1;
  let x = remaining;
  do { // [MQTT-2.2.3] variable byte integer
    let b = x % 128;
    x = Math.floor(x / 128);
    if (x > 0) b |= 0x80;
    out[o++] = b;
  } while (x > 0);
  out[o++] = topic.length >> 8;
  out[o++] = topic.length & 0xff;
  out.set(topic, o);
  o += topic.length;
  if (p.qos > 0) {
    const id = p.messageId ?? 0;
    if (id < 1 || id > 65535) throw new RangeError(`Cannot publish: bad packet id ${id}`);
    out[o++] = id >> 8;
    out[o++] = id & 0xff;
  }
  if (alias) { // property length 3: Topic Alias (0x23), two bytes [MQTT-3.3.2.3.4]
    out[o++] = 3;
    out[o++] = 0x23;
    out[o++] = alias >> 8;
    out[o++] = alias & 0xff;
  } else if (version === 5) out[o++] = 0; // no properties
  out.set(p.payload, o);
  return out;
}

/**
 * Size in bytes of the PUBLISH {@link encodePublish} would produce (without a topic alias), to
 * check against the broker's Maximum Packet Size before sending.
 *
 * @example
 * ```ts
 * import { encodePublish, publishSize } from "./mqtt_client.ts";
 * const p = { topic: "a/b", payload: new Uint8Array(300), qos: 1 as const, messageId: 1 };
 * if (publishSize(5, 3, 300, 1) !== encodePublish(5, p).length) throw new Error();
 * ```
 */
export function publishSize(
  version: 4 | 5,
  topicBytes: number,
  payloadBytes: number,
  qos: 0 | 1 | 2,
): number {
  const remaining = 2 + topicBytes + (qos > 0 ? 2 : 0) + (version === 5 ? 1 : 0) + payloadBytes;
  let lenBytes = 1;
  for (let x = remaining; x > 127; x = Math.floor(x / 128)) lenBytes++;
  return 1 + lenBytes + remaining;
}

/**
 * One MQTT connection to an upstream broker.
 *
 * @example
 * ```ts ignore
 * import { MqttClient } from "./mqtt_client.ts";
 * const c = await MqttClient.connect({ hostname: "127.0.0.1", port: 1883, clientId: "gw" });
 * c.onPuback = (id) => console.log("acked", id);
 * c.publish({ topic: "a", payload: new Uint8Array([1]), qos: 1, messageId: 1 });
 * await c.close();
 * ```
 */
export class MqttClient implements AsyncDisposable {
  #conn: Deno.Conn;
  #version: 4 | 5;
  #clock: Clock;
  #parser: ReturnType<typeof mqttPacket.parser>;
  #out: Uint8Array[] = [];
  #outBytes = 0;
  #writing = false;
  #drained: Promise<void> = Promise.resolve();
  #markDrained: () => void = () => {};
  #closed = false;
  #error: Error | undefined;
  #reading: Promise<void> = Promise.resolve();
  #keepAliveMs: number;
  #ka: TimerHandle | undefined;
  #lastIn = 0;
  #lastOut = 0;
  #connack: ((p: IConnackPacket) => void) | undefined;
  #subacks = new Map<number, (granted: number[]) => void>();
  #nextSubId = 1;
  #done!: (e: Error | undefined) => void;
  /** Resolves when the connection ended: `undefined` after {@link close}, else the cause. */
  readonly closed: Promise<Error | undefined>;
  /** Whether the broker resumed a stored session (CONNACK session present). */
  sessionPresent = false;
  /** The broker's limits for this connection (from its CONNACK). */
  limits: UpstreamLimits = {
    receiveMaximum: 65535,
    maximumPacketSize: 268_435_460,
    topicAliasMaximum: 0,
  };
  /** Called for each PUBACK (packet id, reason code; 0 on 3.1.1). */
  onPuback: ((messageId: number, reasonCode: number) => void) | undefined;
  /** Called for each PUBREC of a QoS 2 publish (packet id, reason code). */
  onPubrec: ((messageId: number, reasonCode: number) => void) | undefined;
  /** Called for each PUBCOMP (packet id, reason code). */
  onPubcomp: ((messageId: number, reasonCode: number) => void) | undefined;
  /** Called for each incoming PUBLISH; QoS 1 ones must be answered with {@link puback}. */
  onPublish: ((msg: IncomingPublish) => void) | undefined;

  private constructor(conn: Deno.Conn, version: 4 | 5, keepAliveSec: number, clock: Clock) {
    this.#conn = conn;
    this.#version = version;
    this.#clock = clock;
    this.#keepAliveMs = keepAliveSec * 1000;
    this.#parser = mqttPacket.parser({ protocolVersion: version });
    this.#parser.on("packet", (p: Packet) => this.#onPacket(p));
    this.#parser.on(
      "error",
      (e: Error) => this.#fail(new Error(`Bad packet from broker: ${e.message}`)),
    );
    this.closed = new Promise((r) => this.#done = r);
  }

  /** Opens the connection and completes CONNECT/CONNACK; throws {@link MqttConnectError}. */
  static async connect(options: MqttClientOptions): Promise<MqttClient> {
    const clock = options.clock ?? systemClock;
    const version = options.protocolVersion ?? 4;
    const timeoutMs = options.connectTimeoutMs ?? 10_000;
    let timer: TimerHandle | undefined;
    let timedOut = false;
    const timeout = new Promise<never>((_, reject) => {
      timer = clock.setTimeout(() => {
        timedOut = true;
        reject(new Error(`Cannot connect upstream: no CONNACK within ${timeoutMs} ms`));
      }, timeoutMs);
    });
    const dial = options.tls
      ? Deno.connectTls({
        hostname: options.hostname,
        port: options.port,
        caCerts: options.caCerts,
        cert: options.cert,
        key: options.key,
      } as Deno.ConnectTlsOptions)
      : Deno.connect({ hostname: options.hostname, port: options.port });
    let client: MqttClient | undefined;
    try {
      const conn = await Promise.race([dial, timeout]);
      if (timedOut) conn.close();
      client = new MqttClient(conn, version, options.keepAliveSec ?? 30, clock);
      const ack = await Promise.race([client.#handshake(options), timeout]);
      const code = version === 5 ? ack.reasonCode ?? 0 : ack.returnCode ?? 0;
      if (code !== 0) {
        throw new MqttConnectError(
          code,
          `Cannot connect upstream: broker refused with code ${code}`,
        );
      }
      client.sessionPresent = ack.sessionPresent;
      const props = (ack as { properties?: Record<string, number> }).properties ?? {};
      client.limits = {
        receiveMaximum: props.receiveMaximum ?? 65535,
        maximumPacketSize: props.maximumPacketSize ?? 268_435_460,
        topicAliasMaximum: props.topicAliasMaximum ?? 0,
      };
      client.#startKeepAlive();
      return client;
    } catch (err) {
      dial.then((c) => client ? undefined : c.close()).catch(() => {});
      await client?.close(false);
      throw err;
    } finally {
      clock.clearTimeout(timer!);
      timeout.catch(() => {});
    }
  }

  #handshake(o: MqttClientOptions): Promise<IConnackPacket> {
    this.#reading = this.#read();
    const got = new Promise<IConnackPacket>((resolve, reject) => {
      this.#connack = resolve;
      this.closed.then((e) =>
        reject(e ?? new Error("Cannot connect upstream: connection closed before CONNACK"))
      );
    });
    this.#write({
      cmd: "connect",
      protocolId: "MQTT",
      protocolVersion: this.#version,
      clean: o.clean ?? false,
      clientId: o.clientId,
      keepalive: o.keepAliveSec ?? 30,
      username: o.username,
      password: o.password === undefined ? undefined : Buffer.from(o.password),
      will: o.will
        ? {
          topic: o.will.topic,
          payload: Buffer.from(o.will.payload),
          qos: o.will.qos,
          retain: o.will.retain,
        }
        : undefined,
      properties: this.#version === 5
        ? { sessionExpiryInterval: o.sessionExpirySec ?? 86_400 }
        : undefined,
    } as Packet);
    return got;
  }

  /** Bytes queued for the socket and not yet written. */
  get bufferedBytes(): number {
    return this.#outBytes;
  }

  /** True once the connection ended or is closing. */
  get isClosed(): boolean {
    return this.#closed;
  }

  /** Queues a PUBLISH. */
  publish(p: OutgoingPublish): void {
    if (this.#closed) return;
    const bytes = encodePublish(this.#version, p);
    this.#queue(bytes);
  }

  /** Releases a QoS 2 publish the broker answered with PUBREC. */
  pubrel(messageId: number): void {
    this.#write({ cmd: "pubrel", messageId } as Packet);
  }

  /** Acknowledges an incoming QoS 1 PUBLISH. */
  puback(messageId: number): void {
    this.#write({ cmd: "puback", messageId } as Packet);
  }

  /** Subscribes; resolves with the granted QoS / reason codes. */
  subscribe(filters: Array<{ topic: string; qos: 0 | 1 }>): Promise<number[]> {
    const messageId = this.#nextSubId;
    this.#nextSubId = this.#nextSubId % 65535 + 1;
    const p = new Promise<number[]>((resolve, reject) => {
      this.#subacks.set(messageId, resolve);
      this.closed.then((e) => reject(e ?? new Error("connection closed before SUBACK")));
    });
    this.#write({ cmd: "subscribe", messageId, subscriptions: filters } as Packet);
    return p;
  }

  #write(packet: Packet): void {
    if (this.#closed) return;
    this.#queue(mqttPacket.generate(packet, encodeOpts(this.#version)));
  }

  #queue(bytes: Uint8Array): void {
    this.#out.push(bytes);
    this.#outBytes += bytes.length;
    this.#lastOut = this.#clock.now();
    if (!this.#writing) {
      this.#writing = true;
      this.#drained = new Promise((r) => this.#markDrained = r);
      queueMicrotask(() => this.#flush());
    }
  }

  async #flush(): Promise<void> {
    try {
      while (this.#out.length && !this.#closed) {
        const chunks = this.#out;
        this.#out = [];
        const total = chunks.reduce((n, c) => n + c.length, 0);
        const buf = chunks.length === 1 ? chunks[0] : Buffer.concat(chunks, total);
        let off = 0;
        while (off < buf.length) off += await this.#conn.write(buf.subarray(off));
        this.#outBytes -= total;
      }
    } catch (err) {
      this.#fail(new Error(`Upstream write failed: ${(err as Error).message}`));
    } finally {
      this.#writing = false;
      this.#markDrained();
    }
  }

  async #read(): Promise<void> {
    const buf = new Uint8Array(64 * 1024);
    try {
      for (;;) {
        const n = await this.#conn.read(buf);
        if (n === null) break;
        this.#lastIn = this.#clock.now();
        this.#parser.parse(Buffer.from(buf.subarray(0, n)));
      }
      this.#fail(new Error("Upstream closed the connection"));
    } catch (err) {
      this.#fail(new Error(`Upstream connection lost: ${(err as Error).message}`));
    }
  }

  #onPacket(p: Packet): void {
    switch (p.cmd) {
      case "connack":
        this.#connack?.(p);
        this.#connack = undefined;
        break;
      case "puback":
        this.onPuback?.(p.messageId!, (p as { reasonCode?: number }).reasonCode ?? 0);
        break;
      case "publish":
        this.onPublish?.({
          topic: p.topic,
          payload: typeof p.payload === "string" ? new TextEncoder().encode(p.payload) : p.payload,
          qos: p.qos,
          messageId: p.messageId,
          retain: p.retain,
        });
        break;
      case "pubrec":
        this.onPubrec?.(p.messageId!, (p as { reasonCode?: number }).reasonCode ?? 0);
        break;
      case "pubcomp":
        this.onPubcomp?.(p.messageId!, (p as { reasonCode?: number }).reasonCode ?? 0);
        break;
      case "suback": {
        const r = this.#subacks.get(p.messageId!);
        this.#subacks.delete(p.messageId!);
        r?.(p.granted as number[]);
        break;
      }
      case "pubrel":
        this.#write({ cmd: "pubcomp", messageId: p.messageId } as Packet);
        break;
      case "disconnect":
        this.#fail(
          new Error(
            `Upstream sent DISCONNECT (reason ${(p as { reasonCode?: number }).reasonCode ?? 0})`,
          ),
        );
        break;
      default: // pingresp and the rest: arrival already counted as liveness
    }
  }

  #startKeepAlive(): void {
    if (this.#keepAliveMs <= 0) return;
    const tick = () => {
      this.#ka = undefined;
      if (this.#closed) return;
      const now = this.#clock.now();
      if (now - this.#lastIn >= this.#keepAliveMs * 1.5) {
        return this.#fail(new Error(`Upstream silent for ${now - this.#lastIn} ms (keepalive)`));
      }
      if (now - this.#lastOut >= this.#keepAliveMs / 2) this.#write({ cmd: "pingreq" } as Packet);
      this.#ka = this.#clock.setTimeout(tick, this.#keepAliveMs / 2);
    };
    this.#lastIn = this.#clock.now();
    this.#ka = this.#clock.setTimeout(tick, this.#keepAliveMs / 2);
  }

  #fail(err: Error): void {
    if (this.#closed) return;
    this.#error = err;
    this.#shutdown();
    this.#done(err);
  }

  #shutdown(): void {
    if (this.#closed) return;
    this.#closed = true;
    if (this.#ka !== undefined) this.#clock.clearTimeout(this.#ka);
    this.#ka = undefined;
    try {
      this.#conn.close();
    } catch { /* already closed */ }
  }

  /** The error that ended the connection, if it was not closed locally. */
  get error(): Error | undefined {
    return this.#error;
  }

  /**
   * When `graceful` and the link is up: lets queued packets go out (at most `drainMs`), then
   * sends DISCONNECT. Closes the socket and waits for the reader to stop. Idempotent.
   */
  async close(graceful = true, drainMs = 1000): Promise<void> {
    if (!this.#closed && graceful && this.#writing) {
      let timer: TimerHandle | undefined;
      await Promise.race([
        this.#drained,
        new Promise<void>((r) => timer = this.#clock.setTimeout(r, drainMs)),
      ]);
      this.#clock.clearTimeout(timer!);
    }
    if (!this.#closed && graceful && !this.#writing) {
      try {
        await this.#conn.write(
          mqttPacket.generate({ cmd: "disconnect" } as Packet, encodeOpts(this.#version)),
        );
      } catch { /* link already gone */ }
    }
    if (!this.#closed) {
      this.#shutdown();
      this.#done(undefined);
    }
    await this.#reading;
  }

  /** Same as {@link close}. */
  [Symbol.asyncDispose](): Promise<void> {
    return this.close();
  }
}
