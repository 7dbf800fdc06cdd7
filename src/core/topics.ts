/**
 * The gateway's topic namespace, shared by every protocol:
 *
 * | purpose  | topic                                   | direction        |
 * |----------|-----------------------------------------|------------------|
 * | uplink   | `devices/{id}/telemetry[/{channel}]`    | device → gateway |
 * | downlink | `devices/{id}/commands/{name}`          | gateway → device |
 * | acks     | `devices/{id}/acks/{name}`              | device → gateway |
 * | presence | `devices/{id}/status` (retained)        | gateway          |
 *
 * @module
 */

/** Device ids: 1..64 of `[A-Za-z0-9._:-]`. */
export const DEVICE_ID_RE: RegExp = /^[A-Za-z0-9._:-]{1,64}$/;
/** Telemetry channels: 0..64 of `[a-z0-9_-]` (empty means the default channel). */
export const CHANNEL_RE: RegExp = /^[a-z0-9_-]{0,64}$/;
/** Command names: 1..64 of `[A-Za-z0-9._-]`. */
export const COMMAND_NAME_RE: RegExp = /^[A-Za-z0-9._-]{1,64}$/;

/** True when `id` is a valid device id. */
export function isDeviceId(id: string): boolean {
  return DEVICE_ID_RE.test(id);
}

/**
 * Uplink topic for a device and optional channel.
 *
 * @example
 * ```ts
 * import { telemetryTopic } from "./topics.ts";
 * if (telemetryTopic("s1", "temp") !== "devices/s1/telemetry/temp") throw new Error();
 * if (telemetryTopic("s1") !== "devices/s1/telemetry") throw new Error();
 * ```
 */
export function telemetryTopic(deviceId: string, channel?: string): string {
  return channel ? `devices/${deviceId}/telemetry/${channel}` : `devices/${deviceId}/telemetry`;
}

/** Downlink topic of command `name` for a device. */
export function commandTopic(deviceId: string, name: string): string {
  return `devices/${deviceId}/commands/${name}`;
}

/** Filter that matches every command for a device. */
export function commandFilter(deviceId: string): string {
  return `devices/${deviceId}/commands/+`;
}

/** Topic a device's delivery acknowledgement of command `name` is published on. */
export function ackTopic(deviceId: string, name: string): string {
  return `devices/${deviceId}/acks/${name}`;
}

/** Presence topic of a device (retained `online` / `offline`). */
export function statusTopic(deviceId: string): string {
  return `devices/${deviceId}/status`;
}

/** A topic of the namespace, taken apart. */
export type ParsedTopic =
  | { kind: "telemetry"; deviceId: string; channel?: string }
  | { kind: "command"; deviceId: string; name: string }
  | { kind: "ack"; deviceId: string; name: string }
  | { kind: "status"; deviceId: string }
  | { kind: "other" };

/**
 * Classifies a topic of the namespace.
 *
 * @example
 * ```ts
 * import { parseTopic } from "./topics.ts";
 * const t = parseTopic("devices/s1/commands/reboot");
 * if (t.kind !== "command" || t.name !== "reboot" || t.deviceId !== "s1") throw new Error();
 * ```
 */
export function parseTopic(topic: string): ParsedTopic {
  const parts = topic.split("/");
  if (parts[0] !== "devices" || parts.length < 3 || !DEVICE_ID_RE.test(parts[1])) {
    return { kind: "other" };
  }
  const deviceId = parts[1];
  switch (parts[2]) {
    case "telemetry":
      if (parts.length === 3) return { kind: "telemetry", deviceId };
      if (parts.length === 4) return { kind: "telemetry", deviceId, channel: parts[3] };
      break;
    case "commands":
      if (parts.length === 4 && parts[3]) return { kind: "command", deviceId, name: parts[3] };
      break;
    case "acks":
      if (parts.length === 4 && parts[3]) return { kind: "ack", deviceId, name: parts[3] };
      break;
    case "status":
      if (parts.length === 3) return { kind: "status", deviceId };
      break;
  }
  return { kind: "other" };
}
