/**
 * A pull-based `ReadableStream` over a TCP connection that costs little while idle. Reading through
 * `conn.readable` keeps a 64 KiB chunk per pending read (~79 KB RSS per idle connection); this
 * source reads with `conn.read()` into a small buffer that grows while data streams in and shrinks
 * back when the connection goes quiet. With a high-water mark of 0, nothing is read until the
 * consumer asks: a slow consumer stops socket reads (backpressure).
 *
 * @module
 */

/** Tunables of {@link connSource}. */
export interface ConnSourceOptions {
  /** Read buffer of an idle connection, bytes. @default 512 */
  minBuffer?: number;
  /** Largest read buffer while data streams in, bytes. @default 16384 */
  maxBuffer?: number;
  /** Called with the byte count of each read. */
  onBytes?: (n: number) => void;
}

/** Anything with a `read(buf)` like `Deno.Conn`. */
export interface ByteReader {
  /** Reads into `p`; resolves to the count read or `null` at end of stream. */
  read(p: Uint8Array): Promise<number | null>;
}

/**
 * Wraps a connection's reads in a stream of chunks (each chunk is a fresh copy).
 *
 * @example
 * ```ts
 * import { connSource } from "./conn_source.ts";
 * const data = [new Uint8Array([1, 2, 3])];
 * const reader = { read: (p: Uint8Array) => {
 *   const d = data.shift(); if (!d) return Promise.resolve(null);
 *   p.set(d); return Promise.resolve(d.length);
 * } };
 * const chunks = await Array.fromAsync(connSource(reader));
 * if (chunks.length !== 1 || chunks[0][2] !== 3) throw new Error();
 * ```
 */
export function connSource(
  conn: ByteReader,
  options: ConnSourceOptions = {},
): ReadableStream<Uint8Array> {
  const min = options.minBuffer ?? 512;
  const max = options.maxBuffer ?? 16384;
  let size = min;
  return new ReadableStream<Uint8Array>({
    async pull(controller) {
      const buf = new Uint8Array(size);
      let n: number | null;
      try {
        n = await conn.read(buf);
      } catch (err) {
        // A reset or a close from our side ends the stream; the session decides what it means.
        if (
          err instanceof Deno.errors.BadResource || err instanceof Deno.errors.ConnectionReset ||
          err instanceof Deno.errors.Interrupted || err instanceof Deno.errors.BrokenPipe
        ) {
          controller.close();
          return;
        }
        controller.error(err);
        return;
      }
      if (n === null) {
        controller.close();
        return;
      }
      options.onBytes?.(n);
      // Grow while reads fill the buffer; shrink when they come back small.
      if (n === size && size < max) size = Math.min(max, size * 4);
      else if (n < size / 8 && size > min) size = Math.max(min, size / 4);
      controller.enqueue(n === buf.length ? buf : buf.slice(0, n));
    },
  }, { highWaterMark: 0 });
}
