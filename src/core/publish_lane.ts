/**
 * One connection's publishes that are still on their way in (waiting for the durable stage's
 * commit, or for room in the pipeline), kept in arrival order.
 *
 * A stream connection need not stop reading while one message waits for its commit: it hands the
 * next ones to the port too, so that one group commit carries many messages of every connection
 * (the durable stage starts for each at once, in order). The lane keeps what must stay ordered:
 * a message enters the pipeline only after the one before it from the same connection, and the
 * results settle in arrival order, so acknowledgements go out in the order the messages came
 * ([MQTT-4.6.0-2], FBP/1 ACKs). The connection stops reading once {@link PublishLane.full}: that
 * window, with the payload budget, bounds what a connection holds.
 *
 * @module
 */

/**
 * The in-order tail of one connection's waiting publishes (see the module doc). Made by the
 * adapter per connection and passed in `PublishOptions.lane`; the port records each waiting
 * publish in it.
 *
 * @example
 * ```ts
 * import { PublishLane } from "./publish_lane.ts";
 * const lane = new PublishLane(2);
 * const a = Promise.withResolvers<string>();
 * lane.add(a.promise);
 * const waiting = lane.pending;
 * a.resolve("ok");
 * await lane.tail;
 * await Promise.resolve();
 * if (waiting !== 1 || lane.pending !== 0 || lane.tail !== undefined) throw new Error();
 * ```
 */
export class PublishLane {
  /** Publishes a connection may have waiting before it stops reading. */
  readonly window: number;
  #tail: Promise<unknown> | undefined;
  #pending = 0;
  #roomWait: Promise<void> | undefined;

  /** Creates a lane allowing `window` (≥ 1) waiting publishes. */
  constructor(window: number) {
    if (!Number.isInteger(window) || window < 1) {
      throw new RangeError(
        `Cannot make a publish lane: window ${window} is not a positive integer`,
      );
    }
    this.window = window;
  }

  /** The last waiting publish (settles after every earlier one), or `undefined` when none waits. */
  get tail(): Promise<unknown> | undefined {
    return this.#tail;
  }

  /** Publishes waiting. */
  get pending(): number {
    return this.#pending;
  }

  /**
   * A publish of this lane that waits for room in the pipeline (not for the durable stage), as a
   * promise that settles with it: the connection should stop reading until then. Reading on
   * would only move the pipeline's queue into waiting producers (a promise, a waiter and an abort
   * listener each), which cost 3× the CPU per message when a slow subscriber held delivery back.
   */
  get roomWait(): Promise<void> | undefined {
    return this.#roomWait;
  }

  /** Records that `p`, a publish of this lane already {@link add}ed, waits for room. */
  waitsForRoom(p: Promise<unknown>): void {
    const w: Promise<void> = p.then(() => {
      if (this.#roomWait === w) this.#roomWait = undefined;
    });
    this.#roomWait = w;
  }

  /** True when the connection should stop reading until {@link tail} settles. */
  get full(): boolean {
    return this.#pending >= this.window;
  }

  /**
   * Records a waiting publish, which must settle after the lane's current tail (the port makes it
   * so) and must not reject. Returns it.
   */
  add<T>(p: Promise<T>): Promise<T> {
    this.#pending++;
    this.#tail = p;
    p.then(() => {
      this.#pending--;
      if (this.#tail === p) this.#tail = undefined;
    });
    return p;
  }
}
