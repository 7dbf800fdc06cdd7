/**
 * Ferry's HTTP device API (`/api/v1/`): telemetry uplink with batches, command downlink by
 * long-poll and Server-Sent Events, command acks, presence, RFC 9457 problems and an OpenAPI 3.1
 * document. Mount it on the HTTP listener; see `docs/http-api.md`.
 *
 * @example
 * ```ts
 * import { Core, silentLogger } from "../../core/mod.ts";
 * import { DeviceApi } from "./mod.ts";
 * const core = new Core({ log: silentLogger, anonymous: true });
 * await using api = new DeviceApi(core);
 * const url = new URL("http://gw/api/v1/openapi.json");
 * const res = await api.handle(new Request(url), url);
 * if (res?.status !== 200 || (await res.json()).openapi !== "3.1.0") throw new Error();
 * if (api.handle(new Request("http://gw/healthz"), new URL("http://gw/healthz")) !== undefined) {
 *   throw new Error("claimed a path outside /api/v1/");
 * }
 * await core.close();
 * ```
 *
 * @module
 */

export { API_PREFIX, DeviceApi } from "./device_api.ts";
export {
  defaultDeviceApiOptions,
  type DeviceApiOptions,
  type ResolvedDeviceApiOptions,
  resolveDeviceApiOptions,
} from "./options.ts";
export {
  problem,
  PROBLEM_BASE,
  type ProblemDetails,
  type ProblemInit,
  PROBLEMS,
  type ProblemSlug,
  problemType,
} from "./problem.ts";
export { openApiDocument } from "./openapi.ts";
export { type CommandView } from "./command_view.ts";
