/**
 * Keeps 4 MiB of heap per message in a module-level array (a leak); echoes how many it holds,
 * so a restart (the array starts empty again) shows in the outputs.
 */
import { type RuleMessage, text } from "ferry/rules";

const kept: number[][] = [];

export default (msg: RuleMessage) => {
  kept.push(new Array(512 * 1024).fill(kept.length + 0.5)); // doubles: 8 bytes each
  return { topic: "rules/leak/held", payload: `${text(msg)} ${kept.length}` };
};
