/**
 * The ingest pipeline: a bounded queue (a `ReadableStream` with a count high-water mark, and the
 * payload bytes it holds counted against the gateway's {@link PayloadBudget}) drained by a
 * semaphore-bounded pool of handlers. Producers either wait for room ({@link Pipeline.submit},
 * used by stream listeners: while they wait they stop reading their socket, which is the
 * backpressure) or are refused at once ({@link Pipeline.offer}, for UDP and HTTP, which must refuse
 * rather than buffer). Messages with the same key (the device) are handled one after the other,
 * in order; different keys run in parallel up to the pool size. When nothing is queued and nothing
 * of a message's key is in flight, the message skips the queue and its handler runs in the
 * producer's call (no stream step or promise per message on an unloaded gateway).
 *
 * @module
 */

import type { PayloadBudget } from "./payload_budget.ts";
import { type Permit, Semaphore } from "./semaphore.ts";
import type { Message } from "./message.ts";
import { defaultPipelineOptions } from "./options.ts";

/** Tunables of {@link Pipeline}. */
export interface PipelineOptions {
  /** Messages the queue holds before producers wait or are refused. @default 1024 */
  capacity?: number;
  /** Handlers running at once. @default 16 */
  concurrency?: number;
  /** Ordering key. @default the device id, else the topic */
  keyOf?: (msg: Message) => string;
  /** Called when a handler throws; the message is then counted as failed. */
  onError?: (err: unknown, msg: Message) => void;
  /**
   * The payload bytes queued messages may hold (shared with what else draws on it); a message is
   * let into a non-empty queue only when its payload fits. @default unbounded
   */
  budget?: PayloadBudget;
}

/** A producer waiting for room, with the payload bytes it needs. */
interface Waiter {
  resolve(): void;
  reject(e: unknown): void;
  bytes: number;
}

/** Error of a submit to a closed pipeline. */
export class PipelineClosedError extends Error {
  override name = "PipelineClosedError";
  /** Creates the error. */
  constructor() {
    super("Cannot accept message: the pipeline is shutting down");
  }
}

/** Handles one message; may be async. */
export type MessageHandler = (msg: Message) => void | Promise<void>;

/**
 * A bounded, backpressured, ordered-per-key message pipeline.
 *
 * @example
 * ```ts
 * import { Pipeline } from "./pipeline.ts";
 * import { createMessage } from "./message.ts";
 * const seen: string[] = [];
 * const p = new Pipeline((m) => { seen.push(m.topic); }, { capacity: 2, concurrency: 1 });
 * await p.submit(createMessage({ topic: "a", payload: new Uint8Array() }));
 * await p.close();
 * if (seen[0] !== "a") throw new Error("not handled");
 * ```
 */
export class Pipeline implements AsyncDisposable {
  #handler: MessageHandler;
  #stream: ReadableStream<Message>;
  #controller!: ReadableStreamDefaultController<Message>;
  #pool: Semaphore;
  #keyOf: (msg: Message) => string;
  #onError?: (err: unknown, msg: Message) => void;
  #budget: PayloadBudget | undefined;
  #waiters: Waiter[] = [];
  #tails = new Map<string, Promise<void>>();
  #capacity: number;
  #closed = false;
  #pump: Promise<void>;
  #active = new Set<Promise<void>>();
  #handled = 0;
  #held = 0;
  #failed = 0;
  #queued = 0; // enqueued and not yet taken by the drain loop
  #direct = false; // a handler is running in a producer's call

  /** Starts draining into `handler`. */
  constructor(handler: MessageHandler, options: PipelineOptions = {}) {
    this.#handler = handler;
    this.#capacity = options.capacity ?? defaultPipelineOptions.queueCapacity;
    if (!Number.isInteger(this.#capacity) || this.#capacity < 1) {
      throw new RangeError(`Cannot create pipeline: capacity must be >= 1, got ${this.#capacity}`);
    }
    this.#pool = new Semaphore(options.concurrency ?? defaultPipelineOptions.concurrency);
    this.#keyOf = options.keyOf ?? ((m) => m.deviceId ?? m.topic);
    this.#onError = options.onError;
    this.#budget = options.budget;
    this.#stream = new ReadableStream<Message>({
      start: (c) => {
        this.#controller = c;
      },
      pull: () => this.#wakeOne(),
    }, new CountQueuingStrategy({ highWaterMark: this.#capacity }));
    this.#pump = this.#drain();
  }

  /**
   * Messages kept past the call that offered them (queued, or handled asynchronously), so far.
   * A producer that saw this count unchanged across its calls knows the pipeline holds none of
   * the messages it gave, nor views of their payloads.
   */
  get held(): number {
    return this.#held;
  }

  /** Messages waiting in the queue. */
  get depth(): number {
    return this.#capacity - Math.max(0, this.#controller.desiredSize ?? 0);
  }

  /** Queue capacity. */
  get capacity(): number {
    return this.#capacity;
  }

  /** Handlers running now. */
  get inUse(): number {
    return this.#pool.inUse;
  }

  /** Pool size. */
  get concurrency(): number {
    return this.#pool.capacity;
  }

  /** Producers waiting for room. */
  get waiting(): number {
    return this.#waiters.length;
  }

  /** Messages handled successfully / with an error. */
  get stats(): { handled: number; failed: number } {
    return { handled: this.#handled, failed: this.#failed };
  }

  /** True when a message would be accepted right now (by count; see {@link roomFor}). */
  get hasRoom(): boolean {
    return !this.#closed && (this.#controller.desiredSize ?? 0) > 0 &&
      this.#waiters.length === 0;
  }

  /** True when `msg` would be accepted right now: count, and its payload within the budget. */
  roomFor(msg: Message): boolean {
    return this.hasRoom && this.#bytesFit(msg.payload.byteLength);
  }

  /** Payload bytes fit the budget (one message always fits an empty queue: no deadlock). */
  #bytesFit(bytes: number): boolean {
    return this.#budget === undefined || this.#queued === 0 || this.#budget.fits(bytes);
  }

  /**
   * Enqueues `msg` if there is room now; returns false (and enqueues nothing) when the queue is
   * full (by count or bytes) or closed. For producers that must refuse instead of wait.
   */
  offer(msg: Message): boolean {
    if (!this.hasRoom) return false;
    if (this.#runNow(msg)) return true;
    if (!this.#bytesFit(msg.payload.byteLength)) return false;
    this.#enqueue(msg);
    return true;
  }

  #enqueue(msg: Message): void {
    this.#queued++;
    this.#held++;
    // Queued, it holds its payload: counted against the budget until a handler takes it (room was
    // checked; an empty queue takes one message even past the budget).
    this.#budget?.take(msg.payload.byteLength);
    this.#controller.enqueue(msg);
  }

  /**
   * Enqueues `msg`, waiting (FIFO with other waiting producers) while the queue is full. Resolves
   * once the message is accepted. Rejects with {@link PipelineClosedError} after `close()`, or
   * with the signal's reason when `signal` aborts while waiting.
   */
  async submit(msg: Message, signal?: AbortSignal): Promise<void> {
    if (this.#closed) throw new PipelineClosedError();
    const bytes = msg.payload.byteLength;
    if (!this.hasRoom || (!this.#runNowPossible(msg) && !this.#bytesFit(bytes))) {
      signal?.throwIfAborted();
      await new Promise<void>((resolve, reject) => {
        const w: Waiter = {
          resolve: () => {
            signal?.removeEventListener("abort", onAbort);
            resolve();
          },
          reject,
          bytes,
        };
        const onAbort = () => {
          const i = this.#waiters.indexOf(w);
          if (i >= 0) this.#waiters.splice(i, 1);
          reject(signal!.reason);
        };
        signal?.addEventListener("abort", onAbort, { once: true });
        this.#waiters.push(w);
      });
      this.#enqueue(msg); // let in by #wakeOne: the queue's turn, never ahead of it
      return;
    }
    if (!this.#runNow(msg)) this.#enqueue(msg);
  }

  #wakeOne(): void {
    // Called when the queue has room: let the longest-waiting producer in. One at a time: it
    // enqueues right after its await, and the stream asks again while room is left.
    const w = this.#waiters[0];
    if (w && (this.#controller.desiredSize ?? 0) > 0 && this.#bytesFit(w.bytes)) {
      this.#waiters.shift()!.resolve();
    }
  }

  async #drain(): Promise<void> {
    const reader = this.#stream.getReader();
    for (;;) {
      const permit = this.#pool.tryAcquire() ?? await this.#pool.acquire();
      const { value, done } = await reader.read();
      if (done) {
        permit.release();
        break;
      }
      this.#queued--;
      this.#budget?.give(value.payload.byteLength);
      this.#dispatch(value, permit);
      // Room freed by the read: let a waiting producer in even if the stream does not call pull.
      if (this.#waiters.length) this.#wakeOne();
    }
    reader.releaseLock();
  }

  /**
   * Runs `msg` at once, bypassing the queue, when that cannot reorder anything: nothing is queued,
   * nothing of its key is in flight, a handler slot is free and no producer waits. Returns false
   * (nothing done) otherwise. The handler then runs in the producer's call, so a producer is paced
   * by the handlers' cost exactly as it would be by a full queue.
   */
  /** Whether {@link #runNow} could take `msg` now (it would not queue it). */
  #runNowPossible(msg: Message): boolean {
    return this.#queued === 0 && !this.#direct && this.#waiters.length === 0 &&
      this.#pool.available > 0 && !(this.#tails.size !== 0 && this.#tails.has(this.#keyOf(msg)));
  }

  #runNow(msg: Message): boolean {
    if (this.#queued !== 0 || this.#direct || this.#waiters.length !== 0) return false;
    if (!this.#pool.tryTake()) return false; // a slot, no Permit object unless it goes async
    if (this.#tails.size !== 0 && this.#tails.has(this.#keyOf(msg))) {
      this.#pool.give();
      return false;
    }
    this.#direct = true; // a handler that publishes again queues instead of nesting
    try {
      this.#dispatch(msg, undefined);
    } finally {
      this.#direct = false;
    }
    return true;
  }

  /**
   * Starts the handler for `msg` holding `permit` (undefined: a slot taken with `tryTake`), after
   * any message of its key in flight.
   */
  #dispatch(value: Message, slot: Permit | undefined): void {
    const key = this.#keyOf(value);
    const prev = this.#tails.get(key);
    let started: Promise<void>;
    if (prev) {
      this.#held++;
      started = prev.then(() => this.#run(value));
    } else {
      // Nothing of this key in flight: run the handler now. A handler that finishes
      // synchronously (no async sink) costs no promise chain at all.
      let result: void | Promise<void> = undefined;
      let threw = false;
      try {
        result = this.#handler(value);
      } catch (err) {
        threw = true;
        this.#fail(err, value);
      }
      if (!(result instanceof Promise)) {
        if (!threw) this.#handled++;
        if (slot) slot.release();
        else this.#pool.give();
        return;
      }
      this.#held++;
      started = result.then(() => {
        this.#handled++;
      }, (err) => this.#fail(err, value));
    }
    const permit = slot ?? this.#pool.adopt();
    const task: Promise<void> = started
      .finally(() => {
        permit.release();
        if (this.#tails.get(key) === task) this.#tails.delete(key);
        this.#active.delete(task);
      });
    this.#tails.set(key, task);
    this.#active.add(task);
  }

  async #run(msg: Message): Promise<void> {
    try {
      await this.#handler(msg);
      this.#handled++;
    } catch (err) {
      this.#fail(err, msg);
    }
  }

  #fail(err: unknown, msg: Message): void {
    this.#failed++;
    this.#onError?.(err, msg);
  }

  /**
   * Stops accepting, rejects waiting producers, and resolves once every queued message has been
   * handled. Idempotent.
   */
  async close(): Promise<void> {
    if (!this.#closed) {
      this.#closed = true;
      for (const w of this.#waiters.splice(0)) w.reject(new PipelineClosedError());
      this.#controller.close();
    }
    await this.#pump;
    while (this.#active.size) await Promise.all([...this.#active]);
  }

  /** Same as {@link close}. */
  [Symbol.asyncDispose](): Promise<void> {
    return this.close();
  }
}
