/**
 * Splits a telemetry request body into messages. A JSON array (`application/json` whose first
 * non-blank byte is `[`) or an NDJSON body (`application/x-ndjson`, `application/ndjson`,
 * `application/jsonl`) is a batch: one message per element or line, accepted or refused as a
 * whole. Any other body is one message, bytes untouched.
 *
 * @module
 */

/** Media types read as newline-delimited JSON. */
export const NDJSON_TYPES: ReadonlySet<string> = new Set([
  "application/x-ndjson",
  "application/ndjson",
  "application/jsonl",
  "application/x-jsonlines",
]);

/** Outcome of {@link splitBatch}. */
export type BatchResult =
  | { kind: "single" }
  | { kind: "batch"; items: Uint8Array[] }
  | { kind: "error"; slug: "invalid-batch" | "batch-too-large"; detail: string };

/** Options of {@link splitBatch}. */
export interface SplitBatchOptions {
  /** Most items accepted. */
  maxBatch: number;
  /** Treat a JSON array as one message instead of a batch (`?batch=false`). */
  arrayIsBatch?: boolean;
}

/** The media type of a `Content-Type` value, lower-cased, without parameters. */
export function mediaType(contentType: string | null): string {
  if (!contentType) return "";
  const semi = contentType.indexOf(";");
  return (semi < 0 ? contentType : contentType.slice(0, semi)).trim().toLowerCase();
}

const encoder = new TextEncoder();
const decoder = new TextDecoder("utf-8", { fatal: true });

function firstNonBlank(b: Uint8Array): number {
  for (const x of b) if (x !== 0x20 && x !== 0x09 && x !== 0x0a && x !== 0x0d) return x;
  return -1;
}

/**
 * Decides whether `bytes` is a batch and splits it.
 *
 * @example
 * ```ts
 * import { splitBatch } from "./batch.ts";
 * const enc = (s: string) => new TextEncoder().encode(s);
 * const a = splitBatch(enc('[{"t":1},{"t":2}]'), "application/json", { maxBatch: 10 });
 * if (a.kind !== "batch" || a.items.length !== 2) throw new Error();
 * const n = splitBatch(enc('{"t":1}\n{"t":2}\n'), "application/x-ndjson", { maxBatch: 10 });
 * if (n.kind !== "batch" || new TextDecoder().decode(n.items[1]) !== '{"t":2}') throw new Error();
 * if (splitBatch(enc('{"t":1}'), "application/json", { maxBatch: 10 }).kind !== "single") throw new Error();
 * if (splitBatch(enc("[1,2,3]"), "application/json", { maxBatch: 2 }).kind !== "error") throw new Error();
 * ```
 */
export function splitBatch(
  bytes: Uint8Array,
  contentType: string | null,
  options: SplitBatchOptions,
): BatchResult {
  const type = mediaType(contentType);
  if (NDJSON_TYPES.has(type)) return splitNdjson(bytes, options.maxBatch);
  if (
    (type === "application/json" || type.endsWith("+json")) &&
    options.arrayIsBatch !== false && firstNonBlank(bytes) === 0x5b // "["
  ) {
    return splitArray(bytes, options.maxBatch);
  }
  return { kind: "single" };
}

function tooMany(maxBatch: number): BatchResult {
  return {
    kind: "error",
    slug: "batch-too-large",
    detail: `Cannot accept batch: more than the ${maxBatch} message limit`,
  };
}

function splitArray(bytes: Uint8Array, maxBatch: number): BatchResult {
  let value: unknown;
  try {
    value = JSON.parse(decoder.decode(bytes));
  } catch (err) {
    return {
      kind: "error",
      slug: "invalid-batch",
      detail: `Cannot parse JSON array batch: ${(err as Error).message}`,
    };
  }
  if (!Array.isArray(value)) {
    return { kind: "error", slug: "invalid-batch", detail: "Cannot parse batch: not an array" };
  }
  if (value.length === 0) {
    return { kind: "error", slug: "invalid-batch", detail: "Cannot accept an empty batch" };
  }
  if (value.length > maxBatch) return tooMany(maxBatch);
  return { kind: "batch", items: value.map((v) => encoder.encode(JSON.stringify(v))) };
}

function splitNdjson(bytes: Uint8Array, maxBatch: number): BatchResult {
  // One decode for the whole body; 0x0A never occurs inside a UTF-8 multi-byte sequence, so the
  // k-th line of the text is the k-th line of the bytes, and payloads stay zero-copy views.
  let text: string;
  try {
    text = decoder.decode(bytes);
  } catch {
    return { kind: "error", slug: "invalid-batch", detail: "Cannot parse NDJSON: not UTF-8" };
  }
  const items: Uint8Array[] = [];
  let start = 0;
  let from = 0;
  let lineNo = 0;
  while (start <= bytes.length) {
    let end = bytes.indexOf(0x0a, start);
    if (end < 0) end = bytes.length;
    let to = text.indexOf("\n", from);
    if (to < 0) to = text.length;
    lineNo++;
    let stop = end;
    if (stop > start && bytes[stop - 1] === 0x0d) stop--; // CRLF line ends
    const line = text.slice(from, to);
    const view = bytes.subarray(start, stop);
    start = end + 1;
    from = to + 1;
    if (line.trim() === "") continue;
    try {
      JSON.parse(line);
    } catch (err) {
      return {
        kind: "error",
        slug: "invalid-batch",
        detail: `Cannot parse NDJSON line ${lineNo}: ${(err as Error).message}`,
      };
    }
    if (items.length === maxBatch) return tooMany(maxBatch);
    items.push(view);
  }
  if (items.length === 0) {
    return { kind: "error", slug: "invalid-batch", detail: "Cannot accept an empty batch" };
  }
  return { kind: "batch", items };
}
