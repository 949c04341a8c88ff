/**
 * The measurement every macro target gets: latency with one route in flight, peak throughput
 * with CPU accounting, and (optionally) latency at half of that peak. Plus CPU pinning of the
 * load generator (this process) for the duration of a scenario.
 */
import type { BenchContext } from './context.ts';
import { paced, peak, pingPong, type Flow, type PacedResult, type PeakResult, type PingPongResult } from './loadgen.ts';
import { cpuPlan, pin, systemCpu } from './procfs.ts';
import { setTimeout as sleep } from 'node:timers/promises';

export interface Measurement {
  /** CPU other processes were using when the measurement began (cores), and how long we waited for less */
  quietness: { foreignCores: number; waitedMs: number };
  latency1: PingPongResult;
  /**
   * one route in flight with the generator moved onto the measured process's CPU: what the
   * forwarding costs without a cross-CPU wake-up (perf-probe: ~21 µs on one core against ~100 µs
   * across cores for jabberd2 and the byte relay alike); null when not pinned
   */
  latency1SameCore: PingPongResult | null;
  peak: PeakResult;
  halfPeak: PacedResult | null;
  /**
   * latency at the same fixed load for every target that gets a half-peak phase
   * (BENCH_FIXED_RATE, default 60 k routes/s: about half the jabberd2 router's peak on the
   * reference machine), so that targets of very different peaks are compared under one load
   */
  atFixedRate: PacedResult | null;
}

/** The fixed load of `atFixedRate`, routes/s over both directions. */
export function fixedRate(quick: boolean): number {
  return quick ? 5_000 : Number(process.env['BENCH_FIXED_RATE'] ?? 60_000) || 60_000;
}

export function params(quick: boolean): {
  pings: number; pingWarmup: number; warmupMs: number; windows: number; windowMs: number; window: number; batch: number; pacedWarmupMs: number; pacedMs: number;
} {
  const p = quick
    ? { pings: 40, pingWarmup: 10, warmupMs: 100, windows: 2, windowMs: 150, window: 1024, batch: 64, pacedWarmupMs: 50, pacedMs: 300 }
    : { pings: 2000, pingWarmup: 300, warmupMs: 1000, windows: 3, windowMs: 1500, window: 4096, batch: 64, pacedWarmupMs: 500, pacedMs: 3000 };
  // knobs for experiments (recorded in the results by the caller)
  const env = (k: string, d: number): number => Number(process.env[k] ?? d) || d;
  p.window = env('BENCH_WINDOW', p.window);
  p.batch = env('BENCH_BATCH', p.batch);
  p.windowMs = env('BENCH_WINDOW_MS', p.windowMs);
  return p;
}

/** CPU of the measured processes: instant (/proc) and exact (IPC for node children). */
export interface CpuSource {
  now: () => number;
  exact: () => Promise<number>;
}

/** Process CPU in use on the machine over `ms` (cores), this process excluded. */
async function busyCores(ms: number): Promise<number> {
  const a = systemCpu();
  const u0 = process.cpuUsage();
  await sleep(ms);
  const b = systemCpu();
  const u1 = process.cpuUsage();
  const own = (u1.user - u0.user + u1.system - u0.system) / 1e6;
  return Math.max(0, (b.proc - a.proc - own) / (ms / 1000));
}

/**
 * Waits (up to `maxMs`) until other processes use less than a quarter of a core, as
 * perf-probe's runs did; measures anyway after that, and records what it found.
 */
export async function waitForQuiet(ctx: BenchContext, label: string, maxMs: number): Promise<{ foreignCores: number; waitedMs: number }> {
  const t0 = performance.now();
  let f = await busyCores(ctx.quick ? 50 : 300);
  while (f > 0.25 && performance.now() - t0 < maxMs) {
    f = await busyCores(500);
  }
  const waitedMs = Math.round(performance.now() - t0);
  if (f > 0.25) ctx.progress(`${label}: other processes use ${(f * 100).toFixed(0)} % of a core; measuring anyway (waited ${(waitedMs / 1000).toFixed(1)} s)`);
  return { foreignCores: Number(f.toFixed(2)), waitedMs };
}

export async function measure(ctx: BenchContext, label: string, flows: Flow[], cpu: CpuSource, withHalfPeak: boolean, pinning: Pinning | null = null, withFixed = withHalfPeak): Promise<Measurement> {
  const p = params(ctx.quick);
  const quietness = await waitForQuiet(ctx, label, ctx.quick ? 0 : 20_000);
  ctx.progress(`${label}: latency, one route in flight (${p.pings} routes)`);
  const latency1 = await pingPong(flows, p.pings, p.pingWarmup);
  let latency1SameCore: PingPongResult | null = null;
  if (pinning !== null && pinning.pinned) {
    latency1SameCore = await pinning.sameCore(() => pingPong(flows, p.pings, p.pingWarmup));
    ctx.progress(`${label}: latency on one core (generator moved to CPU ${pinning.cpuFor(0)}): p50 ${latency1SameCore.p50Us} µs, p99 ${latency1SameCore.p99Us} µs`);
  }
  ctx.progress(`${label}: latency p50 ${latency1.p50Us} µs, p99 ${latency1.p99Us} µs; peak throughput (${p.windows} × ${p.windowMs} ms)`);
  const pk = await peak(flows, { warmupMs: p.warmupMs, windows: p.windows, windowMs: p.windowMs, window: p.window, batch: p.batch, cpuNow: cpu.now, cpuExact: cpu.exact });
  ctx.progress(`${label}: ${Math.round(pk.stanzasPerSec).toLocaleString('en')} routes/s, ${pk.cpuSecPerMillion.toFixed(2)} CPU s per million, measured process ${(pk.targetCores * 100).toFixed(0)} % of a core, generator ${(pk.genCores * 100).toFixed(0)} %, other processes ${(pk.foreignCores * 100).toFixed(0)} %, irq ${(pk.irqCores * 100).toFixed(0)} %, steal ${(pk.stealCores * 100).toFixed(0)} %`);
  let halfPeak: PacedResult | null = null;
  let atFixedRate: PacedResult | null = null;
  if (withFixed) {
    const fixed = fixedRate(ctx.quick);
    ctx.progress(`${label}: latency at a fixed ${fixed.toLocaleString('en')} routes/s for ${p.pacedMs} ms`);
    atFixedRate = await paced(flows, fixed, p.pacedWarmupMs, p.pacedMs, cpu.now);
    ctx.progress(`${label}: at ${fixed.toLocaleString('en')} routes/s p50 ${atFixedRate.p50Us} µs, p99 ${atFixedRate.p99Us} µs (measured process ${(atFixedRate.targetCores * 100).toFixed(0)} % of a core, other processes ${(atFixedRate.foreignCores * 100).toFixed(0)} %)`);
  }
  if (withHalfPeak) {
    const rate = pk.stanzasPerSec / 2;
    ctx.progress(`${label}: latency at half of peak (${Math.round(rate).toLocaleString('en')} routes/s for ${p.pacedMs} ms)`);
    halfPeak = await paced(flows, rate, p.pacedWarmupMs, p.pacedMs, cpu.now);
    ctx.progress(`${label}: at half peak p50 ${halfPeak.p50Us} µs, p99 ${halfPeak.p99Us} µs (achieved ${halfPeak.achievedPerSec.toLocaleString('en')} routes/s; measured process ${(halfPeak.targetCores * 100).toFixed(0)} % of a core, other processes ${(halfPeak.foreignCores * 100).toFixed(0)} %)`);
  }
  return { quietness, latency1, latency1SameCore, peak: pk, halfPeak, atFixedRate };
}

/** Pinning for one scenario: the generator on one CPU, each target on another. */
export class Pinning {
  readonly plan: ReturnType<typeof cpuPlan>;
  constructor(ctx: BenchContext, targets: number) {
    this.plan = ctx.pin ? cpuPlan(targets) : null;
    if (this.plan !== null && !pin(process.pid, [this.plan.gen])) this.plan = null;
  }
  get pinned(): boolean {
    return this.plan !== null;
  }
  cpuFor(i: number): number | null {
    return this.plan?.targets[i] ?? null;
  }
  describe(): string {
    return this.plan === null ? 'not pinned' : `generator on CPU ${this.plan.gen}, measured process(es) on CPU ${this.plan.targets.join(', ')}`;
  }
  release(): void {
    if (this.plan !== null) pin(process.pid, this.plan.all);
  }
  /** Runs `fn` with the generator on the first measured process's CPU, then puts it back. */
  async sameCore<T>(fn: () => Promise<T>): Promise<T> {
    const plan = this.plan;
    if (plan === null) return fn();
    pin(process.pid, [plan.targets[0]!]);
    try {
      return await fn();
    } finally {
      pin(process.pid, [plan.gen]);
    }
  }
}
