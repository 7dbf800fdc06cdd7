/**
 * Backpressure from subscribers: a slower subscriber paces the publishers (nothing lost), and a
 * subscriber that stops reading is let go after `subscriberHoldMs` so the others go on.
 */
import mqttPacket from "mqtt-packet";
import { Buffer } from "node:buffer";
import { assert, assertEquals } from "./_assert.ts";
import { waitFor } from "./_harness.ts";
import { Inbox, startMqtt, within } from "./_mqtt_harness.ts";

const gen = (p: mqttPacket.Packet) => mqttPacket.generate(p, { protocolVersion: 4 });

/** A subscriber on a raw socket whose reading the test switches on and off. */
class PausableSubscriber {
  count = 0;
  /** Called with each PUBLISH's topic and payload (QoS 0 deliveries), when set. */
  onPublish: ((topic: string, payload: Uint8Array) => void) | undefined;
  reading = false;
  #conn: Deno.TcpConn;
  #resume: (() => void) | undefined;
  done: Promise<void>;

  private constructor(conn: Deno.TcpConn) {
    this.#conn = conn;
    this.done = Promise.resolve();
  }

  static async open(port: number, clientId: string, filter: string): Promise<PausableSubscriber> {
    const conn = await Deno.connect({ hostname: "127.0.0.1", port });
    await conn.write(
      gen({
        cmd: "connect",
        protocolId: "MQTT",
        protocolVersion: 4,
        clientId,
        clean: true,
        keepalive: 0,
      }),
    );
    await conn.write(
      gen({ cmd: "subscribe", messageId: 1, subscriptions: [{ topic: filter, qos: 0 }] }),
    );
    const s = new PausableSubscriber(conn);
    // CONNACK (4 bytes) + SUBACK (5 bytes).
    const head = new Uint8Array(9);
    for (let got = 0; got < 9;) got += (await conn.read(head.subarray(got))) ?? Infinity;
    assertEquals([head[0], head[4]], [0x20, 0x90]);
    return s;
  }

  /** Starts (or resumes) counting PUBLISH frames. */
  read(): void {
    this.reading = true;
    if (this.#resume) return this.#resume();
    this.done = (async () => {
      const buf = new Uint8Array(65536);
      let carry = new Uint8Array(0);
      try {
        for (;;) {
          if (!this.reading) await new Promise<void>((r) => this.#resume = r);
          this.#resume = undefined;
          const n = await this.#conn.read(buf);
          if (n === null) return;
          const all = new Uint8Array(carry.length + n);
          all.set(carry);
          all.set(buf.subarray(0, n), carry.length);
          let i = 0;
          while (i + 2 <= all.length) {
            let len = 0, mul = 1, j = i + 1, ok = false;
            while (j < all.length && j < i + 5) {
              const b = all[j++];
              len += (b & 0x7f) * mul;
              mul *= 128;
              if (!(b & 0x80)) {
                ok = true;
                break;
              }
            }
            if (!ok || j + len > all.length) break;
            if (all[i] >> 4 === 3) {
              this.count++;
              if (this.onPublish) {
                const tlen = (all[j] << 8) | all[j + 1];
                const topic = new TextDecoder().decode(all.subarray(j + 2, j + 2 + tlen));
                this.onPublish(topic, all.slice(j + 2 + tlen, j + len));
              }
            }
            i = j + len;
          }
          carry = all.slice(i);
        }
      } catch { /* closed */ }
    })();
  }

  pause(): void {
    this.reading = false;
  }

  close(): void {
    try {
      this.#conn.close();
    } catch { /* closed */ }
    this.#resume?.();
  }
}

/** Publishes `n` QoS 0 messages of `size` bytes on a raw connection, then waits for a PINGRESP. */
async function blast(port: number, topic: string, n: number, size: number): Promise<void> {
  const conn = await Deno.connect({ hostname: "127.0.0.1", port });
  try {
    await conn.write(
      gen({
        cmd: "connect",
        protocolId: "MQTT",
        protocolVersion: 4,
        clientId: `pub-${topic.replaceAll("/", "-")}`,
        clean: true,
        keepalive: 0,
      }),
    );
    const one = gen({
      cmd: "publish",
      topic,
      payload: Buffer.alloc(size, 1),
      qos: 0,
      retain: false,
      dup: false,
    });
    const batch = Buffer.concat(Array.from({ length: 100 }, () => one));
    for (let i = 0; i < n; i += 100) {
      for (let o = 0; o < batch.length;) o += await conn.write(batch.subarray(o));
    }
    await conn.write(gen({ cmd: "pingreq" }));
    const b = new Uint8Array(64);
    let seen = new Uint8Array(0);
    for (;;) {
      const r = await conn.read(b);
      if (r === null) throw new Error("publisher closed before PINGRESP");
      seen = Buffer.concat([seen, b.subarray(0, r)]);
      if (seen.length >= 6 && seen[4] === 0xd0) return; // CONNACK then PINGRESP
    }
  } finally {
    conn.close();
  }
}

Deno.test("MQTT: a subscriber that reads slowly paces the publisher, and receives every QoS 0 message", async () => {
  // A small send buffer so the subscriber falls behind quickly (high water at a quarter of it).
  // (And a hold long enough to outlast the pause.)
  await using h = await startMqtt({
    core: { subscriberHoldMs: 10_000 },
    server: { maxPendingBytes: 64 * 1024 },
  });
  const sub = await PausableSubscriber.open(h.port, "slow", "flow/#");
  try {
    const total = 100_000; // 11 MB: far more than the socket buffers and the send buffer
    const publishing = blast(h.port, "flow/a", total, 100);
    publishing.catch(() => {}); // (awaited below; a failing assertion first must not leave it unhandled)
    // Not reading: once the kernel's socket buffers are full, the gateway's send buffer fills,
    // the subscriber holds delivery, and the publisher's connection stops at its next PUBLISH
    // (and stops reading), far short of everything it sent.
    const bytesIn = () => h.core.stats.bytesIn.get({ protocol: "mqtt" });
    let last = -1;
    for (const until = Date.now() + 15_000; Date.now() < until;) {
      const now = bytesIn();
      if (now === last && h.core.flow.holders === 1) break;
      last = now;
      await new Promise((r) => setTimeout(r, 100));
    }
    assertEquals(h.core.flow.holders, 1, "the slow subscriber does not hold delivery");
    // The publisher waits at the gate, not in the pipeline: nothing queued, no producer parked
    // there with a promise per publish.
    assertEquals(h.core.pipeline.waiting, 0, "a producer waits in the pipeline");
    assertEquals(h.core.pipeline.depth, 0, "messages queued in the pipeline");
    await new Promise((r) => setTimeout(r, 300));
    assertEquals(bytesIn(), last, "reads went on");
    assert(last < total * 100, `the gateway read ${last} bytes: everything was taken in`);
    sub.read();
    await within(publishing, 30_000, "publisher to finish");
    await waitFor(() => sub.count === total, `all ${total} messages (got ${sub.count})`, 30_000);
    assertEquals(h.core.stats.drops.get({ protocol: "mqtt", reason: "slow_subscriber" }), 0);
    assertEquals(h.core.flow.evicted, 0);
  } finally {
    sub.close();
    await sub.done;
  }
});

Deno.test("MQTT: a subscriber that stops reading holds delivery only for subscriberHoldMs; the others go on", async () => {
  await using h = await startMqtt({
    core: { subscriberHoldMs: 200 },
    server: { maxPendingBytes: 64 * 1024 },
  });
  const stuck = await PausableSubscriber.open(h.port, "stuck", "flow/#");
  const healthy = await PausableSubscriber.open(h.port, "healthy", "flow/#");
  healthy.read();
  try {
    const total = 50_000;
    await within(blast(h.port, "flow/b", total, 100), 30_000, "publisher to finish");
    await waitFor(() => healthy.count === total, `healthy got all (${healthy.count})`, 30_000);
    assert(h.core.flow.evicted >= 1, "the stuck subscriber was not let go");
    // The stuck one was shed (QoS 0 dropped) or closed as a slow consumer, never buffered freely.
    const shed = h.core.stats.drops.get({ protocol: "mqtt", reason: "slow_subscriber" });
    assert(shed > 0 || stuck.count < total, "stuck subscriber was neither shed nor closed");
    assert(h.logs.some((l) => l.includes("slow subscriber held delivery too long")), "not logged");
  } finally {
    stuck.close();
    healthy.close();
    await Promise.all([stuck.done, healthy.done]);
  }
});

/** Checks that each topic's sequence numbers (first 4 payload bytes) arrived as 0, 1, 2, … */
function inOrder(got: Map<string, number[]>, topics: string[], n: number): string | undefined {
  for (const t of topics) {
    const seqs = got.get(t) ?? [];
    if (seqs.length !== n) return `${t}: ${seqs.length} of ${n} messages`;
    for (let i = 0; i < n; i++) {
      if (seqs[i] !== i) return `${t}: message ${i} arrived as number ${seqs[i]}`;
    }
  }
  return undefined;
}

Deno.test("MQTT: publishers held back by a slow # subscriber wait at the gate; then it and a fast subscriber get every message, in order per topic", async () => {
  await using h = await startMqtt({
    core: { subscriberHoldMs: 30_000 },
    server: { maxPendingBytes: 64 * 1024 },
  });
  const topics = ["order/a", "order/b", "order/c", "order/d"];
  const n = 3000; // 4 × 3000 × ~1 KB: far more than the socket buffers and the send buffer
  const slow = await PausableSubscriber.open(h.port, "slow", "#");
  const slowGot = new Map<string, number[]>();
  slow.onPublish = (topic, payload) => {
    if (!topic.startsWith("order/")) return; // (presence and the like)
    const seqs = slowGot.get(topic) ?? [];
    seqs.push(new DataView(payload.buffer, payload.byteOffset).getUint32(0));
    slowGot.set(topic, seqs);
  };
  const fast = await h.client({ clientId: "fast" });
  await fast.subscribeAsync("order/#", { qos: 0 });
  const inbox = new Inbox(fast);
  try {
    // Three QoS 0 publishers and one QoS 1 (its PUBACKs must all come, in spite of the hold).
    const publishing = topics.map(async (topic, k) => {
      const pub = await h.client({ clientId: `pub-${k}` });
      const qos = k === 3 ? 1 : 0;
      const sends: Promise<unknown>[] = [];
      for (let i = 0; i < n; i++) {
        const payload = Buffer.alloc(1000);
        payload.writeUInt32BE(i, 0);
        sends.push(pub.publishAsync(topic, payload, { qos }));
      }
      await Promise.all(sends);
    });
    const all = Promise.all(publishing);
    all.catch(() => {}); // (awaited below)
    slow.read();
    slow.pause(); // reads at most what is in flight, then stops
    const bytesIn = () => h.core.stats.bytesIn.get({ protocol: "mqtt" });
    let last = -1;
    for (const until = Date.now() + 15_000; Date.now() < until;) {
      const now = bytesIn();
      if (now === last && h.core.flow.holders === 1) break;
      last = now;
      await new Promise((r) => setTimeout(r, 100));
    }
    assertEquals(h.core.flow.holders, 1, "the slow subscriber does not hold delivery");
    assertEquals(h.core.pipeline.waiting, 0, "a producer waits in the pipeline");
    assertEquals(h.core.pipeline.depth, 0, "messages queued in the pipeline");
    assert(last < topics.length * n * 1000, `the gateway read ${last} bytes: everything`);
    slow.read();
    await within(all, 30_000, "publishers to finish (QoS 1 acknowledged)");
    const total = topics.length * n;
    await waitFor(() => slow.count >= total, `slow got all (${slow.count})`, 30_000);
    await inbox.waitFor(total, 30_000);
    assertEquals(inOrder(slowGot, topics, n), undefined);
    const fastGot = new Map<string, number[]>();
    for (const m of inbox.messages) {
      const seqs = fastGot.get(m.topic) ?? [];
      seqs.push((m.packet.payload as Buffer).readUInt32BE(0));
      fastGot.set(m.topic, seqs);
    }
    assertEquals(inOrder(fastGot, topics, n), undefined);
    assertEquals(h.core.stats.drops.get({ protocol: "mqtt", reason: "slow_subscriber" }), 0);
    assertEquals(h.core.flow.evicted, 0);
  } finally {
    slow.close();
    await slow.done;
  }
});
