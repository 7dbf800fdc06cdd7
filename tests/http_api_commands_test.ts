/**
 * HTTP device API downlink over real sockets: long-poll, Server-Sent Events, acks, waiter limits,
 * shutdown, and presence of HTTP devices.
 *
 * @module
 */

import { FakeClock } from "../src/core/clock.ts";
import { MQTT } from "../src/protocols/mqtt/server.ts";
import { createMessage } from "../src/core/message.ts";
import { assert, assertEquals } from "./_assert.ts";
import { dec, enc, waitFor } from "./_harness.ts";
import { bearer, curl, sseReader, startHttpApi } from "./_http_api_harness.ts";
import type { HttpApiHarness } from "./_http_api_harness.ts";

const P = "https://ferry.dev/problems/";

function command(h: HttpApiHarness, id: string, name: string, payload: string | Uint8Array) {
  return h.core.publish(createMessage({
    topic: `devices/${id}/commands/${name}`,
    payload: typeof payload === "string" ? enc(payload) : payload,
    qos: 1,
  }));
}

Deno.test("HTTP long-poll returns a command published while it waits", async () => {
  await using h = await startHttpApi();
  const poll = h.fetch("/api/v1/devices/d1/commands?timeout=10", { headers: bearer("t1") });
  await waitFor(() => h.api.waiters("d1") === 1, "long-poll waiting");
  await command(h, "d1", "reboot", '{"delay":5}');
  const res = await poll;
  assertEquals(res.status, 200);
  const { commands } = await res.json();
  assertEquals(commands.length, 1);
  assertEquals(commands[0].name, "reboot");
  assertEquals(commands[0].encoding, "utf8");
  assertEquals(commands[0].payload, '{"delay":5}');
  assertEquals(h.api.waiters("d1"), 0);
});

Deno.test("HTTP long-poll with nothing pending answers 204 after its timeout", async () => {
  await using h = await startHttpApi();
  const t0 = Date.now();
  const res = await h.fetch("/api/v1/devices/d1/commands?timeout=0.15", { headers: bearer("t1") });
  assertEquals(res.status, 204);
  assert(Date.now() - t0 >= 140, "answered before the timeout");
  assertEquals(h.api.waiters("d1"), 0);
});

Deno.test("HTTP long-poll timeout is capped by longPollMaxMs", async () => {
  await using h = await startHttpApi({ api: { longPollMaxMs: 100 } });
  const t0 = Date.now();
  const res = await h.fetch("/api/v1/devices/d1/commands?timeout=3600", { headers: bearer("t1") });
  assertEquals(res.status, 204);
  // Answered at the 100 ms cap, not after the hour asked for: 30 s (300× the cap) leaves a loaded
  // machine room and still fails a cap that is not applied.
  assert(Date.now() - t0 < 30_000, "waited past the cap");
});

Deno.test("HTTP long-poll with a malformed timeout is 400 invalid-parameter", async () => {
  await using h = await startHttpApi();
  const res = await h.fetch("/api/v1/devices/d1/commands?timeout=-1", { headers: bearer("t1") });
  assertEquals(res.status, 400);
  assertEquals((await res.json()).type, P + "invalid-parameter");
});

Deno.test("HTTP commands stay pending until acked; after= skips those already seen", async () => {
  await using h = await startHttpApi();
  await command(h, "d1", "reboot", "now");
  await command(h, "d1", "blink", new Uint8Array([0xff, 0x00]));
  const a = await (await h.fetch("/api/v1/devices/d1/commands?timeout=0", {
    headers: bearer("t1"),
  })).json();
  assertEquals(a.commands.map((c: { name: string }) => c.name), ["reboot", "blink"]);
  assertEquals(a.commands[1].encoding, "base64");
  assertEquals(a.commands[1].payload, "/wA=");
  // Unacked: the same commands again, unless the cursor skips them.
  const again = await (await h.fetch("/api/v1/devices/d1/commands?timeout=0", {
    headers: bearer("t1"),
  })).json();
  assertEquals(again.commands.length, 2);
  const after = await h.fetch(`/api/v1/devices/d1/commands?timeout=0&after=${a.commands[1].id}`, {
    headers: bearer("t1"),
  });
  assertEquals(after.status, 204);
  // Ack the first by name, the second by id.
  const ack1 = await h.fetch("/api/v1/devices/d1/commands/reboot/ack", {
    method: "POST",
    headers: bearer("t1"),
  });
  assertEquals(ack1.status, 202);
  assertEquals(await ack1.json(), { acked: a.commands[0].id });
  const ack2 = await h.fetch("/api/v1/devices/d1/commands/blink/ack", {
    method: "POST",
    headers: { ...bearer("t1"), "content-type": "application/json" },
    body: JSON.stringify({ status: "failed", id: a.commands[1].id, reason: "no led" }),
  });
  assertEquals(await ack2.json(), { acked: a.commands[1].id });
  const empty = await h.fetch("/api/v1/devices/d1/commands?timeout=0", { headers: bearer("t1") });
  assertEquals(empty.status, 204);
  await waitFor(
    () => h.seen.filter((m) => m.topic.startsWith("devices/d1/acks/")).length === 2,
    "acks",
  );
  const acks = h.seen.filter((m) => m.topic.startsWith("devices/d1/acks/"));
  assertEquals(acks[0].topic, "devices/d1/acks/reboot");
  assertEquals(JSON.parse(dec(acks[0].payload)), { status: "ok" });
  assertEquals(acks[1].topic, "devices/d1/acks/blink");
  assertEquals(JSON.parse(dec(acks[1].payload)), {
    status: "failed",
    id: a.commands[1].id,
    reason: "no led",
  });
  assertEquals(acks[1].protocol, "http");
});

Deno.test("HTTP ack with a body that is not a JSON object is 400", async () => {
  await using h = await startHttpApi();
  const res = await h.fetch("/api/v1/devices/d1/commands/reboot/ack", {
    method: "POST",
    headers: bearer("t1"),
    body: "[1]",
  });
  assertEquals(res.status, 400);
  assertEquals((await res.json()).type, P + "bad-request");
  const bad = await h.fetch("/api/v1/devices/d1/commands/re%2Fboot/ack", {
    method: "POST",
    headers: bearer("t1"),
  });
  assertEquals(bad.status, 400);
  assertEquals((await bad.json()).type, P + "invalid-command-name");
});

Deno.test("HTTP pending commands are bounded per device, oldest dropped", async () => {
  await using h = await startHttpApi({ core: { commands: { maxPerDevice: 3 } } });
  for (let i = 0; i < 5; i++) await command(h, "d1", `c${i}`, String(i));
  assertEquals(h.api.pendingCommands("d1"), 3);
  const { commands } = await (await h.fetch("/api/v1/devices/d1/commands?timeout=0", {
    headers: bearer("t1"),
  })).json();
  assertEquals(commands.map((c: { name: string }) => c.name), ["c2", "c3", "c4"]);
});

Deno.test("HTTP pending commands expire after the store's ttlMs", async () => {
  const clock = new FakeClock(1_000_000);
  await using h = await startHttpApi({ clock, core: { commands: { ttlMs: 1000 } } });
  await command(h, "d1", "reboot", "x");
  assertEquals(h.api.pendingCommands("d1"), 1);
  clock.tick(1000);
  assertEquals(h.api.pendingCommands("d1"), 0);
});

Deno.test("HTTP commands for a device connected over another protocol are not queued", async () => {
  await using h = await startHttpApi();
  h.core.port(MQTT); // MQTT is served: its devices take their commands themselves
  h.core.registry.touch("d2", "mqtt");
  await command(h, "d2", "reboot", "x");
  assertEquals(h.api.pendingCommands("d2"), 0);
});

Deno.test("HTTP long-polls and streams beyond maxWaitersPerDevice get 429", async () => {
  await using h = await startHttpApi({ api: { maxWaitersPerDevice: 1 } });
  const first = h.fetch("/api/v1/devices/d1/commands?timeout=10", { headers: bearer("t1") });
  await waitFor(() => h.api.waiters("d1") === 1, "first waiting");
  const second = await h.fetch("/api/v1/devices/d1/commands?timeout=10", { headers: bearer("t1") });
  assertEquals(second.status, 429);
  assertEquals((await second.json()).type, P + "too-many-waiters");
  const sse = await h.fetch("/api/v1/devices/d1/commands", {
    headers: { ...bearer("t1"), accept: "text/event-stream" },
  });
  assertEquals(sse.status, 429);
  await sse.body?.cancel();
  await command(h, "d1", "go", "1");
  assertEquals((await first).status, 200);
  await (await first).body?.cancel();
});

Deno.test("HTTP long-poll from curl receives a command", async () => {
  await using h = await startHttpApi();
  const poll = curl([
    "-H",
    "Authorization: Bearer t1",
    `${h.base}/api/v1/devices/d1/commands?timeout=10`,
  ]);
  await waitFor(() => h.api.waiters("d1") === 1, "curl waiting");
  await command(h, "d1", "reboot", "now");
  const r = await poll;
  assertEquals(r.status, 200);
  assertEquals(JSON.parse(r.text).commands[0].payload, "now");
});

Deno.test("HTTP SSE stream delivers pending then new commands with ids, resuming after Last-Event-ID", async () => {
  await using h = await startHttpApi();
  await command(h, "d1", "first", "1");
  const res = await h.fetch("/api/v1/devices/d1/commands", {
    headers: { ...bearer("t1"), accept: "text/event-stream" },
  });
  assertEquals(res.status, 200);
  assertEquals(res.headers.get("content-type"), "text/event-stream");
  const sse = sseReader(res.body!);
  try {
    const e1 = await sse.next();
    assertEquals(e1?.event, "command");
    assertEquals(JSON.parse(e1!.data).name, "first");
    await command(h, "d1", "second", "line1\nline2");
    const e2 = await sse.next();
    const c2 = JSON.parse(e2!.data);
    assertEquals(c2.name, "second");
    assertEquals(c2.payload, "line1\nline2");
    assertEquals(e2?.id, String(c2.id));
  } finally {
    await sse.cancel();
  }
  await waitFor(() => h.api.waiters("d1") === 0, "stream released on cancel");
  // Reconnect: only commands after the last event id.
  await command(h, "d1", "third", "3");
  const res2 = await h.fetch("/api/v1/devices/d1/commands", {
    headers: { ...bearer("t1"), accept: "text/event-stream", "last-event-id": "2" },
  });
  const sse2 = sseReader(res2.body!);
  try {
    assertEquals(JSON.parse((await sse2.next())!.data).name, "third");
  } finally {
    await sse2.cancel();
  }
});

Deno.test("HTTP SSE stream from curl -N receives a command", async () => {
  await using h = await startHttpApi();
  const child = new Deno.Command("/usr/bin/curl", {
    args: [
      "-s",
      "-N",
      "--max-time",
      "10",
      "-H",
      "Authorization: Bearer t1",
      "-H",
      "Accept: text/event-stream",
      `${h.base}/api/v1/devices/d1/commands`,
    ],
    stdout: "piped",
    stderr: "null",
  }).spawn();
  const sse = sseReader(child.stdout);
  try {
    await waitFor(() => h.api.waiters("d1") === 1, "curl streaming");
    await command(h, "d1", "reboot", "now");
    const e = await sse.next();
    assertEquals(JSON.parse(e!.data).payload, "now");
  } finally {
    child.kill("SIGTERM");
    await sse.cancel();
    await child.status;
  }
});

Deno.test("HTTP SSE heartbeats keep the stream alive and the device online", async () => {
  // Heartbeats and the idle deadline run on a fake clock: the test says when time passes, so a
  // loaded machine cannot let the idle timeout overtake a late heartbeat timer.
  const clock = new FakeClock(Date.now());
  await using h = await startHttpApi({ clock, api: { sseHeartbeatMs: 30, idleTimeoutMs: 100 } });
  const res = await h.fetch("/api/v1/devices/d1/commands", {
    headers: { ...bearer("t1"), accept: "text/event-stream" },
  });
  const reader = res.body!.pipeThrough(new TextDecoderStream()).getReader();
  let text = "";
  try {
    await waitFor(() => h.api.waiters("d1") === 1, "the stream");
    clock.tick(30);
    const deadline = Date.now() + 20_000;
    while (!text.includes(": heartbeat") && Date.now() < deadline) {
      text += (await reader.read()).value ?? "";
    }
    assert(text.includes(": heartbeat"), text);
    for (let t = 0; t < 250; t += 10) clock.tick(10); // past idleTimeoutMs, but heartbeats refresh
    assertEquals(h.core.registry.get("d1")?.state, "online");
  } finally {
    await reader.cancel();
  }
});

Deno.test("HTTP API close ends long-polls with 503 and SSE streams, and the server shuts down", async () => {
  const h = await startHttpApi();
  try {
    const poll = h.fetch("/api/v1/devices/d1/commands?timeout=30", { headers: bearer("t1") });
    const res = await h.fetch("/api/v1/devices/d2/commands", {
      headers: { ...bearer("t2"), accept: "text/event-stream" },
    });
    const reader = res.body!.getReader();
    await waitFor(() => h.api.waiters("d1") === 1 && h.api.waiters("d2") === 1, "both waiting");
    const t0 = Date.now();
    await h.api.close();
    const p = await poll;
    assertEquals(p.status, 503);
    assertEquals((await p.json()).type, P + "unavailable");
    for (let i = 0; i < 10; i++) if ((await reader.read()).done) break;
    await h.http.close();
    // The poll was answered by the shutdown (503 above), not by its own 30 s timeout (204): the
    // bound is that timeout, not a guess at how fast a loaded machine shuts down.
    assert(Date.now() - t0 < 30_000, "shutdown waited on long-polls");
    const late = await h.api.handle(
      new Request("http://x/api/v1/devices/d1/commands", { headers: bearer("t1") }),
      new URL("http://x/api/v1/devices/d1/commands"),
    );
    assertEquals(late?.status, 503);
  } finally {
    await h[Symbol.asyncDispose]();
  }
});

Deno.test("HTTP device goes online on a request and offline after idleTimeoutMs", async () => {
  const clock = new FakeClock(1_000_000);
  await using h = await startHttpApi({ clock, api: { idleTimeoutMs: 60_000 } });
  const res = await h.fetch("/api/v1/devices/d1/telemetry", {
    method: "POST",
    headers: bearer("t1"),
    body: "1",
  });
  await res.body?.cancel();
  const rec = h.core.registry.get("d1")!;
  assertEquals(rec.state, "online");
  assertEquals(rec.protocol, "http");
  assertEquals(rec.lastSeen, 1_000_000);
  await waitFor(() => h.seen.some((m) => m.topic === "devices/d1/status"), "online status");
  clock.tick(30_000);
  const poll = await h.fetch("/api/v1/devices/d1/commands?timeout=0", { headers: bearer("t1") });
  await poll.body?.cancel();
  assertEquals(rec.lastSeen, 1_030_000, "a request refreshes last-seen");
  clock.tick(59_000);
  assertEquals(rec.state, "online");
  clock.tick(2_000);
  assertEquals(rec.state, "offline");
  await waitFor(
    () => h.seen.some((m) => m.topic === "devices/d1/status" && dec(m.payload) === "offline"),
    "offline status",
  );
});

Deno.test("HTTP requests with bad credentials do not mark a device online", async () => {
  await using h = await startHttpApi();
  const res = await h.fetch("/api/v1/devices/d1/telemetry", {
    method: "POST",
    headers: bearer("wrong"),
    body: "1",
  });
  await res.body?.cancel();
  assertEquals(h.core.registry.get("d1")?.state ?? "offline", "offline");
});
