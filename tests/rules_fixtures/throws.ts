/** Throws on every message whose payload is "bad"; echoes the others. */
import { text } from "ferry/rules";

export default (msg: { topic: string; payload: Uint8Array }) => {
  const t = text(msg.payload);
  if (t === "bad") throw new RangeError(`bad reading on ${msg.topic}`);
  return { topic: "rules/throws/ok", payload: t };
};
