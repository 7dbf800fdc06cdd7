/**
 * mosquitto's own clients over TCP and MQTT.js over WebSocket talk through Ferry, both ways.
 */

import { assertEquals } from "./_assert.ts";
import { Inbox, run, until } from "./_mqtt_harness.ts";
import { startMqttWs } from "./_mqtt_ws_harness.ts";

Deno.test("mosquitto_pub over TCP reaches an MQTT.js subscriber over WebSocket at QoS 0, 1 and 2", async () => {
  await using h = await startMqttWs();
  const sub = await h.client("ws", { protocolVersion: 5 });
  await sub.subscribeAsync("interop/#", { qos: 2 });
  const inbox = new Inbox(sub);
  for (const q of [0, 1, 2]) {
    const r = await run("mosquitto_pub", [
      "-h",
      "127.0.0.1",
      "-p",
      `${h.tcpPort}`,
      "-V",
      "mqttv311",
      "-q",
      `${q}`,
      "-t",
      `interop/q${q}`,
      "-m",
      `from mosquitto_pub q${q}`,
    ], 10_000);
    assertEquals(r.code, 0, r.stderr);
  }
  await inbox.waitFor(3, 8000);
  assertEquals(
    inbox.messages.map((m) => `${m.topic} ${m.payload} ${m.packet.qos}`).sort(),
    [
      "interop/q0 from mosquitto_pub q0 0",
      "interop/q1 from mosquitto_pub q1 1",
      "interop/q2 from mosquitto_pub q2 2",
    ],
  );
});

Deno.test("An MQTT.js publisher over WebSocket reaches mosquitto_sub over TCP (MQTT 5), retained and live", async () => {
  await using h = await startMqttWs();
  const pub = await h.client("ws", { protocolVersion: 5 });
  await pub.publishAsync("interop/retained", "kept", { qos: 1, retain: true });
  const child = new Deno.Command("mosquitto_sub", {
    args: [
      "-h",
      "127.0.0.1",
      "-p",
      `${h.tcpPort}`,
      "-V",
      "mqttv5",
      "-q",
      "1",
      "-t",
      "interop/#",
      "-v",
      "-C",
      "2",
      "-W",
      "20",
    ],
    stdout: "piped",
    stderr: "piped",
  }).spawn();
  // Its first line is the retained message: from then on it is subscribed.
  const lines: string[] = [];
  const reading = (async () => {
    let buf = "";
    for await (const chunk of child.stdout.pipeThrough(new TextDecoderStream())) {
      buf += chunk;
      const parts = buf.split("\n");
      buf = parts.pop()!;
      lines.push(...parts);
    }
  })();
  await until(() => lines.length === 1, "the retained message at mosquitto_sub", 10_000);
  await pub.publishAsync("interop/live", "from MQTT.js over ws", { qos: 1 });
  const [status, stderr] = await Promise.all([
    child.status,
    new Response(child.stderr).text(),
    reading,
  ]);
  assertEquals(status.code, 0, stderr);
  const text = [...lines].sort();
  assertEquals(text, ["interop/live from MQTT.js over ws", "interop/retained kept"]);
});
