/**
 * Load generation over endpoints (lib/endpoints.ts). A flow is one direction: routes written on
 * `src`, arriving at `dst`'s sink, one receiving flow per sink.
 *
 * - `pingPong`: one route in flight; one-way latency of each (stamp in the route, read on
 *   arrival; sender and receiver are this process, so one clock). Also learns the length of the
 *   route as received (a node may rewrite its start tag).
 * - `peak`: each flow keeps up to `window` routes in flight, written in batches; after a warm-up,
 *   several measurement windows: routes/s, bytes/s, the measured processes' CPU, this
 *   generator's CPU and the rest of the machine's ("foreign" load, from /proc/stat).
 * - `paced`: a fixed total rate, spread over the flows, every route stamped; latency percentiles.
 */
import { setTimeout as sleep } from 'node:timers/promises';
import type { Endpoint } from './endpoints.ts';
import { batch, nowNs, type Template } from './stanzas.ts';
import { median, summarizeLatency, type LatencySummary } from './stats.ts';
import { systemCpu } from './procfs.ts';

export interface Flow {
  name: string;
  src: Endpoint;
  dst: Endpoint;
  tpl: Template;
  /** user numbers cycle over 0..users-1 */
  users: number;
  sent: number;
  /** route length as received (learned by pingPong) */
  lenOut: number;
  /** count mode: routes and bytes received when it began */
  countBase: number;
  bytesBase: number;
}

export function flow(name: string, src: Endpoint, dst: Endpoint, tpl: Template, users = 1024): Flow {
  return { name, src, dst, tpl, users, sent: 0, lenOut: 0, countBase: 0, bytesBase: 0 };
}

/** Routes received on a flow so far. */
function received(f: Flow): number {
  const s = f.dst.sink;
  return s.scanning ? s.stanzas : f.lenOut > 0 ? f.countBase + Math.floor((s.bytes - f.bytesBase) / f.lenOut) : 0;
}

function toCountMode(f: Flow): void {
  const s = f.dst.sink;
  const n = s.stanzas;
  s.stopScan();
  f.countBase = n;
  f.bytesBase = s.bytes;
}

function toScanMode(f: Flow): void {
  const n = received(f);
  const s = f.dst.sink;
  s.startScan();
  s.stanzas = n;
}

/** Waits until every flow has received all it sent (false on timeout). */
async function drain(flows: readonly Flow[], timeoutMs: number): Promise<boolean> {
  const until = performance.now() + timeoutMs;
  while (flows.some((f) => received(f) < f.sent)) {
    if (performance.now() > until) return false;
    await sleep(5);
  }
  return true;
}

export interface PingPongResult extends LatencySummary {
  perFlow: Record<string, LatencySummary>;
}

/** `n` routes one at a time, alternating flows, after `warmup` unrecorded ones. */
export async function pingPong(flows: readonly Flow[], n: number, warmup: number): Promise<PingPongResult> {
  for (const f of flows) {
    toScanMode(f);
    f.dst.sink.recordFromNs = 0;
    f.dst.sink.latenciesUs.clear();
  }
  const per = new Map<Flow, number[]>(flows.map((f) => [f, []]));
  const lens = new Map<Flow, number[]>(flows.map((f) => [f, []]));
  for (let i = 0; i < warmup + n; i++) {
    const f = flows[i % flows.length]!;
    const s = f.dst.sink;
    const before = s.stanzas;
    const bytesBefore = s.bytes;
    const got = new Promise<void>((resolve, reject) => {
      const timer = setTimeout(() => {
        s.onChunk = null;
        reject(new Error(`ping-pong on ${f.name}: route ${i} not received within 5 s (sent ${f.sent}, received ${s.stanzas})`));
      }, 5000);
      s.onChunk = () => {
        if (s.stanzas > before) {
          s.onChunk = null;
          clearTimeout(timer);
          resolve();
        }
      };
    });
    f.src.write(batch(f.tpl, 1, i % f.users, f.users, nowNs()));
    f.sent++;
    await got;
    lens.get(f)!.push(s.bytes - bytesBefore);
    const last = s.latenciesUs.last();
    if (i >= warmup && last !== undefined) per.get(f)!.push(last);
    s.latenciesUs.clear();
  }
  for (const f of flows) {
    f.lenOut = median(lens.get(f)!);
    f.dst.sink.recordFromNs = Number.POSITIVE_INFINITY;
  }
  const all = [...per.values()].flat();
  return { ...summarizeLatency(all), perFlow: Object.fromEntries(flows.map((f) => [f.name, summarizeLatency(per.get(f)!)])) };
}

export interface Window {
  seconds: number;
  stanzas: number;
  bytes: number;
  /** CPU seconds of the measured processes */
  targetCpu: number;
  /** CPU seconds of this load generator */
  genCpu: number;
  /** other processes on the machine, in cores */
  foreignCores: number;
  /** interrupt + softirq time (loopback TCP), cores */
  irqCores: number;
  /** time stolen by the hypervisor, cores */
  stealCores: number;
}

export interface PeakResult {
  stanzasPerSec: number;
  mbPerSec: number;
  /**
   * measured processes' CPU seconds per million routes: exact CPU (process.cpuUsage() for a
   * node) over the whole phase (warm-up, windows, drain) ÷ every route forwarded in it
   */
  cpuSecPerMillion: number;
  /** the same from /proc over the measurement windows only (10 ms resolution) */
  cpuSecPerMillionWindows: number;
  routesWholePhase: number;
  /** measured processes' cores in use */
  targetCores: number;
  genCores: number;
  foreignCores: number;
  irqCores: number;
  stealCores: number;
  windows: { stanzasPerSec: number; targetCores: number; genCores: number; foreignCores: number }[];
  perFlowPerSec: Record<string, number>;
  window: number;
  batch: number;
  drained: boolean;
  drainMs: number;
}

export interface PeakOptions {
  warmupMs: number;
  windows: number;
  windowMs: number;
  /** routes in flight per flow */
  window: number;
  batch: number;
  /**
   * Cumulative CPU seconds of the measured processes, read at once (from /proc: a saturated node
   * answers IPC only after hundreds of ms, see docs/performance.md); used per window.
   */
  cpuNow: () => number;
  /** The same, exactly (process.cpuUsage() of a node child over IPC); read only while idle. */
  cpuExact: () => Promise<number>;
}

function genCpuSeconds(): number {
  const u = process.cpuUsage();
  return (u.user + u.system) / 1e6;
}

export async function peak(flows: readonly Flow[], o: PeakOptions): Promise<PeakResult> {
  // a ring of prebuilt batches per flow (users cycle, stamps are not read)
  const exact0 = await o.cpuExact();
  const rings = new Map<Flow, Buffer[]>();
  for (const f of flows) {
    if (f.lenOut <= 0) throw new Error(`flow ${f.name}: route length unknown (run pingPong first)`);
    toCountMode(f);
    const ring: Buffer[] = [];
    for (let u = 0; u < f.users; u += o.batch) ring.push(batch(f.tpl, o.batch, u, f.users, 0));
    rings.set(f, ring);
  }
  const recv0 = flows.reduce((n, f) => n + received(f), 0);
  let running = true;
  let ringPos = 0;
  const pump = (f: Flow): void => {
    if (!running) return;
    const ring = rings.get(f)!;
    while (f.sent - received(f) + o.batch <= o.window) {
      f.src.write(ring[ringPos++ % ring.length]!);
      f.sent += o.batch;
    }
  };
  for (const f of flows) {
    f.dst.sink.onChunk = () => pump(f);
    pump(f);
  }
  const totals = (): { n: number; bytes: number; per: number[] } => {
    let n = 0;
    let bytes = 0;
    const per: number[] = [];
    for (const f of flows) {
      const r = received(f);
      per.push(r);
      n += r;
      bytes += r * f.lenOut;
    }
    return { n, bytes, per };
  };
  await sleep(o.warmupMs);
  const windows: Window[] = [];
  const perFlow: number[][] = flows.map(() => []);
  for (let w = 0; w < o.windows; w++) {
    const c0 = o.cpuNow();
    const g0 = genCpuSeconds();
    const s0 = systemCpu();
    const a = totals();
    const t0 = performance.now();
    await sleep(o.windowMs);
    const c1 = o.cpuNow();
    const g1 = genCpuSeconds();
    const s1 = systemCpu();
    const b = totals();
    const secs = (performance.now() - t0) / 1000;
    const targetCpu = c1 - c0;
    const genCpu = g1 - g0;
    windows.push({
      seconds: secs, stanzas: b.n - a.n, bytes: b.bytes - a.bytes, targetCpu, genCpu,
      foreignCores: Math.max(0, (s1.proc - s0.proc - targetCpu - genCpu) / secs),
      irqCores: (s1.irq - s0.irq) / secs,
      stealCores: (s1.steal - s0.steal) / secs,
    });
    flows.forEach((_, i) => perFlow[i]!.push((b.per[i]! - a.per[i]!) / secs));
  }
  running = false;
  for (const f of flows) f.dst.sink.onChunk = null;
  const td = performance.now();
  const drained = await drain(flows, 10_000);
  const drainMs = performance.now() - td;
  const exact1 = await o.cpuExact();
  const recvAll = flows.reduce((n, f) => n + received(f), 0) - recv0;
  const rates = windows.map((w) => w.stanzas / w.seconds);
  const totalStanzas = windows.reduce((s, w) => s + w.stanzas, 0);
  const totalCpu = windows.reduce((s, w) => s + w.targetCpu, 0);
  const totalSecs = windows.reduce((s, w) => s + w.seconds, 0);
  return {
    stanzasPerSec: median(rates),
    mbPerSec: median(windows.map((w) => w.bytes / w.seconds / 1e6)),
    cpuSecPerMillion: recvAll > 0 ? ((exact1 - exact0) / recvAll) * 1e6 : Number.NaN,
    cpuSecPerMillionWindows: totalStanzas > 0 ? (totalCpu / totalStanzas) * 1e6 : Number.NaN,
    routesWholePhase: recvAll,
    targetCores: totalCpu / totalSecs,
    genCores: windows.reduce((s, w) => s + w.genCpu, 0) / totalSecs,
    foreignCores: windows.reduce((s, w) => s + w.foreignCores * w.seconds, 0) / totalSecs,
    irqCores: windows.reduce((s, w) => s + w.irqCores * w.seconds, 0) / totalSecs,
    stealCores: windows.reduce((s, w) => s + w.stealCores * w.seconds, 0) / totalSecs,
    windows: windows.map((w) => ({ stanzasPerSec: Math.round(w.stanzas / w.seconds), targetCores: w.targetCpu / w.seconds, genCores: w.genCpu / w.seconds, foreignCores: w.foreignCores })),
    perFlowPerSec: Object.fromEntries(flows.map((f, i) => [f.name, median(perFlow[i]!)])),
    window: o.window,
    batch: o.batch,
    drained,
    drainMs: Math.round(drainMs),
  };
}

export interface PacedResult extends LatencySummary {
  targetPerSec: number;
  achievedPerSec: number;
  /** routes still in flight when sending stopped (a backlog means the rate was not sustained) */
  inFlightAtEnd: number;
  /** measured processes' cores in use while recording */
  targetCores: number;
  /** this generator's cores */
  genCores: number;
  foreignCores: number;
}

/**
 * `totalRate` routes/s spread evenly over the flows for `durationMs` (after `warmupMs`, not
 * recorded). The sending loop runs on timers (about every millisecond) and writes what is due
 * (at most `maxBurst` per flow), stamped with the time of writing: arrivals come in ~1 ms bursts.
 * It does not spin: a spinning generator would take a whole CPU, and on a small box push other
 * processes onto the measured process's CPU.
 */
export async function paced(flows: readonly Flow[], totalRate: number, warmupMs: number, durationMs: number, cpuNow: () => number, maxBurst = 4096): Promise<PacedResult> {
  const perFlow = totalRate / flows.length;
  for (const f of flows) {
    toScanMode(f);
    f.dst.sink.latenciesUs.clear();
    f.dst.sink.recordFromNs = Number.POSITIVE_INFINITY;
  }
  const start = performance.now();
  const recordFrom = start + warmupMs;
  const end = recordFrom + durationMs;
  const base = flows.map((f) => f.sent);
  let recvAtRecord = 0;
  let recvAtEnd = 0;
  let recording = false;
  let c0 = 0;
  let c1 = 0;
  let g0 = 0;
  let g1 = 0;
  let s0 = systemCpu();
  let s1 = s0;
  await new Promise<void>((resolve) => {
    const tick = (): void => {
      const now = performance.now();
      if (!recording && now >= recordFrom) {
        recording = true;
        const ns = nowNs();
        for (const f of flows) f.dst.sink.recordFromNs = ns;
        recvAtRecord = flows.reduce((s, f) => s + received(f), 0);
        c0 = cpuNow();
        g0 = genCpuSeconds();
        s0 = systemCpu();
      }
      if (now >= end) {
        recvAtEnd = flows.reduce((s, f) => s + received(f), 0);
        c1 = cpuNow();
        g1 = genCpuSeconds();
        s1 = systemCpu();
        resolve();
        return;
      }
      const elapsed = (now - start) / 1000;
      flows.forEach((f, i) => {
        const due = Math.floor(perFlow * elapsed) - (f.sent - base[i]!);
        if (due > 0) {
          const n = Math.min(due, maxBurst);
          f.src.write(batch(f.tpl, n, f.sent % f.users, f.users, nowNs()));
          f.sent += n;
        }
      });
      setTimeout(tick, 0);
    };
    tick();
  });
  const inFlight = flows.reduce((s, f) => s + f.sent - received(f), 0);
  await drain(flows, 10_000);
  const lat = flows.flatMap((f) => Array.from(f.dst.sink.latenciesUs.values()));
  for (const f of flows) {
    f.dst.sink.recordFromNs = Number.POSITIVE_INFINITY;
    f.dst.sink.latenciesUs.clear();
  }
  const secs = durationMs / 1000;
  return {
    ...summarizeLatency(lat),
    targetPerSec: Math.round(totalRate),
    achievedPerSec: Math.round((recvAtEnd - recvAtRecord) / secs),
    inFlightAtEnd: inFlight,
    targetCores: Number(((c1 - c0) / secs).toFixed(3)),
    genCores: Number(((g1 - g0) / secs).toFixed(3)),
    foreignCores: Number(Math.max(0, (s1.proc - s0.proc - (c1 - c0) - (g1 - g0)) / secs).toFixed(3)),
  };
}
