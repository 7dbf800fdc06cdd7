/**
 * `$SYS` broker statistics through a real gateway process: an account whose ACL allows `$SYS/#`
 * reads mosquitto's `$SYS/broker/…` topics (MQTT.js and mosquitto_sub) with values that follow
 * the traffic; devices, anonymous clients and a `#` subscription do not get them; nobody
 * anonymous writes them; they are never kept in the state file; `sys.intervalSec` 0 publishes
 * none.
 *
 * @module
 */

import { assert, assertEquals } from "./_assert.ts";
import { startFerry, stopFerry } from "./_ferry_process.ts";
import { Inbox, mqttConnect, run, until } from "./_mqtt_harness.ts";
import type { MqttClient } from "./_dev_deps.ts";
import { VERSION } from "../src/version.ts";

const OPS = { name: "ops", token: "ops-pw", publish: ["probe"], subscribe: ["$SYS/#", "probe"] };
const ALL = { name: "all", token: "all-pw", publish: ["#"], subscribe: ["#"] };
const D1 = { id: "d1", token: "d1-token" };

function config(intervalSec: number, anonymous = false) {
  return {
    sys: { intervalSec },
    auth: { anonymous, devices: [D1], services: [OPS, ALL] },
  };
}

/** The latest value of each `$SYS/broker/…` statistic an inbox received. */
function latest(inbox: Inbox): Map<string, string> {
  const out = new Map<string, string>();
  for (const m of inbox.messages) {
    if (m.topic.startsWith("$SYS/broker/")) out.set(m.topic.slice(12), m.payload);
  }
  return out;
}

const num = (inbox: Inbox, key: string) => Number(latest(inbox).get(key) ?? NaN);

/** The SUBACK reason codes of subscribing `client` to `filter` (v5). */
function subackCodes(client: MqttClient, filter: string): Promise<number[]> {
  return client.subscribeAsync(filter, { qos: 0 }).then(
    (granted) => granted.map((g) => g.qos),
    (err: { packet?: { granted?: number[] } }) => {
      if (!err.packet?.granted) throw err;
      return err.packet.granted;
    },
  );
}

async function end(...clients: MqttClient[]): Promise<void> {
  await Promise.all(clients.map((c) => c.endAsync(true)));
}

Deno.test("An account allowed $SYS/# reads mosquitto's $SYS/broker topics, and their values follow the traffic", async () => {
  await using gw = await startFerry(config(1));
  const url = `mqtt://127.0.0.1:${gw.addresses.mqtt.port}`;
  const ops = await mqttConnect(url, { username: "ops", password: "ops-pw", protocolVersion: 5 });
  const inbox = new Inbox(ops);
  const granted = await ops.subscribeAsync("$SYS/#", { qos: 0 });
  assertEquals(granted.map((g) => g.qos), [0]);
  await until(() => latest(inbox).has("publish/messages/received"), "the first $SYS round");
  // Retained: the first values arrive at once, flagged as retained.
  const first = inbox.messages.find((m) => m.topic === "$SYS/broker/version")!;
  assertEquals(first.payload, `ferry ${VERSION}`);
  assert(first.packet.retain, "version is retained");
  for (
    const key of [
      "uptime",
      "clients/connected",
      "messages/received",
      "messages/sent",
      "publish/messages/received",
      "publish/messages/sent",
      "bytes/received",
      "bytes/sent",
      "retained messages/count",
      "subscriptions/count",
    ]
  ) assert(latest(inbox).has(key), `$SYS/broker/${key} published`);
  assert(/^\d+ seconds$/.test(latest(inbox).get("uptime")!), latest(inbox).get("uptime"));
  const received0 = num(inbox, "publish/messages/received");
  const bytes0 = num(inbox, "bytes/received");
  const uptime0 = parseInt(latest(inbox).get("uptime")!);

  // Traffic: a device connects and publishes 5 messages.
  const d1 = await mqttConnect(url, {
    clientId: "d1",
    username: "d1",
    password: "d1-token",
    protocolVersion: 4,
  });
  for (let i = 0; i < 5; i++) await d1.publishAsync("devices/d1/telemetry", `${i}`, { qos: 1 });
  await until(
    () =>
      num(inbox, "publish/messages/received") === received0 + 5 &&
      num(inbox, "clients/connected") === 2 && num(inbox, "bytes/received") > bytes0,
    `publish/messages/received ${received0} + 5 and 2 clients (got ${
      JSON.stringify(Object.fromEntries(latest(inbox)))
    })`,
  );
  assert(parseInt(latest(inbox).get("uptime")!) > uptime0, "uptime moves");
  assert(num(inbox, "subscriptions/count") >= 1);
  assertEquals(num(inbox, "devices/online"), 1);
  await end(ops, d1);
});

Deno.test("mosquitto_sub reads $SYS as the allowed account; a device and an anonymous client are refused $SYS/#", async () => {
  await using gw = await startFerry(config(1, true));
  const port = String(gw.addresses.mqtt.port);
  const sub = (...args: string[]) =>
    run("mosquitto_sub", ["-h", "127.0.0.1", "-p", port, "-V", "mqttv5", ...args], 20_000);
  const ok = await sub("-u", "ops", "-P", "ops-pw", "-t", "$SYS/broker/version", "-C", "1");
  assertEquals([ok.code, ok.stdout.trim()], [0, `ferry ${VERSION}`]);
  for (
    const who of [
      ["-i", "d1", "-u", "d1", "-P", "d1-token"], // a device
      ["-i", "anon-1"], // anonymous
      ["-u", "all", "-P", "all-pw"], // a service whose ACL is # (which does not reach $SYS)
    ]
  ) {
    const r = await sub(...who, "-t", "$SYS/#", "-C", "1", "-W", "10");
    // mosquitto_sub ends at once: "All subscription requests were denied."
    assert(/denied/i.test(r.stderr), `${who.join(" ")}: ${r.stderr}`);
    assertEquals(r.stdout, "");
  }
});

Deno.test("A # subscription gets no $SYS topic, and an anonymous client cannot publish to $SYS", async () => {
  await using gw = await startFerry(config(1, true));
  const url = `mqtt://127.0.0.1:${gw.addresses.mqtt.port}`;
  const all = await mqttConnect(url, { username: "all", password: "all-pw", protocolVersion: 5 });
  const allInbox = new Inbox(all);
  await all.subscribeAsync("#", { qos: 0 });
  const anon = await mqttConnect(url, { clientId: "anon-2", protocolVersion: 5 });
  const anonInbox = new Inbox(anon);
  assertEquals((await anon.subscribeAsync("#", { qos: 0 })).map((g) => g.qos), [0]);
  assertEquals(await subackCodes(anon, "$SYS/broker/+"), [0x87]);
  // [MQTT-4.7.2-1] a spoofed statistic: refused (PUBACK 0x87 Not authorized)
  const spoof = await anon.publishAsync("$SYS/broker/version", "evil 6.6.6", {
    qos: 1,
    retain: true,
  }).then(() => 0, (err: { code?: number }) => err.code);
  assertEquals(spoof, 0x87);

  const ops = await mqttConnect(url, { username: "ops", password: "ops-pw", protocolVersion: 5 });
  const opsInbox = new Inbox(ops);
  await ops.subscribeAsync("$SYS/#", { qos: 0 });
  // Two rounds after the # subscriptions were made: an uptime of a later second.
  await until(() => latest(opsInbox).has("uptime"), "a first round");
  const u0 = parseInt(latest(opsInbox).get("uptime")!);
  await until(() => parseInt(latest(opsInbox).get("uptime")!) >= u0 + 2, "two more rounds");
  assertEquals(latest(opsInbox).get("version"), `ferry ${VERSION}`); // not the spoofed one
  for (const inbox of [allInbox, anonInbox]) {
    assertEquals(inbox.messages.filter((m) => m.topic.startsWith("$")).map((m) => m.topic), []);
  }
  await end(all, anon, ops);
});

Deno.test("$SYS statistics are not kept in the state file, and sys.intervalSec 0 publishes none", async () => {
  const dataDir = await Deno.makeTempDir({ prefix: "ferry-sys-" });
  try {
    {
      const gw = await startFerry(config(1), dataDir);
      const url = `mqtt://127.0.0.1:${gw.addresses.mqtt.port}`;
      const ops = await mqttConnect(url, {
        username: "ops",
        password: "ops-pw",
        protocolVersion: 5,
      });
      const inbox = new Inbox(ops);
      await ops.subscribeAsync("$SYS/#", { qos: 0 });
      await until(() => latest(inbox).has("version"), "$SYS while on");
      await end(ops);
      assertEquals((await stopFerry(gw)).code, 0);
      await gw[Symbol.asyncDispose]();
    }
    await using gw = await startFerry(config(0), dataDir);
    const opened = await gw.waitForLine((l) => l.msg === "state file opened");
    assertEquals(opened.retained, 0); // none of the $SYS retained messages was written
    const url = `mqtt://127.0.0.1:${gw.addresses.mqtt.port}`;
    const ops = await mqttConnect(url, { username: "ops", password: "ops-pw", protocolVersion: 5 });
    const inbox = new Inbox(ops);
    await ops.subscribeAsync(["$SYS/#", "probe"], { qos: 1 });
    await ops.publishAsync("probe", "p", { qos: 1 });
    await inbox.waitFor(1);
    // Retained messages come right after SUBACK, before the probe: there were none.
    assertEquals(inbox.messages.map((m) => m.topic), ["probe"]);
    await end(ops);
  } finally {
    await Deno.remove(dataDir, { recursive: true }).catch(() => {});
  }
});
