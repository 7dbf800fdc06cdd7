import { FbpClient } from "../src/protocols/binary/client.ts";
import { assertEquals } from "./_assert.ts";
import { enc, waitFor } from "./_harness.ts";
import { startNorthboundHarness } from "./_northbound_harness.ts";

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
