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
  const octets = await peer.exchange(request({ path: "multi-format", options: accept(42) }));
  assertEquals(octets.code, Code.NOT_ACCEPTABLE);
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

// ---- Issue #14 item 11: the rest of the set the ETSI test descriptions use ---------------------

const hex = (b: Uint8Array) => [...b].map((x) => x.toString(16).padStart(2, "0")).join("");

/** The observer's final notification: CON, `code`, no Observe option; acknowledged. */
async function finalNotification(h: { server: { outstanding: number } }, peer: TestPeer) {
  const fin = await peer.recv();
  assertEquals([fin.type, opt(fin, Opt.OBSERVE)], [CoapType.CON, undefined]);
  await peer.send(ack(fin.messageId));
  await waitFor(() => h.server.outstanding === 0, "final notification acknowledged");
  return fin;
}
const observeOpt = (n = 0) => ({ number: Opt.OBSERVE, value: encodeUint(n) });
const acceptOpt = (n: number) => ({ number: Opt.ACCEPT, value: encodeUint(n) });

Deno.test("plugtest /multi-format answers application/json (50) and application/cbor (60) by Accept", async () => {
  await using h = await plugtest();
  await using peer = new TestPeer(h.port);
  const json = await peer.exchange(
    request({ path: "multi-format", messageId: 0x1234, options: [acceptOpt(50)] }),
  );
  assertEquals([json.code, decodeUint(opt(json, Opt.CONTENT_FORMAT)!)], [Code.CONTENT, 50]);
  assertEquals(JSON.parse(textOf(json)), { type: "CON", code: "0.01", mid: 0x1234 });
  const cbor = await peer.exchange(
    request({ path: "multi-format", messageId: 0x1235, options: [acceptOpt(60)] }),
  );
  assertEquals([cbor.code, decodeUint(opt(cbor, Opt.CONTENT_FORMAT)!)], [Code.CONTENT, 60]);
  // {"type": "CON", "code": "0.01", "mid": 0x1235} in CBOR (RFC 8949), byte for byte
  assertEquals(
    hex(cbor.payload),
    "a3" + "6474797065" + "63434f4e" + "64636f6465" + "64302e3031" + "636d6964" + "191235",
  );
});

Deno.test("plugtest link filtering returns what TD_COAP_LINK_02..09 expect", async () => {
  await using h = await plugtest();
  await using peer = new TestPeer(h.port);
  const hrefs = async (q: string) => {
    const r = await peer.exchange(request({ path: ".well-known/core", query: [q] }));
    assertEquals(r.code, Code.CONTENT);
    return [...textOf(r).matchAll(/<([^>]+)>/g)].map((m) => m[1]);
  };
  assertEquals(await hrefs("rt=Type1"), ["/link1", "/link3"]); // LINK_02
  assert((await hrefs("rt=*")).includes("/link2")); // LINK_03: every resource with an rt
  assertEquals(await hrefs("rt=Type2"), ["/link1", "/link2"]); // LINK_04
  assertEquals(await hrefs("if=If*"), ["/link1", "/link2"]); // LINK_05
  assertEquals(await hrefs("sz=*"), ["/large"]); // LINK_06
  assertEquals(await hrefs("href=/link1"), ["/link1"]); // LINK_07
  assertEquals(await hrefs("href=/link*"), ["/link1", "/link2", "/link3"]); // LINK_08
  assertEquals(await hrefs("ct=40"), ["/path"]); // LINK_09
  const all = await peer.exchange(request({ path: ".well-known/core", query: ["href=/link1"] }));
  assertEquals(textOf(all), '</link1>;rt="Type1 Type2";if="If1";title="Link test resource"');
  assertEquals((await peer.exchange(request({ path: "link3" }))).code, Code.CONTENT);
});

Deno.test("plugtest /obs survives DELETE: observers get 4.04, GET answers the clock again (OBS_07)", async () => {
  const clock = new FakeClock(0);
  await using h = await plugtest(clock);
  await using peer = new TestPeer(h.port);
  await using writer = new TestPeer(h.port);
  await peer.exchange(request({ path: "obs", options: [observeOpt()] }));
  const del = await writer.exchange(request({ code: Code.DELETE, path: "obs" }));
  assertEquals([del.code, (await finalNotification(h, peer)).code], [Code.DELETED, Code.NOT_FOUND]);
  assertEquals(h.server.observerCount, 0);
  const g = await writer.exchange(request({ path: "obs" }));
  assertEquals([g.code, decodeUint(opt(g, Opt.CONTENT_FORMAT) ?? new Uint8Array())], [
    Code.CONTENT,
    ContentFormat.TEXT,
  ]);
  assert(textOf(g).startsWith("1970-01-01T00:00:00.000Z"), textOf(g));
});

Deno.test("plugtest /obs runs OBS_08 then OBS_09: XML ends a text observer with 4.06, the next tick restores text", async () => {
  const clock = new FakeClock(0);
  await using h = await plugtest(clock);
  await using peer = new TestPeer(h.port);
  await using writer = new TestPeer(h.port);
  const reg = await peer.exchange(request({ path: "obs", options: [observeOpt()] }));
  assertEquals(decodeUint(opt(reg, Opt.CONTENT_FORMAT) ?? new Uint8Array()), ContentFormat.TEXT);
  // OBS_08: a PUT in another format; the observer registered without Accept
  await writer.exchange(request({
    code: Code.PUT,
    path: "obs",
    payload: "<x/>",
    options: [{ number: Opt.CONTENT_FORMAT, value: encodeUint(41) }],
  }));
  assertEquals((await finalNotification(h, peer)).code, Code.NOT_ACCEPTABLE);
  assertEquals(h.server.observerCount, 0);
  clock.tick(5000); // the tick restores the clock in text/plain
  // OBS_09: register again, update in the same format, get the new value
  const again = await peer.exchange(request({ path: "obs", options: [observeOpt()] }));
  assertEquals(decodeUint(opt(again, Opt.CONTENT_FORMAT) ?? new Uint8Array()), 0);
  await writer.exchange(request({
    code: Code.PUT,
    path: "obs",
    payload: "same format",
    options: [{ number: Opt.CONTENT_FORMAT, value: encodeUint(0) }],
  }));
  const n = await peer.recv();
  assertEquals([n.code, textOf(n)], [Code.CONTENT, "same format"]);
  assert(opt(n, Opt.OBSERVE) !== undefined);
  await peer.send(ack(n.messageId));
});

Deno.test("plugtest /obs-reset: a POST of sesame forgets every observation, silently", async () => {
  const clock = new FakeClock(0);
  await using h = await plugtest(clock);
  await using peer = new TestPeer(h.port);
  await using writer = new TestPeer(h.port);
  await peer.exchange(request({ path: "obs", options: [observeOpt()] }));
  await peer.exchange(request({ type: CoapType.NON, path: "obs-non", options: [observeOpt()] }));
  await peer.exchange(request({ path: "obs-reset", options: [observeOpt()] }));
  assertEquals(h.server.observerCount, 3);
  const r = await writer.exchange(
    request({ code: Code.POST, path: "obs-reset", payload: "sesame" }),
  );
  assertEquals(r.code, Code.CHANGED);
  assertEquals(h.server.observerCount, 0);
  clock.tick(5000); // a tick notifies nobody now
  await peer.quiet(100);
  assert(h.lines.some((l) => l.includes("plugtest observations cleared")));
});

Deno.test("plugtest /obs-large notifies block-wise: first block with Block2, Size2 and Observe (OBS_13)", async () => {
  const clock = new FakeClock(0);
  await using h = await plugtest(clock);
  await using peer = new TestPeer(h.port);
  const reg = await peer.exchange(
    request({ type: CoapType.NON, path: "obs-large", options: [observeOpt()] }),
  );
  assertEquals(decodeUint(opt(reg, Opt.SIZE2)!), 1280);
  clock.tick(5000);
  const n = await peer.recv();
  assert(opt(n, Opt.OBSERVE) !== undefined);
  assertEquals(decodeUint(opt(n, Opt.BLOCK2)!), 0x0e); // NUM 0, M=1, SZX 6
  assertEquals([n.payload.length, decodeUint(opt(n, Opt.SIZE2)!)], [1024, 1280]);
  const b1 = await peer.exchange(request({
    path: "obs-large",
    options: [{ number: Opt.BLOCK2, value: encodeUint(0x16) }],
  }));
  assertEquals([b1.payload.length, decodeUint(opt(b1, Opt.BLOCK2)!)], [256, 0x16]);
});

Deno.test("plugtest /test answers a GET with an empty token in kind (TD_COAP_CORE_12)", async () => {
  await using h = await plugtest();
  await using peer = new TestPeer(h.port);
  await peer.send(new Uint8Array([0x40, 0x01, 0x0c, 0x0c, 0xb4, 0x74, 0x65, 0x73, 0x74])); // GET /test
  const r = await peer.recv();
  assertEquals([r.type, r.code, r.messageId, r.token.length], [
    CoapType.ACK,
    Code.CONTENT,
    0x0c0c,
    0,
  ]);
  assertEquals(peer.raw[0][0], 0x60); // ACK, token length 0
});

Deno.test("plugtest /obs: an unrelated GET from the observer does not cancel it (TD_COAP_OBS_10)", async () => {
  const clock = new FakeClock(0);
  await using h = await plugtest(clock);
  await using peer = new TestPeer(h.port);
  await peer.exchange(request({ type: CoapType.NON, path: "obs", options: [observeOpt()] }));
  assertEquals((await peer.exchange(request({ path: "obs" }))).code, Code.CONTENT);
  assertEquals(h.server.observerCount, 1);
  clock.tick(5000);
  assert(opt(await peer.recv(), Opt.OBSERVE) !== undefined);
});
