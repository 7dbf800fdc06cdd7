import { mqtt } from "./_dev_deps.ts";
import { FbpClient } from "../src/protocols/binary/client.ts";
import { CoapServer } from "../src/protocols/coap/server.ts";
import { Code } from "../src/protocols/coap/message.ts";
import { encodeUint, Opt } from "../src/protocols/coap/option_codec.ts";
import { MqttServer } from "../src/protocols/mqtt/server.ts";
import { FakeClock } from "../src/core/clock.ts";
import { Core } from "../src/core/core.ts";
import { Bridge } from "../src/northbound/bridge.ts";
import { startNorthbound } from "../src/northbound/northbound.ts";
import { Spool } from "../src/northbound/spool.ts";
import { TopicMap } from "../src/northbound/topic_map.ts";
import { assert, assertEquals } from "./_assert.ts";
import { request, TestPeer, textOf } from "./_coap_harness.ts";
import { dec, enc, memoryLogger, waitFor } from "./_harness.ts";
import { startNorthboundHarness } from "./_northbound_harness.ts";
import { startMosquitto } from "./_mosquitto.ts";

Deno.test("Bridge forwards acknowledged FBP/1 telemetry upstream under the gateway prefix", async () => {
  await using h = await startNorthboundHarness();
  await waitFor(() => h.nb.state === "live", "the upstream link");
  const dev = await FbpClient.connect({ port: h.gw.port, id: "d1" });
  for (let i = 0; i < 10; i++) assertEquals(await dev.telemetry(enc(`m${i}`), { ack: true }), 0);
  await waitFor(
    () => h.sub.received.filter((r) => r.topic.endsWith("/telemetry")).length === 10,
    "10 upstream",
  );
  assertEquals(
    h.sub.received.filter((r) => r.topic === "ferry/gw1/devices/d1/telemetry").map((r) => r.text),
    Array.from({ length: 10 }, (_, i) => `m${i}`),
  );
  await waitFor(() => h.nb.spool.depth === 0, "the spool to drain");
  await dev.close();
});

Deno.test("A command published upstream reaches an FBP/1 device, an MQTT device and a CoAP observer, and their acks go back upstream", async () => {
  await using h = await startNorthboundHarness();
  const mqttServer = new MqttServer(h.gw.core, { hostname: "127.0.0.1", port: 0 });
  const coapServer = new CoapServer(h.gw.core, { port: 0 });
  const mqttPort = (await mqttServer.listen()).port;
  const coapPort = (await coapServer.listen()).port;
  await waitFor(() => h.nb.state === "live", "the upstream link");
  // FBP/1 device
  const fbp = await FbpClient.connect({ port: h.gw.port, id: "f1" });
  // MQTT device: subscribes to its commands and publishes its own ack
  const mq = mqtt.connect(`mqtt://127.0.0.1:${mqttPort}`, { clientId: "m1", reconnectPeriod: 0 });
  mq.on("error", () => {});
  await new Promise<void>((resolve, reject) => {
    mq.once(
      "connect",
      () => mq.subscribe("devices/m1/commands/#", { qos: 1 }, (e) => e ? reject(e) : resolve()),
    );
    mq.once("error", reject);
  });
  mq.on("message", (topic) => {
    const name = topic.split("/")[3];
    mq.publish(`devices/m1/acks/${name}`, JSON.stringify({ status: 0 }), { qos: 1 });
  });
  // CoAP device: observes its commands resource
  const coap = new TestPeer(coapPort);
  const reg = await coap.exchange(request({
    path: "d/c1/commands",
    query: ["token=x"],
    token: new Uint8Array([9]),
    options: [{ number: Opt.OBSERVE, value: encodeUint(0) }],
  }));
  assertEquals(reg.code, Code.CONTENT);
  // The downlink subscription is in place once the link is live; publish from the cloud side.
  for (const id of ["f1", "m1", "c1"]) {
    await h.sub.publish(`ferry/gw1/devices/${id}/commands/reboot`, `now-${id}`);
  }
  const cmd = await fbp.nextCommand(5000);
  assertEquals([cmd?.name, dec(cmd!.data)], ["reboot", "now-f1"]);
  const note = await coap.recv();
  assertEquals(textOf(note), "now-c1");
  await coap.send(new Uint8Array([0x60, 0, note.messageId >> 8, note.messageId & 0xff])); // ACK
  for (const id of ["f1", "m1", "c1"]) {
    await waitFor(
      () => h.sub.received.some((r) => r.topic === `ferry/gw1/devices/${id}/acks/reboot`),
      `the ack of ${id} upstream`,
    );
  }
  const f1Ack = h.sub.received.find((r) => r.topic === "ferry/gw1/devices/f1/acks/reboot")!;
  assertEquals(JSON.parse(f1Ack.text).status, 0);
  assertEquals(h.nb.bridge.stats.downlink, 3);
  await new Promise<void>((r) => mq.end(true, {}, () => r()));
  await coap.close();
  await fbp.close();
  await coapServer.close();
  await mqttServer.close();
});

Deno.test("Replay after an outage starts by itself when the link returns and is paced by the token bucket", async () => {
  await using h = await startNorthboundHarness({
    northbound: { replayRatePerSec: 1000, inflight: 100 },
  });
  await waitFor(() => h.nb.state === "live", "the upstream link");
  await h.broker.stop();
  await waitFor(() => h.nb.state !== "live", "link down");
  const devs = await Promise.all(
    ["r1", "r2", "r3"].map((id) => FbpClient.connect({ port: h.gw.port, id })),
  );
  await Promise.all(devs.map(async (d) => {
    for (let i = 0; i < 100; i++) assertEquals(await d.telemetry(enc(`${i}`), { ack: true }), 0);
  }));
  const backlog = h.nb.spool.depth;
  assertEquals(backlog, 303, "300 telemetry + 3 presence messages");
  const states: string[] = [];
  const poll = setInterval(() => states.at(-1) !== h.nb.state && states.push(h.nb.state), 2);
  try {
    await h.broker.start(); // no new device traffic from here on
    const t0 = performance.now();
    await waitFor(
      () => h.sub.received.filter((r) => r.topic.endsWith("/telemetry")).length >= 300,
      "the replay",
    );
    const ms = performance.now() - t0;
    // 1000 msg/s with a burst of 50: at least (303 - 50) / 1000 s.
    assert(ms >= 200, `replayed ${backlog} in ${ms.toFixed(0)} ms: not paced`);
    // Paced, not stalled: 303 messages at 1000/s take ~0.25 s; 10 s is 40× that, so a loaded
    // machine does not fail it while a replay that stops (or waits for a backoff) does.
    assert(ms < 10_000, `replay took ${ms.toFixed(0)} ms`);
    await waitFor(() => h.nb.state === "live", "live after the replay");
    assert(states.includes("replaying"), `states ${states}`);
  } finally {
    clearInterval(poll);
  }
  for (const id of ["r1", "r2", "r3"]) {
    const seqs = h.sub.received.filter((r) => r.topic === `ferry/gw1/devices/${id}/telemetry`)
      .map((r) => Number(r.text));
    assertEquals(seqs, Array.from({ length: 100 }, (_, i) => i), `order of ${id}`);
  }
  await Promise.all(devs.map((d) => d.close()));
});

Deno.test("Bridge speaks MQTT 5 upstream with a session expiry", async () => {
  await using h = await startNorthboundHarness({
    northbound: { protocolVersion: 5, sessionExpirySec: 60 },
  });
  await waitFor(() => h.nb.state === "live", "the upstream link");
  const dev = await FbpClient.connect({ port: h.gw.port, id: "v5" });
  assertEquals(await dev.telemetry(enc("five"), { ack: true }), 0);
  await waitFor(() => h.sub.received.some((r) => r.text === "five"), "the message upstream");
  await h.sub.publish("ferry/gw1/devices/v5/commands/ping", "p");
  assertEquals((await dev.nextCommand(5000))?.name, "ping");
  await dev.close();
});

Deno.test("Bridge publishes its retained presence upstream when it connects", async () => {
  await using h = await startNorthboundHarness({ subscribeTo: "ferry/gw1/status" });
  await waitFor(() => h.sub.received.some((r) => r.text === "online"), "online");
  assertEquals(h.sub.received.at(-1)?.topic, "ferry/gw1/status");
});

function lastRetry(lines: string[]): number {
  const l = lines.findLast((l) => l.includes('"retryInMs"'));
  return l ? JSON.parse(l).retryInMs : NaN;
}

Deno.test("Bridge backs off with capped full jitter while the upstream refuses", async () => {
  const clock = new FakeClock(0);
  const { log, lines } = memoryLogger();
  const core = new Core({ clock, log });
  const dir = await Deno.makeTempDir();
  const spool = await Spool.open(`${dir}/s.db`, { clock });
  let connects = 0;
  const bridge = new Bridge(core, spool, new TopicMap({ gatewayId: "gw" }), {
    connection: { hostname: "127.0.0.1", port: 1, clientId: "gw" },
    displayUrl: "mqtt://test",
    inflight: 10,
    replayRatePerSec: 0,
    backoffBaseMs: 100,
    backoffCapMs: 800,
    stableAfterMs: 5000,
    housekeepingMs: 60_000,
    compactAboveBytes: 1 << 30,
    clock,
    log,
    random: () => 0.999,
    connect: () => {
      connects++;
      return Promise.reject(new Error("refused"));
    },
  });
  bridge.start();
  const delays: number[] = [];
  for (let i = 0; i < 6; i++) {
    await clock.tickAsync(0);
    assertEquals(bridge.state, "backing_off");
    const delay = lastRetry(lines);
    delays.push(delay);
    const before = connects;
    await clock.tickAsync(delay - 1);
    assertEquals(connects, before, "no attempt before the delay is over");
    await clock.tickAsync(1);
    assertEquals(connects, before + 1);
  }
  // ceilings 100, 200, 400, 800 (cap), 800, ...; full jitter picks in [0, ceiling)
  assertEquals(delays, [99, 199, 399, 799, 799, 799]);
  await clock.tickAsync(0);
  const text = core.metrics.render();
  assert(
    text.includes('ferry_northbound_connect_failures_total{bridge="default"} 7'),
    "failures in /metrics",
  );
  assert(
    text.includes('ferry_northbound_state_transitions_total{bridge="default",state="backing_off"}'),
    "state in /metrics",
  );
  await bridge.close();
  assertEquals(bridge.state, "closed");
  await spool.close();
  await core.close();
  await Deno.remove(dir, { recursive: true });
});

Deno.test("Bridge resets its backoff once a connection stayed up for stableAfterMs", async () => {
  await using broker = await startMosquitto();
  const clock = new FakeClock(Date.now());
  const { log, lines } = memoryLogger();
  const core = new Core({ clock, log });
  const dir = await Deno.makeTempDir();
  const nb = await startNorthbound(
    core,
    {
      url: broker.url,
      gatewayId: "gw",
      backoffBaseMs: 100,
      backoffCapMs: 800,
      stableAfterMs: 5000,
    },
    dir,
    { random: () => 0.999 },
  );
  // Drive the fake clock while real sockets do their part, until `cond` holds.
  const until = async (cond: () => boolean, what: string) => {
    // Bounded by real time (a loaded machine runs fewer rounds per second), not a round count.
    for (const end = Date.now() + 20_000; !cond() && Date.now() < end;) {
      await clock.tickAsync(10);
      await new Promise((r) => setTimeout(r, 2));
    }
    assert(cond(), what);
  };
  await until(() => nb.state === "live", "first connection");
  await broker.stop();
  await until(() => nb.state === "backing_off", "loss noticed");
  assertEquals(lastRetry(lines), 99);
  await until(() => nb.bridge.stats.failures >= 2, "two refused attempts");
  assert(lastRetry(lines) >= 199, "backoff grows while refused");
  await broker.start();
  await until(() => nb.state === "live", "reconnected");
  await clock.tickAsync(5000); // stable
  await broker.stop();
  await until(() => nb.state === "backing_off", "second loss noticed");
  assertEquals(lastRetry(lines), 99, "backoff starts over after a stable connection");
  await core.close();
  await nb.close();
  await Deno.remove(dir, { recursive: true });
});

Deno.test("Bridge moves a message an MQTT 5 upstream refuses to the dead letters, counts it, and keeps forwarding the rest", async () => {
  const dir = await Deno.makeTempDir({ prefix: "ferry-acl-" });
  await Deno.chmod(dir, 0o755);
  await Deno.writeTextFile(
    `${dir}/acl`,
    "topic readwrite ferry/gw1/devices/ok/#\ntopic readwrite ferry/gw1/status\ntopic read ferry/gw1/devices/+/commands/#\npattern read #\n",
  );
  await Deno.chmod(`${dir}/acl`, 0o644);
  try {
    await using h = await startNorthboundHarness({
      broker: { extra: [`acl_file ${dir}/acl`] },
      northbound: { protocolVersion: 5 },
    });
    await waitFor(() => h.nb.state === "live", "the upstream link");
    const no = await FbpClient.connect({ port: h.gw.port, id: "no" });
    const ok = await FbpClient.connect({ port: h.gw.port, id: "ok" });
    assertEquals(await no.telemetry(enc("denied"), { ack: true }), 0); // durable locally
    assertEquals(await ok.telemetry(enc("allowed"), { ack: true }), 0);
    await waitFor(() => h.sub.received.some((r) => r.text === "allowed"), "the allowed message");
    await waitFor(() => h.nb.spool.depth === 0, "the spool to empty");
    assert(h.nb.bridge.stats.rejected >= 1, `rejected ${h.nb.bridge.stats.rejected}`);
    assert(
      /ferry_northbound_rejected_total\{bridge="default",reason="135"\} [1-9]/.test(
        h.gw.core.metrics.render(),
      ),
    );
    assert(!h.sub.received.some((r) => r.text === "denied"));
    // The broker refused it: it waits in the dead letters (with the device's presence, which the
    // ACL refuses too), visible and retryable, instead of blocking the link or vanishing.
    const dead = await h.nb.listDeadLetters();
    assert(
      dead.some((d) =>
        d.reason === "rejected" && d.detail === "upstream reason code 0x87" &&
        dec(d.payload) === "denied"
      ),
      JSON.stringify(dead),
    );
    await no.close();
    await ok.close();
  } finally {
    await Deno.remove(dir, { recursive: true });
  }
});

Deno.test("Bridge says offline upstream when it closes gracefully, and close is idempotent", async () => {
  await using h = await startNorthboundHarness({ subscribeTo: "ferry/gw1/status" });
  await waitFor(() => h.sub.received.at(-1)?.text === "online", "online");
  await h.nb.close();
  await h.nb.close();
  assertEquals(h.nb.state, "closed");
  await waitFor(() => h.sub.received.at(-1)?.text === "offline", "offline");
});
