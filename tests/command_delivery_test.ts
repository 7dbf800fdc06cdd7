/**
 * The core's one command store seen from the devices, over real sockets: HTTP (long-poll, ack),
 * CoAP (GET, Observe) and FBP/1 (the reference client) share it, so a command is delivered once,
 * on whichever protocol the device uses, and waits for a device that is offline.
 *
 * @module
 */

import type { Clock } from "../src/core/clock.ts";
import { FakeClock } from "../src/core/clock.ts";
import { Core, type CoreOptions } from "../src/core/core.ts";
import { createMessage, type Message } from "../src/core/message.ts";
import { DeviceApi } from "../src/http/device_api/mod.ts";
import { HttpServer } from "../src/http/server.ts";
import { FbpClient } from "../src/protocols/binary/client.ts";
import { BinaryServer } from "../src/protocols/binary/server.ts";
import { CoapType, Code } from "../src/protocols/coap/message.ts";
import { decodeString, encodeUint, Opt } from "../src/protocols/coap/option_codec.ts";
import { CoapServer } from "../src/protocols/coap/server.ts";
import { assert, assertEquals } from "./_assert.ts";
import { opt, request, TestPeer, textOf } from "./_coap_harness.ts";
import { dec, enc, memoryLogger, waitFor } from "./_harness.ts";

interface Gateway extends AsyncDisposable {
  core: Core;
  seen: Message[];
  http: string;
  coap: number;
  fbp: number;
}

/** Core + HTTP device API + CoAP + FBP/1 on free loopback ports; device d1 with token t1. */
async function startGateway(options: { core?: CoreOptions; clock?: Clock } = {}): Promise<Gateway> {
  const { log } = memoryLogger();
  const core = new Core({
    devices: [{ id: "d1", token: "t1" }],
    log,
    clock: options.clock,
    timerResolutionMs: 5,
    ...options.core,
  });
  const seen: Message[] = [];
  core.subscribe("#", { id: "test-observer", deliver: (m) => seen.push(m) });
  const api = new DeviceApi(core);
  const http = new HttpServer(core, { hostname: "127.0.0.1", port: 0 });
  http.route((req, url) => api.handle(req, url));
  const coap = new CoapServer(core, { port: 0, random: () => 0 });
  const binary = new BinaryServer(core, { port: 0 });
  const [h, c, b] = await Promise.all([http.listen(), coap.listen(), binary.listen()]);
  return {
    core,
    seen,
    http: `http://127.0.0.1:${h.port}`,
    coap: c.port,
    fbp: b.port,
    async [Symbol.asyncDispose]() {
      await api.close();
      await http.close();
      await coap.close();
      await binary.close();
      await core.close();
    },
  };
}

/** The next COMMAND within 200 ms, or `undefined` when none comes. */
const quiet = (c: FbpClient) => c.nextCommand(200).catch(() => undefined);

const AUTH = { authorization: "Bearer t1" };

function command(name: string, payload = name): Message {
  return createMessage({ topic: `devices/d1/commands/${name}`, payload: enc(payload), qos: 1 });
}

async function publish(g: Gateway, ...names: string[]): Promise<void> {
  for (const n of names) await g.core.publish(command(n));
  await waitFor(
    () => names.every((n) => g.seen.some((m) => m.topic === `devices/d1/commands/${n}`)),
    "commands routed",
  );
}

/** An HTTP long-poll: the names of the commands answered ([] on 204). */
async function longPoll(g: Gateway, timeoutSec: number): Promise<{ id: number; name: string }[]> {
  const res = await fetch(`${g.http}/api/v1/devices/d1/commands?timeout=${timeoutSec}`, {
    headers: AUTH,
  });
  if (res.status === 204) {
    await res.body?.cancel();
    return [];
  }
  assertEquals(res.status, 200);
  return (await res.json()).commands;
}

const coapGet = () => request({ path: "d/d1/commands", query: ["token=t1"] });
const coapObserve = (token: number[]) =>
  request({
    path: "d/d1/commands",
    query: ["token=t1"],
    token: new Uint8Array(token),
    options: [{ number: Opt.OBSERVE, value: encodeUint(0) }],
  });
const coapAck = (mid: number) => new Uint8Array([0x60, 0, mid >> 8, mid & 0xff]);
const nameOf = (m: { options: { number: number; value: Uint8Array }[] }) => {
  const v = opt(m as Parameters<typeof opt>[0], Opt.FERRY_COMMAND);
  return v ? decodeString(v) : undefined;
};

Deno.test("A device on both HTTP long-poll and CoAP observe/poll receives each command exactly once", async () => {
  await using g = await startGateway();
  await using peer = new TestPeer(g.coap);
  const got: string[] = [];
  // Published while the device is offline: one pending command, not one per protocol.
  await publish(g, "first");
  const reg = await peer.exchange(coapObserve([9, 9]));
  assertEquals(reg.code, Code.CONTENT);
  if (reg.payload.length) got.push(nameOf(reg)!);
  for (const c of await longPoll(g, 0)) got.push(c.name);
  const poll = await peer.exchange(coapGet());
  if (poll.payload.length) got.push(nameOf(poll)!);
  assertEquals(got, ["first"]);

  // Published while the device waits on both: one of them gets it, the other does not.
  const waiting = longPoll(g, 1);
  await waitFor(() => g.core.commands.listeners("d1") === 1, "long-poll waiting");
  await publish(g, "second");
  const viaHttp = await waiting;
  for (const c of viaHttp) got.push(c.name);
  const note = peer.inbox.find((m) => m.type === CoapType.CON && nameOf(m) !== undefined);
  if (note) {
    got.push(nameOf(note)!);
    await peer.send(coapAck(note.messageId));
  }
  for (const c of await longPoll(g, 0)) if (!viaHttp.some((v) => v.id === c.id)) got.push(c.name);
  const again = await peer.exchange(coapGet());
  if (again.payload.length) got.push(nameOf(again)!);
  assertEquals(got, ["first", "second"]);
});

Deno.test("A command published while an FBP/1 device is offline comes as COMMAND when it connects", async () => {
  await using g = await startGateway();
  await publish(g, "reboot", "led");
  const c = await FbpClient.connect({ port: g.fbp, id: "d1", token: "t1" });
  try {
    const a = await c.nextCommand();
    const b = await c.nextCommand();
    assertEquals([a?.name, dec(a!.data), a?.ackRequested], ["reboot", "reboot", true]);
    assertEquals(b?.name, "led", "in publication order");
    await waitFor(() => g.seen.some((m) => m.topic === "devices/d1/acks/led"), "device acks");
    assertEquals(g.core.commands.count("d1"), 0, "written to the session: left the store");
  } finally {
    await c.close();
  }
  // Delivered once: neither a new FBP/1 session nor an HTTP poll gets it again.
  const again = await FbpClient.connect({ port: g.fbp, id: "d1", token: "t1" });
  try {
    assertEquals(await quiet(again), undefined);
  } finally {
    await again.close();
  }
  assertEquals(await longPoll(g, 0), []);
});

Deno.test("Pending commands expire after the TTL and are bounded per device, counted as drops", async () => {
  const clock = new FakeClock(1_000_000);
  await using g = await startGateway({
    clock,
    core: { commands: { maxPerDevice: 2, ttlMs: 5000 } },
  });
  await publish(g, "a", "b", "c");
  const drops = (reason: string) => g.core.stats.drops.get({ protocol: "system", reason });
  assertEquals(drops("command_queue_full"), 1, "a dropped for c");
  clock.tick(5000);
  await publish(g, "d");
  assertEquals(drops("command_expired"), 2, "b and c expired");
  const c = await FbpClient.connect({ port: g.fbp, id: "d1", token: "t1" });
  try {
    assertEquals((await c.nextCommand())?.name, "d");
    assertEquals(await quiet(c), undefined);
  } finally {
    await c.close();
  }
});

Deno.test("An HTTP ack removes a command, so a CoAP poll does not get it again", async () => {
  await using g = await startGateway();
  await using peer = new TestPeer(g.coap);
  await publish(g, "reboot");
  const [cmd] = await longPoll(g, 0);
  assertEquals(cmd.name, "reboot");
  const ack = await fetch(`${g.http}/api/v1/devices/d1/commands/reboot/ack`, {
    method: "POST",
    headers: { ...AUTH, "content-type": "application/json" },
    body: JSON.stringify({ id: cmd.id, status: "done" }),
  });
  assertEquals([ack.status, (await ack.json()).acked], [202, cmd.id]);
  const poll = await peer.exchange(coapGet());
  assertEquals([poll.code, textOf(poll)], [Code.CONTENT, ""]);
  assertEquals(await longPoll(g, 0), []);
  assert(g.seen.some((m) => m.topic === "devices/d1/acks/reboot"), "ack published");
});
