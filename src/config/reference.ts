/**
 * The config reference, generated from the one schema: the README's Markdown table of every key
 * and `deploy/ferry.schema.json` (the JSON Schema that `ferry config schema` prints).
 *
 * `deno run -R -W src/config/reference.ts` rewrites both files in place; `--check` only reports
 * whether they are up to date (exit 1 when not). The test suite checks the same.
 *
 * @module
 */

import { configSchema } from "./config.ts";
import { describe, toJsonSchema } from "./schema.ts";

/**
 * The JSON Schema document (draft 2020-12) of the config file, as `ferry config schema` prints it.
 *
 * @example
 * ```ts
 * import { configJsonSchema } from "./reference.ts";
 * const s = configJsonSchema() as { additionalProperties: boolean; title: string };
 * if (s.additionalProperties !== false || s.title !== "Ferry configuration") throw new Error();
 * ```
 */
export function configJsonSchema(): Record<string, unknown> {
  return {
    $schema: "https://json-schema.org/draft/2020-12/schema",
    title: "Ferry configuration",
    ...toJsonSchema(configSchema),
  };
}

/**
 * The README's config table, aligned as `deno fmt` aligns Markdown tables.
 *
 * @example
 * ```ts
 * import { referenceTable } from "./reference.ts";
 * const lines = referenceTable().split("\n");
 * if (!lines[0].startsWith("| key ") || !lines.some((l) => l.startsWith("| `host` "))) {
 *   throw new Error();
 * }
 * ```
 */
export function referenceTable(): string {
  const rows = [
    ["key", "type", "default", "meaning"],
    ...describe(configSchema).map((line) =>
      line.slice(2, -2).split(/ (?<!\\)\| /).map((c) => c.trim())
    ),
  ];
  const widths = rows[0].map((_, i) => Math.max(3, ...rows.map((r) => [...r[i]].length)));
  const pad = (cells: string[]) =>
    `| ${cells.map((c, i) => c + " ".repeat(widths[i] - [...c].length)).join(" | ")} |`;
  return [pad(rows[0]), pad(widths.map((w) => "-".repeat(w))), ...rows.slice(1).map(pad)]
    .join("\n");
}

/** `text` (the README) with its config table replaced by {@link referenceTable}. */
export function withReferenceTable(text: string): string {
  const lines = text.split("\n");
  const start = lines.findIndex((l) => /^\| key +\| type +\| default +\| meaning +\|$/.test(l));
  if (start < 0) throw new Error("README has no config table (a line '| key | type | …')");
  let end = start;
  while (end < lines.length && lines[end].startsWith("|")) end++;
  return [...lines.slice(0, start), referenceTable(), ...lines.slice(end)].join("\n");
}

if (import.meta.main) {
  const root = new URL("../../", import.meta.url);
  const readme = new URL("README.md", root);
  const schemaFile = new URL("deploy/ferry.schema.json", root);
  const wanted: Array<[URL, string]> = [
    [readme, withReferenceTable(await Deno.readTextFile(readme))],
    [schemaFile, JSON.stringify(configJsonSchema(), null, 2) + "\n"],
  ];
  let stale = 0;
  for (const [file, text] of wanted) {
    if (await Deno.readTextFile(file) === text) continue;
    stale++;
    if (Deno.args.includes("--check")) console.error(`${file.pathname} is out of date`);
    else await Deno.writeTextFile(file, text);
  }
  if (Deno.args.includes("--check") && stale) Deno.exit(1);
}
