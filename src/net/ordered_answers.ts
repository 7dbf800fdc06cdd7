/**
 * The answers of one stream connection to what its peer sent (PUBACK/PUBREC, FBP/1 ACK), written
 * in the order the messages came ([MQTT-4.6.0-2], [MQTT-4.6.0-3]; FBP/1 §ACK) even when some wait
 * (for the spool's commit, for room, for the session state's commit) and later ones do not.
 *
 * While answers wait the connection reads on; at `window` waiting answers it stops reading until
 * one went out (the promise {@link OrderedAnswers.answer} returns), so a connection holds at most
 * `window` messages in flight.
 *
 * @module
 */

/**
 * Writes answers in arrival order (see the module doc).
 *
 * @example
 * ```ts
 * import { OrderedAnswers } from "./ordered_answers.ts";
 * const sent: string[] = [];
 * const answers = new OrderedAnswers(8, (err) => { throw err; });
 * const slow = Promise.withResolvers<string>();
 * answers.answer(slow.promise, (r) => void sent.push(r)); // waits
 * answers.answer("b", (r) => void sent.push(r)); // ready at once, but goes out after "a"
 * if (sent.length !== 0 || answers.waiting !== 2) throw new Error();
 * slow.resolve("a");
 * await answers.idle();
 * if (sent.join() !== "a,b") throw new Error(sent.join());
 * ```
 */
export class OrderedAnswers {
  /** Waiting answers at which the connection stops reading. */
  readonly window: number;
  #onError: (err: unknown) => void;
  #waiting = 0;
  #last: Promise<void> | undefined; // settles after every earlier answer; never rejects
  #room: PromiseWithResolvers<void> | undefined;

  /**
   * Creates the queue; `onError` gets what an answer threw (the connection fails with it).
   */
  constructor(window: number, onError: (err: unknown) => void) {
    if (!Number.isInteger(window) || window < 1) {
      throw new RangeError(`Cannot order answers: window ${window} is not a positive integer`);
    }
    this.window = window;
    this.#onError = onError;
  }

  /** Answers not written yet. */
  get waiting(): number {
    return this.#waiting;
  }

  /**
   * Writes the answer to `result` with `write` once `result` is known and every earlier answer
   * went out: at once when nothing waits and `result` is not a promise. Returns a promise only
   * when the connection should stop reading until it resolves (the window is full).
   */
  answer<T>(
    result: T | Promise<T>,
    write: (r: T) => void | Promise<void>,
  ): Promise<void> | undefined {
    const before = this.#last;
    if (before === undefined && !(result instanceof Promise)) {
      const written = write(result); // the common case: no promise at all
      return written ? this.#track(written) : undefined;
    }
    const ready = before === undefined ? result as Promise<T> : before.then(() => result);
    return this.#track(ready.then(write));
  }

  /** Resolves once every answer given so far went out. */
  idle(): Promise<void> {
    return this.#last ?? Promise.resolve();
  }

  #track(written: Promise<void>): Promise<void> | undefined {
    this.#waiting++;
    const settled: Promise<void> = written.then(() => this.#done(settled), (err) => {
      this.#done(settled);
      this.#onError(err);
    });
    this.#last = settled;
    if (this.#waiting < this.window) return undefined;
    return (this.#room ??= Promise.withResolvers<void>()).promise;
  }

  #done(settled: Promise<void>): void {
    this.#waiting--;
    if (this.#last === settled) this.#last = undefined;
    const room = this.#room;
    if (room !== undefined && this.#waiting < this.window) {
      this.#room = undefined;
      room.resolve();
    }
  }
}
