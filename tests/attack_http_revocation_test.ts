/**
 * Revocation reaches HTTP streams (issue #13 item 4), against a real gateway process: removing or
 * rotating a device with `ferry device …` closes its open SSE stream and answers its pending
 * long-poll 401, never with a command.
 */

import { assert, assertEquals } from "./_assert.ts";
import { attackGateway, eventually, jsonInit } from "./_attack_http.ts";
import { runMain } from "./_process.ts";

async function addDevice(dir: string, id: string): Promise<string> {
  const r = await runMain(["device", "add", id, "--data-dir", dir]);
  assertEquals(r.code, 0, r.stderr);
  return r.stdout.trim();
}

/** Reads an SSE body into `events` until it ends; resolves then. */
function follow(res: Response, events: string[]): Promise<void> {
  return (async () => {
    const dec = new TextDecoder();
    try {
      for await (const chunk of res.body!) events.push(dec.decode(chunk));
    } catch { /* cut */ }
  })();
}

for (const verb of ["remove", "rotate"] as const) {
  Deno.test(`attack: ferry device ${verb} closes the device's SSE stream and answers its pending long-poll 401, with no command`, async () => {
    await using gw = await attackGateway({
      auth: {
        services: [{
          name: "ops",
          token: "ops-token",
          subscribe: ["devices/#"],
          publish: ["devices/+/commands/#"],
        }],
      },
    });
    // A second device keeps the registry non-empty: anonymous access ("auto") stays off.
    await addDevice(gw.dir, "devKeep");
    const token = await addDevice(gw.dir, "devA");
    await gw.proc.waitForLine((l) => l.msg === "device registry loaded" && l.devices === 2);
    const auth = { authorization: `Bearer ${token}` };

    const sse = await fetch(`${gw.base}/api/v1/devices/devA/commands`, {
      headers: { ...auth, accept: "text/event-stream" },
    });
    assertEquals(sse.status, 200);
    const events: string[] = [];
    const streamEnded = follow(sse, events);
    await eventually(() => events.join("").includes("commands of devA"), "the stream's first line");
    const poll = fetch(`${gw.base}/api/v1/devices/devA/commands?timeout=60`, { headers: auth });

    const r = await runMain(["device", verb, "devA", "--data-dir", gw.dir]);
    assertEquals(r.code, 0, r.stderr);
    const polled = await poll;
    assertEquals(polled.status, 401, "the pending long-poll was not ended by the revocation");
    const problem = await polled.json() as { detail: string };
    assert(problem.detail.includes("revoked"), problem.detail);
    await streamEnded; // the stream ended: revocation closed it

    // A command sent now is not delivered on the dead stream, and the old token is refused.
    const ops = await fetch(`${gw.base}/dashboard/login`, {
      ...jsonInit("POST", { name: "ops", token: "ops-token" }),
    });
    const cookie = ops.headers.get("set-cookie")!.split(";")[0];
    await ops.body?.cancel();
    const cmd = await fetch(
      `${gw.base}/dashboard/api/devices/devA/commands/reboot`,
      jsonInit("POST", { data: 1 }, { cookie }),
    );
    assertEquals(cmd.status, 202);
    await cmd.body?.cancel();
    assert(!events.join("").includes("event: command"), events.join(""));
    const again = await fetch(`${gw.base}/api/v1/devices/devA/commands?timeout=0`, {
      headers: auth,
    });
    assertEquals(again.status, 401);
    await again.body?.cancel();
  });
}
