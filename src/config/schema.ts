/**
 * A small declarative schema for the configuration: each field has a type, bounds, a default and
 * a line of documentation. One schema drives validation (unknown keys and bad values are errors
 * that name the key), defaults, the README's config reference and the JSON Schema for editors.
 *
 * @module
 */

/** A field of the config schema. */
export type Field =
  | { type: "string"; default?: string; doc: string; pattern?: RegExp; optional?: boolean }
  | {
    type: "integer" | "number";
    default?: number;
    doc: string;
    min?: number;
    max?: number;
    optional?: boolean;
  }
  | { type: "boolean"; default?: boolean; doc: string; optional?: boolean }
  | {
    type: "enum";
    values: readonly (string | number | boolean)[];
    default?: string | number | boolean;
    doc: string;
    optional?: boolean;
  }
  | { type: "array"; items: Field; default?: unknown[]; doc: string; optional?: boolean }
  | { type: "object"; fields: Record<string, Field>; doc: string; optional?: boolean };

/** A config value that failed validation. */
export class ConfigError extends Error {
  override name = "ConfigError";
  /** Dotted path of the offending key, e.g. `binary.port`. */
  readonly key: string;
  /** Creates the error. */
  constructor(key: string, message: string) {
    super(`Invalid config key "${key}": ${message}`);
    this.key = key;
  }
}

function typeName(v: unknown): string {
  if (v === null) return "null";
  if (Array.isArray(v)) return "array";
  return typeof v;
}

/**
 * Validates `value` against `field`, filling defaults; throws {@link ConfigError} naming the key.
 *
 * @example
 * ```ts
 * import { validate, ConfigError } from "./schema.ts";
 * const schema = { type: "object", doc: "", fields: {
 *   port: { type: "integer", min: 0, max: 65535, default: 1883, doc: "port" },
 * } } as const;
 * const v = validate(schema, {}, "") as { port: number };
 * if (v.port !== 1883) throw new Error();
 * try { validate(schema, { prot: 1 }, ""); throw new Error("accepted"); }
 * catch (e) { if (!(e instanceof ConfigError) || e.key !== "prot") throw e; }
 * ```
 */
export function validate(field: Field, value: unknown, key: string): unknown {
  switch (field.type) {
    case "string":
      if (typeof value !== "string") {
        throw new ConfigError(key, `expected a string, got ${typeName(value)}`);
      }
      if (field.pattern && !field.pattern.test(value)) {
        throw new ConfigError(key, `"${value}" does not match ${field.pattern}`);
      }
      return value;
    case "integer":
    case "number": {
      if (typeof value !== "number" || !Number.isFinite(value)) {
        throw new ConfigError(key, `expected a ${field.type}, got ${typeName(value)}`);
      }
      if (field.type === "integer" && !Number.isInteger(value)) {
        throw new ConfigError(key, `expected an integer, got ${value}`);
      }
      if (field.min !== undefined && value < field.min) {
        throw new ConfigError(key, `${value} is below the minimum ${field.min}`);
      }
      if (field.max !== undefined && value > field.max) {
        throw new ConfigError(key, `${value} is above the maximum ${field.max}`);
      }
      return value;
    }
    case "boolean":
      if (typeof value !== "boolean") {
        throw new ConfigError(key, `expected true or false, got ${typeName(value)}`);
      }
      return value;
    case "enum":
      if (!field.values.includes(value as string)) {
        throw new ConfigError(
          key,
          `expected one of ${field.values.map((v) => JSON.stringify(v)).join(", ")}, got ${
            JSON.stringify(value)
          }`,
        );
      }
      return value;
    case "array":
      if (!Array.isArray(value)) {
        throw new ConfigError(key, `expected an array, got ${typeName(value)}`);
      }
      return value.map((v, i) => validate(field.items, v, `${key}[${i}]`));
    case "object": {
      if (typeof value !== "object" || value === null || Array.isArray(value)) {
        throw new ConfigError(key || "(root)", `expected an object, got ${typeName(value)}`);
      }
      const obj = value as Record<string, unknown>;
      const out: Record<string, unknown> = {};
      for (const k of Object.keys(obj)) {
        if (!(k in field.fields)) {
          const known = Object.keys(field.fields).join(", ");
          throw new ConfigError(join(key, k), `unknown key (known keys here: ${known})`);
        }
      }
      for (const [k, f] of Object.entries(field.fields)) {
        const path = join(key, k);
        if (obj[k] === undefined) {
          const d = defaultOf(f);
          if (d !== undefined) out[k] = d;
          else if (!f.optional) throw new ConfigError(path, "is required");
          continue;
        }
        out[k] = validate(f, obj[k], path);
      }
      return out;
    }
  }
}

function join(a: string, b: string): string {
  return a ? `${a}.${b}` : b;
}

/** The default value of a field (objects: the object of their defaults). */
export function defaultOf(field: Field): unknown {
  if (field.type === "object") {
    if (field.optional) return undefined;
    const out: Record<string, unknown> = {};
    for (const [k, f] of Object.entries(field.fields)) {
      const d = defaultOf(f);
      if (d !== undefined) out[k] = d;
    }
    return out;
  }
  return field.default === undefined ? undefined : structuredClone(field.default);
}

/** Converts the schema to a JSON Schema (draft 2020-12) for editor completion. */
export function toJsonSchema(field: Field): Record<string, unknown> {
  const base: Record<string, unknown> = { description: field.doc };
  switch (field.type) {
    case "string":
      return {
        ...base,
        type: "string",
        ...(field.pattern ? { pattern: field.pattern.source } : {}),
        ...dflt(field),
      };
    case "integer":
    case "number":
      return {
        ...base,
        type: field.type,
        ...(field.min !== undefined ? { minimum: field.min } : {}),
        ...(field.max !== undefined ? { maximum: field.max } : {}),
        ...dflt(field),
      };
    case "boolean":
      return { ...base, type: "boolean", ...dflt(field) };
    case "enum":
      return { ...base, enum: [...field.values], ...dflt(field) };
    case "array":
      return { ...base, type: "array", items: toJsonSchema(field.items), ...dflt(field) };
    case "object":
      return {
        ...base,
        type: "object",
        additionalProperties: false,
        properties: Object.fromEntries(
          Object.entries(field.fields).map(([k, f]) => [k, toJsonSchema(f)]),
        ),
        required: Object.entries(field.fields)
          .filter(([, f]) => !f.optional && defaultOf(f) === undefined).map(([k]) => k),
      };
  }
}

function dflt(field: { default?: unknown }): Record<string, unknown> {
  return field.default === undefined ? {} : { default: field.default };
}

/** Lines of a Markdown table documenting every key (for the README). */
export function describe(field: Field, key = ""): string[] {
  if (field.type === "object") {
    return Object.entries(field.fields).flatMap(([k, f]) => describe(f, join(key, k)));
  }
  const d = field.type !== "array" && "default" in field && field.default !== undefined
    ? `\`${JSON.stringify(field.default)}\``
    : field.type === "array" && field.default !== undefined
    ? `\`${JSON.stringify(field.default)}\``
    : "—";
  const type = field.type === "enum"
    ? field.values.map((v) => JSON.stringify(v)).join(" \\| ")
    : field.type;
  return [`| \`${key}\` | ${type} | ${d} | ${field.doc} |`];
}
