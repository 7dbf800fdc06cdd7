import { DatabaseSync } from "node:sqlite";
import { FakeClock } from "../src/core/clock.ts";
import { createMessage, type Message } from "../src/core/message.ts";
import { RefusedError } from "../src/core/refusal.ts";
import {
  recordSize,
  Spool,
  SpoolCorruptError,
  SpoolFullError,
  SpoolTooLargeError,
} from "../src/northbound/spool.ts";
import { assert, assertEquals, assertRejects } from "./_assert.ts";
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
    const a = await Spool.open(`${dir}/s.db`);
    await Promise.all(["a1", "b1", "a2", "b2"].map((t) => a.append(msg(t[0], t))));
    await a.close();
    const b = await Spool.open(`${dir}/s.db`);
    const rows = await b.read(0, 10);
    assertEquals(rows.map((r) => dec(r.payload)), ["a1", "b1", "a2", "b2"]);
    assertEquals(rows.map((r) => r.deviceId), ["a", "b", "a", "b"]);
    assertEquals(b.depth, 4);
    await b.close();
  });
});

for (const worker of [true, false]) {
  Deno.test(`Spool commits the appends made while a commit is in flight in one group, in order (worker: ${worker})`, async () => {
    await withDir(async (dir) => {
      await using s = await Spool.open(`${dir}/s.db`, { worker });
      const ids = await Promise.all(
        Array.from({ length: 2000 }, (_, i) => s.append(msg(`d${i % 7}`, `${i}`))),
      );
      assert(s.stats.commits <= 2, `${s.stats.commits} commits for one turn's appends`);
      assertEquals(ids, [...ids].sort((x, y) => x - y));
      assertEquals(s.depth, 2000);
      const rows = await s.read(0, 5000);
      assertEquals(rows.map((r) => dec(r.payload)), ids.map((_, i) => `${i}`));
    });
  });
}

Deno.test("Spool deletes a message only when it is acknowledged, and never reuses its id", async () => {
  await withDir(async (dir) => {
    await using s = await Spool.open(`${dir}/s.db`);
    const [a, b] = await Promise.all([s.append(msg("d", "a")), s.append(msg("d", "b"))]);
    s.ack(b);
    await s.flush();
    assertEquals((await s.read(0, 10)).map((r) => r.id), [a]);
    const c = await s.append(msg("d", "c"));
    assert(c > b, `id ${c} reused`);
    assertEquals(s.depth, 2);
  });
});

Deno.test("Spool refuses new messages with a typed quota refusal when its partition is full", async () => {
  await withDir(async (dir) => {
    const size = recordSize("devices/d0/telemetry", enc("x"));
    await using s = await Spool.open(`${dir}/s.db`, {
      maxBytes: size * 3,
      maxBytesPerDevice: size * 3,
    });
    for (let i = 0; i < 3; i++) await s.append(msg(`d${i}`, "x"));
    const err = await assertRejects(() => s.append(msg("d9", "x")), SpoolFullError, "full");
    assert(err instanceof RefusedError && err.reason === "quota", "a RefusedError(quota)");
    assertEquals(s.stats.refused, 1);
    assertEquals(s.depth, 3);
  });
});

Deno.test("Spool refuses a device over its own quota while other devices still get in", async () => {
  await withDir(async (dir) => {
    const size = recordSize("devices/a/telemetry", enc("x"));
    await using s = await Spool.open(`${dir}/s.db`, {
      maxBytes: size * 100,
      maxBytesPerDevice: size * 2,
    });
    await s.append(msg("a", "x"));
    await s.append(msg("a", "x"));
    await assertRejects(() => s.append(msg("a", "x")), SpoolFullError, "quota");
    await s.append(msg("b", "x"));
    assertEquals(s.main.deviceBytes("a"), size * 2);
    // Acknowledged upstream: room again.
    const [first] = await s.read(0, 1);
    s.ack(first.id);
    await s.flush();
    await s.append(msg("a", "x"));
  });
});

Deno.test("Spool refuses a message that can never fit as too_large", async () => {
  await withDir(async (dir) => {
    await using s = await Spool.open(`${dir}/s.db`, { maxBytes: 2000 });
    const err = await assertRejects(
      () => s.append(msg("a", "x".repeat(3000))),
      SpoolTooLargeError,
    );
    assertEquals((err as RefusedError).reason, "too_large");
  });
});

Deno.test("Spool drops the oldest messages under the opt-in drop-oldest policy and counts them", async () => {
  await withDir(async (dir) => {
    const size = recordSize("devices/d/telemetry", enc("0"));
    const drops: number[] = [];
    await using s = await Spool.open(`${dir}/s.db`, {
      maxBytes: size * 3,
      maxBytesPerDevice: size * 3,
      fullPolicy: "drop-oldest",
      onDrop: (reason, n) => reason === "full" && drops.push(n),
    });
    for (let i = 0; i < 5; i++) await s.append(msg("d", `${i}`));
    assertEquals((await s.read(0, 10)).map((r) => dec(r.payload)), ["2", "3", "4"]);
    assertEquals(s.stats.droppedFull, 2);
    assertEquals(drops.reduce((a, b) => a + b, 0), 2);
    assertEquals(s.bytes, size * 3);
  });
});

Deno.test("Spool drop-oldest evicts only the device over its quota, never the others' rows", async () => {
  await withDir(async (dir) => {
    const size = recordSize("devices/a/telemetry", enc("0"));
    await using s = await Spool.open(`${dir}/s.db`, {
      maxBytes: size * 100,
      maxBytesPerDevice: size * 2,
      fullPolicy: "drop-oldest",
    });
    await s.append(msg("b", "b0"));
    for (let i = 0; i < 5; i++) await s.append(msg("a", `${i}`));
    const rows = (await s.read(0, 10)).map((r) => dec(r.payload));
    assertEquals(rows, ["b0", "3", "4"]);
  });
});

Deno.test("Spool drops expired messages (TTL) and counts them", async () => {
  await withDir(async (dir) => {
    const clock = new FakeClock(1_000_000);
    await using s = await Spool.open(`${dir}/s.db`, { ttlSec: 10, clock });
    await s.append(msg("d", "old"));
    clock.tick(6000);
    await s.append(msg("d", "new"));
    clock.tick(4000);
    assertEquals(await s.expire(), 1);
    assertEquals((await s.read(0, 10)).map((r) => dec(r.payload)), ["new"]);
    clock.tick(6000);
    assertEquals(await s.read(0, 10), [], "read skips expired rows");
    assertEquals(await s.expire(), 1);
    assertEquals(s.stats.droppedTtl, 2);
    assertEquals(s.depth, 0);
  });
});

Deno.test("Spool honours a message's own expiry when it is earlier than the TTL", async () => {
  await withDir(async (dir) => {
    const clock = new FakeClock(0);
    await using s = await Spool.open(`${dir}/s.db`, { ttlSec: 100, clock });
    await s.append(msg("d", "short", { properties: { expiresAt: 1000 } }));
    await s.append(msg("d", "long"));
    clock.tick(1000);
    assertEquals((await s.read(0, 10)).map((r) => dec(r.payload)), ["long"]);
  });
});

Deno.test("Spool reports a corrupt file clearly and leaves it in place", async () => {
  await withDir(async (dir) => {
    const path = `${dir}/s.db`;
    await Deno.writeTextFile(path, "this is not a database ".repeat(400));
    const err = await assertRejects(() => Spool.open(path), SpoolCorruptError, "corrupt");
    assertEquals((err as SpoolCorruptError).path, path);
    assert((await Deno.readTextFile(path)).startsWith("this is not"), "file was modified");
  });
});

Deno.test("Spool sets a corrupt file aside and starts empty only when asked", async () => {
  await withDir(async (dir) => {
    const path = `${dir}/s.db`;
    await Deno.writeTextFile(path, "garbage ".repeat(1000));
    await using s = await Spool.open(path, { onCorrupt: "set-aside" });
    assert(s.setAside?.startsWith(`${path}.corrupt-`), `set aside as ${s.setAside}`);
    assert((await Deno.readTextFile(s.setAside!)).startsWith("garbage"), "original kept");
    assertEquals(s.depth, 0);
  });
});

Deno.test("Spool opens a spool file written before partitions and checksums, rows intact", async () => {
  await withDir(async (dir) => {
    const path = `${dir}/s.db`;
    const db = new DatabaseSync(path);
    db.exec(`CREATE TABLE spool (id INTEGER PRIMARY KEY AUTOINCREMENT, topic TEXT NOT NULL,
      payload BLOB NOT NULL, qos INTEGER NOT NULL, retain INTEGER NOT NULL, device TEXT,
      ts INTEGER NOT NULL, expires INTEGER NOT NULL, size INTEGER NOT NULL)`);
    db.prepare(
      "INSERT INTO spool(topic, payload, qos, retain, device, ts, expires, size) VALUES (?,?,?,?,?,?,?,?)",
    )
      .run("devices/a/telemetry", enc("old"), 1, 0, "a", Date.now(), Date.now() + 1e9, 50);
    db.close();
    await using s = await Spool.open(path);
    assertEquals((await s.read(0, 10)).map((r) => dec(r.payload)), ["old"]);
    const id = await s.append(msg("a", "new"));
    assert(id > 1, "ids continue after the old ones");
  });
});

Deno.test("Spool quarantines a row whose bytes changed on disk instead of forwarding it", async () => {
  await withDir(async (dir) => {
    const path = `${dir}/s.db`;
    const dead: string[] = [];
    const s = await Spool.open(path);
    await Promise.all(["good1", "evil!", "good2"].map((t) => s.append(msg("a", t))));
    await s.close();
    // A flipped byte in a stored payload (what a bad SD card does to a data page).
    const db = new DatabaseSync(path);
    db.exec(
      "UPDATE spool SET payload = CAST('evil?' AS BLOB) WHERE payload = CAST('evil!' AS BLOB)",
    );
    db.close();
    await using t = await Spool.open(path, { onDead: (reason) => dead.push(reason) });
    assertEquals((await t.read(0, 10)).map((r) => dec(r.payload)), ["good1", "good2"]);
    assertEquals(t.stats.quarantined, 1);
    assertEquals(dead, ["checksum"]);
    const letters = await t.listDeadLetters();
    assertEquals(letters.map((l) => [l.reason, dec(l.payload)]), [["checksum", "evil?"]]);
    assertEquals(t.depth, 2);
  });
});

Deno.test("Spool says how many acknowledged messages are missing when its WAL was deleted", async () => {
  await withDir(async (dir) => {
    const path = `${dir}/s.db`;
    // Written by a process that dies without closing: the commits live in the WAL only.
    const child = new Deno.Command(Deno.execPath(), {
      args: [
        "eval",
        `import { Spool } from "${new URL("../src/northbound/spool.ts", import.meta.url).href}";
         import { createMessage } from "${new URL("../src/core/message.ts", import.meta.url).href}";
         const s = await Spool.open(${JSON.stringify(path)}, { autoCheckpointPages: 100000 });
         await Promise.all(Array.from({ length: 50 }, (_, i) => s.append(createMessage({
           topic: "devices/a/telemetry", payload: new Uint8Array([i]), qos: 1, deviceId: "a" }))));
         await new Promise((r) => setTimeout(r, 300)); // the mark trails the commits by an fsync
         Deno.exit(0);`,
      ],
    });
    assertEquals((await child.output()).code, 0);
    await Deno.remove(`${path}-wal`);
    await using s = await Spool.open(path);
    const lost = s.lostOnOpen;
    assert(lost !== undefined, "the loss went unnoticed");
    assertEquals(lost.count, 50);
    assertEquals(s.depth, 0);
    // New ids never reuse the lost ones.
    assert(await s.append(msg("a", "x")) > lost.to, "an id was reused");
  });
});

Deno.test("Spool dead letters can be listed, retried (back at the tail) and deleted", async () => {
  await withDir(async (dir) => {
    await using s = await Spool.open(`${dir}/s.db`);
    const ids = await Promise.all(["a", "b", "c"].map((t) => s.append(msg("d", t))));
    s.main.deadLetter(ids[0], "too_large", "test");
    s.main.deadLetter(ids[1], "rejected", "test");
    await s.flush();
    assertEquals((await s.read(0, 10)).map((r) => dec(r.payload)), ["c"]);
    assertEquals(s.deadLetterCount, 2);
    const letters = await s.listDeadLetters();
    assertEquals(letters.map((l) => [l.id, l.reason]), [[ids[0], "too_large"], [
      ids[1],
      "rejected",
    ]]);
    assertEquals(await s.retryDeadLetters([ids[0]]), 1);
    assertEquals((await s.read(0, 10)).map((r) => dec(r.payload)), ["c", "a"]);
    assertEquals(await s.deleteDeadLetters([ids[1]]), 1);
    assertEquals(s.deadLetterCount, 0);
    assertEquals(s.depth, 2);
  });
});

Deno.test("Spool partitions keep their rows and quotas apart", async () => {
  await withDir(async (dir) => {
    const size = recordSize("devices/a/telemetry", enc("x"));
    await using s = await Spool.open(`${dir}/s.db`, {
      partitions: { up: { maxBytes: size * 2, maxBytesPerDevice: size * 2 }, side: {} },
    });
    const up = s.partition("up")!;
    const side = s.partition("side")!;
    await s.append(msg("a", "x"), [up, side]);
    await s.append(msg("a", "x"), [up, side]);
    await assertRejects(() => s.append(msg("a", "x"), [up]), SpoolFullError);
    await s.append(msg("a", "x"), [side]);
    assertEquals([up.depth, side.depth], [2, 3]);
    const [first] = await up.read(0, 1);
    up.ack(first.id);
    await s.flush();
    assertEquals([up.depth, side.depth], [1, 3]);
  });
});

Deno.test("Spool file shrinks again after a backlog drains", async () => {
  await withDir(async (dir) => {
    await using s = await Spool.open(`${dir}/s.db`, { maxBytesPerDevice: 1 << 30 });
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
    await s.flush();
    assertEquals(s.depth, 0);
    assert(await s.compact(), "compacted");
    const small = s.fileBytes();
    assert(small < 200_000, `file is still ${small} bytes after the drain`);
  });
});

Deno.test("Spool reads the same rows from its in-memory tail as from the file", async () => {
  await withDir(async (dir) => {
    const s = await Spool.open(`${dir}/s.db`);
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
    await s.flush();
    const fromMemory = [
      await s.read(0, 1000),
      await s.read(ids[100], 1000),
      await s.read(ids[200], 7),
    ];
    await s.close();
    const t = await Spool.open(`${dir}/s.db`); // fresh: everything comes from SQL
    const fromFile = [
      await t.read(0, 1000),
      await t.read(ids[100], 1000),
      await t.read(ids[200], 7),
    ];
    const strip = (rows: Array<{ id: number; payload: Uint8Array; deviceId?: string }>) =>
      rows.map((r) => [r.id, dec(r.payload), r.deviceId]);
    for (let i = 0; i < 3; i++) assertEquals(strip(fromMemory[i]), strip(fromFile[i]), `read ${i}`);
    assertEquals(fromFile[0].length, 250 - 84);
    await t.close();
  });
});

Deno.test("Spool hides an acknowledged row at once and deletes it without a commit of its own", async () => {
  await withDir(async (dir) => {
    await using s = await Spool.open(`${dir}/s.db`);
    const [a, b] = await Promise.all([s.append(msg("d", "a")), s.append(msg("d", "b"))]);
    const commits = s.stats.commits;
    s.ack(a);
    assertEquals((await s.read(0, 10)).map((r) => r.id), [b], "not read again");
    assertEquals(s.depth, 2, "deletion not committed yet");
    await s.append(msg("d", "c")); // the deletion rides along with this commit
    assertEquals(s.stats.commits, commits + 1);
    assertEquals(s.depth, 2);
    assertEquals((await s.read(0, 10)).map((r) => dec(r.payload)), ["b", "c"]);
  });
});
