/**
 * The ETSI plugtest resource set served by `mode: "plugtest"`, checked the way the plugtest
 * descriptions (TD_COAP_CORE/LINK/BLOCK/OBS) exercise it.
 *
 * @module
 */

import { FakeClock } from "../src/core/clock.ts";
import { CoapType, Code, ContentFormat } from "../src/protocols/coap/message.ts";
import { decodeString, decodeUint, encodeUint, Opt } from "../src/protocols/coap/option_codec.ts";
import { assert, assertEquals } from "./_assert.ts";
import { opt, request, startCoap, TestPeer, textOf } from "./_coap_harness.ts";
import { waitFor } from "./_harness.ts";

const plugtest = (clock?: FakeClock, extra = {}) =>
  startCoap({ clock, server: { mode: "plugtest", ...extra } });
const ack = (mid: number) => new Uint8Array([0x60, 0, mid >> 8, mid & 0xff]);
const values = (m: { options: { number: number; value: Uint8Array }[] }, n: number) =>
  m.options.filter((o) => o.number === n).map((o) => decodeString(o.value));

Deno.test("plugtest /test answers GET 2.05, POST 2.01 with Location-Path, PUT 2.04, DELETE 2.02", async () => {
  await using h = await plugtest();
  await using peer = new TestPeer(h.port);
  const g = await peer.exchange(request({ path: "test" }));
  assertEquals(g.code, Code.CONTENT);
  assert(textOf(g).includes("Type: 0 (CON)"));
  const p = await peer.exchange(request({ code: Code.POST, path: "test", payload: "x" }));
  assertEquals(p.code, Code.CREATED);
  assertEquals(values(p, Opt.LOCATION_PATH), ["location1", "location2", "location3"]);
  assertEquals((await peer.exchange(request({ code: Code.PUT, path: "test" }))).code, Code.CHANGED);
  assertEquals(
    (await peer.exchange(request({ code: Code.DELETE, path: "test" }))).code,
    Code.DELETED,
  );
  const non = await peer.exchange(request({ type: CoapType.NON, path: "test" }));
  assertEquals([non.type, non.code], [CoapType.NON, Code.CONTENT]);
});

Deno.test("plugtest /separate answers with an empty ACK, then a CON response", async () => {
  const clock = new FakeClock(0);
  await using h = await plugtest(clock, { separateResponseAfterMs: 1000 });
  await using peer = new TestPeer(h.port);
  const req = request({ path: "separate" });
  await peer.send(req);
  await waitFor(() => h.core.stats.framesIn.get({ protocol: "coap" }) === 1, "request in");
  clock.tick(1000);
  const empty = await peer.recv();
  assertEquals([empty.type, empty.code, empty.messageId], [CoapType.ACK, 0, req.messageId]);
  clock.tick(1000);
  const res = await peer.recv();
  assertEquals([res.type, res.code], [CoapType.CON, Code.CONTENT]);
  assertEquals(res.token, req.token);
  await peer.send(ack(res.messageId));
  await waitFor(() => h.server.outstanding === 0, "response acknowledged");
});

Deno.test("plugtest /seg1/seg2/seg3, /query, /location-query and /path answer as specified", async () => {
  await using h = await plugtest();
  await using peer = new TestPeer(h.port);
  assertEquals((await peer.exchange(request({ path: "seg1/seg2/seg3" }))).code, Code.CONTENT);
  const q = await peer.exchange(request({ path: "query", query: ["first=1", "second=2"] }));
  assert(textOf(q).endsWith("?first=1&second=2"), textOf(q));
  const lq = await peer.exchange(request({ code: Code.POST, path: "location-query" }));
  assertEquals([lq.code, values(lq, Opt.LOCATION_QUERY)], [Code.CREATED, ["first=1", "second=2"]]);
  const p = await peer.exchange(request({ path: "path" }));
  assertEquals(decodeUint(opt(p, Opt.CONTENT_FORMAT)!), ContentFormat.LINK_FORMAT);
  assertEquals(textOf(p), "</path/sub1>,</path/sub2>,</path/sub3>");
  assertEquals((await peer.exchange(request({ path: "path/sub1" }))).code, Code.CONTENT);
});

Deno.test("plugtest /multi-format honours Accept and answers 4.06 to a format it lacks", async () => {
  await using h = await plugtest();
  await using peer = new TestPeer(h.port);
  const accept = (n: number) => [{ number: Opt.ACCEPT, value: encodeUint(n) }];
  const xml = await peer.exchange(request({ path: "multi-format", options: accept(41) }));
  assertEquals(decodeUint(opt(xml, Opt.CONTENT_FORMAT)!), ContentFormat.XML);
  const txt = await peer.exchange(request({ path: "multi-format", options: accept(0) }));
  assertEquals(decodeUint(opt(txt, Opt.CONTENT_FORMAT) ?? new Uint8Array()), ContentFormat.TEXT);
  const json = await peer.exchange(request({ path: "multi-format", options: accept(50) }));
  assertEquals(json.code, Code.NOT_ACCEPTABLE);
});

Deno.test("plugtest /validate answers 2.03 to a matching ETag and 4.12 to a stale If-Match", async () => {
  await using h = await plugtest();
  await using peer = new TestPeer(h.port);
  const g = await peer.exchange(request({ path: "validate" }));
  const etag = opt(g, Opt.ETAG)!;
  const v = await peer.exchange(
    request({ path: "validate", options: [{ number: Opt.ETAG, value: etag }] }),
  );
  assertEquals([v.code, v.payload.length], [Code.VALID, 0]);
  const put = await peer.exchange(request({
    code: Code.PUT,
    path: "validate",
    payload: "v2",
    options: [{ number: Opt.IF_MATCH, value: etag }],
  }));
  assertEquals(put.code, Code.CHANGED);
  const stale = await peer.exchange(request({
    code: Code.PUT,
    path: "validate",
    payload: "v3",
    options: [{ number: Opt.IF_MATCH, value: etag }],
  }));
  assertEquals(stale.code, Code.PRECONDITION_FAILED);
});

Deno.test("plugtest /create1 creates once with If-None-Match, then 4.12", async () => {
  await using h = await plugtest();
  await using peer = new TestPeer(h.port);
  const put = () =>
    request({
      code: Code.PUT,
      path: "create1",
      payload: "x",
      options: [{ number: Opt.IF_NONE_MATCH, value: new Uint8Array() }],
    });
  assertEquals((await peer.exchange(put())).code, Code.CREATED);
  assertEquals((await peer.exchange(put())).code, Code.PRECONDITION_FAILED);
  assertEquals(
    (await peer.exchange(request({ code: Code.DELETE, path: "create1" }))).code,
    Code.DELETED,
  );
});

Deno.test("plugtest /large-create answers 2.01 with the new resource's Location-Path", async () => {
  await using h = await plugtest();
  await using peer = new TestPeer(h.port);
  const r = await peer.exchange(
    request({ code: Code.POST, path: "large-create", payload: "body" }),
  );
  assertEquals(r.code, Code.CREATED);
  const loc = values(r, Opt.LOCATION_PATH);
  assertEquals(loc[0], "large-create");
  const g = await peer.exchange(request({ path: loc.join("/") }));
  assertEquals(textOf(g), "body");
});

Deno.test("plugtest /obs notifies every 5 s with increasing sequence numbers (CON when registered CON)", async () => {
  const clock = new FakeClock(0);
  await using h = await plugtest(clock);
  await using peer = new TestPeer(h.port);
  const reg = await peer.exchange(request({
    path: "obs",
    token: new Uint8Array([0x0b]),
    options: [{ number: Opt.OBSERVE, value: encodeUint(0) }],
  }));
  let last = decodeUint(opt(reg, Opt.OBSERVE)!);
  for (let i = 0; i < 3; i++) {
    clock.tick(5000);
    const n = await peer.recv();
    assertEquals([n.type, n.token[0]], [CoapType.CON, 0x0b]);
    const seq = decodeUint(opt(n, Opt.OBSERVE)!);
    assert(seq > last, `${seq} > ${last}`);
    last = seq;
    await peer.send(ack(n.messageId));
    await waitFor(() => h.server.outstanding === 0, "ACK processed");
  }
});

Deno.test("plugtest /obs-non sends NON notifications, and a CON one after the 24 h interval", async () => {
  const clock = new FakeClock(0);
  await using h = await plugtest(clock, { observeConfirmableIntervalMs: 12_000 });
  await using peer = new TestPeer(h.port);
  await peer.exchange(request({
    path: "obs-non",
    options: [{ number: Opt.OBSERVE, value: encodeUint(0) }],
  }));
  clock.tick(5000);
  assertEquals((await peer.recv()).type, CoapType.NON);
  clock.tick(5000);
  assertEquals((await peer.recv()).type, CoapType.NON);
  clock.tick(5000); // 15 s since the last CON (the registration): this one is CON
  const n = await peer.recv();
  assertEquals(n.type, CoapType.CON);
  await peer.send(ack(n.messageId));
});

Deno.test("plugtest observer answering a NON notification with RST is removed", async () => {
  const clock = new FakeClock(0);
  await using h = await plugtest(clock);
  await using peer = new TestPeer(h.port);
  await peer.exchange(request({
    path: "obs-non",
    options: [{ number: Opt.OBSERVE, value: encodeUint(0) }],
  }));
  clock.tick(5000);
  const n = await peer.recv();
  await peer.send(new Uint8Array([0x70, 0, n.messageId >> 8, n.messageId & 0xff]));
  await waitFor(() => h.server.observerCount === 0, "observer removed");
});

Deno.test("plugtest /obs-reset notifies observers when its state is reset", async () => {
  await using h = await plugtest();
  await using peer = new TestPeer(h.port);
  await using writer = new TestPeer(h.port);
  await peer.exchange(request({
    path: "obs-reset",
    type: CoapType.NON,
    options: [{ number: Opt.OBSERVE, value: encodeUint(0) }],
  }));
  await writer.exchange(request({ code: Code.PUT, path: "obs-reset", payload: "s2" }));
  const n = await peer.recv();
  assertEquals([n.type, textOf(n)], [CoapType.NON, "s2"]);
});

Deno.test("plugtest /obs: PUT updates observers, DELETE ends observations with 4.04", async () => {
  await using h = await plugtest();
  await using peer = new TestPeer(h.port);
  await using writer = new TestPeer(h.port);
  await peer.exchange(request({
    type: CoapType.NON,
    path: "obs",
    options: [{ number: Opt.OBSERVE, value: encodeUint(0) }],
  }));
  const put = await writer.exchange(request({ code: Code.PUT, path: "obs", payload: "v1" }));
  assertEquals(put.code, Code.CHANGED);
  const n = await peer.recv();
  assertEquals([n.code, textOf(n)], [Code.CONTENT, "v1"]);
  const del = await writer.exchange(request({ code: Code.DELETE, path: "obs" }));
  assertEquals(del.code, Code.DELETED);
  const fin = await peer.recv();
  assertEquals([fin.type, fin.code, opt(fin, Opt.OBSERVE)], [
    CoapType.CON,
    Code.NOT_FOUND,
    undefined,
  ]);
  await peer.send(ack(fin.messageId));
  await waitFor(() => h.server.observerCount === 0, "observations ended");
  const again = await writer.exchange(request({ code: Code.PUT, path: "obs", payload: "v2" }));
  assertEquals(again.code, Code.CREATED);
});

Deno.test("plugtest /obs: a content-format change the observer cannot accept ends it with 4.06", async () => {
  await using h = await plugtest();
  await using peer = new TestPeer(h.port);
  await using writer = new TestPeer(h.port);
  await peer.exchange(request({
    path: "obs",
    options: [{ number: Opt.OBSERVE, value: encodeUint(0) }, {
      number: Opt.ACCEPT,
      value: encodeUint(0),
    }],
  }));
  await writer.exchange(request({
    code: Code.PUT,
    path: "obs",
    payload: "<x/>",
    options: [{ number: Opt.CONTENT_FORMAT, value: encodeUint(41) }],
  }));
  const fin = await peer.recv();
  assertEquals([fin.code, opt(fin, Opt.OBSERVE)], [Code.NOT_ACCEPTABLE, undefined]);
  await peer.send(ack(fin.messageId));
  await waitFor(() => h.server.observerCount === 0, "observation ended");
});

Deno.test("messages Ferry originates to one endpoint carry consecutive message IDs", async () => {
  const clock = new FakeClock(0);
  await using h = await plugtest(clock);
  await using peer = new TestPeer(h.port);
  await peer.exchange(request({
    path: "obs-non",
    options: [{ number: Opt.OBSERVE, value: encodeUint(0) }],
  }));
  const mids: number[] = [];
  for (let i = 0; i < 3; i++) {
    clock.tick(5000);
    mids.push((await peer.recv()).messageId);
  }
  assertEquals([(mids[1] - mids[0]) & 0xffff, (mids[2] - mids[1]) & 0xffff], [1, 1]);
});

Deno.test("plugtest /separate answers a NON request later with a NON response (no empty ACK)", async () => {
  const clock = new FakeClock(0);
  await using h = await plugtest(clock, { separateResponseAfterMs: 1000 });
  await using peer = new TestPeer(h.port);
  const req = request({ type: CoapType.NON, path: "separate" });
  await peer.send(req);
  await waitFor(() => h.core.stats.framesIn.get({ protocol: "coap" }) === 1, "request in");
  clock.tick(1000);
  await peer.quiet(50);
  clock.tick(1000);
  const res = await peer.recv();
  assertEquals([res.type, res.code], [CoapType.NON, Code.CONTENT]);
  assertEquals(res.token, req.token);
});

Deno.test("a large notification goes out block-wise: first block with Block2 and Observe", async () => {
  await using h = await plugtest();
  await using peer = new TestPeer(h.port);
  await using writer = new TestPeer(h.port);
  await peer.exchange(request({
    type: CoapType.NON,
    path: "obs",
    options: [{ number: Opt.OBSERVE, value: encodeUint(0) }],
  }));
  await writer.exchange(request({
    code: Code.PUT,
    path: "obs",
    payload: "x".repeat(1500),
    options: [{ number: Opt.BLOCK1, value: encodeUint(0x06) }],
  }));
  const n = await peer.recv();
  assert(opt(n, Opt.OBSERVE) !== undefined);
  assertEquals(decodeUint(opt(n, Opt.BLOCK2)!) & 0x0f, 0x0e); // NUM 0, M=1, SZX 6
  assertEquals(n.payload.length, 1024);
});
