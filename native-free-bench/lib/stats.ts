/** Small statistics helpers (pure). */

export function median(xs: readonly number[]): number {
  return percentile(xs, 50);
}

/** Nearest-rank percentile (p in 0..100) of an unsorted sample; NaN when empty. */
export function percentile(xs: readonly number[], p: number): number {
  if (xs.length === 0) return Number.NaN;
  const s = Float64Array.from(xs).sort();
  const rank = Math.ceil((p / 100) * s.length);
  return s[Math.min(s.length - 1, Math.max(0, rank - 1))]!;
}

export interface LatencySummary {
  samples: number;
  p50Us: number;
  p90Us: number;
  p99Us: number;
  p999Us: number;
  maxUs: number;
}

export function summarizeLatency(us: readonly number[]): LatencySummary {
  const s = Float64Array.from(us).sort();
  const at = (p: number): number => (s.length === 0 ? Number.NaN : s[Math.min(s.length - 1, Math.max(0, Math.ceil((p / 100) * s.length) - 1))]!);
  return { samples: s.length, p50Us: r1(at(50)), p90Us: r1(at(90)), p99Us: r1(at(99)), p999Us: r1(at(99.9)), maxUs: r1(s.length ? s[s.length - 1]! : Number.NaN) };
}

export function r1(x: number): number {
  return Math.round(x * 10) / 10;
}

export function r3(x: number): number {
  return Math.round(x * 1000) / 1000;
}

/** Rounds to 3 significant digits (keeps JSON readable). */
export function sig3(x: number): number {
  if (!Number.isFinite(x) || x === 0) return x;
  return Number(x.toPrecision(3));
}
