/**
 * Test harness: a core and FBP/1 server on a free loopback port, and small waiting helpers.
 *
 * @module
 */

import type { Clock } from "../src/core/clock.ts";
import { Core, type CoreOptions } from "../src/core/core.ts";
import { Logger } from "../src/core/logger.ts";
import type { Message } from "../src/core/message.ts";
import { BinaryServer } from "../src/protocols/binary/server.ts";
import type { BinaryServerOptions } from "../src/protocols/binary/options.ts";

/** A logger that keeps lines in memory (and prints them when FERRY_TEST_LOG is set). */
export function memoryLogger(): { log: Logger; lines: string[] } {
  const lines: string[] = [];
  const print = Deno.env.get("FERRY_TEST_LOG") !== undefined;
  const log = new Logger({
    level: "debug",
    sink: (l) => {
      lines.push(l);
      if (print) console.error(l);
    },
  });
  return { log, lines };
}

/** A running core + FBP/1 server. */
export interface BinaryHarness extends AsyncDisposable {
  core: Core;
  server: BinaryServer;
  port: number;
  lines: string[];
  /** Messages seen by a `#` subscriber, in order. */
  seen: Message[];
}

/** Starts a core and an FBP/1 server on port 0. */
export async function startBinary(
  options: {
    core?: CoreOptions;
    server?: Partial<BinaryServerOptions>;
    clock?: Clock;
  } = {},
): Promise<BinaryHarness> {
  const { log, lines } = memoryLogger();
  const core = new Core({ anonymous: true, log, clock: options.clock, ...options.core });
  const seen: Message[] = [];
  core.subscribe("#", { id: "test-observer", deliver: (m) => seen.push(m) });
  const server = new BinaryServer(core, { port: 0, ...options.server });
  const { port } = await server.listen();
  return {
    core,
    server,
    port,
    lines,
    seen,
    async [Symbol.asyncDispose]() {
      await server.close();
      await core.close();
    },
  };
}

/**
 * Whether `p` settles within `ms` (its rejection is rethrown). For "it ends at all" assertions:
 * `ms` is a failure deadline, not a speed.
 */
export async function endsWithin(p: PromiseLike<unknown>, ms: number): Promise<boolean> {
  let timer: ReturnType<typeof setTimeout> | undefined;
  const late = new Promise<false>((r) => timer = setTimeout(() => r(false), ms));
  try {
    return await Promise.race([Promise.resolve(p).then(() => true as const), late]);
  } finally {
    clearTimeout(timer);
  }
}

/**
 * Polls `cond` every 5 ms until it holds; fails after `timeoutMs`. The deadline only decides when
 * a test that is failing gives up: it is wide (20 s) so a loaded machine does not fail a test
 * whose condition comes late.
 */
export async function waitFor(
  cond: () => boolean,
  what: string,
  timeoutMs = 20_000,
): Promise<void> {
  const deadline = Date.now() + timeoutMs;
  while (!cond()) {
    if (Date.now() > deadline) {
      throw new Error(`Timed out after ${timeoutMs} ms waiting for ${what}`);
    }
    await new Promise((r) => setTimeout(r, 5));
  }
}

/** Text helpers. */
export const enc = (s: string): Uint8Array => new TextEncoder().encode(s);
/** Decodes UTF-8. */
export const dec = (b: Uint8Array): string => new TextDecoder().decode(b);
