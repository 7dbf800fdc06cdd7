/**
 * Prints the config reference table (Markdown) and the JSON Schema, generated from the one schema:
 * `deno run src/config/reference.ts [--json-schema]`.
 *
 * @module
 */

import { configSchema } from "./config.ts";
import { describe, toJsonSchema } from "./schema.ts";

if (import.meta.main) {
  if (Deno.args.includes("--json-schema")) {
    console.log(JSON.stringify(
      {
        $schema: "https://json-schema.org/draft/2020-12/schema",
        title: "Ferry configuration",
        ...toJsonSchema(configSchema),
      },
      null,
      2,
    ));
  } else {
    console.log("| key | type | default | meaning |\n|---|---|---|---|");
    console.log(describe(configSchema).join("\n"));
  }
}
