/**
 * Ferry's CoAP device resources: telemetry with credentials and ACL, presence, pending commands
 * (GET and Observe), delivery acks, observer cleanup.
 *
 * @module
 */

import { FakeClock } from "../src/core/clock.ts";
import { MQTT } from "../src/protocols/mqtt/server.ts";
import { createMessage } from "../src/core/message.ts";
import { CoapType, Code } from "../src/protocols/coap/message.ts";
import { decodeString, decodeUint, encodeUint, Opt } from "../src/protocols/coap/option_codec.ts";
import { assert, assertEquals } from "./_assert.ts";
import { opt, request, startCoap, TestPeer, textOf } from "./_coap_harness.ts";
import { enc, waitFor } from "./_harness.ts";

const post = (path: string, query: string[], payload = "x") =>
  request({ code: Code.POST, path, query, payload });

function command(id: string, name: string, payload: string) {
  return createMessage({ topic: `devices/${id}/commands/${name}`, payload: enc(payload), qos: 1 });
}

const ack = (mid: number) => new Uint8Array([0x60, 0, mid >> 8, mid & 0xff]);
const rst = (mid: number) => new Uint8Array([0x70, 0, mid >> 8, mid & 0xff]);
const observeGet = (id: string, token: number[], type: CoapType = CoapType.CON, obs = 0) =>
  request({
    type,
    path: `d/${id}/commands`,
    query: [`token=t${id.slice(1)}`],
    token: new Uint8Array(token),
    options: [{ number: Opt.OBSERVE, value: encodeUint(obs) }],
  });

Deno.test("CoAP telemetry publishes to the device's channel topic", async () => {
  await using h = await startCoap();
  await using peer = new TestPeer(h.port);
  const r = await peer.exchange(post("d/s1/telemetry/temp", ["token=t1"], "21"));
  assertEquals(r.code, Code.CHANGED);
  await waitFor(() => h.seen.some((m) => m.topic === "devices/s1/telemetry/temp"), "publication");
});

Deno.test("CoAP accepts the token as ?t= too", async () => {
  await using h = await startCoap();
  await using peer = new TestPeer(h.port);
  assertEquals((await peer.exchange(post("d/s1/telemetry", ["t=t1"]))).code, Code.CHANGED);
});

Deno.test("CoAP answers 4.01 for a missing or wrong token and publishes nothing", async () => {
  await using h = await startCoap();
  await using peer = new TestPeer(h.port);
  assertEquals((await peer.exchange(post("d/s1/telemetry", []))).code, Code.UNAUTHORIZED);
  assertEquals((await peer.exchange(post("d/s1/telemetry", ["token=t2"]))).code, Code.UNAUTHORIZED);
  assertEquals((await peer.exchange(post("d/zz/telemetry", ["token=x"]))).code, Code.UNAUTHORIZED);
  await peer.quiet(50);
  assertEquals(h.seen.filter((m) => m.topic.includes("telemetry")).length, 0);
});

Deno.test("CoAP answers 4.03 when a device publishes under another device's id", async () => {
  await using h = await startCoap();
  await using peer = new TestPeer(h.port);
  const r = await peer.exchange(post("d/s2/telemetry", ["id=s1", "token=t1"]));
  assertEquals(r.code, Code.FORBIDDEN);
  const c = await peer.exchange(request({ path: "d/s2/commands", query: ["id=s1", "token=t1"] }));
  assertEquals(c.code, Code.FORBIDDEN);
});

Deno.test("CoAP answers 4.04 for a bad device id or channel", async () => {
  await using h = await startCoap();
  await using peer = new TestPeer(h.port);
  assertEquals(
    (await peer.exchange(post("d/bad id/telemetry", ["token=t1"]))).code,
    Code.NOT_FOUND,
  );
  assertEquals(
    (await peer.exchange(post("d/s1/telemetry/UPPER", ["token=t1"]))).code,
    Code.NOT_FOUND,
  );
});

Deno.test("CoAP requests mark the device online; it goes offline after the idle time", async () => {
  const clock = new FakeClock(0);
  await using h = await startCoap({
    clock,
    server: { idleTimeoutMs: 60_000 },
    core: { timerResolutionMs: 1 },
  });
  await using peer = new TestPeer(h.port);
  await peer.exchange(post("d/s1/telemetry", ["token=t1"]));
  assertEquals(h.core.registry.get("s1")?.state, "online");
  clock.tick(50_000);
  await peer.send(new Uint8Array([0x40, 0, 0, 77])); // a ping from the same endpoint refreshes
  await peer.recv();
  clock.tick(50_000);
  assertEquals(h.core.registry.get("s1")?.state, "online");
  clock.tick(10_001);
  assertEquals(h.core.registry.get("s1")?.state, "offline");
  await waitFor(
    () =>
      h.seen.some((m) =>
        m.topic === "devices/s1/status" && new TextDecoder().decode(m.payload) === "offline"
      ),
    "offline status",
  );
});

Deno.test("CoAP GET commands returns 2.05 with no payload when nothing is pending", async () => {
  await using h = await startCoap();
  await using peer = new TestPeer(h.port);
  const r = await peer.exchange(request({ path: "d/s1/commands", query: ["token=t1"] }));
  assertEquals([r.code, r.payload.length], [Code.CONTENT, 0]);
});

Deno.test("CoAP GET commands returns pending commands oldest first, with their names", async () => {
  await using h = await startCoap();
  await using peer = new TestPeer(h.port);
  await peer.exchange(request({ path: "d/s1/commands", query: ["token=t1"] })); // device known
  await h.core.publish(command("s1", "reboot", "now"));
  await h.core.publish(command("s1", "led", "on"));
  await waitFor(() => h.seen.filter((m) => m.topic.includes("commands")).length === 2, "commands");
  const a = await peer.exchange(request({ path: "d/s1/commands", query: ["token=t1"] }));
  const b = await peer.exchange(request({ path: "d/s1/commands", query: ["token=t1"] }));
  const c = await peer.exchange(request({ path: "d/s1/commands", query: ["token=t1"] }));
  assertEquals([textOf(a), decodeString(opt(a, Opt.FERRY_COMMAND)!)], ["now", "reboot"]);
  assertEquals([textOf(b), decodeString(opt(b, Opt.FERRY_COMMAND)!)], ["on", "led"]);
  assertEquals(c.payload.length, 0);
  assert(opt(a, Opt.ETAG) !== undefined);
});

Deno.test("CoAP reads from the core's store, which keeps at most maxPerDevice per device, dropping the oldest", async () => {
  await using h = await startCoap({ core: { commands: { maxPerDevice: 2 } } });
  await using peer = new TestPeer(h.port);
  for (const n of ["a", "b", "c"]) await h.core.publish(command("s1", n, n));
  await waitFor(() => h.seen.filter((m) => m.topic.includes("commands")).length === 3, "commands");
  const r = await peer.exchange(request({ path: "d/s1/commands", query: ["token=t1"] }));
  assertEquals(textOf(r), "b");
  assertEquals(h.core.stats.drops.get({ protocol: "system", reason: "command_queue_full" }), 1);
});

Deno.test("CoAP Observe on commands: registration, CON notifications with rising sequence, ack topic", async () => {
  await using h = await startCoap();
  await using peer = new TestPeer(h.port);
  const reg = await peer.exchange(observeGet("s1", [7, 7]));
  assertEquals(reg.code, Code.CONTENT);
  const seq0 = decodeUint(opt(reg, Opt.OBSERVE)!);
  assertEquals(h.server.observerCount, 1);
  await h.core.publish(command("s1", "reboot", "now"));
  const n1 = await peer.recv();
  assertEquals([n1.type, n1.code, textOf(n1)], [CoapType.CON, Code.CONTENT, "now"]);
  assertEquals(n1.token, new Uint8Array([7, 7]));
  const seq1 = decodeUint(opt(n1, Opt.OBSERVE)!);
  assert(seq1 > seq0, `sequence ${seq1} > ${seq0}`);
  await h.core.publish(command("s1", "led", "on")); // queued behind the unacknowledged one
  await peer.quiet(80);
  await peer.send(ack(n1.messageId));
  await waitFor(() => h.seen.some((m) => m.topic === "devices/s1/acks/reboot"), "ack published");
  const n2 = await peer.recv();
  assertEquals(textOf(n2), "on");
  assert(decodeUint(opt(n2, Opt.OBSERVE)!) > seq1);
  await peer.send(ack(n2.messageId));
  await waitFor(() => h.seen.some((m) => m.topic === "devices/s1/acks/led"), "second ack");
});

Deno.test("CoAP Observe registration delivers what was pending while the device slept", async () => {
  await using h = await startCoap();
  await using peer = new TestPeer(h.port);
  for (const n of ["a", "b", "c"]) await h.core.publish(command("s1", n, n));
  await waitFor(() => h.seen.filter((m) => m.topic.includes("commands")).length === 3, "commands");
  const reg = await peer.exchange(observeGet("s1", [1]));
  assertEquals(textOf(reg), "a");
  const nb = await peer.recv();
  assertEquals(textOf(nb), "b");
  await peer.send(ack(nb.messageId));
  const nc = await peer.recv();
  assertEquals(textOf(nc), "c");
  await peer.send(ack(nc.messageId));
  await peer.quiet(80);
});

Deno.test("CoAP Observe with a NON registration sends NON notifications", async () => {
  await using h = await startCoap();
  await using peer = new TestPeer(h.port);
  await peer.exchange(observeGet("s1", [3], CoapType.NON));
  await h.core.publish(command("s1", "x", "1"));
  const n = await peer.recv();
  assertEquals([n.type, textOf(n)], [CoapType.NON, "1"]);
});

Deno.test("CoAP Observe deregisters on GET with Observe=1", async () => {
  await using h = await startCoap();
  await using peer = new TestPeer(h.port);
  await peer.exchange(observeGet("s1", [4]));
  assertEquals(h.server.observerCount, 1);
  const r = await peer.exchange(observeGet("s1", [4], CoapType.CON, 1));
  assertEquals(r.code, Code.CONTENT);
  assertEquals(opt(r, Opt.OBSERVE), undefined);
  assertEquals(h.server.observerCount, 0);
});

Deno.test("CoAP Observe deregisters when a notification is answered with RST", async () => {
  await using h = await startCoap();
  await using peer = new TestPeer(h.port);
  await peer.exchange(observeGet("s1", [5]));
  await h.core.publish(command("s1", "x", "1"));
  const n = await peer.recv();
  await peer.send(rst(n.messageId));
  await waitFor(() => h.server.observerCount === 0, "observer removed");
  // the command was not confirmed: still pending for a later GET
  const g = await peer.exchange(request({ path: "d/s1/commands", query: ["token=t1"] }));
  assertEquals(textOf(g), "1");
});

Deno.test("CoAP Observe removes an observer whose CON notification is never acknowledged", async () => {
  const clock = new FakeClock(0);
  await using h = await startCoap({ clock, server: { ackTimeoutMs: 1000, maxRetransmit: 2 } });
  await using peer = new TestPeer(h.port);
  await peer.exchange(observeGet("s1", [6]));
  await h.core.publish(command("s1", "x", "1"));
  await peer.recv();
  clock.tick(1000);
  await peer.recv();
  clock.tick(2000);
  await peer.recv();
  clock.tick(4000);
  await waitFor(() => h.server.observerCount === 0, "observer removed");
});

Deno.test("CoAP Observe re-registration with the same token replaces the entry", async () => {
  await using h = await startCoap();
  await using peer = new TestPeer(h.port);
  await peer.exchange(observeGet("s1", [8]));
  await peer.exchange(observeGet("s1", [8]));
  assertEquals(h.server.observerCount, 1);
});

Deno.test("CoAP Observe beyond maxObservers answers without registering", async () => {
  await using h = await startCoap({ server: { maxObservers: 1 } });
  await using peer = new TestPeer(h.port);
  await peer.exchange(observeGet("s1", [1]));
  const r = await peer.exchange(observeGet("s2", [2]));
  assertEquals([r.code, opt(r, Opt.OBSERVE)], [Code.CONTENT, undefined]);
  assertEquals(h.server.observerCount, 1);
});

Deno.test("CoAP POST acks publishes the device's delivery acknowledgement", async () => {
  await using h = await startCoap();
  await using peer = new TestPeer(h.port);
  const r = await peer.exchange(post("d/s1/acks/reboot", ["token=t1"], "done"));
  assertEquals(r.code, Code.CHANGED);
  await waitFor(() => h.seen.some((m) => m.topic === "devices/s1/acks/reboot"), "ack");
});

Deno.test("CoAP does not queue commands for a device that lives on another protocol", async () => {
  await using h = await startCoap();
  h.core.port(MQTT); // MQTT is served: its devices take their commands themselves
  h.core.registry.touch("s2", "mqtt");
  await h.core.publish(command("s2", "x", "1"));
  await waitFor(() => h.seen.some((m) => m.topic === "devices/s2/commands/x"), "command");
  await using peer = new TestPeer(h.port);
  const g = await peer.exchange(request({ path: "d/s2/commands", query: ["token=t2"] }));
  assertEquals(g.payload.length, 0);
});

Deno.test("CoAP probes a silent NON observer with a CON after the interval and removes it when gone", async () => {
  const clock = new FakeClock(0);
  await using h = await startCoap({
    clock,
    server: { observeConfirmableIntervalMs: 8000, ackTimeoutMs: 1000, maxRetransmit: 1 },
  });
  await using peer = new TestPeer(h.port);
  await peer.exchange(observeGet("s1", [9], CoapType.NON));
  assertEquals(h.server.observerCount, 1);
  clock.tick(8000); // sweep: a CON probe with the current (empty) state
  const probe = await peer.recv();
  assertEquals([probe.type, probe.code, probe.payload.length], [CoapType.CON, Code.CONTENT, 0]);
  clock.tick(1000); // one retransmission, then give up
  await peer.recv();
  clock.tick(2000);
  await waitFor(() => h.server.observerCount === 0, "observer removed");
});

Deno.test("CoAP keeps an observer that acknowledges the probe", async () => {
  const clock = new FakeClock(0);
  await using h = await startCoap({ clock, server: { observeConfirmableIntervalMs: 8000 } });
  await using peer = new TestPeer(h.port);
  await peer.exchange(observeGet("s1", [9], CoapType.NON));
  clock.tick(8000);
  const probe = await peer.recv();
  await peer.send(ack(probe.messageId));
  await waitFor(() => h.server.outstanding === 0, "probe acknowledged");
  clock.tick(60_000);
  assertEquals(h.server.observerCount, 1);
});

Deno.test("CoAP honours No-Response: a suppressed 2.04 leaves only the empty ACK", async () => {
  await using h = await startCoap();
  await using peer = new TestPeer(h.port);
  const req = post("d/s1/telemetry", ["token=t1"]);
  req.options.push({ number: Opt.NO_RESPONSE, value: encodeUint(2) });
  req.options.sort((a, b) => a.number - b.number);
  const r = await peer.exchange(req);
  assertEquals([r.type, r.code], [CoapType.ACK, 0]);
  await waitFor(() => h.seen.some((m) => m.topic === "devices/s1/telemetry"), "published");
  const non = post("d/s1/telemetry", ["token=t1"]);
  non.type = CoapType.NON;
  non.options.push({ number: Opt.NO_RESPONSE, value: encodeUint(2) });
  non.options.sort((a, b) => a.number - b.number);
  await peer.send(non);
  await peer.quiet(100);
});

Deno.test("CoAP ends an observation with a final 4.01 when the device's credentials are revoked", async () => {
  await using h = await startCoap();
  await using peer = new TestPeer(h.port);
  await peer.exchange(observeGet("s1", [2]));
  h.core.registry.setCredentials([{ id: "s2", token: "t2" }]);
  await h.core.publish(command("s1", "x", "1"));
  const n = await peer.recv();
  assertEquals([n.type, n.code, opt(n, Opt.OBSERVE)], [CoapType.CON, Code.UNAUTHORIZED, undefined]);
  await peer.send(ack(n.messageId));
  assertEquals(h.server.observerCount, 0);
});

Deno.test("CoAP close() ends every observation with a NON 5.03 carrying Max-Age", async () => {
  const h = await startCoap({ server: { retryAfterSec: 30 } });
  await using peer = new TestPeer(h.port);
  await peer.exchange(observeGet("s1", [0x42]));
  await h.server.close();
  const n = await peer.recv();
  assertEquals([n.type, n.code, n.token[0]], [CoapType.NON, Code.SERVICE_UNAVAILABLE, 0x42]);
  assertEquals([decodeUint(opt(n, Opt.MAX_AGE)!), opt(n, Opt.OBSERVE)], [30, undefined]);
  await h.core.close();
});

Deno.test("CoAP answers 5.03 once the core is closing, without failing", async () => {
  await using h = await startCoap();
  await using peer = new TestPeer(h.port);
  await h.core.close();
  const r = await peer.exchange(post("d/s1/telemetry", ["token=t1"]));
  assertEquals(r.code, Code.SERVICE_UNAVAILABLE);
  assertEquals(h.core.stats.errors.get({ protocol: "coap", code: "handler_failed" }), 0);
});

Deno.test("CoAP commands with Accept: application/json come as a JSON envelope with the name", async () => {
  await using h = await startCoap();
  await using peer = new TestPeer(h.port);
  await h.core.publish(command("s1", "reboot", "now"));
  await h.core.publish(createMessage({
    topic: "devices/s1/commands/blob",
    payload: new Uint8Array([0xff, 0x00]),
  }));
  await waitFor(() => h.seen.filter((m) => m.topic.includes("commands")).length === 2, "commands");
  const get = () =>
    peer.exchange(request({
      path: "d/s1/commands",
      query: ["token=t1"],
      options: [{ number: Opt.ACCEPT, value: encodeUint(50) }],
    }));
  const a = await get();
  assertEquals(decodeUint(opt(a, Opt.CONTENT_FORMAT)!), 50);
  const ja = JSON.parse(textOf(a));
  assertEquals([ja.name, ja.payload], ["reboot", "now"]);
  const jb = JSON.parse(textOf(await get()));
  assertEquals([jb.name, jb.payload, jb.encoding], ["blob", "/wA=", "base64"]);
});

Deno.test("CoAP answers 4.29 with Max-Age once a device exceeds the shared per-device rate", async () => {
  const clock = new FakeClock(0);
  await using h = await startCoap({ clock, core: { deviceRatePerSec: 1, deviceBurst: 2 } });
  await using peer = new TestPeer(h.port);
  const codes = [];
  for (let i = 0; i < 3; i++) {
    codes.push((await peer.exchange(post("d/s1/telemetry", ["token=t1"]))).code);
  }
  assertEquals(codes, [Code.CHANGED, Code.CHANGED, Code.TOO_MANY_REQUESTS]);
  const r = await peer.exchange(post("d/s1/telemetry", ["token=t1"]));
  assertEquals(decodeUint(opt(r, Opt.MAX_AGE)!), 1);
  clock.tick(1000);
  assertEquals((await peer.exchange(post("d/s1/telemetry", ["token=t1"]))).code, Code.CHANGED);
  assertEquals(h.core.stats.drops.get({ protocol: "coap", reason: "rate_limited" }), 2);
});

Deno.test("CoAP throttles an address after repeated bad tokens (4.29), even with the right one", async () => {
  await using h = await startCoap({ core: { authFailuresPerMinute: 3 } });
  await using peer = new TestPeer(h.port);
  for (let i = 0; i < 3; i++) {
    assertEquals(
      (await peer.exchange(post("d/s1/telemetry", ["token=bad"]))).code,
      Code.UNAUTHORIZED,
    );
  }
  const r = await peer.exchange(post("d/s1/telemetry", ["token=t1"]));
  assertEquals([r.code, decodeUint(opt(r, Opt.MAX_AGE)!)], [Code.TOO_MANY_REQUESTS, 60]);
});

Deno.test("CoAP acknowledges a CON only once the spool (accept hook) stored it; slow → separate 2.04", async () => {
  const clock = new FakeClock(0);
  await using h = await startCoap({
    clock,
    core: { timerResolutionMs: 1 },
    server: { separateResponseAfterMs: 500 },
  });
  const stored: string[] = [];
  h.core.setAcceptHook((m) =>
    m.topic.includes("telemetry")
      ? new Promise<void>((r) =>
        clock.setTimeout(() => {
          stored.push(new TextDecoder().decode(m.payload));
          r();
        }, 800)
      )
      : undefined
  );
  await using peer = new TestPeer(h.port);
  const req = post("d/s1/telemetry", ["token=t1"], "durable");
  await peer.send(req);
  await waitFor(() => h.core.stats.framesIn.get({ protocol: "coap" }) === 1, "request in");
  clock.tick(500);
  const empty = await peer.recv();
  assertEquals([empty.type, empty.code], [CoapType.ACK, 0]);
  assertEquals(stored, []);
  clock.tick(300);
  const res = await peer.recv();
  assertEquals([res.type, res.code], [CoapType.CON, Code.CHANGED]);
  assertEquals(stored, ["durable"]);
  await peer.send(ack(res.messageId));
});

Deno.test("CoAP answers 5.03 when the spool (accept hook) refuses the message", async () => {
  await using h = await startCoap();
  h.core.setAcceptHook((m) => {
    if (m.topic.includes("telemetry")) throw new Error("disk full");
  });
  await using peer = new TestPeer(h.port);
  const r = await peer.exchange(post("d/s1/telemetry", ["token=t1"]));
  assertEquals(r.code, Code.SERVICE_UNAVAILABLE);
});

// ---- Revocation through the device port: an observation of commands is a stream of the device ----

Deno.test("CoAP revoking a device's credentials ends its commands observation at once with a final 4.01", async () => {
  await using h = await startCoap();
  await using peer = new TestPeer(h.port);
  await peer.exchange(observeGet("s1", [0x51]));
  // attached to the core: the observation, and the endpoint's remembered login
  assertEquals([h.server.observerCount, h.core.registry.tracked], [1, 2]);
  h.core.registry.setCredentials([{ id: "s2", token: "t2" }]); // no command needed to learn it
  const n = await peer.recv();
  assertEquals([n.type, n.code, n.token[0], opt(n, Opt.OBSERVE)], [
    CoapType.CON,
    Code.UNAUTHORIZED,
    0x51,
    undefined,
  ]);
  assertEquals(textOf(n), "credentials changed");
  assertEquals([h.server.observerCount, h.core.registry.tracked], [0, 0]);
  assert(h.lines.some((l) => l.includes("observation ended") && l.includes('"why":"removed"')));
  await peer.send(ack(n.messageId));
  await waitFor(() => h.server.outstanding === 0, "4.01 acknowledged");
  // no login was tried on the device's behalf, so none failed (nothing counts towards throttling)
  assertEquals(h.core.stats.errors.get({ protocol: "coap", code: "login_refused" }), 0);
  // the other device's observation is untouched
  await peer.exchange(observeGet("s2", [0x52]));
  assertEquals(h.server.observerCount, 1);
});

Deno.test("CoAP detaches an observation from the core however it ends (Observe=1, RST, re-registration, close)", async () => {
  const h = await startCoap();
  await using peer = new TestPeer(h.port);
  // one attachment stays throughout: the endpoint's remembered login
  await peer.exchange(observeGet("s1", [1]));
  await peer.exchange(observeGet("s1", [1])); // same token: replaces, one attachment
  assertEquals(h.core.registry.tracked, 1 + 1);
  await peer.exchange(observeGet("s1", [1], CoapType.CON, 1));
  assertEquals(h.core.registry.tracked, 0 + 1);
  await peer.exchange(observeGet("s1", [2]));
  await h.core.publish(command("s1", "x", "1"));
  const n = await peer.recv();
  await peer.send(rst(n.messageId));
  await waitFor(() => h.core.registry.tracked === 0 + 1, "detached on RST");
  await peer.exchange(observeGet("s1", [3]));
  assertEquals(h.core.registry.tracked, 1 + 1);
  await h.server.close();
  assertEquals(h.core.registry.tracked, 0);
  await h.core.close();
});

Deno.test("CoAP notifications are not logins: a revoked device's pending command counts no failed login", async () => {
  await using h = await startCoap({ core: { authFailuresPerMinute: 1 } });
  await using peer = new TestPeer(h.port);
  await peer.exchange(observeGet("s1", [4]));
  h.core.registry.setCredentials([{ id: "s1", token: "new" }, { id: "s2", token: "t2" }]);
  const fin = await peer.recv();
  assertEquals(fin.code, Code.UNAUTHORIZED);
  await peer.send(ack(fin.messageId));
  await h.core.publish(command("s1", "x", "1")); // nobody observes: stays pending
  await peer.quiet(50, (m) => m.code === Code.CONTENT);
  // the device is not throttled: it registers again with its new token and gets the command
  const again = await peer.exchange(request({
    path: "d/s1/commands",
    query: ["token=new"],
    token: new Uint8Array([5]),
    options: [{ number: Opt.OBSERVE, value: encodeUint(0) }],
  }));
  assertEquals([again.code, textOf(again)], [Code.CONTENT, "1"]);
});

Deno.test("CoAP remembers an endpoint's login until its credentials change, then logs in again", async () => {
  await using h = await startCoap({ core: { authFailuresPerMinute: 1 } });
  await using peer = new TestPeer(h.port);
  const telemetry = (token: string) => peer.exchange(post("d/s1/telemetry", [`token=${token}`]));
  assertEquals((await telemetry("t1")).code, Code.CHANGED);
  assertEquals((await telemetry("t1")).code, Code.CHANGED);
  // another token from the same endpoint is a new login (refused, and counted)
  assertEquals((await telemetry("nope")).code, Code.UNAUTHORIZED);
  assertEquals(h.core.stats.errors.get({ protocol: "coap", code: "login_refused" }), 1);
  h.core.registry.setCredentials([{ id: "s1", token: "t1b" }, { id: "s2", token: "t2" }]);
  assertEquals(h.core.registry.tracked, 0); // the remembered login was revoked with the token
  assertEquals((await peer.exchange(post("d/s2/telemetry", ["token=t2"]))).code, Code.CHANGED);
  assertEquals((await peer.exchange(post("d/s2/telemetry", ["token=t1"]))).code, Code.UNAUTHORIZED);
});
