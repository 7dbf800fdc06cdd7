/**
 * Resource attacks on the HTTP listener, against a real gateway process (issue #13 items 5, 6, 7
 * and 8): connection floods against one descriptor budget shared by every listener (and an
 * `EMFILE` that must not kill the process), head and idle timeouts, hundreds of bodies that never
 * finish, uploads past the payload budget, and a shutdown that clients cannot hold.
 */

import { assert, assertEquals } from "./_assert.ts";
import {
  attackGateway,
  closeQuietly,
  eventually,
  fdCount,
  rawExchange,
  readUntil,
  rssOf,
  statusOf,
  wholeResponse,
} from "./_attack_http.ts";
import { startMosquitto, subscribe } from "./_mosquitto.ts";

const DEVICE = { id: "d1", token: "t1" };
const enc = new TextEncoder();

async function open(port: number, n: number): Promise<Deno.Conn[]> {
  const conns: Deno.Conn[] = [];
  for (let i = 0; i < n; i++) {
    try {
      conns.push(await Deno.connect({ hostname: "127.0.0.1", port }));
    } catch { /* the backlog is full: the server refuses, which is fine */ }
  }
  return conns;
}

/** True once the server closed `conn` (after an optional answer). */
async function serverClosed(conn: Deno.Conn, timeoutMs = 15_000): Promise<string | undefined> {
  const r = await readUntil(conn, () => false, timeoutMs);
  return r.closed ? r.text : undefined;
}

async function metric(base: string, name: string): Promise<number> {
  const text = await (await fetch(`${base}/metrics`)).text();
  let sum = 0;
  for (const line of text.split("\n")) {
    if (line.startsWith(name) && (line[name.length] === " " || line[name.length] === "{")) {
      sum += Number(line.slice(line.lastIndexOf(" ") + 1));
    }
  }
  return sum;
}

Deno.test("attack: a connection flood spends the one descriptor budget of every listener, is refused 503, and the process serves again afterwards", async () => {
  await using gw = await attackGateway(
    { auth: { devices: [DEVICE] }, limits: { reservedDescriptors: 200 } },
    { fileLimit: 400, listeners: ["http", "mqtt"] },
  );
  const mqttPort = gw.proc.addresses.mqtt.port;
  const flood = await open(gw.port, 300); // a budget of 200 connections, every listener together
  try {
    // The ones past the budget are answered 503 and closed without being read.
    let refused = 0;
    await Promise.all(flood.map(async (c) => {
      const r = await readUntil(c, (t) => t.includes("\r\n\r\n"), 1500);
      if (statusOf(r.text) === 503) refused++;
    }));
    assert(refused >= 50, `only ${refused} of 300 refused`);
    // MQTT shares the budget: it refuses too while HTTP holds it.
    const m = await Deno.connect({ hostname: "127.0.0.1", port: mqttPort });
    assert(await serverClosed(m) !== undefined, "MQTT kept a connection past the budget");
    closeQuietly(m);
  } finally {
    flood.forEach(closeQuietly);
  }
  await eventually(async () => {
    try {
      const r = await fetch(`${gw.base}/healthz`);
      await r.body?.cancel();
      return r.status === 200;
    } catch {
      return false;
    }
  }, "the listener to serve again");
  assert(await metric(gw.base, "ferry_connections_refused_total") > 0);
  assert(!gw.proc.stderr().includes("Too many open files"), "a descriptor limit was hit");
  assert(gw.proc.lines.every((l) => l.level !== "error" || l.msg !== "accept failed"));
});

Deno.test("attack: EMFILE during accept (a reserve set too small) is logged, not fatal", async () => {
  await using gw = await attackGateway(
    { auth: { devices: [DEVICE] }, limits: { reservedDescriptors: 16 } },
    { fileLimit: 160 },
  );
  const flood = await open(gw.port, 250);
  try {
    await gw.proc.waitForLine((l) => l.msg === "accept failed");
  } finally {
    flood.forEach(closeQuietly);
  }
  await eventually(async () => {
    try {
      const r = await fetch(`${gw.base}/healthz`);
      await r.body?.cancel();
      return r.status === 200;
    } catch {
      return false;
    }
  }, "the listener to serve again");
  const accepts = gw.proc.lines.filter((l) => l.msg === "accept failed").length;
  assert(accepts <= 3, `accept failures not rate-limited: ${accepts} lines`);
});

Deno.test("attack: a silent connection, a head dribbled byte by byte and an idle keep-alive are closed", async () => {
  await using gw = await attackGateway({
    auth: { devices: [DEVICE] },
    http: { headersTimeoutMs: 300, idleTimeoutMs: 500 },
  });
  const silent = await Deno.connect({ hostname: "127.0.0.1", port: gw.port });
  const slow = await Deno.connect({ hostname: "127.0.0.1", port: gw.port });
  let dribbling = true;
  const dribble = (async () => {
    await slow.write(enc.encode("GET /healthz HTTP/1.1\r\nHost: localhost\r\nX-A: "));
    while (dribbling) {
      try {
        await slow.write(enc.encode("a"));
      } catch {
        return;
      }
      await new Promise((r) => setTimeout(r, 50));
    }
  })();
  const keep = await rawExchange(
    gw.port,
    "GET /healthz HTTP/1.1\r\nHost: localhost\r\n\r\n",
    wholeResponse,
  );
  assertEquals(statusOf(keep.text), 200);
  try {
    assertEquals(await serverClosed(silent), "", "a silent connection stayed open");
    assert(await serverClosed(slow) !== undefined, "a dribbled head stayed open");
    assert(await serverClosed(keep.conn) !== undefined, "an idle keep-alive stayed open");
  } finally {
    dribbling = false;
    await dribble;
    [silent, slow, keep.conn].forEach(closeQuietly);
  }
});

Deno.test("attack: eight waves of 300 bodies that never finish get 408, their connections close, descriptors return to the baseline and memory does not grow from wave to wave", async () => {
  await using gw = await attackGateway({
    auth: { devices: [DEVICE] },
    http: { deviceApi: { bodyTimeoutMs: 500 } },
  });
  const warm = await fetch(`${gw.base}/api/v1/devices/d1/telemetry`, {
    method: "POST",
    headers: { authorization: "Bearer t1" },
    body: "warm",
  });
  await warm.body?.cancel();
  const fds0 = fdCount(gw.pid);
  const rss: number[] = [rssOf(gw.pid)];
  const heap: number[] = [];
  const N = 300;
  const head = "POST /api/v1/devices/d1/telemetry HTTP/1.1\r\nHost: localhost\r\n" +
    "Authorization: Bearer t1\r\nContent-Type: application/octet-stream\r\n" +
    "Content-Length: 100000\r\n\r\n";
  const WAVES = 8;
  for (let wave = 0; wave < WAVES; wave++) {
    const conns = await open(gw.port, N);
    await Promise.all(conns.map((c) => c.write(enc.encode(head + "x".repeat(1000)))));
    const answers = await Promise.all(conns.map((c) => readUntil(c, () => false, 20_000)));
    conns.forEach(closeQuietly);
    assertEquals(answers.filter((a) => statusOf(a.text) === 408).length, N, "every stall: 408");
    assertEquals(answers.filter((a) => a.closed).length, N, "every stalled connection closed");
    await eventually(() => fdCount(gw.pid) <= fds0 + 5, `descriptors back to ${fds0}`);
    rss.push(rssOf(gw.pid));
    heap.push(await metric(gw.base, "ferry_process_heap_used_bytes"));
  }
  const mb = rss.map((r) => Math.round(r / 1048576));
  console.log(`RSS (MB) at start and after each wave of ${N} stalled uploads: ${mb.join(", ")}`);
  // The first wave leaves memory with the allocator for reuse. Native memory then climbs in steps
  // to a plateau (measured over 20 waves: ~185 MB from wave 3 on, the V8 heap flat at 15-18 MB), so
  // RSS gets a bound, and a leak of JavaScript objects shows in the heap, which must stay flat.
  const mib = (b: number) => (b / 1048576).toFixed(1);
  console.log(`V8 heap used (MB) after each wave: ${heap.map(mib).join(", ")}`);
  assert(rss[1] - rss[0] < 150 * 1048576, `the first wave grew RSS by ${mb[1] - mb[0]} MB`);
  assert(rss[WAVES] - rss[1] < 100 * 1048576, `RSS grew after the first wave: ${mb.join(", ")} MB`);
  assert(
    heap[WAVES - 1] - Math.min(...heap) < 6 * 1048576, // 20 KB per stalled upload, over 7 waves
    `the V8 heap grows from wave to wave: ${heap.map(mib).join(", ")} MB`,
  );
});

Deno.test("attack: uploads past the payload budget are refused (429 overloaded, Retry-After), not buffered", async () => {
  await using gw = await attackGateway({
    auth: { devices: [DEVICE] },
    limits: { payloadBudgetBytes: 262_144 },
    http: { deviceApi: { maxBodyBytes: 200_000, bodyTimeoutMs: 5000 } },
  });
  // Two stalled uploads of 200 kB each: the first takes 200 kB of the 256 kB budget.
  const head = (n: number) =>
    "POST /api/v1/devices/d1/telemetry HTTP/1.1\r\nHost: localhost\r\nAuthorization: Bearer t1\r\n" +
    `Content-Length: ${n}\r\n\r\n`;
  const first = await Deno.connect({ hostname: "127.0.0.1", port: gw.port });
  await first.write(enc.encode(head(200_000) + "x"));
  await eventually(
    async () => await metric(gw.base, "ferry_payload_budget_used_bytes") >= 200_000,
    "the first upload to take its share",
  );
  const second = await rawExchange(gw.port, head(200_000) + "x", wholeResponse);
  closeQuietly(second.conn);
  closeQuietly(first);
  assertEquals(statusOf(second.text), 429, second.text);
  assert(/\r\nretry-after: \d+/i.test(second.text), second.text);
  assert(second.text.includes("overloaded"), second.text);
  await eventually(
    async () => await metric(gw.base, "ferry_payload_budget_used_bytes") === 0,
    "the budget to be given back",
  );
});

Deno.test("attack: SIGTERM with stalled bodies, idle keep-alives and SSE streams open exits 0 in bounded time, and every acknowledged message reaches the upstream", async () => {
  await using broker = await startMosquitto({ persistence: true });
  await using sub = await subscribe(broker.url, "ferry/gw1/devices/+/telemetry");
  const config = {
    auth: { devices: [DEVICE] },
    http: { shutdownGraceMs: 1000 },
    northbound: { url: broker.url, gatewayId: "gw1" },
  };
  const gw = await attackGateway(config);
  const acked = new Set<string>();
  let sending = true;
  const senders = Array.from({ length: 4 }, async (_, s) => {
    for (let i = 0; sending; i++) {
      try {
        const r = await fetch(`${gw.base}/api/v1/devices/d1/telemetry`, {
          method: "POST",
          headers: { authorization: "Bearer t1" },
          body: `${s}-${i}`,
        });
        await r.body?.cancel();
        if (r.status === 202) acked.add(`${s}-${i}`);
      } catch {
        return; // the gateway went away
      }
    }
  });
  await eventually(() => acked.size >= 50, "some acknowledged traffic");
  const stalled = await open(gw.port, 20);
  const idle = await open(gw.port, 20);
  await Promise.all(stalled.map((c) =>
    c.write(enc.encode(
      "POST /api/v1/devices/d1/telemetry HTTP/1.1\r\nHost: localhost\r\nAuthorization: Bearer t1\r\n" +
        "Content-Length: 1000\r\n\r\npartial",
    ))
  ));
  const streams = await Promise.all(
    Array.from({ length: 3 }, () =>
      fetch(`${gw.base}/api/v1/devices/d1/commands`, {
        headers: { authorization: "Bearer t1", accept: "text/event-stream" },
      })),
  );
  const draining = streams.map(async (s) => {
    try {
      for await (const _ of s.body!) { /* read until the end */ }
    } catch { /* cut */ }
  });
  const t0 = Date.now();
  gw.proc.child.kill("SIGTERM");
  const status = await gw.proc.status;
  const took = Date.now() - t0;
  sending = false;
  await Promise.all([...senders, ...draining]);
  [...stalled, ...idle].forEach(closeQuietly);
  assertEquals(status.code, 0, gw.proc.stderr().slice(-2000));
  // The bound is the grace (1 s here) plus the drain; "well within 10 s" on an idle machine.
  assert(took < 30_000, `shutdown took ${took} ms`);
  console.log(`shutdown with 20 stalled bodies, 20 idle keep-alives, 3 SSE streams: ${took} ms`);
  // Restart on the same data directory: whatever was acknowledged and still spooled goes up.
  const dir = gw.dir;
  const again = await attackGateway({ ...config, dataDir: dir });
  try {
    const got = () => new Set(sub.received.map((r) => r.text));
    await eventually(
      () => [...acked].every((k) => got().has(k)),
      "every acknowledged message",
      30_000,
    )
      .catch((err) => {
        const missing = [...acked].filter((k) => !got().has(k));
        throw new Error(`${err.message}: ${missing.length} missing, e.g. ${missing.slice(0, 5)}`);
      });
  } finally {
    await again.proc[Symbol.asyncDispose]();
    await gw[Symbol.asyncDispose]();
  }
});
