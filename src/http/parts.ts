/**
 * What the gateway mounts on its HTTP listener, in one module the gateway imports when it starts
 * that listener (after the device listeners: docs/operations.md, "Start-up"), so loading the
 * console, the management and device APIs and Deno's HTTP server never delays a device's first
 * CONNACK.
 *
 * @module
 */

export { HttpServer } from "./server.ts";
export { ConsoleAuth, mayReadSys } from "./console/auth.ts";
export { AdminApi } from "./admin/admin_api.ts";
export { Dashboard } from "./dashboard/dashboard.ts";
export { DeviceApi } from "./device_api/mod.ts";
export { mqttWsRoute } from "../protocols/mqtt/ws_route.ts";
