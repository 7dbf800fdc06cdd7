/**
 * The servers the benchmark measures, each started as its users start it and reached only from
 * outside (process, sockets, log file, `/metrics`):
 *
 * - **Ferry**: the command line of `deno task start`, read from the checkout's `deno.json` at run
 *   time and run from that checkout, plus `--config` with a file that sets only the listener
 *   ports, a temporary `dataDir` and (for the northbound scenario) the upstream URL. Everything else
 *   is the default config: state file, HTTP with `/metrics`, dashboard, JSON logs at `info`.
 * - **mosquitto**: Debian's binary with a config file as the package installs it (persistence on,
 *   logging to a file), a `listener` on a free loopback port and `allow_anonymous true`.
 * - **aedes**: on Node (`bench/peers/aedes/server.mjs`), `Aedes.createBroker()` defaults.
 * - **libcoap**: `coap-server-notls` with its defaults.
 * - **Floors** (`bench/peers/`): run with the runtime flags of Ferry's start task.
 *
 * Every server writes its output to a log file (never a pipe the benchmark must drain). A
 * {@link Server} is `AsyncDisposable`: SIGTERM, then SIGKILL after 5 s, always awaited.
 *
 * @module
 */

import { freePort, sleep } from "./_util.ts";

const BENCH = new URL(".", import.meta.url).pathname;
const HERE_CHECKOUT = new URL("..", import.meta.url).pathname;
const AEDES_DIR = `${BENCH}peers/aedes`;

/** Listener ports of a running server. */
export interface Ports {
  mqtt?: number;
  /** MQTT over WebSocket (Ferry's `mqtt.websocket.port`, on by default since #16). */
  mqttWs?: number;
  binary?: number;
  coap?: number;
  http?: number;
}

/** The ports Ferry is given: every listener it has, `mqttWs` when the checkout has that one. */
export type FerryPorts = Required<Omit<Ports, "mqttWs">> & Pick<Ports, "mqttWs">;

/** A running server process. */
export interface Server extends AsyncDisposable {
  /** Name in the results (`ferry`, `ferry@before`, `mosquitto`, …). */
  name: string;
  /** Its process id (the server itself, not a wrapper). */
  pid: number;
  /** Where it listens. */
  ports: Ports;
  /** Ferry's `/metrics` URL. */
  metricsUrl?: string;
  /** `performance.now()` when it was spawned. */
  spawnedAt: number;
  /** Whether the process has exited without being asked to stop. */
  exited(): boolean;
  /** The last lines of its log, for error reports. */
  logTail(lines?: number): string;
}

/** How a server was run, for the results. */
export interface ServerInfo {
  /** What it is. */
  label: string;
  /** The command line (`{…}` for what changes per run). */
  command: string[];
  /** Working directory, when it matters. */
  cwd?: string;
  /** Version or commit. */
  version?: string;
  /** The config file it was given (template). */
  config?: string;
  /** Choices made and why. */
  notes?: string;
}

/** Options of {@link ServerKind.start}. */
export interface StartOptions {
  /** A fresh directory for this run (config, data, logs). */
  dir: string;
  /** Ferry: bridge to this upstream (`mqtt://127.0.0.1:PORT`). mosquitto: bridge there. */
  upstream?: string;
  /** Return as soon as the process is spawned, without waiting for readiness. */
  noWait?: boolean;
}

/** A kind of server the scenarios can start. */
export interface ServerKind {
  /** Name in the results. */
  name: string;
  /** How it is run. */
  info(): Promise<ServerInfo>;
  /** Starts one instance, ready to accept (unless `noWait`). */
  start(o: StartOptions): Promise<Server>;
}

// ---------------------------------------------------------------------------------------------
// Processes

/** Spawns `cmd args` with stdout and stderr appended to `log` (via `sh -c exec`: same pid). */
function spawnLogged(cmd: string, args: string[], log: string, cwd?: string): Deno.ChildProcess {
  return new Deno.Command("/bin/sh", {
    args: ["-c", 'log=$1; shift; exec "$@" >>"$log" 2>&1', "sh", log, cmd, ...args],
    cwd,
    stdin: "null",
    stdout: "null",
    stderr: "null",
  }).spawn();
}

function tail(file: string, lines = 15): string {
  try {
    // deno-lint-ignore no-control-regex
    const t = Deno.readTextFileSync(file).replace(/\x1b\[[0-9;]*m/g, "").trimEnd().split("\n");
    return t.slice(-lines).join("\n");
  } catch {
    return "(no log)";
  }
}

function makeServer(
  name: string,
  child: Deno.ChildProcess,
  log: string,
  spawnedAt: number,
  extra: { ports: Ports; metricsUrl?: string },
): Server & { status: Promise<Deno.CommandStatus> } {
  let done = false;
  let stopping = false;
  const status = child.status.finally(() => done = true);
  return {
    name,
    pid: child.pid,
    spawnedAt,
    ...extra,
    status,
    exited: () => done && !stopping,
    logTail: (n) => tail(log, n),
    async [Symbol.asyncDispose]() {
      stopping = true;
      if (!done) {
        try {
          child.kill("SIGTERM");
        } catch { /* gone */ }
      }
      const t = setTimeout(() => {
        try {
          child.kill("SIGKILL");
        } catch { /* gone */ }
      }, 5000);
      await status;
      clearTimeout(t);
    },
  };
}

/** Waits until `ready()` holds (polled every 5 ms), the process exits, or `timeoutMs` passes. */
async function waitReady(
  s: Server,
  what: string,
  ready: () => boolean | Promise<boolean>,
  timeoutMs = 30_000,
): Promise<void> {
  const deadline = performance.now() + timeoutMs;
  for (;;) {
    if (await ready()) return;
    if (s.exited()) throw new Error(`${what} exited before it was ready:\n${s.logTail()}`);
    if (performance.now() > deadline) {
      throw new Error(`${what} not ready within ${timeoutMs} ms:\n${s.logTail()}`);
    }
    await sleep(5);
  }
}

/** Whether a TCP connection to the loopback port is accepted. */
export async function tcpOpen(port: number): Promise<boolean> {
  try {
    (await Deno.connect({ hostname: "127.0.0.1", port })).close();
    return true;
  } catch {
    return false;
  }
}

async function output(cmd: string, args: string[], cwd?: string): Promise<string> {
  try {
    const o = await new Deno.Command(cmd, {
      args,
      cwd,
      stdin: "null",
      stderr: "piped",
      signal: AbortSignal.timeout(5000),
    }).output();
    return (new TextDecoder().decode(o.stdout) + new TextDecoder().decode(o.stderr)).trim();
  } catch (err) {
    return `(${cmd}: ${(err as Error).message})`;
  }
}

// ---------------------------------------------------------------------------------------------
// Ferry

/** The parts of a `deno run` task command line. */
export interface StartTask {
  /** Every word, the first (`deno`) included. */
  words: string[];
  /** The flags between `run` and the script (`--allow-net`, `--v8-flags=…`). */
  runtimeFlags: string[];
  /** The script (`main.ts`). */
  script: string;
}

/**
 * Splits a task's command line into words (single and double quotes, backslash escapes) and finds
 * the runtime flags and the script of its `deno run`. Throws a `SyntaxError` for anything a plain
 * `deno run` line does not hold (shell operators, variables, another program).
 *
 * @example
 * ```ts
 * import { parseStartTask } from "./_servers.ts";
 * const t = parseStartTask("deno run --allow-net '--v8-flags=--optimize-for-size' main.ts");
 * if (t.script !== "main.ts" || t.runtimeFlags.join(" ") !== "--allow-net --v8-flags=--optimize-for-size") {
 *   throw new Error();
 * }
 * ```
 */
export function parseStartTask(line: string): StartTask {
  const words: string[] = [];
  let cur = "";
  let inWord = false;
  let quote: '"' | "'" | undefined;
  for (let i = 0; i < line.length; i++) {
    const ch = line[i];
    if (quote) {
      if (ch === quote) quote = undefined;
      else if (ch === "\\" && quote === '"' && i + 1 < line.length) cur += line[++i];
      else cur += ch;
    } else if (ch === "'" || ch === '"') {
      quote = ch;
      inWord = true;
    } else if (ch === "\\" && i + 1 < line.length) {
      cur += line[++i];
      inWord = true;
    } else if (/\s/.test(ch)) {
      if (inWord) words.push(cur);
      cur = "";
      inWord = false;
    } else if ("|&;<>()$`".includes(ch)) {
      throw new SyntaxError(`Cannot run the start task "${line}": shell syntax "${ch}"`);
    } else {
      cur += ch;
      inWord = true;
    }
  }
  if (quote) throw new SyntaxError(`Cannot run the start task "${line}": unclosed quote`);
  if (inWord) words.push(cur);
  if (words[0] !== "deno" || words[1] !== "run") {
    throw new SyntaxError(`Cannot run the start task "${line}": not a "deno run" command`);
  }
  const at = words.findIndex((w, i) => i > 1 && !w.startsWith("-"));
  if (at < 0) throw new SyntaxError(`Cannot run the start task "${line}": no script`);
  return { words, runtimeFlags: words.slice(2, at), script: words[at] };
}

/** Reads `tasks.start` of the checkout at `dir` (string or `{ command }` form). */
export async function readStartTask(dir: string): Promise<StartTask> {
  let text: string | undefined;
  for (const f of ["deno.json", "deno.jsonc"]) {
    try {
      text = await Deno.readTextFile(`${dir}/${f}`);
      break;
    } catch { /* next */ }
  }
  if (text === undefined) throw new Error(`no deno.json in ${dir}`);
  // deno.jsonc: drop comments outside strings (a small scanner; the file is trusted).
  const json = text.replace(/("(?:[^"\\]|\\.)*")|\/\/[^\n]*|\/\*[\s\S]*?\*\//g, (_m, s) => s ?? "");
  const tasks = JSON.parse(json).tasks ?? {};
  const start = typeof tasks.start === "string" ? tasks.start : tasks.start?.command;
  if (typeof start !== "string") throw new Error(`no tasks.start in ${dir}/deno.json`);
  return parseStartTask(start);
}

/** The commit of a checkout (`git describe`), or a note when it is not a git checkout. */
async function commitOf(dir: string): Promise<string> {
  const rev = await output("git", ["-C", dir, "rev-parse", "--short=12", "HEAD"]);
  if (!/^[0-9a-f]{7,40}$/.test(rev)) return "(not a git checkout)";
  const dirty = await output("git", ["-C", dir, "status", "--porcelain", "--untracked-files=no"]);
  const subject = await output("git", ["-C", dir, "log", "-1", "--format=%s"]);
  const short = subject.length > 60 ? `${subject.slice(0, 57)}…` : subject;
  return `${rev}${dirty ? " (with uncommitted changes)" : ""} “${short}”`;
}

/**
 * The config file Ferry is given: ports and data dir only, plus the upstream when bridging. Every
 * listener gets a port (MQTT over WebSocket too, when `ports.mqttWs` is given: a checkout from
 * before #16 refuses the key), so two gateways never fight over a default port and nothing else
 * on the machine is in the way.
 */
export function ferryConfig(ports: FerryPorts, dataDir: string, upstream?: string): string {
  const c: Record<string, unknown> = {
    binary: { port: ports.binary },
    mqtt: ports.mqttWs === undefined
      ? { port: ports.mqtt }
      : { port: ports.mqtt, websocket: { port: ports.mqttWs } },
    coap: { port: ports.coap },
    http: { port: ports.http },
    dataDir,
  };
  if (upstream) c.northbound = { url: upstream };
  return JSON.stringify(c, null, 2) + "\n";
}

const wsSupport = new Map<string, Promise<boolean>>();

/**
 * Whether the checkout's gateway has the MQTT-over-WebSocket listener (its `--help` names
 * `--mqtt-ws-port`), asked once per checkout, as its start task runs it.
 */
function hasWebSocketListener(checkout: string, task: StartTask): Promise<boolean> {
  let p = wsSupport.get(checkout);
  if (!p) {
    p = output(Deno.execPath(), ["run", ...task.runtimeFlags, task.script, "--help"], checkout)
      .then((help) => help.includes("--mqtt-ws-port"));
    wsSupport.set(checkout, p);
  }
  return p;
}

/**
 * The ports a gateway's log says it listens on (`"msg":"… listening"` lines with a `port`) that
 * are not among `given`: a listener the benchmark did not give a port to (it took its default).
 *
 * @example
 * ```ts
 * import { unexpectedListeners } from "./_servers.ts";
 * const log = '{"msg":"mqtt listening","port":5}\n{"msg":"mqttWs listening","port":8083}\n';
 * const odd = unexpectedListeners(log, [5]);
 * if (odd.length !== 1 || !odd[0].includes("8083")) throw new Error();
 * ```
 */
export function unexpectedListeners(log: string, given: number[]): string[] {
  const out: string[] = [];
  for (const line of log.split("\n")) {
    const m = /"msg":"([^"]*listening[^"]*)".*?"port":(\d+)/.exec(line);
    if (m && !given.includes(Number(m[2]))) out.push(`${m[1]} on port ${m[2]}`);
  }
  return out;
}

/** Ferry from the checkout at `dir`, started with its own `deno task start` command line. */
export function ferry(name: string, dir = HERE_CHECKOUT): ServerKind {
  const checkout = dir.replace(/\/+$/, "") || "/";
  return {
    name,
    async info() {
      const task = await readStartTask(checkout);
      return {
        label: name === "ferry" ? "Ferry (this checkout)" : `Ferry (${checkout})`,
        command: [...task.words, "--config", "{dir}/ferry.json"],
        cwd: checkout,
        version: await commitOf(checkout),
        config: ferryConfig(
          {
            binary: 0,
            mqtt: 0,
            coap: 0,
            http: 0,
            mqttWs: await hasWebSocketListener(checkout, task) ? 0 : undefined,
          },
          "{dir}/data",
        ).replace(/: 0/g, ": {free port}"),
        notes:
          "the gateway process exactly as `deno task start` runs it (tasks.start read from this checkout's deno.json at run time; `deno` is the running Deno), default config except a free port for every listener (MQTT over WebSocket too, where the checkout has it) and dataDir; a run fails if the log shows a listener on a port it was not given; logs (JSON, info) go to a file",
      };
    },
    async start(o) {
      const task = await readStartTask(checkout);
      const ws = await hasWebSocketListener(checkout, task);
      let lastErr: unknown;
      for (let attempt = 0; attempt < 2; attempt++) { // a second try if a picked port was taken
        const ports: FerryPorts = {
          binary: freePort(),
          mqtt: freePort(),
          coap: freePort("udp"),
          http: freePort(),
          mqttWs: ws ? freePort() : undefined,
        };
        const cfg = `${o.dir}/ferry.json`;
        await Deno.writeTextFile(cfg, ferryConfig(ports, `${o.dir}/data`, o.upstream));
        const log = `${o.dir}/ferry-${attempt}.log`;
        const t0 = performance.now();
        const child = spawnLogged(
          Deno.execPath(),
          [...task.words.slice(1), "--config", cfg],
          log,
          checkout,
        );
        const s = makeServer(name, child, log, t0, {
          ports,
          metricsUrl: `http://127.0.0.1:${ports.http}/metrics`,
        });
        if (o.noWait) return s;
        try {
          await waitReady(s, name, () => {
            let text: string;
            try {
              text = Deno.readTextFileSync(log);
            } catch {
              return false;
            }
            return /"msg":"ready"/.test(text);
          });
          const odd = unexpectedListeners(
            Deno.readTextFileSync(log),
            Object.values(ports).filter((p): p is number => p !== undefined),
          );
          if (odd.length) {
            throw new Error(
              `${name} listens where the benchmark gave it no port (${
                odd.join(", ")
              }): a listener ferryConfig does not know`,
            );
          }
          return s;
        } catch (err) {
          lastErr = err;
          await s[Symbol.asyncDispose]();
          if (!/in use|AddrInUse/i.test(String(err))) break;
        }
      }
      throw lastErr;
    },
  };
}

// ---------------------------------------------------------------------------------------------
// Peers

/** mosquitto's config as the Debian package installs it, on a free port; `bridge` adds one. */
export function mosquittoConfig(
  port: number,
  dir: string,
  bridgeTo?: string,
  measuring = false,
): string {
  let c = `# As Debian's /etc/mosquitto/mosquitto.conf: persistence on, log to a file.
persistence true
persistence_location ${dir}/
log_dest file ${dir}/mosquitto.log
listener ${port} 127.0.0.1
allow_anonymous true
`;
  if (measuring) {
    // An upstream that measures what reaches it: no per-client queue or in-flight bound, which
    // would drop messages to a subscriber behind and count them as not forwarded.
    c += `max_queued_messages 0
max_inflight_messages 0
`;
  }
  if (bridgeTo) {
    const m = /^mqtt:\/\/([^:/]+):(\d+)/.exec(bridgeTo);
    if (!m) throw new TypeError(`Cannot bridge to "${bridgeTo}": want mqtt://host:port`);
    c += `connection upstream
address ${m[1]}:${m[2]}
topic devices/# out 1 "" ferry/mosquitto/
`;
  }
  return c;
}

/** Debian's mosquitto; `bridge` makes it a bridge to `StartOptions.upstream`. */
export function mosquitto(name = "mosquitto", bridge = false, measuring = false): ServerKind {
  const bin = ["/usr/sbin/mosquitto", "/usr/bin/mosquitto"].find((p) => {
    try {
      return Deno.statSync(p).isFile;
    } catch {
      return false;
    }
  }) ?? "mosquitto";
  return {
    name,
    async info() {
      const version = (await output(bin, ["-h"])).split("\n")[0];
      return {
        label: bridge ? "mosquitto as a bridge" : "mosquitto",
        command: [bin, "-c", "{dir}/mosquitto.conf"],
        version,
        config: mosquittoConfig(0, "{dir}", bridge ? "mqtt://127.0.0.1:0" : undefined).replace(
          / 0 /,
          " {free port} ",
        ),
        notes:
          (bridge
            ? "a mosquitto bridge forwarding devices/# at QoS 1 (it acknowledges devices before forwarding and queues in memory, saved only at autosave or exit: not durable like Ferry's spool). "
            : "") +
          "persistence true as Debian's packaged mosquitto.conf has it (a default install; mosquitto writes it at autosave_interval 1800 s and on exit, not per message); logging to a file as Debian's config does (log_dest file), default log types",
      };
    },
    async start(o) {
      const port = freePort();
      const conf = `${o.dir}/mosquitto.conf`;
      await Deno.writeTextFile(
        conf,
        mosquittoConfig(port, o.dir, bridge ? o.upstream : undefined, measuring),
      );
      const out = `${o.dir}/mosquitto.out`;
      const t0 = performance.now();
      const s = makeServer(name, spawnLogged(bin, ["-c", conf], out), out, t0, {
        ports: { mqtt: port },
      });
      if (o.noWait) return s;
      try {
        await waitReady(s, name, () => tcpOpen(port), 10_000);
      } catch (err) {
        await s[Symbol.asyncDispose]();
        throw new Error(`${err}\n${tail(`${o.dir}/mosquitto.log`)}`);
      }
      return s;
    },
  };
}

/** `node --version`, or `undefined` when there is no `node` to run. */
export async function nodeVersion(): Promise<string | undefined> {
  try {
    const o = await new Deno.Command("node", {
      args: ["--version"],
      stdin: "null",
      stderr: "null",
      signal: AbortSignal.timeout(5000),
    }).output();
    return o.success ? new TextDecoder().decode(o.stdout).trim() : undefined;
  } catch {
    return undefined;
  }
}

let aedesInstall: Promise<void> | undefined;

/** Installs aedes for Node once per run (`npm ci` in `bench/peers/aedes/`, bounded: 3 min). */
function ensureAedes(): Promise<void> {
  return aedesInstall ??= (async () => {
    try {
      await Deno.stat(`${AEDES_DIR}/node_modules/aedes/package.json`);
      return;
    } catch { /* install */ }
    const o = await new Deno.Command("npm", {
      args: ["ci", "--no-audit", "--no-fund", "--loglevel=error"],
      cwd: AEDES_DIR,
      stdin: "null",
      signal: AbortSignal.timeout(180_000),
    }).output();
    if (!o.success) {
      throw new Error(`npm ci in ${AEDES_DIR} failed: ${new TextDecoder().decode(o.stderr)}`);
    }
  })();
}

/** aedes on Node with `createBroker()` defaults. */
export function aedes(): ServerKind {
  return {
    name: "aedes",
    async info() {
      let version = "?";
      try {
        await ensureAedes();
        version = JSON.parse(
          await Deno.readTextFile(`${AEDES_DIR}/node_modules/aedes/package.json`),
        ).version;
      } catch { /* not installed yet */ }
      return {
        label: "aedes",
        command: ["node", "bench/peers/aedes/server.mjs", "{free port}"],
        version: `aedes ${version} on Node ${await output("node", ["--version"])}`,
        notes:
          "on Node, not Deno; Aedes.createBroker() defaults (in-memory persistence and emitter), node:net on loopback; installed by npm ci from bench/peers/aedes/package-lock.json",
      };
    },
    async start(o) {
      await ensureAedes();
      const port = freePort();
      const log = `${o.dir}/aedes.log`;
      const t0 = performance.now();
      const s = makeServer(
        "aedes",
        spawnLogged("node", [`${AEDES_DIR}/server.mjs`, String(port)], log, AEDES_DIR),
        log,
        t0,
        { ports: { mqtt: port } },
      );
      if (o.noWait) return s;
      try {
        await waitReady(s, "aedes", () => tcpOpen(port), 15_000);
      } catch (err) {
        await s[Symbol.asyncDispose]();
        throw err;
      }
      return s;
    },
  };
}

/** A CoAP ping (empty CON, RFC 7252 §4.3) answered with a reset: the server is up. */
async function coapPing(port: number): Promise<boolean> {
  const sock = Deno.listenDatagram({ transport: "udp", hostname: "127.0.0.1", port: 0 });
  try {
    await sock.send(new Uint8Array([0x40, 0, 0x12, 0x34]), {
      transport: "udp",
      hostname: "127.0.0.1",
      port,
    });
    const got = await Promise.race([sock.receive(), sleep(50).then(() => undefined)]);
    return got !== undefined;
  } catch {
    return false;
  } finally {
    sock.close();
  }
}

/** libcoap's `coap-server` (no TLS build), default options, on a free loopback port. */
export function libcoap(): ServerKind {
  const bin = ["/usr/bin/coap-server-notls", "/usr/bin/coap-server"].find((p) => {
    try {
      return Deno.statSync(p).isFile;
    } catch {
      return false;
    }
  }) ?? "coap-server-notls";
  return {
    name: "libcoap",
    async info() {
      const v = /v[\d.]+/.exec(await output(bin, ["-h"]))?.[0] ?? "?";
      return {
        label: "libcoap coap-server",
        command: [bin, "-A", "127.0.0.1", "-p", "{free port}"],
        version: `libcoap ${v}`,
        notes: "the example server of libcoap3-bin, default options; PUT /example_data",
      };
    },
    async start(o) {
      const port = freePort("udp");
      const log = `${o.dir}/libcoap.log`;
      const t0 = performance.now();
      const s = makeServer(
        "libcoap",
        spawnLogged(bin, ["-A", "127.0.0.1", "-p", String(port)], log),
        log,
        t0,
        { ports: { coap: port } },
      );
      if (o.noWait) return s;
      try {
        await waitReady(s, "libcoap", () => coapPing(port), 10_000);
      } catch (err) {
        await s[Symbol.asyncDispose]();
        throw err;
      }
      return s;
    },
  };
}

/** A floor server from `bench/peers/`, run with the runtime flags of this checkout's start task. */
export function floor(
  name: string,
  file: string,
  port: keyof Ports,
  label: string,
): ServerKind {
  const script = `${BENCH}peers/${file}`;
  return {
    name,
    async info() {
      const task = await readStartTask(HERE_CHECKOUT);
      return {
        label,
        command: [
          "deno",
          "run",
          ...task.runtimeFlags,
          `bench/peers/${file}`,
          "--port",
          "{free port}",
        ],
        notes: "run with the same runtime flags as Ferry's start task (read from deno.json)",
      };
    },
    async start(o) {
      const task = await readStartTask(HERE_CHECKOUT);
      const p = freePort();
      const log = `${o.dir}/${name}.log`;
      const t0 = performance.now();
      const s = makeServer(
        name,
        spawnLogged(Deno.execPath(), [
          "run",
          ...task.runtimeFlags,
          script,
          "--port",
          String(p),
        ], log),
        log,
        t0,
        { ports: { [port]: p } },
      );
      if (o.noWait) return s;
      try {
        await waitReady(s, name, () => tcpOpen(p), 30_000);
      } catch (err) {
        await s[Symbol.asyncDispose]();
        throw err;
      }
      return s;
    },
  };
}
