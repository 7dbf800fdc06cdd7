/**
 * Test harness of the HTTP device API: a Core plus an {@link HttpServer} on a free loopback port
 * with a {@link DeviceApi} mounted, a `#` observer, and clients (fetch, curl, raw sockets).
 * Disposing closes the API first (ending long-polls and streams), then the server, then the core,
 * so tests pass `--trace-leaks`.
 *
 * @module
 */

import type { Clock } from "../src/core/clock.ts";
import { Core, type CoreOptions } from "../src/core/core.ts";
import { Logger } from "../src/core/logger.ts";
import type { Message } from "../src/core/message.ts";
import { DeviceApi, type DeviceApiOptions } from "../src/http/device_api/mod.ts";
import { HttpServer } from "../src/http/server.ts";

/** Devices every harness knows: `d1`/`t1`, `d2`/`t2`. */
export const DEVICES = [{ id: "d1", token: "t1" }, { id: "d2", token: "t2" }];

/** A started core + HTTP server + device API. */
export interface HttpApiHarness extends AsyncDisposable {
  core: Core;
  api: DeviceApi;
  http: HttpServer;
  port: number;
  /** `http://127.0.0.1:{port}`. */
  base: string;
  /** Messages seen by a `#` subscriber, in order. */
  seen: Message[];
  /** Log lines (warn and above). */
  logs: string[];
  /** fetch against the server; `path` starts with `/`. */
  fetch(path: string, init?: RequestInit): Promise<Response>;
}

/** Options of {@link startHttpApi}. */
export interface StartHttpApiOptions {
  /** Core options (devices default to {@link DEVICES}). */
  core?: CoreOptions;
  /** API options. */
  api?: DeviceApiOptions;
  /** Time source of the core and API. */
  clock?: Clock;
}

/** Starts Core + HttpServer + DeviceApi on 127.0.0.1:0. */
export async function startHttpApi(options: StartHttpApiOptions = {}): Promise<HttpApiHarness> {
  const logs: string[] = [];
  const log = new Logger({ level: "warn", sink: (l) => logs.push(l) });
  const core = new Core({
    devices: DEVICES,
    log,
    clock: options.clock,
    timerResolutionMs: 5,
    ...options.core,
  });
  const seen: Message[] = [];
  core.subscribe("#", { id: "test-observer", deliver: (m) => seen.push(m) });
  const api = new DeviceApi(core, options.api);
  const http = new HttpServer(core, { hostname: "127.0.0.1", port: 0 });
  http.route((req, url) => api.handle(req, url));
  const { port } = await http.listen();
  const base = `http://127.0.0.1:${port}`;
  return {
    core,
    api,
    http,
    port,
    base,
    seen,
    logs,
    fetch: (path, init) => fetch(base + path, init),
    async [Symbol.asyncDispose]() {
      await api.close();
      await http.close();
      await core.close();
    },
  };
}

/** `Authorization` header of a bearer token. */
export function bearer(token: string): Record<string, string> {
  return { authorization: `Bearer ${token}` };
}

/** A response as curl saw it. */
export interface CurlResult {
  /** curl's exit code. */
  code: number;
  /** HTTP status of the last response (0 if none). */
  status: number;
  /** Headers of the last response, lower-cased names. */
  headers: Headers;
  /** Body bytes. */
  body: Uint8Array;
  /** Body as text. */
  text: string;
}

/** Runs `curl -s -i <args>` with a hard time limit and parses the last response. */
export async function curl(args: string[], stdin?: Uint8Array): Promise<CurlResult> {
  const child = new Deno.Command("/usr/bin/curl", {
    args: ["-s", "-i", "--max-time", "15", ...args],
    stdin: stdin ? "piped" : "null",
    stdout: "piped",
    stderr: "piped",
  }).spawn();
  if (stdin) {
    const w = child.stdin.getWriter();
    await w.write(stdin);
    await w.close();
  }
  const out = await child.output();
  const raw = out.stdout;
  // The last header block: skip interim (100 Continue) responses.
  let start = 0;
  let status = 0;
  const headers = new Headers();
  let bodyAt = raw.length;
  for (;;) {
    const end = indexOf(raw, [13, 10, 13, 10], start);
    if (end < 0) break;
    const head = new TextDecoder().decode(raw.subarray(start, end)).split("\r\n");
    const m = /^HTTP\/[\d.]+ (\d{3})/.exec(head[0]);
    if (!m) break;
    status = Number(m[1]);
    bodyAt = end + 4;
    if (status >= 200) {
      for (const h of head.slice(1)) {
        const i = h.indexOf(":");
        if (i > 0) headers.append(h.slice(0, i).trim(), h.slice(i + 1).trim());
      }
      break;
    }
    start = bodyAt;
  }
  const body = raw.subarray(Math.min(bodyAt, raw.length));
  return { code: out.code, status, headers, body, text: new TextDecoder().decode(body) };
}

function indexOf(hay: Uint8Array, needle: number[], from: number): number {
  outer: for (let i = from; i <= hay.length - needle.length; i++) {
    for (let j = 0; j < needle.length; j++) if (hay[i + j] !== needle[j]) continue outer;
    return i;
  }
  return -1;
}

/** One parsed SSE event. */
export interface SseMessage {
  id?: string;
  event?: string;
  data: string;
}

/** Reads SSE events from a response body; `next()` waits for the next one (bounded). */
export function sseReader(body: ReadableStream<Uint8Array>): {
  next(timeoutMs?: number): Promise<SseMessage | undefined>;
  cancel(): Promise<void>;
} {
  const reader = body.pipeThrough(new TextDecoderStream()).getReader();
  let buf = "";
  const queue: SseMessage[] = [];
  let ended = false;
  const parse = () => {
    let i;
    while ((i = buf.indexOf("\n\n")) >= 0) {
      const block = buf.slice(0, i);
      buf = buf.slice(i + 2);
      const ev: SseMessage = { data: "" };
      const data: string[] = [];
      for (const line of block.split("\n")) {
        if (line.startsWith(":") || line === "") continue;
        const c = line.indexOf(":");
        const k = c < 0 ? line : line.slice(0, c);
        const v = c < 0 ? "" : line.slice(c + 1).replace(/^ /, "");
        if (k === "id") ev.id = v;
        else if (k === "event") ev.event = v;
        else if (k === "data") data.push(v);
      }
      if (data.length) {
        ev.data = data.join("\n");
        queue.push(ev);
      }
    }
  };
  return {
    async next(timeoutMs = 20_000) {
      const deadline = Date.now() + timeoutMs;
      while (queue.length === 0) {
        if (ended) return undefined;
        let t: ReturnType<typeof setTimeout> | undefined;
        const r = await Promise.race([
          reader.read(),
          new Promise<"timeout">((res) => {
            t = setTimeout(() => res("timeout"), Math.max(1, deadline - Date.now()));
          }),
        ]).finally(() => clearTimeout(t));
        if (r === "timeout") throw new Error(`no SSE event within ${timeoutMs} ms`);
        if (r.done) ended = true;
        else {
          buf += r.value;
          parse();
        }
      }
      return queue.shift();
    },
    async cancel() {
      await reader.cancel().catch(() => {});
    },
  };
}

/** Reads a raw HTTP/1.1 response head and body text from a socket until `until` holds (bounded). */
export async function readRaw(
  conn: Deno.Conn,
  until: (text: string) => boolean,
  timeoutMs = 20_000,
): Promise<string> {
  const buf = new Uint8Array(8192);
  let text = "";
  const deadline = Date.now() + timeoutMs;
  while (!until(text)) {
    let t: ReturnType<typeof setTimeout> | undefined;
    const n = await Promise.race([
      conn.read(buf),
      new Promise<"timeout">((res) => {
        t = setTimeout(() => res("timeout"), Math.max(1, deadline - Date.now()));
      }),
    ]).finally(() => clearTimeout(t));
    if (n === "timeout") throw new Error(`timed out reading; got ${JSON.stringify(text)}`);
    if (n === null) break;
    text += new TextDecoder().decode(buf.subarray(0, n));
  }
  return text;
}
