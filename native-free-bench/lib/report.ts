/**
 * From the results JSON: the targets (MET/MISSED with ratios), the text report printed on stdout,
 * and the SVG chart (throughput against workers, baselines as horizontal lines; hand-written).
 */

/* The parts of the results this module reads (everything else passes through untouched). */
export interface LatencyS { p50Us: number; p99Us: number }
export interface PeakS { stanzasPerSec: number; mbPerSec: number; cpuSecPerMillion: number; targetCores: number; genCores: number; foreignCores: number }
export type PacedS = LatencyS & { targetPerSec: number; achievedPerSec: number; inFlightAtEnd: number };
export interface NodeRun {
  workers: number; skipped?: string; pinned?: boolean; placement?: string; latency1?: LatencyS;
  /** one route in flight, the generator on the measured process's CPU (older results: absent) */
  latency1SameCore?: LatencyS | null;
  peak?: PeakS; halfPeak?: PacedS | null;
  /** at one fixed load for every target (older results: absent) */
  atFixedRate?: PacedS | null;
}
export interface Results {
  label: string;
  quick: boolean;
  startedAt: string;
  durationSec: number;
  workers: number[];
  method?: Record<string, unknown>;
  machine: Record<string, unknown>;
  sections: {
    micro: Record<string, { rows?: Record<string, unknown>[]; error?: string } & Record<string, unknown>>;
    macro: {
      singleNode: NodeRun[] | { error: string };
      twoNodes: NodeRun[] | { error: string };
      baselines: {
        byteRelay: ({ latency1: LatencyS; latency1SameCore?: LatencyS | null; peak: PeakS; capacityPerSec: number; pinned: boolean } & Record<string, unknown>) | { error: string };
        directPath: ({ latency1: LatencyS; paced?: { rate: number; p50Us: number; p99Us: number }[] } & Record<string, unknown>) | { error: string };
        jabberd2Router: ({ latency1: LatencyS; latency1SameCore?: LatencyS | null; peak: PeakS; halfPeak: NodeRun['halfPeak']; atFixedRate?: PacedS | null; pinned: boolean; version: string } & Record<string, unknown>) | { error: string };
      };
      endToEnd: EndToEnd;
    };
    routeTable: Record<string, unknown>;
  };
  targets?: Target[];
  errors: string[];
}

/** (d) end to end through real jabberd2 (macro/end-to-end.ts); older results carry only `status`. */
export interface E2eRunS {
  setup: 'plain' | 'node' | 'cluster';
  label: string;
  workers: number | null;
  skipped?: string;
  error?: string;
  latency1?: LatencyS & { stoppedAfterMs?: number };
  saturation?: { msgsPerSec: number; cpuSecPerMillion: number; serverCores: number; clientCores: number; foreignCores: number; busiest: string; underLoad: LatencyS; drained: boolean };
  bounces?: number;
}
export interface EndToEnd {
  status?: string;
  error?: string;
  params?: { pairs: number; window: number; batch: number };
  plain?: E2eRunS;
  node?: E2eRunS[];
  cluster?: E2eRunS[];
  [k: string]: unknown;
}

/** The measured run of a setup with the most messages/s. */
export function bestE2e(runs: E2eRunS[] | undefined): E2eRunS | null {
  let best: E2eRunS | null = null;
  for (const r of runs ?? []) if (r.saturation && (best === null || r.saturation.msgsPerSec > best.saturation!.msgsPerSec)) best = r;
  return best;
}

export interface ResyncOutcome { completed: boolean; totalMs: number; snapshotMs: number; encodeMs: number; transferDecodeJoinMs?: number; applyMs?: number; linkDrops: string[]; linkUpAfter: boolean; config: Record<string, number> }
export interface Resync { snapshotBytes: number; snapshotMiB: number; bytesPerSession: number; parts: number; sessionsPerPart: number; defaultSettings: ResyncOutcome; raisedQueue: (ResyncOutcome & { queueBytes: number }) | null }

export interface Target {
  name: string;
  value: number | null;
  unit: string;
  op: '>=' | '<=';
  target: number;
  /** value ÷ target */
  ratio: number | null;
  status: 'MET' | 'MISSED' | 'N/A';
  note: string;
}

function ok<T extends object>(x: T | { error: string } | undefined): T | null {
  return x !== undefined && !('error' in x) ? x : null;
}

/** The supported node run with the highest peak. */
export function bestRun(runs: NodeRun[] | { error: string }): NodeRun | null {
  if (!Array.isArray(runs)) return null;
  let best: NodeRun | null = null;
  for (const r of runs) if (r.peak && (best === null || r.peak.stanzasPerSec > best.peak!.stanzasPerSec)) best = r;
  return best;
}

function target(name: string, value: number | null, unit: string, op: '>=' | '<=', t: number, note: string): Target {
  if (value === null || !Number.isFinite(value)) return { name, value: null, unit, op, target: t, ratio: null, status: 'N/A', note };
  const met = op === '>=' ? value >= t : value <= t;
  return { name, value: round3(value), unit, op, target: t, ratio: round3(value / t), status: met ? 'MET' : 'MISSED', note };
}

function round3(x: number): number {
  return Number(x.toPrecision(3));
}

export function computeTargets(r: Results): Target[] {
  const m = r.sections.macro;
  const node = bestRun(m.singleNode);
  const jd2 = ok(m.baselines.jabberd2Router);
  const relay = ok(m.baselines.byteRelay);
  const direct = ok(m.baselines.directPath);
  const rt = r.sections.routeTable as { routes?: number; memory?: { totalBytes: number }; resync?: Resync };
  const w = node ? `workers=${node.workers}, ${node.pinned ? 'pinned' : 'not pinned'}` : '';
  const out: Target[] = [];
  // A single-threaded process forwards at most what one core allows: when it was not saturated
  // (other processes took its CPU, or the generator could not keep up), its routes/s understate
  // that, so both sides are compared at one full core: routes/s ÷ the share of a core used.
  const cap = (p: PeakS): number => p.stanzasPerSec / Math.min(1, Math.max(p.targetCores, 1e-9));
  const capNote = (name: string, p: PeakS): string => `${name} ${Math.round(p.stanzasPerSec)} routes/s at ${(p.targetCores * 100).toFixed(0)} % of a core${p.targetCores < 0.9 ? ` → ${Math.round(cap(p))} at a full core` : ''}`;
  out.push(target('node routes/s ÷ jabberd2-router routes/s (one full core each)', node?.peak && jd2 ? cap(node.peak) / cap(jd2.peak) : null, '×', '>=', 2,
    node?.peak && jd2 ? `${capNote('node', node.peak)}; ${capNote('router', jd2.peak)} (${w})` : 'not measured'));
  out.push(target('node CPU per route ÷ jabberd2-router CPU per route', node?.peak && jd2 ? node.peak.cpuSecPerMillion / jd2.peak.cpuSecPerMillion : null, '×', '<=', 1,
    node?.peak && jd2 ? `${node.peak.cpuSecPerMillion.toFixed(2)} vs ${jd2.peak.cpuSecPerMillion.toFixed(2)} CPU s per million routes` : 'not measured'));
  out.push(target('node routes/s ÷ byte relay routes/s (one full core each)', node?.peak && relay ? cap(node.peak) / relay.capacityPerSec : null, '×', '>=', 0.1,
    node?.peak && relay ? `relay: ${Math.round(relay.peak.stanzasPerSec)} routes/s measured at ${(relay.peak.targetCores * 100).toFixed(0)} % of a core → ${Math.round(relay.capacityPerSec)} routes/s per core` : 'not measured'));
  // pinned, one route in flight: with the generator on the node's CPU when measured (what the
  // forwarding adds), else across CPUs (that adds the scheduler's cross-CPU wake-ups)
  const l1 = node?.latency1SameCore ?? node?.latency1;
  const same = node?.latency1SameCore ? 'generator and node on one CPU' : 'generator and node on different CPUs';
  out.push(target('p50 added latency, one route in flight', l1 && direct ? l1.p50Us - direct.latency1.p50Us : null, 'µs', '<=', 50,
    l1 && direct ? `node path p50 ${l1.p50Us} µs (${same}) − direct path p50 ${direct.latency1.p50Us} µs` : 'not measured'));
  const hp = node?.halfPeak;
  // the direct path's p99 at the nearest paced rate: the generator's own floor in the same bursts
  let floor = direct ? { p99Us: direct.latency1.p50Us, what: `direct p50 ${direct.latency1.p50Us} µs (one in flight)` } : null;
  if (hp && direct?.paced && direct.paced.length > 0) {
    const near = direct.paced.reduce((a, b) => (Math.abs(Math.log(b.rate / hp.achievedPerSec)) < Math.abs(Math.log(a.rate / hp.achievedPerSec)) ? b : a));
    floor = { p99Us: near.p99Us, what: `direct path p99 ${near.p99Us} µs at ${near.rate} routes/s` };
  }
  out.push(target('p99 added latency at half of peak load', hp && floor ? hp.p99Us - floor.p99Us : null, 'µs', '<=', 1000,
    hp && floor ? `node p99 ${hp.p99Us} µs at ${hp.achievedPerSec} routes/s (asked ${hp.targetPerSec}; ${hp.inFlightAtEnd} in flight at the end) − ${floor.what}; ${node?.pinned ? 'pinned' : 'not pinned'}` : 'not measured'));
  const n = rt.routes ?? 0;
  const scale = n > 0 ? 1_000_000 / n : 0;
  const extrap = n !== 1_000_000 ? ` (extrapolated ×${scale.toFixed(0)} from ${n.toLocaleString('en')} routes)` : '';
  out.push(target('memory for 1 M routes', rt.memory ? (rt.memory.totalBytes * scale) / 2 ** 20 : null, 'MiB', '<=', 64,
    `ClusterTable (sessions + bare-JID index) on a joining node${extrap}`));
  const rs = rt.resync;
  const ok1 = rs ? (rs.defaultSettings.completed ? rs.defaultSettings : rs.raisedQueue?.completed ? rs.raisedQueue : null) : null;
  const how = rs === undefined ? 'not measured'
    : rs.defaultSettings.completed ? `over a peer link, default settings; ${rs.parts} SNAPSHOT parts, ${(rs.snapshotBytes * scale / 2 ** 20).toFixed(0)} MiB${extrap}`
    : `default settings FAILED (${rs.defaultSettings.linkDrops[0] ?? 'timeout'}); measured with queue_bytes ${((rs.raisedQueue?.queueBytes ?? 0) / 2 ** 20).toFixed(0)} MiB${extrap}`;
  out.push(target('resync 1 M routes to a joining node', ok1 ? (ok1.totalMs * scale) / 1000 : null, 's', '<=', 5, how));
  // (d) end-to-end overhead against plain jabberd2 (≤ 15 %): messages/s at least 0.85 × plain's,
  // CPU per message (every server process) at most 1.15 × plain's; the best run of each setup
  const e2e = m.endToEnd;
  const plain = e2e.plain?.saturation ? e2e.plain : null;
  for (const [what, runs] of [['1 node', e2e.node], ['2-node cluster, cross-node', e2e.cluster]] as const) {
    const b = bestE2e(runs);
    const ps = plain?.saturation;
    const bs = b?.saturation;
    const w = b ? `workers=${b.workers}` : '';
    out.push(target(`end to end, ${what}: messages/s ÷ plain jabberd2 (overhead ≤ 15 %)`, ps && bs ? bs.msgsPerSec / ps.msgsPerSec : null, '×', '>=', 0.85,
      ps && bs ? `${Math.round(bs.msgsPerSec)} vs ${Math.round(ps.msgsPerSec)} messages/s delivered (${w}; servers at ${(bs.serverCores * 100).toFixed(0)} % vs ${(ps.serverCores * 100).toFixed(0)} % of a core)` : 'not measured'));
    out.push(target(`end to end, ${what}: CPU per message ÷ plain jabberd2 (overhead ≤ 15 %)`, ps && bs ? bs.cpuSecPerMillion / ps.cpuSecPerMillion : null, '×', '<=', 1.15,
      ps && bs ? `${bs.cpuSecPerMillion.toFixed(1)} vs ${ps.cpuSecPerMillion.toFixed(1)} CPU s per million messages, every jabberd2 process and node (${w})` : 'not measured'));
  }
  return out;
}

// ---- text ---------------------------------------------------------------------------------

function table(header: string[], rows: string[][], right: boolean[] = []): string {
  const w = header.map((h, i) => Math.max(h.length, ...rows.map((r) => (r[i] ?? '').length)));
  const fmt = (r: string[]): string => r.map((c, i) => (right[i] ? c.padStart(w[i]!) : c.padEnd(w[i]!))).join('  ').trimEnd();
  return [fmt(header), w.map((x) => '-'.repeat(x)).join('  '), ...rows.map(fmt)].join('\n');
}

const int = (x: number | undefined | null): string => (x === undefined || x === null || !Number.isFinite(x) ? '–' : Math.round(x).toLocaleString('en'));
const f2 = (x: number | undefined | null): string => (x === undefined || x === null || !Number.isFinite(x) ? '–' : x.toFixed(2));
const f1 = (x: number | undefined | null): string => (x === undefined || x === null || !Number.isFinite(x) ? '–' : x.toFixed(1));

export function textReport(r: Results): string {
  const out: string[] = [];
  const mc = r.machine;
  out.push(`jabberd2-cluster native-free benchmark: ${r.label}${r.quick ? ' (--quick: only checks that the suite runs; figures meaningless)' : ''}`);
  out.push(`${r.startedAt}, ${r.durationSec.toFixed(0)} s; Node ${String(mc['node'])}, ${String(mc['cpus'])} × ${String(mc['cpuModel'])}; msgpackr native acceleration: off (checked)`);
  out.push('');
  out.push('Micro-benchmarks (tinybench; per operation)');
  const microRows: string[][] = [];
  for (const [name, sec] of Object.entries(r.sections.micro)) {
    if (sec.error !== undefined) {
      microRows.push([name, `ERROR: ${sec.error}`, '', '', '']);
      continue;
    }
    for (const row of sec.rows ?? []) {
      const ns = Number(row['nsPerOp'] ?? row['ns/op']);
      const mb = row['mbPerSec'];
      microRows.push([name, String(row['task']), ns < 100 ? f1(ns) : int(ns), int(1e9 / ns), typeof mb === 'number' ? f1(mb) : '']);
    }
  }
  out.push(table(['bench', 'task', 'ns/op', 'ops/s', 'MB/s'], microRows, [false, false, true, true, true]));
  out.push('');
  out.push('Forwarding (macro): routes both ways at once (router→sm and sm→router), 356 B and 377 B routes');
  const m = r.sections.macro;
  const mrows: string[][] = [];
  const addRun = (name: string, x: { peak?: PeakS; latency1?: LatencyS; latency1SameCore?: LatencyS | null; halfPeak?: NodeRun['halfPeak']; atFixedRate?: PacedS | null; pinned?: boolean } | null, err?: string): void => {
    if (x === null) return void mrows.push([name, `ERROR: ${err ?? 'not measured'}`]);
    mrows.push([name, int(x.peak?.stanzasPerSec), f1(x.peak?.mbPerSec), f2(x.peak?.cpuSecPerMillion), x.peak ? `${(x.peak.targetCores * 100).toFixed(0)} %` : '–',
      f1(x.latency1?.p50Us), f1(x.latency1?.p99Us), x.latency1SameCore ? f1(x.latency1SameCore.p50Us) : '–', x.latency1SameCore ? f1(x.latency1SameCore.p99Us) : '–',
      x.halfPeak ? f1(x.halfPeak.p50Us) : '–', x.halfPeak ? f1(x.halfPeak.p99Us) : '–', x.atFixedRate ? f1(x.atFixedRate.p99Us) : '–',
      x.peak ? `${(x.peak.foreignCores * 100).toFixed(0)} %` : '–', x.pinned ? 'yes' : 'no']);
  };
  for (const [name, runs] of [['node (a)', m.singleNode], ['2 nodes (b)', m.twoNodes]] as const) {
    if (!Array.isArray(runs)) addRun(name, null, runs.error);
    else for (const x of runs) {
      if (x.skipped !== undefined) mrows.push([`${name} workers=${x.workers}`, `skipped: ${x.skipped}`]);
      else addRun(`${name} workers=${x.workers}`, x);
    }
  }
  const b = m.baselines;
  addRun('byte relay', ok(b.byteRelay), 'error' in b.byteRelay ? String(b.byteRelay.error) : undefined);
  addRun('jabberd2-router', ok(b.jabberd2Router), 'error' in b.jabberd2Router ? String(b.jabberd2Router.error) : undefined);
  const d = ok(b.directPath);
  mrows.push(['direct (no hop)', '', '', '', '', f1(d?.latency1.p50Us), f1(d?.latency1.p99Us), '', '', '', '', '', '', '']);
  const fixed = (Array.isArray(m.singleNode) ? m.singleNode.find((x) => x.atFixedRate)?.atFixedRate?.targetPerSec : undefined) ?? ok(b.jabberd2Router)?.atFixedRate?.targetPerSec;
  out.push(table(['path', 'routes/s', 'MB/s', 'CPU s/M', 'CPU', 'p50 µs', 'p99 µs', 'p50 1cpu', 'p99 1cpu', 'p50@½', 'p99@½', fixed ? `p99@${Math.round(fixed / 1000)}k` : 'p99@fixed', 'others', 'pinned'], mrows,
    [false, true, true, true, true, true, true, true, true, true, true, true, true, false]));
  out.push('  CPU s/M: CPU seconds of the measured process(es) per million routes; CPU: its share of a core; p50/p99: one route in flight, generator and measured process on different CPUs; 1cpu: the same with the generator moved onto the measured process\'s CPU (no cross-CPU wake-up); @½: at half of its own peak; @…k: at one fixed load for all; latencies in µs; others: CPU used by other processes on the machine meanwhile');
  const places: string[] = [];
  const place = (n: string, x: unknown): void => {
    const pl = x !== null && typeof x === 'object' ? (x as Record<string, unknown>)['placement'] : undefined;
    if (typeof pl === 'string') places.push(`${n}: ${pl}`);
  };
  if (Array.isArray(m.singleNode)) for (const x of m.singleNode) place(`node (a) workers=${x.workers}`, x);
  if (Array.isArray(m.twoNodes)) for (const x of m.twoNodes) place(`2 nodes (b) workers=${x.workers}`, x);
  place('byte relay', b.byteRelay);
  place('jabberd2-router', b.jabberd2Router);
  if (places.length > 0) out.push(`  pinning: ${places.join('; ')}`);
  const rb = ok(b.byteRelay);
  if (rb) out.push(`  byte relay: ${int(rb.peak.stanzasPerSec)} routes/s with the relay at ${(rb.peak.targetCores * 100).toFixed(0)} % of a core and the generator at ${(rb.peak.genCores * 100).toFixed(0)} %: capacity ≈ ${int(rb.capacityPerSec)} routes/s per core`);
  out.push('');
  out.push(...e2eReport(m.endToEnd));
  const rt = r.sections.routeTable as Record<string, Record<string, unknown>> & { routes?: number; error?: string; skipped?: string };
  if (rt.error !== undefined) out.push(`Route table: ERROR: ${rt.error}`);
  else if (rt.skipped !== undefined || rt['memory'] === undefined) out.push(`Route table: ${rt.skipped ?? 'not measured'}`);
  else {
    const mem = rt['memory']!;
    const lk = rt['lookups']!;
    const rs = rt['resync'] as unknown as Resync;
    out.push(`Route table: ${int(rt.routes)} routes (sessions, one per user) on a joining node`);
    const parts = mem['storeMiB'] !== undefined
      ? `heap ${String(mem['heapMiB'])} MiB + ArrayBuffers ${String(mem['arrayBuffersMiB'])} MiB, of which session store ${String(mem['storeMiB'])} MiB and index ${String(mem['indexMiB'])} MiB`
      : `heap ${String(mem['heapMiB'])} MiB + index ${String(mem['indexMiB'])} MiB`;
    out.push(`  memory ${String(mem['totalMiB'])} MiB (${parts}; ${String(mem['bytesPerRoute'])} B/route); ${String(mem['note'])}`);
    out.push(`  homeOf: ${int(Number(lk['homeOfPerSec']))} lookups/s random over all, ${int(Number(lk['homeOfHot10kPerSec']))} over a hot 10k`);
    out.push(`  resync over a peer link: SNAPSHOT ${String(rs.snapshotMiB)} MiB (${String(rs.bytesPerSession)} B/session) in ${rs.parts} parts of ${int(rs.sessionsPerPart)}`);
    const line = (what: string, o: ResyncOutcome): string => o.completed
      ? `  ${what}: ${f2(o.totalMs / 1000)} s = snapshot ${o.snapshotMs} + encode ${o.encodeMs} + transfer/decode/join ${o.transferDecodeJoinMs ?? '–'} + apply ${o.applyMs ?? '–'} ms; link ${o.linkUpAfter && o.linkDrops.length === 0 ? 'stayed up' : `dropped: ${o.linkDrops.join('; ')}`}`
      : `  ${what}: FAILED after ${f2(o.totalMs / 1000)} s: ${o.linkDrops.join('; ') || 'timeout'}`;
    out.push(line(`default settings (queue_bytes ${(rs.defaultSettings.config['queueBytes']! / 2 ** 20).toFixed(0)} MiB, heartbeat ${rs.defaultSettings.config['heartbeatMs']} ms)`, rs.defaultSettings));
    if (rs.raisedQueue) out.push(line(`queue_bytes raised to ${(rs.raisedQueue.queueBytes / 2 ** 20).toFixed(0)} MiB`, rs.raisedQueue));
  }
  out.push('');
  out.push('Targets (reported, never asserted)');
  out.push(table(['', 'target', 'measured', 'goal', 'of goal', 'how'], (r.targets ?? []).map((t) => [t.status, t.name, t.value === null ? '–' : `${t.value} ${t.unit}`, `${t.op === '>=' ? '≥' : '≤'} ${t.target} ${t.unit}`, t.ratio === null ? '–' : `${t.ratio}`, t.note])));
  if (r.errors.length > 0) {
    out.push('');
    out.push(`ERRORS: ${r.errors.join('; ')}`);
  }
  return out.join('\n') + '\n';
}

/** The (d) table: one row per setup and worker count, ratios against plain jabberd2. */
function e2eReport(e: EndToEnd): string[] {
  const runs = [...(e.plain ? [e.plain] : []), ...(e.node ?? []), ...(e.cluster ?? [])];
  if (runs.length === 0) return [`End to end (d): ${e.status ?? 'not measured'}${e.error !== undefined && e.status === undefined ? `: ${e.error}` : ''}`, ''];
  const pp = e.params;
  const out: string[] = [`End to end (d): chat messages between raw-socket XMPP clients through real jabberd2${pp ? ` (${pp.pairs} sender/receiver pairs; saturation: ${pp.window} in flight per pair, written ${pp.batch} at a time)` : ''}`];
  const plain = e.plain?.saturation ? e.plain : null;
  const rows = runs.map((r): string[] => {
    if (r.skipped !== undefined) return [r.label, `skipped: ${r.skipped}`];
    if (r.error !== undefined || !r.saturation || !r.latency1) return [r.label, `ERROR: ${r.error ?? 'not measured'}`];
    const s = r.saturation;
    const vs = plain && r !== plain ? [`${(s.msgsPerSec / plain.saturation!.msgsPerSec).toFixed(2)} ×`, `${(s.cpuSecPerMillion / plain.saturation!.cpuSecPerMillion).toFixed(2)} ×`] : ['', ''];
    return [r.label, int(s.msgsPerSec), f1(s.cpuSecPerMillion), `${(s.serverCores * 100).toFixed(0)} %`, f1(r.latency1.p50Us), f1(r.latency1.p99Us), f1(s.underLoad.p50Us / 1000), f1(s.underLoad.p99Us / 1000), vs[0]!, vs[1]!,
      `${(s.clientCores * 100).toFixed(0)} %`, `${(s.foreignCores * 100).toFixed(0)} %`, `${s.busiest}${s.drained ? '' : '; NOT DRAINED'}${r.bounces ? `; ${r.bounces} bounces` : ''}`];
  });
  out.push(table(['setup', 'msgs/s', 'CPU s/M', 'servers', 'p50 µs', 'p99 µs', 'p50 ms@sat', 'p99 ms@sat', '÷ plain msgs/s', '× plain CPU/msg', 'clients', 'others', 'busiest server process'], rows,
    [false, true, true, true, true, true, true, true, true, true, true, true, false]));
  out.push('  msgs/s: delivered, median window at saturation; CPU s/M: CPU seconds of every jabberd2 process and node per million messages; servers: their CPU in cores (100 % = one core);');
  out.push('  p50/p99: one message in flight; @sat: at saturation (window ÷ throughput, Little\'s law); clients: the benchmark\'s own clients; others: other processes meanwhile. Not pinned.');
  const busy = runs.filter((r) => r.saturation && r.saturation.foreignCores >= 0.25).map((r) => r.label);
  if (busy.length > 0) out.push(`  measured while other processes used ≥ 25 % of a core (compare CPU s/M rather than msgs/s): ${busy.join('; ')}`);
  const cut = runs.filter((r) => r.latency1?.stoppedAfterMs !== undefined).map((r) => r.label);
  if (cut.length > 0) out.push(`  one in flight stopped at its time bound: ${cut.join('; ')}`);
  if (e.status !== undefined && e.status !== 'measured') out.push(`  status: ${e.status}`);
  out.push('');
  return out;
}

// ---- SVG ----------------------------------------------------------------------------------

function esc(s: string): string {
  return s.replace(/&/g, '&amp;').replace(/</g, '&lt;').replace(/>/g, '&gt;');
}

/** Throughput against worker count (log scale), with the baselines as horizontal lines. */
export function renderSvg(r: Results): string {
  const W = 820;
  const H = 440;
  const L = 80;
  const R = 270;
  const T = 50;
  const B = 60;
  const pw = W - L - R;
  const ph = H - T - B;
  const m = r.sections.macro;
  const series: { name: string; color: string; pts: [number, number][] }[] = [];
  for (const [name, runs, color] of [['node (a)', m.singleNode, '#1f77b4'], ['2 nodes (b), route rate', m.twoNodes, '#2ca02c']] as const) {
    if (Array.isArray(runs)) series.push({ name, color, pts: runs.filter((x) => x.peak).map((x) => [x.workers, x.peak!.stanzasPerSec]) });
  }
  // (d) end to end: messages/s delivered between clients (each message is several routes)
  for (const [name, runs, color] of [['e2e (d), 1 node, msgs/s', m.endToEnd.node, '#9467bd'], ['e2e (d), 2 nodes, msgs/s', m.endToEnd.cluster, '#8c564b']] as const) {
    const pts = (runs ?? []).filter((x) => x.saturation && x.workers !== null).map((x): [number, number] => [x.workers!, x.saturation!.msgsPerSec]);
    if (pts.length > 0) series.push({ name, color, pts });
  }
  const lines: { name: string; color: string; y: number; dash: string }[] = [];
  const e2ePlain = m.endToEnd.plain?.saturation;
  if (e2ePlain) {
    lines.push({ name: `e2e, plain jabberd2 (${int(e2ePlain.msgsPerSec)} msgs/s)`, color: '#e377c2', y: e2ePlain.msgsPerSec, dash: '' });
    lines.push({ name: 'target: 85 % of e2e plain', color: '#e377c2', y: e2ePlain.msgsPerSec * 0.85, dash: '6 4' });
  }
  const relay = ok(m.baselines.byteRelay);
  const jd2 = ok(m.baselines.jabberd2Router);
  if (relay) {
    lines.push({ name: `byte relay, per core (${int(relay.capacityPerSec)})`, color: '#7f7f7f', y: relay.capacityPerSec, dash: '' });
    lines.push({ name: `target: 10 % of byte relay`, color: '#7f7f7f', y: relay.capacityPerSec * 0.1, dash: '6 4' });
  }
  if (jd2) {
    const c = jd2.peak.stanzasPerSec / Math.min(1, Math.max(jd2.peak.targetCores, 1e-9));
    lines.push({ name: `jabberd2-router, per core (${int(c)})`, color: '#d62728', y: c, dash: '' });
    lines.push({ name: 'target: 2 × jabberd2-router', color: '#d62728', y: c * 2, dash: '6 4' });
  }
  const ys = [...series.flatMap((s) => s.pts.map((p) => p[1])), ...lines.map((l) => l.y)].filter((y) => y > 0 && Number.isFinite(y));
  const lo = 10 ** Math.floor(Math.log10(Math.min(...ys, 1e4)));
  const hi = 10 ** Math.ceil(Math.log10(Math.max(...ys, 1e5)));
  const yOf = (v: number): number => T + ph - ((Math.log10(v) - Math.log10(lo)) / (Math.log10(hi) - Math.log10(lo))) * ph;
  const ws = [...new Set([...r.workers, 0])].sort((a, b) => a - b);
  const xOf = (w: number): number => L + (ws.length === 1 ? pw / 2 : (ws.indexOf(w) / (ws.length - 1)) * pw * 0.9 + pw * 0.05);
  const s: string[] = [];
  s.push(`<svg xmlns="http://www.w3.org/2000/svg" width="${W}" height="${H}" viewBox="0 0 ${W} ${H}" font-family="sans-serif" font-size="12">`);
  s.push(`<rect width="${W}" height="${H}" fill="#fff"/>`);
  s.push(`<text x="${L}" y="22" font-size="15" font-weight="bold">jabberd2-cluster: routes/s (and end-to-end messages/s) against worker threads</text>`);
  s.push(`<text x="${L}" y="40" fill="#555">${esc(`${r.label}, ${r.startedAt.slice(0, 10)}; ${String(r.machine['cpus'])} × ${String(r.machine['cpuModel'])}; both directions, ~360 B routes; log scale`)}</text>`);
  for (let d = lo; d <= hi; d *= 10) {
    const y = yOf(d);
    s.push(`<line x1="${L}" y1="${y.toFixed(1)}" x2="${L + pw}" y2="${y.toFixed(1)}" stroke="#ddd"/>`);
    s.push(`<text x="${L - 6}" y="${(y + 4).toFixed(1)}" text-anchor="end">${d >= 1e6 ? `${d / 1e6} M` : d >= 1e3 ? `${d / 1e3} k` : d}</text>`);
    for (const k of [2, 5]) if (d * k < hi) s.push(`<line x1="${L}" y1="${yOf(d * k).toFixed(1)}" x2="${L + pw}" y2="${yOf(d * k).toFixed(1)}" stroke="#f0f0f0"/>`);
  }
  s.push(`<rect x="${L}" y="${T}" width="${pw}" height="${ph}" fill="none" stroke="#333"/>`);
  for (const w of ws) {
    const x = xOf(w);
    s.push(`<line x1="${x.toFixed(1)}" y1="${T + ph}" x2="${x.toFixed(1)}" y2="${T + ph + 5}" stroke="#333"/>`);
    s.push(`<text x="${x.toFixed(1)}" y="${T + ph + 18}" text-anchor="middle">${w}</text>`);
  }
  s.push(`<text x="${L + pw / 2}" y="${H - 22}" text-anchor="middle">worker threads (0 = everything inline on the main thread)</text>`);
  s.push(`<text transform="translate(18 ${T + ph / 2}) rotate(-90)" text-anchor="middle">routes/s · messages/s</text>`);
  for (const l of lines) {
    const y = yOf(l.y).toFixed(1);
    s.push(`<line x1="${L}" y1="${y}" x2="${L + pw}" y2="${y}" stroke="${l.color}" stroke-width="1.5"${l.dash ? ` stroke-dasharray="${l.dash}"` : ''}/>`);
  }
  // series side by side around each worker count, labels outside, so that equal values stay readable
  series.forEach((se, i) => {
    const dx = (i - (series.length - 1) / 2) * 16;
    const left = i < (series.length - 1) / 2;
    if (se.pts.length > 1) s.push(`<polyline fill="none" stroke="${se.color}" stroke-width="2" points="${se.pts.map(([w, v]) => `${(xOf(w) + dx).toFixed(1)},${yOf(v).toFixed(1)}`).join(' ')}"/>`);
    for (const [w, v] of se.pts) {
      const x = xOf(w) + dx;
      s.push(`<circle cx="${x.toFixed(1)}" cy="${yOf(v).toFixed(1)}" r="5" fill="${se.color}"/>`);
      s.push(`<text x="${(x + (left ? -9 : 9)).toFixed(1)}" y="${(yOf(v) + 4).toFixed(1)}" fill="${se.color}" text-anchor="${left ? 'end' : 'start'}">${int(v)}</text>`);
    }
  });
  let ly = T + 8;
  const lx = L + pw + 16;
  for (const se of series) {
    s.push(`<circle cx="${lx + 10}" cy="${ly}" r="5" fill="${se.color}"/><text x="${lx + 24}" y="${ly + 4}">${esc(se.name)}</text>`);
    ly += 20;
  }
  for (const l of lines) {
    s.push(`<line x1="${lx}" y1="${ly}" x2="${lx + 20}" y2="${ly}" stroke="${l.color}" stroke-width="1.5"${l.dash ? ` stroke-dasharray="${l.dash}"` : ''}/><text x="${lx + 24}" y="${ly + 4}">${esc(l.name)}</text>`);
    ly += 20;
  }
  s.push('</svg>');
  return s.join('\n') + '\n';
}
