/**
 * Server-Sent Events framing (WHATWG HTML §9.2 "Server-sent events", the `text/event-stream`
 * format): events with `id:`, `event:` and one `data:` line per line of data, and comment lines
 * used as heartbeats.
 *
 * @module
 */

const encoder = new TextEncoder();

/** One event. */
export interface SseEvent {
  /** Event id (the client sends the last one back as `Last-Event-ID`). */
  id?: string | number;
  /** Event type (`message` when absent). */
  event?: string;
  /** Data; newlines become separate `data:` lines. */
  data: string;
}

/**
 * Encodes one event, terminated by the blank line that dispatches it.
 *
 * @example
 * ```ts
 * import { encodeSseEvent } from "./sse.ts";
 * const s = new TextDecoder().decode(encodeSseEvent({ id: 7, event: "command", data: "a\nb" }));
 * if (s !== "id: 7\nevent: command\ndata: a\ndata: b\n\n") throw new Error(JSON.stringify(s));
 * ```
 */
export function encodeSseEvent(e: SseEvent): Uint8Array {
  let out = "";
  // Field values cannot hold CR/LF: an id or event type carrying one is cut there.
  if (e.id !== undefined) out += `id: ${String(e.id).split(/[\r\n]/)[0]}\n`;
  if (e.event !== undefined) out += `event: ${e.event.split(/[\r\n]/)[0]}\n`;
  for (const line of e.data.split(/\r\n|\r|\n/)) out += `data: ${line}\n`;
  return encoder.encode(out + "\n");
}

/**
 * Encodes a comment line (ignored by clients; keeps idle connections and proxies alive), or a
 * `retry:` hint when `retryMs` is given.
 *
 * @example
 * ```ts
 * import { encodeSseComment } from "./sse.ts";
 * if (new TextDecoder().decode(encodeSseComment("ping")) !== ": ping\n\n") throw new Error();
 * ```
 */
export function encodeSseComment(text: string, retryMs?: number): Uint8Array {
  const retry = retryMs !== undefined ? `retry: ${Math.trunc(retryMs)}\n` : "";
  return encoder.encode(`${retry}: ${text.replace(/[\r\n]/g, " ")}\n\n`);
}
