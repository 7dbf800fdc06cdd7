/**
 * One timer for many deadlines: a binary min-heap of entries and a single clock timer armed for the
 * earliest one. Refreshing a deadline ({@link DeadlineEntry.touch}) is O(1): the entry keeps its
 * heap slot and is re-filed lazily when its old slot comes due. This is what lets 20,000 sessions
 * each have a keepalive deadline without 20,000 intervals.
 *
 * @module
 */

import { type Clock, systemClock, type TimerHandle } from "./clock.ts";

/** A deadline watched by a {@link DeadlineQueue}. */
export interface DeadlineEntry {
  /** Moves the deadline to `now + timeoutMs` (or `now + ms` when given). O(1). */
  touch(ms?: number): void;
  /** Stops watching; the callback will not run. Idempotent. */
  cancel(): void;
  /** Absolute time (clock ms) at which the entry expires. */
  readonly deadline: number;
  /** True until it expired or was cancelled. */
  readonly active: boolean;
  /** The timeout the deadline runs with now, ms. */
  readonly timeoutMs: number;
}

/** Queue operations a node calls back into (module-private: symbol-keyed). */
const REFILE = Symbol("refile");
const REMOVE = Symbol("remove");

/**
 * A heap node, and the entry handed to the caller: one object per deadline, no closures (tens of
 * thousands of sessions each hold one).
 */
class Node implements DeadlineEntry {
  key: number; // deadline the heap position was filed under (<= deadline)
  deadline: number;
  timeoutMs: number;
  index = -1; // heap index, -1 when out of the heap
  onExpire: (arg: never, entry: DeadlineEntry) => void;
  arg: unknown; // passed to onExpire: a shared callback instead of a closure per deadline
  queue: DeadlineQueue;

  constructor(
    queue: DeadlineQueue,
    deadline: number,
    timeoutMs: number,
    onExpire: (arg: never, entry: DeadlineEntry) => void,
    arg: unknown,
  ) {
    this.queue = queue;
    this.key = deadline;
    this.deadline = deadline;
    this.timeoutMs = timeoutMs;
    this.onExpire = onExpire;
    this.arg = arg;
  }

  touch(ms?: number): void {
    if (this.index < 0) return;
    if (ms !== undefined) this.timeoutMs = ms;
    this.queue[REFILE](this);
  }

  cancel(): void {
    if (this.index >= 0) this.queue[REMOVE](this);
  }

  get active(): boolean {
    return this.index >= 0;
  }
}

/** Tunables of {@link DeadlineQueue}. */
export interface DeadlineQueueOptions {
  /** Time source. @default systemClock */
  clock?: Clock;
  /** Coalesce expiries: the timer fires at most this often. @default 50 */
  resolutionMs?: number;
}

/**
 * Watches many deadlines with one timer.
 *
 * @example
 * ```ts
 * import { FakeClock } from "./clock.ts";
 * import { DeadlineQueue } from "./deadline_queue.ts";
 * const clock = new FakeClock();
 * const q = new DeadlineQueue({ clock, resolutionMs: 1 });
 * let expired = false;
 * const e = q.add(100, () => expired = true);
 * clock.tick(90);
 * e.touch(); // refreshed: now expires at 190
 * clock.tick(90);
 * if (expired) throw new Error("expired early");
 * clock.tick(10);
 * if (!expired) throw new Error("did not expire");
 * q.close();
 * ```
 */
export class DeadlineQueue implements Disposable {
  #heap: Node[] = [];
  #clock: Clock;
  #resolution: number;
  #timer: TimerHandle | undefined;
  #timerAt = Infinity;
  #closed = false;

  /** Creates an empty queue. */
  constructor(options: DeadlineQueueOptions = {}) {
    this.#clock = options.clock ?? systemClock;
    this.#resolution = Math.max(1, options.resolutionMs ?? 50);
  }

  /** Number of active entries. */
  get size(): number {
    return this.#heap.length;
  }

  /**
   * Watches a deadline `timeoutMs` from now; `onExpire(arg, entry)` runs once when it passes
   * (one shared callback with an `arg` costs less per deadline than a closure each).
   */
  add<A = undefined>(
    timeoutMs: number,
    onExpire: (arg: A, entry: DeadlineEntry) => void,
    arg?: A,
  ): DeadlineEntry {
    if (this.#closed) throw new TypeError("Cannot add deadline: queue is closed");
    if (!(timeoutMs >= 0)) throw new RangeError(`Cannot add deadline: bad timeout ${timeoutMs}`);
    const deadline = this.#clock.now() + timeoutMs;
    const node = new Node(this, deadline, timeoutMs, onExpire as Node["onExpire"], arg);
    this.#push(node);
    this.#arm();
    return node;
  }

  /** Moves a touched node's deadline; re-files it now only if it moved earlier (else lazily). */
  [REFILE](node: Node): void {
    node.deadline = this.#clock.now() + node.timeoutMs;
    if (node.deadline < node.key) {
      this.#remove(node);
      node.key = node.deadline;
      this.#push(node);
      this.#arm();
    }
  }

  /** Takes a cancelled node out of the heap. */
  [REMOVE](node: Node): void {
    this.#remove(node);
  }

  /** Cancels every entry and the timer. Idempotent. */
  close(): void {
    this.#closed = true;
    for (const n of this.#heap) n.index = -1;
    this.#heap = [];
    this.#disarm();
  }

  /** Same as {@link close}. */
  [Symbol.dispose](): void {
    this.close();
  }

  #arm(): void {
    const top = this.#heap[0];
    if (!top) return this.#disarm();
    const at = Math.max(top.key, this.#clock.now());
    if (this.#timer !== undefined && this.#timerAt <= at) return;
    this.#disarm();
    const delay = Math.max(at - this.#clock.now(), 0);
    this.#timerAt = at;
    this.#timer = this.#clock.setTimeout(() => this.#fire(), Math.max(delay, this.#resolution));
    // A keepalive timer alone must not keep a process alive.
    this.#clock.unref?.(this.#timer);
  }

  #disarm(): void {
    if (this.#timer !== undefined) this.#clock.clearTimeout(this.#timer);
    this.#timer = undefined;
    this.#timerAt = Infinity;
  }

  #fire(): void {
    this.#timer = undefined;
    this.#timerAt = Infinity;
    const now = this.#clock.now();
    const due: Node[] = [];
    while (this.#heap.length && this.#heap[0].key <= now) {
      const node = this.#heap[0];
      this.#remove(node);
      if (node.deadline > now) { // touched since filing: re-file lazily
        node.key = node.deadline;
        this.#push(node);
      } else {
        due.push(node);
      }
    }
    if (!this.#closed) this.#arm();
    for (const node of due) node.onExpire(node.arg as never, node);
  }

  #push(node: Node): void {
    node.index = this.#heap.length;
    this.#heap.push(node);
    this.#up(node.index);
  }

  #remove(node: Node): void {
    const i = node.index;
    const last = this.#heap.pop()!;
    node.index = -1;
    if (last !== node) {
      this.#heap[i] = last;
      last.index = i;
      this.#down(i);
      this.#up(last.index);
    }
  }

  #up(i: number): void {
    const h = this.#heap;
    while (i > 0) {
      const p = (i - 1) >> 1;
      if (h[p].key <= h[i].key) break;
      this.#swap(i, p);
      i = p;
    }
  }

  #down(i: number): void {
    const h = this.#heap;
    for (;;) {
      const l = 2 * i + 1;
      const r = l + 1;
      let m = i;
      if (l < h.length && h[l].key < h[m].key) m = l;
      if (r < h.length && h[r].key < h[m].key) m = r;
      if (m === i) return;
      this.#swap(i, m);
      i = m;
    }
  }

  #swap(a: number, b: number): void {
    const h = this.#heap;
    [h[a], h[b]] = [h[b], h[a]];
    h[a].index = a;
    h[b].index = b;
  }
}
