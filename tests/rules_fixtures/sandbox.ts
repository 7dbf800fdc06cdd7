/** Tries what a rule must not be able to do, by payload: read, fetch, env, run. */
import { type RuleMessage, text } from "ferry/rules";

export default async (msg: RuleMessage) => {
  const what = text(msg);
  if (what === "read") await Deno.readTextFile("/etc/hostname");
  if (what === "fetch") await fetch("http://127.0.0.1:8080/");
  if (what === "env") Deno.env.get("HOME");
  if (what === "run") await new Deno.Command("true").output();
  return { topic: "rules/sandbox/allowed", payload: what };
};
