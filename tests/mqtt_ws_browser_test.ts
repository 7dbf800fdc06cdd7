/**
 * A real browser: headless Chromium opens a page (served by the test) that loads MQTT.js's own
 * browser bundle from its npm package, connects to Ferry over WebSocket with the token in the URL,
 * sees the telemetry an FBP/1 device sends, and sends a command the FBP/1 device receives.
 */

import { assert, assertEquals } from "./_assert.ts";
import { openPage } from "./_chromium.ts";
import { within } from "./_mqtt_harness.ts";
import { startMqttWs } from "./_mqtt_ws_harness.ts";
import { BinaryServer, FbpClient } from "../src/protocols/binary/mod.ts";

/** MQTT.js's browser bundle, from the npm package the tests already use (no CDN). */
async function mqttBundle(): Promise<string> {
  const entry = new URL(import.meta.resolve("npm:mqtt@5.16.0")); // …/mqtt/5.16.0/build/index.js
  return await Deno.readTextFile(new URL("../dist/mqtt.min.js", entry));
}

function page(wsUrl: string): string {
  return `<!doctype html>
<html><head><meta charset="utf-8"><title>Ferry over WebSocket</title>
<script src="/mqtt.min.js"></script></head>
<body><pre id="log"></pre><script>
window.received = [];
window.state = "connecting";
// A browser cannot put credentials in the upgrade's headers: the token goes in the URL, the
// account name in CONNECT.
const client = mqtt.connect(${JSON.stringify(wsUrl)}, {
  username: "dash",
  clientId: "browser-1",
  protocolVersion: 5,
  reconnectPeriod: 0,
});
client.on("connect", () => {
  window.state = "connected";
  client.subscribe("devices/+/telemetry/#", { qos: 1 }, (err) => {
    window.state = err ? "subscribe failed: " + err.message : "subscribed";
  });
});
client.on("message", (topic, payload) => {
  window.received.push({ topic, payload: new TextDecoder().decode(payload) });
  document.getElementById("log").textContent += topic + "\\n";
});
client.on("error", (e) => { window.state = "error: " + e.message; });
window.sendCommand = (id, name, data) => new Promise((resolve, reject) =>
  client.publish("devices/" + id + "/commands/" + name, data, { qos: 1 },
    (err) => err ? reject(err) : resolve("sent")));
</script></body></html>`;
}

Deno.test("Headless Chromium with MQTT.js over WebSocket sees an FBP/1 device's telemetry and sends it a command", async () => {
  const bundle = await mqttBundle();
  let html = "";
  const server = Deno.serve({ hostname: "127.0.0.1", port: 0, onListen() {} }, (req) => {
    const path = new URL(req.url).pathname;
    if (path === "/mqtt.min.js") {
      return new Response(bundle, { headers: { "content-type": "text/javascript" } });
    }
    if (path === "/") return new Response(html, { headers: { "content-type": "text/html" } });
    return new Response("not found", { status: 404 });
  });
  // The page's origin is the only one allowed: the browser sends it, Ferry checks it.
  const origin = `http://127.0.0.1:${server.addr.port}`;
  await using h = await startMqttWs({
    core: {
      anonymous: false,
      devices: [{ id: "fbp-7", token: "t7" }],
      services: [{
        name: "dash",
        token: "dash-token",
        publish: ["devices/+/commands/#"],
        subscribe: ["devices/#"],
      }],
    },
    websocket: { allowedOrigins: [origin] },
  });
  html = page(`ws://127.0.0.1:${h.wsPort}/mqtt?access_token=dash-token`);
  const binary = new BinaryServer(h.core, { hostname: "127.0.0.1", port: 0 });
  const { port: fbpPort } = await binary.listen();
  const dev = await FbpClient.connect({ port: fbpPort, id: "fbp-7", token: "t7" });
  try {
    await using browser = await openPage();
    await browser.goto(`${origin}/`);
    await browser.waitFor(
      `window.state !== "connecting" && window.state !== "connected"`,
      "subscribed",
      20_000,
    );
    assertEquals(await browser.evaluate<string>("window.state"), "subscribed");
    // FBP/1 → Ferry → the page.
    await dev.telemetry(new TextEncoder().encode("21.5"), { channel: "temp", ack: true });
    await browser.waitFor(
      `window.received.some((m) => m.topic === "devices/fbp-7/telemetry/temp")`,
      "the telemetry in the page",
      20_000,
    );
    const got = await browser.evaluate<Array<{ topic: string; payload: string }>>(
      "window.received",
    );
    assertEquals(got.find((m) => m.topic === "devices/fbp-7/telemetry/temp")?.payload, "21.5");
    // The page → Ferry → FBP/1.
    assertEquals(
      await browser.evaluate<string>(`window.sendCommand("fbp-7", "blink", "3")`),
      "sent",
    );
    const cmd = await within(dev.nextCommand(15_000), 20_000, "the COMMAND at the device");
    assert(cmd, "no command");
    assertEquals([cmd.name, new TextDecoder().decode(cmd.data)], ["blink", "3"]);
  } finally {
    await dev.close();
    await binary.close();
    await server.shutdown();
  }
});
