/**
 * The HTTP listener with an upgrade route mounted (MQTT over WebSocket on the HTTP port): an
 * upgraded connection belongs to MQTT from then on (the listener's idle deadline does not cut it,
 * its HTTP slot goes back), while plain HTTP connections keep their deadlines.
 */

import { mqtt } from "./_dev_deps.ts";
import { assert, assertEquals } from "./_assert.ts";
import { Inbox, sleep, until, within } from "./_mqtt_harness.ts";
import { resolveConfig } from "../src/config/config.ts";
import { Logger } from "../src/core/logger.ts";
import { Gateway } from "../src/gateway.ts";

async function gateway() {
  const dir = await Deno.makeTempDir();
  const gw = new Gateway(
    resolveConfig({
      dataDir: dir,
      binary: { enabled: false },
      coap: { enabled: false },
      http: {
        port: 0,
        deviceApi: { enabled: false },
        loginLink: false,
        idleTimeoutMs: 300,
        headersTimeoutMs: 300,
      },
      mqtt: {
        port: 0,
        persistence: { enabled: false },
        websocket: { port: 0, httpListener: true },
      },
    }),
    { log: new Logger({ level: "error", sink: () => {} }) },
  );
  await gw.start();
  return {
    gw,
    port: gw.addresses.http!.port,
    async [Symbol.asyncDispose]() {
      await gw.stop();
      await Deno.remove(dir, { recursive: true });
    },
  };
}

Deno.test("HTTP listener: an MQTT connection upgraded on it outlives the listener's idle deadline, while an idle keep-alive is closed", async () => {
  await using g = await gateway();
  const url = `ws://127.0.0.1:${g.port}/mqtt`;
  const o = { reconnectPeriod: 0, protocolVersion: 5 as const, keepalive: 60 };
  const sub = await within(mqtt.connectAsync(url, o, false), 8000, "connect");
  let subClosed = false;
  sub.on("close", () => subClosed = true);
  await sub.subscribeAsync("up/#", { qos: 1 });
  const inbox = new Inbox(sub);

  // A plain keep-alive HTTP connection that sends nothing after its answer.
  const idle = await Deno.connect({ hostname: "127.0.0.1", port: g.port });
  await idle.write(new TextEncoder().encode("GET /healthz HTTP/1.1\r\nHost: 127.0.0.1\r\n\r\n"));
  const buf = new Uint8Array(4096);
  const n = await idle.read(buf);
  assert(n !== null && new TextDecoder().decode(buf.subarray(0, n)).startsWith("HTTP/1.1 200"));

  // Several idle deadlines pass (300 ms each); no MQTT traffic in between.
  await sleep(1500);
  const after = await within(idle.read(buf), 8000, "the idle keep-alive's close");
  assertEquals(after, null, "the idle keep-alive is closed by the listener");
  idle.close();

  assertEquals(subClosed, false, "the upgraded connection is not cut by the HTTP deadline");
  const pub = await within(mqtt.connectAsync(url, o, false), 8000, "connect");
  await pub.publishAsync("up/a", "still here", { qos: 1 });
  await inbox.waitFor(1);
  assertEquals(inbox.messages[0].payload, "still here");
  await Promise.all([sub.endAsync(), pub.endAsync()]);
  // Every slot goes back: the HTTP ones at the upgrade, MQTT's when its WebSockets close.
  await until(() => g.gw.core.admission.connections("127.0.0.1") === 0, "slots back", 8000);
});
