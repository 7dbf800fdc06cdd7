import { assert, assertEquals } from "./_assert.ts";
import { startMqtt } from "./_mqtt_harness.ts";
import { makePki } from "./_tls.ts";
import { FakeClock } from "../src/core/clock.ts";
import { Core } from "../src/core/core.ts";
import { silentLogger } from "../src/core/logger.ts";
import { MqttServer } from "../src/protocols/mqtt/server.ts";
import { mqtt } from "./_dev_deps.ts";

Deno.test("MQTT: repeated bad passwords for a device from one address are throttled (CONNACK 0x97, retryable, even for the right one) for a minute", async () => {
  const clock = new FakeClock(Date.now());
  await using h = await startMqtt({
    core: {
      anonymous: false,
      devices: [{ id: "d1", token: "right" }],
      clock,
      authFailuresPerMinute: 3,
    },
  });
  const attempt = async (password: string) => {
    try {
      const c = await mqtt.connectAsync(h.url, {
        clientId: "d1",
        username: "d1",
        password,
        protocolVersion: 5,
        reconnectPeriod: 0,
      });
      await c.endAsync();
      return 0;
    } catch (err) {
      return (err as { code?: number }).code ?? -1;
    }
  };
  for (let i = 0; i < 3; i++) assertEquals(await attempt("wrong"), 0x86);
  assertEquals(await attempt("right"), 0x97, "not throttled");
  clock.tick(60_000);
  assertEquals(await attempt("right"), 0);
});

Deno.test("MQTT 5: a device over its rate limit gets PUBACK 0x97 (quota exceeded) and the message is not published", async () => {
  const clock = new FakeClock(Date.now());
  await using h = await startMqtt({
    core: { clock, deviceRatePerSec: 10, deviceBurst: 3 },
    server: { anonymousPresence: true }, // the anonymous client "d1" speaks for device d1
  });
  const seen: string[] = [];
  h.core.subscribe("devices/+/telemetry", {
    id: "obs",
    deliver: (m) => seen.push(new TextDecoder().decode(m.payload)),
  });
  const c = await h.client({ clientId: "d1", protocolVersion: 5 });
  const codes: number[] = [];
  for (let i = 0; i < 5; i++) {
    try {
      const r = await c.publishAsync("devices/d1/telemetry", `m${i}`, { qos: 1 });
      codes.push((r as { reasonCode?: number } | undefined)?.reasonCode ?? 0);
    } catch (err) {
      codes.push((err as { code?: number }).code ?? -1);
    }
  }
  assertEquals(codes, [0, 0, 0, 0x97, 0x97]);
  assertEquals(h.core.stats.drops.get({ protocol: "mqtt", reason: "rate_limited" }), 2);
  assertEquals(seen.length, 3);
});

Deno.test("MQTT over TLS: MQTT.js with the CA connects and publishes; the listener reports tls", async () => {
  const dir = await Deno.makeTempDir();
  try {
    const pki = await makePki(dir);
    const core = new Core({ anonymous: true, log: silentLogger });
    const server = new MqttServer(core, {
      hostname: "127.0.0.1",
      port: 0,
      tls: { certFile: pki.certFile, keyFile: pki.keyFile },
    });
    const { port } = await server.listen();
    try {
      const got: string[] = [];
      core.subscribe("devices/#", { id: "obs", deliver: (m) => got.push(m.topic) });
      const c = await mqtt.connectAsync(`mqtts://127.0.0.1:${port}`, {
        clientId: "tls-1",
        ca: pki.caPem,
        protocolVersion: 4,
        reconnectPeriod: 0,
      });
      await c.publishAsync("devices/tls-1/telemetry", "secure", { qos: 1 });
      await c.endAsync();
      assert(got.includes("devices/tls-1/telemetry"), got.join());
      // Plain MQTT to the TLS port is not served.
      let plainFailed = false;
      try {
        const p = await mqtt.connectAsync(`mqtt://127.0.0.1:${port}`, {
          clientId: "plain",
          reconnectPeriod: 0,
          connectTimeout: 1500,
        });
        await p.endAsync(true);
      } catch {
        plainFailed = true;
      }
      assert(plainFailed, "plain MQTT was served on the TLS port");
    } finally {
      await server.close();
      await core.close();
    }
  } finally {
    await Deno.remove(dir, { recursive: true });
  }
});

Deno.test("MQTT: subscriptions past maxSubscriptions are refused (v5 SUBACK 0x97, 3.1.1 0x80); re-subscribing an existing filter still works", async () => {
  await using h = await startMqtt({ server: { maxSubscriptions: 2 } });
  const c5 = await h.client({ clientId: "s5", protocolVersion: 5 });
  // MQTT.js rejects a v5 SUBSCRIBE with any failure code; the SUBACK is on the error.
  let granted: number[] = [];
  try {
    await c5.subscribeAsync(["a/1", "a/2", "a/3"], { qos: 1 });
  } catch (err) {
    granted = (err as { packet: { granted: number[] } }).packet.granted;
  }
  assertEquals(granted, [1, 1, 0x97]);
  const again = await c5.subscribeAsync("a/1", { qos: 0 });
  assertEquals(again.map((x) => x.qos), [0]);
  const c4 = await h.client({ clientId: "s4", protocolVersion: 4 });
  let g4: number[] = [];
  try {
    await c4.subscribeAsync(["b/1", "b/2", "b/3"], { qos: 1 });
  } catch (err) {
    g4 = (err as { packet: { granted: number[] } }).packet.granted;
  }
  assertEquals(g4, [1, 1, 128]);
  assertEquals(h.core.stats.drops.get({ protocol: "mqtt", reason: "subscription_refused" }), 2);
});

Deno.test("MQTT 5: a message the full spool refuses gets PUBACK 0x97 (quota exceeded) and is not published", async () => {
  const { SpoolFullError } = await import("../src/northbound/spool.ts");
  await using h = await startMqtt();
  let refuse = true;
  h.core.setAcceptHook(() => {
    if (refuse) throw new SpoolFullError("Cannot accept message: the spool is full (refuse-new)");
  });
  const seen: string[] = [];
  h.core.subscribe("devices/+/telemetry", { id: "obs", deliver: (m) => seen.push(m.topic) });
  const c = await h.client({ clientId: "d9", protocolVersion: 5 });
  let code = 0;
  try {
    await c.publishAsync("devices/d9/telemetry", "x", { qos: 1 });
  } catch (err) {
    code = (err as { code?: number }).code ?? -1;
  }
  assertEquals(code, 0x97);
  refuse = false;
  await c.publishAsync("devices/d9/telemetry", "y", { qos: 1 });
  assertEquals(seen, ["devices/d9/telemetry"]);
});
