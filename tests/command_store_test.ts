/**
 * The core's pending-command store on its own: bounds, expiry, acks, claims and listeners (the
 * protocol behaviour over real sockets is in `command_delivery_test.ts`).
 */

import { resolveConfig } from "../src/config/config.ts";
import { FakeClock } from "../src/core/clock.ts";
import { CommandStore, type CommandStoreOptions } from "../src/core/command_store.ts";
import { Core } from "../src/core/core.ts";
import { silentLogger } from "../src/core/logger.ts";
import { createMessage } from "../src/core/message.ts";
import { assert, assertEquals, assertThrows } from "./_assert.ts";
import { enc } from "./_harness.ts";

const msg = (device: string, n: string) =>
  createMessage({ topic: `devices/${device}/commands/${n}`, payload: enc(n) });

function store(extra: Partial<CommandStoreOptions> = {}) {
  const clock = new FakeClock();
  const drops: string[] = [];
  const s = new CommandStore({
    clock,
    maxPerDevice: 2,
    ttlMs: 1000,
    maxDevices: 1,
    onDrop: (_, r) => drops.push(r),
    ...extra,
  });
  return { clock, drops, s };
}

Deno.test("CommandStore bounds devices, drops the oldest, expires, and acks by name or id", () => {
  const { clock, drops, s } = store();
  s.accept(msg("a", "x"));
  s.accept(msg("a", "y"));
  s.accept(msg("a", "x"));
  assertEquals(s.pending("a").map((c) => c.name), ["y", "x"]);
  assertEquals(s.accept(msg("b", "x")), undefined);
  assertEquals(drops, ["queue_full", "too_many_devices"]);
  const [y, x] = s.pending("a");
  assertEquals(s.ack("a", "x", y.seq), undefined, "id of another command");
  assertEquals(s.ack("a", "x")?.seq, x.seq);
  clock.tick(1000);
  assertEquals(s.pending("a"), []);
  assertEquals(drops.at(-1), "expired");
  assert(s.accept(msg("b", "x")), "room again after expiry");
  assertEquals(s.size, 1);
});

Deno.test("CommandStore takes a message's own earlier expiresAt over its ttl", () => {
  const { clock, s } = store();
  const m = createMessage({
    topic: "devices/a/commands/x",
    payload: enc("x"),
    properties: { expiresAt: clock.now() + 10 },
  });
  assertEquals(s.accept(m)?.expiresAt, clock.now() + 10);
  clock.tick(10);
  assertEquals(s.count("a"), 0);
});

Deno.test("CommandStore hides a command claimed by one protocol from the others until released", () => {
  const { s } = store({ maxDevices: 10 });
  const heard: string[] = [];
  s.listen("a", (c) => heard.push(`${c.name}@${c.claimedBy ?? "-"}`));
  const cmd = s.accept(msg("a", "x"))!;
  assert(s.claim(cmd, "http"));
  assertEquals(s.claim(cmd, "coap"), false);
  assertEquals(s.next("a", "coap"), undefined);
  assertEquals(s.pending("a", { via: "http" }).length, 1);
  s.release(cmd, "http");
  assertEquals(s.next("a", "coap")?.seq, cmd.seq);
  assertEquals(heard, ["x@-", "x@-"], "new, then released");
  s.remove("a", cmd.seq);
  assertEquals(s.claim(cmd, "coap"), false, "gone");
});

Deno.test("CommandStore stops telling listeners once one of them took the command", () => {
  const { s } = store({ maxDevices: 10 });
  const calls: string[] = [];
  s.watch((c) => {
    calls.push("watch");
    s.claim(c, "binary");
    s.remove(c.deviceId, c.seq);
  });
  s.listen("a", () => calls.push("listen"));
  s.accept(msg("a", "x"));
  assertEquals(calls, ["watch"]);
  assertEquals(s.count("a"), 0);
});

Deno.test("CommandStore leaves devices of self-subscribing protocols (MQTT) alone", () => {
  const { s } = store({
    maxDevices: 10,
    protocolOf: (id) => id === "m" ? "mqtt" : "http",
    deliversOwnCommands: (p) => p === "mqtt", // as the MQTT adapter registers its protocol
  });
  assertEquals(s.accept(msg("m", "x")), undefined);
  assert(s.accept(msg("h", "x")));
});

Deno.test("CommandStore rejects limits below one", () => {
  assertThrows(
    () => new CommandStore({ clock: new FakeClock(), maxPerDevice: 0, ttlMs: 1, maxDevices: 1 }),
    RangeError,
    "maxPerDevice must be an integer >= 1",
  );
});

Deno.test("The core's store subscribes once while opened and forgets everything when given back", async () => {
  const core = new Core({ log: silentLogger, anonymous: true });
  try {
    assertEquals(core.router.size, 0, "no subscription before an adapter opens it");
    const a = core.commands.open();
    const b = core.commands.open();
    assertEquals(core.router.size, 1);
    await core.publish(msg("d", "reboot"));
    assertEquals(core.commands.count("d"), 1);
    a();
    a(); // idempotent
    assertEquals(core.router.size, 1);
    b();
    assertEquals([core.router.size, core.commands.size], [0, 0]);
  } finally {
    await core.close();
  }
});

Deno.test("Config: the old per-protocol queue keys still load and set the store's limits", () => {
  assertEquals(resolveConfig({}).commands, {
    maxPerDevice: 32,
    ttlMs: 86_400_000,
    maxDevices: 10_000,
  });
  const old = resolveConfig({
    coap: { maxPendingCommands: 50, commandTtlMs: 60_000 },
    http: { deviceApi: { maxPendingCommands: 8, commandTtlMs: 5000 } },
  });
  assertEquals(old.commands, { maxPerDevice: 50, ttlMs: 60_000, maxDevices: 10_000 });
  const both = resolveConfig({ commands: { maxPerDevice: 3 }, coap: { maxPendingCommands: 50 } });
  assertEquals(both.commands.maxPerDevice, 3, "the store's own key wins");
});
