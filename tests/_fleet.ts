/**
 * A fleet of well-behaved FBP/1 devices publishing ACK-requested telemetry in a loop, for attack
 * tests: every message must be acknowledged while the gateway is under attack.
 *
 * @module
 */

import { FbpClient } from "../src/protocols/binary/client.ts";
import { AckStatus } from "../src/protocols/binary/frame.ts";

/** A running fleet. */
export interface Fleet {
  /** Stops publishing, closes every device, and returns counts. */
  stop(): Promise<{ sent: number; acked: number; failures: string[] }>;
}

/** Connects `n` devices and starts each publishing every `intervalMs`. */
export async function startFleet(port: number, n = 100, intervalMs = 50): Promise<Fleet> {
  const devices = await Promise.all(
    Array.from(
      { length: n },
      (_, i) => FbpClient.connect({ port, id: `good-${i}`, keepAlive: 60, timeoutMs: 10_000 }),
    ),
  );
  let running = true;
  let sent = 0;
  let acked = 0;
  const failures: string[] = [];
  const loops = devices.map(async (d, i) => {
    while (running) {
      sent++;
      try {
        const s = await d.telemetry(new TextEncoder().encode(`m${sent}`), {
          ack: true,
          timeoutMs: 10_000,
        });
        if (s === AckStatus.OK) acked++;
        else failures.push(`good-${i}: ACK status ${s}`);
      } catch (err) {
        failures.push(`good-${i}: ${(err as Error).message}`);
        if (d.ended) return;
      }
      await new Promise((r) => setTimeout(r, intervalMs));
    }
  });
  return {
    async stop() {
      running = false;
      await Promise.all(loops);
      await Promise.all(devices.map((d) => d.close()));
      return { sent, acked, failures };
    },
  };
}

/** Open file descriptors of a process. */
export function fdCount(pid: number): number {
  return [...Deno.readDirSync(`/proc/${pid}/fd`)].length;
}
