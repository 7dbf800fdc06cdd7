/**
 * The OpenAPI document served at `/api/v1/openapi.json`, checked structurally: version, every
 * implemented route, method and status, path parameters declared, every `$ref` resolvable, and
 * every problem type of the catalogue listed.
 *
 * @module
 */

import { PROBLEMS, type ProblemSlug, problemType } from "../src/http/device_api/mod.ts";
import { assert, assertEquals } from "./_assert.ts";
import { curl, startHttpApi } from "./_http_api_harness.ts";

type Json = Record<string, unknown>;

/** What the API implements: path, method, every status it can answer. */
const IMPLEMENTED: Array<[string, string, string[]]> = [
  ["/api/v1/openapi.json", "get", ["200"]],
  ["/api/v1/devices/{id}/telemetry", "post", [
    "202",
    "400",
    "401",
    "403",
    "408",
    "413",
    "429",
    "503",
  ]],
  ["/api/v1/devices/{id}/telemetry/{channel}", "post", [
    "202",
    "400",
    "401",
    "403",
    "408",
    "413",
    "429",
    "503",
  ]],
  ["/api/v1/devices/{id}/commands", "get", ["200", "204", "400", "401", "403", "429", "503"]],
  ["/api/v1/devices/{id}/commands/{name}/ack", "post", [
    "202",
    "400",
    "401",
    "403",
    "408",
    "413",
    "429",
    "503",
  ]],
];

function resolve(doc: Json, ref: string): unknown {
  assert(ref.startsWith("#/"), `external $ref ${ref}`);
  let node: unknown = doc;
  for (const part of ref.slice(2).split("/")) {
    node = (node as Json | undefined)?.[part];
  }
  return node;
}

function walk(node: unknown, visit: (n: Json) => void): void {
  if (Array.isArray(node)) { for (const x of node) walk(x, visit); }
  else if (node && typeof node === "object") {
    visit(node as Json);
    for (const v of Object.values(node)) walk(v, visit);
  }
}

async function loadDoc(): Promise<Json> {
  await using h = await startHttpApi();
  const res = await h.fetch("/api/v1/openapi.json");
  assertEquals(res.status, 200);
  assertEquals(res.headers.get("content-type"), "application/json");
  return await res.json();
}

Deno.test("OpenAPI document is served as OpenAPI 3.1 with info and security schemes", async () => {
  const doc = await loadDoc();
  assertEquals(doc.openapi, "3.1.0");
  const info = doc.info as Json;
  assert(typeof info.title === "string" && typeof info.version === "string");
  const schemes = (doc.components as Json).securitySchemes as Json;
  assertEquals((schemes.bearerAuth as Json).scheme, "bearer");
  assertEquals((schemes.basicAuth as Json).scheme, "basic");
});

Deno.test("OpenAPI document lists every implemented route, method and status", async () => {
  const doc = await loadDoc();
  const paths = doc.paths as Record<string, Json>;
  for (const [path, method, statuses] of IMPLEMENTED) {
    const op = paths[path]?.[method] as Json | undefined;
    assert(op, `${method.toUpperCase()} ${path} missing`);
    const responses = op.responses as Json;
    for (const s of statuses) assert(responses[s], `${method} ${path}: status ${s} missing`);
    for (const s of Object.keys(responses)) {
      assert(statuses.includes(s), `${method} ${path}: documents ${s}, not implemented`);
    }
  }
  assertEquals(Object.keys(paths).length, IMPLEMENTED.length, "undocumented extra paths");
});

Deno.test("OpenAPI document declares every path parameter and unique operation ids", async () => {
  const doc = await loadDoc();
  const ids = new Set<string>();
  for (const [path, item] of Object.entries(doc.paths as Record<string, Json>)) {
    const names = [...path.matchAll(/\{(\w+)\}/g)].map((m) => m[1]);
    for (const op of Object.values(item) as Json[]) {
      const id = op.operationId as string;
      assert(id && !ids.has(id), `operationId ${id} missing or repeated`);
      ids.add(id);
      const declared = ((op.parameters ?? []) as Json[])
        .filter((p) => p.in === "path").map((p) => p.name);
      assertEquals(declared.sort(), [...names].sort(), `${path} path parameters`);
    }
  }
});

Deno.test("OpenAPI document references resolve and list every problem type", async () => {
  const doc = await loadDoc();
  const text = JSON.stringify(doc);
  walk(doc, (n) => {
    if (typeof n.$ref === "string") assert(resolve(doc, n.$ref), `unresolved ${n.$ref}`);
  });
  const problem = ((doc.components as Json).schemas as Json).Problem as Json;
  const types = ((problem.properties as Json).type as Json).enum as string[];
  for (const slug of Object.keys(PROBLEMS) as ProblemSlug[]) {
    assert(types.includes(problemType(slug)), `${slug} not in the Problem type enum`);
    // Each type is named in a response description, so readers find where it occurs.
    const described = text.split(problemType(slug)).length - 1 >= 2;
    assert(described, `${slug} is not described in any response`);
  }
});

Deno.test("OpenAPI document is reachable with curl without credentials", async () => {
  await using h = await startHttpApi();
  const r = await curl([`${h.base}/api/v1/openapi.json`]);
  assertEquals(r.status, 200);
  assertEquals(JSON.parse(r.text).openapi, "3.1.0");
});
