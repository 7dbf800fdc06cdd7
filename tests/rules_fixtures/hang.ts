/** Loops forever on a payload "hang"; echoes the others. */
import { type RuleMessage, text } from "ferry/rules";

export default (msg: RuleMessage) => {
  const t = text(msg);
  if (t === "hang") { for (;;) { /* never returns */ } }
  return { topic: "rules/hang/ok", payload: t };
};
