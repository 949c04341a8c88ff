/**
 * tinybench runner for the micro-benchmarks: each task function does `ops` operations per call
 * (a batch, so that timer overhead does not dominate); rows report per-operation figures.
 */
import { Bench } from 'tinybench';
import { sig3 } from './stats.ts';

export interface MicroTask {
  name: string;
  fn: () => void;
  /** operations per call */
  ops: number;
  /** bytes per operation, for MB/s (0: none) */
  bytes?: number;
}

export interface MicroRow {
  task: string;
  nsPerOp: number;
  opsPerSec: number;
  mbPerSec: number | null;
  rmePct: number;
  samples: number;
}

export async function runMicro(tasks: readonly MicroTask[], quick: boolean, timeMs = 300): Promise<MicroRow[]> {
  const bench = quick
    ? new Bench({ time: 10, warmupTime: 2, iterations: 2, warmupIterations: 1 })
    : new Bench({ time: timeMs, warmupTime: 100, iterations: 8, warmupIterations: 4 });
  for (const t of tasks) bench.add(t.name, t.fn);
  await bench.run();
  return tasks.map((t, i) => {
    const r = bench.tasks[i]!.result;
    if (r.state !== 'completed') throw new Error(`micro task '${t.name}' did not complete: ${r.state}${'error' in r ? `: ${String((r as { error?: unknown }).error)}` : ''}`);
    const ns = (r.latency.mean * 1e6) / t.ops;
    return {
      task: t.name,
      nsPerOp: sig3(ns),
      opsPerSec: Math.round(1e9 / ns),
      mbPerSec: t.bytes ? sig3((t.bytes * 1e3) / ns) : null,
      rmePct: sig3((r.latency.moe / r.latency.mean) * 100),
      samples: r.latency.samplesCount,
    };
  });
}
