/**
 * A minimal gateway process for the kill -9 test: a core, an FBP/1 server on a free port and the
 * northbound bridge with its spool in `--data`. Prints `{"port":N}` on stdout once listening.
 *
 * Usage: `deno run -A tests/_northbound_gateway.ts --data DIR --upstream URL --gateway-id ID`
 *
 * @module
 */

import { Core } from "../src/core/core.ts";
import { Logger } from "../src/core/logger.ts";
import { startNorthbound } from "../src/northbound/mod.ts";
import { BinaryServer } from "../src/protocols/binary/server.ts";

function arg(name: string): string {
  const i = Deno.args.indexOf(`--${name}`);
  if (i < 0 || i + 1 >= Deno.args.length) throw new TypeError(`missing --${name}`);
  return Deno.args[i + 1];
}

const core = new Core({ anonymous: true, log: new Logger({ level: "warn" }) });
const nb = await startNorthbound(core, {
  url: arg("upstream"),
  gatewayId: arg("gateway-id"),
  backoffBaseMs: 20,
  backoffCapMs: 200,
}, arg("data"));
const server = new BinaryServer(core, { port: 0 });
const { port } = await server.listen();
console.log(JSON.stringify({ port, backlog: nb.spool.depth }));
Deno.addSignalListener("SIGTERM", async () => {
  await server.close();
  await core.close();
  await nb.close();
  Deno.exit(0);
});
