/**
 * Reads a request body with a hard size cap (checked before anything is buffered past it) and
 * a deadline for the whole body, so a slow or never-finishing upload cannot hold memory or a
 * handler forever. A body with a declared `Content-Length` within the cap is read in one native
 * call (the runtime enforces the length); a chunked body is read chunk by chunk and cut off at
 * the cap. Deadlines live on the core's shared deadline heap: no timer per request.
 *
 * @module
 */

import type { DeadlineQueue } from "../../core/mod.ts";

/** Outcome of {@link readBody}. */
export type BodyResult =
  | { ok: true; bytes: Uint8Array }
  | { ok: false; reason: "too_large"; received: number }
  | { ok: false; reason: "timeout"; received: number }
  | { ok: false; reason: "aborted"; received: number };

/** Options of {@link readBody}. */
export interface ReadBodyOptions {
  /** Byte cap; reading stops as soon as it is exceeded. */
  maxBytes: number;
  /** Deadline of the whole body (ms). */
  timeoutMs: number;
  /** Where the deadline is kept (the core's `deadlines`). */
  deadlines: DeadlineQueue;
  /** Aborts the read (gateway shutdown). */
  signal?: AbortSignal;
}

const EMPTY = new Uint8Array(0);

/**
 * Reads the body of `req` fully unless it exceeds `maxBytes`, misses the deadline, or `signal`
 * aborts; in those cases reading stops and what was read is dropped.
 *
 * @example
 * ```ts
 * import { DeadlineQueue } from "../../core/deadline_queue.ts";
 * import { readBody } from "./body_reader.ts";
 * using deadlines = new DeadlineQueue();
 * const post = (body: string) => new Request("http://x/", { method: "POST", body });
 * const ok = await readBody(post("hello"), { maxBytes: 8, timeoutMs: 1000, deadlines });
 * if (!ok.ok || ok.bytes.length !== 5) throw new Error();
 * const big = await readBody(post("hello world"), { maxBytes: 8, timeoutMs: 1000, deadlines });
 * if (big.ok || big.reason !== "too_large") throw new Error();
 * ```
 */
export async function readBody(req: Request, options: ReadBodyOptions): Promise<BodyResult> {
  const { maxBytes, timeoutMs, deadlines, signal } = options;
  if (signal?.aborted) return { ok: false, reason: "aborted", received: 0 };
  // Reading `req.body` would build a stream and slow the native read: look at the headers first.
  const declared = req.headers.get("content-length");
  const length = declared !== null && /^\d{1,15}$/.test(declared) ? Number(declared) : -1;
  if (length > maxBytes) return { ok: false, reason: "too_large", received: 0 };
  if (length === 0 || (length < 0 && !req.body)) return { ok: true, bytes: EMPTY };
  const stop = Promise.withResolvers<"timeout" | "aborted">();
  let deadline;
  try {
    deadline = deadlines.add(timeoutMs, () => stop.resolve("timeout"));
  } catch {
    return { ok: false, reason: "aborted", received: 0 }; // the core is closed
  }
  const onAbort = () => stop.resolve("aborted");
  signal?.addEventListener("abort", onAbort, { once: true });
  try {
    if (length >= 0) {
      // The runtime checks the length; `bytes()` cannot be cancelled, so a late body is left
      // pending (its rejection handled) and dropped with the connection.
      const all = req.bytes();
      const r = await Promise.race([all, stop.promise]);
      if (typeof r === "string") {
        all.catch(() => {});
        return { ok: false, reason: r, received: 0 };
      }
      return { ok: true, bytes: r };
    }
    return await readChunks(req.body!, maxBytes, stop.promise);
  } catch {
    return { ok: false, reason: "aborted", received: 0 }; // the client reset mid-body
  } finally {
    deadline.cancel();
    signal?.removeEventListener("abort", onAbort);
  }
}

async function readChunks(
  body: ReadableStream<Uint8Array>,
  maxBytes: number,
  stop: Promise<"timeout" | "aborted">,
): Promise<BodyResult> {
  const reader = body.getReader();
  const chunks: Uint8Array[] = [];
  let received = 0;
  for (;;) {
    const r = await Promise.race([reader.read(), stop]);
    if (typeof r === "string") {
      reader.cancel().catch(() => {});
      return { ok: false, reason: r, received };
    }
    if (r.done) break;
    received += r.value.byteLength;
    if (received > maxBytes) {
      reader.cancel().catch(() => {});
      return { ok: false, reason: "too_large", received };
    }
    chunks.push(r.value);
  }
  if (chunks.length === 1) return { ok: true, bytes: chunks[0] };
  const bytes = new Uint8Array(received);
  let o = 0;
  for (const c of chunks) {
    bytes.set(c, o);
    o += c.byteLength;
  }
  return { ok: true, bytes };
}
