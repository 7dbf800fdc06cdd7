/**
 * The recent command acknowledgements of each device, for the management API's
 * `GET /api/v1/admin/devices/{id}/acks`: every message on `devices/{id}/acks/{name}` (an FBP/1 ACK
 * frame, an HTTP or CoAP ack, an MQTT device's own publish there), whatever protocol brought it.
 * Bounded: the last `perDevice` acks of at most `maxDevices` devices (the device whose acks are
 * oldest is forgotten first), each payload kept up to `maxPayload` bytes.
 *
 * @module
 */

import type { Message } from "../../core/mod.ts";

/** One acknowledgement as kept. */
export interface AckRecord {
  /** The command name (the topic's last level). */
  name: string;
  /** `devices/{id}/acks/{name}`. */
  topic: string;
  /** Accepted at (ms since the epoch). */
  ts: number;
  /** The protocol that brought it. */
  protocol: string;
  /** Its size in bytes. */
  size: number;
  /** Its payload (a copy, at most `maxPayload` bytes). */
  payload: Uint8Array;
}

/**
 * Acks by device.
 *
 * @example
 * ```ts
 * import { CommandAcks } from "./command_acks.ts";
 * const acks = new CommandAcks({ perDevice: 2 });
 * for (const n of ["a", "b", "c"]) {
 *   acks.add({ topic: `devices/d1/acks/${n}`, payload: new Uint8Array([1]), qos: 1, retain: false, ts: 1, protocol: "mqtt" });
 * }
 * if (acks.of("d1").map((a) => a.name).join() !== "b,c") throw new Error();
 * ```
 */
export class CommandAcks {
  #byDevice = new Map<string, AckRecord[]>();
  readonly perDevice: number;
  readonly maxDevices: number;
  readonly maxPayload: number;

  /** Creates an empty record. */
  constructor(o: { perDevice?: number; maxDevices?: number; maxPayload?: number } = {}) {
    this.perDevice = o.perDevice ?? 16;
    this.maxDevices = o.maxDevices ?? 20_000;
    this.maxPayload = o.maxPayload ?? 4096;
  }

  /** Keeps `msg` when its topic is a device's ack topic. */
  add(msg: Message): void {
    const parts = msg.topic.split("/");
    if (parts.length !== 4 || parts[0] !== "devices" || parts[2] !== "acks") return;
    const id = parts[1];
    let list = this.#byDevice.get(id);
    if (list === undefined) {
      if (this.#byDevice.size >= this.maxDevices) {
        this.#byDevice.delete(this.#byDevice.keys().next().value!);
      }
      list = [];
    } else this.#byDevice.delete(id); // re-inserted below: the most recent device goes last
    this.#byDevice.set(id, list);
    list.push({
      name: parts[3],
      topic: msg.topic,
      ts: msg.ts,
      protocol: msg.protocol,
      size: msg.payload.length,
      // A copy: the message's bytes may be a view of a connection's read buffer.
      payload: msg.payload.slice(0, this.maxPayload),
    });
    if (list.length > this.perDevice) list.shift();
  }

  /** The device's kept acks, oldest first. */
  of(deviceId: string): readonly AckRecord[] {
    return this.#byDevice.get(deviceId) ?? [];
  }
}
