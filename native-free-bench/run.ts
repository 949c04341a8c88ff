/**
 * The native-free benchmark suite: `npm run bench` (or `npx tsx native-free-bench/run.ts`).
 *
 *   --quick           small counts, a few seconds per section: only checks that the suite runs (CI)
 *   --workers 0,1,2   worker-thread counts for the node benchmarks, end to end included (default 0,1,2)
 *   --no-pin          do not pin processes to CPUs with taskset
 *   --only a,b        run only these sections (names below)
 *   --out DIR         where the JSON and SVG go (default native-free-bench/results; --quick: a temp dir)
 *   --label NAME      file name of the results (default: latest, or quick)
 *   --isolate         with --quick: still run every section in a process of its own
 *   --render FILE     run nothing: recompute the targets of a results JSON, rewrite it and its SVG,
 *                     print the report (after a change to lib/report.ts, or to read a run again)
 *
 * Every section runs in a fresh process (`node --expose-gc --import tsx <section>`) with
 * MSGPACKR_NATIVE_ACCELERATION_DISABLED=true, and checks for itself that msgpackr runs in pure
 * JS and that no native addon is loaded. With --quick, sections run in this process (saves a
 * process start per section), except the SharedTable bench, which is a script; the measured
 * nodes and relays are child processes either way. Progress goes to stderr; the report to stdout; results
 * to <out>/<label>.json and <out>/<label>.svg. Exit status 1 if any section failed.
 */
import './guard.ts';
import { spawn } from 'node:child_process';
import { mkdirSync, mkdtempSync, readFileSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { benchEnv, checkNativeFree, machineInfo } from './guard.ts';
import { makeProgress, parseArgs, type Section } from './lib/context.ts';
import { kRepoRoot } from './lib/children.ts';
import { allowedCpus, taskset } from './lib/procfs.ts';
import { computeTargets, renderSvg, textReport, type Results } from './lib/report.ts';
import { params } from './lib/scenario.ts';
import { routerToSm, smToRouter } from './lib/stanzas.ts';

interface SectionDef {
  name: string;
  file: string;
  /** the existing SharedTable bench: configured by environment, writes BENCH_JSON */
  envStyle?: boolean;
  heapMiB?: number;
  /** time limit of the section's process (full runs), seconds; default 300 */
  limitSec?: number;
}

const SECTIONS: SectionDef[] = [
  { name: 'framer', file: 'micro/xml/stream-framer.bench.ts' },
  { name: 'byteFramer', file: 'micro/xml/byte-framer.bench.ts' },
  { name: 'envelope', file: 'micro/xml/envelope.bench.ts' },
  { name: 'codec', file: 'micro/wire/codec.bench.ts' },
  { name: 'sharedTable', file: 'micro/routing/shared-table.bench.ts', envStyle: true },
  { name: 'clusterTable', file: 'micro/cluster/table.bench.ts' },
  { name: 'handoff', file: 'micro/workers/handoff.bench.ts' },
  { name: 'node', file: 'macro/relay-throughput.ts' },
  { name: 'byteRelay', file: 'macro/baseline-tcp-relay.ts' },
  { name: 'jabberd2Router', file: 'macro/baseline-jabberd2-router.ts' },
  { name: 'routeTable', file: 'macro/route-table.ts', heapMiB: 8192 },
  // 1 + 2 × (worker counts) setups, each waiting up to 20 s for a quiet machine
  { name: 'endToEnd', file: 'macro/end-to-end.ts', limitSec: 900 },
];

const args = parseArgs(process.argv.slice(2));
const progress = makeProgress('bench');
if (args.render !== null) {
  const r = JSON.parse(readFileSync(args.render, 'utf8')) as Results;
  r.targets = computeTargets(r);
  writeFileSync(args.render, JSON.stringify(r, null, 2) + '\n');
  const svg = args.render.replace(/\.json$/, '') + '.svg';
  writeFileSync(svg, renderSvg(r));
  process.stdout.write(textReport(r) + `\nresults: ${args.render}\nchart:   ${svg}\n`);
  process.exit(0);
}
const label = args.label ?? (args.quick ? 'quick' : 'latest');
const outDir = args.out ?? (args.quick ? join(tmpdir(), 'jabberd2-cluster-bench-quick') : join(kRepoRoot, 'native-free-bench/results'));
const work = mkdtempSync(join(tmpdir(), 'jc-bench-'));
const started = new Date();
const t0 = performance.now();

async function runInProcess(s: SectionDef): Promise<Record<string, unknown>> {
  try {
    const mod = (await import(join(kRepoRoot, 'native-free-bench', s.file))) as { run: Section };
    return await mod.run({ quick: args.quick, workers: args.workers, pin: args.pin, progress: makeProgress(s.name) });
  } catch (err) {
    return { error: `section ${s.name} failed: ${(err as Error).stack ?? String(err)}` };
  }
}

function runSection(s: SectionDef): Promise<Record<string, unknown>> {
  if (args.quick && !args.isolate && s.envStyle !== true) return runInProcess(s);
  const result = join(work, `${s.name}.json`);
  // a larger young generation for the generator: fewer scavenges while it sends and receives
  // hundreds of thousands of routes per second (its pauses would be counted as latency)
  const node = ['--expose-gc', '--max-semi-space-size=32', ...(s.heapMiB ? [`--max-old-space-size=${s.heapMiB}`] : []), '--import', 'tsx', join(kRepoRoot, 'native-free-bench', s.file)];
  const extra: Record<string, string> = {};
  if (s.envStyle) {
    extra['BENCH_JSON'] = result;
    extra['BENCH_KEYS'] = args.quick ? '20000' : '1000000';
    extra['BENCH_TIME'] = args.quick ? '5' : '250';
    extra['BENCH_WARMUP'] = args.quick ? '2' : '100';
  } else {
    node.push('--result', result, '--workers', args.workers.join(','));
    if (args.quick) node.push('--quick');
    if (!args.pin) node.push('--no-pin');
  }
  const limitMs = args.quick ? 120_000 : (s.limitSec ?? 300) * 1000;
  return new Promise((resolve) => {
    // the section's stdout (its own tables) is progress here: to our stderr
    const child = spawn(process.execPath, node, { cwd: kRepoRoot, env: benchEnv(extra), stdio: ['ignore', s.envStyle ? 'ignore' : 2, 'inherit'] });
    const timer = setTimeout(() => child.kill('SIGKILL'), limitMs);
    child.on('exit', (code, sig) => {
      clearTimeout(timer);
      if (code !== 0) return resolve({ error: `section ${s.name} exited with ${code ?? sig}${sig === 'SIGKILL' ? ` (time limit ${limitMs / 1000} s)` : ''}` });
      try {
        resolve(JSON.parse(readFileSync(result, 'utf8')) as Record<string, unknown>);
      } catch (err) {
        resolve({ error: `section ${s.name} wrote no results: ${(err as Error).message}` });
      }
    });
  });
}

const guard = await checkNativeFree();
const cpus = allowedCpus();
progress(`label '${label}', ${args.quick ? 'quick' : 'full'} run, workers [${args.workers.join(', ')}], pinning ${args.pin ? (taskset() !== null ? `with taskset (CPUs ${cpus.join(',')})` : 'unavailable (no taskset)') : 'off'}`);
const got: Record<string, Record<string, unknown>> = {};
const errors: string[] = [];
for (const s of SECTIONS) {
  if (args.only !== null && !args.only.includes(s.name)) {
    got[s.name] = { skipped: 'not selected (--only)' };
    continue;
  }
  progress(`section ${s.name} (${s.file})`);
  const r = await runSection(s);
  if (typeof r['error'] === 'string') {
    errors.push(r['error']);
    progress(`section ${s.name} FAILED: ${r['error']}`);
  }
  got[s.name] = r;
}
rmSync(work, { recursive: true, force: true });

const node = got['node']!;
const relay = got['byteRelay']!;
const e2e = got['endToEnd']!;
const err = (x: Record<string, unknown>): { error: string } => ({ error: String(x['error'] ?? x['skipped'] ?? 'not run') });
const results: Results = {
  label,
  quick: args.quick,
  startedAt: started.toISOString(),
  durationSec: (performance.now() - t0) / 1000,
  workers: args.workers,
  method: {
    macro: { ...params(args.quick), routeBytes: { 'router→sm': routerToSm().bytes.length, 'sm→router': smToRouter().bytes.length } },
    note: 'see native-free-bench/README.md (Method of the macro-benchmarks)',
  },
  machine: { ...machineInfo(), allowedCpus: cpus, taskset: taskset() !== null, pinning: args.pin && taskset() !== null },
  sections: {
    micro: {
      framer: got['framer']!,
      byteFramer: got['byteFramer']!,
      envelope: got['envelope']!,
      codec: got['codec']!,
      sharedTable: got['sharedTable']!,
      clusterTable: got['clusterTable']!,
      handoff: got['handoff']!,
    },
    macro: {
      singleNode: Array.isArray(node['singleNode']) ? (node['singleNode'] as Results['sections']['macro']['singleNode']) : err(node),
      twoNodes: Array.isArray(node['twoNodes']) ? (node['twoNodes'] as Results['sections']['macro']['twoNodes']) : err(node),
      baselines: {
        byteRelay: (relay['relay'] as Results['sections']['macro']['baselines']['byteRelay'] | undefined) ?? err(relay),
        directPath: (relay['direct'] as Results['sections']['macro']['baselines']['directPath'] | undefined) ?? err(relay),
        jabberd2Router: 'error' in got['jabberd2Router']! || 'skipped' in got['jabberd2Router']! ? err(got['jabberd2Router']!) : (got['jabberd2Router'] as Results['sections']['macro']['baselines']['jabberd2Router']),
      },
      // (d): the section's results (plain, node, cluster, overhead) with a status line; what
      // a failed section measured before failing is kept
      endToEnd: typeof e2e['status'] === 'string'
        ? (e2e as Results['sections']['macro']['endToEnd'])
        : { ...e2e, status: `not measured: ${String(e2e['error'] ?? e2e['skipped'] ?? 'not run')}` },
    },
    routeTable: got['routeTable']!,
  },
  errors,
};
(results as Results & { guard: unknown }).guard = guard;
results.targets = computeTargets(results);
mkdirSync(outDir, { recursive: true });
const jsonPath = join(outDir, `${label}.json`);
const svgPath = join(outDir, `${label}.svg`);
writeFileSync(jsonPath, JSON.stringify(results, null, 2) + '\n');
writeFileSync(svgPath, renderSvg(results));
process.stdout.write(textReport(results));
process.stdout.write(`\nresults: ${jsonPath}\nchart:   ${svgPath}\n`);
progress(`done in ${((performance.now() - t0) / 1000).toFixed(0)} s${errors.length ? ` with ${errors.length} failed section(s)` : ''}`);
process.exit(errors.length > 0 ? 1 : 0);
