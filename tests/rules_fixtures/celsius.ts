/** Unit conversion: `{"temp_f": 212}` on devices/{id}/telemetry/… → `{"temp_c": 100}`. */
import { json, type RuleContext, type RuleMessage, scale, topicRewrite } from "ferry/rules";

const out = topicRewrite("devices/+id/telemetry/#rest", "rules/celsius/{id}/{rest}");

export default function (msg: RuleMessage, _ctx: RuleContext) {
  const { temp_f } = json.parse(msg) as { temp_f: number };
  const temp_c = scale(temp_f, { factor: 5 / 9, offset: -32 * 5 / 9, decimals: 1 });
  return { topic: out(msg.topic)!, payload: json.stringify({ temp_c }) };
}
