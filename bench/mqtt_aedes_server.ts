/**
 * Bench peer: aedes (npm) on node:net under Deno, in-memory persistence. Prints `listening <port>`.
 *
 * @module
 */

import { Aedes } from "./_dev_deps.ts";
import { createServer } from "node:net";

const broker = await Aedes.createBroker();
const server = createServer(broker.handle);
server.listen(0, "127.0.0.1", () => {
  const addr = server.address();
  console.log(`listening ${typeof addr === "object" && addr ? addr.port : 0}`);
});
Deno.addSignalListener("SIGTERM", () => {
  server.close();
  broker.close(() => Deno.exit(0));
});
