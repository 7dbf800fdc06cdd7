import { assert, assertEquals } from "./_assert.ts";
import { enc, startBinary, waitFor } from "./_harness.ts";
import { FakeClock } from "../src/core/clock.ts";
import { FbpClient, HelloRefusedError } from "../src/protocols/binary/client.ts";
import { AckStatus, ErrorCode, HelloStatus } from "../src/protocols/binary/frame.ts";

Deno.test("FBP/1 connections past the per-address cap get ERROR 9 and the slot frees on close", async () => {
  await using h = await startBinary({
    core: { admission: { maxConnectionsPerAddress: 2, exemptLoopback: false } },
  });
  const a = await FbpClient.connect({ port: h.port, id: "a" });
  const b = await FbpClient.connect({ port: h.port, id: "b" });
  const c = await FbpClient.open(h.port);
  const e = await c.nextError();
  assertEquals(e?.code, ErrorCode.SHUTTING_DOWN);
  assert(e!.reason.includes("too many connections from 127.0.0.1"), e!.reason);
  await c.finished;
  await c.close();
  assertEquals(h.core.stats.drops.get({ protocol: "binary", reason: "address_limit" }), 1);
  await a.close();
  await waitFor(() => h.core.admission.connections("127.0.0.1") === 1, "the slot to free");
  const d = await FbpClient.connect({ port: h.port, id: "d" });
  await Promise.all([b.close(), d.close()]);
});

Deno.test("FBP/1 repeated failed logins for a device from one address are throttled for a minute (UNAVAILABLE, retryable), even with the right token", async () => {
  const clock = new FakeClock(Date.now());
  await using h = await startBinary({
    clock,
    core: {
      anonymous: false,
      devices: [{ id: "s1", token: "right" }],
      authFailuresPerMinute: 3,
    },
  });
  const attempt = async (token: string) => {
    try {
      const c = await FbpClient.connect({ port: h.port, id: "s1", token });
      await c.close();
      return HelloStatus.OK;
    } catch (err) {
      return err instanceof HelloRefusedError ? err.status : -1;
    }
  };
  for (let i = 0; i < 3; i++) assertEquals(await attempt("wrong"), HelloStatus.BAD_CREDENTIALS);
  assertEquals(await attempt("right"), HelloStatus.UNAVAILABLE, "not throttled");
  assert(h.lines.some((l) => l.includes("too many failed logins from 127.0.0.1")));
  assert(
    !h.lines.some((l) => l.includes("wrong") || l.includes("right")),
    "a token reached the log",
  );
  clock.tick(60_000);
  assertEquals(await attempt("right"), HelloStatus.OK);
});

Deno.test("FBP/1 telemetry over the device's rate limit is refused with ACK 3 (overloaded) and counted", async () => {
  const clock = new FakeClock(Date.now());
  await using h = await startBinary({ clock, core: { deviceRatePerSec: 10, deviceBurst: 5 } });
  const c = await FbpClient.connect({ port: h.port, id: "chatty" });
  const first = await Promise.all(
    Array.from({ length: 8 }, () => c.telemetry(enc("x"), { ack: true })),
  );
  assertEquals(
    first,
    [0, 0, 0, 0, 0, 3, 3, 3].map((s) => s === 0 ? AckStatus.OK : AckStatus.OVERLOADED),
  );
  assertEquals(h.core.stats.drops.get({ protocol: "binary", reason: "rate_limited" }), 3);
  clock.tick(500); // 5 tokens back
  const second = await Promise.all(
    Array.from({ length: 6 }, () => c.telemetry(enc("y"), { ack: true })),
  );
  assertEquals(second.filter((s) => s === AckStatus.OK).length, 5);
  // Another device has its own bucket.
  const other = await FbpClient.connect({ port: h.port, id: "quiet" });
  assertEquals(await other.telemetry(enc("z"), { ack: true }), AckStatus.OK);
  await Promise.all([c.close(), other.close()]);
});
