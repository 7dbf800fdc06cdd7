import { assert, assertEquals, assertRejects, assertThrows } from "./_assert.ts";
import { Semaphore } from "../src/core/semaphore.ts";
import { Backoff } from "../src/core/backoff.ts";
import { canPublish, canSubscribe, filterCovers, type Principal } from "../src/core/acl.ts";
import { hashToken, isTokenHash, verifyToken } from "../src/core/credentials.ts";
import { DeviceRegistry, type SessionHandle } from "../src/core/registry.ts";
import { anonymousAllowed, resolveConfig } from "../src/config/config.ts";
import { ConfigError } from "../src/config/schema.ts";
import { parseCliArgs } from "../src/config/cli_args.ts";

Deno.test("Semaphore hands permits out FIFO and a disposed permit is released once", async () => {
  const s = new Semaphore(2);
  const a = await s.acquire();
  const b = await s.acquire();
  const order: number[] = [];
  const w1 = s.acquire().then((p) => (order.push(1), p));
  const w2 = s.acquire().then((p) => (order.push(2), p));
  a.release();
  a.release(); // idempotent
  const p1 = await w1;
  assertEquals(s.waiting, 1);
  b[Symbol.dispose]();
  const p2 = await w2;
  assertEquals(order, [1, 2]);
  p1.release();
  p2.release();
  assertEquals(s.available, 2);
  assertThrows(() => new Semaphore(0), RangeError);
});

Deno.test("Semaphore.acquire rejects when its signal aborts", async () => {
  const s = new Semaphore(1);
  using _p = s.tryAcquire()!;
  const ac = new AbortController();
  const w = s.acquire(ac.signal);
  ac.abort(new Error("stop"));
  await assertRejects(() => w, Error, "stop");
  assertEquals(s.waiting, 0);
});

Deno.test("Backoff grows exponentially with full jitter up to the cap and resets", () => {
  const b = new Backoff({ baseMs: 100, capMs: 1000, random: () => 0.5 });
  assertEquals([b.next(), b.next(), b.next(), b.next(), b.next(), b.next()], [
    50,
    100,
    200,
    400,
    500,
    500,
  ]);
  b.reset();
  assertEquals(b.next(), 50);
  const r = new Backoff({ baseMs: 100, capMs: 1000 });
  for (let i = 0; i < 100; i++) {
    const d = r.next();
    assert(d >= 0 && d <= 1000);
  }
});

Deno.test("ACL: a device publishes only under its own prefix and subscribes only inside it", () => {
  const dev: Principal = { kind: "device", id: "d1" };
  assert(canPublish(dev, "devices/d1/telemetry/temp"));
  assert(canPublish(dev, "devices/d1/acks/reboot"));
  assert(!canPublish(dev, "devices/d2/telemetry"), "published as another device");
  assert(!canPublish(dev, "devices/d1/commands/x"), "published its own command");
  assert(!canPublish(dev, "devices/d1/status"), "forged its presence");
  assert(canSubscribe(dev, "devices/d1/commands/+"));
  assert(!canSubscribe(dev, "devices/+/commands/#"));
  assert(!canSubscribe(dev, "#"));
  const svc: Principal = {
    kind: "service",
    name: "app",
    publish: ["devices/+/commands/#"],
    subscribe: ["devices/#"],
  };
  assert(canSubscribe(svc, "devices/+/telemetry/#"));
  assert(!canSubscribe(svc, "#"));
  assert(canPublish(svc, "devices/x/commands/reboot"));
  assert(!canPublish(svc, "devices/x/telemetry"));
  assert(filterCovers("a/+/c", "a/b/c") && !filterCovers("a/+/c", "a/#") && filterCovers("#", "#"));
});

Deno.test("Credentials: hashed tokens verify, are salted, and malformed hashes never verify", () => {
  const h1 = hashToken("tok");
  const h2 = hashToken("tok");
  assert(h1 !== h2, "hash is not salted");
  assert(isTokenHash(h1) && verifyToken("tok", h1) && !verifyToken("tok2", h1));
  assert(!verifyToken("tok", "sha256:zz:00"));
  const reg = new DeviceRegistry({ devices: [{ id: "a", tokenHash: h1 }] });
  assert(reg.authenticate("a", "tok").ok);
  assertEquals(reg.authenticate("a", "bad"), { ok: false, reason: "bad_credentials" });
  assertEquals(reg.authenticate("no such id!", "tok"), { ok: false, reason: "bad_id" });
});

Deno.test("Registry: attach takes over the previous session and presence follows the live session", () => {
  const events: string[] = [];
  const reg = new DeviceRegistry({
    anonymous: true,
    onPresence: (id, s) => events.push(`${id}:${s}`),
  });
  const closed: string[] = [];
  const mk = (id: string): SessionHandle => ({
    sessionId: id,
    protocol: "binary",
    close: (r) => closed.push(`${id}:${r.code}`),
  });
  const s1 = mk("s1");
  const s2 = mk("s2");
  reg.attach("d", s1);
  reg.attach("d", s2);
  assertEquals(closed, ["s1:taken_over"]);
  reg.detach("d", s1); // the old session ending must not mark the device offline
  assertEquals(reg.get("d")?.state, "online");
  reg.detach("d", s2);
  assertEquals(events, ["d:online", "d:offline"]);
});

Deno.test("Registry: removing a device's credentials closes its session", () => {
  const reg = new DeviceRegistry({ devices: [{ id: "d", token: "t" }] });
  const closed: string[] = [];
  reg.attach("d", { sessionId: "s", protocol: "binary", close: (r) => closed.push(r.code) });
  reg.setCredentials([]);
  assertEquals(closed, ["removed"]);
});

Deno.test("Config: defaults are safe (loopback, anonymous only there) and wide binds need credentials", () => {
  const d = resolveConfig({});
  assertEquals([d.host, anonymousAllowed(d)], ["127.0.0.1", true]);
  assertEquals(anonymousAllowed(resolveConfig({ host: "0.0.0.0" })), false);
  assertEquals(
    anonymousAllowed(resolveConfig({ host: "0.0.0.0", auth: { anonymous: true } })),
    true,
  );
  assertEquals(
    anonymousAllowed(resolveConfig({ auth: { devices: [{ id: "a", token: "t" }] } })),
    false,
  );
});

Deno.test("Config: errors name the offending key", () => {
  const cases: Array<[unknown, string]> = [
    [{ binary: { maxPayload: 10 } }, "binary.maxPayload"],
    [
      { auth: { devices: [{ id: "a", token: "t" }, { id: "a", token: "u" }] } },
      "auth.devices[1].id",
    ],
    [{ binary: { defaultKeepAliveSec: 100, maxKeepAliveSec: 10 } }, "binary.defaultKeepAliveSec"],
    [{ host: 5 }, "host"],
    [[], "(root)"],
  ];
  for (const [raw, key] of cases) {
    const e = assertThrows(() => resolveConfig(raw), ConfigError);
    assertEquals(e.key, key);
  }
  assertThrows(() => parseCliArgs(["--mqtt-port"]), ConfigError, "--mqtt-port");
});
