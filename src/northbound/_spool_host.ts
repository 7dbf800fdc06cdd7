/**
 * Where the spool's SQL runs: in a Worker that owns the `DatabaseSync` (default; the main thread
 * never waits for an fsync), or inline on the main thread (`spool.worker: false`, for comparison
 * and for runtimes without workers). Both answer requests in the order they were made.
 *
 * @module
 */

import { DatabaseSync } from "node:sqlite";
import { spoolStoreFactory, type StoreError, type StoreRequest } from "./_spool_store.ts";

/** Runs store requests, in order. */
export interface StoreHost {
  /** Sends a request; resolves with its answer or rejects with the store's error. */
  call<T>(req: StoreRequest, transfer?: Transferable[]): Promise<T>;
  /** Stops the host (after the store was closed). */
  terminate(): void;
}

/** A store failure on the main thread. */
export class StoreFailure extends Error {
  override name = "StoreFailure";
  /** `corrupt` or `io`. */
  readonly kind: "corrupt" | "io";
  /** Creates the error. */
  constructor(e: StoreError) {
    super(e.message);
    this.kind = e.kind;
  }
}

function asFailure(err: unknown): StoreFailure {
  if (err instanceof StoreFailure) return err;
  if (err && typeof err === "object" && "kind" in err && "message" in err) {
    return new StoreFailure(err as StoreError);
  }
  return new StoreFailure({
    message: err instanceof Error ? err.message : String(err),
    kind: "io",
  });
}

const WORKER_SOURCE = `import { DatabaseSync } from "node:sqlite";
const store = (${spoolStoreFactory.toString()})(DatabaseSync)();
self.onmessage = async (e) => {
  const { seq, req } = e.data;
  let res;
  try {
    res = store.handle(req);
    if (res instanceof Promise) res = await res;
  } catch (err) {
    const error = err && typeof err === "object" && "kind" in err
      ? { message: String(err.message), kind: err.kind }
      : { message: String(err && err.message || err), kind: "io" };
    self.postMessage({ seq, ok: false, error });
    return;
  }
  self.postMessage({ seq, ok: true, res });
  if (req.op === "close") self.close();
};
`;

/** A host whose store lives in a Worker. */
export function workerHost(): StoreHost {
  const url = URL.createObjectURL(new Blob([WORKER_SOURCE], { type: "text/javascript" }));
  const worker = new Worker(url, { type: "module" });
  URL.revokeObjectURL(url);
  const waiting = new Map<
    number,
    { resolve: (v: unknown) => void; reject: (e: unknown) => void }
  >();
  let seq = 0;
  let dead: StoreFailure | undefined;
  worker.onmessage = (e: MessageEvent) => {
    const m = e.data as { seq: number; ok: boolean; res?: unknown; error?: StoreError };
    const w = waiting.get(m.seq);
    waiting.delete(m.seq);
    if (!w) return;
    if (m.ok) w.resolve(m.res);
    else w.reject(new StoreFailure(m.error!));
  };
  worker.onerror = (e: ErrorEvent) => {
    e.preventDefault();
    dead = new StoreFailure({ message: `spool worker failed: ${e.message}`, kind: "io" });
    for (const w of waiting.values()) w.reject(dead);
    waiting.clear();
  };
  return {
    call<T>(req: StoreRequest, transfer: Transferable[] = []): Promise<T> {
      if (dead) return Promise.reject(dead);
      const s = ++seq;
      return new Promise<T>((resolve, reject) => {
        waiting.set(s, { resolve: resolve as (v: unknown) => void, reject });
        worker.postMessage({ seq: s, req }, transfer);
      });
    },
    terminate() {
      worker.terminate();
      const err = new StoreFailure({ message: "spool worker stopped", kind: "io" });
      for (const w of waiting.values()) w.reject(err);
      waiting.clear();
    },
  };
}

/** A host that runs the store on the main thread (each request in its own macrotask). */
export function inlineHost(): StoreHost {
  const store = spoolStoreFactory(DatabaseSync)();
  let chain: Promise<unknown> = Promise.resolve();
  return {
    call<T>(req: StoreRequest): Promise<T> {
      const p = chain.then(() =>
        new Promise<T>((resolve, reject) => {
          setTimeout(() => {
            try {
              Promise.resolve(store.handle(req) as T).then(resolve, (e) => reject(asFailure(e)));
            } catch (err) {
              reject(asFailure(err));
            }
          }, 0);
        })
      );
      chain = p.catch(() => {});
      return p;
    },
    terminate() {},
  };
}
