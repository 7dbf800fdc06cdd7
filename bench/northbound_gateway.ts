/**
 * The gateway process of the northbound benchmark: a core, an FBP/1 server on a free port and the
 * northbound bridge (spool in `--data`). Prints `{"port":N}` once listening, then a stats line
 * (`{"t":…,"published":…,"depth":…}`) every 250 ms on stdout.
 *
 * Usage: `deno run -A bench/northbound_gateway.ts --data DIR --options '<NorthboundOptions JSON>'`
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
const nb = await startNorthbound(core, JSON.parse(arg("options")), arg("data"));
const server = new BinaryServer(core, { port: 0 });
const { port } = await server.listen();
const out = (o: unknown) => console.log(JSON.stringify(o));
// Event-loop lag: how late a 5 ms timer fires, worst since the last stats line.
let maxLagMs = 0;
let maxCommitMs = 0;
nb.spool.onCommit((_added, ms) => maxCommitMs = Math.max(maxCommitMs, ms));
let expected = performance.now() + 5;
setInterval(() => {
  const now = performance.now();
  maxLagMs = Math.max(maxLagMs, now - expected);
  expected = now + 5;
}, 5);
out({ port });
setInterval(() =>
  out({
    t: performance.now(),
    published: nb.bridge.stats.published,
    resent: nb.bridge.stats.resent,
    depth: nb.spool.depth,
    bytes: nb.spool.bytes,
    fileBytes: nb.spool.fileBytes(),
    commits: nb.spool.stats.commits,
    appended: nb.spool.stats.appended,
    state: nb.state,
    maxLagMs: Math.round(maxLagMs),
    maxCommitMs: Math.round(maxCommitMs),
  }) ?? (maxLagMs = maxCommitMs = 0), 250);
Deno.addSignalListener("SIGTERM", async () => {
  await server.close();
  await core.close();
  await nb.close();
  Deno.exit(0);
});
