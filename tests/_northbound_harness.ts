/**
 * Test harness of the northbound tests: a real mosquitto as the upstream broker, a core with an
 * FBP/1 server, the northbound bridge with its spool in a temporary directory, and a real MQTT.js
 * subscriber on the upstream.
 *
 * @module
 */

import type { CoreOptions } from "../src/core/core.ts";
import { type Northbound, type NorthboundOptions, startNorthbound } from "../src/northbound/mod.ts";
import { type BinaryHarness, startBinary } from "./_harness.ts";
import {
  type Mosquitto,
  type MosquittoOptions,
  startMosquitto,
  subscribe,
  type Subscriber,
} from "./_mosquitto.ts";

/** Everything a northbound test needs. */
export interface NorthboundHarness extends AsyncDisposable {
  broker: Mosquitto;
  gw: BinaryHarness;
  nb: Northbound;
  sub: Subscriber;
  dir: string;
}

/** Starts broker, subscriber (on `ferry/gw1/#`), gateway and bridge. */
export async function startNorthboundHarness(
  options: {
    northbound?: Partial<NorthboundOptions>;
    broker?: MosquittoOptions;
    core?: CoreOptions;
    subscribeTo?: string;
  } = {},
): Promise<NorthboundHarness> {
  // Persistence: the subscriber's session and queue survive a broker restart, so what the broker
  // acknowledged to the bridge reaches the subscriber even if the bridge reconnects first.
  const broker = await startMosquitto({ persistence: true, ...options.broker });
  const dir = await Deno.makeTempDir({ prefix: "ferry-nb-" });
  const sub = await subscribe(broker.url, options.subscribeTo ?? "ferry/gw1/devices/#");
  const gw = await startBinary({ core: options.core });
  const nb = await startNorthbound(gw.core, {
    url: broker.url,
    gatewayId: "gw1",
    backoffBaseMs: 20,
    backoffCapMs: 200,
    housekeepingMs: 200,
    ...options.northbound,
  }, dir);
  return {
    broker,
    gw,
    nb,
    sub,
    dir,
    async [Symbol.asyncDispose]() {
      await gw.server.close();
      await gw.core.close();
      await nb.close();
      await sub[Symbol.asyncDispose]();
      await broker[Symbol.asyncDispose]();
      await Deno.remove(dir, { recursive: true }).catch(() => {});
    },
  };
}
