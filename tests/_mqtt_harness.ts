/**
 * Test harness of the MQTT listener: a Core plus an {@link MqttServer} on a free port, clients
 * (MQTT.js, a raw-socket client, mosquitto_pub/mosquitto_sub) and bounded waits. Everything it starts
 * is closed by the returned dispose, so tests pass `--trace-leaks`.
 *
 * @module
 */

import { type IClientOptions, mqtt, type MqttClient } from "./_dev_deps.ts";
import mqttPacket, { type Packet } from "mqtt-packet";
import { Buffer } from "node:buffer";
import { Core, type CoreOptions, Logger } from "../src/core/mod.ts";
import { MqttServer, type MqttServerOptions } from "../src/protocols/mqtt/mod.ts";
import { loadCodec, MqttFrameDecoder, type ProtocolVersion } from "../src/protocols/mqtt/codec.ts";
import { ServerStream } from "./_mqtt_wire.ts";

// The clients here decode with the gateway's codec directly (the server loads it on first need).
await loadCodec();

/** A started core + MQTT server. */
export interface MqttHarness extends AsyncDisposable {
  core: Core;
  server: MqttServer;
  port: number;
  url: string;
  /** JSON log lines written so far (warn and above unless `logLevel` says otherwise). */
  logs: string[];
  /** MQTT.js clients opened through {@link MqttHarness.client}; ended on dispose. */
  client(options?: IClientOptions): Promise<MqttClient>;
  /** An MQTT.js client whose handlers can be attached before it connects; ended on dispose. */
  clientLater(options?: IClientOptions): MqttClient;
  /** Raw clients opened through {@link MqttHarness.raw}; closed on dispose. */
  raw(version?: ProtocolVersion): Promise<RawClient>;
}

/** Rejects after `ms` unless `p` settles first; the timer never leaks. */
export async function within<T>(p: Promise<T>, ms: number, what: string): Promise<T> {
  let t: ReturnType<typeof setTimeout> | undefined;
  try {
    return await Promise.race([
      p,
      new Promise<never>((_, reject) => {
        t = setTimeout(() => reject(new Error(`timed out after ${ms} ms: ${what}`)), ms);
      }),
    ]);
  } finally {
    clearTimeout(t);
  }
}

/** Resolves after `ms` (only for waiting on real sockets, never for protocol timing). */
export function sleep(ms: number): Promise<void> {
  return new Promise((r) => setTimeout(r, ms));
}

/** Starts Core + MqttServer on 127.0.0.1:0. */
export async function startMqtt(
  options: {
    core?: CoreOptions;
    server?: MqttServerOptions;
    logLevel?: "debug" | "info" | "warn";
  } = {},
): Promise<MqttHarness> {
  const logs: string[] = [];
  const log = new Logger({ level: options.logLevel ?? "warn", sink: (l) => logs.push(l) });
  const core = new Core({ anonymous: true, log, timerResolutionMs: 5, ...options.core });
  const server = new MqttServer(core, { hostname: "127.0.0.1", port: 0, ...options.server });
  const { port } = await server.listen();
  const url = `mqtt://127.0.0.1:${port}`;
  const clients: MqttClient[] = [];
  const raws: RawClient[] = [];
  return {
    core,
    server,
    port,
    url,
    logs,
    async client(o: IClientOptions = {}) {
      const c = await within(
        mqtt.connectAsync(url, { reconnectPeriod: 0, connectTimeout: 5000, ...o }, false),
        6000,
        "MQTT.js connect",
      );
      clients.push(c);
      return c;
    },
    clientLater(o: IClientOptions = {}) {
      const c = mqtt.connect(url, { reconnectPeriod: 0, connectTimeout: 5000, ...o });
      clients.push(c);
      return c;
    },
    async raw(version: ProtocolVersion = 4) {
      const r = await RawClient.connect(port, version);
      raws.push(r);
      return r;
    },
    async [Symbol.asyncDispose]() {
      await Promise.all(clients.map((c) => within(c.endAsync(true), 3000, "client end")));
      for (const r of raws) r.close();
      await within(server.close(), 5000, "server close");
      await core.close();
      // Every byte the server sent a raw client was read strictly (tests/_mqtt_wire.ts).
      await Promise.all(raws.map((r) => within(r.done, 3000, "raw client reader")));
      const problems = raws.flatMap((r) => r.wireProblems);
      if (problems.length) {
        throw new Error(`the server sent what is not an MQTT packet:\n${problems.join("\n")}`);
      }
    },
  };
}

/** Opens an MQTT.js client not tracked by a harness (the caller ends it). */
export function mqttConnect(url: string, o: IClientOptions = {}): Promise<MqttClient> {
  return within(
    mqtt.connectAsync(url, { reconnectPeriod: 0, connectTimeout: 5000, ...o }, false),
    6000,
    "MQTT.js connect",
  );
}

/** Collects `message` events of an MQTT.js client. */
export class Inbox {
  readonly messages: Array<{ topic: string; payload: string; packet: mqttPacket.IPublishPacket }> =
    [];
  #waiters: Array<() => void> = [];
  /** Starts collecting. */
  constructor(client: MqttClient) {
    client.on("message", (topic, payload, packet) => {
      this.messages.push({ topic, payload: payload.toString(), packet });
      for (const w of this.#waiters.splice(0)) w();
    });
  }
  /** Waits until `n` messages arrived (fails after `ms`). */
  async waitFor(n: number, ms = 20_000): Promise<this> {
    const until = Date.now() + ms;
    while (this.messages.length < n) {
      const left = until - Date.now();
      if (left <= 0) throw new Error(`expected ${n} messages, got ${this.messages.length}`);
      await within(new Promise<void>((r) => this.#waiters.push(r)), left, `${n} messages`)
        .catch(() => {});
    }
    return this;
  }
}

/** A bare-socket MQTT client for packets MQTT.js would never send. */
export class RawClient {
  #conn: Deno.TcpConn;
  #decoder: MqttFrameDecoder;
  #packets: Packet[] = [];
  #closed = false;
  #reading: Promise<void>;
  #wake: (() => void) | undefined;
  #version: ProtocolVersion;
  #wire: ServerStream;
  #paused = false;
  /** Decoder error, if the server sent something undecodable. */
  error: unknown;

  private constructor(conn: Deno.TcpConn, version: ProtocolVersion) {
    this.#conn = conn;
    this.#version = version;
    this.#decoder = new MqttFrameDecoder({ protocolVersion: version });
    this.#wire = new ServerStream(version);
    this.#reading = this.#read();
  }

  /**
   * What is wrong with the bytes the server sent, read strictly and independently of Ferry's
   * codec (tests/_mqtt_wire.ts): malformed packets, and a packet the stream ended inside of.
   */
  get wireProblems(): string[] {
    return this.#wire.problems;
  }

  /** Every whole frame the server sent, raw. */
  get frames(): Uint8Array[] {
    return this.#wire.frames;
  }

  /** Settles when reading has ended (the server or we closed the connection). */
  get done(): Promise<void> {
    return this.#reading;
  }

  /** Connects to the server. */
  static async connect(port: number, version: ProtocolVersion = 4): Promise<RawClient> {
    const conn = await Deno.connect({ hostname: "127.0.0.1", port });
    return new RawClient(conn, version);
  }

  async #read(): Promise<void> {
    const buf = new Uint8Array(65536);
    try {
      for (;;) {
        if (this.#paused) return; // stopReading(): the socket's buffers fill up
        const n = await this.#conn.read(buf);
        if (n === null) {
          this.#wire.end(); // the server closed: it must not have stopped inside a packet
          break;
        }
        this.#wire.push(buf.subarray(0, n));
        this.#packets.push(...this.#decoder.push(buf.slice(0, n)));
        this.#wake?.();
      }
    } catch (err) {
      if (!(err instanceof Deno.errors.BadResource || err instanceof Deno.errors.ConnectionReset)) {
        this.error = err;
      }
    }
    this.#closed = true;
    this.#wake?.();
  }

  /** True once the server closed the connection. */
  get closed(): boolean {
    return this.#closed;
  }

  /** Sends raw bytes or a packet. */
  async send(p: Uint8Array | Packet): Promise<void> {
    const bytes = p instanceof Uint8Array
      ? p
      : mqttPacket.generate(p, { protocolVersion: this.#version });
    try {
      let off = 0;
      while (off < bytes.length) off += await this.#conn.write(bytes.subarray(off));
    } catch { /* the server may have closed already */ }
  }

  /** Sends CONNECT and returns the CONNACK. */
  async connect(extra: Partial<mqttPacket.IConnectPacket> = {}): Promise<Packet> {
    await this.send({
      cmd: "connect",
      protocolId: this.#version === 3 ? "MQIsdp" : "MQTT",
      protocolVersion: this.#version,
      clientId: `raw-${crypto.randomUUID().slice(0, 8)}`,
      clean: true,
      keepalive: 0,
      ...extra,
    } as mqttPacket.IConnectPacket);
    return await this.next();
  }

  /** The next packet from the server (fails after `ms` or when the connection closed first). */
  async next(ms = 20_000): Promise<Packet> {
    const until = Date.now() + ms;
    while (!this.#packets.length) {
      if (this.#closed) throw new Error("connection closed before a packet arrived");
      const left = until - Date.now();
      if (left <= 0) throw new Error("no packet within the time limit");
      await within(new Promise<void>((r) => this.#wake = r), left, "next packet").catch(() => {});
    }
    return this.#packets.shift()!;
  }

  /** Packets received and not yet taken. */
  get pending(): Packet[] {
    return this.#packets;
  }

  /** Waits until the server closes the connection; returns the packets it sent before. */
  async waitClosed(ms = 20_000): Promise<Packet[]> {
    await within(this.#reading, ms, "server to close the connection");
    return this.#packets.splice(0);
  }

  /** Sends PINGREQ and waits for its PINGRESP: everything sent before has been read. */
  async ping(ms = 20_000): Promise<void> {
    await this.send(new Uint8Array([0xc0, 0]));
    for (;;) if ((await this.next(ms)).cmd === "pingresp") return;
  }

  /** Stops reading (after the read in progress): a client that never reads again. */
  stopReading(): void {
    this.#paused = true;
  }

  /** Reads again, discarding, until the server closes the connection; false after `ms`. */
  async closedByPeer(ms: number): Promise<boolean> {
    const buf = new Uint8Array(65536);
    const deadline = Date.now() + ms;
    while (Date.now() < deadline) {
      const n = await within(this.#conn.read(buf), deadline - Date.now(), "a read").catch(
        (e) => e instanceof Error && /time/i.test(e.message) ? undefined : null,
      );
      if (n === null) return true;
      if (n === undefined) return false;
    }
    return false;
  }

  /** Closes our side. Idempotent. */
  close(): void {
    try {
      this.#conn.close();
    } catch { /* closed */ }
  }
}

/** Runs a command to completion with a time limit; returns exit code and output. */
export async function run(
  cmd: string,
  args: string[],
  ms = 20_000,
): Promise<{ code: number; stdout: string; stderr: string }> {
  const out = await new Deno.Command(cmd, {
    args,
    stdout: "piped",
    stderr: "piped",
    signal: AbortSignal.timeout(ms),
  }).output();
  const dec = new TextDecoder();
  return { code: out.code, stdout: dec.decode(out.stdout), stderr: dec.decode(out.stderr) };
}

/** A small deterministic PRNG (mulberry32) so fuzz failures can be replayed from the seed. */
export function prng(seed: number): () => number {
  let a = seed >>> 0;
  return () => {
    a = (a + 0x6d2b79f5) >>> 0;
    let t = a;
    t = Math.imul(t ^ (t >>> 15), t | 1);
    t ^= t + Math.imul(t ^ (t >>> 7), t | 61);
    return ((t ^ (t >>> 14)) >>> 0) / 4294967296;
  };
}

/** Valid packets of every kind a client sends, encoded for `version` (fuzz seeds). */
export function seedPackets(version: ProtocolVersion): Uint8Array[] {
  const v5 = version === 5;
  const props = v5 ? { properties: { userProperties: { k: "v" }, contentType: "t" } } : {};
  const list: Packet[] = [
    {
      cmd: "connect",
      protocolId: version === 3 ? "MQIsdp" : "MQTT",
      protocolVersion: version,
      clientId: "fuzz",
      clean: true,
      keepalive: 30,
      username: "u",
      password: Buffer.from("p"),
      will: { topic: "w/t", payload: Buffer.from("bye"), qos: 1, retain: false },
      ...(v5 ? { properties: { sessionExpiryInterval: 10, receiveMaximum: 5 } } : {}),
    } as Packet,
    {
      cmd: "publish",
      topic: "a/b",
      payload: "hello",
      qos: 1,
      messageId: 3,
      dup: false,
      retain: true,
      ...props,
    } as Packet,
    { cmd: "publish", topic: "a/b", payload: "", qos: 0, dup: false, retain: false },
    {
      cmd: "subscribe",
      messageId: 4,
      subscriptions: [{ topic: "a/+", qos: 1 }, { topic: "#", qos: 2 }],
    } as Packet,
    { cmd: "unsubscribe", messageId: 5, unsubscriptions: ["a/+"] } as Packet,
    { cmd: "puback", messageId: 6 },
    { cmd: "pubrec", messageId: 6 },
    { cmd: "pubrel", messageId: 6 },
    { cmd: "pubcomp", messageId: 6 },
    { cmd: "pingreq" },
    { cmd: "disconnect" },
  ];
  return list.map((p) => mqttPacket.generate(p, { protocolVersion: version }));
}

/** A random or mutated input for the decoder. */
export function fuzzInput(rand: () => number, seeds: Uint8Array[]): Uint8Array {
  const mode = rand();
  if (mode < 0.25) {
    const n = Math.floor(rand() * 64);
    return Uint8Array.from({ length: n }, () => Math.floor(rand() * 256));
  }
  const base = seeds[Math.floor(rand() * seeds.length)];
  const b = new Uint8Array(base);
  if (mode < 0.7) { // flip bytes
    const flips = 1 + Math.floor(rand() * 4);
    for (let i = 0; i < flips && b.length; i++) {
      b[Math.floor(rand() * b.length)] = Math.floor(rand() * 256);
    }
    return b;
  }
  if (mode < 0.85) return b.subarray(0, Math.floor(rand() * b.length)); // truncate
  const extra = Uint8Array.from(
    { length: Math.floor(rand() * 16) },
    () => Math.floor(rand() * 256),
  );
  const out = new Uint8Array(b.length + extra.length); // append garbage
  out.set(b);
  out.set(extra, b.length);
  return out;
}

/** An MQTT UTF-8 string field: two length bytes, then the UTF-8 bytes (or `raw` bytes as given). */
export function mqttString(s: string | Uint8Array): number[] {
  const b = typeof s === "string" ? new TextEncoder().encode(s) : s;
  return [b.length >> 8, b.length & 0xff, ...b];
}

/**
 * A hand-built packet: the first byte (type and flags), a Remaining Length computed from `body`,
 * then `body`. For packets no client library would encode (bad flags, missing payloads).
 */
export function rawPacket(first: number, body: number[]): Uint8Array {
  const len: number[] = [];
  let x = body.length;
  do {
    let b = x % 128;
    x = Math.floor(x / 128);
    if (x > 0) b |= 0x80;
    len.push(b);
  } while (x > 0);
  return Uint8Array.from([first, ...len, ...body]);
}

/** Polls `cond` every 5 ms until it holds; fails after `ms`. */
export async function until(cond: () => boolean, what: string, ms = 20_000): Promise<void> {
  const end = Date.now() + ms;
  while (!cond()) {
    if (Date.now() > end) throw new Error(`timed out: ${what}`);
    await sleep(5);
  }
}
