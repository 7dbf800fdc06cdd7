/** Forwards a reading only when it moved by more than 0.5 since the last one forwarded. */
import { deadband, json, type RuleFunction } from "ferry/rules";

const rule: RuleFunction = (msg, ctx) => {
  const { v } = json.parse(msg) as { v: number };
  if (!deadband(ctx, msg.topic, v, 0.5)) return null;
  return { topic: `rules/deadband/${msg.deviceId}`, payload: String(v) };
};
export default rule;
