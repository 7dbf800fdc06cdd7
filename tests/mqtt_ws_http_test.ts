/**
 * MQTT over WebSocket on the HTTP listener (`mqtt.websocket.httpListener`): the route on the HTTP
 * server's hook, Deno's WebSocket adapted to bytes.
 */

import { mqtt } from "./_dev_deps.ts";
import { assert, assertEquals } from "./_assert.ts";
import { Inbox, until, within } from "./_mqtt_harness.ts";
import { RawWs } from "./_mqtt_ws_harness.ts";
import { resolveConfig } from "../src/config/config.ts";
import { Logger } from "../src/core/logger.ts";
import { Gateway } from "../src/gateway.ts";

async function gateway(websocket: Record<string, unknown> = {}) {
  const dir = await Deno.makeTempDir();
  const logs: string[] = [];
  const gw = new Gateway(
    resolveConfig({
      dataDir: dir,
      binary: { enabled: false },
      coap: { enabled: false },
      http: { port: 0, deviceApi: { enabled: false } },
      mqtt: {
        port: 0,
        persistence: { enabled: false },
        websocket: { port: 0, httpListener: true, ...websocket },
      },
    }),
    { log: new Logger({ level: "info", sink: (l) => logs.push(l) }) },
  );
  await gw.start();
  return {
    gw,
    logs,
    port: gw.addresses.http!.port,
    async [Symbol.asyncDispose]() {
      await gw.stop();
      await Deno.remove(dir, { recursive: true });
    },
  };
}

Deno.test("MQTT over WebSocket on the HTTP listener: MQTT.js publishes and subscribes at the path; other routes still answer", async () => {
  await using g = await gateway();
  const url = `ws://127.0.0.1:${g.port}/mqtt`;
  const o = { reconnectPeriod: 0, protocolVersion: 5 as const };
  const sub = await within(mqtt.connectAsync(url, o, false), 8000, "connect");
  await sub.subscribeAsync("http/#", { qos: 1 });
  const inbox = new Inbox(sub);
  const pub = await within(mqtt.connectAsync(url, o, false), 8000, "connect");
  await pub.publishAsync("http/a", "via the HTTP port", { qos: 1 });
  await inbox.waitFor(1);
  assertEquals(inbox.messages[0].payload, "via the HTTP port");
  const health = await fetch(`http://127.0.0.1:${g.port}/healthz`);
  assertEquals(health.status, 200);
  await health.body?.cancel();
  await Promise.all([sub.endAsync(), pub.endAsync()]);
});

Deno.test("On the HTTP listener, the upgrade policy and refusals are the WebSocket listener's: 426, 400 without mqtt, 403 for an origin", async () => {
  await using g = await gateway({ allowedOrigins: ["https://ok.example"] });
  // The HTTP listener counts its connections in the same admission: fetch's keep-alive pool is
  // closed at the end so that its connection's slot comes back too.
  using client = Deno.createHttpClient({});
  const plain = await fetch(`http://127.0.0.1:${g.port}/mqtt`, { client });
  assertEquals(plain.status, 426);
  assert((await plain.text()).includes("speaks WebSocket only"));
  const none = await RawWs.open(g.port, { protocols: [] });
  assertEquals(none.status, 400);
  const origin = await RawWs.open(g.port, { headers: { Origin: "https://evil.example" } });
  assertEquals(origin.status, 403);
  const ok = await RawWs.open(g.port, { headers: { Origin: "https://ok.example" } });
  assertEquals(ok.status, 101);
  assertEquals(ok.headers.get("sec-websocket-protocol"), "mqtt");
  assertEquals((await ok.connect()).cmd, "connack");
  ok.close();
  none.close();
  origin.close();
  client.close();
  await until(() => g.gw.core.admission.connections("127.0.0.1") === 0, "slots back", 8000);
});

Deno.test("On the HTTP listener, a text message closes the WebSocket with 1003 and is logged", async () => {
  await using g = await gateway();
  const ws = new WebSocket(`ws://127.0.0.1:${g.port}/mqtt`, "mqtt");
  await new Promise((r, j) => (ws.onopen = r, ws.onerror = j));
  assertEquals(ws.protocol, "mqtt");
  const closed = new Promise<CloseEvent>((r) => ws.onclose = r);
  ws.send("text");
  const e = await within(closed, 8000, "the close");
  assertEquals(e.code, 1003);
  assert(e.reason.includes("binary frames only"), e.reason);
  assert(g.logs.some((l) => l.includes("closing WebSocket: message refused")));
});
