/**
 * Test harness of MQTT over WebSocket: a Core plus an {@link MqttServer} listening on TCP and on
 * WebSocket (optionally `wss://` with a test PKI), MQTT.js clients over any of the three
 * transports, and {@link RawWs}, a WebSocket client written byte by byte over a TCP socket so
 * tests control every frame (and see every byte the server sends back).
 *
 * @module
 */

import { type IClientOptions, mqtt, type MqttClient } from "./_dev_deps.ts";
import mqttPacket, { type Packet } from "mqtt-packet";
import { Core, type CoreOptions, Logger } from "../src/core/mod.ts";
import { MqttServer, type MqttServerOptions } from "../src/protocols/mqtt/mod.ts";
import { loadCodec, MqttFrameDecoder, type ProtocolVersion } from "../src/protocols/mqtt/codec.ts";
import type { MqttWsOptions } from "../src/protocols/mqtt/ws_options.ts";
import { within } from "./_mqtt_harness.ts";
import { makePki, type TestPki } from "./_tls.ts";

// The clients here decode with the gateway's codec directly (the server loads it on first need).
await loadCodec();

/** How a client reaches the server. */
export type Transport = "tcp" | "ws" | "wss";

/** The transports every behaviour test runs over. */
export const TRANSPORTS: readonly Transport[] = ["tcp", "ws", "wss"];

/** A started core + MQTT server with a WebSocket listener. */
export interface MqttWsHarness extends AsyncDisposable {
  core: Core;
  server: MqttServer;
  /** TCP port. */
  tcpPort: number;
  /** WebSocket port. */
  wsPort: number;
  /** JSON log lines written so far. */
  logs: string[];
  /** The test PKI when the WebSocket listener serves `wss://`. */
  pki: TestPki | undefined;
  /** The URL of `transport` (`mqtt://…`, `ws://…/mqtt`, `wss://…/mqtt`). */
  url(transport: Transport): string;
  /** An MQTT.js client over `transport`, connected; ended on dispose. */
  client(transport: Transport, options?: IClientOptions): Promise<MqttClient>;
  /** An MQTT.js client whose handlers can be attached before it connects; ended on dispose. */
  clientLater(transport: Transport, options?: IClientOptions): MqttClient;
  /** A raw WebSocket client after a successful upgrade; closed on dispose. */
  rawWs(options?: RawWsOptions): Promise<RawWs>;
}

/** Options of {@link startMqttWs}. */
export interface MqttWsHarnessOptions {
  core?: CoreOptions;
  server?: MqttServerOptions;
  websocket?: Partial<MqttWsOptions>;
  /** Serve `wss://` (a fresh test PKI). @default false */
  tls?: boolean;
  logLevel?: "debug" | "info" | "warn";
}

/** Starts Core + MqttServer on 127.0.0.1:0 with a WebSocket listener on another free port. */
export async function startMqttWs(options: MqttWsHarnessOptions = {}): Promise<MqttWsHarness> {
  const logs: string[] = [];
  const log = new Logger({ level: options.logLevel ?? "warn", sink: (l) => logs.push(l) });
  let dir: string | undefined;
  let pki: TestPki | undefined;
  if (options.tls) {
    dir = await Deno.makeTempDir({ prefix: "ferry-wss-" });
    pki = await makePki(dir);
  }
  const core = new Core({ anonymous: true, log, timerResolutionMs: 5, ...options.core });
  const server = new MqttServer(core, {
    hostname: "127.0.0.1",
    port: 0,
    ...options.server,
    websocket: {
      hostname: "127.0.0.1",
      port: 0,
      ...(pki ? { tls: { certFile: pki.certFile, keyFile: pki.keyFile } } : {}),
      ...options.websocket,
    },
  });
  const { port: tcpPort } = await server.listen();
  const wsPort = server.webSocketAddress!.port;
  const clients: MqttClient[] = [];
  const raws: RawWs[] = [];
  const path = options.websocket?.path ?? "/mqtt";
  const url = (t: Transport) =>
    t === "tcp" ? `mqtt://127.0.0.1:${tcpPort}` : `${t}://127.0.0.1:${wsPort}${path}`;
  const opts = (t: Transport, o: IClientOptions): IClientOptions => ({
    reconnectPeriod: 0,
    connectTimeout: 5000,
    ...(t === "wss" && pki ? { ca: pki.caPem } : {}),
    ...o,
  });
  return {
    core,
    server,
    tcpPort,
    wsPort,
    logs,
    pki,
    url,
    async client(t, o = {}) {
      const c = await within(
        mqtt.connectAsync(url(t), opts(t, o), false),
        8000,
        `MQTT.js connect over ${t}`,
      );
      clients.push(c);
      return c;
    },
    clientLater(t, o = {}) {
      const c = mqtt.connect(url(t), opts(t, o));
      clients.push(c);
      return c;
    },
    async rawWs(o = {}) {
      const r = await RawWs.open(wsPort, { path, ...o });
      raws.push(r);
      if (r.status !== 101) throw new Error(`upgrade refused: ${r.status} ${r.body}`);
      return r;
    },
    async [Symbol.asyncDispose]() {
      // Gracefully: a forced end leaves Deno's node:tls socket open for a while (the server then
      // waits closeTimeoutMs for an answer to its Close, correctly but slowly).
      await Promise.all(clients.map((c) => within(c.endAsync(), 3000, "client end")));
      for (const r of raws) r.close();
      await within(server.close(), 8000, "server close");
      await core.close();
      if (dir) await Deno.remove(dir, { recursive: true });
    },
  };
}

/** Options of {@link RawWs.open}. */
export interface RawWsOptions {
  /** Request target. @default "/mqtt" */
  path?: string;
  /** Subprotocols offered (`Sec-WebSocket-Protocol`); empty: the header is left out. @default ["mqtt"] */
  protocols?: string[];
  /** Extra or replacing request headers (`null` leaves a default one out). */
  headers?: Record<string, string | null>;
  /** A whole request to send instead of the one built. */
  request?: Uint8Array;
  /** MQTT version of the packets {@link RawWs.mqtt} encodes and {@link RawWs.packet} decodes. */
  version?: ProtocolVersion;
}

/** A frame as read from the server. */
export interface Frame {
  fin: boolean;
  op: number;
  /** Whether the server masked it (it must not, RFC 6455 §5.1). */
  masked: boolean;
  payload: Uint8Array;
}

/** A WebSocket client written by hand over TCP: every byte sent and received is the test's. */
export class RawWs {
  #conn: Deno.TcpConn;
  #buf = new Uint8Array(0);
  #ended = false;
  #reading: Promise<void>;
  #wake: (() => void) | undefined;
  #decoder: MqttFrameDecoder;
  #packets: Packet[] = [];
  #version: ProtocolVersion;
  /** Status of the upgrade response. */
  status = 0;
  /** Response headers (lower-case names). */
  headers = new Map<string, string>();
  /** Response body of a refusal. */
  body = "";
  /** Frames received after the upgrade, in order (MQTT payload frames included). */
  frames: Frame[] = [];

  private constructor(conn: Deno.TcpConn, version: ProtocolVersion) {
    this.#conn = conn;
    this.#version = version;
    this.#decoder = new MqttFrameDecoder({ protocolVersion: version });
    this.#reading = this.#read();
  }

  /** Connects to `port`, sends the upgrade request and reads the response head. */
  static async open(port: number, options: RawWsOptions = {}): Promise<RawWs> {
    const conn = await Deno.connect({ hostname: "127.0.0.1", port });
    const r = new RawWs(conn, options.version ?? 4);
    const protocols = options.protocols ?? ["mqtt"];
    const headers: Record<string, string | null> = {
      Host: `127.0.0.1:${port}`,
      Upgrade: "websocket",
      Connection: "Upgrade",
      "Sec-WebSocket-Key": btoa(String.fromCharCode(...crypto.getRandomValues(new Uint8Array(16)))),
      "Sec-WebSocket-Version": "13",
      ...(protocols.length ? { "Sec-WebSocket-Protocol": protocols.join(", ") } : {}),
      ...options.headers,
    };
    const lines = [`GET ${options.path ?? "/mqtt"} HTTP/1.1`];
    for (const [k, v] of Object.entries(headers)) if (v !== null) lines.push(`${k}: ${v}`);
    await r.sendBytes(
      options.request ?? new TextEncoder().encode(lines.join("\r\n") + "\r\n\r\n"),
    );
    await r.#readHead();
    return r;
  }

  async #read(): Promise<void> {
    const chunk = new Uint8Array(65536);
    try {
      for (;;) {
        const n = await this.#conn.read(chunk);
        if (n === null) break;
        const b = new Uint8Array(this.#buf.length + n);
        b.set(this.#buf);
        b.set(chunk.subarray(0, n), this.#buf.length);
        this.#buf = b;
        if (this.status === 101) this.#parseFrames();
        this.#wake?.();
      }
    } catch { /* reset or closed */ }
    this.#ended = true;
    this.#wake?.();
  }

  async #until(cond: () => boolean, what: string, ms: number): Promise<void> {
    const end = Date.now() + ms;
    while (!cond()) {
      if (this.#ended && !cond()) throw new Error(`connection ended before ${what}`);
      const left = end - Date.now();
      if (left <= 0) throw new Error(`timed out after ${ms} ms: ${what}`);
      await within(new Promise<void>((r) => this.#wake = r), left, what).catch(() => {});
    }
  }

  async #readHead(): Promise<void> {
    const end = () => {
      for (let i = 0; i + 3 < this.#buf.length; i++) {
        if (
          this.#buf[i] === 13 && this.#buf[i + 1] === 10 && this.#buf[i + 2] === 13 &&
          this.#buf[i + 3] === 10
        ) return i;
      }
      return -1;
    };
    await this.#until(() => end() >= 0, "the upgrade response", 5000);
    const at = end();
    const head = new TextDecoder().decode(this.#buf.subarray(0, at)).split("\r\n");
    this.status = Number(head[0].split(" ")[1]);
    for (const l of head.slice(1)) {
      const c = l.indexOf(":");
      this.headers.set(l.slice(0, c).trim().toLowerCase(), l.slice(c + 1).trim());
    }
    this.#buf = this.#buf.slice(at + 4);
    if (this.status === 101) this.#parseFrames();
    else {
      const len = Number(this.headers.get("content-length") ?? 0);
      await this.#until(() => this.#buf.length >= len, "the refusal body", 5000).catch(() => {});
      this.body = new TextDecoder().decode(this.#buf.subarray(0, len));
    }
  }

  #parseFrames(): void {
    for (;;) {
      const b = this.#buf;
      if (b.length < 2) return;
      let len = b[1] & 0x7f;
      let at = 2;
      if (len === 126) {
        if (b.length < 4) return;
        len = (b[2] << 8) | b[3];
        at = 4;
      } else if (len === 127) {
        if (b.length < 10) return;
        len = Number(new DataView(b.buffer, b.byteOffset + 2, 8).getBigUint64(0));
        at = 10;
      }
      const masked = (b[1] & 0x80) !== 0;
      if (masked) at += 4;
      if (b.length < at + len) return;
      const frame = {
        fin: (b[0] & 0x80) !== 0,
        op: b[0] & 0x0f,
        masked,
        payload: b.slice(at, at + len),
      };
      this.frames.push(frame);
      this.#buf = b.slice(at + len);
      if (frame.op === 0x2 || frame.op === 0x0) {
        try {
          this.#packets.push(...this.#decoder.push(frame.payload));
        } catch { /* the tests look at the frames */ }
      }
    }
  }

  /** True once the server closed the TCP connection. */
  get ended(): boolean {
    return this.#ended;
  }

  /** Sends raw bytes. */
  async sendBytes(bytes: Uint8Array): Promise<void> {
    try {
      let off = 0;
      while (off < bytes.length) off += await this.#conn.write(bytes.subarray(off));
    } catch { /* the server may have closed already */ }
  }

  /** Sends one frame, masked with a random key unless `mask: false`. */
  sendFrame(
    op: number,
    payload: Uint8Array,
    o: { fin?: boolean; mask?: boolean; rsv?: number; length?: number } = {},
  ): Promise<void> {
    return this.sendBytes(frame(op, payload, o));
  }

  /** Sends an MQTT packet (or bytes) in one binary frame. */
  mqtt(p: Packet | Uint8Array): Promise<void> {
    const bytes = p instanceof Uint8Array
      ? p
      : mqttPacket.generate(p, { protocolVersion: this.#version });
    return this.sendFrame(0x2, bytes);
  }

  /** Sends CONNECT in one frame and returns the CONNACK. */
  async connect(extra: Partial<mqttPacket.IConnectPacket> = {}): Promise<Packet> {
    await this.mqtt({
      cmd: "connect",
      protocolId: this.#version === 3 ? "MQIsdp" : "MQTT",
      protocolVersion: this.#version,
      clientId: `rawws-${crypto.randomUUID().slice(0, 8)}`,
      clean: true,
      keepalive: 0,
      ...extra,
    } as mqttPacket.IConnectPacket);
    return await this.packet();
  }

  /** The next MQTT packet the server sent (in binary frames). */
  async packet(ms = 5000): Promise<Packet> {
    await this.#until(() => this.#packets.length > 0, "an MQTT packet", ms);
    return this.#packets.shift()!;
  }

  /** Waits for the server's Close frame; returns its code (undefined: none) and reason. */
  async closeFrame(ms = 5000): Promise<{ code: number | undefined; reason: string }> {
    await this.#until(() => this.frames.some((f) => f.op === 0x8), "a Close frame", ms);
    const f = this.frames.find((f) => f.op === 0x8)!;
    return {
      code: f.payload.length >= 2 ? (f.payload[0] << 8) | f.payload[1] : undefined,
      reason: new TextDecoder().decode(f.payload.subarray(2)),
    };
  }

  /** Waits for the server to close the TCP connection. */
  async waitEnded(ms = 8000): Promise<void> {
    await within(this.#reading, ms, "the server to close the socket");
  }

  /** Waits for a frame matching `pred`. */
  async frame(pred: (f: Frame) => boolean, what: string, ms = 5000): Promise<Frame> {
    await this.#until(() => this.frames.some(pred), what, ms);
    return this.frames.find(pred)!;
  }

  /** Closes our side. Idempotent. */
  close(): void {
    try {
      this.#conn.close();
    } catch { /* closed */ }
  }
}

/** A client frame: FIN (unless `fin: false`), masked with a random key (unless `mask: false`). */
export function frame(
  op: number,
  payload: Uint8Array,
  o: { fin?: boolean; mask?: boolean; rsv?: number; length?: number } = {},
): Uint8Array {
  const mask = o.mask ?? true;
  const len = o.length ?? payload.length;
  const head: number[] = [((o.fin ?? true) ? 0x80 : 0) | ((o.rsv ?? 0) << 4) | op];
  const m = mask ? 0x80 : 0;
  if (len < 126) head.push(m | len);
  else if (len < 65536) head.push(m | 126, len >> 8, len & 255);
  else {
    head.push(m | 127);
    const b = new Uint8Array(8);
    new DataView(b.buffer).setBigUint64(0, BigInt(len));
    head.push(...b);
  }
  const key = mask ? crypto.getRandomValues(new Uint8Array(4)) : new Uint8Array(0);
  head.push(...key);
  const out = new Uint8Array(head.length + payload.length);
  out.set(head);
  for (let i = 0; i < payload.length; i++) {
    out[head.length + i] = mask ? payload[i] ^ key[i & 3] : payload[i];
  }
  return out;
}
