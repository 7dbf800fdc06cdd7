/**
 * The persisted key/value state of every rule (`ctx.state`): one small JSON file in the data
 * directory, `{ "version": 1, "rules": { "<rule>": { "<key>": value } } }`.
 *
 * Why a JSON file and not SQLite: the state is small by construction (64 KiB per rule by default)
 * and changes in bursts, so rewriting the whole file at most once a second is cheap; a write to a
 * temporary file renamed over the old one is atomic (a crash leaves the old or the new state, never
 * a mix); and an operator can read or edit it. Changes made in the last second before a crash are
 * lost, which suits what rules keep (last values, counters), not a ledger.
 *
 * @module
 */

import { type Clock, systemClock } from "../core/clock.ts";
import { type Logger, silentLogger } from "../core/logger.ts";

/** Options of {@link RuleStateStore.open}. */
export interface RuleStateStoreOptions {
  /** Time source of the write-behind timer. @default systemClock */
  clock?: Clock;
  /** Changes are written at most this often, ms. @default 1000 */
  flushMs?: number;
  /** Logger. */
  log?: Logger;
}

/**
 * Every rule's state, kept as JSON text per key (as the rule's worker sends it), written behind.
 *
 * @example
 * ```ts
 * import { RuleStateStore } from "./state_store.ts";
 * const dir = await Deno.makeTempDir();
 * const a = await RuleStateStore.open(`${dir}/rules-state.json`);
 * a.apply("celsius", [["last", "21.5"]]);
 * await a.close();
 * const b = await RuleStateStore.open(`${dir}/rules-state.json`);
 * const entries = b.entries("celsius");
 * await b.close();
 * await Deno.remove(dir, { recursive: true });
 * if (entries[0][0] !== "last" || entries[0][1] !== "21.5") throw new Error();
 * ```
 */
export class RuleStateStore implements AsyncDisposable {
  /** The file, or undefined when the state is kept in memory only. */
  readonly path: string | undefined;
  #rules = new Map<string, Map<string, string>>();
  #clock: Clock;
  #flushMs: number;
  #log: Logger;
  #timer: number | undefined;
  #dirty = false;
  #writing: Promise<void> | undefined;
  #closed = false;

  private constructor(path: string | undefined, options: RuleStateStoreOptions) {
    this.path = path;
    this.#clock = options.clock ?? systemClock;
    this.#flushMs = options.flushMs ?? 1000;
    this.#log = options.log ?? silentLogger;
  }

  /**
   * Opens the store at `path` (undefined: memory only). A file that cannot be parsed is renamed
   * aside (`.corrupt-<time>`) and logged; the rules start with empty state.
   */
  static async open(
    path: string | undefined,
    options: RuleStateStoreOptions = {},
  ): Promise<RuleStateStore> {
    const store = new RuleStateStore(path, options);
    if (path === undefined) return store;
    let text: string;
    try {
      text = await Deno.readTextFile(path);
    } catch (err) {
      if (err instanceof Deno.errors.NotFound) return store;
      throw err;
    }
    try {
      const doc = JSON.parse(text);
      if (doc?.version !== 1 || typeof doc.rules !== "object" || doc.rules === null) {
        throw new SyntaxError("not a version 1 rule state file");
      }
      for (const [rule, kv] of Object.entries(doc.rules as Record<string, unknown>)) {
        if (typeof kv !== "object" || kv === null) continue;
        store.#rules.set(
          rule,
          new Map(Object.entries(kv).map(([k, v]) => [k, JSON.stringify(v)])),
        );
      }
    } catch (err) {
      const aside = `${path}.corrupt-${store.#clock.now()}`;
      await Deno.rename(path, aside);
      store.#log.error("rule state file unreadable: set aside, rules start with empty state", {
        file: path,
        setAside: aside,
        error: err,
      });
    }
    return store;
  }

  /** The state of `rule`: key and JSON text. */
  entries(rule: string): Array<[string, string]> {
    return [...(this.#rules.get(rule) ?? [])];
  }

  /** Applies changes (`undefined` deletes) reported by a rule's worker. */
  apply(rule: string, changes: ReadonlyArray<readonly [string, string | undefined]>): void {
    let kv = this.#rules.get(rule);
    if (!kv) this.#rules.set(rule, kv = new Map());
    for (const [k, v] of changes) {
      if (v === undefined) kv.delete(k);
      else kv.set(k, v);
    }
    this.#dirty = true;
    if (this.path !== undefined && this.#timer === undefined && !this.#closed) {
      this.#timer = this.#clock.setTimeout(() => {
        this.#timer = undefined;
        this.flush().catch((error) =>
          this.#log.error("rule state not written", { file: this.path, error })
        );
      }, this.#flushMs);
      this.#clock.unref?.(this.#timer);
    }
  }

  /** Writes pending changes now (atomically: temporary file, then rename). */
  async flush(): Promise<void> {
    while (this.#writing) await this.#writing;
    if (!this.#dirty || this.path === undefined) return;
    this.#dirty = false;
    const path = this.path;
    const rules = [...this.#rules].map(([rule, kv]) =>
      `${JSON.stringify(rule)}:{${[...kv].map(([k, v]) => `${JSON.stringify(k)}:${v}`).join(",")}}`
    );
    const text = `{"version":1,"rules":{${rules.join(",")}}}\n`;
    this.#writing = (async () => {
      const tmp = `${path}.tmp`;
      await Deno.writeTextFile(tmp, text);
      await Deno.rename(tmp, path);
    })();
    try {
      await this.#writing;
    } catch (err) {
      this.#dirty = true;
      throw err;
    } finally {
      this.#writing = undefined;
    }
  }

  /** Writes pending changes and stops the timer. Idempotent. */
  async close(): Promise<void> {
    this.#closed = true;
    if (this.#timer !== undefined) this.#clock.clearTimeout(this.#timer);
    this.#timer = undefined;
    await this.flush();
  }

  /** Same as {@link close}. */
  [Symbol.asyncDispose](): Promise<void> {
    return this.close();
  }
}
