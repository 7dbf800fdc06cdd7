/**
 * For counting: "drop" is dropped (null), "bad" throws, "loop" never returns (its budget stops
 * it); anything else comes out on rules/tally/{device} unchanged.
 */
import { text } from "ferry/rules";

export default (msg: { topic: string; payload: Uint8Array; deviceId?: string }) => {
  const t = text(msg.payload);
  if (t === "drop") return null;
  if (t === "bad") throw new RangeError(`bad reading on ${msg.topic}`);
  if (t === "loop") { for (;;) { /* until the watchdog stops the worker */ } }
  return { topic: `rules/tally/${msg.deviceId}`, payload: t };
};
