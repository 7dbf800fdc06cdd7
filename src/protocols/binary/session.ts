/**
 * One FBP/1 connection: the HELLO handshake, telemetry into the core (waiting while the pipeline
 * is full, which stops socket reads), ACKs in frame order, commands out, keepalive via the core's
 * supervisor, and every error code of the spec (docs/binary-protocol.md).
 *
 * @module
 */

import { canPublish, type Principal } from "../../core/acl.ts";
import type { PendingCommand } from "../../core/command_store.ts";
import type { Core } from "../../core/core.ts";
import type { DeadlineEntry } from "../../core/deadline_queue.ts";
import type { Logger } from "../../core/logger.ts";
import { createMessage, type Message } from "../../core/message.ts";
import type { CloseReason, SessionHandle } from "../../core/registry.ts";
import { ackTopic, telemetryTopic } from "../../core/topics.ts";
import { type BurstConsumer, type BurstOptions, serveBursts } from "../../net/burst_source.ts";
import { ConnWriter, type ConnWriterOptions } from "../../net/conn_writer.ts";
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
  encodeFrame,
  encodeHelloAck,
  ErrorCode,
  FLAG_ACK_REQUESTED,
  type Frame,
  FrameSyntaxError,
  FrameType,
  HelloStatus,
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
  /** Options of every session's burst reader. */
  burstOptions: BurstOptions;
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
};

/** Label sets used on every frame: the same objects each time (metric keys are cached). */
const LABELS = Object.freeze({ protocol: "binary" });

/** Read buffer of a quiet connection (a HELLO is ~40 bytes; bursts grow it up to 16 KiB). */
export const IDLE_READ_BUFFER = 64;

let nextSessionId = 1;
const decoder = new TextDecoder();
const encoder = new TextEncoder();

/** A decoded frame or an in-band decoding error (kept in stream order). */
type FrameEvent = Frame | FrameSyntaxError;

/**
 * Splits bytes into frames, one array of them per chunk read (one stream step per read, not per
 * frame). Decoding errors travel in-band, in stream order: frames before a bad CRC or a fatal
 * error are handled (and ACKed) before the ERROR for it goes out, and a fatal error ends the
 * stream after it.
 */
function frameEvents(parser: FrameParser): TransformStream<Uint8Array, FrameEvent[]> {
  return new TransformStream<Uint8Array, FrameEvent[]>({
    transform(chunk, controller) {
      const events: FrameEvent[] = [];
      const out = (e: FrameEvent) => events.push(e);
      try {
        parser.parse(chunk, out, out);
      } catch (err) {
        if (!(err instanceof FrameSyntaxError)) throw err;
        events.push(err);
        controller.enqueue(events);
        controller.terminate();
        return;
      }
      if (events.length) controller.enqueue(events);
    },
  });
}

/** One device connection speaking FBP/1. */
export class BinarySession implements SessionHandle, BurstConsumer<FrameEvent[]> {
  #number = nextSessionId++;
  /** Unique id of the connection (made when asked: idle sessions keep a number). */
  get sessionId(): string {
    return `fbp-${this.#number}`;
  }
  /** Always `binary`. */
  get protocol(): "binary" {
    return "binary";
  }
  #parser: FrameParser | undefined;
  #core: Core;
  #conn: Deno.Conn;
  #opts: BinarySessionOptions;
  #log: Logger;
  #writer: ConnWriter<BinarySession>;
  #deviceId: string | undefined;
  #principal: Principal | undefined;
  #keepalive: DeadlineEntry | undefined;
  #helloTimer: DeadlineEntry | undefined;
  #commandsAttached = false;
  #host: BinarySessionHost;
  #closed = false;
  #nextSeq = 1;
  #pending: Map<number, string> | undefined; // command seq → name, made on the first command

  /** Starts serving `conn`. */
  constructor(core: Core, conn: Deno.Conn, options: BinarySessionOptions, host: BinarySessionHost) {
    const log = host.log;
    this.#host = host;
    this.#core = core;
    this.#conn = conn;
    this.#opts = options;
    this.#log = log;
    this.#writer = new ConnWriter<BinarySession>(conn, host.writerOptions, this);
    this.#helloTimer = core.deadlines.add(
      options.helloTimeoutMs,
      BinarySession.#helloExpired,
      this,
    );
    this.#parser = new FrameParser({ maxPayload: options.maxPayload });
    // Each burst of traffic flows socket → codec TransformStream → consume(); between bursts
    // only a small read is pending (cheap idle connections). Never rejects; ends with end().
    serveBursts(conn, this, host.burstOptions);
  }

  /** HELLO timer expiry (one callback for every session: no closure each). */
  static #helloExpired = (s: BinarySession): void => {
    s.#helloTimer = undefined;
    if (s.#deviceId === undefined) {
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

  /** The authenticated device, once HELLO succeeded. */
  get deviceId(): string | undefined {
    return this.#deviceId;
  }

  /** Subscriber id (for no-local). */
  get id(): string {
    return this.sessionId;
  }

  // ---- BurstConsumer: the connection's life, read by `serveBursts` (one async frame) ----

  /**
   * The handshake, read directly into the parser: a device that says HELLO and then stays quiet
   * (the common case for tens of thousands of idle sensors) never allocates a stream pipeline.
   * Resolves false when the connection ended before it.
   */
  start(): Promise<boolean> {
    return this.#handshake();
  }

  /** Reading has ended: shut down and tell the server. */
  async end(error?: unknown): Promise<void> {
    if (error !== undefined && !this.#closed) {
      this.#log.debug("connection read failed", { remote: this.#remoteText, error });
    }
    try {
      await this.#shutdown();
    } finally {
      this.#host.onClosed(this);
    }
  }

  /** A codec stream for a burst, over the session's parser (a partial frame spans bursts). */
  codec(): TransformStream<Uint8Array, FrameEvent[]> {
    return frameEvents(this.#parser!);
  }

  /** Handles a burst's frames and errors in order; a full pipeline stops reading. */
  async consume(frames: ReadableStream<FrameEvent[]>): Promise<void> {
    for await (const events of frames) {
      for (const ev of events) {
        if (this.#closed) return;
        const pending = this.#onEvent(ev); // a promise only while the core is full
        if (pending) await pending;
      }
    }
  }

  /** True when no partial frame is buffered. */
  canIdle(): boolean {
    return this.#parser!.buffered === 0;
  }

  /** Counts bytes read. */
  onBytes(n: number): void {
    this.#core.stats.bytesIn.inc(LABELS, n);
  }

  /** One decoded frame or in-band decoding error, in stream order. */
  #onEvent(ev: FrameEvent): Promise<void> | void {
    this.#core.stats.framesIn.inc(LABELS);
    if (ev instanceof FrameSyntaxError) return this.#frameError(ev);
    this.#keepalive?.touch();
    return this.#onFrame(ev);
  }

  /**
   * Reads until the session is authenticated (or ends), handling every frame of those reads in
   * order. Returns false when the connection ended.
   */
  async #handshake(): Promise<boolean> {
    const parser = this.#parser!;
    const buf = new Uint8Array(IDLE_READ_BUFFER);
    while (this.#deviceId === undefined && !this.#closed) {
      let n: number | null;
      try {
        n = await this.#conn.read(buf);
      } catch {
        return false;
      }
      if (n === null) return false;
      this.#core.stats.bytesIn.inc(LABELS, n);
      const events: FrameEvent[] = [];
      const collect = (e: FrameEvent) => events.push(e);
      try {
        parser.parse(buf.subarray(0, n), collect, collect);
      } catch (err) {
        if (!(err instanceof FrameSyntaxError)) throw err;
        events.push(err);
      }
      for (const ev of events) {
        if (this.#closed) return false;
        await this.#onEvent(ev);
      }
    }
    return !this.#closed;
  }

  #frameError(err: FrameSyntaxError): void {
    this.#core.stats.errors.inc({ protocol: "binary", code: String(err.code) });
    this.#log.info("bad frame", {
      remote: this.#remoteText,
      device: this.#deviceId,
      code: err.code,
      offset: err.offset,
      reason: err.message,
    });
    this.#error(err.code, err.seq ?? 0, err.message);
    if (err.fatal) this.#shutdown();
  }

  #onFrame(f: Frame): Promise<void> | void {
    if (f.flags & ~FLAG_ACK_REQUESTED) {
      return this.#reject(
        f,
        ErrorCode.BAD_PAYLOAD,
        `reserved flag bits set: 0x${f.flags.toString(16)}`,
      );
    }
    if (this.#deviceId === undefined) {
      if (f.type === FrameType.HELLO) return this.#hello(f);
      this.#error(ErrorCode.NOT_AUTHENTICATED, f.seq, "the first frame must be HELLO");
      this.#core.stats.errors.inc({
        protocol: "binary",
        code: String(ErrorCode.NOT_AUTHENTICATED),
      });
      return this.#shutdown();
    }
    this.#core.registry.touch(this.#deviceId);
    switch (f.type) {
      case FrameType.TELEMETRY:
        return this.#telemetry(f);
      case FrameType.ACK:
        return this.#ack(f);
      case FrameType.PING:
        this.#send(FrameType.PONG, f.seq, new Uint8Array(0));
        return;
      case FrameType.PONG:
        return;
      case FrameType.BYE:
        this.#log.info("device said BYE", { device: this.#deviceId, remote: this.#remoteText });
        this.#send(FrameType.BYE, f.seq, encodeBye(0));
        return this.#shutdown();
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
    this.#core.stats.errors.inc({ protocol: "binary", code: String(code) });
    this.#log.info("frame rejected", {
      device: this.#deviceId,
      remote: this.#remoteText,
      code,
      reason,
    });
    this.#error(code, f.seq, reason);
    if (
      f.type === FrameType.TELEMETRY && (f.flags & FLAG_ACK_REQUESTED) &&
      code === ErrorCode.BAD_PAYLOAD
    ) {
      this.#send(FrameType.ACK, f.seq, encodeAck(AckStatus.BAD_PAYLOAD));
    }
  }

  #hello(f: Frame): void {
    let hello;
    try {
      hello = decodeHello(f.payload);
    } catch (err) {
      const reason = err instanceof Error ? err.message : String(err);
      if (!helloIdValid(f.payload)) return this.#refuse(f, HelloStatus.BAD_ID, reason);
      return this.#reject(f, ErrorCode.BAD_PAYLOAD, reason);
    }
    if (this.#core.closing) {
      return this.#refuse(f, HelloStatus.UNAVAILABLE, "gateway is shutting down");
    }
    const admission = this.#core.admission;
    if (admission.authBlocked(this.#addressText)) {
      this.#core.stats.drops.inc({ protocol: "binary", reason: "auth_throttled" });
      return this.#refuse(
        f,
        HelloStatus.BAD_CREDENTIALS,
        `too many failed logins from ${this.#addressText}`,
      );
    }
    const auth = this.#core.registry.authenticate(hello.id, hello.token);
    if (!auth.ok) {
      if (auth.reason === "bad_credentials") admission.authFailed(this.#addressText);
      const status = auth.reason === "bad_id" ? HelloStatus.BAD_ID : HelloStatus.BAD_CREDENTIALS;
      return this.#refuse(f, status, `authentication failed for "${hello.id}": ${auth.reason}`);
    }
    const o = this.#opts;
    const keepAlive = hello.keepAlive === 0
      ? o.defaultKeepAliveSec
      : Math.min(hello.keepAlive, o.maxKeepAliveSec);
    this.#helloTimer?.cancel();
    this.#helloTimer = undefined;
    this.#deviceId = hello.id;
    this.#principal = auth.principal;
    this.#send(FrameType.HELLO_ACK, f.seq, encodeHelloAck({ status: HelloStatus.OK, keepAlive }));
    this.#host.attachCommands(hello.id, this);
    this.#commandsAttached = true;
    this.#core.registry.attach(hello.id, this);
    this.#keepalive = this.#core.supervise(this, keepAlive * 1500);
    this.#log.info("device connected", { device: hello.id, remote: this.#remoteText, keepAlive });
    // Commands kept while the device was offline go out now, oldest first [FBP-6-3].
    for (const cmd of this.#core.commands.pending(hello.id, { via: "binary" })) {
      if (!this.offer(cmd)) break;
    }
  }

  #refuse(f: Frame, status: number, reason: string): void {
    this.#core.stats.errors.inc({ protocol: "binary", code: `hello_${status}` });
    this.#log.info("HELLO refused", { remote: this.#remoteText, status, reason });
    this.#send(FrameType.HELLO_ACK, f.seq, encodeHelloAck({ status, keepAlive: 0 }));
    this.#shutdown();
  }

  #telemetry(f: Frame): Promise<void> | void {
    let body;
    try {
      body = decodeTelemetry(f.payload);
    } catch (err) {
      return this.#reject(
        f,
        ErrorCode.BAD_PAYLOAD,
        err instanceof Error ? err.message : String(err),
      );
    }
    const id = this.#deviceId!;
    const ackWanted = (f.flags & FLAG_ACK_REQUESTED) !== 0;
    if (!this.#core.rates.allow(id)) {
      this.#core.stats.drops.inc({ protocol: "binary", reason: "rate_limited" });
      this.#log.debug("telemetry over the device's rate limit", { device: id, seq: f.seq });
      if (ackWanted) this.#send(FrameType.ACK, f.seq, encodeAck(AckStatus.OVERLOADED));
      return;
    }
    const topic = telemetryTopic(id, body.channel || undefined);
    if (!canPublish(this.#principal!, topic)) {
      this.#core.stats.drops.inc({ protocol: "binary", reason: "not_authorized" });
      this.#log.info("telemetry refused by the ACL", { device: id, topic });
      if (ackWanted) this.#send(FrameType.ACK, f.seq, encodeAck(AckStatus.NOT_AUTHORIZED));
      return;
    }
    const msg = createMessage({
      topic,
      payload: body.data,
      qos: f.flags & FLAG_ACK_REQUESTED ? 1 : 0,
      ts: this.#core.clock.now(),
      protocol: "binary",
      deviceId: id,
      origin: this.sessionId,
    });
    const core = this.#core;
    // Accepted at once when the pipeline has room and nothing (a spool) must run first: no
    // promise per frame; otherwise wait for room, which stops this connection's reads.
    if (!core.hasAcceptHook && core.pipeline.hasRoom && core.tryPublish(msg)) {
      return this.#accepted(id, f.seq, ackWanted);
    }
    return this.#publishAndAck(msg, f.seq, ackWanted);
  }

  async #publishAndAck(msg: Message, seq: number, ackWanted: boolean): Promise<void> {
    try {
      await this.#core.publish(msg);
    } catch (err) {
      if (this.#closed) return;
      this.#log.warn("telemetry not accepted", { device: msg.deviceId, error: err });
      this.#core.stats.drops.inc({ protocol: "binary", reason: "overloaded" });
      if (ackWanted) this.#send(FrameType.ACK, seq, encodeAck(AckStatus.OVERLOADED));
      return;
    }
    this.#accepted(msg.deviceId!, seq, ackWanted);
  }

  /** Telemetry accepted by the core (acknowledged means accepted, durable with a spool). */
  #accepted(id: string, seq: number, ackWanted: boolean): void {
    this.#core.registry.device(id).messagesIn++;
    if (ackWanted) this.#send(FrameType.ACK, seq, encodeAck(AckStatus.OK));
  }

  #ack(f: Frame): void {
    let status: number;
    try {
      status = decodeAck(f.payload);
    } catch (err) {
      return this.#reject(
        f,
        ErrorCode.BAD_PAYLOAD,
        err instanceof Error ? err.message : String(err),
      );
    }
    const name = this.#pending?.get(f.seq);
    if (name === undefined) {
      this.#log.debug("ACK for no pending command", { device: this.#deviceId, seq: f.seq });
      return;
    }
    this.#pending!.delete(f.seq);
    const id = this.#deviceId!;
    const topic = ackTopic(id, name);
    if (!canPublish(this.#principal!, topic)) {
      this.#core.stats.drops.inc({ protocol: "binary", reason: "not_authorized" });
      this.#log.info("command ack refused by the ACL", { device: id, topic });
      return;
    }
    const ack = createMessage({
      topic,
      payload: encoder.encode(JSON.stringify({ seq: f.seq, status })),
      qos: 1,
      ts: this.#core.clock.now(),
      protocol: "binary",
      deviceId: id,
      origin: this.sessionId,
    });
    this.#core.publish(ack).catch(() => {});
  }

  /**
   * Sends a pending command from the core's store as a COMMAND frame. FBP/1 has no retransmission
   * of commands: once the frame is queued on the live connection the command leaves the store (the
   * device's ACK, when asked for, is published on `devices/{id}/acks/{name}`). Returns false when
   * the session cannot take it (closed, or claimed elsewhere); the command then stays pending.
   */
  offer(cmd: PendingCommand): boolean {
    if (this.#closed || this.#deviceId === undefined) return false;
    const store = this.#core.commands;
    if (!store.claim(cmd, "binary")) return false;
    const seq = this.#nextSeq;
    const flags = cmd.msg.qos > 0 ? FLAG_ACK_REQUESTED : 0;
    let body;
    try {
      body = encodeCommand({ name: cmd.name, data: cmd.msg.payload });
    } catch (err) {
      store.remove(cmd.deviceId, cmd.seq);
      this.#log.warn("command not sendable over FBP/1", { device: this.#deviceId, error: err });
      return true;
    }
    if (body.length > this.#opts.maxPayload) {
      store.remove(cmd.deviceId, cmd.seq);
      this.#core.stats.drops.inc({ protocol: "binary", reason: "too_large" });
      this.#log.warn("command too large for the device", {
        device: this.#deviceId,
        bytes: body.length,
      });
      return true;
    }
    if (!this.#send(FrameType.COMMAND, seq, body, flags)) {
      store.release(cmd, "binary"); // not written: it waits for the next connection
      return false;
    }
    this.#nextSeq = (this.#nextSeq + 1) >>> 0 || 1;
    store.remove(cmd.deviceId, cmd.seq);
    if (flags) {
      this.#pending ??= new Map();
      this.#pending.set(seq, cmd.name);
      if (this.#pending.size > MAX_PENDING_COMMANDS) {
        this.#pending.delete(this.#pending.keys().next().value!);
      }
    }
    this.#core.stats.messagesOut.inc(LABELS);
    this.#core.registry.device(this.#deviceId).messagesOut++;
    return true;
  }

  #send(type: number, seq: number, payload: Uint8Array, flags = 0): boolean {
    if (!this.#writer.write(encodeFrame({ type, flags, seq, payload }))) return false;
    this.#core.stats.framesOut.inc(LABELS);
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
      device: this.#deviceId,
      remote: this.#remoteText,
      reason: reason.code,
      detail: reason.message,
    });
    if (code) this.#error(code, 0, reason.message);
    this.#shutdown();
  }

  #shutdownPromise: Promise<void> | undefined;
  #shutdown(): Promise<void> {
    return this.#shutdownPromise ??= (async () => {
      this.#closed = true;
      this.#helloTimer?.cancel();
      this.#keepalive?.cancel();
      if (this.#commandsAttached) this.#host.detachCommands(this.#deviceId!, this);
      if (this.#deviceId !== undefined) this.#core.registry.detach(this.#deviceId, this);
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
