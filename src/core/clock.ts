/**
 * Injected time. Every component that waits (keepalive, backoff, retransmission, timeouts) takes a
 * {@link Clock} so tests can drive time with {@link FakeClock} instead of sleeping.
 *
 * @module
 */

/** Opaque handle of a scheduled timer. */
export type TimerHandle = number;

/** A source of time and timers. */
export interface Clock {
  /** Milliseconds since the epoch (or any fixed origin for fake clocks). */
  now(): number;
  /** Runs `fn` once after `ms` milliseconds. */
  setTimeout(fn: () => void, ms: number): TimerHandle;
  /** Cancels a timer; unknown or fired handles are ignored. */
  clearTimeout(handle: TimerHandle): void;
  /** Lets the process exit while this timer is pending (housekeeping timers). Optional. */
  unref?(handle: TimerHandle): void;
}

// Date.now() read once per synchronous stretch of work: a read of 100 packets asks for the time
// several times per packet (message stamp, keepalive, rate bucket, expiry), and Date.now was 6% of
// the QoS 0 ingest profile. The cached value is dropped at the next microtask checkpoint, so it
// is never older than the synchronous code that is running now.
let cachedNow = -1;
const dropNow = () => {
  cachedNow = -1;
};
function turnNow(): number {
  if (cachedNow < 0) {
    cachedNow = Date.now();
    queueMicrotask(dropNow);
  }
  return cachedNow;
}

/**
 * The real clock, backed by `Date.now` (read once per synchronous stretch of work) and the
 * platform's timers.
 *
 * @example
 * ```ts
 * import { systemClock } from "./clock.ts";
 * if (systemClock.now() <= 0) throw new Error("clock before epoch");
 * ```
 */
export const systemClock: Clock = {
  now: turnNow,
  setTimeout: (fn, ms) => setTimeout(fn, ms) as unknown as number,
  clearTimeout: (handle) => clearTimeout(handle),
  unref: (handle) => Deno.unrefTimer(handle),
};

interface FakeTimer {
  id: number;
  at: number;
  seq: number;
  fn: () => void;
}

/**
 * A manual clock for tests: time moves only when {@link FakeClock.tick} or
 * {@link FakeClock.tickAsync} is called, and due timers fire in deadline order.
 *
 * @example
 * ```ts
 * import { FakeClock } from "./clock.ts";
 * const clock = new FakeClock(1000);
 * const fired: number[] = [];
 * clock.setTimeout(() => fired.push(clock.now()), 50);
 * clock.tick(49);
 * if (fired.length !== 0) throw new Error("fired early");
 * clock.tick(1);
 * if (fired[0] !== 1050) throw new Error("did not fire on time");
 * ```
 */
export class FakeClock implements Clock {
  #now: number;
  #timers = new Map<number, FakeTimer>();
  #nextId = 1;
  #seq = 0;

  /** Starts the clock at `start` milliseconds. */
  constructor(start = 0) {
    this.#now = start;
  }

  /** Current fake time. */
  now(): number {
    return this.#now;
  }

  /** Schedules `fn` at `now() + max(0, ms)`. */
  setTimeout(fn: () => void, ms: number): TimerHandle {
    const id = this.#nextId++;
    this.#timers.set(id, { id, at: this.#now + Math.max(0, ms), seq: this.#seq++, fn });
    return id;
  }

  /** Cancels a timer. */
  clearTimeout(handle: TimerHandle): void {
    this.#timers.delete(handle);
  }

  /** Number of timers not yet fired. */
  get pending(): number {
    return this.#timers.size;
  }

  #nextDue(limit: number): FakeTimer | undefined {
    let best: FakeTimer | undefined;
    for (const t of this.#timers.values()) {
      if (t.at > limit) continue;
      if (!best || t.at < best.at || (t.at === best.at && t.seq < best.seq)) best = t;
    }
    return best;
  }

  /** Advances time by `ms`, firing due timers synchronously in order. */
  tick(ms: number): void {
    const target = this.#now + ms;
    for (let t = this.#nextDue(target); t; t = this.#nextDue(target)) {
      this.#timers.delete(t.id);
      this.#now = t.at;
      t.fn();
    }
    this.#now = target;
  }

  /**
   * Advances time by `ms` like {@link tick}, but lets pending promise callbacks run after each
   * timer, so async work started by a timer can schedule the next one.
   */
  async tickAsync(ms: number): Promise<void> {
    const target = this.#now + ms;
    await flushMicrotasks();
    for (let t = this.#nextDue(target); t; t = this.#nextDue(target)) {
      this.#timers.delete(t.id);
      this.#now = t.at;
      t.fn();
      await flushMicrotasks();
    }
    this.#now = target;
    await flushMicrotasks();
  }
}

/** Lets queued promise reactions run (a few rounds, for chained `then`s). */
export async function flushMicrotasks(rounds = 20): Promise<void> {
  for (let i = 0; i < rounds; i++) await Promise.resolve();
}
