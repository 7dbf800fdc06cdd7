/**
 * MQTT over WebSocket, Ferry beside mosquitto's websockets listener in the same run, reported as
 * ratios (Ferry ÷ mosquitto):
 *
 * - **QoS 0 ingest over WebSocket**: publishers are device clients (client id = device id, topic
 *   `devices/{id}/telemetry`, MQTT 3.1.1, clean session), each sending what MQTT.js sends: one
 *   PUBLISH per binary frame (masked, as clients must), in chunks of frames followed by a PINGREQ
 *   frame. A broker answers one connection's packets in order, so its PINGRESP proves it processed
 *   the chunk before; at most two chunks are unconfirmed per publisher. The rate is the publishes
 *   confirmed inside the window; the server's CPU time over the window (from `/proc`) gives CPU µs
 *   per message, which a loaded machine disturbs less than the rate.
 * - **Idle RSS per WebSocket connection**: connections upgraded, CONNECTed (keepalive 0) and left
 *   idle; the server's RSS after a warm-up of 200 connections and after all of them, settled.
 *
 * Each server is started as its users start it: Ferry with the command line of `deno task start`
 * (read from `deno.json` at run time) and `--config` with a file that sets only ports and the data
 * directory (default config otherwise: state file, HTTP and dashboard, JSON logs at info to a
 * file); mosquitto with Debian's packaged settings (persistence on, log to a file) plus one TCP
 * and one `protocol websockets` listener. Both run on loopback, with the load generator in this
 * process; repetitions alternate the servers. On a shared machine every figure is noisy: the
 * report says so and gives every repetition.
 *
 * Runnable alone:
 * `deno run -A bench/mqtt_ws_bench.ts [--reps 3] [--window-ms 10000] [--warmup-ms 2000]
 * [--publishers 50] [--payload 64] [--idle 5000] [--only ingest|idle] [--out FILE.json]`
 *
 * @module
 */

const ROOT = new URL("../", import.meta.url).pathname;

// ---- arguments ----

function arg(name: string, def: string): string {
  const i = Deno.args.indexOf(`--${name}`);
  return i >= 0 && i + 1 < Deno.args.length ? Deno.args[i + 1] : def;
}

const REPS = Number(arg("reps", "3"));
const WINDOW_MS = Number(arg("window-ms", "10000"));
const WARMUP_MS = Number(arg("warmup-ms", "2000"));
const PUBLISHERS = Number(arg("publishers", "50"));
const PAYLOAD = Number(arg("payload", "64"));
const IDLE = Number(arg("idle", "5000"));
const IDLE_WARM = 200;
const FRAMES_PER_CHUNK = 32;
const CHUNKS_IN_FLIGHT = 2;
const ONLY = arg("only", "");
/** `tcp` runs the same load over plain MQTT/TCP (context: what the WebSocket layer costs). */
const TRANSPORT = arg("transport", "ws") as "ws" | "tcp";
const OUT = arg("out", "");

// ---- servers ----

interface Server {
  name: string;
  pid: number;
  wsPort: number;
  tcpPort: number;
  stop(): Promise<void>;
}

function freePort(): number {
  const l = Deno.listen({ hostname: "127.0.0.1", port: 0 });
  const p = (l.addr as Deno.NetAddr).port;
  l.close();
  return p;
}

async function waitPort(port: number, child: Deno.ChildProcess, log: string): Promise<void> {
  let exited = false;
  child.status.then(() => exited = true);
  const end = Date.now() + 60_000;
  for (;;) {
    try {
      (await Deno.connect({ hostname: "127.0.0.1", port })).close();
      return;
    } catch {
      if (exited || Date.now() > end) {
        const text = await Deno.readTextFile(log).catch(() => "");
        throw new Error(`server did not listen on ${port}:\n${text.slice(-2000)}`);
      }
      await new Promise((r) => setTimeout(r, 50));
    }
  }
}

/** The words of `tasks.start` in deno.json (`deno run <flags> main.ts`). */
async function startTask(): Promise<string[]> {
  const json = JSON.parse(await Deno.readTextFile(`${ROOT}deno.json`));
  const words = String(json.tasks.start).trim().split(/\s+/);
  if (words[0] !== "deno" || words[1] !== "run") {
    throw new Error(`tasks.start is not a "deno run" command: ${json.tasks.start}`);
  }
  return words.slice(1);
}

async function startFerry(dir: string): Promise<Server> {
  const wsPort = freePort();
  const tcpPort = freePort();
  const cfg = `${dir}/ferry.json`;
  await Deno.writeTextFile(
    cfg,
    JSON.stringify(
      {
        dataDir: `${dir}/data`,
        binary: { port: freePort() },
        mqtt: { port: tcpPort, websocket: { port: wsPort } },
        coap: { port: freePort() },
        http: { port: freePort() },
      },
      null,
      2,
    ),
  );
  const log = `${dir}/ferry.log`;
  const file = await Deno.open(log, { write: true, create: true, truncate: true });
  const child = new Deno.Command(Deno.execPath(), {
    args: [...await startTask(), "--config", cfg],
    cwd: ROOT,
    stdout: "null",
    stderr: "piped",
  }).spawn();
  const piping = child.stderr.pipeTo(file.writable);
  await waitPort(wsPort, child, log);
  return {
    name: "ferry",
    pid: child.pid,
    wsPort,
    tcpPort,
    async stop() {
      child.kill("SIGTERM");
      await child.status;
      await piping.catch(() => {});
    },
  };
}

async function startMosquitto(dir: string): Promise<Server> {
  const wsPort = freePort();
  const tcpPort = freePort();
  await Deno.chmod(dir, 0o777); // mosquitto drops to its own user when started as root
  const conf = `${dir}/mosquitto.conf`;
  await Deno.writeTextFile(
    conf,
    [
      "# As Debian's /etc/mosquitto/mosquitto.conf: persistence on, log to a file.",
      "persistence true",
      `persistence_location ${dir}/`,
      `log_dest file ${dir}/mosquitto.log`,
      `listener ${tcpPort} 127.0.0.1`,
      `listener ${wsPort} 127.0.0.1`,
      "protocol websockets",
      "allow_anonymous true",
      "",
    ].join("\n"),
  );
  const bin = ["/usr/sbin/mosquitto", "/usr/bin/mosquitto"].find((p) => {
    try {
      return Deno.statSync(p).isFile;
    } catch {
      return false;
    }
  }) ?? "mosquitto";
  const child = new Deno.Command(bin, { args: ["-c", conf], stdout: "null", stderr: "null" })
    .spawn();
  await waitPort(wsPort, child, `${dir}/mosquitto.log`);
  return {
    name: "mosquitto",
    pid: child.pid,
    wsPort,
    tcpPort,
    async stop() {
      child.kill("SIGTERM");
      await child.status;
    },
  };
}

// ---- process figures ----

function rssKb(pid: number): number {
  const m = /VmRSS:\s+(\d+) kB/.exec(Deno.readTextFileSync(`/proc/${pid}/status`));
  return m ? Number(m[1]) : NaN;
}

/** CPU time (user + system) of `pid`, ms. */
function cpuMs(pid: number): number {
  const stat = Deno.readTextFileSync(`/proc/${pid}/stat`);
  const f = stat.slice(stat.lastIndexOf(")") + 2).split(" ");
  return (Number(f[11]) + Number(f[12])) * 10; // utime, stime in clock ticks of 10 ms
}

// ---- a lean WebSocket MQTT client ----

const enc = new TextEncoder();

/** A client frame: FIN, binary, masked with the key 0 (a valid key; the payload reads as is). */
function wsFrame(payload: Uint8Array): Uint8Array {
  if (TRANSPORT === "tcp") return payload;
  const len = payload.length;
  const head = len < 126 ? [0x82, 0x80 | len] : [0x82, 0x80 | 126, len >> 8, len & 255];
  const out = new Uint8Array(head.length + 4 + len);
  out.set(head);
  out.set(payload, head.length + 4);
  return out;
}

function remainingLength(n: number): number[] {
  const out: number[] = [];
  do {
    let b = n % 128;
    n = Math.floor(n / 128);
    if (n > 0) b |= 0x80;
    out.push(b);
  } while (n > 0);
  return out;
}

function mqttString(s: string): number[] {
  const b = enc.encode(s);
  return [b.length >> 8, b.length & 255, ...b];
}

function connectPacket(clientId: string): Uint8Array {
  const body = [...mqttString("MQTT"), 4, 0x02, 0, 0, ...mqttString(clientId)];
  return Uint8Array.from([0x10, ...remainingLength(body.length), ...body]);
}

function publishPacket(topic: string, payloadBytes: number): Uint8Array {
  const body = [...mqttString(topic), ...new Uint8Array(payloadBytes).fill(0x61)];
  return Uint8Array.from([0x30, ...remainingLength(body.length), ...body]);
}

const PINGREQ = Uint8Array.from([0xc0, 0]);

/** One upgraded, connected WebSocket MQTT client counting PINGRESPs. */
class WsMqtt {
  #conn: Deno.TcpConn;
  #buf = new Uint8Array(0);
  #frameLeft = 0; // payload bytes left in the current server frame
  #inFrame = false;
  #mqtt: number[] = []; // bytes of a split MQTT fixed header / packet being skipped
  #skip = 0; // MQTT bytes left of the current packet
  #header: number[] = [];
  closed = false;
  onPacket: ((type: number) => void) | undefined;

  private constructor(conn: Deno.TcpConn) {
    this.#conn = conn;
  }

  static async open(s: Server, clientId: string): Promise<WsMqtt> {
    const tcp = TRANSPORT === "tcp";
    const port = tcp ? s.tcpPort : s.wsPort;
    const conn = await Deno.connect({ hostname: "127.0.0.1", port });
    conn.setNoDelay(true);
    if (tcp) {
      const c = new WsMqtt(conn);
      c.#inFrame = true;
      c.#frameLeft = Infinity; // no frames: the stream is MQTT
      return await c.#connect(clientId);
    }
    const key = btoa(String.fromCharCode(...crypto.getRandomValues(new Uint8Array(16))));
    await writeAll(
      conn,
      enc.encode(
        `GET /mqtt HTTP/1.1\r\nHost: 127.0.0.1:${port}\r\nUpgrade: websocket\r\n` +
          `Connection: Upgrade\r\nSec-WebSocket-Key: ${key}\r\nSec-WebSocket-Version: 13\r\n` +
          `Sec-WebSocket-Protocol: mqtt\r\n\r\n`,
      ),
    );
    const c = new WsMqtt(conn);
    const head = await c.#readHead();
    if (!head.startsWith("HTTP/1.1 101")) throw new Error(`upgrade refused: ${head}`);
    return await c.#connect(clientId);
  }

  async #connect(clientId: string): Promise<WsMqtt> {
    // deno-lint-ignore no-this-alias
    const c = this;
    const connack = new Promise<void>((resolve, reject) => {
      c.onPacket = (t) => t === 2 ? resolve() : reject(new Error(`expected CONNACK, got ${t}`));
    });
    c.#readLoop();
    await c.write(wsFrame(connectPacket(clientId)));
    await connack;
    c.onPacket = undefined;
    return c;
  }

  async #readHead(): Promise<string> {
    const chunk = new Uint8Array(1024);
    let text = "";
    for (;;) {
      const n = await this.#conn.read(chunk);
      if (n === null) throw new Error("closed during the upgrade");
      const bytes = chunk.subarray(0, n);
      const s = String.fromCharCode(...bytes);
      const at = (text + s).indexOf("\r\n\r\n");
      if (at >= 0) {
        const all = text + s;
        this.#buf = bytes.slice(bytes.length - (all.length - (at + 4)));
        return all.slice(0, at);
      }
      text += s;
    }
  }

  async #readLoop(): Promise<void> {
    const chunk = new Uint8Array(16384);
    try {
      if (this.#buf.length) this.#feed(this.#buf);
      for (;;) {
        const n = await this.#conn.read(chunk);
        if (n === null) break;
        this.#feed(chunk.subarray(0, n));
      }
    } catch { /* closed */ }
    this.closed = true;
    this.onPacket?.(-1);
  }

  /** Parses server frames (unmasked) and the MQTT packets in their payloads. */
  #feed(b: Uint8Array): void {
    let i = 0;
    while (i < b.length) {
      if (!this.#inFrame) {
        // Frame header: collect it byte by byte (rarely split).
        this.#header.push(b[i++]);
        const h = this.#header;
        if (h.length < 2) continue;
        const l7 = h[1] & 0x7f;
        const need = 2 + (l7 === 126 ? 2 : l7 === 127 ? 8 : 0);
        if (h.length < need) continue;
        let len = l7;
        if (l7 === 126) len = (h[2] << 8) | h[3];
        else if (l7 === 127) len = h.slice(2, 10).reduce((a, x) => a * 256 + x, 0);
        const op = h[0] & 0x0f;
        this.#header = [];
        if (op === 0x8) {
          this.closed = true;
          return;
        }
        this.#frameLeft = len;
        this.#inFrame = len > 0;
        continue;
      }
      const k = Math.min(this.#frameLeft, b.length - i);
      this.#mqttBytes(b, i, i + k);
      i += k;
      this.#frameLeft -= k;
      if (this.#frameLeft === 0) this.#inFrame = false;
    }
  }

  #mqttBytes(b: Uint8Array, from: number, to: number): void {
    let i = from;
    while (i < to) {
      if (this.#skip > 0) {
        const k = Math.min(this.#skip, to - i);
        i += k;
        this.#skip -= k;
        continue;
      }
      this.#mqtt.push(b[i++]);
      const m = this.#mqtt;
      if (m.length < 2 || (m[m.length - 1] & 0x80) !== 0) continue;
      let len = 0;
      for (let j = m.length - 1; j >= 1; j--) len = len * 128 + (m[j] & 0x7f);
      this.#skip = len;
      const type = m[0] >> 4;
      this.#mqtt = [];
      this.onPacket?.(type);
    }
  }

  write(b: Uint8Array): Promise<void> {
    return writeAll(this.#conn, b);
  }

  close(): void {
    try {
      this.#conn.close();
    } catch { /* closed */ }
  }
}

async function writeAll(conn: Deno.Conn, b: Uint8Array): Promise<void> {
  let o = 0;
  while (o < b.length) o += await conn.write(b.subarray(o));
}

async function pool<T>(n: number, width: number, fn: (i: number) => Promise<T>): Promise<T[]> {
  const out: T[] = new Array(n);
  let next = 0;
  await Promise.all(Array.from({ length: Math.min(width, n) }, async () => {
    while (next < n) {
      const i = next++;
      out[i] = await fn(i);
    }
  }));
  return out;
}

// ---- scenarios ----

interface IngestResult {
  rate: number;
  cpuUsPerMsg: number;
  peakRssKb: number;
}

async function ingest(s: Server): Promise<IngestResult> {
  const pubs = await pool(PUBLISHERS, 25, (i) => WsMqtt.open(s, `bench-ws-${i}`));
  let stopping = false;
  let inWindow = false;
  let confirmedInWindow = 0;
  let peak = rssKb(s.pid);
  const sampler = setInterval(() => peak = Math.max(peak, rssKb(s.pid)), 250);
  const loops = pubs.map(async (c, i) => {
    const frame = wsFrame(publishPacket(`devices/bench-ws-${i}/telemetry`, PAYLOAD));
    const ping = wsFrame(PINGREQ);
    const chunk = new Uint8Array(frame.length * FRAMES_PER_CHUNK + ping.length);
    for (let k = 0; k < FRAMES_PER_CHUNK; k++) chunk.set(frame, k * frame.length);
    chunk.set(ping, FRAMES_PER_CHUNK * frame.length);
    let outstanding = 0;
    let wake: (() => void) | undefined;
    c.onPacket = (t) => {
      if (t === 13) {
        outstanding--;
        if (inWindow) confirmedInWindow += FRAMES_PER_CHUNK;
      }
      wake?.();
    };
    while (!stopping && !c.closed) {
      while (outstanding >= CHUNKS_IN_FLIGHT && !c.closed) {
        await new Promise<void>((r) => wake = r);
      }
      outstanding++;
      await c.write(chunk).catch(() => c.closed = true);
    }
    if (c.closed && !stopping) throw new Error(`publisher ${i} was closed by ${s.name}`);
  });
  await new Promise((r) => setTimeout(r, WARMUP_MS));
  const cpu0 = cpuMs(s.pid);
  const t0 = performance.now();
  inWindow = true;
  await new Promise((r) => setTimeout(r, WINDOW_MS));
  inWindow = false;
  const elapsed = performance.now() - t0;
  const cpu = cpuMs(s.pid) - cpu0;
  stopping = true;
  clearInterval(sampler);
  for (const c of pubs) c.close();
  await Promise.allSettled(loops);
  const rate = confirmedInWindow / (elapsed / 1000);
  return {
    rate: Math.round(rate),
    cpuUsPerMsg: Math.round((cpu * 1000 / confirmedInWindow) * 100) / 100,
    peakRssKb: peak,
  };
}

interface IdleResult {
  bytesPerConn: number;
  held: number;
}

async function idle(s: Server): Promise<IdleResult> {
  const conns: WsMqtt[] = [];
  const open = (i: number) => WsMqtt.open(s, `idle-ws-${i}`).then((c) => conns.push(c));
  await pool(IDLE_WARM, 50, open);
  await new Promise((r) => setTimeout(r, 2000));
  const before = rssKb(s.pid);
  await pool(IDLE - IDLE_WARM, 50, (i) => open(IDLE_WARM + i));
  await new Promise((r) => setTimeout(r, 3000)); // settle (the server's GC runs on its own)
  const after = rssKb(s.pid);
  const held = conns.filter((c) => !c.closed).length;
  for (const c of conns) c.close();
  return { bytesPerConn: Math.round(((after - before) * 1024) / (IDLE - IDLE_WARM)), held };
}

// ---- the run ----

function median(xs: number[]): number {
  const s = [...xs].sort((a, b) => a - b);
  return s.length % 2 ? s[(s.length - 1) / 2] : (s[s.length / 2 - 1] + s[s.length / 2]) / 2;
}

async function withServer<T>(
  start: (dir: string) => Promise<Server>,
  fn: (s: Server) => Promise<T>,
): Promise<T> {
  const dir = await Deno.makeTempDir({ prefix: "ferry-wsbench-" });
  const s = await start(dir);
  try {
    return await fn(s);
  } finally {
    await s.stop();
    await Deno.remove(dir, { recursive: true }).catch(() => {});
  }
}

if (import.meta.main) {
  const starts = { ferry: startFerry, mosquitto: startMosquitto };
  const results: Record<string, { ingest: IngestResult[]; idle: IdleResult[] }> = {
    ferry: { ingest: [], idle: [] },
    mosquitto: { ingest: [], idle: [] },
  };
  const load = await Deno.readTextFile("/proc/loadavg").catch(() => "?");
  console.error(
    `MQTT over ${TRANSPORT === "ws" ? "WebSocket" : "TCP"}: Ferry vs mosquitto, ${REPS} ` +
      `interleaved reps; load ${load}`,
  );
  for (let rep = 0; rep < REPS; rep++) {
    // Alternate which server goes first, so a trend in the machine's load favours neither.
    const order = rep % 2 === 0 ? ["ferry", "mosquitto"] as const : ["mosquitto", "ferry"] as const;
    for (const name of order) {
      if (ONLY !== "idle") {
        const r = await withServer(starts[name], ingest);
        results[name].ingest.push(r);
        console.error(
          `rep ${rep + 1} ${name} ingest: ${r.rate} msg/s, ${r.cpuUsPerMsg} µs CPU/msg`,
        );
      }
      if (ONLY !== "ingest") {
        const r = await withServer(starts[name], idle);
        results[name].idle.push(r);
        console.error(`rep ${rep + 1} ${name} idle: ${r.bytesPerConn} B/conn (${r.held} held)`);
      }
    }
  }
  const f = results.ferry, m = results.mosquitto;
  const summary = {
    when: new Date().toISOString(),
    machine: { cores: navigator.hardwareConcurrency, loadavg: load.trim() },
    params: {
      reps: REPS,
      windowMs: WINDOW_MS,
      warmupMs: WARMUP_MS,
      publishers: PUBLISHERS,
      payload: PAYLOAD,
      framesPerChunk: FRAMES_PER_CHUNK,
      idleConnections: IDLE,
    },
    ingest: f.ingest.length
      ? {
        ferryMsgPerSec: median(f.ingest.map((r) => r.rate)),
        mosquittoMsgPerSec: median(m.ingest.map((r) => r.rate)),
        ratio: Math.round(
          (median(f.ingest.map((r) => r.rate)) / median(m.ingest.map((r) => r.rate))) * 100,
        ) / 100,
        ferryCpuUsPerMsg: median(f.ingest.map((r) => r.cpuUsPerMsg)),
        mosquittoCpuUsPerMsg: median(m.ingest.map((r) => r.cpuUsPerMsg)),
        cpuRatio: Math.round(
          (median(m.ingest.map((r) => r.cpuUsPerMsg)) /
            median(f.ingest.map((r) => r.cpuUsPerMsg))) * 100,
        ) / 100,
      }
      : undefined,
    idle: f.idle.length
      ? {
        ferryBytesPerConn: median(f.idle.map((r) => r.bytesPerConn)),
        mosquittoBytesPerConn: median(m.idle.map((r) => r.bytesPerConn)),
        ratio: Math.round(
          (median(f.idle.map((r) => r.bytesPerConn)) /
            median(m.idle.map((r) => r.bytesPerConn))) * 100,
        ) / 100,
      }
      : undefined,
    reps: results,
    note:
      "Loopback, load generator in the bench process, 2 shared cores: figures are noisy; ratios are of medians. ingest ratio = Ferry ÷ mosquitto msg/s (>1: Ferry faster); cpuRatio = mosquitto ÷ Ferry CPU per message (>1: Ferry cheaper); idle ratio = Ferry ÷ mosquitto bytes per connection.",
  };
  console.log(JSON.stringify(summary, null, 2));
  if (OUT) await Deno.writeTextFile(OUT, JSON.stringify(summary, null, 2) + "\n");
}
