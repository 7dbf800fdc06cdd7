/**
 * The ceiling for HTTP ingest on Deno: a plain `Deno.serve` endpoint that reads the request body
 * and answers 202 with a small JSON body, with no auth, routing, core or pipeline. The benchmark
 * runs it with the same runtime flags as Ferry (`deno task start`'s) beside Ferry's device API.
 *
 * Usage: `deno run <flags> bench/peers/http_ceiling.ts [--port N]`; prints `listening PORT`.
 *
 * @module
 */

const pi = Deno.args.indexOf("--port");
const body = JSON.stringify({ accepted: 1 });
const server = Deno.serve({
  hostname: "127.0.0.1",
  port: pi >= 0 ? Number(Deno.args[pi + 1]) : 0,
  onListen: ({ port }) => console.log(`listening ${port}`),
}, async (req) => {
  await req.arrayBuffer();
  return new Response(body, { status: 202, headers: { "content-type": "application/json" } });
});
Deno.addSignalListener("SIGTERM", () => {
  server.shutdown().then(() => Deno.exit(0));
});
