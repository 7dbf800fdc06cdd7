/**
 * Reads a request body with a hard size cap (checked before anything is buffered past it) and
 * a deadline for the whole body, so a slow or never-finishing upload cannot hold memory or a
 * handler forever. A body with a declared `Content-Length` within the cap is read in one native
 * call (the runtime enforces the length); a chunked body is read chunk by chunk and cut off at
 * the cap. Deadlines live on the core's shared deadline heap: no timer per request.
 *
 * With a payload budget (the gateway's one budget of bytes in flight, shared by every protocol),
 * a declared length is taken from it before a byte is read, and a chunked body chunk by chunk; a
 * body that does not fit is refused `overloaded` (HTTP answers 503 with `Retry-After`). The caller
 * gives the `reserved` bytes back once the message is accepted (the pipeline then counts it).
 *
 * @module
 */

import type { DeadlineQueue, PayloadBudget } from "../../core/mod.ts";

/** Outcome of {@link readBody}. */
export type BodyResult =
  | { ok: true; bytes: Uint8Array; reserved: number }
  | { ok: false; reason: "too_large"; received: number }
  | { ok: false; reason: "overloaded"; received: number }
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
  /** The budget of payload bytes in flight to reserve the body from (`port.budget`). */
  budget?: PayloadBudget;
}

const EMPTY = new Uint8Array(0);
/**
 * Bodies up to this declared length are read in one native call; longer ones chunk by chunk, so a
 * body that stalls holds only what arrived (the native call sizes its buffer by the declared
 * length at once).
 */
const ONE_CALL_MAX = 16_384;

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
  const { maxBytes, timeoutMs, deadlines, signal, budget } = options;
  if (signal?.aborted) return { ok: false, reason: "aborted", received: 0 };
  // Reading `req.body` would build a stream and slow the native read: look at the headers first.
  const declared = req.headers.get("content-length");
  const length = declared !== null && /^\d{1,15}$/.test(declared) ? Number(declared) : -1;
  if (length > maxBytes) return { ok: false, reason: "too_large", received: 0 };
  if (length === 0 || (length < 0 && !req.body)) return { ok: true, bytes: EMPTY, reserved: 0 };
  if (length > 0 && budget && !budget.tryTake(length)) {
    return { ok: false, reason: "overloaded", received: 0 };
  }
  const taken = length > 0 && budget ? length : 0;
  let done = false;
  const stop = Promise.withResolvers<"timeout" | "aborted">();
  let deadline;
  try {
    deadline = deadlines.add(timeoutMs, () => stop.resolve("timeout"));
  } catch {
    if (taken) budget!.give(taken);
    return { ok: false, reason: "aborted", received: 0 }; // the core is closed
  }
  const onAbort = () => stop.resolve("aborted");
  signal?.addEventListener("abort", onAbort, { once: true });
  try {
    if (length >= 0 && length <= ONE_CALL_MAX) {
      // The runtime checks the length; `bytes()` cannot be cancelled, so a late body is left
      // pending (its rejection handled) and dropped with the connection.
      const all = req.bytes();
      const r = await Promise.race([all, stop.promise]);
      if (typeof r === "string") {
        all.catch(() => {});
        return { ok: false, reason: r, received: 0 };
      }
      done = true;
      return { ok: true, bytes: r, reserved: taken };
    }
    return await readChunks(req.body!, maxBytes, stop.promise, budget);
  } catch {
    return { ok: false, reason: "aborted", received: 0 }; // the client reset mid-body
  } finally {
    deadline.cancel();
    signal?.removeEventListener("abort", onAbort);
    if (taken && !done) budget!.give(taken);
  }
}

async function readChunks(
  body: ReadableStream<Uint8Array>,
  maxBytes: number,
  stop: Promise<"timeout" | "aborted">,
  budget: PayloadBudget | undefined,
): Promise<BodyResult> {
  const reader = body.getReader();
  const chunks: Uint8Array[] = [];
  let received = 0;
  const fail = (reason: "timeout" | "aborted" | "too_large" | "overloaded"): BodyResult => {
    reader.cancel().catch(() => {});
    budget?.give(received);
    return { ok: false, reason, received };
  };
  for (;;) {
    let r;
    try {
      r = await Promise.race([reader.read(), stop]);
    } catch {
      return fail("aborted");
    }
    if (typeof r === "string") return fail(r);
    if (r.done) break;
    const n = r.value.byteLength;
    if (received + n > maxBytes) return fail("too_large");
    if (budget && !budget.tryTake(n)) return fail("overloaded");
    received += n;
    chunks.push(r.value);
  }
  if (chunks.length === 1) return { ok: true, bytes: chunks[0], reserved: budget ? received : 0 };
  const bytes = new Uint8Array(received);
  let o = 0;
  for (const c of chunks) {
    bytes.set(c, o);
    o += c.byteLength;
  }
  return { ok: true, bytes, reserved: budget ? received : 0 };
}
