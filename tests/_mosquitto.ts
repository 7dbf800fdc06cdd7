/**
 * Test helper: a real Debian `mosquitto` on a free loopback port, which can be stopped and started
 * again on the same port, and a real MQTT.js subscriber that records what it receives.
 *
 * @module
 */

import { mqtt } from "./_dev_deps.ts";

const MOSQUITTO = "/usr/sbin/mosquitto";

/** Options of {@link startMosquitto}. */
export interface MosquittoOptions {
  /** Keep sessions and queued messages across restarts (saved on a graceful stop). @default false */
  persistence?: boolean;
  /** Extra configuration lines (after the main listener: more listeners, say). */
  extra?: string[];
  /** Lines before everything else (`per_listener_settings true`, say). */
  prelude?: string[];
}

/** A running (or stopped) broker. */
export interface Mosquitto extends AsyncDisposable {
  /** Listening port (the same across restarts). */
  readonly port: number;
  /** The broker's directory (config, persistence). */
  readonly dir: string;
  /** `mqtt://127.0.0.1:port`. */
  readonly url: string;
  /** True while the process runs. */
  readonly running: boolean;
  /** Stops the broker (SIGTERM: graceful, saves persistence; SIGKILL: abrupt). */
  stop(signal?: "SIGTERM" | "SIGKILL"): Promise<void>;
  /** Starts it again on the same port and waits until it accepts connections. */
  start(): Promise<void>;
}

/**
 * A free loopback TCP port below the kernel's ephemeral range (32768–60999 by default), so that
 * while a broker is stopped no other test's connection or port-0 listener can take its port
 * before it starts again on it.
 */
export function freePort(): number {
  for (let i = 0; i < 1000; i++) {
    const port = 20_000 + Math.floor(Math.random() * 12_000);
    try {
      Deno.listen({ hostname: "127.0.0.1", port }).close();
      return port;
    } catch { /* taken: try another */ }
  }
  throw new Error("no free port in 20000-31999");
}

async function waitAccepting(port: number, child: Deno.ChildProcess, timeoutMs = 20_000) {
  const deadline = Date.now() + timeoutMs;
  let exited = false;
  child.status.then(() => exited = true);
  for (let i = 0; i < 1000; i++) {
    try {
      const c = await Deno.connect({ hostname: "127.0.0.1", port });
      c.close();
      return;
    } catch {
      if (exited) throw new Error(`mosquitto exited before listening on ${port}`);
      if (Date.now() > deadline) throw new Error(`mosquitto not accepting on ${port}`);
      await new Promise((r) => setTimeout(r, 20));
    }
  }
}

/** Starts mosquitto with `listener <free port> 127.0.0.1` and `allow_anonymous true`. */
export async function startMosquitto(options: MosquittoOptions = {}): Promise<Mosquitto> {
  const dir = await Deno.makeTempDir({ prefix: "ferry-mosq-" });
  // Started as root, mosquitto drops to the `mosquitto` user: let it write its persistence file.
  await Deno.chmod(dir, 0o777);
  const port = freePort();
  const conf = `${dir}/mosquitto.conf`;
  await Deno.writeTextFile(
    conf,
    [
      ...(options.prelude ?? []),
      `listener ${port} 127.0.0.1`,
      "allow_anonymous true",
      `persistence ${options.persistence ? "true" : "false"}`,
      `persistence_location ${dir}/`,
      "max_queued_messages 1000000",
      "max_inflight_messages 100",
      "log_dest none",
      ...(options.extra ?? []),
    ].join("\n") + "\n",
  );
  let child: Deno.ChildProcess | undefined;
  const start = async () => {
    if (child) return;
    child = new Deno.Command(MOSQUITTO, {
      args: ["-c", conf],
      stdin: "null",
      stdout: "null",
      stderr: "null",
    }).spawn();
    await waitAccepting(port, child);
  };
  const stop = async (signal: "SIGTERM" | "SIGKILL" = "SIGTERM") => {
    const c = child;
    if (!c) return;
    child = undefined;
    try {
      c.kill(signal);
    } catch { /* already gone */ }
    await c.status;
  };
  await start();
  return {
    port,
    dir,
    url: `mqtt://127.0.0.1:${port}`,
    get running() {
      return child !== undefined;
    },
    stop,
    start,
    async [Symbol.asyncDispose]() {
      await stop("SIGKILL");
      await Deno.remove(dir, { recursive: true }).catch(() => {});
    },
  };
}

/** One message received by a {@link Subscriber}. */
export interface Received {
  /** Topic. */
  topic: string;
  /** Payload text. */
  text: string;
  /** DUP flag. */
  dup: boolean;
}

/** A recording MQTT.js subscriber. */
export interface Subscriber extends AsyncDisposable {
  /** Everything received, in order. */
  readonly received: Received[];
  /** Publishes (for downlink tests). */
  publish(topic: string, payload: string, qos?: 0 | 1): Promise<void>;
  /** Number of times the client connected. */
  readonly connects: number;
}

/**
 * Connects MQTT.js to `url` (persistent session, automatic reconnect every 100 ms) and subscribes
 * to `filter` at QoS 1.
 */
export async function subscribe(
  url: string,
  filter: string,
  options: { clientId?: string; protocolVersion?: 4 | 5 } = {},
): Promise<Subscriber> {
  const received: Received[] = [];
  let connects = 0;
  const client = mqtt.connect(url, {
    clientId: options.clientId ?? `sub-${crypto.randomUUID().slice(0, 8)}`,
    clean: false,
    protocolVersion: options.protocolVersion ?? 4,
    reconnectPeriod: 100,
    connectTimeout: 5000,
    keepalive: 30,
    properties: options.protocolVersion === 5 ? { sessionExpiryInterval: 3600 } : undefined,
  });
  client.on("connect", () => connects++);
  client.on("error", () => {});
  client.on("message", (topic, payload, packet) => {
    received.push({ topic, text: new TextDecoder().decode(payload), dup: packet.dup });
  });
  await new Promise<void>((resolve, reject) => {
    const t = setTimeout(() => reject(new Error(`subscriber could not connect to ${url}`)), 5000);
    client.once("connect", () => {
      client.subscribe(filter, { qos: 1 }, (err) => {
        clearTimeout(t);
        if (err) reject(err);
        else resolve();
      });
    });
  });
  return {
    received,
    get connects() {
      return connects;
    },
    publish: (topic, payload, qos = 1) =>
      new Promise<void>((resolve, reject) =>
        client.publish(topic, payload, { qos }, (err) => err ? reject(err) : resolve())
      ),
    async [Symbol.asyncDispose]() {
      await new Promise<void>((r) => client.end(true, {}, () => r()));
    },
  };
}
