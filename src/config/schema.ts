/**
 * A small typed schema builder for the configuration: each field has a type, bounds, a default and
 * a line of documentation. One schema drives validation (unknown keys and bad values are errors
 * that name the key), defaults, the README's config reference, the JSON Schema for editors and,
 * through {@link Infer}, the TypeScript type of the validated value. Each component writes its
 * fragment in its own `options.ts` (`str`, `int`, `num`, `bool`, `oneOf`, `list`, `obj`,
 * `optional`) and derives its options type and defaults from it; `config.ts` composes them.
 *
 * @module
 */

/** A scalar an enum field may take. */
export type Scalar = string | number | boolean;

interface FieldBase {
  /** One line of documentation (README table, JSON Schema `description`). */
  readonly doc: string;
  /** May be absent from the validated config (no default is filled in). */
  readonly optional?: boolean;
}

/** A string. */
export interface StringField extends FieldBase {
  readonly type: "string";
  readonly default?: string;
  readonly pattern?: RegExp;
}

/** An integer or any finite number, within bounds. */
export interface NumberField extends FieldBase {
  readonly type: "integer" | "number";
  readonly default?: number;
  readonly min?: number;
  readonly max?: number;
}

/** `true` or `false`. */
export interface BooleanField extends FieldBase {
  readonly type: "boolean";
  readonly default?: boolean;
}

/** One of a fixed list of scalars. */
export interface EnumField<V extends Scalar = Scalar> extends FieldBase {
  readonly type: "enum";
  readonly values: readonly V[];
  readonly default?: V;
}

/** An array of `items`. */
export interface ArrayField<I extends Field = Field> extends FieldBase {
  readonly type: "array";
  readonly items: I;
  readonly default?: readonly unknown[];
}

/** An object with exactly these `fields` (unknown keys are errors). */
export interface ObjectField<F extends Fields = Fields> extends FieldBase {
  readonly type: "object";
  readonly fields: F;
}

/** The fields of an object. */
export type Fields = { readonly [key: string]: Field };

/** A field of the config schema. */
export type Field =
  | StringField
  | NumberField
  | BooleanField
  | EnumField
  | ArrayField
  | ObjectField;

/** `field` marked optional: absent when not given (and never defaulted). */
export type Optional<F extends Field> = Omit<F, "optional" | "default"> & {
  readonly optional: true;
};

/**
 * The TypeScript type of the value a field validates to: `Infer<typeof schema>` is the config
 * type, so the schema is the one place a key, its type, bounds, default and doc are written.
 *
 * @example
 * ```ts
 * import { type Infer, int, obj, oneOf, optional, str } from "./schema.ts";
 * const s = obj("example", {
 *   port: int("port", { default: 1883, min: 0, max: 65535 }),
 *   mode: oneOf(["a", "b"], "mode", { default: "a" }),
 *   name: optional(str("name")),
 * });
 * const v: Infer<typeof s> = { port: 1, mode: "b" }; // name may be absent
 * if (v.port !== 1) throw new Error();
 * ```
 */
export type Infer<F> = F extends { readonly type: "string" } ? string
  : F extends { readonly type: "integer" | "number" } ? number
  : F extends { readonly type: "boolean" } ? boolean
  : F extends { readonly type: "enum"; readonly values: readonly (infer V)[] } ? V
  : F extends { readonly type: "array"; readonly items: infer I } ? Infer<I>[]
  : F extends { readonly type: "object"; readonly fields: infer R } ? InferFields<R>
  : never;

type InferFields<R> = Flatten<
  & {
    -readonly [K in keyof R as R[K] extends { readonly optional: true } ? never : K]: Infer<R[K]>;
  }
  & {
    -readonly [K in keyof R as R[K] extends { readonly optional: true } ? K : never]?: Infer<R[K]>;
  }
>;

type Flatten<T> = { [K in keyof T]: T[K] } & unknown;

/**
 * A string field.
 *
 * @example
 * ```ts
 * import { str, validate } from "./schema.ts";
 * const f = str("host", { default: "127.0.0.1" });
 * if (validate(f, "::1", "host") !== "::1") throw new Error();
 * ```
 */
export function str(
  doc: string,
  options: { default?: string; pattern?: RegExp } = {},
): StringField {
  return { type: "string", doc, ...options };
}

/**
 * An integer field.
 *
 * @example
 * ```ts
 * import { ConfigError, int, validate } from "./schema.ts";
 * const f = int("port", { default: 1883, min: 0, max: 65535 });
 * try { validate(f, 1.5, "mqtt.port"); throw new Error("accepted"); }
 * catch (e) { if (!(e instanceof ConfigError) || !e.message.includes("an integer")) throw e; }
 * ```
 */
export function int(
  doc: string,
  options: { default?: number; min?: number; max?: number } = {},
): NumberField {
  return { type: "integer", doc, ...options };
}

/** A number field (any finite number). */
export function num(
  doc: string,
  options: { default?: number; min?: number; max?: number } = {},
): NumberField {
  return { type: "number", doc, ...options };
}

/** A boolean field. */
export function bool(doc: string, options: { default?: boolean } = {}): BooleanField {
  return { type: "boolean", doc, ...options };
}

/**
 * A field that takes one of `values`; its type is their union.
 *
 * @example
 * ```ts
 * import { type Infer, oneOf } from "./schema.ts";
 * const level = oneOf(["debug", "info"], "level", { default: "info" });
 * const v: Infer<typeof level> = "debug";
 * if (v !== "debug") throw new Error();
 * ```
 */
export function oneOf<const V extends Scalar>(
  values: readonly V[],
  doc: string,
  options: { default?: NoInfer<V> } = {},
): EnumField<V> {
  return { type: "enum", values, doc, ...options };
}

/** An array field whose elements are `items`. */
export function list<I extends Field>(
  items: I,
  doc: string,
  options: { default?: readonly Infer<I>[] } = {},
): ArrayField<I> {
  return { type: "array", items, doc, ...options };
}

/**
 * An object field; its absent keys take their defaults.
 *
 * @example
 * ```ts
 * import { defaults, int, obj } from "./schema.ts";
 * const s = obj("limits", { max: int("most", { default: 10 }) });
 * if (defaults(s).max !== 10) throw new Error();
 * ```
 */
export function obj<F extends Fields>(doc: string, fields: F): ObjectField<F> {
  return { type: "object", doc, fields };
}

/**
 * The same field, optional: absent from the validated value when not given (any default dropped).
 *
 * @example
 * ```ts
 * import { obj, optional, str, validate } from "./schema.ts";
 * const s = obj("", { caFile: optional(str("CA bundle")) });
 * if ("caFile" in validate(s, {}, "")) throw new Error("filled in");
 * ```
 */
export function optional<F extends Field>(field: F): Optional<F> {
  const { default: _, ...rest } = field as F & { default?: unknown };
  return { ...rest, optional: true } as Optional<F>;
}

/**
 * The value of an object field when nothing is given: every default, typed. For component
 * defaults (`defaultXxxOptions`), so a default is written once, in the schema.
 *
 * @example
 * ```ts
 * import { bool, defaults, list, num, obj, str } from "./schema.ts";
 * const s = obj("", {
 *   on: bool("on", { default: true }),
 *   rate: num("rate", { default: 0.5 }),
 *   tags: list(str("tag"), "tags", { default: ["a"] }),
 * });
 * const d = defaults(s);
 * if (!d.on || d.rate !== 0.5 || d.tags[0] !== "a") throw new Error();
 * ```
 */
export function defaults<F extends Fields>(field: ObjectField<F>): Infer<ObjectField<F>> {
  return defaultOf(field) as Infer<ObjectField<F>>;
}

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
 * import { ConfigError, int, obj, validate } from "./schema.ts";
 * const schema = obj("", { port: int("port", { min: 0, max: 65535, default: 1883 }) });
 * const v = validate(schema, {}, "");
 * if (v.port !== 1883) throw new Error();
 * try { validate(schema, { prot: 1 }, ""); throw new Error("accepted"); }
 * catch (e) { if (!(e instanceof ConfigError) || e.key !== "prot") throw e; }
 * ```
 */
export function validate<F extends Field>(field: F, value: unknown, key: string): Infer<F>;
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
        throw new ConfigError(
          key,
          `expected ${field.type === "integer" ? "an" : "a"} ${field.type}, got ${typeName(value)}`,
        );
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
