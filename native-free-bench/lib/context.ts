/**
 * What every benchmark section gets, and how a section runs on its own.
 *
 * A section is a module exporting `run(ctx)`, which resolves with its JSON-ready results. `run.ts`
 * calls sections in fresh processes (full run) or in its own process (`--quick`); a section file
 * run directly (`npx tsx native-free-bench/micro/wire/codec.bench.ts [--quick]`) prints its
 * results. Progress always goes to stderr, never to stdout.
 */
import { writeFileSync } from 'node:fs';
import { pathToFileURL } from 'node:url';

export interface BenchContext {
  /** small counts, a few seconds in all: only checks that the suite runs */
  quick: boolean;
  /** worker-thread counts for the node macro-benchmarks (today only 0 is supported) */
  workers: number[];
  /** pin processes to CPUs with taskset when available */
  pin: boolean;
  /** a progress line on stderr */
  progress(msg: string): void;
}

export type SectionResult = Record<string, unknown>;
export type Section = (ctx: BenchContext) => Promise<SectionResult>;

const t0 = performance.now();

export function makeProgress(tag: string): (msg: string) => void {
  return (msg) => process.stderr.write(`[${((performance.now() - t0) / 1000).toFixed(1).padStart(6)} s] ${tag}: ${msg}\n`);
}

/** Is this module the process entry point? */
export function isMain(moduleUrl: string): boolean {
  const entry = process.argv[1];
  return entry !== undefined && pathToFileURL(entry).href === moduleUrl;
}

export interface CliArgs {
  quick: boolean;
  workers: number[];
  pin: boolean;
  result: string | null;
  out: string | null;
  label: string | null;
  only: string[] | null;
  isolate: boolean;
  render: string | null;
}

export function parseArgs(argv: readonly string[]): CliArgs {
  const a: CliArgs = { quick: false, workers: [0, 1, 2], pin: true, result: null, out: null, label: null, only: null, isolate: false, render: null };
  for (let i = 0; i < argv.length; i++) {
    const k = argv[i]!;
    const val = (): string => {
      const v = argv[++i];
      if (v === undefined) throw new Error(`${k} needs a value`);
      return v;
    };
    switch (k) {
      case '--quick':
        a.quick = true;
        break;
      case '--render':
        a.render = val();
        break;
      case '--isolate':
        a.isolate = true;
        break;
      case '--no-pin':
        a.pin = false;
        break;
      case '--workers':
        a.workers = val().split(',').map((s) => {
          const n = Number(s);
          if (!Number.isInteger(n) || n < 0) throw new Error(`--workers: expected a list of integers >= 0, got '${s}'`);
          return n;
        });
        break;
      case '--result':
        a.result = val();
        break;
      case '--out':
        a.out = val();
        break;
      case '--label':
        a.label = val();
        break;
      case '--only':
        a.only = val().split(',');
        break;
      case '-h':
      case '--help':
        process.stdout.write(`usage: npx tsx native-free-bench/run.ts [--quick [--isolate]] [--workers 0,1,2] [--no-pin] [--only a,b] [--out DIR] [--label NAME] | --render FILE.json\n`);
        process.exit(0);
        break;
      default:
        throw new Error(`unknown argument '${k}' (see --help)`);
    }
  }
  return a;
}

/** Runs a section as a process entry: `--quick`, `--workers`, `--no-pin`, `--result FILE`. */
export async function standalone(tag: string, run: Section): Promise<void> {
  const args = parseArgs(process.argv.slice(2));
  const ctx: BenchContext = { quick: args.quick, workers: args.workers, pin: args.pin, progress: makeProgress(tag) };
  try {
    const r = await run(ctx);
    if (args.result !== null) writeFileSync(args.result, JSON.stringify(r, null, 2) + '\n');
    else {
      const rows = r['rows'];
      if (Array.isArray(rows)) console.table(rows);
      console.log(JSON.stringify({ ...r, rows: undefined }, null, 2));
    }
    process.exit(0);
  } catch (err) {
    process.stderr.write(`${tag}: ${(err as Error).stack ?? String(err)}\n`);
    process.exit(1);
  }
}
