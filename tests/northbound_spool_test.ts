import { FakeClock } from "../src/core/clock.ts";
import { createMessage, type Message } from "../src/core/message.ts";
import { recordSize, Spool, SpoolCorruptError, SpoolFullError } from "../src/northbound/spool.ts";
import { assert, assertEquals, assertRejects, assertThrows } from "./_assert.ts";
import { dec, enc } from "./_harness.ts";

function msg(device: string, text: string, extra: Partial<Message> = {}): Message {
  return createMessage({
    topic: `devices/${device}/telemetry`,
    payload: enc(text),
    qos: 1,
    deviceId: device,
    ...extra,
  });
}

async function withDir(fn: (dir: string) => Promise<void>): Promise<void> {
  const dir = await Deno.makeTempDir({ prefix: "ferry-spool-" });
  try {
    await fn(dir);
  } finally {
    await Deno.remove(dir, { recursive: true });
  }
}

Deno.test("Spool keeps committed messages across a reopen, in append order", async () => {
  await withDir(async (dir) => {
    const a = Spool.open(`${dir}/s.db`);
    await Promise.all(["a1", "b1", "a2", "b2"].map((t) => a.append(msg(t[0], t))));
    a.close();
    const b = Spool.open(`${dir}/s.db`);
    const rows = b.read(0, 10);
    assertEquals(rows.map((r) => dec(r.payload)), ["a1", "b1", "a2", "b2"]);
    assertEquals(rows.map((r) => r.deviceId), ["a", "b", "a", "b"]);
    assertEquals(b.depth, 4);
    b.close();
  });
});

Deno.test("Spool commits the appends of one event-loop turn in one transaction", async () => {
  await withDir(async (dir) => {
    using s = Spool.open(`${dir}/s.db`);
    const ids = await Promise.all(
      Array.from({ length: 200 }, (_, i) => s.append(msg("d", `${i}`))),
    );
    assertEquals(s.stats.commits, 1);
    assertEquals(ids, [...ids].sort((x, y) => x - y));
    assertEquals(s.depth, 200);
  });
});

Deno.test("Spool deletes a message only when it is acknowledged, and never reuses its id", async () => {
  await withDir(async (dir) => {
    using s = Spool.open(`${dir}/s.db`);
    const [a, b] = await Promise.all([s.append(msg("d", "a")), s.append(msg("d", "b"))]);
    s.ack(b);
    s.flush();
    assertEquals(s.read(0, 10).map((r) => r.id), [a]);
    const c = await s.append(msg("d", "c"));
    assert(c > b, `id ${c} reused`);
    assertEquals(s.depth, 2);
  });
});

Deno.test("Spool refuses new messages when full under refuse-new", async () => {
  await withDir(async (dir) => {
    const size = recordSize("devices/d/telemetry", enc("x"));
    using s = Spool.open(`${dir}/s.db`, { maxBytes: size * 3, fullPolicy: "refuse-new" });
    for (let i = 0; i < 3; i++) await s.append(msg("d", "x"));
    await assertRejects(() => s.append(msg("d", "x")), SpoolFullError, "full");
    assertEquals(s.stats.refused, 1);
    assertEquals(s.depth, 3);
  });
});

Deno.test("Spool drops the oldest messages when full under drop-oldest and counts them", async () => {
  await withDir(async (dir) => {
    const size = recordSize("devices/d/telemetry", enc("0"));
    const drops: number[] = [];
    using s = Spool.open(`${dir}/s.db`, {
      maxBytes: size * 3,
      fullPolicy: "drop-oldest",
      onDrop: (reason, n) => reason === "full" && drops.push(n),
    });
    for (let i = 0; i < 5; i++) await s.append(msg("d", `${i}`));
    assertEquals(s.read(0, 10).map((r) => dec(r.payload)), ["2", "3", "4"]);
    assertEquals(s.stats.droppedFull, 2);
    assertEquals(drops.reduce((a, b) => a + b, 0), 2);
    assertEquals(s.bytes, size * 3);
  });
});

Deno.test("Spool drops expired messages (TTL) and counts them", async () => {
  await withDir(async (dir) => {
    const clock = new FakeClock(1_000_000);
    using s = Spool.open(`${dir}/s.db`, { ttlSec: 10, clock });
    await s.append(msg("d", "old"));
    clock.tick(6000);
    await s.append(msg("d", "new"));
    clock.tick(4000);
    assertEquals(s.expire(), 1);
    assertEquals(s.read(0, 10).map((r) => dec(r.payload)), ["new"]);
    clock.tick(6000);
    assertEquals(s.read(0, 10), [], "read also skips and drops expired rows");
    assertEquals(s.stats.droppedTtl, 2);
    assertEquals(s.depth, 0);
  });
});

Deno.test("Spool honours a message's own expiry when it is earlier than the TTL", async () => {
  await withDir(async (dir) => {
    const clock = new FakeClock(0);
    using s = Spool.open(`${dir}/s.db`, { ttlSec: 100, clock });
    await s.append(msg("d", "short", { properties: { expiresAt: 1000 } }));
    await s.append(msg("d", "long"));
    clock.tick(1000);
    assertEquals(s.read(0, 10).map((r) => dec(r.payload)), ["long"]);
  });
});

Deno.test("Spool reports a corrupt file clearly and leaves it in place", async () => {
  await withDir(async (dir) => {
    const path = `${dir}/s.db`;
    await Deno.writeTextFile(path, "this is not a database ".repeat(400));
    const err = assertThrows(() => Spool.open(path), SpoolCorruptError, "corrupt or unreadable");
    assertEquals(err.path, path);
    assert((await Deno.readTextFile(path)).startsWith("this is not"), "file was modified");
  });
});

Deno.test("Spool sets a corrupt file aside and starts empty only when asked", async () => {
  await withDir(async (dir) => {
    const path = `${dir}/s.db`;
    await Deno.writeTextFile(path, "garbage ".repeat(1000));
    using s = Spool.open(path, { onCorrupt: "set-aside" });
    assert(s.setAside?.startsWith(`${path}.corrupt-`), `set aside as ${s.setAside}`);
    assert((await Deno.readTextFile(s.setAside!)).startsWith("garbage"), "original kept");
    assertEquals(s.depth, 0);
  });
});

Deno.test("Spool file shrinks again after a backlog drains", async () => {
  await withDir(async (dir) => {
    using s = Spool.open(`${dir}/s.db`);
    const payload = "p".repeat(1000);
    const ids: number[] = [];
    for (let b = 0; b < 5; b++) {
      ids.push(
        ...await Promise.all(Array.from({ length: 1000 }, () => s.append(msg("d", payload)))),
      );
    }
    const big = s.fileBytes();
    assert(big > 4_000_000, `backlog file is ${big} bytes`);
    for (const id of ids) s.ack(id);
    s.flush();
    assertEquals(s.depth, 0);
    assert(s.compact(), "compacted");
    const small = s.fileBytes();
    assert(small < 200_000, `file is still ${small} bytes after the drain`);
  });
});

Deno.test("Spool reads the same rows from its in-memory tail as from the file", async () => {
  await withDir(async (dir) => {
    const s = Spool.open(`${dir}/s.db`);
    const ids: number[] = [];
    for (let b = 0; b < 5; b++) {
      ids.push(
        ...await Promise.all(
          Array.from({ length: 50 }, (_, i) => s.append(msg(`d${i % 3}`, `${b}-${i}`))),
        ),
      );
    }
    // acknowledge every third row, out of order, and re-read from the head and from the middle
    for (const id of ids.filter((_, i) => i % 3 === 0).reverse()) s.ack(id);
    s.flush();
    const fromMemory = [s.read(0, 1000), s.read(ids[100], 1000), s.read(ids[200], 7)];
    s.close();
    const t = Spool.open(`${dir}/s.db`); // fresh: everything comes from SQL
    const fromFile = [t.read(0, 1000), t.read(ids[100], 1000), t.read(ids[200], 7)];
    const strip = (rows: Array<{ id: number; payload: Uint8Array; deviceId?: string }>) =>
      rows.map((r) => [r.id, dec(r.payload), r.deviceId]);
    for (let i = 0; i < 3; i++) assertEquals(strip(fromMemory[i]), strip(fromFile[i]), `read ${i}`);
    assertEquals(fromFile[0].length, 250 - 84);
    t.close();
  });
});

Deno.test("Spool hides an acknowledged row at once and deletes it without a commit of its own", async () => {
  await withDir(async (dir) => {
    using s = Spool.open(`${dir}/s.db`);
    const [a, b] = await Promise.all([s.append(msg("d", "a")), s.append(msg("d", "b"))]);
    const commits = s.stats.commits;
    s.ack(a);
    assertEquals(s.read(0, 10).map((r) => r.id), [b], "not read again");
    assertEquals(s.depth, 2, "deletion not committed yet");
    await s.append(msg("d", "c")); // the deletion rides along with this commit
    assertEquals(s.stats.commits, commits + 1);
    assertEquals(s.depth, 2);
    assertEquals(s.read(0, 10).map((r) => dec(r.payload)), ["b", "c"]);
  });
});
