/**
 * Server time of the management API's device list at 20,000 registered devices (in process, no
 * socket): median and p90 of 30 calls per query. Run with `deno run -A bench/admin_list_bench.ts`.
 *
 * @module
 */

import { Core } from "../src/core/core.ts";
import { silentLogger } from "../src/core/logger.ts";
import { ConsoleAuth } from "../src/http/console/auth.ts";
import { AdminApi } from "../src/http/admin/admin_api.ts";

const N = 20_000;
const devices = Array.from({ length: N }, (_, i) => ({
  id: `dev-${String(i).padStart(5, "0")}`,
  token: "t",
}));
const core = new Core({
  log: silentLogger,
  devices,
  services: [{ name: "ops", token: "t", publish: [], subscribe: ["devices/#"] }],
});
const api = new AdminApi(core, new ConsoleAuth(core.registry));
const info = { remoteAddr: { transport: "tcp" as const, hostname: "127.0.0.1", port: 1 } };
const headers = { authorization: `Basic ${btoa("ops:t")}` };
for (const q of ["limit=50", "limit=50&sort=lastSeen", "limit=50&prefix=dev-1", "limit=1000"]) {
  const url = new URL(`http://gw/api/v1/admin/devices?${q}`);
  const times: number[] = [];
  for (let i = 0; i < 30; i++) {
    const t = performance.now();
    const res = await api.handle(new Request(url, { headers }), url, info)!;
    const total = (await res.json()).total;
    if (i === 0 && total < N / 2) throw new Error(`only ${total} devices listed`);
    times.push(performance.now() - t);
  }
  times.sort((a, b) => a - b);
  console.log(`${q}: median ${times[15].toFixed(1)} ms, p90 ${times[27].toFixed(1)} ms`);
}
await core.close();
