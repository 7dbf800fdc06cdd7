/**
 * A response that is sent whole and then fails, for requests whose body never finishes. Deno.serve
 * gives a handler no way to close the connection, and a plain response leaves the runtime waiting
 * for the rest of the body, which also holds the server's graceful shutdown. A response body that
 * errors after the problem is written makes the runtime abandon the exchange instead: the client
 * gets the status, headers and problem, then no end of the chunked body.
 *
 * @module
 */

const ABORTED = "request body not received in time: response aborted";

/**
 * Wraps `res` so that its body errors once fully sent.
 *
 * @example
 * ```ts
 * import { abortingResponse } from "./_aborting_response.ts";
 * const res = abortingResponse(new Response("late"));
 * const reader = res.body!.getReader();
 * const first = await reader.read();
 * if (new TextDecoder().decode(first.value) !== "late") throw new Error();
 * let failed = false;
 * try { await reader.read(); } catch { failed = true; }
 * if (!failed) throw new Error("body ended cleanly");
 * ```
 */
export function abortingResponse(res: Response): Response {
  const reader = res.body!.getReader();
  let done = false;
  const stream = new ReadableStream<Uint8Array>({
    async pull(c) {
      if (done) return c.error(new Error(ABORTED));
      const r = await reader.read();
      if (r.done) {
        done = true;
        c.error(new Error(ABORTED));
      } else c.enqueue(r.value);
    },
  });
  return new Response(stream, { status: res.status, headers: res.headers });
}
