/**
 * The measurement every macro target gets: latency with one route in flight, peak throughput
 * with CPU accounting, and (optionally) latency at half of that peak. Plus CPU pinning of the
 * load generator (this process) for the duration of a scenario.
 */
import type { BenchContext } from './context.ts';
import { paced, peak, pingPong, type Flow, type PacedResult, type PeakResult, type PingPongResult } from './loadgen.ts';
import { cpuPlan, pin } from './procfs.ts';

export interface Measurement {
  latency1: PingPongResult;
  peak: PeakResult;
  halfPeak: PacedResult | null;
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

export async function measure(ctx: BenchContext, label: string, flows: Flow[], cpu: () => Promise<number>, withHalfPeak: boolean): Promise<Measurement> {
  const p = params(ctx.quick);
  ctx.progress(`${label}: latency, one route in flight (${p.pings} routes)`);
  const latency1 = await pingPong(flows, p.pings, p.pingWarmup);
  ctx.progress(`${label}: latency p50 ${latency1.p50Us} µs, p99 ${latency1.p99Us} µs; peak throughput (${p.windows} × ${p.windowMs} ms)`);
  const pk = await peak(flows, { warmupMs: p.warmupMs, windows: p.windows, windowMs: p.windowMs, window: p.window, batch: p.batch, cpu });
  ctx.progress(`${label}: ${Math.round(pk.stanzasPerSec).toLocaleString('en')} routes/s, ${pk.cpuSecPerMillion.toFixed(2)} CPU s per million, measured process ${(pk.targetCores * 100).toFixed(0)} % of a core, generator ${(pk.genCores * 100).toFixed(0)} %, other processes ${(pk.foreignCores * 100).toFixed(0)} %, irq ${(pk.irqCores * 100).toFixed(0)} %, steal ${(pk.stealCores * 100).toFixed(0)} %`);
  let halfPeak: PacedResult | null = null;
  if (withHalfPeak) {
    const rate = pk.stanzasPerSec / 2;
    ctx.progress(`${label}: latency at half of peak (${Math.round(rate).toLocaleString('en')} routes/s for ${p.pacedMs} ms)`);
    halfPeak = await paced(flows, rate, p.pacedWarmupMs, p.pacedMs);
    ctx.progress(`${label}: at half peak p50 ${halfPeak.p50Us} µs, p99 ${halfPeak.p99Us} µs (achieved ${halfPeak.achievedPerSec.toLocaleString('en')} routes/s)`);
  }
  return { latency1, peak: pk, halfPeak };
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
}
