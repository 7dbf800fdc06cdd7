/**
 * Durable MQTT state across gateway restarts: the gateway runs as a child process on a temporary
 * data directory, is stopped (SIGTERM) or killed (SIGKILL), and started again on the same
 * directory; peers are MQTT.js, mosquitto_pub / mosquitto_sub and a raw-socket client.
 */

import { mqtt } from "./_dev_deps.ts";
import type { IConnackPacket, IPublishPacket } from "mqtt-packet";
import { assert, assertEquals } from "./_assert.ts";
import { RawClient, run, within } from "./_mqtt_harness.ts";
import { type GatewayProcess, startGateway } from "./_process.ts";

const PORTS = [
  "--binary-port",
  "0",
  "--http-port",
  "0",
  "--coap-port",
  "0",
  "--mqtt-port",
  "0",
  "--mqtt-ws-port",
  "0",
];

function start(dir: string, config?: object): Promise<GatewayProcess> {
  if (!config) return startGateway(["--data-dir", dir, ...PORTS]);
  const file = `${dir}/ferry.json`;
  Deno.writeTextFileSync(file, JSON.stringify(config));
  return startGateway(["--config", file, "--data-dir", dir, ...PORTS]);
}

/** Anonymous clients whose client id is a device id speak for that device (presence). */
const ANONYMOUS_PRESENCE = { mqtt: { anonymousPresence: true } };

function mqttPort(gw: GatewayProcess): number {
  return gw.addresses.mqtt.port;
}

async function stop(gw: GatewayProcess, signal: "SIGTERM" | "SIGKILL"): Promise<void> {
  gw.child.kill(signal);
  const status = await gw.status;
  if (signal === "SIGTERM") assertEquals(status.code, 0, "graceful stop did not exit 0");
}

async function withDir(fn: (dir: string) => Promise<void>): Promise<void> {
  const dir = await Deno.makeTempDir({ prefix: "ferry-persist-" });
  try {
    await fn(dir);
  } finally {
    await Deno.remove(dir, { recursive: true });
  }
}

/** An MQTT.js client that records CONNACK and every message from the first packet on. */
async function collect(
  port: number,
  clientId: string,
  o: mqtt.IClientOptions = {},
): Promise<{ client: mqtt.MqttClient; connack: IConnackPacket; got: IPublishPacket[] }> {
  const got: IPublishPacket[] = [];
  const client = mqtt.connect(`mqtt://127.0.0.1:${port}`, {
    clientId,
    clean: false,
    reconnectPeriod: 0,
    connectTimeout: 5000,
    ...o,
  });
  client.on("message", (_t, _p, packet) => got.push(packet));
  client.on("error", () => {});
  const connack = await within(
    new Promise<IConnackPacket>((r) => client.once("connect", r)),
    6000,
    "CONNACK",
  );
  return { client, connack, got };
}

async function until(cond: () => boolean, what: string, ms = 5000): Promise<void> {
  const end = Date.now() + ms;
  while (!cond()) {
    if (Date.now() > end) throw new Error(`timed out waiting for ${what}`);
    await new Promise((r) => setTimeout(r, 20));
  }
}

async function publishAll(port: number, topic: string, payloads: string[]): Promise<void> {
  for (const m of payloads) {
    // mosquitto_pub exits 0 only after the PUBACK of its QoS 1 message.
    const r = await run("mosquitto_pub", ["-p", `${port}`, "-q", "1", "-t", topic, "-m", m]);
    assertEquals(r.code, 0, `mosquitto_pub failed: ${r.stderr}`);
  }
}

async function offlineSubscriber(port: number, clientId: string, filter: string): Promise<void> {
  const { client } = await collect(port, clientId);
  await client.subscribeAsync(filter, { qos: 1 });
  await client.endAsync();
}

async function queuedSurvives(signal: "SIGTERM" | "SIGKILL"): Promise<void> {
  await withDir(async (dir) => {
    const sent = Array.from({ length: 20 }, (_, i) => `m${i}`);
    {
      await using gw = await start(dir);
      await offlineSubscriber(mqttPort(gw), "persist-sub", "persist/#");
      await publishAll(mqttPort(gw), "persist/t", sent);
      await stop(gw, signal);
    }
    await using gw = await start(dir);
    const { client, connack, got } = await collect(mqttPort(gw), "persist-sub");
    try {
      assertEquals(connack.sessionPresent, true, "session not present after the restart");
      await until(() => got.length >= sent.length, `${sent.length} messages (got ${got.length})`);
      assertEquals(got.map((p) => p.payload.toString()), sent);
      assert(got.every((p) => p.qos === 1 && p.topic === "persist/t"), "wrong QoS or topic");
    } finally {
      await client.endAsync();
    }
    await stop(gw, "SIGTERM");
  });
}

Deno.test("MQTT persistent session: QoS 1 messages queued while offline survive a graceful restart, in order, with session present", () =>
  queuedSurvives("SIGTERM"));

Deno.test("MQTT persistent session: QoS 1 messages acknowledged to the publisher survive kill -9 of the gateway", () =>
  queuedSurvives("SIGKILL"));

Deno.test("MQTT retained messages survive a restart and reach a new subscriber", async () => {
  await withDir(async (dir) => {
    {
      await using gw = await start(dir);
      const port = `${mqttPort(gw)}`;
      for (const [t, m] of [["ret/a", "A"], ["ret/b", "B"], ["ret/gone", "G"]]) {
        const r = await run("mosquitto_pub", ["-p", port, "-q", "1", "-r", "-t", t, "-m", m]);
        assertEquals(r.code, 0, r.stderr);
      }
      // An empty retained message clears the topic, on disk too.
      const r = await run("mosquitto_pub", ["-p", port, "-q", "1", "-r", "-t", "ret/gone", "-n"]);
      assertEquals(r.code, 0, r.stderr);
      await stop(gw, "SIGKILL");
    }
    await using gw = await start(dir);
    const r = await run("mosquitto_sub", [
      "-p",
      `${mqttPort(gw)}`,
      "-t",
      "ret/#",
      "-v",
      "-W",
      "2",
    ], 5000);
    const lines = r.stdout.trim().split("\n").filter(Boolean).sort();
    assertEquals(lines, ["ret/a A", "ret/b B"]);
    await stop(gw, "SIGTERM");
  });
});

Deno.test("MQTT presence: a device online when the gateway died is restored as offline, never a stale online", async () => {
  await withDir(async (dir) => {
    {
      await using gw = await start(dir, ANONYMOUS_PRESENCE);
      const { client } = await collect(mqttPort(gw), "dev-presence", { clean: true });
      // Anonymous: the device once it sends as it (docs/operations.md, Presence).
      await client.publishAsync("devices/dev-presence/telemetry", "1", { qos: 1 });
      await gw.waitForLine((l) => l.msg === "device online" && l.device === "dev-presence");
      const seen = await run("mosquitto_sub", [
        "-p",
        `${mqttPort(gw)}`,
        "-t",
        "devices/dev-presence/status",
        "-C",
        "1",
        "-W",
        "3",
      ], 5000);
      assertEquals(seen.stdout.trim(), "online");
      // Presence acknowledges nobody: give its group commit a moment before the crash.
      await new Promise((r) => setTimeout(r, 200));
      await stop(gw, "SIGKILL"); // still connected: its status was `online`
      client.end(true);
    }
    await using gw = await start(dir, ANONYMOUS_PRESENCE);
    const r = await run("mosquitto_sub", [
      "-p",
      `${mqttPort(gw)}`,
      "-t",
      "devices/dev-presence/status",
      "-C",
      "1",
      "-W",
      "3",
    ], 5000);
    assertEquals(r.stdout.trim(), "offline");
    await stop(gw, "SIGTERM");
  });
});

Deno.test("MQTT session expiry counts while the gateway is down: an expired session is gone, a live one stays", async () => {
  await withDir(async (dir) => {
    {
      await using gw = await start(dir);
      for (const [id, exp] of [["short-lived", 1], ["long-lived", 3600]] as const) {
        const { client } = await collect(mqttPort(gw), id, {
          protocolVersion: 5,
          properties: { sessionExpiryInterval: exp },
        });
        await client.subscribeAsync("exp/#", { qos: 1 });
        await client.endAsync();
      }
      await stop(gw, "SIGTERM");
    }
    await new Promise((r) => setTimeout(r, 1500)); // the short session expires meanwhile
    await using gw = await start(dir);
    const restored = await gw.waitForLine((l) => l.msg === "sessions restored");
    assertEquals([restored.restored, restored.expired], [1, 1]);
    for (const [id, present] of [["short-lived", false], ["long-lived", true]] as const) {
      const { client, connack } = await collect(mqttPort(gw), id, {
        protocolVersion: 5,
        properties: { sessionExpiryInterval: 3600 },
      });
      assertEquals(connack.sessionPresent, present, `session present of ${id}`);
      await client.endAsync();
    }
    await stop(gw, "SIGTERM");
  });
});

Deno.test("MQTT in-flight QoS 1 message is resent with DUP and its packet id after a restart", async () => {
  await withDir(async (dir) => {
    let packetId: number | undefined;
    {
      await using gw = await start(dir);
      const sub = await RawClient.connect(mqttPort(gw));
      const ack = await sub.connect({ clientId: "raw-inflight", clean: false });
      assertEquals((ack as IConnackPacket).returnCode, 0);
      await sub.send({ cmd: "subscribe", messageId: 1, subscriptions: [{ topic: "f/#", qos: 1 }] });
      assertEquals((await sub.next()).cmd, "suback");
      await publishAll(mqttPort(gw), "f/x", ["first", "second"]);
      const p1 = await sub.next() as IPublishPacket; // never acknowledged
      const p2 = await sub.next() as IPublishPacket;
      assertEquals([p1.payload.toString(), p1.dup, p2.payload.toString()], [
        "first",
        false,
        "second",
      ]);
      packetId = p1.messageId;
      // PUBACK the second only: the first stays in flight.
      await sub.send({ cmd: "puback", messageId: p2.messageId });
      await new Promise((r) => setTimeout(r, 100));
      await stop(gw, "SIGKILL");
      sub.close();
    }
    await using gw = await start(dir);
    const sub = await RawClient.connect(mqttPort(gw));
    try {
      const ack = await sub.connect({ clientId: "raw-inflight", clean: false }) as IConnackPacket;
      assertEquals(ack.sessionPresent, true);
      const again = await sub.next() as IPublishPacket;
      assertEquals(
        [again.cmd, again.payload.toString(), again.dup, again.messageId],
        ["publish", "first", true, packetId],
      );
      await sub.send({ cmd: "puback", messageId: again.messageId });
      await new Promise((r) => setTimeout(r, 200));
      assertEquals(sub.pending.length, 0, "the acknowledged second message came again");
    } finally {
      sub.close();
    }
    await stop(gw, "SIGTERM");
  });
});

Deno.test("MQTT state file corrupt: the gateway logs an error, sets the file aside and starts empty", async () => {
  await withDir(async (dir) => {
    const file = `${dir}/mqtt-state.db`;
    await Deno.writeFile(file, new TextEncoder().encode("this is not a database ".repeat(200)));
    await using gw = await start(dir);
    const line = await gw.waitForLine((l) =>
      l.level === "error" && String(l.msg).includes("state file was corrupt")
    );
    const aside = String(line.setAside);
    assert(aside.startsWith(`${file}.corrupt-`), `set aside as ${aside}`);
    assert(
      (await Deno.readTextFile(aside)).startsWith("this is not a database"),
      "bad file not kept",
    );
    // The gateway serves MQTT with a fresh state file.
    const r = await run("mosquitto_pub", [
      "-p",
      `${mqttPort(gw)}`,
      "-q",
      "1",
      "-t",
      "x",
      "-m",
      "y",
    ]);
    assertEquals(r.code, 0, r.stderr);
    await stop(gw, "SIGTERM");
  });
});
