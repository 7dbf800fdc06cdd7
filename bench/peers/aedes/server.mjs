// aedes as its users run it: `node server.mjs PORT` on Node (not Deno), the README's createBroker
// with its defaults (in-memory persistence and emitter), a plain node:net server on 127.0.0.1.
// Prints `listening PORT` once bound; SIGTERM closes the broker and exits.
import { createServer } from "node:net";
import { Aedes } from "aedes";

const port = Number(process.argv[2] ?? 0);
const broker = await Aedes.createBroker();
const server = createServer(broker.handle);
server.listen(port, "127.0.0.1", () => {
  console.log(`listening ${server.address().port}`);
});
process.on("SIGTERM", () => {
  server.close();
  broker.close(() => process.exit(0));
  setTimeout(() => process.exit(0), 2000).unref();
});
