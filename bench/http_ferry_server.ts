/**
 * Ferry's HTTP ingest path for the benchmark: a Core (anonymous devices, no sinks) and the
 * shared `HttpServer` with the device API mounted, exactly as the gateway mounts it. Run as a
 * child process so the load generator does not share its event loop. Prints `listening <port>`.
 *
 * Flags: `--queue <n>` pipeline capacity (default 16384, room for 200 clients x 50-message batches).
 *
 * @module
 */

import { Core, Logger } from "../src/core/mod.ts";
import { DeviceApi } from "../src/http/device_api/mod.ts";
import { HttpServer } from "../src/http/server.ts";

const qi = Deno.args.indexOf("--queue");
const queueCapacity = qi >= 0 ? Number(Deno.args[qi + 1]) : 16_384;
const core = new Core({
  anonymous: true,
  queueCapacity,
  log: new Logger({ level: "warn" }),
});
const api = new DeviceApi(core, { maxBatch: 1000 });
const http = new HttpServer(core, { hostname: "127.0.0.1", port: 0, allowedHosts: ["bench"] });
http.route((req, url) => api.handle(req, url));
const { port } = await http.listen();
console.log(`listening ${port}`);
Deno.addSignalListener("SIGTERM", async () => {
  await api.close();
  await http.close();
  await core.close();
  Deno.exit(0);
});
