/**
 * CoAP test harness: a core and CoAP server on a free loopback port, a raw UDP test client that
 * speaks in decoded messages, a lossy relay, and helpers to run libcoap's `coap-client`.
 *
 * @module
 */

import type { Clock } from "../src/core/clock.ts";
import { Core, type CoreOptions } from "../src/core/core.ts";
import type { Message } from "../src/core/message.ts";
import { decodeMessage, encodeMessage } from "../src/protocols/coap/codec.ts";
import {
  type CoapMessage,
  type CoapOption,
  type CoapType,
  CoapType as T,
} from "../src/protocols/coap/message.ts";
import { encodeString, Opt } from "../src/protocols/coap/option_codec.ts";
import type { CoapServerOptions } from "../src/protocols/coap/options.ts";
import { CoapServer } from "../src/protocols/coap/server.ts";
import { memoryLogger } from "./_harness.ts";

/** A running core + CoAP server. */
export interface CoapHarness extends AsyncDisposable {
  core: Core;
  server: CoapServer;
  port: number;
  lines: string[];
  /** Messages seen by a `#` subscriber, in order. */
  seen: Message[];
}

/** Starts a core and a CoAP server on port 0 (device s1/t1 and s2/t2 known). */
export async function startCoap(
  options: { core?: CoreOptions; server?: Partial<CoapServerOptions>; clock?: Clock } = {},
): Promise<CoapHarness> {
  const { log, lines } = memoryLogger();
  const core = new Core({
    devices: [{ id: "s1", token: "t1" }, { id: "s2", token: "t2" }],
    log,
    clock: options.clock,
    ...options.core,
  });
  const seen: Message[] = [];
  core.subscribe("#", { id: "test-observer", deliver: (m) => seen.push(m) });
  const server = new CoapServer(core, { port: 0, random: () => 0, ...options.server });
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

let nextMid = 1;
let nextToken = 1;

/** Builds a request message. */
export function request(
  init: {
    type?: CoapType;
    code?: number;
    path?: string;
    query?: string[];
    payload?: Uint8Array | string;
    options?: CoapOption[];
    token?: Uint8Array;
    messageId?: number;
  } = {},
): CoapMessage {
  const options: CoapOption[] = [...init.options ?? []];
  for (const seg of (init.path ?? "").split("/").filter((s) => s)) {
    options.push({ number: Opt.URI_PATH, value: encodeString(seg) });
  }
  for (const q of init.query ?? []) options.push({ number: Opt.URI_QUERY, value: encodeString(q) });
  options.sort((a, b) => a.number - b.number);
  const t = nextToken++;
  return {
    type: init.type ?? T.CON,
    code: init.code ?? 1,
    messageId: init.messageId ?? (nextMid++ & 0xffff),
    token: init.token ?? new Uint8Array([t >> 8 & 0xff, t & 0xff]),
    options,
    payload: typeof init.payload === "string"
      ? new TextEncoder().encode(init.payload)
      : init.payload ?? new Uint8Array(),
  };
}

/** A raw UDP CoAP peer for tests. */
export class TestPeer implements AsyncDisposable {
  #conn: Deno.DatagramConn;
  #server: Deno.NetAddr;
  #inbox: CoapMessage[] = [];
  #raw: Uint8Array[] = [];
  #waiters: Array<() => void> = [];
  #loop: Promise<void>;
  #closed = false;

  /** Opens a socket on a free port that talks to `127.0.0.1:port`. */
  constructor(port: number) {
    this.#conn = Deno.listenDatagram({ transport: "udp", hostname: "127.0.0.1", port: 0 });
    this.#server = { transport: "udp", hostname: "127.0.0.1", port };
    this.#loop = this.#read();
  }

  /** Local port. */
  get port(): number {
    return (this.#conn.addr as Deno.NetAddr).port;
  }

  async #read(): Promise<void> {
    for (;;) {
      try {
        const [data] = await this.#conn.receive();
        this.#raw.push(data.slice());
        this.#inbox.push(decodeMessage(data));
      } catch {
        if (this.#closed) return;
        continue;
      }
      for (const w of this.#waiters.splice(0)) w();
    }
  }

  /** Sends a message (or raw bytes). */
  async send(msg: CoapMessage | Uint8Array): Promise<void> {
    await this.#conn.send(msg instanceof Uint8Array ? msg : encodeMessage(msg), this.#server);
  }

  /** Raw bytes of every datagram received so far. */
  get raw(): Uint8Array[] {
    return this.#raw;
  }

  /** Waits for the next message matching `pred` (consumed); fails after `timeoutMs`. */
  async recv(
    pred: (m: CoapMessage) => boolean = () => true,
    timeoutMs = 15_000, // a failure deadline: wide, so a loaded machine does not trip it
  ): Promise<CoapMessage> {
    const deadline = Date.now() + timeoutMs;
    for (;;) {
      const i = this.#inbox.findIndex(pred);
      if (i >= 0) return this.#inbox.splice(i, 1)[0];
      const left = deadline - Date.now();
      if (left <= 0) throw new Error(`Timed out after ${timeoutMs} ms waiting for a CoAP message`);
      let t: ReturnType<typeof setTimeout> | undefined;
      await new Promise<void>((r) => {
        this.#waiters.push(r);
        t = setTimeout(r, Math.min(left, 50));
      });
      clearTimeout(t);
    }
  }

  /** Asserts that nothing (matching) arrives within `ms`. */
  async quiet(ms = 150, pred: (m: CoapMessage) => boolean = () => true): Promise<void> {
    await new Promise((r) => setTimeout(r, ms));
    const hit = this.#inbox.find(pred);
    if (hit) {
      throw new Error(
        `Expected no message, got ${JSON.stringify({ ...hit, options: hit.options.length })}`,
      );
    }
  }

  /** Messages received and not consumed. */
  get inbox(): CoapMessage[] {
    return this.#inbox;
  }

  /** Sends a request and waits for the reply with its message ID (ACK/RST) or token. */
  async exchange(msg: CoapMessage, timeoutMs = 15_000): Promise<CoapMessage> {
    await this.send(msg);
    return await this.recv(
      (m) =>
        (msg.type === T.CON && (m.type === T.ACK || m.type === T.RST) &&
          m.messageId === msg.messageId) ||
        (msg.type === T.NON && m.token.join() === msg.token.join() && m.code !== 0),
      timeoutMs,
    );
  }

  /** Closes the socket. */
  async close(): Promise<void> {
    if (this.#closed) return;
    this.#closed = true;
    this.#conn.close();
    await this.#loop;
    for (const w of this.#waiters.splice(0)) w();
  }

  /** Same as {@link close}. */
  [Symbol.asyncDispose](): Promise<void> {
    return this.close();
  }
}

/** Option value helper. */
export function opt(msg: CoapMessage, number: number): Uint8Array | undefined {
  return msg.options.find((o) => o.number === number)?.value;
}

/** UTF-8 text of a payload. */
export function textOf(msg: CoapMessage): string {
  return new TextDecoder().decode(msg.payload);
}

/** Path of libcoap's client: `coap-client`, or Debian's `coap-client-notls`. */
export function coapClientPath(): string {
  for (const dir of ["/usr/bin", "/usr/local/bin"]) {
    for (const name of ["coap-client", "coap-client-notls"]) {
      try {
        Deno.statSync(`${dir}/${name}`);
        return `${dir}/${name}`;
      } catch { /* next */ }
    }
  }
  return "coap-client";
}

/** Path of libcoap's server: `coap-server`, or `coap-server-notls`. */
export function coapServerPath(): string {
  for (const name of ["coap-server", "coap-server-notls"]) {
    try {
      Deno.statSync(`/usr/bin/${name}`);
      return `/usr/bin/${name}`;
    } catch { /* next */ }
  }
  return "coap-server";
}

/** Runs `coap-client` with `args`, killed after `timeoutMs`. */
export async function runCoapClient(
  args: string[],
  timeoutMs = 15_000,
): Promise<{ code: number; stdout: string; stderr: string }> {
  const out = await new Deno.Command(coapClientPath(), {
    args,
    stdout: "piped",
    stderr: "piped",
    signal: AbortSignal.timeout(timeoutMs),
  }).output();
  const d = new TextDecoder();
  return { code: out.code, stdout: d.decode(out.stdout), stderr: d.decode(out.stderr) };
}

/**
 * A UDP relay between a client and the server that drops or duplicates datagrams on purpose:
 * `decide(direction, index)` returns how many copies to forward (0 drops, 2 duplicates).
 */
export class LossyRelay implements AsyncDisposable {
  #front: Deno.DatagramConn;
  #back: Deno.DatagramConn;
  #client: Deno.NetAddr | undefined;
  #loops: Promise<void>[];
  #closed = false;
  /** Datagrams seen per direction. */
  readonly counts = { up: 0, down: 0 };
  /** Datagrams dropped (either direction). */
  dropped = 0;

  /** Listens on a free port and relays to `127.0.0.1:serverPort`. */
  constructor(
    serverPort: number,
    decide: (dir: "up" | "down", index: number, data: Uint8Array) => number,
  ) {
    this.#front = Deno.listenDatagram({ transport: "udp", hostname: "127.0.0.1", port: 0 });
    this.#back = Deno.listenDatagram({ transport: "udp", hostname: "127.0.0.1", port: 0 });
    const server: Deno.NetAddr = { transport: "udp", hostname: "127.0.0.1", port: serverPort };
    const pump = async (
      from: Deno.DatagramConn,
      to: Deno.DatagramConn,
      dir: "up" | "down",
    ) => {
      for (;;) {
        let data: Uint8Array;
        let addr: Deno.Addr;
        try {
          [data, addr] = await from.receive();
        } catch {
          if (this.#closed) return;
          continue;
        }
        if (dir === "up") this.#client = addr as Deno.NetAddr;
        const dest = dir === "up" ? server : this.#client;
        const n = decide(dir, this.counts[dir]++, data);
        if (n === 0) this.dropped++;
        if (!dest) continue;
        for (let i = 0; i < n; i++) await to.send(data, dest).catch(() => {});
      }
    };
    this.#loops = [pump(this.#front, this.#back, "up"), pump(this.#back, this.#front, "down")];
  }

  /** Port clients should talk to. */
  get port(): number {
    return (this.#front.addr as Deno.NetAddr).port;
  }

  /** Stops relaying. */
  async close(): Promise<void> {
    if (this.#closed) return;
    this.#closed = true;
    this.#front.close();
    this.#back.close();
    await Promise.all(this.#loops);
  }

  /** Same as {@link close}. */
  [Symbol.asyncDispose](): Promise<void> {
    return this.close();
  }
}
