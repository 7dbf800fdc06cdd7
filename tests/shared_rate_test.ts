import { assertEquals } from "./_assert.ts";
import { enc } from "./_harness.ts";
import { startHttpApi } from "./_http_api_harness.ts";
import { FakeClock } from "../src/core/clock.ts";
import { BinaryServer } from "../src/protocols/binary/server.ts";
import { FbpClient } from "../src/protocols/binary/client.ts";
import { AckStatus } from "../src/protocols/binary/frame.ts";

Deno.test("A device's rate limit is one bucket across protocols: FBP/1 telemetry uses up what HTTP may send", async () => {
  const clock = new FakeClock(1_000_000);
  await using h = await startHttpApi({ clock, core: { deviceRatePerSec: 2, deviceBurst: 2 } });
  const fbp = new BinaryServer(h.core, { port: 0 });
  const { port } = await fbp.listen();
  try {
    const c = await FbpClient.connect({ port, id: "d1", token: "t1" });
    assertEquals(await c.telemetry(enc("a"), { ack: true }), AckStatus.OK);
    assertEquals(await c.telemetry(enc("b"), { ack: true }), AckStatus.OK);
    const r = await h.fetch("/api/v1/devices/d1/telemetry", {
      method: "POST",
      headers: { authorization: "Bearer t1" },
      body: "c",
    });
    assertEquals(r.status, 429);
    await r.body?.cancel();
    clock.tick(500); // one token back, for whichever protocol asks first
    const ok = await h.fetch("/api/v1/devices/d1/telemetry", {
      method: "POST",
      headers: { authorization: "Bearer t1" },
      body: "d",
    });
    assertEquals(ok.status, 202);
    await ok.body?.cancel();
    assertEquals(await c.telemetry(enc("e"), { ack: true }), AckStatus.OVERLOADED);
    await c.close();
  } finally {
    await fbp.close();
  }
});
