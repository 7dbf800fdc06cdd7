/**
 * Server time of the management API's lists at 20,000 (in process, no socket): devices (20,000
 * registered), MQTT sessions (20,000, half connected, half persisted offline, two subscriptions
 * each) and their subscriptions (40,000); median and p90 of 30 calls per query. Run with
 * `deno run -A bench/admin_list_bench.ts`.
 *
 * @module
 */

import { Core } from "../src/core/core.ts";
import { silentLogger } from "../src/core/logger.ts";
import { ConsoleAuth } from "../src/http/console/auth.ts";
import { AdminApi } from "../src/http/admin/admin_api.ts";
import { Identity } from "../src/core/login.ts";
import { MQTT } from "../src/protocols/mqtt/server.ts";
import { resolveMqttServerOptions } from "../src/protocols/mqtt/options.ts";
import { SessionStore } from "../src/protocols/mqtt/session_store.ts";
import { SharedSubscriptions } from "../src/protocols/mqtt/shared_subscriptions.ts";
import type { AcceptedConnect } from "../src/protocols/mqtt/handle_connect.ts";

const N = 20_000;
const devices = Array.from({ length: N }, (_, i) => ({
  id: `dev-${String(i).padStart(5, "0")}`,
  token: "t",
}));
const core = new Core({
  log: silentLogger,
  devices,
  services: [{
    name: "ops",
    token: "t",
    publish: [],
    subscribe: ["devices/#", "$ferry/admin/#"],
  }],
});

// 20,000 MQTT sessions in the adapter's own session store, shown through the port as the MQTT
// server does: half carried by a (stand-in) connection, half persisted offline.
const port = core.port(MQTT);
const store = new SessionStore(
  port,
  new SharedSubscriptions(port),
  resolveMqttServerOptions({ maxSessions: 100_000 }),
  silentLogger,
);
port.provideSessions(store.provider());
const SUB = { qos: 1, noLocal: false, retainAsPublished: false, retainHandling: 0 } as const;
for (let i = 0; i < N; i++) {
  const id = devices[i].id;
  const owner = { sessionId: `s${i}`, protocol: "mqtt", close() {} };
  const who = new Identity({ kind: "device", id } as never, id);
  const r = store.open({
    clientId: id,
    cleanStart: false,
    sessionExpirySec: 3600,
    who,
    version: 5,
  } as AcceptedConnect, owner);
  if (!r.ok) throw new Error(r.message);
  r.session.subscribe(`devices/${id}/commands/#`, SUB);
  r.session.subscribe("devices/+/status", { ...SUB, qos: 0 });
  if (i % 2) store.release(owner, id, undefined);
}
const api = new AdminApi(core, new ConsoleAuth(core.registry));
const info = { remoteAddr: { transport: "tcp" as const, hostname: "127.0.0.1", port: 1 } };
const headers = { authorization: `Basic ${btoa("ops:t")}` };
const queries = [
  ...["limit=50", "limit=50&sort=lastSeen", "limit=50&prefix=dev-1", "limit=1000"]
    .map((q) => `devices?${q}`),
  ...["limit=50", "limit=50&connected=false", "limit=50&prefix=dev-1", "limit=1000"]
    .map((q) => `sessions?${q}`),
  ...["limit=50", "limit=50&topic=devices/dev-01234/commands/x", "limit=1000"]
    .map((q) => `subscriptions?${q}`),
];
for (const q of queries) {
  const url = new URL(`http://gw/api/v1/admin/${q}`);
  const times: number[] = [];
  for (let i = 0; i < 30; i++) {
    const t = performance.now();
    const res = await api.handle(new Request(url, { headers }), url, info)!;
    const total = (await res.json()).total;
    if (i === 0 && total < 1) throw new Error(`${q}: nothing listed`);
    times.push(performance.now() - t);
  }
  times.sort((a, b) => a - b);
  console.log(`${q}: median ${times[15].toFixed(1)} ms, p90 ${times[27].toFixed(1)} ms`);
}
store.close();
await core.close();
