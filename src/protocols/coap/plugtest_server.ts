/**
 * `ferry coap-plugtest`: a CoAP server on Ferry's own stack serving only the ETSI plugtest resource
 * set (`plugtest.ts`), for third-party plugtest tools. `main.ts` builds it with
 * {@link createPlugtestServer} and runs it like any listener.
 *
 * @module
 */

import type { Core } from "../../core/core.ts";
import { CoapServer, type CoapServerOptions } from "./server.ts";

/**
 * Builds the plugtest server (a {@link CoapServer} in `mode: "plugtest"`).
 *
 * @example
 * ```ts
 * import { Core } from "../../core/core.ts";
 * import { silentLogger } from "../../core/logger.ts";
 * import { createPlugtestServer } from "./plugtest_server.ts";
 * const core = new Core({ anonymous: true, log: silentLogger });
 * const server = createPlugtestServer(core, { port: 0 });
 * const { port } = await server.listen();
 * if (port === 0) throw new Error("no port");
 * await server.close();
 * await core.close();
 * ```
 */
export function createPlugtestServer(
  core: Core,
  options: Partial<Omit<CoapServerOptions, "mode">> = {},
): CoapServer {
  return new CoapServer(core, { ...options, mode: "plugtest" });
}
