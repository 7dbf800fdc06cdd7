/**
 * The log lines an operator reads, from a real gateway process (JSON lines), caused through real
 * sockets: one line per listener at start; MQTT connect lines as useful as mosquitto's; every
 * disconnect and offline line with its reason; failed logins on all four protocols, rate limited;
 * a socket whose first byte is no CONNECT refused at once.
 *
 * @module
 */

import { assert, assertEquals } from "./_assert.ts";
import { startFerry } from "./_ferry_process.ts";
import type { GatewayProcess } from "./_process.ts";
import { mqttConnect, RawClient, run, within } from "./_mqtt_harness.ts";
import { runCoapClient } from "./_coap_harness.ts";
import { FbpClient, HelloRefusedError } from "../src/protocols/binary/client.ts";

const DEVICES = [
  { id: "s1", token: "s1-token" },
  { id: "s2", token: "s2-token" },
  { id: "s3", token: "s3-token" },
];
const CONFIG = { auth: { anonymous: false, devices: DEVICES }, sys: { intervalSec: 0 } };

type Line = Record<string, unknown>;

function linesWhere(gw: GatewayProcess, pred: (l: Line) => boolean): Line[] {
  return gw.lines.filter(pred);
}

Deno.test("The gateway logs exactly one line per listener at start", async () => {
  await using gw = await startFerry(CONFIG);
  const listening = linesWhere(gw, (l) => /listening$/.test(String(l.msg)));
  assertEquals(
    listening.map((l) => l.msg).sort(),
    [
      "binary listening",
      "coap listening",
      "http listening",
      "mqtt listening",
      "mqttWs listening",
    ],
  );
  for (const l of listening) {
    assertEquals(l.component, "gateway");
    assert(typeof l.port === "number" && l.port > 0, JSON.stringify(l));
  }
  const mqtt = listening.find((l) => l.msg === "mqtt listening")!;
  assertEquals([mqtt.port, mqtt.tls], [gw.addresses.mqtt.port, false]);
});

Deno.test("An MQTT connect line names address, client id, protocol version, clean start, keepalive and user; disconnect and offline lines carry the reason", async () => {
  await using gw = await startFerry(CONFIG);
  const port = String(gw.addresses.mqtt.port);
  const r = await run("mosquitto_pub", [
    ...["-h", "127.0.0.1", "-p", port, "-V", "mqttv311", "-i", "s1", "-u", "s1", "-P", "s1-token"],
    ...["-k", "33", "-c", "-q", "1", "-t", "devices/s1/telemetry", "-m", "21"],
  ]);
  assertEquals(r.code, 0, r.stderr);
  const connected = await gw.waitForLine((l) =>
    l.msg === "client connected" && l.clientId === "s1"
  );
  assertEquals(connected.component, "mqtt");
  assert(/^127\.0\.0\.1:\d+$/.test(String(connected.peer)), String(connected.peer));
  assertEquals(
    [connected.protocol, connected.cleanStart, connected.keepAlive, connected.user],
    ["3.1.1", false, 33, "s1"],
  );
  const gone = await gw.waitForLine((l) => l.msg === "client disconnected" && l.clientId === "s1");
  assertEquals([gone.reason, gone.peer], ["disconnect", connected.peer]);
  const offline = await gw.waitForLine((l) => l.msg === "device offline" && l.device === "s1");
  assertEquals(offline.reason, "disconnect");

  // MQTT 5, clean start, a keepalive of 1 s, then silence: the keepalive ends it.
  const raw = await RawClient.connect(gw.addresses.mqtt.port, 5);
  const ack = await raw.connect({
    clientId: "s2",
    username: "s2",
    password: "s2-token" as never,
    keepalive: 1,
  });
  assertEquals(ack.cmd, "connack");
  const c2 = await gw.waitForLine((l) => l.msg === "client connected" && l.clientId === "s2");
  assertEquals([c2.protocol, c2.cleanStart, c2.keepAlive], ["5.0", true, 1]);
  await raw.waitClosed();
  raw.close();
  const timedOut = await gw.waitForLine((l) =>
    l.msg === "client disconnected" && l.clientId === "s2"
  );
  assertEquals(timedOut.reason, "keepalive_timeout");
  assertEquals(
    (await gw.waitForLine((l) => l.msg === "device offline" && l.device === "s2")).reason,
    "keepalive_timeout",
  );

  // A socket closed without DISCONNECT, and a session taken over by a second connection.
  const a = await mqttConnect(`mqtt://127.0.0.1:${port}`, {
    clientId: "s3",
    username: "s3",
    password: "s3-token",
  });
  const b = await mqttConnect(`mqtt://127.0.0.1:${port}`, {
    clientId: "s3",
    username: "s3",
    password: "s3-token",
  });
  const takenOver = await gw.waitForLine((l) =>
    l.msg === "client disconnected" && l.clientId === "s3"
  );
  assertEquals(takenOver.reason, "taken_over");
  a.end(true);
  b.stream.destroy(); // no DISCONNECT: the socket just ends
  await gw.waitForLine((l) => l.msg === "device offline" && l.device === "s3");
  // (The close line and the offline line come from different places: under load either may be
  // written first.)
  await gw.waitForLine((l) =>
    l.msg === "client disconnected" && l.clientId === "s3" && l.reason !== "taken_over"
  );
  const s3 = linesWhere(gw, (l) => l.msg === "client disconnected" && l.clientId === "s3");
  assertEquals(s3.map((l) => l.reason), ["taken_over", "peer_closed"]);
  const off3 = linesWhere(gw, (l) => l.msg === "device offline" && l.device === "s3");
  assertEquals(off3.map((l) => l.reason), ["peer_closed"]);
  b.end(true);
});

Deno.test("Failed logins are logged on MQTT, FBP/1, CoAP and HTTP, one line per address per interval with the count after", async () => {
  await using gw = await startFerry(CONFIG);
  const a = gw.addresses;
  // MQTT: five wrong passwords.
  for (let i = 0; i < 5; i++) {
    const raw = await RawClient.connect(a.mqtt.port, 4);
    const ack = await raw.connect({ clientId: "s1", username: "s1", password: "wrong" as never });
    assertEquals((ack as { returnCode?: number }).returnCode, 4); // bad user name or password
    raw.close();
  }
  // FBP/1
  let refused = false;
  try {
    await FbpClient.connect({ port: a.binary.port, id: "s1", token: "wrong" });
  } catch (err) {
    refused = err instanceof HelloRefusedError;
  }
  assert(refused, "FBP/1 HELLO refused");
  // CoAP
  const coap = await runCoapClient([
    ...["-m", "post", "-e", "1", "-B", "5"],
    `coap://127.0.0.1:${a.coap.port}/d/s1/telemetry?token=wrong`,
  ]);
  assert(/4\.01/.test(coap.stdout + coap.stderr), coap.stdout + coap.stderr);
  // HTTP
  const res = await fetch(`http://127.0.0.1:${a.http.port}/api/v1/devices/s1/telemetry`, {
    method: "POST",
    headers: { authorization: "Bearer wrong", "content-type": "application/json" },
    body: "{}",
  });
  await res.body?.cancel();
  assertEquals(res.status, 401);

  for (const protocol of ["mqtt", "binary", "coap", "http"]) {
    const l = await gw.waitForLine((l) => l.msg === "login refused" && l.component === protocol);
    assertEquals([l.level, l.address, l.user, l.reason], [
      "warn",
      "127.0.0.1",
      "s1",
      "bad_credentials",
    ], protocol);
  }
  // Five failures on MQTT from one address: one line now, then one saying 4 more were suppressed.
  assertEquals(
    linesWhere(gw, (l) => l.msg === "login refused" && l.component === "mqtt").length,
    1,
  );
  const repeated = await gw.waitForLine(
    (l) => l.msg === "login refused (repeated)" && l.component === "mqtt",
    30_000,
  );
  assertEquals([repeated.kind, repeated.suppressed], [
    "login_refused:127.0.0.1:bad_credentials",
    4,
  ]);
});

Deno.test("A first byte that is no CONNECT is refused at once, with a log line", async () => {
  // A connect timeout far beyond the test's: only the first-byte check can close these sockets.
  await using gw = await startFerry({ ...CONFIG, mqtt: { connectTimeoutMs: 600_000 } });
  for (const [what, bytes] of [["HTTP", "GET / HTTP/1.1\r\n"], ["TLS", "\x16\x03\x01"]] as const) {
    const conn = await Deno.connect({ hostname: "127.0.0.1", port: gw.addresses.mqtt.port });
    await conn.write(Uint8Array.from(bytes, (c) => c.charCodeAt(0)));
    const buf = new Uint8Array(64);
    const n = await within(conn.read(buf).catch(() => null), 30_000, `${what}: the close`);
    assertEquals(n, null, `${what}: closed without an answer`);
    conn.close();
  }
  const line = await gw.waitForLine((l) => l.msg === "closing connection");
  assertEquals(line.component, "mqtt");
  assert(/first byte 0x47 is not a CONNECT/.test(String(line.why)), String(line.why));
});
