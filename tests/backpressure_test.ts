import { assert, assertEquals } from "./_assert.ts";
import { dec, enc, startBinary, waitFor } from "./_harness.ts";
import { FbpClient } from "../src/protocols/binary/client.ts";
import {
  AckStatus,
  decodeAck,
  encodeFrame,
  encodeTelemetry,
  FLAG_ACK_REQUESTED,
  FrameType,
} from "../src/protocols/binary/frame.ts";
import { startMqtt } from "./_mqtt_harness.ts";
import mqttPacket from "mqtt-packet";
import { Buffer } from "node:buffer";

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

Deno.test("Backpressure: the frames of one read after one that waits for room are handled after it, in order", async () => {
  await using h = await startBinary({ core: { queueCapacity: 2, concurrency: 1 } });
  const gate = Promise.withResolvers<void>();
  const got: string[] = [];
  h.core.addSink(async (m) => {
    await gate.promise;
    if (m.topic === "devices/s1/telemetry") got.push(dec(m.payload));
  });
  const c = await FbpClient.connect({ port: h.port, id: "s1" });
  const seqs = Array.from({ length: 12 }, () => c.nextSeq());
  const frames = seqs.map((seq) =>
    encodeFrame({
      type: FrameType.TELEMETRY,
      flags: FLAG_ACK_REQUESTED,
      seq,
      payload: encodeTelemetry({ channel: "", data: enc(`m${seq}`) }),
    })
  );
  const all = new Uint8Array(frames.reduce((n, f) => n + f.length, 0));
  let o = 0;
  for (const f of frames) {
    all.set(f, o);
    o += f.length;
  }
  await c.sendRaw(all); // one write: the session meets the full queue in the middle of a read
  await waitFor(() => h.core.pipeline.waiting === 1, "a frame waiting for room");
  gate.resolve();
  const acked: number[] = [];
  for (let i = 0; i < seqs.length; i++) {
    const f = await c.nextFrame(10_000, (f) => f.type === FrameType.ACK);
    assertEquals(decodeAck(f!.payload), AckStatus.OK);
    acked.push(f!.seq);
  }
  assertEquals(acked, seqs);
  await waitFor(() => got.length === seqs.length, "every message handled");
  assertEquals(got, seqs.map((s) => `m${s}`));
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

Deno.test("Backpressure: an MQTT connection blocked on a full pipeline stops reading at its first waiting publish, not after its whole publish window", async () => {
  await using h = await startMqtt({ core: { queueCapacity: 4, concurrency: 1 } });
  const gate = Promise.withResolvers<void>();
  let handled = 0;
  h.core.addSink(async (m) => {
    await gate.promise; // a deliberately stuck consumer
    if (m.topic === "devices/flood/telemetry") handled++;
  });
  const c = await h.raw(4);
  await c.connect({ clientId: "flood" });
  const total = 300;
  const size = 1024;
  const one = mqttPacket.generate({
    cmd: "publish",
    topic: "devices/flood/telemetry",
    payload: Buffer.alloc(size, 7),
    qos: 0,
    retain: false,
    dup: false,
  });
  const all = new Uint8Array(one.length * total);
  for (let i = 0; i < total; i++) all.set(one, i * one.length);
  const sent = c.send(all); // 300 KB: far more than the gateway should take while stuck
  await waitFor(() => h.core.pipeline.waiting === 1, "a publish waiting for room");
  await new Promise((r) => setTimeout(r, 300));
  // Reading stopped at the first publish that waits for room: what was read is the messages the
  // pipeline holds (4 queued, 1 in the handler) and the rest of that read (at most 16 KB), not
  // the 64 publishes of the connection's window.
  const read = h.core.stats.bytesIn.get({ protocol: "mqtt" });
  assert(read < 6 * one.length + 16384 + 200, `read ${read} bytes while the pipeline was full`);
  gate.resolve();
  await sent;
  await waitFor(() => handled === total, `all ${total} handled (got ${handled})`);
});
