/**
 * RFC 7959 block-wise transfers (Block1 reassembly bounds, Block2 slicing, Size1/Size2) and RFC 6690
 * `/.well-known/core`.
 *
 * @module
 */

import { FakeClock } from "../src/core/clock.ts";
import { decodeBlock, encodeBlock } from "../src/protocols/coap/block.ts";
import { Code, ContentFormat } from "../src/protocols/coap/message.ts";
import { decodeUint, encodeUint, Opt } from "../src/protocols/coap/option_codec.ts";
import { assert, assertEquals } from "./_assert.ts";
import { opt, request, startCoap, TestPeer, textOf } from "./_coap_harness.ts";
import { dec, waitFor } from "./_harness.ts";

const block1 = (num: number, more: boolean, szx: number, payload: Uint8Array, token = [1]) =>
  request({
    code: Code.POST,
    path: "d/s1/telemetry",
    query: ["token=t1"],
    payload,
    token: new Uint8Array(token),
    options: [{ number: Opt.BLOCK1, value: encodeBlock({ num, more, szx }) }],
  });

const bytes = (n: number, fill: number) => new Uint8Array(n).fill(fill);

Deno.test("Block1 upload is acknowledged with 2.31 per block and published once, whole", async () => {
  await using h = await startCoap();
  await using peer = new TestPeer(h.port);
  const r0 = await peer.exchange(block1(0, true, 0, bytes(16, 0x61)));
  assertEquals(r0.code, Code.CONTINUE);
  assertEquals(decodeBlock(opt(r0, Opt.BLOCK1)!), { num: 0, more: true, szx: 0 });
  const r1 = await peer.exchange(block1(1, true, 0, bytes(16, 0x62)));
  assertEquals(r1.code, Code.CONTINUE);
  const r2 = await peer.exchange(block1(2, false, 0, bytes(5, 0x63)));
  assertEquals(r2.code, Code.CHANGED);
  assertEquals(decodeBlock(opt(r2, Opt.BLOCK1)!), { num: 2, more: false, szx: 0 });
  await waitFor(() => h.seen.some((m) => m.topic === "devices/s1/telemetry"), "publication");
  const got = h.seen.filter((m) => m.topic === "devices/s1/telemetry");
  assertEquals(got.length, 1);
  assertEquals(dec(got[0].payload), "a".repeat(16) + "b".repeat(16) + "ccccc");
});

Deno.test("Block1 answers 4.08 for a missing block and for a transfer that never started", async () => {
  await using h = await startCoap();
  await using peer = new TestPeer(h.port);
  await peer.exchange(block1(0, true, 0, bytes(16, 1)));
  const gap = await peer.exchange(block1(2, false, 0, bytes(4, 1)));
  assertEquals(gap.code, Code.REQUEST_ENTITY_INCOMPLETE);
  const late = await peer.exchange(block1(1, false, 0, bytes(4, 1), [9]));
  assertEquals(late.code, Code.REQUEST_ENTITY_INCOMPLETE);
  await peer.quiet(50);
  assertEquals(h.seen.filter((m) => m.topic.includes("telemetry")).length, 0);
});

Deno.test("Block1 drops a transfer idle longer than blockTimeoutMs (then 4.08)", async () => {
  const clock = new FakeClock(0);
  await using h = await startCoap({ clock, server: { blockTimeoutMs: 5000 } });
  await using peer = new TestPeer(h.port);
  await peer.exchange(block1(0, true, 0, bytes(16, 1)));
  clock.tick(5000);
  const r = await peer.exchange(block1(1, false, 0, bytes(4, 1)));
  assertEquals(r.code, Code.REQUEST_ENTITY_INCOMPLETE);
});

Deno.test("Block1 answers 4.13 with Size1 once the reassembled body would exceed maxPayload", async () => {
  await using h = await startCoap({ server: { maxPayload: 40 } });
  await using peer = new TestPeer(h.port);
  await peer.exchange(block1(0, true, 0, bytes(16, 1)));
  await peer.exchange(block1(1, true, 0, bytes(16, 1)));
  const r = await peer.exchange(block1(2, true, 0, bytes(16, 1)));
  assertEquals(r.code, Code.REQUEST_ENTITY_TOO_LARGE);
  assertEquals(decodeUint(opt(r, Opt.SIZE1)!), 40);
});

Deno.test("A request announcing a Size1 over the limit gets 4.13 at once", async () => {
  await using h = await startCoap({ server: { maxPayload: 40 } });
  await using peer = new TestPeer(h.port);
  const req = block1(0, true, 0, bytes(16, 1));
  req.options.push({ number: Opt.SIZE1, value: encodeUint(1000) });
  req.options.sort((a, b) => a.number - b.number);
  assertEquals((await peer.exchange(req)).code, Code.REQUEST_ENTITY_TOO_LARGE);
});

Deno.test("Block1 with the reserved SZX 7 is answered 4.00", async () => {
  await using h = await startCoap();
  await using peer = new TestPeer(h.port);
  const req = request({
    code: Code.POST,
    path: "d/s1/telemetry",
    query: ["token=t1"],
    payload: "x",
    options: [{ number: Opt.BLOCK1, value: new Uint8Array([0x0f]) }],
  });
  assertEquals((await peer.exchange(req)).code, Code.BAD_REQUEST);
});

Deno.test("Block1 transfers beyond maxBlockTransfers get 5.03", async () => {
  await using h = await startCoap({ server: { maxBlockTransfers: 1 } });
  await using peer = new TestPeer(h.port);
  await using other = new TestPeer(h.port);
  await peer.exchange(block1(0, true, 0, bytes(16, 1)));
  const r = await other.exchange(block1(0, true, 0, bytes(16, 1)));
  assertEquals(r.code, Code.SERVICE_UNAVAILABLE);
});

Deno.test("Block2 slices a large response with Size2 and serves later blocks at the asked size", async () => {
  await using h = await startCoap({ server: { mode: "plugtest" } });
  await using peer = new TestPeer(h.port);
  const first = await peer.exchange(request({ path: "large" }));
  assertEquals(first.code, Code.CONTENT);
  assertEquals(decodeBlock(opt(first, Opt.BLOCK2)!), { num: 0, more: true, szx: 6 });
  assertEquals(decodeUint(opt(first, Opt.SIZE2)!), 2048);
  assertEquals(first.payload.length, 1024);
  let body = textOf(first);
  // switch to 256-byte blocks: block 4 of size 256 starts at byte 1024
  for (let num = 4;; num++) {
    const r = await peer.exchange(request({
      path: "large",
      options: [{ number: Opt.BLOCK2, value: encodeBlock({ num, more: false, szx: 4 }) }],
    }));
    const b = decodeBlock(opt(r, Opt.BLOCK2)!)!;
    assertEquals([b.num, b.szx], [num, 4]);
    body += textOf(r);
    if (!b.more) break;
  }
  assertEquals(body.length, 2048);
  assert(body.startsWith("/large 0000"));
});

Deno.test("Block2 asking for a block past the end gets 4.00", async () => {
  await using h = await startCoap({ server: { mode: "plugtest" } });
  await using peer = new TestPeer(h.port);
  const r = await peer.exchange(request({
    path: "large",
    options: [{ number: Opt.BLOCK2, value: encodeBlock({ num: 99, more: false, szx: 6 }) }],
  }));
  assertEquals(r.code, Code.BAD_REQUEST);
});

Deno.test("/.well-known/core lists resources in link format and filters by attribute", async () => {
  await using h = await startCoap({ server: { mode: "plugtest" } });
  await using peer = new TestPeer(h.port);
  const all = await peer.exchange(request({ path: ".well-known/core" }));
  assertEquals(decodeUint(opt(all, Opt.CONTENT_FORMAT)!), ContentFormat.LINK_FORMAT);
  // Over 1024 bytes: it comes block-wise (RFC 7959 §2.4).
  let body = textOf(all);
  for (let num = 1, more = decodeBlock(opt(all, Opt.BLOCK2)!)!.more; more; num++) {
    const r = await peer.exchange(request({
      path: ".well-known/core",
      options: [{ number: Opt.BLOCK2, value: encodeBlock({ num, more: false, szx: 6 }) }],
    }));
    body += textOf(r);
    more = decodeBlock(opt(r, Opt.BLOCK2)!)!.more;
  }
  for (
    const p of ["/test", "/separate", "/seg1/seg2/seg3", "/large-post", "/obs-reset", "/path/sub1"]
  ) {
    assert(body.includes(`<${p}>`), `${p} missing from ${body}`);
  }
  const obs = await peer.exchange(request({ path: ".well-known/core", query: ["rt=observe"] }));
  assertEquals(
    textOf(obs).split(",").map((l) => l.split(";")[0]),
    ["</obs>", "</obs-non>", "</obs-reset>"],
  );
  const href = await peer.exchange(request({ path: ".well-known/core", query: ["href=/seg*"] }));
  assertEquals(textOf(href).split(",").length, 3);
});

Deno.test("/.well-known/core in ferry mode lists the device API entry", async () => {
  await using h = await startCoap();
  await using peer = new TestPeer(h.port);
  const r = await peer.exchange(request({ path: ".well-known/core" }));
  assert(textOf(r).startsWith('</d>;rt="ferry.devices"'), textOf(r));
});

Deno.test("Block1 uploads with bad credentials are refused at the first block (4.01), nothing buffered", async () => {
  await using h = await startCoap({ server: { maxBlockTransfers: 1 } });
  await using peer = new TestPeer(h.port);
  const bad = block1(0, true, 0, bytes(16, 1));
  bad.options = bad.options.map((o) =>
    o.number === Opt.URI_QUERY
      ? { number: Opt.URI_QUERY, value: new TextEncoder().encode("token=no") }
      : o
  );
  assertEquals((await peer.exchange(bad)).code, Code.UNAUTHORIZED);
  // the single transfer slot is still free for a real device
  assertEquals((await peer.exchange(block1(0, true, 0, bytes(16, 1), [5]))).code, Code.CONTINUE);
});
