/** The average of each device's readings over 10 s windows, flushed by the gateway's clock. */
import { json, type RuleContext, type RuleMessage, WindowAggregator } from "ferry/rules";

const windows = new WindowAggregator({ periodMs: 10_000 });

export default function (msg: RuleMessage) {
  windows.add(msg.deviceId ?? msg.topic, (json.parse(msg) as { v: number }).v, msg.ts);
  return null;
}

export const tickMs = 1000;

export function tick(ctx: RuleContext) {
  return windows.flush(ctx.clock.now()).map((w) => ({
    topic: `rules/average/${w.key}`,
    payload: json.stringify({ avg: w.avg, min: w.min, max: w.max, count: w.count, end: w.end }),
  }));
}
