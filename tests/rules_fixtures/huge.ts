/**
 * Floods on request: payload "big" returns one 8 MiB output, "many" a million small outputs,
 * "wide" 60 outputs of 200 KiB each; anything else is echoed.
 */
import { type RuleMessage, text } from "ferry/rules";

export default (msg: RuleMessage) => {
  const t = text(msg);
  if (t === "big") return { topic: "rules/huge/big", payload: new Uint8Array(8 << 20) };
  if (t === "many") {
    return Array.from(
      { length: 1_000_000 },
      (_, i) => ({ topic: "rules/huge/many", payload: `${i}` }),
    );
  }
  if (t === "wide") {
    return Array.from({ length: 60 }, () => ({
      topic: "rules/huge/wide",
      payload: new Uint8Array(200 << 10),
    }));
  }
  return { topic: "rules/huge/ok", payload: t };
};
