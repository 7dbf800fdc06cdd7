/**
 * RFC 7252 message layer of the CoAP server over real UDP sockets: ping, piggybacked and separate
 * responses, retransmission (fake clock), deduplication, critical options, bad datagrams.
 *
 * @module
 */

import { FakeClock } from "../src/core/clock.ts";
import { decodeMessage, encodeMessage } from "../src/protocols/coap/codec.ts";
import { CoapType, Code, ContentFormat } from "../src/protocols/coap/message.ts";
import { decodeUint, encodeString, Opt } from "../src/protocols/coap/option_codec.ts";
import type { CoapResponse } from "../src/protocols/coap/resource.ts";
import { assert, assertEquals } from "./_assert.ts";
import { opt, request, startCoap, TestPeer, textOf } from "./_coap_harness.ts";
import { waitFor } from "./_harness.ts";

const tele = (extra: Parameters<typeof request>[0] = {}) =>
  request({
    code: Code.POST,
    path: "d/s1/telemetry",
    query: ["token=t1"],
    payload: "21.5",
    ...extra,
  });

Deno.test("CoAP answers an empty CON (ping) with a RST of the same message ID", async () => {
  await using h = await startCoap();
  await using peer = new TestPeer(h.port);
  await peer.send(new Uint8Array([0x40, 0x00, 0x12, 0x34]));
  const m = await peer.recv();
  assertEquals([m.type, m.code, m.messageId, m.token.length], [CoapType.RST, 0, 0x1234, 0]);
});

Deno.test("CoAP piggybacks the response to a CON request in the ACK and echoes the token", async () => {
  await using h = await startCoap();
  await using peer = new TestPeer(h.port);
  const req = tele({ token: new Uint8Array([1, 2, 3, 4, 5, 6, 7, 8]) });
  const res = await peer.exchange(req);
  assertEquals(res.type, CoapType.ACK);
  assertEquals(res.code, Code.CHANGED);
  assertEquals(res.messageId, req.messageId);
  assertEquals(res.token, req.token);
  await waitFor(() => h.seen.some((m) => m.topic === "devices/s1/telemetry"), "publication");
  const msg = h.seen.find((m) => m.topic === "devices/s1/telemetry")!;
  assertEquals(textOf({ ...res, payload: msg.payload }), "21.5");
  assertEquals([msg.qos, msg.protocol, msg.deviceId], [1, "coap", "s1"]);
});

Deno.test("CoAP answers a NON request with a NON response carrying the token", async () => {
  await using h = await startCoap();
  await using peer = new TestPeer(h.port);
  const req = tele({ type: CoapType.NON });
  const res = await peer.exchange(req);
  assertEquals(res.type, CoapType.NON);
  assertEquals(res.code, Code.CHANGED);
  assertEquals(res.token, req.token);
  await waitFor(() => h.seen.some((m) => m.topic === "devices/s1/telemetry"), "publication");
  assertEquals(h.seen.find((m) => m.topic === "devices/s1/telemetry")!.qos, 0);
});

Deno.test("CoAP replays the cached ACK to a duplicate CON and publishes it only once", async () => {
  await using h = await startCoap();
  await using peer = new TestPeer(h.port);
  const req = tele();
  const first = await peer.exchange(req);
  await peer.send(req);
  await peer.send(req);
  const b = await peer.recv();
  const c = await peer.recv();
  assertEquals(peer.raw[0], peer.raw[1]);
  assertEquals(peer.raw[1], peer.raw[2]);
  assertEquals([first.messageId, b.messageId, c.messageId], [
    req.messageId,
    req.messageId,
    req.messageId,
  ]);
  await waitFor(() => h.seen.some((m) => m.topic === "devices/s1/telemetry"), "the publication");
  await new Promise((r) => setTimeout(r, 100));
  assertEquals(h.seen.filter((m) => m.topic === "devices/s1/telemetry").length, 1);
  assertEquals(h.core.stats.drops.get({ protocol: "coap", reason: "duplicate" }), 2);
});

Deno.test("CoAP answers copies of a CON that arrive while it is processed once, piggybacked", async () => {
  const clock = new FakeClock(0);
  const log: string[] = [];
  await using h = await startCoap({
    clock,
    core: { timerResolutionMs: 1 },
    server: { separateResponseAfterMs: 1000, resources: [slowResource(clock, 300, log)] },
  });
  await using peer = new TestPeer(h.port);
  const req = request({ path: "slow" });
  for (let i = 0; i < 3; i++) await peer.send(req);
  await waitFor(() => h.core.stats.framesIn.get({ protocol: "coap" }) === 3, "three copies in");
  await peer.quiet(50); // copies during processing are not answered yet
  clock.tick(300);
  const a = await peer.recv();
  assertEquals([a.type, a.code, a.messageId], [CoapType.ACK, Code.CONTENT, req.messageId]);
  await peer.quiet(50);
  assertEquals(log.filter((l) => l === "rendered").length, 1);
  await peer.send(req); // a later retransmission gets the cached ACK
  await peer.recv();
  assertEquals(peer.raw.length, 2);
  assertEquals(peer.raw[1], peer.raw[0]);
});

Deno.test("CoAP ignores a duplicate NON and publishes it only once", async () => {
  await using h = await startCoap();
  await using peer = new TestPeer(h.port);
  const req = tele({ type: CoapType.NON });
  await peer.send(req);
  await peer.send(req);
  await peer.recv();
  await peer.quiet(150);
  assertEquals(h.seen.filter((m) => m.topic === "devices/s1/telemetry").length, 1);
});

Deno.test("CoAP keeps message IDs per endpoint: the same ID from two clients is two messages", async () => {
  await using h = await startCoap();
  await using a = new TestPeer(h.port);
  await using b = new TestPeer(h.port);
  const r1 = await a.exchange(tele({ messageId: 777 }));
  const r2 = await b.exchange(tele({ messageId: 777 }));
  assertEquals([r1.code, r2.code], [Code.CHANGED, Code.CHANGED]);
  await waitFor(
    () => h.seen.filter((m) => m.topic === "devices/s1/telemetry").length === 2,
    "two publications",
  );
});

Deno.test("CoAP processes a message ID again once EXCHANGE_LIFETIME has passed", async () => {
  const clock = new FakeClock(1_000_000);
  await using h = await startCoap({ clock, server: { exchangeLifetimeMs: 10_000 } });
  await using peer = new TestPeer(h.port);
  const req = tele({ messageId: 4242 });
  await peer.exchange(req);
  clock.tick(10_000);
  await peer.exchange({ ...req, token: new Uint8Array([9]) });
  await waitFor(
    () => h.seen.filter((m) => m.topic === "devices/s1/telemetry").length === 2,
    "second publication",
  );
});

Deno.test("CoAP answers an unrecognised critical option in a CON with 4.02", async () => {
  await using h = await startCoap();
  await using peer = new TestPeer(h.port);
  const res = await peer.exchange(tele({ options: [{ number: 2049, value: encodeString("x") }] }));
  assertEquals([res.type, res.code], [CoapType.ACK, Code.BAD_OPTION]);
  await peer.quiet(50);
  assertEquals(h.seen.filter((m) => m.topic.includes("telemetry")).length, 0);
});

Deno.test("CoAP rejects a NON with an unrecognised critical option with a RST", async () => {
  await using h = await startCoap();
  await using peer = new TestPeer(h.port);
  const req = tele({ type: CoapType.NON, options: [{ number: 9999, value: new Uint8Array() }] });
  await peer.send(req);
  const m = await peer.recv();
  assertEquals([m.type, m.messageId], [CoapType.RST, req.messageId]);
});

Deno.test("CoAP treats a repeated non-repeatable critical option as unrecognised (4.02)", async () => {
  await using h = await startCoap();
  await using peer = new TestPeer(h.port);
  const res = await peer.exchange(tele({
    options: [{ number: Opt.URI_HOST, value: encodeString("a") }, {
      number: Opt.URI_HOST,
      value: encodeString("b"),
    }],
  }));
  assertEquals(res.code, Code.BAD_OPTION);
});

Deno.test("CoAP ignores an unrecognised elective option", async () => {
  await using h = await startCoap();
  await using peer = new TestPeer(h.port);
  const res = await peer.exchange(tele({ options: [{ number: 2048, value: encodeString("x") }] }));
  assertEquals(res.code, Code.CHANGED);
});

Deno.test("CoAP rejects a malformed CON with a RST and ignores a malformed NON", async () => {
  await using h = await startCoap();
  await using peer = new TestPeer(h.port);
  // CON, token length 9 (reserved, RFC 7252 §3), MID 0x0102
  await peer.send(new Uint8Array([0x49, 0x01, 0x01, 0x02, 1, 2, 3, 4, 5, 6, 7, 8, 9]));
  const m = await peer.recv();
  assertEquals([m.type, m.messageId], [CoapType.RST, 0x0102]);
  // NON with a payload marker and no payload
  await peer.send(new Uint8Array([0x50, 0x01, 0x01, 0x03, 0xff]));
  // CON with version 2: silently ignored
  await peer.send(new Uint8Array([0x80, 0x01, 0x01, 0x04]));
  // Three bytes: no header, ignored
  await peer.send(new Uint8Array([0x40, 0x01, 0x01]));
  await peer.quiet(150);
  assert(h.core.stats.drops.get({ protocol: "coap", reason: "bad_message" }) >= 4);
});

Deno.test("CoAP ignores an empty NON, a stray ACK and a stray RST", async () => {
  await using h = await startCoap();
  await using peer = new TestPeer(h.port);
  await peer.send(new Uint8Array([0x50, 0x00, 0x00, 0x05]));
  await peer.send(new Uint8Array([0x60, 0x00, 0x00, 0x06]));
  await peer.send(new Uint8Array([0x70, 0x00, 0x00, 0x07]));
  await peer.quiet(150);
});

Deno.test("CoAP rejects a response code sent in a CON with a RST", async () => {
  await using h = await startCoap();
  await using peer = new TestPeer(h.port);
  await peer.send(request({ code: Code.CONTENT, messageId: 99 }));
  const m = await peer.recv();
  assertEquals([m.type, m.messageId], [CoapType.RST, 99]);
});

Deno.test("CoAP answers 4.04 for an unknown path and 4.05 for a wrong method", async () => {
  await using h = await startCoap();
  await using peer = new TestPeer(h.port);
  assertEquals((await peer.exchange(request({ path: "nope" }))).code, Code.NOT_FOUND);
  const r = await peer.exchange(request({ path: "d/s1/telemetry", query: ["token=t1"] }));
  assertEquals(r.code, Code.METHOD_NOT_ALLOWED);
});

Deno.test("CoAP answers 5.05 to a Proxy-Uri request", async () => {
  await using h = await startCoap();
  await using peer = new TestPeer(h.port);
  const res = await peer.exchange(request({
    options: [{ number: Opt.PROXY_URI, value: encodeString("coap://example.com/x") }],
  }));
  assertEquals(res.code, Code.PROXYING_NOT_SUPPORTED);
});

Deno.test("CoAP answers an oversize payload with 4.13 and Size1", async () => {
  await using h = await startCoap({ server: { maxPayload: 100 } });
  await using peer = new TestPeer(h.port);
  const res = await peer.exchange(tele({ payload: new Uint8Array(101) }));
  assertEquals(res.code, Code.REQUEST_ENTITY_TOO_LARGE);
  assertEquals(decodeUint(opt(res, Opt.SIZE1)!), 100);
});

Deno.test("CoAP refuses with 5.03 and Max-Age when the pipeline is full, counting the drop", async () => {
  let release!: () => void;
  const gate = new Promise<void>((r) => release = r);
  await using h = await startCoap({
    core: { queueCapacity: 1, concurrency: 1 },
    server: { retryAfterSec: 7 },
  });
  h.core.addSink(() => gate);
  await using peer = new TestPeer(h.port);
  const replies = [];
  for (let i = 0; i < 5; i++) replies.push(await peer.exchange(tele({ payload: `m${i}` })));
  release();
  const codes = replies.map((r) => r.code);
  // m0 and the device's "online" status message occupy the blocked handler and the queue of 1:
  // everything after is refused
  assertEquals(codes, [Code.CHANGED, 0xa3, 0xa3, 0xa3, 0xa3]);
  for (const r of replies.slice(1)) assertEquals(decodeUint(opt(r, Opt.MAX_AGE)!), 7);
  await waitFor(() => published(h).length === 1, "the accepted message");
  await new Promise((r) => setTimeout(r, 50));
  assertEquals(published(h), ["m0"]);
  assertEquals(h.core.stats.drops.get({ protocol: "coap", reason: "overloaded" }), 4);
});

function published(h: { seen: { topic: string; payload: Uint8Array }[] }): string[] {
  return h.seen.filter((m) => m.topic === "devices/s1/telemetry").map((m) =>
    new TextDecoder().decode(m.payload)
  );
}

function slowResource(clock: FakeClock, delayMs: number, log: string[]) {
  return {
    path: "/slow",
    handle: () =>
      new Promise<CoapResponse>((resolve) =>
        clock.setTimeout(() => {
          log.push("rendered");
          resolve({
            code: Code.CONTENT,
            contentFormat: ContentFormat.TEXT,
            payload: new TextEncoder().encode("late"),
            onDelivered: (c: boolean) => log.push(`delivered:${c}`),
            onLost: () => log.push("lost"),
          });
        }, delayMs)
      ),
  };
}

Deno.test("CoAP sends an empty ACK then a separate CON response, retransmitted until ACKed", async () => {
  const clock = new FakeClock(0);
  const log: string[] = [];
  await using h = await startCoap({
    clock,
    server: {
      separateResponseAfterMs: 500,
      ackTimeoutMs: 2000,
      ackRandomFactor: 1.5,
      resources: [slowResource(clock, 1000, log)],
    },
  });
  await using peer = new TestPeer(h.port);
  const req = request({ path: "slow", token: new Uint8Array([0xaa, 0xbb]) });
  await peer.send(req);
  await waitFor(() => h.core.stats.framesIn.get({ protocol: "coap" }) >= 1, "request in");
  clock.tick(500);
  const ack = await peer.recv();
  assertEquals([ack.type, ack.code, ack.messageId], [CoapType.ACK, 0, req.messageId]);
  // A retransmitted request now gets the empty ACK again.
  await peer.send(req);
  const ack2 = await peer.recv();
  assertEquals([ack2.type, ack2.code], [CoapType.ACK, 0]);
  clock.tick(500);
  const res = await peer.recv();
  assertEquals([res.type, res.code, textOf(res)], [CoapType.CON, Code.CONTENT, "late"]);
  assertEquals(res.token, req.token);
  // random() = 0 → first timeout is exactly ACK_TIMEOUT; then doubled.
  clock.tick(1999);
  await peer.quiet(50);
  clock.tick(1);
  const again = await peer.recv();
  assertEquals(again.messageId, res.messageId);
  clock.tick(4000);
  assertEquals((await peer.recv()).messageId, res.messageId);
  await peer.send(new Uint8Array([0x60, 0, res.messageId >> 8, res.messageId & 0xff]));
  await waitFor(() => log.includes("delivered:true"), "delivery confirmed");
  assertEquals(h.server.outstanding, 0);
  clock.tick(100_000);
  await peer.quiet(50);
});

Deno.test("CoAP gives up a separate response after MAX_RETRANSMIT retransmissions", async () => {
  const clock = new FakeClock(0);
  const log: string[] = [];
  await using h = await startCoap({
    clock,
    core: { timerResolutionMs: 1 },
    server: {
      separateResponseAfterMs: 10,
      ackTimeoutMs: 1000,
      maxRetransmit: 3,
      resources: [slowResource(clock, 20, log)],
    },
  });
  await using peer = new TestPeer(h.port);
  await peer.send(request({ path: "slow" }));
  await waitFor(() => h.core.stats.framesIn.get({ protocol: "coap" }) >= 1, "request in");
  clock.tick(20);
  await peer.recv((m) => m.code === 0);
  const first = await peer.recv();
  let copies = 1;
  for (const step of [1000, 2000, 4000]) {
    clock.tick(step);
    assertEquals((await peer.recv()).messageId, first.messageId);
    copies++;
  }
  clock.tick(8000);
  await waitFor(() => log.includes("lost"), "give-up");
  await peer.quiet(50);
  assertEquals(copies, 4); // 1 transmission + MAX_RETRANSMIT
});

Deno.test("CoAP stops retransmitting a separate response when the client answers RST", async () => {
  const clock = new FakeClock(0);
  const log: string[] = [];
  await using h = await startCoap({
    clock,
    core: { timerResolutionMs: 1 },
    server: { separateResponseAfterMs: 10, resources: [slowResource(clock, 20, log)] },
  });
  await using peer = new TestPeer(h.port);
  await peer.send(request({ path: "slow" }));
  await waitFor(() => h.core.stats.framesIn.get({ protocol: "coap" }) >= 1, "request in");
  clock.tick(20);
  await peer.recv((m) => m.code === 0);
  const res = await peer.recv();
  await peer.send(new Uint8Array([0x70, 0, res.messageId >> 8, res.messageId & 0xff]));
  await waitFor(() => log.includes("lost"), "cancelled by RST");
  clock.tick(60_000);
  await peer.quiet(50);
});

Deno.test("CoAP counts every datagram in and out", async () => {
  await using h = await startCoap();
  await using peer = new TestPeer(h.port);
  await peer.exchange(tele());
  const labels = { protocol: "coap" };
  assertEquals(h.core.stats.framesIn.get(labels), 1);
  assertEquals(h.core.stats.framesOut.get(labels), 1);
  assert(h.core.stats.bytesIn.get(labels) > 4);
  assertEquals(decodeMessage(peer.raw[0]).code, Code.CHANGED);
});

Deno.test("CoAP server survives 3,000 random and mutated datagrams and still answers a ping", async () => {
  await using h = await startCoap({ server: { mode: "plugtest" } });
  await using peer = new TestPeer(h.port);
  let seed = 0x5eed;
  const rnd = () => {
    seed = (seed * 1103515245 + 12345) & 0x7fffffff;
    return seed / 0x80000000;
  };
  const base = tele().options;
  for (let i = 0; i < 3000; i++) {
    let bytes: Uint8Array;
    if (i % 3 === 0) {
      bytes = new Uint8Array(Math.floor(rnd() * 64));
      for (let j = 0; j < bytes.length; j++) bytes[j] = Math.floor(rnd() * 256);
    } else {
      const msg = request({
        type: Math.floor(rnd() * 4) as 0 | 1 | 2 | 3,
        code: Math.floor(rnd() * 256),
        options: i % 2 ? base : [],
        payload: "p",
      });
      bytes = encodeMessage(msg);
      for (let k = 0; k < 2; k++) bytes[Math.floor(rnd() * bytes.length)] = Math.floor(rnd() * 256);
    }
    await peer.send(bytes);
    if (i % 100 === 0) await new Promise((r) => setTimeout(r, 1));
  }
  await new Promise((r) => setTimeout(r, 100));
  peer.inbox.length = 0;
  await peer.send(new Uint8Array([0x40, 0, 0xfe, 0xed]));
  const rst = await peer.recv((m) => m.messageId === 0xfeed);
  assertEquals(rst.type, CoapType.RST);
  assertEquals(h.core.stats.errors.get({ protocol: "coap", code: "internal" }), 0);
});

Deno.test("CoAP serves IPv6 clients on ::1", async () => {
  let probe: Deno.DatagramConn;
  try {
    probe = Deno.listenDatagram({ transport: "udp", hostname: "::1", port: 0 });
  } catch {
    return; // no IPv6 loopback here
  }
  await using h = await startCoap({ server: { hostname: "::1" } });
  try {
    await probe.send(new Uint8Array([0x40, 0, 0, 9]), {
      transport: "udp",
      hostname: "::1",
      port: h.port,
    });
    const [d] = await probe.receive();
    assertEquals([d[0], d[3]], [0x70, 9]);
  } finally {
    probe.close();
  }
});

Deno.test("CoAP with a deduplication table of 2 serves three endpoints in turn and replays the latest reply to a duplicate", async () => {
  await using h = await startCoap({ server: { maxExchanges: 2 } });
  const peers = [new TestPeer(h.port), new TestPeer(h.port), new TestPeer(h.port)];
  try {
    for (let round = 0; round < 3; round++) {
      for (const [i, peer] of peers.entries()) {
        const req = request({
          code: Code.GET,
          path: ".well-known/core",
          messageId: round * 10 + i,
        });
        const res = await peer.exchange(req);
        assertEquals([res.type, res.code, res.messageId], [
          CoapType.ACK,
          Code.CONTENT,
          req.messageId,
        ]);
      }
    }
    // The last request of the last endpoint is still remembered: its duplicate gets the same bytes.
    const last = peers[2];
    await last.send(request({ code: Code.GET, path: ".well-known/core", messageId: 22 }));
    await last.recv();
    assertEquals(last.raw.at(-1), last.raw.at(-2));
    assertEquals(h.core.stats.drops.get({ protocol: "coap", reason: "duplicate" }), 1);
  } finally {
    for (const p of peers) await p[Symbol.asyncDispose]();
  }
});
