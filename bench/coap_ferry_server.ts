/**
 * Ferry's CoAP server alone, for `bench/coap_bench.ts`: a core with 1000 device credentials
 * (`dev0`..`dev999`, token `tok`) and a subscriber on every telemetry topic, so each request does
 * the real work (parse, dedup, authenticate, ACL, pipeline, fan-out). Prints `listening PORT`.
 * Run with `deno run -A --unstable-net bench/coap_ferry_server.ts [maxObservers]`.
 *
 * @module
 */

import { Core } from "../src/core/core.ts";
import { Logger } from "../src/core/logger.ts";
import { Code } from "../src/protocols/coap/message.ts";
import { CoapServer } from "../src/protocols/coap/server.ts";

const devices = Array.from({ length: 1000 }, (_, i) => ({ id: `dev${i}`, token: "tok" }));
const core = new Core({ devices, log: new Logger({ level: "warn" }), queueCapacity: 4096 });
let received = 0;
core.subscribe("devices/+/telemetry/#", { id: "bench", deliver: () => received++ });
const gc = (globalThis as { gc?: () => void }).gc;
const server = new CoapServer(core, {
  port: 0,
  maxObservers: Number(Deno.args[0] ?? 100_000),
  resources: [{
    // Bench-only: V8 heap in use after a full GC (the child runs with --expose-gc).
    path: "/_bench/heap",
    handle: () => {
      gc?.();
      return {
        code: Code.CONTENT,
        payload: new TextEncoder().encode(String(Deno.memoryUsage().heapUsed)),
      };
    },
  }],
});
const { port } = await server.listen();
console.log(`listening ${port}`);
const onTerm = async () => {
  Deno.removeSignalListener("SIGTERM", onTerm);
  await server.close();
  await core.close();
  console.error(`received ${received}`);
};
Deno.addSignalListener("SIGTERM", onTerm);
