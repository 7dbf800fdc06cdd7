/**
 * Attacks on the core and MQTT, each against a real gateway process (`main.ts` started as a child
 * with a config file) over real sockets, asserting the defence docs/security.md promises:
 * sessions belong to their identity, devices publish only their own telemetry and acks, wrong
 * tokens for one device lock out only that device and only with a retryable answer, nothing is
 * acknowledged that was not made durable, a subscriber that never reads cannot hold memory, and
 * no client can make the gateway buffer more than its payload budget.
 *
 * @module
 */

import mqttPacket, { type Packet } from "mqtt-packet";
import { Buffer } from "node:buffer";
import { Code } from "../src/protocols/coap/message.ts";
import { FbpClient, HelloRefusedError } from "../src/protocols/binary/client.ts";
import {
  AckStatus,
  encodeFrame,
  encodeTelemetry,
  FLAG_ACK_REQUESTED,
  FrameType,
  HelloStatus,
} from "../src/protocols/binary/frame.ts";
import { assert, assertEquals } from "./_assert.ts";
import { request, TestPeer } from "./_coap_harness.ts";
import { smallDisk } from "./_disk.ts";
import { RawClient } from "./_mqtt_harness.ts";
import { type GatewayProcess, startGateway } from "./_process.ts";

/** Starts a gateway process with `config` (ports 0) in a temp data dir. */
async function gateway(
  config: Record<string, unknown>,
  dataDir?: string,
): Promise<GatewayProcess & { dir: string }> {
  const dir = dataDir ?? await Deno.makeTempDir({ prefix: "ferry-attack-" });
  const file = `${dir}/ferry.json`;
  await Deno.writeTextFile(
    file,
    JSON.stringify({
      dataDir: dir,
      binary: { port: 0 },
      mqtt: { port: 0, websocket: { port: 0 } },
      coap: { port: 0 },
      http: { port: 0 },
      ...config,
    }),
  );
  const g = await startGateway(["--config", file]);
  return Object.assign(g, {
    dir,
    async [Symbol.asyncDispose]() {
      try {
        g.child.kill("SIGTERM");
      } catch { /* gone */ }
      await g.status;
      if (!dataDir) await Deno.remove(dir, { recursive: true }).catch(() => {});
    },
  });
}

/** Waits until the gateway's payload budget holds at least `bytes` (read from /metrics). */
async function budgetUsed(g: GatewayProcess, bytes: number): Promise<void> {
  const url = `http://127.0.0.1:${g.addresses.http.port}/metrics`;
  for (let i = 0; i < 400; i++) {
    const text = await (await fetch(url)).text();
    const m = /ferry_payload_budget_used_bytes (\d+)/.exec(text);
    if (m && Number(m[1]) >= bytes) return;
    await new Promise((r) => setTimeout(r, 50));
  }
  throw new Error(`payload budget never reached ${bytes} bytes`);
}

const DEVICES = [{ id: "devA", token: "ta" }, { id: "devB", token: "tb" }];
const pw = (s: string) => Buffer.from(s);
const reason = (p: Packet) => (p as { reasonCode?: number }).reasonCode ?? 0;

Deno.test("Attack: a device's own token does not open another device's session (client id must be its device id)", async () => {
  await using g = await gateway({ auth: { devices: DEVICES } });
  const port = g.addresses.mqtt.port;
  // devB leaves a persistent session behind.
  const b = await RawClient.connect(port, 5);
  const ok = await b.connect({
    clientId: "devB",
    username: "devB",
    password: pw("tb"),
    clean: false,
    properties: { sessionExpiryInterval: 300 },
  });
  assertEquals(reason(ok), 0);
  await b.send({ cmd: "disconnect" });
  await b.waitClosed();
  // devA presents its own credentials with devB's client id.
  const a = await RawClient.connect(port, 5);
  const refused = await a.connect({
    clientId: "devB",
    username: "devA",
    password: pw("ta"),
    clean: false,
    properties: { sessionExpiryInterval: 300 },
  });
  assertEquals(reason(refused), 0x85, "client identifier not valid");
  await a.waitClosed();
  // devB's session is still there for devB.
  const back = await RawClient.connect(port, 5);
  const again = await back.connect({
    clientId: "devB",
    username: "devB",
    password: pw("tb"),
    clean: false,
    properties: { sessionExpiryInterval: 300 },
  });
  assertEquals([reason(again), (again as { sessionPresent?: boolean }).sessionPresent], [0, true]);
  back.close();
});

Deno.test("Attack: a service account cannot take over another principal's session or squat a device's client id", async () => {
  await using g = await gateway({
    auth: {
      devices: DEVICES,
      services: [
        { name: "dash", token: "d1", subscribe: ["devices/#"], publish: [] },
        { name: "intruder", token: "i1", subscribe: ["devices/devA/#"], publish: [] },
      ],
    },
  });
  const port = g.addresses.mqtt.port;
  const dash = await RawClient.connect(port, 5);
  assertEquals(
    reason(
      await dash.connect({
        clientId: "console",
        username: "dash",
        password: pw("d1"),
        clean: false,
        properties: { sessionExpiryInterval: 300 },
      }),
    ),
    0,
  );
  const intruder = await RawClient.connect(port, 5);
  const r1 = await intruder.connect({
    clientId: "console",
    username: "intruder",
    password: pw("i1"),
  });
  assertEquals(reason(r1), 0x87, "another principal's session");
  assert(!dash.closed, "the owner was kicked off");
  const squat = await RawClient.connect(port, 5);
  const r2 = await squat.connect({ clientId: "devA", username: "intruder", password: pw("i1") });
  assertEquals(reason(r2), 0x87, "a registered device's client id");
  dash.close();
});

Deno.test("Attack: wrong CoAP tokens for one device lock out only that device there, with retryable answers", async () => {
  await using g = await gateway({
    auth: { devices: DEVICES },
    limits: { authFailuresPerMinute: 3 },
  });
  await using peer = new TestPeer(g.addresses.coap.port);
  const codes: number[] = [];
  for (let i = 0; i < 5; i++) {
    const r = await peer.exchange(
      request({ code: 2, path: "d/devA/telemetry", query: ["token=wrong"], payload: "x" }),
    );
    codes.push(r.code);
  }
  assertEquals(codes.slice(0, 3), [Code.UNAUTHORIZED, Code.UNAUTHORIZED, Code.UNAUTHORIZED]);
  assertEquals(codes.slice(3), [Code.TOO_MANY_REQUESTS, Code.TOO_MANY_REQUESTS]);
  // Another device on the same address still gets in, on every protocol.
  const fbpB = await FbpClient.connect({ port: g.addresses.binary.port, id: "devB", token: "tb" });
  await fbpB.close();
  const mqttB = await RawClient.connect(g.addresses.mqtt.port, 5);
  assertEquals(
    reason(await mqttB.connect({ clientId: "devB", username: "devB", password: pw("tb") })),
    0,
  );
  mqttB.close();
  // The throttled device is told to retry, not that its token is bad.
  const status = await FbpClient.connect({ port: g.addresses.binary.port, id: "devA", token: "ta" })
    .then((c) => (c.close(), HelloStatus.OK))
    .catch((e) => e instanceof HelloRefusedError ? e.status : -1);
  assertEquals(status, HelloStatus.UNAVAILABLE);
  const mqttA = await RawClient.connect(g.addresses.mqtt.port, 5);
  assertEquals(
    reason(await mqttA.connect({ clientId: "devA", username: "devA", password: pw("ta") })),
    0x97,
  );
  assert(!g.stderr().includes('"ta"') && !g.stderr().includes("wrong"), "a token was logged");
});

Deno.test("Attack: a device cannot publish outside its telemetry and acks (status, commands, //commands)", async () => {
  await using g = await gateway({ auth: { devices: DEVICES } });
  const port = g.addresses.mqtt.port;
  const dev = await RawClient.connect(port, 5);
  await dev.connect({ clientId: "devA", username: "devA", password: pw("ta") });
  const attempt = async (topic: string, id: number) => {
    await dev.send({ cmd: "publish", topic, payload: "x", qos: 1, messageId: id } as Packet);
    return reason(await dev.next());
  };
  assertEquals(await attempt("devices/devA/status", 1), 0x87);
  assertEquals(await attempt("devices/devA/status/x", 2), 0x87);
  assertEquals(await attempt("devices/devA/commands", 3), 0x87);
  assertEquals(await attempt("devices/devA/commands/reboot", 4), 0x87);
  assertEquals(await attempt("devices/devA//commands/x", 5), 0x87);
  assertEquals(await attempt("devices/devA/telemetry/Bad Channel", 6), 0x87);
  assertEquals(await attempt("devices/devB/telemetry", 7), 0x87);
  assertEquals(await attempt("devices/devA/telemetry/temp", 8), 0);
  assertEquals(await attempt("devices/devA/acks/reboot", 9), 0);
  dev.close();
});

Deno.test("Attack: with the disk full, a QoS 1 publish whose state cannot be written is never acknowledged", async () => {
  await using disk = await smallDisk(1024);
  await using g = await gateway({ auth: { anonymous: true } }, disk.path);
  const port = g.addresses.mqtt.port;
  // An offline persistent session that will queue what is published (written to the state file).
  const sub = await RawClient.connect(port, 5);
  await sub.connect({
    clientId: "keeper",
    clean: false,
    properties: { sessionExpiryInterval: 600 },
  });
  await sub.send({ cmd: "subscribe", messageId: 1, subscriptions: [{ topic: "t/#", qos: 1 }] });
  await sub.next();
  await sub.send({ cmd: "disconnect" });
  await sub.waitClosed();
  await disk.fill();
  const v5 = await RawClient.connect(port, 5);
  await v5.connect({ clientId: "pub5" });
  for (let i = 1; i <= 5; i++) {
    await v5.send(
      { cmd: "publish", topic: "t/x", payload: "x".repeat(4000), qos: 1, messageId: i } as Packet,
    );
    const ack = await v5.next();
    assertEquals([ack.cmd, reason(ack) === 0], ["puback", false], `message ${i} acknowledged`);
  }
  v5.close();
  const v4 = await RawClient.connect(port, 4);
  await v4.connect({ clientId: "pub4" });
  await v4.send(
    { cmd: "publish", topic: "t/x", payload: "y".repeat(4000), qos: 1, messageId: 1 } as Packet,
  );
  const seen = await v4.waitClosed();
  assert(!seen.some((p) => p.cmd === "puback"), "3.1.1 publish acknowledged without its state");
  assert(g.lines.some((l) => l.msg === "state not written"), "the failed commit was not logged");
});

Deno.test("Attack: a QoS 0 subscriber that never reads is closed and holds no unbounded memory", async () => {
  await using g = await gateway({
    auth: { anonymous: true },
    mqtt: { port: 0, websocket: { port: 0 }, drainTimeoutMs: 1000 },
    log: { level: "debug" },
  });
  const port = g.addresses.mqtt.port;
  const lazy = await RawClient.connect(port, 4);
  await lazy.connect({ clientId: "lazy" });
  await lazy.send({ cmd: "subscribe", messageId: 1, subscriptions: [{ topic: "#", qos: 0 }] });
  await lazy.next();
  lazy.stopReading(); // from now on it reads nothing
  const pub = await Deno.connect({ port });
  const v4 = { protocolVersion: 4 } as const;
  await pub.write(mqttPacket.generate({
    cmd: "connect",
    protocolId: "MQTT",
    protocolVersion: 4,
    clean: true,
    clientId: "pub",
    keepalive: 0,
  }, v4));
  const one = mqttPacket.generate({
    cmd: "publish",
    topic: "t/flood",
    payload: Buffer.alloc(1000),
    qos: 0,
    dup: false,
    retain: false,
  }, v4);
  const batch = new Uint8Array(one.length * 64);
  for (let i = 0; i < 64; i++) batch.set(one, i * one.length);
  let closed = false;
  const sent = (async () => {
    for (let i = 0; i < 200_000 && !closed; i++) {
      try {
        for (let off = 0; off < batch.length;) off += await pub.write(batch.subarray(off));
      } catch {
        break;
      }
    }
  })();
  // Closed once its socket stopped taking bytes for drainTimeoutMs (the kernel buffers a few MB
  // first): a failure deadline only, wide for a loaded machine.
  const line = await g.waitForLine(
    (l) => l.msg === "client disconnected" && l.clientId === "lazy",
    90_000,
  );
  closed = true;
  pub.close();
  await sent;
  assertEquals(line.reason, "slow_consumer");
  assert(await lazy.closedByPeer(30_000), "the lazy subscriber's socket is still open");
  lazy.close();
});

Deno.test("Attack: a packet over maxPacketSize is refused at its header, and large packets past the payload budget are refused, not buffered", async () => {
  await using g = await gateway({
    auth: { anonymous: true },
    limits: { payloadBudgetBytes: 1_000_000 },
    mqtt: { port: 0, websocket: { port: 0 }, maxPacketSize: 4_000_000 },
  });
  const port = g.addresses.mqtt.port;
  // 200 MB announced: refused from the Remaining Length alone.
  const huge = await RawClient.connect(port, 5);
  await huge.connect({ clientId: "huge" });
  await huge.send(new Uint8Array([0x30, 0x80, 0x80, 0x80, 0x60])); // 200 MiB remaining length
  const gone = await huge.waitClosed();
  assertEquals(gone.map((p) => [p.cmd, reason(p)]), [["disconnect", 0x95]]);
  // Two clients each start a 700 kB packet: the first is buffered, the second exceeds the budget.
  const first = await RawClient.connect(port, 5);
  await first.connect({ clientId: "first" });
  await first.send(new Uint8Array([0x30, 0xb0, 0xdc, 0x2a, 0, 1, 0x74])); // ~700 kB, topic "t"
  await budgetUsed(g, 690_000);
  const second = await RawClient.connect(port, 5);
  await second.connect({ clientId: "second" });
  await second.send(new Uint8Array([0x30, 0xb0, 0xdc, 0x2a, 0, 1, 0x74]));
  const refused = await second.waitClosed();
  assertEquals(refused.map((p) => [p.cmd, reason(p)]), [["disconnect", 0x97]]);
  first.close();
});

Deno.test("Attack: FBP/1 frames past the payload budget are read, dropped and answered OVERLOADED, the connection stays", async () => {
  await using g = await gateway({
    auth: { anonymous: true },
    limits: { payloadBudgetBytes: 65_536 },
  });
  const port = g.addresses.binary.port;
  // A device starts a 40 kB frame and stalls: 40 kB of the 64 kB budget are reserved.
  const stall = await FbpClient.connect({ port, id: "staller" });
  const big = encodeFrame({
    type: FrameType.TELEMETRY,
    flags: FLAG_ACK_REQUESTED,
    seq: 9,
    payload: encodeTelemetry({ channel: "", data: new Uint8Array(40_000) }),
  });
  await stall.sendRaw(big.subarray(0, 1000));
  await budgetUsed(g, 40_000);
  // Another sends a whole 40 kB frame with ACK_REQUESTED: it cannot be taken now.
  const dev = await FbpClient.connect({ port, id: "other" });
  await dev.sendRaw(big);
  const ack = await dev.nextFrame(20_000, (f) => f.type === FrameType.ACK);
  assertEquals([ack?.seq, ack?.payload[0]], [9, AckStatus.OVERLOADED]);
  await dev.ping(); // still connected
  await Promise.all([stall.close(), dev.close()]);
});
