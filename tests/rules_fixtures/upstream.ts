/** Rewrites a device's telemetry onto the plant's upstream namespace, straight to the northbound. */
import { json, routeNorthbound, type RuleMessage, topicRewrite } from "ferry/rules";

const up = topicRewrite("devices/+id/telemetry/#rest", "plant/line-1/{id}/{rest}");

export default (msg: RuleMessage) => {
  const reading = json.parse(msg) as { temp: number };
  return routeNorthbound(msg, up, json.stringify({ celsius: reading.temp, from: msg.protocol }));
};
