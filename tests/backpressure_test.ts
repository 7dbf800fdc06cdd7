import { assert, assertEquals } from "./_assert.ts";
import { enc, startBinary, waitFor } from "./_harness.ts";
import { FbpClient } from "../src/protocols/binary/client.ts";
import { AckStatus } from "../src/protocols/binary/frame.ts";

Deno.test("Backpressure: with a slow handler the gateway stops reading the socket and memory stays bounded, then catches up", async () => {
  await using h = await startBinary({ core: { queueCapacity: 4, concurrency: 1 } });
  let open = false;
  const gate = Promise.withResolvers<void>();
  let handled = 0;
  h.core.addSink(async (m) => {
    if (!open) await gate.promise; // a deliberately stuck consumer
    if (m.topic === "devices/flood/telemetry") handled++;
  });
  const c = await FbpClient.connect({ port: h.port, id: "flood" });
  const total = 4000;
  const data = new Uint8Array(4096).fill(7); // 16 MB in all: far beyond socket buffers
  let acked = 0;
  const acks = Array.from(
    { length: total },
    () =>
      c.telemetry(data, { ack: true, timeoutMs: 60_000 }).then((s) => {
        assertEquals(s, AckStatus.OK);
        acked++;
      }),
  );
  // The pipeline fills (4 queued + 1 in the handler + 1 producer waiting), then reads stop.
  await waitFor(() => h.core.pipeline.waiting === 1, "a producer blocked on the full queue");
  await new Promise((r) => setTimeout(r, 300));
  const bytesIn = h.core.stats.bytesIn.get({ protocol: "binary" });
  const ackedWhileStuck = acked;
  assert(
    ackedWhileStuck <= 6,
    `acknowledged ${ackedWhileStuck} messages while the handler was stuck`,
  );
  assert(h.core.pipeline.depth <= 5, `queue depth ${h.core.pipeline.depth} exceeds its capacity`);
  assert(bytesIn < (total * 4118) / 2, `read ${bytesIn} bytes: the socket kept being read`);
  await new Promise((r) => setTimeout(r, 200));
  assertEquals(
    h.core.stats.bytesIn.get({ protocol: "binary" }),
    bytesIn,
    "reads went on while stuck",
  );
  open = true;
  gate.resolve();
  await Promise.all(acks);
  assertEquals(acked, total);
  await waitFor(() => handled === total, "every message handled");
  await c.close();
});

Deno.test("Backpressure: one device blocked on a full pipeline does not stop the gateway answering PINGs of others", async () => {
  await using h = await startBinary({ core: { queueCapacity: 2, concurrency: 1 } });
  const gate = Promise.withResolvers<void>();
  h.core.addSink(() => gate.promise);
  const flood = await FbpClient.connect({ port: h.port, id: "flood" });
  const other = await FbpClient.connect({ port: h.port, id: "other" });
  const pending = Array.from(
    { length: 20 },
    () => flood.telemetry(enc("x"), { ack: true, timeoutMs: 30_000 }),
  );
  await waitFor(() => h.core.pipeline.waiting >= 1, "the pipeline to fill");
  await other.ping(2000);
  gate.resolve();
  await Promise.all(pending);
  await flood.close();
  await other.close();
});
