/**
 * Watches files for hot reload: the rules' modules (and the files they import) and the config
 * file. Events are debounced (editors write a file in several steps, or rename a new one over it),
 * then the callback runs, one call at a time.
 *
 * @module
 */

import { dirname, resolve } from "../core/path.ts";

/** Options of {@link FileWatcher}. */
export interface FileWatcherOptions {
  /** Quiet time after the last event before the callback runs, ms. @default 100 */
  debounceMs?: number;
  /** Called when `watch` fails (e.g. a directory disappeared); watching stops. */
  onError?: (err: unknown) => void;
}

/**
 * Calls `onChange` with the changed paths when files in the watched set change.
 *
 * @example
 * ```ts
 * import { FileWatcher } from "./watcher.ts";
 * const dir = await Deno.makeTempDir();
 * const changed = Promise.withResolvers<string[]>();
 * const w = new FileWatcher((paths) => changed.resolve(paths), { debounceMs: 10 });
 * w.watch([`${dir}/rule.ts`]);
 * await Deno.writeTextFile(`${dir}/rule.ts`, "export default () => null;\n");
 * const paths = await changed.promise;
 * await w.close();
 * await Deno.remove(dir, { recursive: true });
 * if (!paths[0].endsWith("rule.ts")) throw new Error(paths.join());
 * ```
 */
export class FileWatcher implements AsyncDisposable {
  #onChange: (paths: string[]) => void | Promise<void>;
  #debounceMs: number;
  #onError?: (err: unknown) => void;
  #files = new Set<string>();
  #watchers = new Map<string, { w: Deno.FsWatcher; done: Promise<void> }>();
  #pending = new Set<string>();
  #timer: ReturnType<typeof setTimeout> | undefined;
  #running: Promise<void> = Promise.resolve();
  #closed = false;

  /** Creates a watcher of nothing yet; see {@link watch}. */
  constructor(
    onChange: (paths: string[]) => void | Promise<void>,
    options: FileWatcherOptions = {},
  ) {
    this.#onChange = onChange;
    this.#debounceMs = options.debounceMs ?? 100;
    this.#onError = options.onError;
  }

  /** Sets the files watched (their directories are watched, not recursively). */
  watch(files: Iterable<string>): void {
    if (this.#closed) return;
    this.#files = new Set([...files].map((f) => resolve(f)));
    const dirs = new Set([...this.#files].map((f) => dirname(f)));
    for (const [dir, { w }] of this.#watchers) {
      if (dirs.has(dir)) continue;
      w.close();
      this.#watchers.delete(dir);
    }
    for (const dir of dirs) {
      if (this.#watchers.has(dir)) continue;
      let w: Deno.FsWatcher;
      try {
        w = Deno.watchFs(dir, { recursive: false });
      } catch (err) {
        this.#onError?.(err);
        continue;
      }
      this.#watchers.set(dir, { w, done: this.#pump(w) });
    }
  }

  async #pump(w: Deno.FsWatcher): Promise<void> {
    try {
      for await (const ev of w) {
        for (const p of ev.paths) {
          // An editor's rename of a temporary file over x.ts names x.ts too. Paths come absolute
          // and normalized (the watched directory joined with a name): resolved only otherwise,
          // as every write in the directory (a log file beside the config) is an event here.
          const abs = p.startsWith("/") ? p : resolve(p);
          if (this.#files.has(abs)) this.#pending.add(abs);
        }
        if (this.#pending.size === 0) continue;
        clearTimeout(this.#timer);
        this.#timer = setTimeout(() => this.#fire(), this.#debounceMs);
      }
    } catch (err) {
      if (!this.#closed) this.#onError?.(err);
    }
  }

  #fire(): void {
    this.#timer = undefined;
    const paths = [...this.#pending];
    this.#pending.clear();
    this.#running = this.#running.then(() => this.#onChange(paths)).catch((err) =>
      this.#onError?.(err)
    );
  }

  /** Stops watching; waits for a callback in progress. Idempotent. */
  async close(): Promise<void> {
    this.#closed = true;
    clearTimeout(this.#timer);
    this.#timer = undefined;
    for (const { w } of this.#watchers.values()) {
      try {
        w.close();
      } catch { /* closed */ }
    }
    await Promise.all([...this.#watchers.values()].map((x) => x.done));
    this.#watchers.clear();
    await this.#running;
  }

  /** Same as {@link close}. */
  [Symbol.asyncDispose](): Promise<void> {
    return this.close();
  }
}
