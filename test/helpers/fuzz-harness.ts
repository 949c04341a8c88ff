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
import { appendFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
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
  /** short stable key (FUZZ_KNOWN lists keys to tolerate) */
  key: string;
  title: string;
  count: number;
  /** first occurrence */
  index: number | null;
  detail: string;
}

/**
 * Problems found, one entry per key with its first occurrence. Keys listed in FUZZ_KNOWN
 * (comma-separated) are reported but do not fail the test: for known, tracked bugs only.
 */
export class Findings {
  readonly byKey = new Map<string, Finding>();
  /** every finding in full, for CI artifacts (FUZZ_REPORT_DIR, default the OS temp dir) */
  readonly file: string;
  readonly known = new Set((process.env['FUZZ_KNOWN'] ?? '').split(',').map((k) => k.trim()).filter(Boolean));

  constructor(private readonly run: FuzzRun) {
    this.file = join(process.env['FUZZ_REPORT_DIR'] ?? tmpdir(), `jc-fuzz-${run.face.replace(/\W+/g, '-')}-${run.seed}.txt`);
  }

  add(key: string, title: string, index: number | null, detail: string): void {
    const f = this.byKey.get(key);
    if (f) {
      f.count++;
      return;
    }
    this.byKey.set(key, { key, title, count: 1, index, detail });
    appendFileSync(this.file, `==== [${key}] ${title}${index !== null ? ` (case ${index}; replay: ${replayOne(this.run, index)})` : ''}\n${detail}\n\n`);
    console.log(`[fuzz] ${this.run.face}: FINDING [${key}]${this.known.has(key) ? ' (known)' : ''} ${title}${index !== null ? ` (case ${index})` : ''} (full detail in ${this.file}): ${detail.slice(0, 1500)}`);
  }

  has(key: string): boolean {
    return this.byKey.has(key);
  }

  /** Findings that fail the test (not in FUZZ_KNOWN). */
  get failing(): Finding[] {
    return [...this.byKey.values()].filter((f) => !this.known.has(f.key));
  }

  keys(): string {
    return [...this.byKey.values()].map((f) => `${f.key}×${f.count}`).join(', ') || 'none';
  }

  report(): string {
    return this.failing
      .map((f) => `- [${f.key}] ${f.title} (x${f.count})${f.index !== null ? `, first at case ${f.index}, seed ${this.run.seed}\n  replay: ${replayOne(this.run, f.index)}` : ''}\n  ${f.detail.slice(0, 4000).replace(/\n/g, '\n  ')}`)
      .join('\n') + `\n(full details: ${this.file}; to tolerate a known, tracked finding: FUZZ_KNOWN=<key>,…)`;
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
  /** the first few occurrences of each watched pattern, with the lines before them */
  readonly examples = new Map<string, string[]>();
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
    for (const w of this.watch) {
      if (!line.includes(w)) continue;
      this.counts.set(w, this.counts.get(w)! + 1);
      const ex = this.examples.get(w) ?? [];
      if (ex.length < 3) ex.push(this.tail(12));
      this.examples.set(w, ex);
    }
    this.onLine?.(line);
  }

  example(w: string): string {
    return (this.examples.get(w) ?? []).join('\n----\n');
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

  /**
   * The one-line figure: cases, answered, closed with an error (stream error / AUTH_FAIL…),
   * dropped silently, stalled, hangs, crashes, findings, heap.
   */
  figure(face: string, seed: number, o: { errorLabel: string; errorPrefix: string; crashes: number; findings: string; heap: [number, number]; extra?: string }): string {
    const secs = ((Date.now() - this.t0) / 1000).toFixed(1);
    return `[fuzz] ${face}: ${this.cases} cases in ${secs} s (seed ${seed}): answered ${this.sum('answered')}, ` +
      `${o.errorLabel} ${this.sum(o.errorPrefix)}${this.detail(o.errorPrefix)}, dropped silently ${this.sum('closed-silently') + this.sum('refused')}, ` +
      `stalled ${this.sum('stalled')}${this.detail('stalled')}, hangs ${this.sum('hang')}, crashes ${o.crashes}; ` +
      `findings: ${o.findings}; heap ${(o.heap[0] / MB).toFixed(1)} → ${(o.heap[1] / MB).toFixed(1)} MB${o.extra ? `; ${o.extra}` : ''}`;
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

// ---------------------------------------------------------------------------------------------

export interface TapConn {
  n: number;
  /** last bytes each way, as UTF-8 text */
  up: string;
  down: string;
  closed: boolean;
}

/**
 * A TCP relay between the node and a real jabberd2 router that keeps the last bytes of each
 * direction of each connection, so that a dropped link can be explained.
 */
export class TcpTap {
  readonly conns: TapConn[] = [];
  port = 0;
  private server: import('node:net').Server | null = null;
  private readonly sockets = new Set<import('node:net').Socket>();

  static async start(targetPort: number, keep = 4 << 20): Promise<TcpTap> {
    const net = await import('node:net');
    const t = new TcpTap();
    await new Promise<void>((resolve) => {
      const s = net.createServer((a) => {
        const conn: TapConn = { n: t.conns.length + 1, up: '', down: '', closed: false };
        t.conns.push(conn);
        if (t.conns.length > 20) t.conns.shift();
        const b = net.connect({ host: '127.0.0.1', port: targetPort });
        a.setNoDelay(true);
        b.setNoDelay(true);
        t.sockets.add(a);
        t.sockets.add(b);
        a.on('data', (d: Buffer) => {
          conn.up = (conn.up + d.toString('utf8')).slice(-16384);
          b.write(d);
        });
        b.on('data', (d: Buffer) => {
          conn.down = (conn.down + d.toString('utf8')).slice(-keep);
          a.write(d);
        });
        const done = (): void => {
          conn.closed = true;
          a.destroy();
          b.destroy();
          t.sockets.delete(a);
          t.sockets.delete(b);
        };
        a.on('close', done);
        b.on('close', done);
        a.on('error', () => {});
        b.on('error', () => {});
      });
      s.listen(0, '127.0.0.1', () => {
        const ad = s.address();
        t.port = typeof ad === 'object' && ad ? ad.port : 0;
        resolve();
      });
      t.server = s;
    });
    return t;
  }

  /** Tails of the connections that closed, oldest first. */
  closedTails(n = 2000): string {
    return this.conns.filter((c) => c.closed).map((c) => `#${c.n} node→router …${c.up.slice(-n)}\n#${c.n} router→node …${c.down.slice(-n)}`).join('\n----\n');
  }

  async stop(): Promise<void> {
    for (const s of this.sockets) s.destroy();
    const s = this.server;
    this.server = null;
    if (s) await new Promise<void>((r) => s.close(() => r()));
  }
}

/**
 * saxes (6.0.0) reads an entity reference up to the next `;` without checking its characters:
 * after a bare `&` it silently swallows everything that follows (no error, no event) until a
 * `;` comes. Looks inside a StreamFramer (test-only introspection) for that state: the text
 * swallowed so far, or null.
 */
export function entitySwallow(framer: unknown): string | null {
  const p = (framer as { parser?: { state?: number; entity?: string } } | null)?.parser;
  if (!p || p.state !== 14 || typeof p.entity !== 'string') return null;
  const e = p.entity;
  return e.length > 32 || /[^\w.:#-]/.test(e) ? e : null;
}
