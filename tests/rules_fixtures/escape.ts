/**
 * Tries to leave the sandbox as the payload says: `{"read": path}`, `{"fetch": url}`,
 * `{"env": name}`, `{"run": command}`; echoes what it got when it gets anything.
 */
import { json, type RuleMessage } from "ferry/rules";

export default async (msg: RuleMessage) => {
  const ask = json.parse(msg) as { read?: string; fetch?: string; env?: string; run?: string };
  let got: string | undefined;
  if (ask.read) got = await Deno.readTextFile(ask.read);
  else if (ask.fetch) got = await (await fetch(ask.fetch)).text();
  else if (ask.env) got = Deno.env.get(ask.env);
  else if (ask.run) got = String((await new Deno.Command(ask.run).output()).code);
  return { topic: "rules/escape/got", payload: json.stringify({ got: got ?? null }) };
};
