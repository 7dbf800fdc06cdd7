/**
 * Start-up scenarios: the time from spawning the server process to the first CONNACK (a client
 * retries every 2 ms from the moment of the spawn), and the server's RSS when idle before any
 * client and with one client connected.
 *
 * @module
 */

import { MqttConn } from "../_mqtt_wire.ts";
import type { Scenario } from "../_scenario.ts";
import type { ServerKind } from "../_servers.ts";
import { rssOf, sleep } from "../_util.ts";

/** The start-up scenario for these servers (Ferry first). */
export function startupScenarios(servers: ServerKind[], quick: boolean): Scenario[] {
  const settleMs = quick ? 1000 : 2000;
  return [{
    id: "startup",
    section: "Start-up and memory",
    title:
      `Start → first CONNACK (spawn to CONNACK, client retrying every 2 ms), then a second start: RSS ${settleMs} ms after ready with no client, and ${settleMs} ms after one MQTT client connected`,
    servers,
    figures: [
      { key: "firstConnackMs", label: "start → first CONNACK", unit: "ms", better: "lower" },
      { key: "idleRss", label: "idle RSS before the first client", unit: "bytes", better: "lower" },
      {
        key: "rssOneClient",
        label: "RSS with one client connected",
        unit: "bytes",
        better: "lower",
      },
    ],
    params: { settleMs, retryMs: 2 },
    timeoutMs: 90_000,
    async run(ctx) {
      const first = await ctx.start(ctx.kind, { noWait: true });
      const port = first.ports.mqtt!;
      let firstConnackMs: number | undefined;
      while (firstConnackMs === undefined) {
        try {
          const c = await MqttConn.open(port, "bench-first", { timeoutMs: 5000 });
          firstConnackMs = performance.now() - first.spawnedAt;
          c.close();
        } catch (err) {
          if (first.exited()) throw new Error(`exited before a CONNACK:\n${first.logTail()}`);
          if (performance.now() - first.spawnedAt > 30_000) {
            throw new Error(`no CONNACK within 30 s: ${err}\n${first.logTail()}`);
          }
          await sleep(2);
        }
      }
      await first[Symbol.asyncDispose]();

      const s = await ctx.start(ctx.kind);
      await sleep(settleMs);
      const idleRss = rssOf(s.pid);
      const c = await MqttConn.open(s.ports.mqtt!, "bench-dev-00000");
      await sleep(settleMs);
      const rssOneClient = rssOf(s.pid);
      c.close();
      return {
        figures: { firstConnackMs: Math.round(firstConnackMs * 10) / 10, idleRss, rssOneClient },
      };
    },
  }];
}
