/**
 * How a pending command looks on the wire, in long-poll responses and SSE `data:` lines: JSON with
 * the payload as UTF-8 text when it is valid UTF-8, else base64 (`encoding` says which).
 *
 * @module
 */

import { payloadText, type PendingCommand } from "../../core/mod.ts";

/** JSON form of a command. */
export interface CommandView {
  /** Command id (`seq`): the long-poll cursor, SSE event id, and the optional `id` of an ack. */
  id: number;
  /** Command name. */
  name: string;
  /** Published at (ms since the epoch). */
  ts: number;
  /** Dropped unacknowledged after this (ms since the epoch). */
  expiresAt: number;
  /** MIME type given by the publisher, if any. */
  contentType?: string;
  /** How `payload` is encoded. */
  encoding: "utf8" | "base64";
  /** The payload. */
  payload: string;
}

/**
 * The JSON view of a command.
 *
 * @example
 * ```ts
 * import { createMessage } from "../../core/message.ts";
 * import { commandView } from "./command_view.ts";
 * const msg = createMessage({ topic: "devices/d/commands/x", payload: new Uint8Array([0xff]), ts: 5 });
 * const v = commandView({ seq: 3, deviceId: "d", name: "x", msg, expiresAt: 10, claimedBy: undefined });
 * if (v.encoding !== "base64" || v.payload !== "/w==" || v.id !== 3) throw new Error();
 * ```
 */
export function commandView(cmd: PendingCommand): CommandView {
  const { encoding, payload } = payloadText(cmd.msg.payload);
  const ct = cmd.msg.properties?.contentType;
  return {
    id: cmd.seq,
    name: cmd.name,
    ts: cmd.msg.ts,
    expiresAt: cmd.expiresAt,
    ...(ct ? { contentType: ct } : {}),
    encoding,
    payload,
  };
}
