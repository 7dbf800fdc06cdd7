/**
 * The durability soak (issue #13): Ferry promises it "never loses an acknowledged message". This
 * drives a real gateway process (`main.ts` with the flags of `deno task start`) from devices on
 * all four protocols while it is killed with SIGKILL and restarted on the same data directory,
 * and while its upstream (a real mosquitto) is stopped and started again; a subscriber on the
 * upstream collects every message id. At the end it waits for the spool to drain and reports
 * every id a device saw acknowledged that never arrived upstream (must be none).
 *
 * A device counts an id as acknowledged ONLY on the gateway's positive answer: FBP/1 ACK status 0,
 * MQTT PUBACK reason 0x00 (v5), CoAP 2.xx, HTTP 2xx. An explicit refusal is counted as refused, no
 * answer (timeout, connection lost) as unacknowledged; both may still arrive upstream.
 *
 * ```sh
 * deno task soak --duration-sec 120 --kills 6 --upstream-restarts 3 --devices-per-protocol 5 \
 *   --out bench/measured/soak-2026-12-03.json
 * ```
 *
 * Exits 1 when an acknowledged message is missing upstream (or the run could not finish).
 *
 * @module
 */

import { mqtt } from "../tests/_dev_deps.ts";
import { type Mosquitto, startMosquitto } from "../tests/_mosquitto.ts";
import { FbpClient } from "../src/protocols/binary/client.ts";
import { AckStatus } from "../src/protocols/binary/frame.ts";
import { decodeMessage, encodeMessage } from "../src/protocols/coap/codec.ts";
import { CoapType, Code, codeClass } from "../src/protocols/coap/message.ts";

/** The four southbound protocols. */
export const PROTOCOLS = ["fbp", "mqtt", "coap", "http"] as const;
/** One of {@link PROTOCOLS}. */
export type Protocol = typeof PROTOCOLS[number];

/** Options of {@link runSoak}. */
export interface SoakOptions {
  /** Seconds of load (events that run late extend it). @default 120 */
  durationSec?: number;
  /** Gateway kills (SIGKILL, then restart on the same data directory). @default 6 */
  kills?: number;
  /** Upstream broker restarts (SIGTERM, down for `upstreamDownMs`, start). @default 3 */
  upstreamRestarts?: number;
  /** Devices per protocol. @default 5 */
  devicesPerProtocol?: number;
  /** Pause of each device between two messages (0: as fast as acknowledgements come). @default 0 */
  intervalMs?: number;
  /** How long the upstream stays down at each restart. @default 3000 */
  upstreamDownMs?: number;
  /**
   * Before each event, wait (at most this long) until every protocol had a message acknowledged
   * by the running gateway instance, so each protocol is exercised on both sides of each kill.
   * @default 30000
   */
  progressTimeoutMs?: number;
  /** Bound on waiting for the spool to drain and every acknowledged id to arrive. @default 180000 */
  drainTimeoutMs?: number;
  /** Progress lines on stderr. @default false */
  verbose?: boolean;
}

/** Counts of one protocol. */
export interface ProtocolResult {
  /** Messages sent (each with a fresh id). */
  sent: number;
  /** Positively acknowledged. */
  acknowledged: number;
  /** Answered with a refusal (not acknowledged). */
  refused: number;
  /** No answer (timeout or connection lost). */
  unacknowledged: number;
  /** Acknowledged per gateway instance (index 0: before the first kill). */
  acknowledgedByInstance: number[];
  /** Distinct ids of this protocol received upstream. */
  receivedUpstream: number;
  /** Acknowledged but never received upstream (must be 0). */
  acknowledgedMissing: number;
  /** Not acknowledged (refused or no answer) yet received upstream (allowed). */
  unacknowledgedArrived: number;
  /** Connection attempts that failed (gateway down or restarting). */
  connectFailures: number;
}

/** What {@link runSoak} measured. */
export interface SoakResult {
  /** ISO time of the start. */
  startedAt: string;
  /** The options in effect. */
  options: Required<Omit<SoakOptions, "verbose">>;
  /** Seconds from the first device message to the end of the load. */
  loadSec: number;
  /** Seconds from the end of the load until the spool was empty and every id had arrived. */
  drainSec: number;
  /** Gateway kills done. */
  kills: number;
  /** Upstream restarts done. */
  upstreamRestarts: number;
  /** Kills done while the upstream was down (the spool holding a backlog). */
  killsWithUpstreamDown: number;
  /** Kills done as soon as the bridge was connected again after an outage (the backlog in flight). */
  killsDuringDrain: number;
  /** `ferry_spool_depth` read just before each kill (NaN when unreadable). */
  spoolDepthAtKills: number[];
  /** Per protocol. */
  protocols: Record<Protocol, ProtocolResult>;
  /** All protocols. */
  total: {
    acknowledged: number;
    receivedUpstream: number;
    acknowledgedMissing: number;
    duplicates: number;
    refused: number;
    unacknowledged: number;
  };
  /** Up to 20 acknowledged ids that never arrived. */
  missingExamples: string[];
  /** Spool depth at the end (0 when drained). */
  finalSpoolDepth: number;
  /** Events in order, with their time in seconds since the start. */
  events: Array<{ atSec: number; event: string }>;
  /** Deno version, CPU count. */
  host: { deno: string; cpus: number };
}

const sleep = (ms: number) => new Promise<void>((r) => setTimeout(r, ms));
const enc = new TextEncoder();
const dec = new TextDecoder();

/** Flags of `deno task start` (between `deno run` and `main.ts`), read from deno.json. */
async function startFlags(): Promise<string[]> {
  const cfg = JSON.parse(await Deno.readTextFile(new URL("../deno.json", import.meta.url)));
  const words = String(cfg.tasks.start).split(/\s+/);
  const i = words.indexOf("run");
  const j = words.indexOf("main.ts");
  if (words[0] !== "deno" || i !== 1 || j < 0) {
    throw new Error("unexpected tasks.start in deno.json");
  }
  return words.slice(2, j);
}

interface Ports {
  instance: number;
  binary: number;
  mqtt: number;
  coap: number;
  http: number;
}

/** One gateway process, started as `deno task start` would start it. */
class GatewayProcess {
  readonly child: Deno.ChildProcess;
  readonly ports: Ports;
  readonly #tail: string[];
  readonly #done: Promise<unknown>;

  private constructor(
    child: Deno.ChildProcess,
    ports: Ports,
    tail: string[],
    done: Promise<unknown>,
  ) {
    this.child = child;
    this.ports = ports;
    this.#tail = tail;
    this.#done = done;
  }

  static async start(flags: string[], config: string, instance: number): Promise<GatewayProcess> {
    const main = new URL("../main.ts", import.meta.url).pathname;
    const child = new Deno.Command(Deno.execPath(), {
      args: ["run", ...flags, main, "--config", config],
      cwd: new URL("..", import.meta.url).pathname,
      stdin: "null",
      stdout: "null",
      stderr: "piped",
    }).spawn();
    const tail: string[] = [];
    let onReady: (a: Record<string, { port: number }>) => void = () => {};
    const ready = new Promise<Record<string, { port: number }>>((r) => onReady = r);
    const reading = (async () => {
      let buf = "";
      for await (const chunk of child.stderr.pipeThrough(new TextDecoderStream())) {
        buf += chunk;
        let i;
        while ((i = buf.indexOf("\n")) >= 0) {
          const line = buf.slice(0, i);
          buf = buf.slice(i + 1);
          tail.push(line);
          if (tail.length > 40) tail.shift();
          if (line.includes('"ready"')) {
            try {
              const l = JSON.parse(line);
              if (l.msg === "ready") onReady(l.addresses);
            } catch { /* not JSON */ }
          }
        }
      }
    })();
    const done = Promise.all([child.status, reading]);
    const exited = child.status.then((s) => {
      throw new Error(`gateway exited (${s.code}) before ready:\n${tail.join("\n")}`);
    });
    let t: ReturnType<typeof setTimeout> | undefined;
    const timeout = new Promise<never>((_, reject) => {
      t = setTimeout(
        () => reject(new Error(`gateway not ready after 60 s:\n${tail.join("\n")}`)),
        60_000,
      );
    });
    let a: Record<string, { port: number }>;
    try {
      a = await Promise.race([ready, exited, timeout]);
    } catch (err) {
      try {
        child.kill("SIGKILL");
      } catch { /* gone */ }
      await done;
      throw err;
    } finally {
      clearTimeout(t);
    }
    exited.catch(() => {});
    const ports = {
      instance,
      binary: a.binary.port,
      mqtt: a.mqtt.port,
      coap: a.coap.port,
      http: a.http.port,
    };
    return new GatewayProcess(child, ports, tail, done);
  }

  async stop(signal: "SIGKILL" | "SIGTERM"): Promise<void> {
    try {
      this.child.kill(signal);
    } catch { /* gone */ }
    await this.#done;
  }

  /** `ferry_spool_depth` and `ferry_northbound_bridge_connected` from `/metrics`. */
  async metrics(): Promise<{ depth: number; connected: number }> {
    const res = await fetch(`http://127.0.0.1:${this.ports.http}/metrics`, {
      signal: AbortSignal.timeout(5000),
    });
    const text = await res.text();
    let depth = NaN;
    let connected = 0;
    for (const line of text.split("\n")) {
      if (line.startsWith("ferry_spool_depth ")) depth = Number(line.split(" ")[1]);
      if (line.startsWith("ferry_northbound_bridge_connected")) {
        connected += Number(line.slice(line.lastIndexOf(" ") + 1));
      }
    }
    return { depth, connected };
  }

  get log(): string {
    return this.#tail.join("\n");
  }
}

/** Shared state of the devices. */
interface Fleet {
  ports: Ports | undefined;
  stopping: boolean;
  intervalMs: number;
  acked: Map<string, Protocol>;
  notAcked: Set<string>;
  counts: Record<
    Protocol,
    Omit<ProtocolResult, "receivedUpstream" | "acknowledgedMissing" | "unacknowledgedArrived">
  >;
}

type Answer = "ack" | "refused";

/** A device connection of one protocol: `send` resolves to the answer or throws (no answer). */
interface DeviceConn {
  send(topicDevice: string, id: string): Promise<Answer>;
  close(): Promise<void>;
}

async function openFbp(port: number, device: string): Promise<DeviceConn> {
  const c = await FbpClient.connect({ port, id: device, timeoutMs: 3000 });
  return {
    async send(_d, id) {
      const s = await c.telemetry(enc.encode(id), { ack: true, timeoutMs: 3000 });
      return s === AckStatus.OK ? "ack" : "refused";
    },
    close: () => c.close(),
  };
}

async function openMqtt(port: number, device: string): Promise<DeviceConn> {
  const c = mqtt.connect(`mqtt://127.0.0.1:${port}`, {
    clientId: device,
    clean: true,
    protocolVersion: 5,
    reconnectPeriod: 0,
    connectTimeout: 3000,
    keepalive: 30,
  });
  let fail: ((err: Error) => void) | undefined;
  let closed = false;
  c.on("error", () => {});
  c.on("close", () => {
    closed = true;
    fail?.(new Error("connection closed"));
  });
  try {
    await new Promise<void>((resolve, reject) => {
      c.once("connect", () => resolve());
      c.once("close", () => reject(new Error("MQTT connect failed")));
    });
  } catch (err) {
    await new Promise<void>((r) => c.end(true, {}, () => r()));
    throw err;
  }
  return {
    send(d, id) {
      if (closed) return Promise.reject(new Error("connection closed"));
      return new Promise<Answer>((resolve, reject) => {
        const t = setTimeout(() => reject(new Error("PUBACK timeout")), 3000);
        fail = (err) => {
          clearTimeout(t);
          reject(err);
        };
        c.publish(`devices/${d}/telemetry`, id, { qos: 1 }, (err, packet) => {
          clearTimeout(t);
          fail = undefined;
          const reason = (packet as { reasonCode?: number } | undefined)?.reasonCode ??
            (err as { code?: unknown } | undefined)?.code;
          if (!err && (reason === undefined || reason === 0)) resolve("ack");
          else if (typeof reason === "number" && reason >= 0x80) resolve("refused");
          else reject(err ?? new Error(`PUBACK reason ${reason}`));
        });
      });
    },
    close: () => new Promise<void>((r) => c.end(true, {}, () => r())),
  };
}

function openCoap(port: number, device: string): DeviceConn {
  const sock = Deno.listenDatagram({ hostname: "127.0.0.1", port: 0, transport: "udp" });
  const to: Deno.NetAddr = { transport: "udp", hostname: "127.0.0.1", port };
  let mid = Math.floor(Math.random() * 0xffff);
  // Waiters by token (hex) and by message id (the empty ACK of a separate response).
  const byToken = new Map<string, (code: number) => void>();
  const emptyAck = new Map<number, () => void>();
  const hex = (b: Uint8Array) => Array.from(b, (x) => x.toString(16).padStart(2, "0")).join("");
  const reading = (async () => {
    for (;;) {
      let data: Uint8Array;
      try {
        [data] = await sock.receive();
      } catch {
        return;
      }
      let m;
      try {
        m = decodeMessage(data);
      } catch {
        continue;
      }
      if (m.type === CoapType.CON) {
        // A separate response (or anything confirmable): acknowledge it, RFC 7252 §5.2.2.
        const ack = encodeMessage({
          type: CoapType.ACK,
          code: Code.EMPTY,
          messageId: m.messageId,
          token: new Uint8Array(),
          options: [],
          payload: new Uint8Array(),
        });
        await sock.send(ack, to).catch(() => {});
      }
      if (m.code === Code.EMPTY) {
        if (m.type === CoapType.ACK) emptyAck.get(m.messageId)?.();
        continue;
      }
      byToken.get(hex(m.token))?.(m.code);
    }
  })();
  const path = ["d", device, "telemetry"].map((s) => ({ number: 11, value: enc.encode(s) }));
  return {
    async send(_d, id) {
      mid = (mid + 1) & 0xffff;
      const token = crypto.getRandomValues(new Uint8Array(4));
      const key = hex(token);
      const bytes = encodeMessage({
        type: CoapType.CON,
        code: Code.POST,
        messageId: mid,
        token,
        options: [...path, { number: 12, value: new Uint8Array() }], // Content-Format text/plain
        payload: enc.encode(id),
      });
      let answered: ((code: number) => void) | undefined;
      const answer = new Promise<number>((r) => answered = r);
      let separate = false;
      byToken.set(key, answered!);
      emptyAck.set(mid, () => separate = true);
      try {
        // CON retransmission, RFC 7252 §4.2 (shortened for loopback): 4 transmissions, 750 ms
        // apart; a separate response is then awaited up to 5 s more.
        for (let i = 0; i < 4 || (separate && i < 10); i++) {
          if (!separate) await sock.send(bytes, to);
          let t: ReturnType<typeof setTimeout> | undefined;
          const code = await Promise.race([
            answer,
            new Promise<undefined>((r) => t = setTimeout(() => r(undefined), 750)),
          ]);
          clearTimeout(t);
          if (code !== undefined) return codeClass(code) === 2 ? "ack" : "refused";
        }
        throw new Error("no CoAP response");
      } finally {
        byToken.delete(key);
        emptyAck.delete(mid);
      }
    },
    async close() {
      sock.close();
      await reading;
    },
  };
}

function openHttp(port: number): DeviceConn {
  return {
    async send(d, id) {
      const res = await fetch(`http://127.0.0.1:${port}/api/v1/devices/${d}/telemetry`, {
        method: "POST",
        headers: { authorization: "Bearer soak", "content-type": "text/plain" },
        body: id,
        signal: AbortSignal.timeout(3000),
      });
      await res.arrayBuffer();
      return res.status >= 200 && res.status < 300 ? "ack" : "refused";
    },
    close: () => Promise.resolve(),
  };
}

function open(proto: Protocol, ports: Ports, device: string): Promise<DeviceConn> | DeviceConn {
  switch (proto) {
    case "fbp":
      return openFbp(ports.binary, device);
    case "mqtt":
      return openMqtt(ports.mqtt, device);
    case "coap":
      return openCoap(ports.coap, device);
    case "http":
      return openHttp(ports.http);
  }
}

/** One device: sends ids until the fleet stops, reconnecting with backoff to the current ports. */
async function device(fleet: Fleet, proto: Protocol, index: number): Promise<void> {
  const name = `soak-${proto}-${index}`;
  const counts = fleet.counts[proto];
  let seq = 0;
  let backoff = 50;
  while (!fleet.stopping) {
    const ports = fleet.ports;
    let conn: DeviceConn | undefined;
    if (ports) {
      try {
        conn = await open(proto, ports, name);
      } catch {
        counts.connectFailures++;
      }
    }
    if (ports && conn) {
      try {
        while (!fleet.stopping && fleet.ports === ports) {
          const id = `${name}:${seq++}`;
          counts.sent++;
          let answer: Answer;
          try {
            answer = await conn.send(name, id);
          } catch (err) {
            counts.unacknowledged++;
            fleet.notAcked.add(id);
            throw err;
          }
          if (answer === "ack") {
            counts.acknowledged++;
            counts.acknowledgedByInstance[ports.instance] =
              (counts.acknowledgedByInstance[ports.instance] ?? 0) + 1;
            fleet.acked.set(id, proto);
          } else {
            counts.refused++;
            fleet.notAcked.add(id);
          }
          backoff = 50;
          if (fleet.intervalMs > 0) await sleep(fleet.intervalMs);
        }
      } catch { /* no answer: reconnect */ }
      await conn.close().catch(() => {});
      if (fleet.ports !== ports) continue; // a new gateway: connect at once
    }
    await sleep(backoff);
    backoff = Math.min(backoff * 2, 1000);
  }
}

/** The upstream subscriber: a persistent QoS 1 session that records how often each id arrived. */
async function upstreamSubscriber(url: string, filter: string) {
  const seen = new Map<string, number>();
  const client = mqtt.connect(url, {
    clientId: "soak-upstream-sub",
    clean: false,
    protocolVersion: 4,
    reconnectPeriod: 200,
    connectTimeout: 5000,
    keepalive: 30,
  });
  client.on("error", () => {});
  client.on("message", (topic, payload) => {
    if (!topic.endsWith("/telemetry")) return;
    const id = dec.decode(payload);
    seen.set(id, (seen.get(id) ?? 0) + 1);
  });
  await new Promise<void>((resolve, reject) => {
    const t = setTimeout(() => reject(new Error(`cannot subscribe on ${url}`)), 10_000);
    client.once("connect", () =>
      client.subscribe(filter, { qos: 1 }, (err) => {
        clearTimeout(t);
        if (err) reject(err);
        else resolve();
      }));
  });
  return {
    seen,
    close: () => new Promise<void>((r) => client.end(true, {}, () => r())),
  };
}

/**
 * One fault: a kill; an upstream restart; an upstream restart with a kill halfway through the
 * outage (the spool holds a backlog); or one with a kill as soon as the bridge is back (the backlog
 * is being sent).
 */
export type SoakEvent = "kill" | "upstream" | "upstream+kill" | "upstream+drain-kill";

/**
 * Orders the faults: upstream restarts take a kill with them while kills last (alternately during
 * the outage and during the drain after it); the other kills come alone, in between.
 */
export function schedule(kills: number, restarts: number): SoakEvent[] {
  const out: SoakEvent[] = [];
  let k = kills;
  for (let i = 0; i < restarts; i++) {
    if (k > 0) {
      out.push(i % 2 === 0 ? "upstream+kill" : "upstream+drain-kill");
      k--;
    } else out.push("upstream");
    // Spread the remaining lone kills over the gaps after each restart.
    const alone = Math.ceil(Math.max(0, k - (restarts - i - 1)) / (restarts - i));
    for (let j = 0; j < alone && k > 0 && i < restarts - 1; j++, k--) out.push("kill");
  }
  for (; k > 0; k--) out.push("kill");
  return out;
}

/** Runs the soak; see the module documentation. */
export async function runSoak(options: SoakOptions = {}): Promise<SoakResult> {
  const o = {
    durationSec: options.durationSec ?? 120,
    kills: options.kills ?? 6,
    upstreamRestarts: options.upstreamRestarts ?? 3,
    devicesPerProtocol: options.devicesPerProtocol ?? 5,
    intervalMs: options.intervalMs ?? 0,
    upstreamDownMs: options.upstreamDownMs ?? 3000,
    progressTimeoutMs: options.progressTimeoutMs ?? 30_000,
    drainTimeoutMs: options.drainTimeoutMs ?? 180_000,
  };
  const say = (s: string) => {
    if (options.verbose) console.error(`[soak ${((Date.now() - t0) / 1000).toFixed(1)}s] ${s}`);
  };
  const t0 = Date.now();
  const startedAt = new Date(t0).toISOString();
  const events: SoakResult["events"] = [];
  const note = (event: string) => {
    events.push({ atSec: Math.round((Date.now() - t0) / 100) / 10, event });
    say(event);
  };
  const flags = await startFlags();
  const work = await Deno.makeTempDir({ prefix: "ferry-soak-" });
  const dataDir = `${work}/data`;
  const configPath = `${work}/ferry.json`;
  let broker: Mosquitto | undefined;
  let gateway: GatewayProcess | undefined;
  let sub: Awaited<ReturnType<typeof upstreamSubscriber>> | undefined;
  const fleet: Fleet = {
    ports: undefined,
    stopping: false,
    intervalMs: o.intervalMs,
    acked: new Map(),
    notAcked: new Set(),
    counts: Object.fromEntries(PROTOCOLS.map((p) => [p, {
      sent: 0,
      acknowledged: 0,
      refused: 0,
      unacknowledged: 0,
      acknowledgedByInstance: [0],
      connectFailures: 0,
    }])) as Fleet["counts"],
  };
  let devices: Promise<void[]> | undefined;
  try {
    broker = await startMosquitto({ persistence: true });
    sub = await upstreamSubscriber(broker.url, "ferry/soak/#");
    await Deno.writeTextFile(
      configPath,
      JSON.stringify(
        {
          dataDir,
          log: { level: "info" },
          auth: { anonymous: true },
          northbound: {
            url: broker.url,
            gatewayId: "soak",
            backoffBaseMs: 50,
            backoffCapMs: 500,
          },
          binary: { port: 0 },
          mqtt: { port: 0, websocket: { port: 0 } },
          coap: { port: 0 },
          http: { port: 0 },
        },
        null,
        2,
      ),
    );
    let instance = 0;
    const startGateway = async () => {
      gateway = await GatewayProcess.start(flags, configPath, instance);
      for (const p of PROTOCOLS) fleet.counts[p].acknowledgedByInstance[instance] = 0;
      fleet.ports = gateway.ports;
    };
    await startGateway();
    note("gateway started");
    const loadStart = Date.now();
    devices = Promise.all(
      PROTOCOLS.flatMap((p) =>
        Array.from({ length: o.devicesPerProtocol }, (_, i) => device(fleet, p, i))
      ),
    );
    const progress = async () => {
      const deadline = Date.now() + o.progressTimeoutMs;
      const lacking = () =>
        PROTOCOLS.filter((p) => !(fleet.counts[p].acknowledgedByInstance[instance] > 0));
      while (lacking().length > 0 && Date.now() < deadline) await sleep(50);
      if (lacking().length > 0) {
        note(`no acknowledgement yet from ${lacking().join(", ")} on gateway instance ${instance}`);
      }
    };
    let kills = 0;
    let restarts = 0;
    let killsWithUpstreamDown = 0;
    let killsDuringDrain = 0;
    const spoolDepthAtKills: number[] = [];
    const kill = async () => {
      let depth = NaN;
      for (let i = 0; i < 3 && Number.isNaN(depth); i++) {
        depth = await gateway!.metrics().then((m) => m.depth, () => NaN);
      }
      // Devices keep sending until the process is gone: the kill lands on messages in flight.
      await gateway!.stop("SIGKILL");
      fleet.ports = undefined;
      kills++;
      spoolDepthAtKills.push(depth);
      note(`gateway killed (SIGKILL) #${kills}, spool depth ${depth} just before`);
      instance++;
      await startGateway();
      note(`gateway restarted as instance ${instance}`);
    };
    const plan = schedule(o.kills, o.upstreamRestarts);
    const spacing = (o.durationSec * 1000) / (plan.length + 1);
    for (const [i, ev] of plan.entries()) {
      const at = loadStart + spacing * (i + 1);
      if (Date.now() < at) await sleep(at - Date.now());
      await progress();
      if (ev === "kill") {
        await kill();
        continue;
      }
      const down = Date.now();
      await broker.stop("SIGTERM");
      note("upstream stopped");
      if (ev === "upstream+kill") {
        // Let a backlog build in the spool, then kill the gateway holding it.
        await sleep(o.upstreamDownMs / 2);
        await progress();
        await kill();
        killsWithUpstreamDown++;
      }
      const rest = o.upstreamDownMs - (Date.now() - down);
      if (rest > 0) await sleep(rest);
      await broker.start();
      restarts++;
      note(`upstream restarted #${restarts}`);
      if (ev === "upstream+drain-kill") {
        // Kill as soon as the bridge is connected again: while it sends the backlog.
        const until = Date.now() + 10_000;
        while (Date.now() < until) {
          const m = await gateway!.metrics().catch(() => undefined);
          if (m && m.connected >= 1) break;
          await sleep(20);
        }
        await kill();
        killsDuringDrain++;
      }
    }
    const end = loadStart + o.durationSec * 1000;
    if (Date.now() < end) await sleep(end - Date.now());
    await progress();
    fleet.stopping = true;
    await devices;
    devices = undefined;
    const loadSec = (Date.now() - loadStart) / 1000;
    note("load stopped");
    // Drain: the spool empty with the bridge connected, then every acknowledged id upstream.
    const drainStart = Date.now();
    const deadline = drainStart + o.drainTimeoutMs;
    let depth = NaN;
    for (;;) {
      try {
        const m = await gateway!.metrics();
        depth = m.depth;
        if (m.depth === 0 && m.connected >= 1) break;
      } catch { /* busy: ask again */ }
      if (Date.now() > deadline) break;
      await sleep(200);
    }
    note(`spool depth ${depth}`);
    const missing = () => [...fleet.acked.keys()].filter((id) => !sub!.seen.has(id));
    let lost = missing();
    while (lost.length > 0 && Date.now() < deadline) {
      await sleep(200);
      lost = missing();
    }
    const drainSec = (Date.now() - drainStart) / 1000;
    note(`drained: ${lost.length} acknowledged missing`);
    const protocols = Object.fromEntries(PROTOCOLS.map((p) => {
      let received = 0;
      let arrived = 0;
      for (const id of sub!.seen.keys()) {
        if (!id.startsWith(`soak-${p}-`)) continue;
        received++;
        if (fleet.notAcked.has(id)) arrived++;
      }
      return [p, {
        ...fleet.counts[p],
        receivedUpstream: received,
        acknowledgedMissing: lost.filter((id) => fleet.acked.get(id) === p).length,
        unacknowledgedArrived: arrived,
      }];
    })) as Record<Protocol, ProtocolResult>;
    let duplicates = 0;
    for (const n of sub.seen.values()) duplicates += n - 1;
    const sum = (k: keyof ProtocolResult) =>
      PROTOCOLS.reduce((s, p) => s + (protocols[p][k] as number), 0);
    return {
      startedAt,
      options: o,
      loadSec: Math.round(loadSec * 10) / 10,
      drainSec: Math.round(drainSec * 10) / 10,
      kills,
      upstreamRestarts: restarts,
      killsWithUpstreamDown,
      killsDuringDrain,
      spoolDepthAtKills,
      protocols,
      total: {
        acknowledged: sum("acknowledged"),
        receivedUpstream: sub.seen.size,
        acknowledgedMissing: lost.length,
        duplicates,
        refused: sum("refused"),
        unacknowledged: sum("unacknowledged"),
      },
      missingExamples: lost.slice(0, 20),
      finalSpoolDepth: depth,
      events,
      host: { deno: Deno.version.deno, cpus: navigator.hardwareConcurrency },
    };
  } finally {
    fleet.stopping = true;
    fleet.ports = undefined;
    await devices?.catch(() => {});
    await gateway?.stop("SIGTERM");
    await sub?.close();
    await broker?.[Symbol.asyncDispose]();
    await Deno.remove(work, { recursive: true }).catch(() => {});
  }
}

function parseArgs(args: string[]): SoakOptions & { out?: string } {
  const o: SoakOptions & { out?: string } = { verbose: true };
  const num = (flag: string, v: string | undefined) => {
    const n = Number(v);
    if (v === undefined || !Number.isFinite(n) || n < 0) {
      throw new RangeError(`Cannot read ${flag}: "${v}" is not a non-negative number`);
    }
    return n;
  };
  for (let i = 0; i < args.length; i++) {
    const a = args[i];
    const v = args[i + 1];
    switch (a) {
      case "--duration-sec":
        o.durationSec = num(a, v);
        break;
      case "--kills":
        o.kills = num(a, v);
        break;
      case "--upstream-restarts":
        o.upstreamRestarts = num(a, v);
        break;
      case "--devices-per-protocol":
        o.devicesPerProtocol = Math.max(1, num(a, v));
        break;
      case "--interval-ms":
        o.intervalMs = num(a, v);
        break;
      case "--upstream-down-ms":
        o.upstreamDownMs = num(a, v);
        break;
      case "--out":
        if (!v) throw new RangeError("Cannot read --out: missing file name");
        o.out = v;
        break;
      case "--quiet":
        o.verbose = false;
        i--;
        break;
      default:
        throw new RangeError(`Unknown option ${a}`);
    }
    i++;
  }
  return o;
}

if (import.meta.main) {
  const { out, ...opts } = parseArgs(Deno.args);
  const result = await runSoak(opts);
  const json = JSON.stringify(result, null, 2);
  if (out) await Deno.writeTextFile(out, json + "\n");
  console.log(json);
  const t = result.total;
  console.error(
    `soak: ${result.kills} kills (${result.killsWithUpstreamDown} with the upstream down, ` +
      `${result.killsDuringDrain} while the backlog was sent), ` +
      `${result.upstreamRestarts} upstream restarts, ${result.loadSec} s of load; ` +
      `${t.acknowledged} acknowledged, ${t.receivedUpstream} received upstream, ` +
      `${t.acknowledgedMissing} acknowledged missing, ${t.duplicates} duplicates, ` +
      `${t.refused} refused, ${t.unacknowledged} unacknowledged`,
  );
  Deno.exit(t.acknowledgedMissing === 0 && result.finalSpoolDepth === 0 ? 0 : 1);
}
