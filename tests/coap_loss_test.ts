/**
 * Loss and duplication: a UDP relay between client and server drops or duplicates datagrams on
 * purpose. Each CON message must be published exactly once, and the server's own CON messages
 * (notifications) must be retransmitted until acknowledged.
 *
 * @module
 */

import { FakeClock } from "../src/core/clock.ts";
import { createMessage } from "../src/core/message.ts";
import { encodeMessage } from "../src/protocols/coap/codec.ts";
import { type CoapMessage, CoapType, Code } from "../src/protocols/coap/message.ts";
import { encodeUint, Opt } from "../src/protocols/coap/option_codec.ts";
import { assertEquals } from "./_assert.ts";
import {
  LossyRelay,
  request,
  runCoapClient,
  startCoap,
  TestPeer,
  textOf,
} from "./_coap_harness.ts";
import { dec, enc, waitFor } from "./_harness.ts";

/**
 * Sends a CON and retransmits it until its ACK arrives (a client's §4.2 loop). The client's
 * retransmission timer is "long enough": it retransmits once the relay has dropped a datagram
 * since the last transmission (the request or its ACK was lost), and otherwise waits for the ACK,
 * however slow a loaded machine makes it. So the number of transmissions depends on the losses
 * alone, not on how fast the server answers.
 */
async function reliably(peer: TestPeer, msg: CoapMessage, relay: LossyRelay, tries = 30) {
  for (let i = 0; i < tries; i++) {
    const dropped = relay.dropped;
    await peer.send(msg);
    const deadline = Date.now() + 20_000;
    for (;;) {
      try {
        return await peer.recv(
          (m) => m.type === CoapType.ACK && m.messageId === msg.messageId,
          40,
        );
      } catch { /* not yet */ }
      if (relay.dropped > dropped || Date.now() > deadline) break; // lost: retransmit
    }
  }
  throw new Error(`no ACK for message ${msg.messageId} after ${tries} transmissions`);
}

const tele = (payload: string) =>
  request({ code: Code.POST, path: "d/s1/telemetry", query: ["token=t1"], payload });

const published = (h: { seen: { topic: string; payload: Uint8Array }[] }) =>
  h.seen.filter((m) => m.topic === "devices/s1/telemetry").map((m) => dec(m.payload));

Deno.test("a lost request is retransmitted by the client and published once", async () => {
  await using h = await startCoap();
  await using relay = new LossyRelay(h.port, (dir, i) => (dir === "up" && i === 0 ? 0 : 1));
  await using peer = new TestPeer(relay.port);
  const ack = await reliably(peer, tele("one"), relay);
  assertEquals(ack.code, Code.CHANGED);
  await waitFor(() => published(h).length === 1, "publication");
  assertEquals(relay.counts.up, 2);
});

Deno.test("a lost ACK makes the client retransmit; the server replays it and publishes once", async () => {
  await using h = await startCoap();
  await using relay = new LossyRelay(h.port, (dir, i) => (dir === "down" && i < 2 ? 0 : 1));
  await using peer = new TestPeer(relay.port);
  const ack = await reliably(peer, tele("once"), relay);
  assertEquals(ack.code, Code.CHANGED);
  assertEquals(relay.counts.up, 3);
  await waitFor(() => published(h).length > 0, "the publication");
  await new Promise((r) => setTimeout(r, 50));
  assertEquals(published(h), ["once"]);
});

Deno.test("duplicated datagrams are published once", async () => {
  await using h = await startCoap();
  await using relay = new LossyRelay(h.port, () => 3);
  await using peer = new TestPeer(relay.port);
  for (const p of ["a", "b", "c"]) await reliably(peer, tele(p), relay);
  await waitFor(() => published(h).length === 3, "publications");
  await new Promise((r) => setTimeout(r, 50));
  assertEquals(published(h), ["a", "b", "c"]);
});

/** mulberry32 */
function prng(seed: number): () => number {
  let a = seed;
  return () => {
    a = (a + 0x6d2b79f5) | 0;
    let t = Math.imul(a ^ (a >>> 15), 1 | a);
    t = (t + Math.imul(t ^ (t >>> 7), 61 | t)) ^ t;
    return ((t ^ (t >>> 14)) >>> 0) / 4294967296;
  };
}

Deno.test("with 30% loss and 10% duplication each way, 60 CON messages are published exactly once", async () => {
  await using h = await startCoap();
  const rnd = prng(7252);
  await using relay = new LossyRelay(h.port, () => {
    const r = rnd();
    return r < 0.3 ? 0 : r < 0.4 ? 2 : 1;
  });
  await using peer = new TestPeer(relay.port);
  const sent: string[] = [];
  for (let i = 0; i < 60; i++) {
    sent.push(`m${i}`);
    await reliably(peer, tele(`m${i}`), relay);
  }
  await waitFor(() => published(h).length >= 60, "all publications");
  await new Promise((r) => setTimeout(r, 50));
  assertEquals(published(h), sent);
});

Deno.test("coap-client retransmits through a relay that loses its first request; one publication", async () => {
  await using h = await startCoap();
  await using relay = new LossyRelay(h.port, (dir, i) => (dir === "up" && i === 0 ? 0 : 1));
  const r = await runCoapClient([
    "-B",
    "10",
    "-m",
    "post",
    "-e",
    "retried",
    `coap://127.0.0.1:${relay.port}/d/s1/telemetry?token=t1`,
  ]);
  assertEquals(r.code, 0, r.stderr);
  assertEquals(published(h), ["retried"]);
  assertEquals(relay.counts.up, 2);
});

Deno.test("a CON notification lost twice is retransmitted with backoff and acknowledged once", async () => {
  const clock = new FakeClock(0);
  await using h = await startCoap({ clock, server: { ackTimeoutMs: 1000 } });
  // down datagram 0 is the registration response; 1 and 2 (the notification) are dropped
  await using relay = new LossyRelay(
    h.port,
    (dir, i) => (dir === "down" && (i === 1 || i === 2) ? 0 : 1),
  );
  await using peer = new TestPeer(relay.port);
  const reg = request({
    path: "d/s1/commands",
    query: ["token=t1"],
    options: [{ number: Opt.OBSERVE, value: encodeUint(0) }],
  });
  await peer.send(reg);
  await peer.recv((m) => m.messageId === reg.messageId);
  await h.core.publish(
    createMessage({ topic: "devices/s1/commands/go", payload: enc("now"), qos: 1 }),
  );
  await waitFor(() => relay.counts.down === 2, "first transmission (dropped)");
  clock.tick(1000);
  await waitFor(() => relay.counts.down === 3, "first retransmission (dropped)");
  clock.tick(2000);
  const n = await peer.recv();
  assertEquals([n.type, textOf(n)], [CoapType.CON, "now"]);
  await peer.send(encodeMessage({
    type: CoapType.ACK,
    code: 0,
    messageId: n.messageId,
    token: new Uint8Array(),
    options: [],
    payload: new Uint8Array(),
  }));
  await waitFor(() => h.seen.some((m) => m.topic === "devices/s1/acks/go"), "ack");
  clock.tick(60_000);
  await peer.quiet(50);
  assertEquals(h.seen.filter((m) => m.topic === "devices/s1/acks/go").length, 1);
});
