/**
 * `Attachments`: one handle per identity is stored without a Set; several handles of one identity
 * (an MQTT client and an SSE stream of the same device) are all tracked, detached one by one, and
 * all closed by a revocation.
 */

import { assertEquals } from "./_assert.ts";
import { Attachments } from "../src/core/attachments.ts";
import { Identity } from "../src/core/login.ts";

function handle(id: string, closed: string[]) {
  return {
    sessionId: id,
    protocol: "test",
    close: (r: { code: string }) => closed.push(`${id}:${r.code}`),
  };
}

Deno.test("Attachments tracks one or several handles per identity, detaches each once, revokes them all", () => {
  const a = new Attachments();
  const closed: string[] = [];
  const d1 = new Identity({ kind: "device", id: "d1" }, "d1");
  const d2 = new Identity({ kind: "device", id: "d2" }, "d2");
  const x = a.attach(d1, handle("x", closed));
  const y = a.attach(d1, handle("y", closed));
  const z = a.attach(d1, handle("z", closed));
  a.attach(d2, handle("other", closed));
  assertEquals(a.size, 4);
  y.detach();
  y.detach(); // idempotent
  assertEquals(a.size, 3);
  x.detach();
  assertEquals(a.size, 2, "back to a single handle for d1");
  const w = a.attach(d1, handle("w", closed));
  assertEquals(a.size, 3);
  assertEquals(a.revoke((k) => k === d1.key, { code: "removed", message: "gone" }), 2);
  assertEquals(closed.sort(), ["w:removed", "z:removed"]);
  assertEquals(a.size, 1, "d2's handle stays");
  z.detach();
  w.detach();
  assertEquals(a.size, 1, "detaching revoked handles changes nothing");
  assertEquals(a.revoke(() => true, { code: "removed", message: "all" }), 1);
  assertEquals(a.size, 0);
});
