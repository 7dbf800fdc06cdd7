/**
 * The config-schema fragment of the operations features: the `sys` section (`$SYS` broker
 * statistics, and the charts' short history). `src/config/config.ts` composes it into the file's schema.
 *
 * @module
 */

import { defaults, type Infer, int, obj } from "../config/schema.ts";

/** The `sys` section. */
export const sysOptionsSchema = obj(
  "Broker statistics on $SYS/broker/… (as mosquitto's), readable by accounts whose ACL allows $SYS/#",
  {
    intervalSec: int("Seconds between updates of the $SYS topics; 0 publishes none", {
      default: 10,
      min: 0,
      max: 86_400,
    }),
    historyIntervalMs: int(
      "Milliseconds between samples of the dashboard charts' history (messages in/out per protocol, connections, spool depth; served by GET /api/v1/admin/history)",
      { default: 5000, min: 100, max: 3_600_000 },
    ),
    historySamples: int(
      "Samples the charts' history keeps (180 at 5000 ms: the last 15 minutes), in memory",
      { default: 180, min: 2, max: 10_000 },
    ),
  },
);

/** Options of the `$SYS` publisher. */
export type SysOptions = Infer<typeof sysOptionsSchema>;

/**
 * The defaults of the `sys` section.
 *
 * @example
 * ```ts
 * import { defaultSysOptions } from "./options.ts";
 * if (defaultSysOptions.intervalSec !== 10) throw new Error();
 * if (defaultSysOptions.historyIntervalMs * defaultSysOptions.historySamples !== 900_000) throw new Error();
 * ```
 */
export const defaultSysOptions: Readonly<SysOptions> = Object.freeze(defaults(sysOptionsSchema));
