/**
 * The config-schema fragment of the operations features: the `sys` section (`$SYS` broker
 * statistics). `src/config/config.ts` composes it into the file's schema.
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
 * ```
 */
export const defaultSysOptions: Readonly<SysOptions> = Object.freeze(defaults(sysOptionsSchema));
