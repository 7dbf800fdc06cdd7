/**
 * The ingest pipeline: a bounded queue (an array used as a ring, its payload bytes counted against
 * the gateway's {@link PayloadBudget}) drained by a semaphore-bounded pool of handlers. Producers
 * either wait for room ({@link Pipeline.submit}, used by stream listeners: while they wait they
 * stop reading their socket, which is the backpressure) or are refused at once
 * ({@link Pipeline.offer}, for UDP and HTTP, which must refuse rather than buffer). Messages with
 * the same key (the device) are handled one after the other, in order; different keys run in
 * parallel up to the pool size. When nothing is queued and nothing of a message's key is in
 * flight, the message skips the queue and its handler runs in the producer's call (no promise
 * per message on an unloaded gateway). A `gate` (the core's subscriber flow gate) stops dispatch
 * while it is closed: the queue fills and producers wait, one promise per closed spell.
 *
 * (The queue was a `ReadableStream` with a count high-water mark until the delivery benchmark
 * showed its per-message read promise, and a handler awaiting the gate per message, cost more
 * than the rest of the path: `docs/architecture.md`, "Where Ferry departs from web streams".)
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
  /**
   * Nothing is handed to a handler while this is closed (the core's flow gate: a subscriber is
   * behind); the queue fills and producers wait. @default always open
   */
  gate?: { readonly open: boolean; wait(): Promise<void> };
}

/** A producer waiting for room with its message (queued, in arrival order, once room is there). */
interface Waiter {
  msg: Message;
  resolve(): void;
  reject(e: unknown): void;
  /** A derived message ({@link Pipeline.admit}): waits ahead of the producers. */
  derived?: boolean;
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
  #queue: Array<Message | undefined> = []; // queued messages from #head on
  #head = 0;
  #pool: Semaphore;
  #gate: PipelineOptions["gate"];
  #keyOf: (msg: Message) => string;
  #onError?: (err: unknown, msg: Message) => void;
  #budget: PayloadBudget | undefined;
  #waiters: Waiter[] = [];
  #derivedWaiting = 0; // the first this many waiters are derived messages
  #tails = new Map<string, Promise<void>>();
  #capacity: number;
  #closed = false;
  #pumping = false; // a drain of the queue is scheduled or running
  #blocked = false; // the drain waits for a handler slot or for the gate
  #idle: PromiseWithResolvers<void> | undefined; // close() waits for the queue to empty
  #active = new Set<Promise<void>>();
  #handled = 0;
  #held = 0;
  #failed = 0;
  #queued = 0; // enqueued and not yet taken by the drain
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
    this.#gate = options.gate;
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
    return this.#queued;
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
    return !this.#closed && this.#queued < this.#capacity && this.#waiters.length === 0;
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
   * Enqueues a message derived from one already admitted (a rule's output): it never waits behind
   * new input (its source already held a place) and is never dropped, but it respects the
   * capacity: with room it is queued (or run) at once; when the queue is full it waits ahead of
   * every waiting producer, after the derived messages already waiting (their order kept), and
   * the returned promise resolves once it is queued. Producers wait while derived messages do.
   * Throws (or rejects) {@link PipelineClosedError} after `close()`.
   */
  admit(msg: Message): void | Promise<void> {
    if (this.#closed) throw new PipelineClosedError();
    if (this.#derivedWaiting === 0 && this.#queued < this.#capacity) {
      if (!this.#runNow(msg)) this.#enqueue(msg);
      return;
    }
    this.#held++;
    return new Promise<void>((resolve, reject) => {
      // Ahead of the producers, behind the derived messages already waiting.
      this.#waiters.splice(this.#derivedWaiting++, 0, { msg, resolve, reject, derived: true });
    });
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
    this.#queue.push(msg);
    if (!this.#pumping && !this.#blocked) {
      this.#pumping = true;
      queueMicrotask(this.#pumpNow);
    }
  }

  /** Takes the oldest queued message; lets waiting producers in while there is room. */
  #take(): Message {
    const q = this.#queue;
    const msg = q[this.#head]!;
    q[this.#head++] = undefined;
    if (--this.#queued === 0) {
      q.length = 0;
      this.#head = 0;
    } else if (this.#head >= 1024 && this.#head * 2 >= q.length) {
      q.splice(0, this.#head); // compact now and then: amortised O(1) per message
      this.#head = 0;
    }
    this.#budget?.give(msg.payload.byteLength);
    this.#admitWaiters();
    return msg;
  }

  /** Queues waiting producers' messages, oldest first, while they fit. */
  #admitWaiters(): void {
    const waiters = this.#waiters;
    while (
      waiters.length !== 0 && this.#queued < this.#capacity &&
      (waiters[0].derived || this.#bytesFit(waiters[0].msg.payload.byteLength))
    ) {
      const w = waiters.shift()!;
      if (w.derived) this.#derivedWaiting--;
      this.#enqueue(w.msg);
      w.resolve();
    }
  }

  readonly #pumpNow = (): void => this.#pump();

  /**
   * Hands queued messages to handlers, in order, until the queue is empty or it must wait: for a
   * handler slot, or for the gate (one promise per wait, not per message).
   */
  #pump(): void {
    this.#pumping = false;
    if (this.#blocked) return; // a wait is pending: its end pumps (never two waits at once)
    const gate = this.#gate;
    while (this.#queued !== 0) {
      if (gate !== undefined && !gate.open) {
        this.#blocked = true;
        gate.wait().then(this.#unblock);
        return;
      }
      if (!this.#pool.tryTake()) {
        this.#blocked = true;
        this.#pool.acquire().then((permit) => {
          permit.release(); // the slot is taken again by the pump (the only one that waits)
          this.#unblock();
        });
        return;
      }
      const msg = this.#take();
      this.#direct = true; // a handler that publishes again queues instead of nesting
      try {
        this.#dispatch(msg, undefined);
      } finally {
        this.#direct = false;
      }
    }
    const idle = this.#idle;
    if (idle !== undefined) {
      this.#idle = undefined;
      idle.resolve();
    }
  }

  readonly #unblock = (): void => {
    this.#blocked = false;
    this.#pump();
  };

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
      this.#held++;
      await new Promise<void>((resolve, reject) => {
        const w: Waiter = {
          msg,
          resolve: () => {
            signal?.removeEventListener("abort", onAbort);
            resolve();
          },
          reject,
        };
        const onAbort = () => {
          const i = this.#waiters.indexOf(w);
          if (i < 0) return; // already queued
          this.#waiters.splice(i, 1);
          reject(signal!.reason);
        };
        signal?.addEventListener("abort", onAbort, { once: true });
        this.#waiters.push(w); // queued by #admitWaiters: the queue's turn, never ahead of it
      });
      return;
    }
    if (!this.#runNow(msg)) this.#enqueue(msg);
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
      (this.#gate === undefined || this.#gate.open) &&
      this.#pool.available > 0 && !(this.#tails.size !== 0 && this.#tails.has(this.#keyOf(msg)));
  }

  #runNow(msg: Message): boolean {
    if (this.#queued !== 0 || this.#direct || this.#waiters.length !== 0) return false;
    if (this.#gate !== undefined && !this.#gate.open) return false; // held: queue it
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
      this.#derivedWaiting = 0;
      for (const w of this.#waiters.splice(0)) w.reject(new PipelineClosedError());
    }
    while (this.#queued !== 0 || this.#active.size !== 0) {
      if (this.#queued !== 0) await (this.#idle ??= Promise.withResolvers<void>()).promise;
      else await Promise.all([...this.#active]);
    }
  }

  /** Same as {@link close}. */
  [Symbol.asyncDispose](): Promise<void> {
    return this.close();
  }
}
