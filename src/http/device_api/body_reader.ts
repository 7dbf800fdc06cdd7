/**
 * Reads a request body with a hard size cap (checked before anything is buffered past it) and
 * a deadline for the whole body, so a slow or never-finishing upload cannot hold memory or a
 * handler forever.
 *
 * @module
 */

import type { Clock } from "../../core/clock.ts";

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
  /** Time source for the deadline. */
  clock: Clock;
  /** Aborts the read (gateway shutdown, client gone). */
  signal?: AbortSignal;
}

/**
 * Reads `body` fully unless it exceeds `maxBytes`, misses the deadline, or `signal` aborts; in
 * those cases the stream is cancelled and what was read is dropped.
 *
 * @example
 * ```ts
 * import { systemClock } from "../../core/clock.ts";
 * import { readBody } from "./body_reader.ts";
 * const ok = await readBody(new Response("hello").body, { maxBytes: 8, timeoutMs: 1000, clock: systemClock });
 * if (!ok.ok || ok.bytes.length !== 5) throw new Error();
 * const big = await readBody(new Response("hello world").body, { maxBytes: 8, timeoutMs: 1000, clock: systemClock });
 * if (big.ok || big.reason !== "too_large") throw new Error();
 * ```
 */
export async function readBody(
  body: ReadableStream<Uint8Array> | null,
  options: ReadBodyOptions,
): Promise<BodyResult> {
  if (!body) return { ok: true, bytes: new Uint8Array(0) };
  const { maxBytes, timeoutMs, clock, signal } = options;
  const reader = body.getReader();
  let stop: "timeout" | "aborted" | undefined;
  const halt = (why: "timeout" | "aborted") => {
    stop ??= why;
    reader.cancel().catch(() => {});
  };
  const timer = clock.setTimeout(() => halt("timeout"), timeoutMs);
  const onAbort = () => halt("aborted");
  if (signal?.aborted) halt("aborted");
  signal?.addEventListener("abort", onAbort, { once: true });
  const chunks: Uint8Array[] = [];
  let received = 0;
  try {
    for (;;) {
      let r: ReadableStreamReadResult<Uint8Array>;
      try {
        r = await reader.read();
      } catch {
        // A client that resets mid-body: nothing more will come.
        stop ??= "aborted";
        break;
      }
      // Cancelling makes a pending read resolve `done`: `stop` tells it from a finished body.
      if (r.done || stop) break;
      received += r.value.byteLength;
      if (received > maxBytes) {
        reader.cancel().catch(() => {});
        return { ok: false, reason: "too_large", received };
      }
      chunks.push(r.value);
    }
  } finally {
    clock.clearTimeout(timer);
    signal?.removeEventListener("abort", onAbort);
  }
  if (stop) return { ok: false, reason: stop, received };
  if (chunks.length === 1) return { ok: true, bytes: chunks[0] };
  const bytes = new Uint8Array(received);
  let o = 0;
  for (const c of chunks) {
    bytes.set(c, o);
    o += c.byteLength;
  }
  return { ok: true, bytes };
}
