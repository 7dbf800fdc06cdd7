/**
 * Tries to leave the sandbox as the payload says: `{"read": path}` (Deno.readTextFile),
 * `{"readFile": path}` (Deno.readFile), `{"write": path}`, `{"fetch": url}`, `{"connect": port}`
 * (a raw TCP socket), `{"env": name}`, `{"run": command}`; echoes what it got when it gets
 * anything.
 */
import { json, type RuleMessage } from "ferry/rules";

interface Ask {
  read?: string;
  readFile?: string;
  write?: string;
  fetch?: string;
  connect?: number;
  env?: string;
  run?: string;
}

export default async (msg: RuleMessage) => {
  const ask = json.parse(msg) as Ask;
  let got: string | undefined;
  if (ask.read) got = await Deno.readTextFile(ask.read);
  else if (ask.readFile) got = new TextDecoder().decode(await Deno.readFile(ask.readFile));
  else if (ask.write) got = String(await Deno.writeTextFile(ask.write, "pwned"));
  else if (ask.fetch) got = await (await fetch(ask.fetch)).text();
  else if (ask.connect) got = String((await Deno.connect({ port: ask.connect })).remoteAddr);
  else if (ask.env) got = Deno.env.get(ask.env);
  else if (ask.run) got = String((await new Deno.Command(ask.run).output()).code);
  return { topic: "rules/escape/got", payload: json.stringify({ got: got ?? null }) };
};
