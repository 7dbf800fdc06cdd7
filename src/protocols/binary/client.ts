/**
 * The reference FBP/1 client: connects, says HELLO, sends telemetry (pipelined, each ACK matched
 * by seq), answers commands, pings. Tests and the benchmark drive the gateway with it; device
 * makers can read it as an example of the protocol.
 *
 * @module
 */

import { FrameDecoder, FrameParser } from "./codec.ts";
import {
  decodeAck,
  decodeCommand,
  decodeError,
  decodeHelloAck,
  encodeAck,
  encodeBye,
  encodeFrame,
  encodeHello,
  encodeTelemetry,
  FLAG_ACK_REQUESTED,
  type Frame,
  FrameType,
  HelloStatus,
} from "./frame.ts";

/** Options of {@link FbpClient.connect}. */
export interface FbpConnectOptions {
  /** Gateway host. @default "127.0.0.1" */
  hostname?: string;
  /** Gateway port. */
  port: number;
  /** Device id. */
  id: string;
  /** Device token. @default "" */
  token?: string;
  /** Requested keepalive in seconds (0 = gateway default). @default 60 */
  keepAlive?: number;
  /** ACK every COMMAND that asks for it. @default true */
  autoAck?: boolean;
  /** Milliseconds to wait for HELLO_ACK. @default 5000 */
  timeoutMs?: number;
  /** Connect with TLS, trusting these PEM CA certificates. @default plain TCP */
  caCerts?: string[];
}

/** A HELLO answered with a non-zero status. */
export class HelloRefusedError extends Error {
  override name = "HelloRefusedError";
  /** The HELLO_ACK status. */
  readonly status: number;
  /** Creates the error. */
  constructor(status: number) {
    super(`Cannot connect: gateway answered HELLO with status ${status}`);
    this.status = status;
  }
}

/** A command received from the gateway. */
export interface ReceivedCommand {
  /** Seq of the COMMAND frame. */
  seq: number;
  /** Command name. */
  name: string;
  /** Command data. */
  data: Uint8Array;
  /** Whether the gateway asked for an ACK. */
  ackRequested: boolean;
}

/** Waits with a deadline. */
function withTimeout<T>(p: Promise<T>, ms: number, what: string): Promise<T> {
  let t: ReturnType<typeof setTimeout> | undefined;
  return Promise.race([
    p,
    new Promise<never>((_, reject) => {
      t = setTimeout(() => reject(new Error(`Timed out after ${ms} ms waiting for ${what}`)), ms);
    }),
  ]).finally(() => clearTimeout(t));
}

/**
 * An FBP/1 connection with a frame queue, for devices, tests and load generation.
 *
 * @example
 * ```ts ignore
 * import { FbpClient } from "./client.ts";
 * const c = await FbpClient.connect({ port: 7883, id: "sensor-1", token: "t" });
 * const status = await c.telemetry(new TextEncoder().encode("21.5"), { channel: "temp", ack: true });
 * await c.close();
 * ```
 */
export class FbpClient implements AsyncDisposable {
  #conn: Deno.Conn;
  #parser: FrameParser;
  #frames: Frame[] = [];
  #waiters: Array<(f: Frame | undefined) => void> = [];
  #acks = new Map<number, (status: number) => void>();
  #commands: ReceivedCommand[] = [];
  #commandWaiters: Array<(c: ReceivedCommand | undefined) => void> = [];
  #seq = 1;
  #writeChain: Promise<void> = Promise.resolve();
  #closed = false;
  #ended = false;
  #autoAck: boolean;
  #reading: Promise<void>;
  /** ERROR frames received, in order. */
  readonly errors: Array<{ code: number; reason: string; seq: number }> = [];
  /** Keepalive granted by HELLO_ACK. */
  keepAlive = 0;

  /** Wraps an open connection (no HELLO sent). */
  constructor(conn: Deno.Conn, options: { autoAck?: boolean; maxPayload?: number } = {}) {
    this.#conn = conn;
    this.#autoAck = options.autoAck ?? true;
    this.#parser = new FrameParser({ maxPayload: options.maxPayload ?? 16 * 1024 * 1024 });
    this.#reading = this.#read();
  }

  /** Opens a TCP connection without saying HELLO (for protocol tests). */
  static async open(port: number, hostname = "127.0.0.1"): Promise<FbpClient> {
    return new FbpClient(await Deno.connect({ hostname, port }));
  }

  /** Connects and completes the HELLO handshake; throws {@link HelloRefusedError} on refusal. */
  static async connect(options: FbpConnectOptions): Promise<FbpClient> {
    const hostname = options.hostname ?? "127.0.0.1";
    const conn = options.caCerts
      ? await Deno.connectTls({ hostname, port: options.port, caCerts: options.caCerts })
      : await Deno.connect({ hostname, port: options.port });
    const c = new FbpClient(conn, { autoAck: options.autoAck });
    try {
      const status = await c.hello(options.id, options.token ?? "", options.keepAlive ?? 60, {
        timeoutMs: options.timeoutMs,
      });
      if (status !== HelloStatus.OK) throw new HelloRefusedError(status);
      return c;
    } catch (err) {
      await c.close();
      throw err;
    }
  }

  /** True once the gateway closed the connection. */
  get ended(): boolean {
    return this.#ended;
  }

  /** Resolves when the connection has ended. */
  get finished(): Promise<void> {
    return this.#reading;
  }

  /** Next sequence number. */
  nextSeq(): number {
    const s = this.#seq;
    this.#seq = (this.#seq + 1) >>> 0 || 1;
    return s;
  }

  /** Sends HELLO and returns the HELLO_ACK status. */
  async hello(
    id: string,
    token: string,
    keepAlive: number,
    options: { timeoutMs?: number } = {},
  ): Promise<number> {
    const seq = this.nextSeq();
    await this.send({
      type: FrameType.HELLO,
      flags: 0,
      seq,
      payload: encodeHello({ id, token, keepAlive }),
    });
    const f = await this.nextFrame(
      options.timeoutMs ?? 5000,
      (f) => f.type === FrameType.HELLO_ACK || f.type === FrameType.ERROR,
    );
    if (!f) throw new Error("Cannot connect: connection closed before HELLO_ACK");
    if (f.type === FrameType.ERROR) {
      const e = decodeError(f.payload);
      throw new Error(`Cannot connect: gateway sent ERROR ${e.code}: ${e.reason}`);
    }
    const ack = decodeHelloAck(f.payload);
    this.keepAlive = ack.keepAlive;
    return ack.status;
  }

  /** Sends one frame. */
  async send(frame: Frame): Promise<void> {
    await this.sendRaw(encodeFrame(frame));
  }

  /** Sends raw bytes (for malformed-input tests). Writes are serialized: frames never interleave. */
  sendRaw(bytes: Uint8Array): Promise<void> {
    const write = async () => {
      let off = 0;
      while (off < bytes.length) off += await this.#conn.write(bytes.subarray(off));
    };
    const p = this.#writeChain.then(write);
    this.#writeChain = p.catch(() => {});
    return p;
  }

  /**
   * Sends telemetry. With `ack`, resolves to the ACK status once it arrives (many may be in
   * flight at once); without, resolves when written.
   */
  async telemetry(
    data: Uint8Array,
    options: { channel?: string; ack?: boolean; timeoutMs?: number } = {},
  ): Promise<number> {
    const seq = this.nextSeq();
    const payload = encodeTelemetry({ channel: options.channel ?? "", data });
    if (!options.ack) {
      await this.send({ type: FrameType.TELEMETRY, flags: 0, seq, payload });
      return 0;
    }
    const acked = new Promise<number>((resolve) => this.#acks.set(seq, resolve));
    await this.send({ type: FrameType.TELEMETRY, flags: FLAG_ACK_REQUESTED, seq, payload });
    return withTimeout(acked, options.timeoutMs ?? 10_000, `ACK of seq ${seq}`)
      .finally(() => this.#acks.delete(seq));
  }

  /** Sends PING and waits for the PONG. */
  async ping(timeoutMs = 5000): Promise<void> {
    const seq = this.nextSeq();
    await this.send({ type: FrameType.PING, flags: 0, seq, payload: new Uint8Array() });
    const f = await this.nextFrame(timeoutMs, (f) => f.type === FrameType.PONG && f.seq === seq);
    if (!f) throw new Error("connection closed before PONG");
  }

  /** Next command from the gateway, or `undefined` if the connection ends first. */
  nextCommand(timeoutMs = 5000): Promise<ReceivedCommand | undefined> {
    const c = this.#commands.shift();
    if (c) return Promise.resolve(c);
    if (this.#ended) return Promise.resolve(undefined);
    return withTimeout(
      new Promise<ReceivedCommand | undefined>((r) => this.#commandWaiters.push(r)),
      timeoutMs,
      "a COMMAND",
    );
  }

  /**
   * Next frame not consumed by the client itself (telemetry ACKs and COMMANDs are), optionally
   * the next one matching `filter` (others are dropped). `undefined` when the connection ended.
   */
  async nextFrame(timeoutMs = 5000, filter?: (f: Frame) => boolean): Promise<Frame | undefined> {
    const deadline = Date.now() + timeoutMs;
    for (;;) {
      let f = this.#frames.shift();
      if (!f) {
        if (this.#ended) return undefined;
        f = await withTimeout(
          new Promise<Frame | undefined>((r) => this.#waiters.push(r)),
          Math.max(1, deadline - Date.now()),
          "a frame",
        );
        if (!f) return undefined;
      }
      if (!filter || filter(f)) return f;
    }
  }

  /** Next ERROR frame's code and reason. */
  async nextError(
    timeoutMs = 5000,
  ): Promise<{ code: number; reason: string; seq: number } | undefined> {
    const f = await this.nextFrame(timeoutMs, (f) => f.type === FrameType.ERROR);
    return f && { ...decodeError(f.payload), seq: f.seq };
  }

  /**
   * The socket's bytes piped through the {@link FrameDecoder} `TransformStream` (a device holds
   * one connection, so the stream's cost per read does not matter here; the gateway reads its
   * thousands directly, see docs/architecture.md).
   */
  async #read(): Promise<void> {
    try {
      const frames = this.#conn.readable.pipeThrough(new FrameDecoder({ parser: this.#parser }));
      for await (const batch of frames) for (const f of batch) this.#onFrame(f);
    } catch { /* reset or closed locally, or a framing error: the connection is over */ }
    this.#ended = true;
    for (const w of this.#waiters.splice(0)) w(undefined);
    for (const w of this.#commandWaiters.splice(0)) w(undefined);
  }

  #onFrame(f: Frame): void {
    if (f.type === FrameType.ACK) {
      const resolve = this.#acks.get(f.seq);
      if (resolve) {
        this.#acks.delete(f.seq);
        resolve(decodeAck(f.payload));
        return;
      }
    }
    if (f.type === FrameType.ERROR) {
      try {
        this.errors.push({ ...decodeError(f.payload), seq: f.seq });
      } catch { /* keep the raw frame below */ }
    }
    if (f.type === FrameType.COMMAND) {
      const c = decodeCommand(f.payload);
      const cmd = {
        seq: f.seq,
        name: c.name,
        data: c.data,
        ackRequested: (f.flags & FLAG_ACK_REQUESTED) !== 0,
      };
      if (cmd.ackRequested && this.#autoAck) {
        this.send({ type: FrameType.ACK, flags: 0, seq: f.seq, payload: encodeAck(0) }).catch(
          () => {},
        );
      }
      const w = this.#commandWaiters.shift();
      if (w) w(cmd);
      else this.#commands.push(cmd);
      return;
    }
    const w = this.#waiters.shift();
    if (w) w(f);
    else this.#frames.push(f);
  }

  /** Says BYE and waits for the gateway to close. */
  async bye(reason = 0, timeoutMs = 5000): Promise<void> {
    await this.send({
      type: FrameType.BYE,
      flags: 0,
      seq: this.nextSeq(),
      payload: encodeBye(reason),
    });
    await withTimeout(this.#reading, timeoutMs, "the gateway to close after BYE");
    await this.close();
  }

  /** Closes the connection. Idempotent. */
  async close(): Promise<void> {
    if (!this.#closed) {
      this.#closed = true;
      try {
        this.#conn.close();
      } catch { /* already closed */ }
    }
    await this.#reading;
  }

  /** Same as {@link close}. */
  [Symbol.asyncDispose](): Promise<void> {
    return this.close();
  }
}
