/**
 * One FBP/1 connection: the HELLO handshake, telemetry into the core (waiting while the pipeline
 * is full, which stops socket reads), ACKs in frame order, commands out, keepalive via the core's
 * supervisor, and every error code of the spec (docs/binary-protocol.md).
 *
 * @module
 */

import {
  ackTopic,
  type Attachment,
  type CloseReason,
  type DeadlineEntry,
  type DevicePort,
  type Draft,
  errorMessage,
  Identity,
  type Logger,
  type LoginRefusalReason,
  type PendingCommand,
  type PublishOptions,
  type PublishRefusalReason,
  type PublishResult,
  type Refusal,
  type SessionDescription,
  type SessionHandle,
  telemetryTopic,
} from "../../core/mod.ts";
import { type ChunkConsumer, type ReadOptions, serveChunks } from "../../net/chunk_reader.ts";
import { ConnWriter, type ConnWriterOptions } from "../../net/conn_writer.ts";
import { OrderedAnswers } from "../../net/ordered_answers.ts";
import { FrameParser } from "./codec.ts";
import {
  AckStatus,
  decodeAck,
  decodeHello,
  decodeTelemetry,
  encodeAck,
  encodeBye,
  encodeCommand,
  encodeError,
  encodeFrameInto,
  encodeHelloAck,
  ErrorCode,
  FLAG_ACK_REQUESTED,
  type Frame,
  FrameSyntaxError,
  FrameType,
  HEADER_SIZE,
  HelloStatus,
  TRAILER_SIZE,
} from "./frame.ts";
import type { BinarySessionOptions } from "./options.ts";

/** What a session needs from its server. */
export interface BinarySessionHost {
  /** Component logger. */
  log: Logger;
  /**
   * Routes the device's commands from the core's store to `session` (one watcher per server, not
   * one per device).
   */
  attachCommands(id: string, session: BinarySession): void;
  /** Stops routing the device's commands to `session` (if it is still the routed one). */
  detachCommands(id: string, session: BinarySession): void;
  /** Options of every session's writer (callbacks get the session). */
  writerOptions: ConnWriterOptions<BinarySession>;
  /** Options of every session's socket reader. */
  readOptions: ReadOptions;
  /** Called once when a session has ended and released everything. */
  onClosed(session: BinarySession): void;
}

/** Commands sent and not yet acknowledged, per session. */
const MAX_PENDING_COMMANDS = 1024;

const CLOSE_CODES: Record<CloseReason["code"], number> = {
  taken_over: ErrorCode.SESSION_TAKEN_OVER,
  keepalive_timeout: ErrorCode.KEEPALIVE_TIMEOUT,
  shutting_down: ErrorCode.SHUTTING_DOWN,
  removed: ErrorCode.NOT_AUTHENTICATED,
  protocol_error: ErrorCode.BAD_PAYLOAD,
  slow_consumer: 0, // nothing can be written to a peer that does not read
  administrative: 0, // an operator disconnected the device: FBP/1 has no code for it, the link closes
};

/** The HELLO_ACK status of a refused login [FBP-4.2-1]. */
function helloStatus(r: Refusal<LoginRefusalReason>): number {
  switch (r.reason) {
    case "bad_id":
      return HelloStatus.BAD_ID;
    case "bad_credentials":
    case "no_credentials":
      return HelloStatus.BAD_CREDENTIALS;
    case "throttled": // retryable: the right token gets in once the throttle ends
    case "unavailable":
      return HelloStatus.UNAVAILABLE;
  }
}

/** The ACK status of a refused message (§9). */
function ackStatus(r: Refusal<PublishRefusalReason>): number {
  switch (r.reason) {
    case "not_authorized":
      return AckStatus.NOT_AUTHORIZED;
    case "too_large":
      return AckStatus.TOO_LARGE;
    case "rate_limited":
    case "overloaded":
    case "quota":
    case "shutting_down":
    case "failed":
      return AckStatus.OVERLOADED;
  }
}

/** ACK bodies by status (encoded once: an ACK per telemetry frame allocates nothing). */
const ACK_BODIES: Uint8Array[] = [];

function ackBody(status: number): Uint8Array {
  return ACK_BODIES[status] ??= encodeAck(status);
}

/** Read buffer of a quiet connection (a HELLO is ~40 bytes; busy reads grow it up to 16 KiB). */
export const IDLE_READ_BUFFER = 64;

let nextSessionId = 1;
const decoder = new TextDecoder();
const encoder = new TextEncoder();

/** A decoded frame or a decoding error, in stream order. */
type FrameEvent = Frame | FrameSyntaxError;

/** Frames of the read being decoded (one array per read, handed to the session). */
let decoded: FrameEvent[] = [];
const collect = (e: FrameEvent): void => void decoded.push(e);

/** What a session that has published holds: its publish options, ACK order and topic. */
interface Traffic {
  /** Waiting for room, in the session's lane. */
  options: PublishOptions;
  /** ACK order, made on the first telemetry. */
  answers?: OrderedAnswers;
  /** The device's telemetry topic without a channel, once used. */
  topic?: string;
}

/** A read's frames from `next` on, kept while an earlier one waits. */
interface Rest {
  events: FrameEvent[];
  next: number;
}

/** One device connection speaking FBP/1. */
export class BinarySession implements SessionHandle, ChunkConsumer {
  #number = nextSessionId++;
  /** Unique id of the connection (made when asked: idle sessions keep a number). */
  get sessionId(): string {
    return `fbp-${this.#number}`;
  }
  /** Always `binary`. */
  get protocol(): "binary" {
    return "binary";
  }
  #parser: FrameParser | undefined; // while frames come (a device that only said HELLO has none)
  #offset = 0; // stream offset of the next read while there is no parser
  #port: DevicePort;
  #conn: Deno.Conn;
  #opts: BinarySessionOptions;
  #writer: ConnWriter<BinarySession>;
  #who: Identity | undefined; // once HELLO succeeded (its device id is the device's)
  #attachment: Attachment | undefined;
  #keepalive: DeadlineEntry | undefined;
  #helloTimer: DeadlineEntry | undefined;
  #host: BinarySessionHost;
  #closed = false;
  #nextSeq = 1;
  #pending: Map<number, string> | undefined; // command seq → name, made on the first command
  #traffic: Traffic | undefined; // made on the first publish (an idle device never has one)
  #rest: Rest | undefined; // the rest of a read's frames while one of them waits
  #keepAliveSec = 0;
  #connectedAt = 0;

  /** Starts serving `conn`. */
  constructor(
    port: DevicePort,
    conn: Deno.Conn,
    options: BinarySessionOptions,
    host: BinarySessionHost,
  ) {
    this.#host = host;
    this.#port = port;
    this.#conn = conn;
    this.#opts = options;
    this.#writer = new ConnWriter<BinarySession>(conn, host.writerOptions, this);
    this.#helloTimer = port.deadlines.add(
      options.helloTimeoutMs,
      BinarySession.#helloExpired,
      this,
    );
    // Each read's bytes go straight to the parser and its frames to the handlers (see
    // docs/architecture.md for why not through a TransformStream here). Never rejects.
    serveChunks(conn, this, host.readOptions);
  }

  /** The server's logger (not a field: idle sessions hold less). */
  get #log(): Logger {
    return this.#host.log;
  }

  /** HELLO timer expiry (one callback for every session: no closure each). */
  static #helloExpired = (s: BinarySession): void => {
    s.#helloTimer = undefined;
    if (s.#who === undefined) {
      s.#error(ErrorCode.HELLO_TIMEOUT, 0, `no HELLO within ${s.#opts.helloTimeoutMs} ms`);
      s.#shutdown();
    }
  };

  /** The peer's address (computed when needed: idle connections do not keep strings for it). */
  get #addressText(): string {
    try {
      return (this.#conn.remoteAddr as Deno.NetAddr).hostname;
    } catch {
      return "?";
    }
  }

  /** The peer's host address (as admitted by the per-address limit). */
  get address(): string {
    return this.#addressText;
  }

  /** The peer's address and port, for logs. */
  get #remoteText(): string {
    try {
      const a = this.#conn.remoteAddr as Deno.NetAddr;
      return `${a.hostname}:${a.port}`;
    } catch {
      return "?";
    }
  }

  /**
   * What the connection shows of itself (the management API's device detail). FBP/1 has no
   * subscriptions: a device gets its commands from the core's store.
   */
  describe(): SessionDescription {
    return {
      remoteAddress: this.#remoteText,
      protocolVersion: "1",
      keepAliveSec: this.#keepAliveSec,
      connectedAt: this.#who ? this.#connectedAt : undefined,
    };
  }

  /** The authenticated device, once HELLO succeeded. */
  get deviceId(): string | undefined {
    return this.#who?.deviceId;
  }

  /** Subscriber id (for no-local). */
  get id(): string {
    return this.sessionId;
  }

  // ---- ChunkConsumer: the connection's life, read by `serveChunks` (one async frame) ----

  /** True once the session is closing: nothing more is read. */
  get closing(): boolean {
    return this.#closed;
  }

  /** Reading has ended: shut down and tell the server. */
  async end(error?: unknown): Promise<void> {
    if (error !== undefined && !this.#closed) {
      this.#log.debug("connection read failed", { remote: this.#remoteText, error });
    }
    try {
      await this.#shutdown(error !== undefined ? "read_failed" : "peer_closed");
    } finally {
      this.#host.onClosed(this);
    }
  }

  /**
   * Decodes one read and handles its frames in order; a promise only while one waits (the core is
   * full: reading stops until it settles, which is the backpressure). A bad CRC is handled in
   * stream order (ERROR 3, the connection stays); a fatal framing error comes after the frames
   * before it: ERROR, then the connection closes.
   */
  chunk(bytes: Uint8Array): Promise<void> | undefined {
    decoded = [];
    const parser = this.#parser ??= new FrameParser({
      maxPayload: this.#opts.maxPayload,
      budget: this.#port.budget,
      offset: this.#offset,
    });
    try {
      parser.parse(bytes, collect, collect);
    } catch (err) {
      if (!(err instanceof FrameSyntaxError)) throw err;
      decoded.push(err);
    }
    // A device that has said HELLO and not published keeps no parser between reads (most
    // idle devices: HELLO, then PINGs or nothing); one that publishes keeps its parser.
    if (this.#traffic === undefined && parser.buffered === 0) {
      this.#offset = parser.offset;
      this.#parser = undefined;
    }
    const events = decoded;
    decoded = [];
    return this.#handle(events, 0);
  }

  /** Handles `events` from `next` on, until one returns a promise (the rest waits for it). */
  #handle(events: FrameEvent[], next: number): Promise<void> | undefined {
    while (next < events.length && !this.#closed) {
      const pending = this.#onEvent(events[next++]);
      if (pending) {
        this.#rest = { events, next };
        return pending.then(() => this.#handleRest());
      }
    }
    return undefined;
  }

  /** The frames left of a read after one of them waited. */
  #handleRest(): Promise<void> | undefined {
    const rest = this.#rest!;
    this.#rest = undefined;
    return this.#handle(rest.events, rest.next);
  }

  /** Payloads are copied out of the read (FrameParser), so its buffer can take the next read. */
  keepsChunk(): boolean {
    return false;
  }

  /** Counts bytes read. */
  onBytes(n: number): void {
    this.#port.stats.bytesIn(n);
  }

  /** One decoded frame or in-band decoding error, in stream order. */
  #onEvent(ev: FrameEvent): Promise<void> | void {
    this.#port.stats.frameIn();
    if (ev instanceof FrameSyntaxError) return this.#frameError(ev);
    this.#keepalive?.touch();
    return this.#onFrame(ev);
  }

  #frameError(err: FrameSyntaxError): void {
    this.#port.stats.error(String(err.code));
    // Per-frame lines are throttled per kind: a peer sending garbage cannot flood the log.
    this.#port.throttled.info(`bad_frame:${err.code}`, "bad frame", {
      remote: this.#remoteText,
      device: this.deviceId,
      code: err.code,
      offset: err.offset,
      reason: err.message,
    });
    if (
      err.code === ErrorCode.OVERLOADED && err.seq !== undefined &&
      ((err.flags ?? 0) & FLAG_ACK_REQUESTED)
    ) {
      // [FBP-2-7] a frame the budget could not take: its ACK says "retry later".
      this.#ackInOrder(err.seq, AckStatus.OVERLOADED);
    } else this.#error(err.code, err.seq ?? 0, err.message);
    if (err.fatal) this.#shutdown("protocol_error");
  }

  #onFrame(f: Frame): Promise<void> | void {
    if (f.flags & ~FLAG_ACK_REQUESTED) {
      return this.#reject(
        f,
        ErrorCode.BAD_PAYLOAD,
        `reserved flag bits set: 0x${f.flags.toString(16)}`,
      );
    }
    const who = this.#who;
    if (who === undefined) {
      if (f.type === FrameType.HELLO) return this.#hello(f);
      this.#error(ErrorCode.NOT_AUTHENTICATED, f.seq, "the first frame must be HELLO");
      this.#port.stats.error(String(ErrorCode.NOT_AUTHENTICATED));
      return this.#shutdown("protocol_error");
    }
    const id = who.deviceId!; // a device's login always names it
    this.#port.touch(id);
    switch (f.type) {
      case FrameType.TELEMETRY:
        return this.#telemetry(f, who, id);
      case FrameType.ACK:
        return this.#ack(f, who, id);
      case FrameType.PING:
        this.#send(FrameType.PONG, f.seq, new Uint8Array(0));
        return;
      case FrameType.PONG:
        return;
      case FrameType.BYE:
        this.#log.info("device said BYE", { device: this.deviceId, remote: this.#remoteText });
        this.#send(FrameType.BYE, f.seq, encodeBye(0));
        return this.#shutdown("bye");
      case FrameType.HELLO:
        return this.#reject(
          f,
          ErrorCode.BAD_PAYLOAD,
          "already authenticated: HELLO is only valid once",
        );
      default:
        return this.#reject(
          f,
          ErrorCode.UNKNOWN_TYPE,
          `unknown or unexpected frame type 0x${f.type.toString(16).padStart(2, "0")}`,
        );
    }
  }

  /** Drops a frame with an ERROR (the connection stays). */
  #reject(f: Frame, code: number, reason: string): void {
    this.#port.stats.error(String(code));
    this.#port.throttled.info(`frame_rejected:${code}`, "frame rejected", {
      device: this.deviceId,
      remote: this.#remoteText,
      code,
      reason,
    });
    this.#error(code, f.seq, reason);
    if (
      f.type === FrameType.TELEMETRY && (f.flags & FLAG_ACK_REQUESTED) &&
      code === ErrorCode.BAD_PAYLOAD
    ) {
      this.#ackInOrder(f.seq, AckStatus.BAD_PAYLOAD);
    }
  }

  #hello(f: Frame): void {
    let hello;
    try {
      hello = decodeHello(f.payload);
    } catch (err) {
      const reason = errorMessage(err);
      if (!helloIdValid(f.payload)) return this.#refuse(f, HelloStatus.BAD_ID, reason);
      return this.#reject(f, ErrorCode.BAD_PAYLOAD, reason);
    }
    const who = this.#port.login({ user: hello.id, secret: hello.token }, this.#addressText);
    if (!(who instanceof Identity)) return this.#refuse(f, helloStatus(who), who.message, true);
    const o = this.#opts;
    const keepAlive = hello.keepAlive === 0
      ? o.defaultKeepAliveSec
      : Math.min(hello.keepAlive, o.maxKeepAliveSec);
    this.#helloTimer?.cancel();
    this.#helloTimer = undefined;
    this.#who = who;
    this.#keepAliveSec = keepAlive;
    this.#connectedAt = this.#port.clock.now();
    this.#send(FrameType.HELLO_ACK, f.seq, encodeHelloAck({ status: HelloStatus.OK, keepAlive }));
    this.#host.attachCommands(hello.id, this);
    this.#attachment = this.#port.attach(who, this);
    this.#keepalive = this.#port.supervise(this, keepAlive * 1500);
    this.#log.info("device connected", { device: hello.id, remote: this.#remoteText, keepAlive });
    // Commands kept while the device was offline go out now, oldest first [FBP-6-3].
    for (const cmd of this.#port.commands.pending(hello.id)) {
      if (!this.offer(cmd)) break;
    }
  }

  /** Answers HELLO with a refusal and closes (`logged`: the port logged the failed login). */
  #refuse(f: Frame, status: number, reason: string, logged = false): void {
    this.#port.stats.error(`hello_${status}`);
    if (!logged) {
      this.#port.throttled.info(`hello_refused:${status}`, "HELLO refused", {
        remote: this.#remoteText,
        status,
        reason,
      });
    }
    this.#send(FrameType.HELLO_ACK, f.seq, encodeHelloAck({ status, keepAlive: 0 }));
    this.#shutdown();
  }

  #telemetry(f: Frame, who: Identity, id: string): Promise<void> | void {
    let body;
    try {
      body = decodeTelemetry(f.payload);
    } catch (err) {
      return this.#reject(
        f,
        ErrorCode.BAD_PAYLOAD,
        errorMessage(err),
      );
    }
    const ackWanted = (f.flags & FLAG_ACK_REQUESTED) !== 0;
    const draft: Draft = {
      topic: body.channel
        ? telemetryTopic(id, body.channel)
        : this.#publishing().topic ??= telemetryTopic(id),
      payload: body.data,
      qos: ackWanted ? 1 : 0,
      retain: false,
      origin: this.sessionId,
    };
    // Accepted at once when the core has room (no promise per frame); otherwise it waits: for the
    // spool's commit while the session reads on, up to its lane's window; for room in the
    // pipeline with reading stopped (backpressure). ACKs go out in frame order.
    const seq = f.seq;
    const options = this.#publishing().options;
    const answers = this.#ordered();
    const result = this.#port.publish(who, draft, options);
    if (answers.waiting === 0 && !(result instanceof Promise)) {
      this.#answer(result, seq, ackWanted); // the common case: no closure, no promise
      return options.lane!.roomWait;
    }
    return answers.answer(result, (r) => this.#answer(r, seq, ackWanted)) ??
      options.lane!.roomWait;
  }

  /** How this session publishes (made at its first publish). */
  #publishing(): Traffic {
    return this.#traffic ??= { options: { wait: true, lane: this.#port.lane() } };
  }

  /** The ACK order of this session. */
  #ordered(): OrderedAnswers {
    const traffic = this.#publishing();
    return traffic.answers ??= new OrderedAnswers(traffic.options.lane!.window, (err) => {
      this.#log.error("answering telemetry failed", { device: this.deviceId, error: err });
      this.#shutdown("write_failed");
    });
  }

  /** Sends an ACK after those still waiting (at once when none waits). */
  #ackInOrder(seq: number, status: number): void {
    const answers = this.#traffic?.answers;
    const send = () => void this.#send(FrameType.ACK, seq, ackBody(status));
    if (answers === undefined || answers.waiting === 0) send();
    else answers.answer(undefined, send);
  }

  /** ACKs telemetry with the port's answer (acknowledged means accepted, durable with a spool). */
  #answer(r: PublishResult, seq: number, ackWanted: boolean): void {
    if (this.#closed) return;
    if (!r.ok) {
      this.#log.debug("telemetry refused", { device: this.deviceId, seq, reason: r.reason });
    }
    if (ackWanted) this.#send(FrameType.ACK, seq, ackBody(r.ok ? AckStatus.OK : ackStatus(r)));
  }

  #ack(f: Frame, who: Identity, id: string): void {
    let status: number;
    try {
      status = decodeAck(f.payload);
    } catch (err) {
      return this.#reject(
        f,
        ErrorCode.BAD_PAYLOAD,
        errorMessage(err),
      );
    }
    const name = this.#pending?.get(f.seq);
    if (name === undefined) {
      this.#log.debug("ACK for no pending command", { device: this.deviceId, seq: f.seq });
      return;
    }
    this.#pending!.delete(f.seq);
    const ack: Draft = {
      topic: ackTopic(id, name),
      payload: encoder.encode(JSON.stringify({ seq: f.seq, status })),
      qos: 1,
      retain: false,
      origin: this.sessionId,
    };
    // The device waits for nothing here: its ACK is published without holding its reads.
    const r = this.#port.publish(who, ack, this.#publishing().options);
    const logged = (r: PublishResult) => {
      if (!r.ok) this.#log.info("command ack not published", { topic: ack.topic, why: r.message });
    };
    if (r instanceof Promise) r.then(logged);
    else logged(r);
  }

  /**
   * Sends a pending command from the core's store as a COMMAND frame. FBP/1 has no retransmission
   * of commands: once the frame is queued on the live connection the command leaves the store (the
   * device's ACK, when asked for, is published on `devices/{id}/acks/{name}`). Returns false when
   * the session cannot take it (closed, or claimed elsewhere); the command then stays pending.
   */
  offer(cmd: PendingCommand): boolean {
    if (this.#closed || this.#who === undefined) return false;
    const commands = this.#port.commands;
    if (!commands.claim(cmd)) return false;
    const seq = this.#nextSeq;
    const flags = cmd.msg.qos > 0 ? FLAG_ACK_REQUESTED : 0;
    let body;
    try {
      body = encodeCommand({ name: cmd.name, data: cmd.msg.payload });
    } catch (err) {
      commands.discard(cmd); // never deliverable here
      this.#log.warn("command not sendable over FBP/1", { device: this.deviceId, error: err });
      return true;
    }
    if (body.length > this.#opts.maxPayload) {
      commands.discard(cmd);
      this.#port.stats.drop("too_large");
      this.#log.warn("command too large for the device", {
        device: this.deviceId,
        bytes: body.length,
      });
      return true;
    }
    if (!this.#send(FrameType.COMMAND, seq, body, flags)) {
      commands.release(cmd); // not written: it waits for the next connection
      return false;
    }
    this.#nextSeq = (this.#nextSeq + 1) >>> 0 || 1;
    commands.delivered(cmd);
    if (flags) {
      this.#pending ??= new Map();
      this.#pending.set(seq, cmd.name);
      if (this.#pending.size > MAX_PENDING_COMMANDS) {
        this.#pending.delete(this.#pending.keys().next().value!);
      }
    }
    return true;
  }

  /** Encodes a frame straight into the writer's queue (no buffer of its own per frame). */
  #send(type: number, seq: number, payload: Uint8Array, flags = 0): boolean {
    const out = this.#writer.reserve(HEADER_SIZE + payload.length + TRAILER_SIZE);
    if (out === undefined) return false;
    encodeFrameInto(out, type, flags, seq, payload);
    this.#port.stats.frameOut();
    return true;
  }

  #error(code: number, seq: number, reason: string): void {
    this.#send(FrameType.ERROR, seq, encodeError({ code, reason: truncate(reason) }));
  }

  /** Closes the session, telling the device why (SessionHandle). Idempotent. */
  close(reason: CloseReason): void {
    if (this.#closed) return;
    const code = CLOSE_CODES[reason.code];
    this.#log.info("closing session", {
      device: this.deviceId,
      remote: this.#remoteText,
      reason: reason.code,
      detail: reason.message,
    });
    if (code) this.#error(code, 0, reason.message);
    this.#shutdown(reason.code);
  }

  #shutdownPromise: Promise<void> | undefined;
  /** Closes the connection; `why` (the first given) is the reason its device goes offline. */
  #shutdown(why?: string): Promise<void> {
    return this.#shutdownPromise ??= (async () => {
      this.#closed = true;
      this.#parser?.release(); // a frame cut off by the close gives its reservation back
      this.#helloTimer?.cancel();
      this.#keepalive?.cancel();
      const id = this.#who?.deviceId;
      if (id !== undefined) this.#host.detachCommands(id, this);
      this.#attachment?.detach(why ?? "closed");
      // Let queued frames (the ERROR saying why) reach the peer, bounded by the drain timeout.
      await this.#writer.flushed();
      try {
        this.#conn.close();
      } catch { /* already closed */ }
    })();
  }
}

/** True when the id part of a HELLO body is well-formed (to tell "bad id" from other faults). */
function helloIdValid(p: Uint8Array): boolean {
  if (p.length < 1) return false;
  const n = p[0];
  if (n < 1 || n > 64 || p.length < 1 + n) return false;
  return /^[A-Za-z0-9._:-]+$/.test(decoder.decode(p.subarray(1, 1 + n)));
}

function truncate(s: string): string {
  return s.length > 200 ? s.slice(0, 197) + "..." : s;
}
