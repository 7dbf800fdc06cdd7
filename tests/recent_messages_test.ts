import { assertEquals } from "./_assert.ts";
import { RecentMessages } from "../src/http/dashboard/recent_messages.ts";
import { createMessage } from "../src/core/message.ts";

const enc = new TextEncoder();

Deno.test("RecentMessages keeps a payload's head after the socket buffer it viewed is reused", () => {
  const r = new RecentMessages(4, 8);
  const socketRead = enc.encode("temperature=21.5;humidity=40");
  r.add(
    createMessage({
      topic: "devices/a/telemetry",
      payload: socketRead.subarray(0, 16),
      deviceId: "a",
    }),
  );
  socketRead.fill(0x58); // the next read overwrites the bytes the message viewed
  const [m] = r.forDevice("a");
  assertEquals(m.preview, "temperat");
  assertEquals(m.size, 16);
});

Deno.test("RecentMessages wraps around without mixing one slot's preview into another", () => {
  const r = new RecentMessages(3, 4);
  const payloads = ["aaaaaa", "b", "", "cccc", "dd"];
  payloads.forEach((p, i) =>
    r.add(
      createMessage({ topic: `devices/x/telemetry/${i}`, payload: enc.encode(p), deviceId: "x" }),
    )
  );
  const seen = r.forDevice("x").map((m) => [m.topic, m.preview, m.size]);
  assertEquals(seen, [
    ["devices/x/telemetry/4", "dd", 2],
    ["devices/x/telemetry/3", "cccc", 4],
    ["devices/x/telemetry/2", "", 0],
  ]);
  assertEquals(r.forDevice("y"), []);
});
