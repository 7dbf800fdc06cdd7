/**
 * Helpers of the HTTP attack tests: a real gateway process started from a config object, raw
 * HTTP/1.1 over TCP (bytes as an attacker would send them), and what the process holds
 * (descriptors, RSS) read from `/proc`.
 *
 * @module
 */

import { type GatewayProcess, startGateway } from "./_process.ts";

/** A gateway process with its data directory. */
export interface AttackGateway extends AsyncDisposable {
  proc: GatewayProcess;
  /** `http://127.0.0.1:{http port}`. */
  base: string;
  /** HTTP port. */
  port: number;
  /** The data directory (removed at disposal). */
  dir: string;
  /** The process id. */
  pid: number;
}

/** Starts `main.ts` with `config` (written to a temp dir, which is also its `dataDir`). */
export async function attackGateway(
  config: Record<string, unknown>,
  options: { fileLimit?: number; listeners?: string[] } = {},
): Promise<AttackGateway> {
  const dir = await Deno.makeTempDir({ prefix: "ferry-attack-" });
  await Deno.writeTextFile(`${dir}/ferry.json`, JSON.stringify({ dataDir: dir, ...config }));
  const on = new Set(options.listeners ?? ["http"]);
  const args = ["--config", `${dir}/ferry.json`, "--http-port", "0"];
  for (const l of ["binary", "mqtt", "coap"]) {
    if (on.has(l)) args.push(`--${l}-port`, "0");
  }
  // MQTT's WebSocket listener (8083 by default) comes with MQTT.
  if (on.has("mqtt")) args.push("--mqtt-ws-port", "0");
  const off = ["binary", "mqtt", "coap"].filter((l) => !on.has(l));
  const cfg = JSON.parse(await Deno.readTextFile(`${dir}/ferry.json`));
  for (const l of off) cfg[l] = { ...(cfg[l] ?? {}), enabled: false };
  await Deno.writeTextFile(`${dir}/ferry.json`, JSON.stringify(cfg));
  const proc = await startGateway(args, {}, { fileLimit: options.fileLimit });
  const port = proc.addresses.http.port;
  return {
    proc,
    base: `http://127.0.0.1:${port}`,
    port,
    dir,
    pid: proc.child.pid,
    async [Symbol.asyncDispose]() {
      await proc[Symbol.asyncDispose]();
      await Deno.remove(dir, { recursive: true }).catch(() => {});
    },
  };
}

const encoder = new TextEncoder();

/** What a raw exchange saw. */
export interface RawResult {
  /** Everything read, as latin1 text. */
  text: string;
  /** The server closed the connection (EOF or reset) before the time ran out. */
  closed: boolean;
}

/**
 * Reads from `conn` until `until(text)` holds, the server closes, or `timeoutMs` passes (the
 * connection is left open unless the server closed it).
 */
export async function readUntil(
  conn: Deno.Conn,
  until: (text: string) => boolean = () => false,
  timeoutMs = 10_000,
): Promise<RawResult> {
  const buf = new Uint8Array(65_536);
  const dec = new TextDecoder("latin1");
  let text = "";
  let closed = false;
  let timer: ReturnType<typeof setTimeout> | undefined;
  const timeout = new Promise<"timeout">((r) => timer = setTimeout(() => r("timeout"), timeoutMs));
  try {
    while (!until(text)) {
      const n = await Promise.race([conn.read(buf).catch(() => null), timeout]);
      if (n === "timeout") break;
      if (n === null) {
        closed = true;
        break;
      }
      text += dec.decode(buf.subarray(0, n));
    }
  } finally {
    clearTimeout(timer);
  }
  return { text, closed };
}

/** Opens a connection, writes `request`, and reads as {@link readUntil}. */
export async function rawExchange(
  port: number,
  request: string | Uint8Array,
  until?: (text: string) => boolean,
  timeoutMs?: number,
): Promise<RawResult & { conn: Deno.Conn }> {
  const conn = await Deno.connect({ hostname: "127.0.0.1", port });
  await conn.write(typeof request === "string" ? encoder.encode(request) : request);
  const r = await readUntil(conn, until, timeoutMs);
  return { ...r, conn };
}

/** The status code of the first response in `text` (0 if none). */
export function statusOf(text: string): number {
  const m = /^HTTP\/1\.[01] (\d{3})/.exec(text);
  return m ? Number(m[1]) : 0;
}

/** True once `text` holds a whole response with a `content-length` body. */
export function wholeResponse(text: string): boolean {
  const end = text.indexOf("\r\n\r\n");
  if (end < 0) return false;
  const m = /\r\ncontent-length: *(\d+)/i.exec(text.slice(0, end));
  return m !== null && text.length >= end + 4 + Number(m[1]);
}

/** Open descriptors of process `pid`. */
export function fdCount(pid: number): number {
  let n = 0;
  for (const _ of Deno.readDirSync(`/proc/${pid}/fd`)) n++;
  return n;
}

/** Resident memory of process `pid`, bytes. */
export function rssOf(pid: number): number {
  const m = /VmRSS:\s+(\d+) kB/.exec(Deno.readTextFileSync(`/proc/${pid}/status`));
  return m ? Number(m[1]) * 1024 : 0;
}

/** Closes a connection, ignoring one already closed. */
export function closeQuietly(conn: Deno.Conn): void {
  try {
    conn.close();
  } catch { /* closed */ }
}

/** Polls `cond` every 20 ms until true; fails after `timeoutMs` (generous: CI is loaded). */
export async function eventually(
  cond: () => boolean | Promise<boolean>,
  what: string,
  timeoutMs = 15_000,
): Promise<void> {
  const deadline = Date.now() + timeoutMs;
  while (!(await cond())) {
    if (Date.now() > deadline) throw new Error(`Timed out waiting for ${what}`);
    await new Promise((r) => setTimeout(r, 20));
  }
}

/** A `fetch` init with a JSON body and, for browsers' calls, an `Origin`. */
export function jsonInit(
  method: string,
  body: unknown,
  headers: Record<string, string> = {},
): RequestInit {
  return {
    method,
    headers: { "content-type": "application/json", ...headers },
    body: JSON.stringify(body),
  };
}
