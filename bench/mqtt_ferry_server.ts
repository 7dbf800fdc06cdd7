/**
 * Bench peer: Ferry's core and MQTT listener alone (anonymous, logs at warn), on a free port.
 * Prints `listening <port>` once bound; exits on SIGTERM.
 *
 * @module
 */

import { Core, Logger } from "../src/core/mod.ts";
import { MqttServer } from "../src/protocols/mqtt/mod.ts";

const core = new Core({ anonymous: true, log: new Logger({ level: "warn" }) });
const server = new MqttServer(core, { hostname: "127.0.0.1", port: 0 });
const { port } = await server.listen();
console.log(`listening ${port}`);
Deno.addSignalListener("SIGTERM", async () => {
  await server.close();
  await core.close();
  Deno.exit(0);
});
