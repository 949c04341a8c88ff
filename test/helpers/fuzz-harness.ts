/**
 * Shared machinery of the listener fuzz tests (test/fuzz/*):
 * - run parameters from the environment: FUZZ_SEED (replay a run; decimal or 0x hex; default:
 *   a new seed per run, printed), FUZZ_CASES (cases per face), FUZZ_ONLY (run only that case
 *   index of the seeded run, printing its input), FUZZ_VERBOSE=1 (print every case);
 * - `Findings`: problems found, deduplicated by kind, each with the first seed/case and a
 *   replay command; the test fails when any was found;
 * - `ProcessGuard`: records uncaught exceptions and unhandled rejections (the node runs in this
 *   process: one of them is a crash of the node);
 * - `LogTap`: the node's log kept as a ring (for reports) with counters for watched patterns and
 *   a hook to attribute lines to cases by client port;
 * - `Tally`: outcome counters, printed as the one-line figure per face;
 * - `pool()`: runs cases with bounded concurrency, each under a hard deadline;
 * - `heapUsedAfterGc()`.
 */
import { setFlagsFromString } from 'node:v8';
import { runInNewContext } from 'node:vm';
import type { LogSink } from '../../src/log.ts';

export interface FuzzRun {
  face: string;
  file: string;
  seed: number;
  cases: number;
  /** replay just this case */
  only: number | null;
  verbose: boolean;
}

function envInt(name: string): number | null {
  const v = process.env[name];
  if (v === undefined || v.trim() === '') return null;
  const n = v.trim().toLowerCase().startsWith('0x') ? Number.parseInt(v.trim(), 16) : Number.parseInt(v.trim(), 10);
  if (!Number.isFinite(n) || n < 0) throw new Error(`${name}=${v}: expected a non-negative integer`);
  return n;
}

export function fuzzRun(face: string, file: string, defaultCases: number): FuzzRun {
  const seed = envInt('FUZZ_SEED') ?? ((Date.now() ^ (process.pid << 12) ^ Math.floor(Math.random() * 0x7fffffff)) >>> 0);
  const only = envInt('FUZZ_ONLY');
  const cases = only !== null ? only + 1 : (envInt('FUZZ_CASES') ?? defaultCases);
  const run = { face, file, seed, cases, only, verbose: process.env['FUZZ_VERBOSE'] === '1' || only !== null };
  console.log(`[fuzz] ${face}: seed ${seed}, ${only !== null ? `only case ${only}` : `${cases} cases`} (replay: ${replayAll(run)})`);
  return run;
}

export function replayAll(r: FuzzRun): string {
  return `FUZZ_SEED=${r.seed} FUZZ_CASES=${r.cases} node --import tsx --test ${r.file}`;
}

export function replayOne(r: FuzzRun, index: number): string {
  return `FUZZ_SEED=${r.seed} FUZZ_ONLY=${index} node --import tsx --test ${r.file}`;
}

/** Indexes of the cases to run. */
export function caseIndexes(r: FuzzRun): number[] {
  return r.only !== null ? [r.only] : Array.from({ length: r.cases }, (_, i) => i);
}

// ---------------------------------------------------------------------------------------------

export interface Finding {
  kind: string;
  count: number;
  /** first occurrence */
  index: number | null;
  detail: string;
}

export class Findings {
  readonly byKind = new Map<string, Finding>();
  constructor(private readonly run: FuzzRun) {}

  add(kind: string, index: number | null, detail: string): void {
    const f = this.byKind.get(kind);
    if (f) {
      f.count++;
      return;
    }
    this.byKind.set(kind, { kind, count: 1, index, detail });
    console.log(`[fuzz] ${this.run.face}: FINDING ${kind}${index !== null ? ` (case ${index})` : ''}: ${detail.slice(0, 3000)}`);
  }

  get size(): number {
    return this.byKind.size;
  }

  report(): string {
    return [...this.byKind.values()]
      .map((f) => `- ${f.kind} (x${f.count})${f.index !== null ? `, first at case ${f.index}, seed ${this.run.seed}\n  replay: ${replayOne(this.run, f.index)}` : ''}\n  ${f.detail.slice(0, 4000).replace(/\n/g, '\n  ')}`)
      .join('\n');
  }
}

// ---------------------------------------------------------------------------------------------

/** Records uncaught exceptions and unhandled rejections while installed. */
export class ProcessGuard {
  readonly errors: string[] = [];
  private readonly onErr = (e: unknown): void => {
    const s = e instanceof Error ? (e.stack ?? e.message) : String(e);
    this.errors.push(s);
    console.log(`[fuzz] UNCAUGHT in the node's process: ${s}`);
  };

  constructor() {
    process.on('uncaughtException', this.onErr);
    process.on('unhandledRejection', this.onErr);
  }

  dispose(): void {
    process.off('uncaughtException', this.onErr);
    process.off('unhandledRejection', this.onErr);
  }
}

// ---------------------------------------------------------------------------------------------

/** A log sink keeping the last lines, counting watched patterns, and calling a hook per line. */
export class LogTap implements LogSink {
  private ring: string[] = [];
  private at = 0;
  readonly counts = new Map<string, number>();
  total = 0;
  onLine: ((line: string) => void) | null = null;

  constructor(readonly watch: readonly string[], private readonly keep = 400) {
    for (const w of watch) this.counts.set(w, 0);
  }

  write(line: string): void {
    this.total++;
    const l = line.length > 2000 ? line.slice(0, 2000) + '…' : line;
    if (this.ring.length < this.keep) this.ring.push(l);
    else {
      this.ring[this.at] = l;
      this.at = (this.at + 1) % this.keep;
    }
    for (const w of this.watch) if (line.includes(w)) this.counts.set(w, this.counts.get(w)! + 1);
    this.onLine?.(line);
  }

  count(w: string): number {
    return this.counts.get(w) ?? 0;
  }

  tail(n = 40): string {
    const all = [...this.ring.slice(this.at), ...this.ring.slice(0, this.at)];
    return all.slice(-n).join('\n');
  }
}

// ---------------------------------------------------------------------------------------------

/** Outcome counters; `figure()` is the one-line summary per face. */
export class Tally {
  readonly counts = new Map<string, number>();
  cases = 0;
  readonly t0 = Date.now();

  add(outcome: string): void {
    this.cases++;
    this.counts.set(outcome, (this.counts.get(outcome) ?? 0) + 1);
  }

  sum(prefix: string): number {
    let n = 0;
    for (const [k, v] of this.counts) if (k.startsWith(prefix)) n += v;
    return n;
  }

  detail(prefix: string): string {
    const parts = [...this.counts].filter(([k]) => k.startsWith(prefix)).sort((a, b) => b[1] - a[1]).map(([k, v]) => `${k.slice(prefix.length)} ${v}`);
    return parts.length ? ` (${parts.join(', ')})` : '';
  }
}

// ---------------------------------------------------------------------------------------------

/** Runs fn over `indexes` with at most `concurrency` at once; each call is bounded by `hardMs`. */
export async function pool(
  indexes: readonly number[],
  concurrency: number,
  hardMs: number,
  fn: (index: number) => Promise<void>,
  onHang: (index: number) => void,
): Promise<void> {
  let next = 0;
  const worker = async (): Promise<void> => {
    while (next < indexes.length) {
      const i = indexes[next++]!;
      let timer: NodeJS.Timeout | undefined;
      const hang = new Promise<'hang'>((r) => {
        timer = setTimeout(() => r('hang'), hardMs);
      });
      const r = await Promise.race([fn(i).then(() => 'ok' as const), hang]);
      clearTimeout(timer);
      if (r === 'hang') onHang(i);
    }
  };
  await Promise.all(Array.from({ length: Math.min(concurrency, indexes.length) }, worker));
}

/** Resolves true once cond() holds (polled), false after timeoutMs. */
export async function eventually(cond: () => boolean, timeoutMs: number, intervalMs = 10): Promise<boolean> {
  const until = Date.now() + timeoutMs;
  for (;;) {
    if (cond()) return true;
    if (Date.now() >= until) return false;
    await new Promise((r) => setTimeout(r, intervalMs));
  }
}

let gcFn: (() => void) | null = null;

/** heapUsed after a full GC (GC exposed at run time through V8 flags). */
export function heapUsedAfterGc(): number {
  if (!gcFn) {
    setFlagsFromString('--expose-gc');
    gcFn = runInNewContext('gc') as () => void;
  }
  gcFn();
  gcFn();
  return process.memoryUsage().heapUsed;
}

export const MB = 1024 * 1024;
