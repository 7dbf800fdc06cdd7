/**
 * Loads a rule module for its sandbox. A worker with no permissions cannot read files, so the
 * gateway reads the rule and the local files it imports, and hands the worker one self-contained
 * `data:` URL: each file becomes a `data:` module whose import specifiers are rewritten to the
 * `data:` URLs of its dependencies (leaves first). `ferry/rules` (and a relative path to Ferry's
 * own `src/rules/sdk.ts`, `helpers.ts` or `types.ts`) is rewritten to the SDK's own URL, which the
 * worker host has already imported. Nothing else can be imported: a local file outside `root`,
 * `npm:`, `jsr:`, `http(s):` or an absolute path is refused with a {@link RuleLoadError}, so a rule
 * cannot read the gateway's files through its imports either.
 *
 * Imports are found by a line-oriented scan, not a parser: static `import`/`export … from "…"`
 * statements must start a line (as `deno fmt` writes them); a dynamic `import()` of a relative
 * path is refused.
 *
 * @module
 */

import { dirname, resolve, sep } from "../core/path.ts";

/** A rule module could not be loaded (file, import or syntax problem found at load). */
export class RuleLoadError extends Error {
  override name = "RuleLoadError";
  /** Creates the error. */
  constructor(message: string, options?: ErrorOptions) {
    super(message, options);
  }
}

/** A loaded rule module. */
export interface LoadedRuleModule {
  /** `data:` URL of the entry module; equal URLs mean identical code (it embeds every file). */
  url: string;
  /** Absolute paths of the files read (entry first), to watch for changes. */
  files: string[];
  /** `data:` URL → file path of every module, to make error messages readable. */
  names: Array<[string, string]>;
}

/** Options of {@link loadRuleModule}. */
export interface LoadRuleModuleOptions {
  /** Local imports must stay inside this directory. @default the entry file's directory */
  root?: string;
}

/** The SDK specifier rule modules import. */
export const SDK_SPECIFIER = "ferry/rules";

const SDK_FILES = ["sdk.ts", "helpers.ts", "types.ts"];
const SDK_URLS = new Map(SDK_FILES.map((f) => [f, new URL(`./${f}`, import.meta.url).href]));
// `import.meta.dirname`, not node:url's fileURLToPath: node:url costs ~5 ms of start-up to load.
const SDK_DIR = import.meta.url.startsWith("file:") ? import.meta.dirname : undefined;

const MEDIA: Record<string, string> = {
  ".ts": "application/typescript",
  ".mts": "application/typescript",
  ".js": "application/javascript",
  ".mjs": "application/javascript",
  ".json": "application/json",
};

// `import … from "x"`, `export … from "x"` (possibly over several lines), and `import "x"`.
const FROM_RE = /^([ \t]*(?:import|export)\b[^;'"`]*?\bfrom[ \t]*)(["'])([^"'\n]+)\2/gm;
const BARE_RE = /^([ \t]*import[ \t]*)(["'])([^"'\n]+)\2/gm;
const DYNAMIC_RE = /\bimport[ \t]*\([ \t]*["'`](\.{1,2}\/|\/|file:)/;

function base64(bytes: Uint8Array): string {
  let s = "";
  for (let i = 0; i < bytes.length; i += 0x8000) {
    s += String.fromCharCode(...bytes.subarray(i, i + 0x8000));
  }
  return btoa(s);
}

function extOf(path: string): string {
  const m = /\.[A-Za-z0-9]+$/.exec(path);
  return m ? m[0].toLowerCase() : "";
}

/**
 * Reads the rule module at `path` and the local files it imports; returns the `data:` URL to
 * import in the sandbox. Throws {@link RuleLoadError} naming the file and the import at fault.
 *
 * @example
 * ```ts
 * import { loadRuleModule } from "./module_loader.ts";
 * const dir = await Deno.makeTempDir();
 * await Deno.writeTextFile(`${dir}/lib.ts`, "export const k = 2;\n");
 * await Deno.writeTextFile(
 *   `${dir}/rule.ts`,
 *   'import { json } from "ferry/rules";\nimport { k } from "./lib.ts";\nexport default () => null;\n',
 * );
 * const m = await loadRuleModule(`${dir}/rule.ts`);
 * await Deno.remove(dir, { recursive: true });
 * if (!m.url.startsWith("data:application/typescript;base64,") || m.files.length !== 2) throw new Error();
 * ```
 */
export async function loadRuleModule(
  path: string,
  options: LoadRuleModuleOptions = {},
): Promise<LoadedRuleModule> {
  const entry = resolve(path);
  const root = resolve(options.root ?? dirname(entry));
  const done = new Map<string, string>(); // path → data: URL
  const names: Array<[string, string]> = [];
  const files: string[] = [];

  const load = async (file: string, chain: string[]): Promise<string> => {
    const ready = done.get(file);
    if (ready) return ready;
    if (chain.includes(file)) {
      throw new RuleLoadError(
        `Cannot load rule module ${entry}: import cycle ${[...chain, file].join(" → ")}`,
      );
    }
    const media = MEDIA[extOf(file)];
    if (!media) {
      throw new RuleLoadError(
        `Cannot load rule module ${entry}: ${file} is not a .ts, .mts, .js, .mjs or .json file`,
      );
    }
    let source: string;
    try {
      source = await Deno.readTextFile(file);
    } catch (err) {
      throw new RuleLoadError(
        `Cannot load rule module ${entry}: cannot read ${file}: ${(err as Error).message}`,
        { cause: err },
      );
    }
    files.push(file);
    if (media !== "application/json") {
      if (DYNAMIC_RE.test(source)) {
        throw new RuleLoadError(
          `Cannot load rule module ${entry}: ${file} imports a file dynamically (import()); use a static import`,
        );
      }
      const specs = new Map<string, string>();
      for (const re of [FROM_RE, BARE_RE]) {
        for (const m of source.matchAll(re)) specs.set(m[3], "");
      }
      for (const spec of specs.keys()) {
        specs.set(spec, await resolveImport(spec, file, [...chain, file]));
      }
      const rewrite = (_: string, head: string, q: string, spec: string) =>
        `${head}${q}${specs.get(spec)}${q}`;
      source = source.replace(FROM_RE, rewrite).replace(BARE_RE, rewrite);
    }
    const url = `data:${media};base64,${base64(new TextEncoder().encode(source))}`;
    done.set(file, url);
    names.push([url, file]);
    return url;
  };

  const resolveImport = (spec: string, from: string, chain: string[]): Promise<string> | string => {
    if (spec === SDK_SPECIFIER) return SDK_URLS.get("sdk.ts")!;
    if (!spec.startsWith("./") && !spec.startsWith("../")) {
      throw new RuleLoadError(
        `Cannot load rule module ${entry}: ${from} imports "${spec}"; a rule may import "${SDK_SPECIFIER}" and relative files inside ${root}`,
      );
    }
    const target = resolve(dirname(from), spec);
    if (SDK_DIR && dirname(target) === SDK_DIR && SDK_URLS.has(target.slice(SDK_DIR.length + 1))) {
      return SDK_URLS.get(target.slice(SDK_DIR.length + 1))!;
    }
    if (target !== root && !target.startsWith(root + sep)) {
      throw new RuleLoadError(
        `Cannot load rule module ${entry}: ${from} imports "${spec}", which is outside ${root}`,
      );
    }
    return load(target, chain);
  };

  const url = await load(entry, []);
  return { url, files, names };
}
