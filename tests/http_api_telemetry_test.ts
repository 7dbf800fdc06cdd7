/**
 * HTTP device API uplink over real sockets: single messages, channels, batches, auth, limits,
 * backpressure and rate limits, with fetch, curl and raw sockets.
 *
 * @module
 */

import { FakeClock } from "../src/core/clock.ts";
import { assert, assertEquals } from "./_assert.ts";
import { dec, enc, endsWithin, waitFor } from "./_harness.ts";
import { bearer, curl, readRaw, startHttpApi } from "./_http_api_harness.ts";

const P = "https://ferry.dev/problems/";

Deno.test("HTTP telemetry POST with a bearer token is published on the device's topic", async () => {
  await using h = await startHttpApi();
  const res = await h.fetch("/api/v1/devices/d1/telemetry", {
    method: "POST",
    headers: { ...bearer("t1"), "content-type": "application/json" },
    body: '{"temp":21.5}',
  });
  assertEquals(res.status, 202);
  assertEquals(await res.json(), { accepted: 1 });
  const m = h.seen.find((m) => m.topic === "devices/d1/telemetry");
  assert(m, "message not routed");
  assertEquals(dec(m.payload), '{"temp":21.5}');
  assertEquals(m.protocol, "http");
  assertEquals(m.deviceId, "d1");
  assertEquals(m.properties?.contentType, "application/json");
});

Deno.test("HTTP telemetry on a channel goes to devices/{id}/telemetry/{channel}", async () => {
  await using h = await startHttpApi();
  const res = await h.fetch("/api/v1/devices/d1/telemetry/temp", {
    method: "POST",
    headers: bearer("t1"),
    body: "21.5",
  });
  assertEquals(res.status, 202);
  await res.body?.cancel();
  assertEquals(h.seen.filter((m) => m.topic === "devices/d1/telemetry/temp").length, 1);
});

Deno.test("HTTP telemetry from curl keeps binary (CBOR) bytes intact", async () => {
  await using h = await startHttpApi();
  const cbor = new Uint8Array([0xa1, 0x64, 0x74, 0x65, 0x6d, 0x70, 0xf9, 0x4d, 0x60, 0x00, 0xff]);
  const r = await curl([
    "-X",
    "POST",
    "-H",
    "Authorization: Bearer t1",
    "-H",
    "Content-Type: application/cbor",
    "--data-binary",
    "@-",
    `${h.base}/api/v1/devices/d1/telemetry/cbor`,
  ], cbor);
  assertEquals(r.status, 202, r.text);
  const m = h.seen.find((m) => m.topic === "devices/d1/telemetry/cbor");
  assertEquals(m?.payload, cbor);
  assertEquals(m?.properties?.payloadFormat, 0);
});

Deno.test("HTTP telemetry without credentials is 401 problem+json with WWW-Authenticate", async () => {
  await using h = await startHttpApi();
  const res = await h.fetch("/api/v1/devices/d1/telemetry", { method: "POST", body: "x" });
  assertEquals(res.status, 401);
  assertEquals(res.headers.get("content-type"), "application/problem+json");
  assert(res.headers.get("www-authenticate")?.includes("Bearer"));
  const p = await res.json();
  assertEquals(p.type, P + "unauthorized");
  assertEquals(p.status, 401);
  assertEquals(p.instance, "/api/v1/devices/d1/telemetry");
  assertEquals(h.seen.filter((m) => m.topic.includes("telemetry")).length, 0);
});

Deno.test("HTTP telemetry with a wrong token is 401", async () => {
  await using h = await startHttpApi();
  const res = await h.fetch("/api/v1/devices/d1/telemetry", {
    method: "POST",
    headers: bearer("t2"),
    body: "x",
  });
  assertEquals(res.status, 401);
  assertEquals((await res.json()).type, P + "unauthorized");
});

Deno.test("HTTP telemetry with another device's credentials is 403", async () => {
  await using h = await startHttpApi();
  const r = await curl([
    "-u",
    "d2:t2",
    "--data-binary",
    "x",
    `${h.base}/api/v1/devices/d1/telemetry`,
  ]);
  assertEquals(r.status, 403);
  assertEquals(JSON.parse(r.text).type, P + "forbidden");
  assertEquals(h.seen.filter((m) => m.topic.includes("telemetry")).length, 0);
});

Deno.test("HTTP telemetry from an unknown device is accepted with any token when anonymous", async () => {
  await using h = await startHttpApi({ core: { anonymous: true } });
  const res = await h.fetch("/api/v1/devices/stranger/telemetry", {
    method: "POST",
    headers: bearer("whatever"),
    body: "1",
  });
  assertEquals(res.status, 202);
  await res.body?.cancel();
  // Known devices still need their own token.
  const bad = await h.fetch("/api/v1/devices/d1/telemetry", {
    method: "POST",
    headers: bearer("whatever"),
    body: "1",
  });
  assertEquals(bad.status, 401);
  await bad.body?.cancel();
});

Deno.test("HTTP telemetry with an invalid channel or device id is 400 with a stable type", async () => {
  await using h = await startHttpApi();
  const a = await h.fetch("/api/v1/devices/d1/telemetry/Bad.Channel", {
    method: "POST",
    headers: bearer("t1"),
    body: "1",
  });
  assertEquals(a.status, 400);
  assertEquals((await a.json()).type, P + "invalid-channel");
  const b = await h.fetch("/api/v1/devices/bad%20id/telemetry", {
    method: "POST",
    headers: bearer("t1"),
    body: "1",
  });
  assertEquals(b.status, 400);
  assertEquals((await b.json()).type, P + "invalid-device-id");
});

Deno.test("HTTP API answers unknown paths 404 and wrong methods 405 with Allow", async () => {
  await using h = await startHttpApi();
  const a = await h.fetch("/api/v1/nothing");
  assertEquals(a.status, 404);
  assertEquals((await a.json()).type, P + "not-found");
  const b = await h.fetch("/api/v1/devices/d1/telemetry", { headers: bearer("t1") });
  assertEquals(b.status, 405);
  assertEquals(b.headers.get("allow"), "POST");
  assertEquals((await b.json()).type, P + "method-not-allowed");
  const c = await h.fetch("/healthz"); // not claimed by the API
  assertEquals(c.status, 200);
  await c.body?.cancel();
});

Deno.test("HTTP telemetry over the declared size limit is 413 with the limit, unread", async () => {
  await using h = await startHttpApi({ api: { maxBodyBytes: 1000 } });
  const r = await curl([
    "-H",
    "Authorization: Bearer t1",
    "--data-binary",
    "@-",
    `${h.base}/api/v1/devices/d1/telemetry`,
  ], new Uint8Array(5000));
  assertEquals(r.status, 413);
  const p = JSON.parse(r.text);
  assertEquals(p.type, P + "payload-too-large");
  assertEquals(p.limit, 1000);
  assertEquals(h.seen.filter((m) => m.topic.includes("telemetry")).length, 0);
});

Deno.test("HTTP telemetry of several MiB from curl (Expect: 100-continue) is refused 413 at once", async () => {
  await using h = await startHttpApi({ api: { maxBodyBytes: 1000 } });
  const t0 = Date.now();
  const r = await curl([
    // Were the 413 not sent before the body, curl would wait this long before uploading it.
    "--expect100-timeout",
    "60",
    "-H",
    "Authorization: Bearer t1",
    "--data-binary",
    "@-",
    `${h.base}/api/v1/devices/d1/telemetry`,
  ], new Uint8Array(3 * 1024 * 1024));
  assertEquals(r.code, 0);
  assertEquals(r.status, 413);
  assertEquals(JSON.parse(r.text).limit, 1000);
  // Refused before the body: far less than curl's 60 s wait for 100 Continue (--max-time 15 ends
  // curl first, with an error code, if the server waited for the body).
  assert(Date.now() - t0 < 30_000, "curl waited for the 100-continue timeout");
});

Deno.test("HTTP telemetry streamed without a length is cut off at the limit with 413", async () => {
  await using h = await startHttpApi({ api: { maxBodyBytes: 1000 } });
  let sent = 0;
  const body = new ReadableStream<Uint8Array>({
    pull(c) {
      if (sent >= 4000) return c.close();
      sent += 500;
      c.enqueue(new Uint8Array(500));
    },
  });
  const res = await h.fetch("/api/v1/devices/d1/telemetry", {
    method: "POST",
    headers: bearer("t1"),
    body,
  });
  assertEquals(res.status, 413);
  assertEquals((await res.json()).limit, 1000);
  assertEquals(h.seen.filter((m) => m.topic.includes("telemetry")).length, 0);
});

Deno.test("HTTP telemetry sent slowly but within the body timeout is accepted", async () => {
  await using h = await startHttpApi({ api: { bodyTimeoutMs: 3000 } });
  let n = 0;
  const body = new ReadableStream<Uint8Array>({
    async pull(c) {
      if (n === 8) return c.close();
      await new Promise((r) => setTimeout(r, 25));
      c.enqueue(enc(`${n++}`));
    },
  });
  const res = await h.fetch("/api/v1/devices/d1/telemetry", {
    method: "POST",
    headers: bearer("t1"),
    body,
  });
  assertEquals(res.status, 202);
  await res.body?.cancel();
  assertEquals(dec(h.seen.find((m) => m.topic === "devices/d1/telemetry")!.payload), "01234567");
});

Deno.test("HTTP telemetry whose body never finishes gets 408 and does not block shutdown", async () => {
  const h = await startHttpApi({ api: { bodyTimeoutMs: 200 } });
  const conn = await Deno.connect({ hostname: "127.0.0.1", port: h.port });
  try {
    await conn.write(enc(
      "POST /api/v1/devices/d1/telemetry HTTP/1.1\r\nHost: localhost\r\nAuthorization: Bearer t1\r\n" +
        "Content-Length: 100\r\n\r\nhello",
    ));
    const text = await readRaw(conn, (t) => t.includes("request-timeout"));
    assert(text.startsWith("HTTP/1.1 408"), text);
    assert(text.includes("application/problem+json"), text);
    assertEquals(h.seen.filter((m) => m.topic.includes("telemetry")).length, 0);
    // The stalled upload must not hold the server's graceful shutdown.
    // The client never finishes or closes: a shutdown that waited for it would never end. The
    // bound is a failure deadline (30 s), not a speed: what is asserted is that it ends at all.
    const t0 = Date.now();
    assert(await endsWithin(h[Symbol.asyncDispose](), 30_000), "shutdown waited for the upload");
    assert(Date.now() - t0 < 30_000, `shutdown took ${Date.now() - t0} ms`);
  } finally {
    conn.close();
    await h[Symbol.asyncDispose]();
  }
});

Deno.test("HTTP telemetry chunked body that stalls gets 408 and does not block shutdown", async () => {
  const h = await startHttpApi({ api: { bodyTimeoutMs: 200 } });
  const conn = await Deno.connect({ hostname: "127.0.0.1", port: h.port });
  try {
    await conn.write(enc(
      "POST /api/v1/devices/d1/telemetry HTTP/1.1\r\nHost: localhost\r\nAuthorization: Bearer t1\r\n" +
        "Transfer-Encoding: chunked\r\n\r\n5\r\nhello\r\n",
    ));
    const text = await readRaw(conn, (t) => t.includes("request-timeout"));
    assert(text.startsWith("HTTP/1.1 408"), text);
    // The client never finishes or closes: a shutdown that waited for it would never end. The
    // bound is a failure deadline (30 s), not a speed: what is asserted is that it ends at all.
    const t0 = Date.now();
    assert(await endsWithin(h[Symbol.asyncDispose](), 30_000), "shutdown waited for the upload");
    assert(Date.now() - t0 < 30_000, `shutdown took ${Date.now() - t0} ms`);
  } finally {
    conn.close();
    await h[Symbol.asyncDispose]();
  }
});

Deno.test("HTTP telemetry JSON array batch publishes one message per element in order", async () => {
  await using h = await startHttpApi();
  const res = await h.fetch("/api/v1/devices/d1/telemetry/temp", {
    method: "POST",
    headers: { ...bearer("t1"), "content-type": "application/json" },
    body: JSON.stringify([{ v: 1 }, { v: 2 }, { v: 3 }]),
  });
  assertEquals(res.status, 202);
  assertEquals(await res.json(), { accepted: 3 });
  await waitFor(
    () => h.seen.filter((m) => m.topic === "devices/d1/telemetry/temp").length === 3,
    "3",
  );
  assertEquals(
    h.seen.filter((m) => m.topic === "devices/d1/telemetry/temp").map((m) => dec(m.payload)),
    ['{"v":1}', '{"v":2}', '{"v":3}'],
  );
});

Deno.test("HTTP telemetry JSON array with batch=false is one message", async () => {
  await using h = await startHttpApi();
  const res = await h.fetch("/api/v1/devices/d1/telemetry?batch=false", {
    method: "POST",
    headers: { ...bearer("t1"), "content-type": "application/json" },
    body: "[1,2]",
  });
  assertEquals(await res.json(), { accepted: 1 });
  assertEquals(dec(h.seen.find((m) => m.topic === "devices/d1/telemetry")!.payload), "[1,2]");
});

Deno.test("HTTP telemetry NDJSON batch from curl publishes each line", async () => {
  await using h = await startHttpApi();
  const r = await curl([
    "-H",
    "Authorization: Bearer t1",
    "-H",
    "Content-Type: application/x-ndjson",
    "--data-binary",
    "@-",
    `${h.base}/api/v1/devices/d1/telemetry`,
  ], enc('{"a":1}\r\n\n{"a":2}\n{"a":3}'));
  assertEquals(r.status, 202, r.text);
  assertEquals(JSON.parse(r.text), { accepted: 3 });
  await waitFor(() => h.seen.filter((m) => m.topic === "devices/d1/telemetry").length === 3, "3");
  assertEquals(
    h.seen.filter((m) => m.topic === "devices/d1/telemetry").map((m) => dec(m.payload)),
    ['{"a":1}', '{"a":2}', '{"a":3}'],
  );
});

Deno.test("HTTP telemetry batch with a bad line is refused whole with 400", async () => {
  await using h = await startHttpApi();
  const res = await h.fetch("/api/v1/devices/d1/telemetry", {
    method: "POST",
    headers: { ...bearer("t1"), "content-type": "application/x-ndjson" },
    body: '{"a":1}\nnot json\n{"a":3}\n',
  });
  assertEquals(res.status, 400);
  const p = await res.json();
  assertEquals(p.type, P + "invalid-batch");
  assert(p.detail.includes("line 2"), p.detail);
  assertEquals(h.seen.filter((m) => m.topic.includes("telemetry")).length, 0);
});

Deno.test("HTTP telemetry batch over maxBatch is refused whole with 413 and the limit", async () => {
  await using h = await startHttpApi({ api: { maxBatch: 5 } });
  const res = await h.fetch("/api/v1/devices/d1/telemetry", {
    method: "POST",
    headers: { ...bearer("t1"), "content-type": "application/json" },
    body: JSON.stringify([1, 2, 3, 4, 5, 6]),
  });
  assertEquals(res.status, 413);
  const p = await res.json();
  assertEquals(p.type, P + "batch-too-large");
  assertEquals(p.limit, 5);
  assertEquals(h.seen.filter((m) => m.topic.includes("telemetry")).length, 0);
});

/** A sink that holds the pipeline's only handler until released. */
function blockingSink(): { sink: () => Promise<void>; release: () => void } {
  let release!: () => void;
  const gate = new Promise<void>((r) => release = r);
  return { sink: () => gate, release: () => release() };
}

Deno.test("HTTP telemetry into a full pipeline is 429 with Retry-After, not buffered", async () => {
  await using h = await startHttpApi({
    core: { queueCapacity: 2, concurrency: 1 },
    api: { overloadRetryAfterSec: 3 },
  });
  const gate = blockingSink();
  h.core.addSink(gate.sink);
  const post = (body: string) =>
    h.fetch("/api/v1/devices/d1/telemetry", { method: "POST", headers: bearer("t1"), body });
  try {
    // The handler is blocked: accepted messages (and the device's presence) fill the queue.
    let accepted = 0;
    let refused: Response | undefined;
    for (let i = 0; i < 10 && !refused; i++) {
      const r = await post(String(i));
      if (r.status === 429) refused = r;
      else {
        assertEquals(r.status, 202);
        await r.body?.cancel();
        accepted++;
      }
    }
    assert(refused, "never refused");
    assert(accepted >= 1 && accepted <= 3, `accepted ${accepted}`);
    assert(!h.core.pipeline.hasRoom);
    assertEquals(refused.headers.get("retry-after"), "3");
    const p = await refused.json();
    assertEquals(p.type, P + "overloaded");
    assertEquals(p.retryAfter, 3);
    assertEquals(h.core.pipeline.waiting, 0, "a refused request waits for room");
  } finally {
    gate.release();
  }
});

Deno.test("HTTP telemetry batch larger than the pipeline's headroom is refused whole", async () => {
  await using h = await startHttpApi({ core: { queueCapacity: 6, concurrency: 1 } });
  const gate = blockingSink();
  h.core.addSink(gate.sink);
  try {
    const first = await h.fetch("/api/v1/devices/d1/telemetry", {
      method: "POST",
      headers: bearer("t1"),
      body: "0",
    });
    assertEquals(first.status, 202);
    await first.body?.cancel();
    await waitFor(() => h.core.pipeline.inUse === 1, "handler busy");
    const depth = h.core.pipeline.depth;
    const headroom = h.core.pipeline.capacity - depth;
    const before = h.seen.length;
    const r = await h.fetch("/api/v1/devices/d1/telemetry", {
      method: "POST",
      headers: { ...bearer("t1"), "content-type": "application/json" },
      body: JSON.stringify(Array.from({ length: headroom + 1 }, (_, i) => i)),
    });
    assertEquals(r.status, 429);
    assertEquals((await r.json()).type, P + "overloaded");
    assertEquals(h.core.pipeline.depth, depth, "part of a refused batch was queued");
    assertEquals(h.seen.length, before);
    const fits = await h.fetch("/api/v1/devices/d1/telemetry", {
      method: "POST",
      headers: { ...bearer("t1"), "content-type": "application/json" },
      body: JSON.stringify(Array.from({ length: headroom }, (_, i) => i)),
    });
    assertEquals(fits.status, 202);
    assertEquals(await fits.json(), { accepted: headroom });
  } finally {
    gate.release();
  }
});

Deno.test("HTTP telemetry over the device's rate limit is 429 rate-limited until tokens refill", async () => {
  const clock = new FakeClock(1_000_000);
  await using h = await startHttpApi({ clock, core: { deviceRatePerSec: 2, deviceBurst: 2 } });
  const post = (id: string, token: string) =>
    h.fetch(`/api/v1/devices/${id}/telemetry`, {
      method: "POST",
      headers: bearer(token),
      body: "x",
    });
  for (let i = 0; i < 2; i++) {
    const r = await post("d1", "t1");
    assertEquals(r.status, 202);
    await r.body?.cancel();
  }
  const limited = await post("d1", "t1");
  assertEquals(limited.status, 429);
  assertEquals(limited.headers.get("retry-after"), "1");
  assertEquals((await limited.json()).type, P + "rate-limited");
  const other = await post("d2", "t2"); // per device
  assertEquals(other.status, 202);
  await other.body?.cancel();
  clock.tick(500);
  const again = await post("d1", "t1");
  assertEquals(again.status, 202);
  await again.body?.cancel();
});

Deno.test("HTTP telemetry durability: 202 comes only after the accept hook resolved", async () => {
  await using h = await startHttpApi();
  let release!: () => void;
  const hookDone = new Promise<void>((r) => release = r);
  let hooked = 0;
  h.core.setAcceptHook(async (m) => {
    if (!m.topic.includes("telemetry")) return;
    hooked++;
    await hookDone;
  });
  let answered = false;
  const pending = h.fetch("/api/v1/devices/d1/telemetry", {
    method: "POST",
    headers: bearer("t1"),
    body: "durable",
  }).then((r) => {
    answered = true;
    return r;
  });
  try {
    await waitFor(() => hooked === 1, "accept hook called");
    await new Promise((r) => setTimeout(r, 50));
    assert(!answered, "answered before the message was durable");
  } finally {
    release();
  }
  const res = await pending;
  assertEquals(res.status, 202);
  await res.body?.cancel();
});

Deno.test("HTTP telemetry counts requests, bytes and errors in /metrics", async () => {
  await using h = await startHttpApi();
  const ok = await h.fetch("/api/v1/devices/d1/telemetry", {
    method: "POST",
    headers: bearer("t1"),
    body: "12345",
  });
  await ok.body?.cancel();
  const bad = await h.fetch("/api/v1/devices/d1/telemetry", { method: "POST", body: "x" });
  await bad.body?.cancel();
  const text = await (await h.fetch("/metrics")).text();
  assert(/ferry_messages_received_total\{protocol="http"\} 1/.test(text), text);
  assert(/ferry_received_bytes_total\{protocol="http"\} 5/.test(text), "bytes");
  assert(text.includes('ferry_errors_total{code="unauthorized",protocol="http"} 1'), "errors");
});

Deno.test("HTTP telemetry the accept hook (spool) refuses is 503 unavailable, not 202", async () => {
  await using h = await startHttpApi();
  h.core.setAcceptHook((m) => {
    if (m.topic.includes("telemetry")) throw new Error("disk full");
  });
  const res = await h.fetch("/api/v1/devices/d1/telemetry", {
    method: "POST",
    headers: bearer("t1"),
    body: "x",
  });
  assertEquals(res.status, 503);
  const p = await res.json();
  assertEquals(p.type, P + "unavailable");
  assert(p.detail.includes("disk full"), p.detail);
});

Deno.test("HTTP telemetry batch whose spool fails midway is 503 and says how many were accepted", async () => {
  await using h = await startHttpApi();
  let n = 0;
  h.core.setAcceptHook((m) => {
    if (m.topic.includes("telemetry") && ++n === 3) throw new Error("disk full");
  });
  const res = await h.fetch("/api/v1/devices/d1/telemetry", {
    method: "POST",
    headers: { ...bearer("t1"), "content-type": "application/json" },
    body: "[1,2,3,4]",
  });
  assertEquals(res.status, 503);
  assertEquals((await res.json()).accepted, 2);
});
