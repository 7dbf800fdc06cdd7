/**
 * Bench peer: Ferry's core and MQTT listener alone (anonymous, logs at warn), on a free port.
 * Prints `listening <port>` once bound; exits on SIGTERM.
 *
 * `FERRY_BENCH_PERSIST=1` turns persistence on as the gateway does by default (persistent
 * sessions and retained messages in a state file, `synchronous=FULL`), in a temporary directory
 * removed on exit; the bench's clients use clean sessions, so this measures what persistence
 * costs them (nothing should be written).
 *
 * @module
 */

import { Core, Logger } from "../src/core/mod.ts";
import { MqttServer } from "../src/protocols/mqtt/mod.ts";
import { SessionPersistence } from "../src/protocols/mqtt/session_persistence.ts";
import { RetainedTable } from "../src/persistence/retained_table.ts";
import { StateDb } from "../src/persistence/state_db.ts";

const core = new Core({ anonymous: true, log: new Logger({ level: "warn" }) });
let state: StateDb | undefined;
let dir: string | undefined;
if (Deno.env.get("FERRY_BENCH_PERSIST") === "1") {
  dir = await Deno.makeTempDir({ prefix: "ferry-bench-state-" });
  state = StateDb.open(`${dir}/mqtt-state.db`);
  core.persistRetained(new RetainedTable(state));
}
const server = new MqttServer(core, {
  hostname: "127.0.0.1",
  port: 0,
  persistence: state && new SessionPersistence(state),
});
const { port } = await server.listen();
console.log(`listening ${port}`);
Deno.addSignalListener("SIGTERM", async () => {
  await server.close();
  await core.close();
  if (state) {
    console.error(`state file: ${state.stats.commits} commits, ${state.stats.writes} writes`);
    state.close();
    await Deno.remove(dir!, { recursive: true });
  }
  Deno.exit(0);
});
