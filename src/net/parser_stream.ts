/**
 * A protocol's codec stream made from its synchronous parser, in the spirit of std's
 * `toTransformStream`: one parser serves both a direct call (handshakes, fuzzing) and the
 * `TransformStream` production pipes each burst of socket bytes through. A chunk of bytes becomes
 * one batch of decoded values (one stream step per read, not per packet: at hundreds of thousands
 * of packets a second a stream step per packet would cost more than decoding them).
 *
 * Errors keep their place in the stream. A non-fatal error (a frame dropped for a bad checksum)
 * goes to `onError` once the reader has read every value before it and before it reads any value
 * after it; a fatal error (a stream that cannot be resynchronised) errors the readable once the
 * values before it were read, and the writable with it. (A plain `TransformStream` that errors
 * discards the values still queued, so errors travel in-band through an inner stream and are
 * raised by the outer readable when the reader reaches them.)
 *
 * @module
 */

/** A synchronous parser that decodes chunks split at any byte boundary. */
export interface ChunkParser<T, E> {
  /**
   * Decodes what `chunk` completes, in stream order: values to `emit`, non-fatal errors to
   * `fail`. Throws a fatal error, after emitting the values before it.
   */
  parse(chunk: Uint8Array, emit: (value: T) => void, fail: (err: E) => void): void;
  /** The input ended: throws when it ended inside a value. */
  end(): void;
}

/** Tunables of {@link ParserStream}. */
export interface ParserStreamOptions<E> {
  /** Called with each non-fatal error, in stream order. @default ignore it */
  onError?: (err: E) => void;
  /** Whether an error thrown by the parser is its own (kept in order) rather than a bug. */
  isParseError?: (err: unknown) => boolean;
}

/** A batch of values, or an error in band. */
type Item<T, E> = { values: T[] } | { error: E; fatal: boolean };

/**
 * `TransformStream<Uint8Array, T[]>` over a {@link ChunkParser}.
 *
 * @example
 * ```ts
 * import { ParserStream } from "./parser_stream.ts";
 * // A toy parser: every byte is a value; 0xff is a fatal error.
 * const parser = {
 *   parse(chunk: Uint8Array, emit: (v: number) => void) {
 *     for (const b of chunk) {
 *       if (b === 0xff) throw new SyntaxError("bad byte");
 *       emit(b);
 *     }
 *   },
 *   end() {},
 * };
 * const batches = await Array.fromAsync(
 *   ReadableStream.from([new Uint8Array([1, 2]), new Uint8Array([3])])
 *     .pipeThrough(new ParserStream<number, SyntaxError>(parser)),
 * );
 * if (batches.length !== 2 || batches.flat().join() !== "1,2,3") throw new Error();
 * ```
 */
export class ParserStream<T, E> implements TransformStream<Uint8Array, T[]> {
  #readable: ReadableStream<T[]>;
  #writable: WritableStream<Uint8Array>;

  /** Runs `parser` on each chunk written. */
  constructor(parser: ChunkParser<T, E>, options: ParserStreamOptions<E> = {}) {
    const onError = options.onError;
    const isParseError = options.isParseError ?? (() => true);
    let failed = false;
    const inner = new TransformStream<Uint8Array, Item<T, E>>({
      transform(chunk, controller) {
        if (failed) return; // the fatal error is queued; it ends the stream when reached
        let values: T[] = [];
        const emit = (v: T) => values.push(v);
        const fail = (error: E) => {
          if (values.length) controller.enqueue({ values });
          values = [];
          controller.enqueue({ error, fatal: false });
        };
        try {
          parser.parse(chunk, emit, fail);
        } catch (err) {
          if (!isParseError(err)) throw err;
          failed = true;
          if (values.length) controller.enqueue({ values });
          controller.enqueue({ error: err as E, fatal: true });
          return;
        }
        if (values.length) controller.enqueue({ values });
      },
      flush(controller) {
        if (failed) return;
        try {
          parser.end();
        } catch (err) {
          if (!isParseError(err)) throw err;
          controller.enqueue({ error: err as E, fatal: true });
        }
      },
    });
    const reader = inner.readable.getReader();
    this.#readable = new ReadableStream<T[]>({
      async pull(controller) {
        while (true) {
          const { done, value } = await reader.read();
          if (done) return controller.close();
          if ("values" in value) return controller.enqueue(value.values);
          if (value.fatal) {
            controller.error(value.error);
            // Cancelling the inner readable errors the writable side with the same error.
            await reader.cancel(value.error);
            return;
          }
          onError?.(value.error);
        }
      },
      cancel(reason) {
        return reader.cancel(reason);
      },
    }, { highWaterMark: 0 });
    this.#writable = inner.writable;
  }

  /** Batches of decoded values, one per chunk that completed any. */
  get readable(): ReadableStream<T[]> {
    return this.#readable;
  }

  /** Where the bytes go. */
  get writable(): WritableStream<Uint8Array> {
    return this.#writable;
  }
}
