/**
 * `deno task bench:report FILE`: renders the README's benchmark tables (markdown, to stdout) from
 * one result JSON of `deno task bench`: dated, one table per section, each cell the median of the
 * repetitions with their min–max, the ratios Ferry ÷ peer computed rep by rep, the load average
 * when each scenario started, and every failed run with its error.
 *
 * `deno task bench:report FILE --readme` writes those tables into README.md between the
 * `bench:begin` and `bench:end` markers instead, from a full run only (not `--quick`, not
 * `--only`, 3 repetitions), and keeps the result file in `bench/measured/` (git-tracked, dated)
 * when it is elsewhere (`bench/results/` is git-ignored). `--readme-path` and `--measured-dir`
 * name other places.
 *
 * @module
 */

import type { BenchResult, Figure, ScenarioResult } from "./_scenario.ts";
import { isFerry } from "./_scenario.ts";
import type { RatioSpread, Spread } from "./_stats.ts";

const ROOT = new URL("../", import.meta.url).pathname;

/**
 * A figure's value for a table cell.
 *
 * @example
 * ```ts
 * import { formatValue } from "./report.ts";
 * if (formatValue(232_400, "msg/s") !== "232k") throw new Error();
 * if (formatValue(3650, "req/s") !== "3.65k") throw new Error();
 * if (formatValue(6640, "bytes") !== "6.48 KiB") throw new Error();
 * if (formatValue(16.14, "ms") !== "16.1 ms") throw new Error();
 * ```
 */
export function formatValue(v: number, unit: Figure["unit"]): string {
  const sig = (x: number, d = 3) => {
    if (x === 0) return "0";
    const s = Number(x.toPrecision(d));
    return s >= 1000 ? Math.round(s).toLocaleString("en") : String(s);
  };
  switch (unit) {
    case "msg/s":
    case "req/s":
      if (Math.abs(v) >= 1000) return `${sig(v / 1000)}k`;
      return String(Math.round(v));
    case "ms":
      return `${sig(v)} ms`;
    case "bytes":
      if (Math.abs(v) >= 1024 * 1024) return `${sig(v / 1024 / 1024)} MiB`;
      if (Math.abs(v) >= 1024) return `${sig(v / 1024)} KiB`;
      return `${Math.round(v)} B`;
    case "%":
      return `${Math.round(v)}%`;
    case "count":
      return Math.round(v).toLocaleString("en");
  }
}

/** `min–max`, the unit written once when both ends share it (`10–12 ms`). */
function range(min: number, max: number, unit: Figure["unit"]): string {
  const a = formatValue(min, unit);
  const b = formatValue(max, unit);
  const suffix = /[ %][A-Za-z/]*$|%$/.exec(b)?.[0];
  return suffix && a.endsWith(suffix) ? `${a.slice(0, -suffix.length)}–${b}` : `${a}–${b}`;
}

function cell(s: Spread | undefined, unit: Figure["unit"], runs: number, ok: number): string {
  if (!s) return ok === 0 && runs > 0 ? "failed" : "";
  let out = formatValue(s.median, unit);
  if (s.n > 1 && s.min !== s.max) out += ` (${range(s.min, s.max, unit)})`;
  if (s.n < runs) out += ` [${s.n} of ${runs} runs]`;
  return out;
}

/**
 * A ratio for a table cell: two decimals below 10, two significant digits above.
 *
 * @example
 * ```ts
 * import { formatRatio } from "./report.ts";
 * if (formatRatio(0.4567) !== "0.46×" || formatRatio(17.04) !== "17×") throw new Error();
 * ```
 */
export function formatRatio(x: number): string {
  return `${Math.abs(x) < 10 ? x.toFixed(2) : Number(x.toPrecision(2))}×`;
}

function ratioCell(r: RatioSpread | undefined): string {
  if (!r) return "";
  const f = formatRatio;
  return r.n > 1 && r.min !== r.max
    ? `${f(r.median)} (${f(r.min).slice(0, -1)}–${f(r.max)})`
    : f(r.median);
}

function oneLine(text: string): string {
  const t = text.split("\n").map((l) => l.trim()).filter(Boolean).join(" / ");
  return t.length > 240 ? `${t.slice(0, 237)}…` : t;
}

/** Server columns and ratio columns of a section, in order. */
function columns(scenarios: ScenarioResult[]): { servers: string[]; ratios: string[] } {
  const servers: string[] = [];
  for (const s of scenarios) for (const n of s.servers) if (!servers.includes(n)) servers.push(n);
  const ferries = servers.filter(isFerry);
  const peers = servers.filter((n) => !isFerry(n));
  const ratios: string[] = [];
  for (const a of ferries) for (const b of peers) ratios.push(`${a}/${b}`);
  if (ferries.includes("ferry")) {
    for (const b of ferries) if (b !== "ferry") ratios.push(`ferry/${b}`);
  }
  return { servers, ratios };
}

function table(header: string[], rows: string[][]): string {
  const widths = header.map((h, i) => Math.max(h.length, ...rows.map((r) => r[i].length), 3));
  const line = (cells: string[]) => `| ${cells.map((c, i) => c.padEnd(widths[i])).join(" | ")} |`;
  return [
    line(header),
    `| ${widths.map((w) => "-".repeat(w)).join(" | ")} |`,
    ...rows.map(line),
  ].join("\n");
}

/** The markdown of one result file (`file` is named in the text when given). */
export function renderReport(r: BenchResult, file?: string): string {
  const out: string[] = [];
  const day = r.date.slice(0, 10);
  const m = r.machine as Record<string, unknown>;
  const took = r.wallSeconds < 120 ? `${r.wallSeconds} s` : `${Math.round(r.wallSeconds / 60)} min`;
  const reps = r.reps > 1
    ? `${r.reps} interleaved repetitions per scenario (each server in turn, ${r.reps} times over)`
    : "1 repetition per scenario";
  out.push(
    `Measured on ${day} by \`deno task bench\`${file ? ` (results: \`${file}\`)` : ""}: ${reps}, ${
      m.cores ?? "?"
    } cores, ${m.os ?? ""}, Deno ${m.deno ?? "?"}, in ${took}.` +
      " Each cell is the median of the repetitions with their min–max; a ratio is Ferry ÷ peer," +
      " taken in each repetition, then median (min–max). For latency and memory a ratio above 1" +
      " means Ferry is higher (worse). Every Ferry figure is the gateway process as" +
      " `deno task start` runs it, default config (state file, HTTP, dashboard on), device topics.",
  );
  if (r.quick || r.note) out.push("", `**${r.note ?? "--quick run"}**`);
  out.push("", "Servers:", "");
  for (const [name, info] of Object.entries(r.servers)) {
    out.push(
      `- **${name}**: ${info.label}${info.version ? `, ${info.version}` : ""}. \`${
        info.command.join(" ")
      }\`${info.cwd ? ` (in \`${info.cwd}\`)` : ""}${info.notes ? `: ${info.notes}` : ""}.`,
    );
  }
  for (const [name, why] of Object.entries(r.skipped ?? {})) {
    out.push(`- **${name}**: left out: ${why}.`);
  }
  const sections: string[] = [];
  for (const s of r.scenarios) if (!sections.includes(s.section)) sections.push(s.section);
  for (const section of sections) {
    const scs = r.scenarios.filter((s) => s.section === section);
    const { servers, ratios } = columns(scs);
    const rows: string[][] = [];
    for (const s of scs) {
      for (const f of s.figures) {
        const row = [f.unit === "msg/s" || f.unit === "req/s" ? `${f.label} (${f.unit})` : f.label];
        for (const name of servers) {
          const runs = s.runs.filter((x) => x.server === name);
          row.push(
            cell(s.summary[name]?.[f.key], f.unit, runs.length, runs.filter((x) => x.ok).length),
          );
        }
        for (const pair of ratios) row.push(ratioCell(s.ratios[pair]?.[f.key]));
        rows.push(row);
      }
    }
    const header = ["figure", ...servers, ...ratios.map((p) => p.replace("/", " / "))];
    out.push("", `### ${section}`, "", table(header, rows), "");
    out.push(
      "Load average (1 min) when each scenario started: " +
        scs.map((s) => `${s.id} ${s.loadavg[0].toFixed(2)}`).join(", ") + ".",
    );
    const failed = scs.flatMap((s) =>
      s.runs.filter((x) => !x.ok).map((x) =>
        `${s.id}, ${x.server}, repetition ${x.rep}: ${oneLine(x.error ?? "")}`
      )
    );
    if (failed.length) out.push("", "Failed runs:", "", ...failed.map((f) => `- ${f}`));
  }
  return out.join("\n") + "\n";
}

/** The line that opens the README's generated benchmark tables. */
export const README_BEGIN =
  "<!-- bench:begin: generated by `deno task bench:report FILE --readme` from one full run; do not edit by hand -->";
/** The line that closes them. */
export const README_END = "<!-- bench:end -->";

/**
 * Why a result may not stand in the README (`undefined` when it may): the README's figures come
 * from one full run — not `--quick`, 3 repetitions or more, every scenario.
 *
 * @example
 * ```ts
 * import { whyNotForReadme } from "./report.ts";
 * import type { BenchResult } from "./_scenario.ts";
 * const full = { quick: false, reps: 3, argv: [] } as unknown as BenchResult;
 * if (whyNotForReadme(full) !== undefined) throw new Error();
 * if (!whyNotForReadme({ ...full, quick: true })) throw new Error();
 * if (!whyNotForReadme({ ...full, argv: ["--only", "startup"] })) throw new Error();
 * ```
 */
export function whyNotForReadme(r: BenchResult): string | undefined {
  if (r.quick) return "it is a --quick run (a smoke run)";
  if (r.reps < 3) return `it has ${r.reps} repetition${r.reps === 1 ? "" : "s"}, a full run 3`;
  if (r.argv.includes("--only")) return "it ran only some scenarios (--only)";
  return undefined;
}

/**
 * `readme` with the text between {@link README_BEGIN} and {@link README_END} replaced by `body`;
 * throws a `SyntaxError` when the markers are missing or out of order.
 *
 * @example
 * ```ts
 * import { README_BEGIN, README_END, replaceReadmeTables } from "./report.ts";
 * const r = replaceReadmeTables(`a\n${README_BEGIN}\nold\n${README_END}\nb\n`, "new\n");
 * if (r !== `a\n${README_BEGIN}\n\nnew\n\n${README_END}\nb\n`) throw new Error(r);
 * ```
 */
export function replaceReadmeTables(readme: string, body: string): string {
  const i = readme.indexOf(README_BEGIN);
  const j = readme.indexOf(README_END);
  if (i < 0 || j < i) {
    throw new SyntaxError(`the README has no "${README_BEGIN}" … "${README_END}" section`);
  }
  return `${readme.slice(0, i + README_BEGIN.length)}\n\n${body.trim()}\n\n${readme.slice(j)}`;
}

/** Parsed command line of `bench:report`. */
interface ReportArgs {
  file: string;
  readme?: string;
  measuredDir: string;
}

function parseReportArgs(args: string[]): ReportArgs {
  const out: Partial<ReportArgs> = { measuredDir: "bench/measured" };
  for (let i = 0; i < args.length; i++) {
    const a = args[i];
    const value = () => {
      const v = args[++i];
      if (v === undefined || v.startsWith("--")) throw new TypeError(`${a} needs a value`);
      return v;
    };
    if (a === "--readme") out.readme ??= "README.md";
    else if (a === "--readme-path") out.readme = value();
    else if (a === "--measured-dir") out.measuredDir = value();
    else if (a.startsWith("--")) throw new TypeError(`unknown flag ${a}`);
    else if (out.file) throw new TypeError(`one result file, not ${out.file} and ${a}`);
    else out.file = a;
  }
  if (!out.file) throw new TypeError("no result file");
  return out as ReportArgs;
}

/**
 * `--readme`: keeps the result beside the code (`bench/measured/bench-{date}.json`, unless it is
 * there already) and writes its tables into the README between the markers. Returns the file the
 * README names.
 */
async function writeReadme(r: BenchResult, a: ReportArgs): Promise<string> {
  const why = whyNotForReadme(r);
  if (why) throw new TypeError(`${a.file} cannot go into the README: ${why}`);
  const dir = a.measuredDir.replace(/\/+$/, "");
  const inDir = (await Deno.realPath(a.file)).startsWith(
    `${await Deno.realPath(dir).catch(() => dir)}/`,
  );
  let kept = a.file;
  if (!inDir) {
    await Deno.mkdir(dir, { recursive: true });
    kept = `${dir}/bench-${r.date.slice(0, 16).replaceAll(":", "-")}.json`;
    await Deno.copyFile(a.file, kept);
  }
  const readme = await Deno.readTextFile(a.readme!);
  await Deno.writeTextFile(a.readme!, replaceReadmeTables(readme, renderReport(r, kept)));
  // Formatted as `deno fmt` wants it (prose wrapped at the project's line width), so CI's
  // `deno fmt --check` passes on the regenerated README.
  const fmt = await new Deno.Command(Deno.execPath(), {
    args: ["fmt", "--config", `${ROOT}deno.json`, a.readme!],
    stdin: "null",
    stdout: "null",
    stderr: "piped",
  }).output();
  if (!fmt.success) {
    throw new Error(`deno fmt ${a.readme}: ${new TextDecoder().decode(fmt.stderr)}`);
  }
  return kept;
}

if (import.meta.main) {
  let a: ReportArgs;
  try {
    a = parseReportArgs(Deno.args);
  } catch (err) {
    console.error(`bench:report: ${(err as Error).message}`);
    console.error(
      "usage: deno task bench:report FILE.json [--readme] [--readme-path README.md] [--measured-dir bench/measured]",
    );
    Deno.exit(2);
  }
  const r = JSON.parse(await Deno.readTextFile(a.file)) as BenchResult;
  if (r.format !== "ferry-bench/2") {
    console.error(`bench:report: ${a.file} is not a result of this benchmark (format ${r.format})`);
    Deno.exit(2);
  }
  if (a.readme) {
    try {
      const kept = await writeReadme(r, a);
      console.error(`bench:report: ${a.readme} tables regenerated from ${kept}`);
    } catch (err) {
      console.error(`bench:report: ${(err as Error).message}`);
      Deno.exit(2);
    }
  } else {
    console.log(renderReport(r, a.file));
  }
}
