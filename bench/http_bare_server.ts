/**
 * The ceiling for HTTP ingest on Deno: a plain `Deno.serve` endpoint that reads the request body
 * and answers 202 with a small JSON body, with no auth, routing, core or pipeline. The HTTP
 * benchmark runs it beside Ferry's device API to report ratios. Prints `listening <port>`.
 *
 * @module
 */

const body = JSON.stringify({ accepted: 1 });
const server = Deno.serve({
  hostname: "127.0.0.1",
  port: 0,
  onListen: ({ port }) => console.log(`listening ${port}`),
}, async (req) => {
  await req.arrayBuffer();
  return new Response(body, { status: 202, headers: { "content-type": "application/json" } });
});
Deno.addSignalListener("SIGTERM", () => {
  server.shutdown().then(() => Deno.exit(0));
});
