/**
 * The durability soak, small (issue #13): a real gateway process killed with SIGKILL twice, under
 * load from devices on FBP/1, MQTT, CoAP and HTTP, while its upstream (a real mosquitto) is
 * restarted twice: the first kill halfway through an outage (the spool holds a backlog), the second
 * as soon as the bridge is back after the other (the backlog is being sent). No acknowledged
 * message may be missing upstream. `deno task soak` runs the same thing longer (bench/soak.ts).
 *
 * @module
 */

import { PROTOCOLS, runSoak, schedule } from "../bench/soak.ts";
import { assert, assertEquals } from "./_assert.ts";

Deno.test("Soak: kill -9 and upstream restarts under load on all four protocols lose no acknowledged message", async () => {
  const r = await runSoak({
    durationSec: 20,
    kills: 2,
    upstreamRestarts: 2,
    devicesPerProtocol: 2,
    intervalMs: 5,
    upstreamDownMs: 2000,
    drainTimeoutMs: 90_000,
  });
  console.log(
    `soak: ${r.total.acknowledged} acknowledged, ${r.total.receivedUpstream} received upstream, ` +
      `${r.total.acknowledgedMissing} missing, ${r.total.duplicates} duplicates, ` +
      `${r.total.unacknowledged} unacknowledged, ${r.total.refused} refused; spool depth at the ` +
      `kills: ${r.spoolDepthAtKills.join(", ")}`,
  );
  assertEquals(r.kills, 2);
  assertEquals(r.killsWithUpstreamDown, 1);
  assertEquals(r.killsDuringDrain, 1);
  assertEquals(r.upstreamRestarts, 2);
  assertEquals(r.missingExamples, [], "acknowledged messages missing upstream");
  assertEquals(r.total.acknowledgedMissing, 0);
  assertEquals(r.finalSpoolDepth, 0, "the spool drained");
  // The kill with the upstream down found a backlog in the spool (what the restart must resend).
  assert(r.spoolDepthAtKills[0] > 0, `spool depth at the first kill: ${r.spoolDepthAtKills[0]}`);
  for (const p of PROTOCOLS) {
    // Not vacuous: every protocol had messages acknowledged by each of the three gateway
    // instances, so before the first kill, between the kills and after the last one.
    const by = r.protocols[p].acknowledgedByInstance;
    assertEquals(by.length, 3, `${p}: three gateway instances`);
    assert(by.every((n) => n > 0), `${p}: acknowledged by every instance: ${by}`);
    assert(r.protocols[p].receivedUpstream >= r.protocols[p].acknowledged);
  }
});

Deno.test("Soak schedule: kills and upstream restarts all happen, some kills with the upstream down", () => {
  assertEquals(schedule(2, 1), ["upstream+kill", "kill"]);
  assertEquals(schedule(2, 2), ["upstream+kill", "upstream+drain-kill"]);
  assertEquals(schedule(6, 3), [
    "upstream+kill",
    "kill",
    "upstream+drain-kill",
    "kill",
    "upstream+kill",
    "kill",
  ]);
  assertEquals(schedule(1, 3), ["upstream+kill", "upstream", "upstream"]);
  assertEquals(schedule(0, 2), ["upstream", "upstream"]);
  assertEquals(schedule(1, 0), ["kill"]);
});
