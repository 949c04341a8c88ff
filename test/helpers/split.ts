/**
 * Feeders for reassembling parsers: the same bytes cut into chunks in different ways. Every
 * reassembling parser is tested with at least `whole`, `byByte` and a few `randomSplits`.
 *
 * Random splits are seeded (mulberry32) and the seed is part of the feeder's name, so a failing
 * subtest names its seed. Seeds: fixed ones plus one new per run; set SPLIT_SEEDS=1,2,3 to replay.
 */

/** Cuts `data` into chunks (views on `data`; never empty unless `data` is). */
export type Split = (data: Uint8Array) => Uint8Array[];

export interface Feeder {
  readonly name: string;
  readonly split: Split;
}

/** Tiny seeded PRNG (mulberry32): returns floats in [0, 1). */
export function prng(seed: number): () => number {
  let a = seed >>> 0;
  return () => {
    a = (a + 0x6d2b79f5) >>> 0;
    let t = a;
    t = Math.imul(t ^ (t >>> 15), t | 1);
    t ^= t + Math.imul(t ^ (t >>> 7), t | 61);
    return ((t ^ (t >>> 14)) >>> 0) / 4294967296;
  };
}

export const whole: Split = (data) => [data];

export const byByte: Split = (data) => {
  const out: Uint8Array[] = [];
  for (let i = 0; i < data.length; i++) out.push(data.subarray(i, i + 1));
  return out;
};

/** Cuts `data` at the given offsets (any order; out-of-range and duplicate offsets ignored). */
export function splitAt(data: Uint8Array, offsets: readonly number[]): Uint8Array[] {
  const cuts = [...new Set(offsets)].filter((o) => o > 0 && o < data.length).sort((a, b) => a - b);
  const out: Uint8Array[] = [];
  let prev = 0;
  for (const c of cuts) {
    out.push(data.subarray(prev, c));
    prev = c;
  }
  out.push(data.subarray(prev));
  return out;
}

/**
 * A feeder cutting its input into at most `n` chunks at positions drawn from a PRNG seeded with
 * `seed`: deterministic for a given seed and input length. Half the cuts are clustered (chunks of
 * 1..8 bytes) so that multi-byte characters and tags get split often.
 */
export function randomSplits(seed: number, n: number): Split {
  return (data) => {
    const rnd = prng(seed ^ data.length);
    const offsets: number[] = [];
    const cuts = Math.max(0, Math.min(n - 1, data.length - 1));
    for (let k = 0; k < cuts; k++) {
      const prev = offsets[offsets.length - 1];
      offsets.push(k % 2 === 1 && prev !== undefined ? prev + 1 + Math.floor(rnd() * 8) : 1 + Math.floor(rnd() * (data.length - 1)));
    }
    return splitAt(data, offsets);
  };
}

function seeds(): number[] {
  const env = process.env['SPLIT_SEEDS'];
  if (env !== undefined && env.trim() !== '') return env.split(',').map((s) => Number.parseInt(s.trim(), 10));
  return [1, 42, 0xc0ffee, (Date.now() ^ (process.pid << 8)) >>> 0];
}

/** whole, byte by byte, and seeded random splits into up to `n` chunks (seed in the name). */
export function feeders(n = 64): Feeder[] {
  return [
    { name: 'whole', split: whole },
    { name: 'byte by byte', split: byByte },
    ...seeds().map((seed) => ({ name: `random splits seed=${seed} (replay: SPLIT_SEEDS=${seed})`, split: randomSplits(seed, n) })),
  ];
}

export const utf8 = (s: string): Uint8Array => new TextEncoder().encode(s);
