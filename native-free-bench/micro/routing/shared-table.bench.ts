/**
 * SharedTable micro-benchmark: insert and delete rate, hit and miss lookups (string key, UTF-8
 * bytes, pre-hashed), the cost of the hash alone, and memory for 1 M keys against a Map.
 *
 *   node --expose-gc --import tsx native-free-bench/micro/routing/shared-table.bench.ts
 *
 * Lookups run on the main thread over all 1 M keys (the table, 16 MiB, is far larger than L2, as
 * in production) and over a hot set of 10k. Each tinybench sample is a batch of 1024 lookups; the
 * table prints per-lookup figures. Compare with /work/shared/docs/perf-probe.md §5 (worker figures).
 * Env: BENCH_KEYS (default 1000000), BENCH_TIME ms per task (default 500), BENCH_WARMUP ms per
 * task (default 200), BENCH_JSON: also write the figures to this file (native-free-bench/run.ts).
 */
import '../../guard.ts';
import { writeFileSync } from 'node:fs';
import { Bench } from 'tinybench';
import { checkNativeFree } from '../../guard.ts';
import { hash64BytesInto, hash64Into } from '../../../src/routing/hash.ts';
import {
  SharedTable,
  capacityPow2For,
  kHeaderLines,
  kHeaderWords,
  kLineFull,
  kLineKeys,
  kLineOccShift,
  kLineOverflowMax,
  kLineOverflowShift,
  kLineSlots,
  kLineWords,
} from '../../../src/routing/shared-table.ts';

const N = Number(process.env['BENCH_KEYS'] ?? 1_000_000);
const TIME = Number(process.env['BENCH_TIME'] ?? 500);
const WARMUP = Number(process.env['BENCH_WARMUP'] ?? 200);
const BATCH = 1024;
const gc = (globalThis as { gc?: () => void }).gc;

// 23-29 byte JIDs. Template literals build cons strings (ropes); a JID decoded from stream bytes
// is a flat string, so flatten through a Buffer like the framer's toString() would.
const jid = (i: number, tag: string): string => Buffer.from(`${tag}${i}@d${i % 997}.example.com`).toString();
const hitKeys = Array.from({ length: N }, (_, i) => jid(i, 'user'));
const missKeys = Array.from({ length: N }, (_, i) => jid(i, 'nobody'));

// pre-hashed keys and the UTF-8 bytes of all hit keys back to back
const hitLo = new Int32Array(N);
const hitHi = new Int32Array(N);
const missLo = new Int32Array(N);
const missHi = new Int32Array(N);
const utf8 = Buffer.from(hitKeys.join(''));
const utf8Start = new Int32Array(N + 1);
{
  const h = new Int32Array(2);
  let off = 0;
  for (let i = 0; i < N; i++) {
    hash64Into(hitKeys[i]!, h);
    hitLo[i] = h[0]!;
    hitHi[i] = h[1]!;
    hash64Into(missKeys[i]!, h);
    missLo[i] = h[0]!;
    missHi[i] = h[1]!;
    utf8Start[i] = off;
    off += Buffer.byteLength(hitKeys[i]!);
  }
  utf8Start[N] = off;
}

// ---- insert / delete rate (manual timing; a filling table does not suit per-sample timing) ----
// Keys in creation order: in production the key was just decoded, so its string is in cache while
// its line (random, by hash) is not; this models that.

const capacityPow2 = capacityPow2For(N);
function median(xs: number[]): number {
  const s = [...xs].sort((a, b) => a - b);
  return s[s.length >> 1]!;
}
const insertRates: number[] = [];
const deleteRates: number[] = [];
for (let rep = 0; rep < 5; rep++) {
  const t = SharedTable.create(capacityPow2);
  let t0 = performance.now();
  for (let k = 0; k < N; k++) t.set(hitKeys[k]!, k);
  insertRates.push(N / (performance.now() - t0) / 1e3);
  t0 = performance.now();
  for (let k = 0; k < N; k++) t.delete(hitKeys[k]!);
  deleteRates.push(N / (performance.now() - t0) / 1e3);
}

const table = SharedTable.create(capacityPow2);
for (let i = 0; i < N; i++) table.set(hitKeys[i]!, i);
const plain = SharedTable.attach(table.sab, { atomicReads: false });
const atomic = SharedTable.attach(table.sab, { atomicReads: true });

// probe lengths in lines (64 B, one cache line each), read from the layout
function probeStats(): { hit: number; miss: number } {
  const w = new Int32Array(table.sab);
  const lines = w[kHeaderLines]!;
  const mask = lines - 1;
  const occ = (l: number): number => (w[kHeaderWords + l * kLineWords]! >>> kLineOccShift) & kLineFull;
  const ovf = (l: number): number => (w[kHeaderWords + l * kLineWords]! >>> kLineOverflowShift) & kLineOverflowMax;
  let hitSum = 0;
  let hits = 0;
  let missSum = 0;
  for (let l = 0; l < lines; l++) {
    for (let k = 0; k < kLineSlots; k++) {
      if ((occ(l) & (1 << k)) === 0) continue;
      const home = w[kHeaderWords + l * kLineWords + kLineKeys + 2 * k]! & mask;
      hitSum += ((l - home) & mask) + 1;
      hits++;
    }
    // a miss homed at line l reads lines up to and including the first one no entry overflowed from
    let n = 1;
    for (let j = l; ovf(j) !== 0; j = (j + 1) & mask) n++;
    missSum += n;
  }
  return { hit: hitSum / hits, miss: missSum / lines };
}
const probes = probeStats();

// ---- memory ----

function heapAfterGc(): number {
  gc?.();
  gc?.();
  return process.memoryUsage().heapUsed;
}
let mapHeap = Number.NaN;
let mapStringsHeap = Number.NaN;
if (gc !== undefined) {
  // a worker-local Map holds its own copies of the keys: measure the Map alone and with fresh strings
  const h0 = heapAfterGc();
  let m: Map<string, number> | null = new Map();
  for (let i = 0; i < N; i++) m.set(hitKeys[i]!, i);
  mapHeap = heapAfterGc() - h0;
  if (m.size !== N) throw new Error('unreachable'); // keeps m alive across the measurement
  m = null;
  const h1 = heapAfterGc();
  m = new Map();
  for (let i = 0; i < N; i++) m.set(jid(i, 'user'), i);
  mapStringsHeap = heapAfterGc() - h1;
  if (m.size !== N) throw new Error('unreachable');
  m = null;
}
const baseline = new Map<string, number>();
for (let i = 0; i < N; i++) baseline.set(hitKeys[i]!, i);

// ---- lookups ----
// Keys are visited in allocation order, so the key string (or its bytes) is in cache, as it is for
// a JID just decoded from a stanza, while its line is wherever the hash puts it. Two sets: all
// 1 M keys (every line access misses cache and TLB: a 16 MiB table against 2 MiB L2; page walks are
// dear under KVM) and a hot set of the first 10k keys (the active chatters; lines stay in L2).

const HOT = Math.min(10_000, N);
let sink = 0;
const h2 = new Int32Array(2);
const bench = new Bench({ time: TIME, warmupTime: WARMUP });

for (const [set, len] of [['all', N], ['hot10k', HOT]] as const) {
  let cursor = 0;
  // start of the next batch of BATCH keys in [0, len) (wraps; len >= BATCH)
  const next = (): number => {
    const c = cursor;
    cursor = c + 2 * BATCH > len ? 0 : c + BATCH;
    return c;
  };
  const tag = (name: string): string => `${name} [${set}]`;
  bench
    .add(tag('hash64Into(string)'), () => {
      const c = next();
      for (let k = 0; k < BATCH; k++) hash64Into(hitKeys[c + k]!, h2);
      sink ^= h2[0]!;
    })
    .add(tag('hash64BytesInto(utf8)'), () => {
      const c = next();
      for (let k = 0; k < BATCH; k++) {
        const i = c + k;
        hash64BytesInto(utf8, utf8Start[i]!, utf8Start[i + 1]!, h2);
      }
      sink ^= h2[0]!;
    })
    .add(tag('hit  reader.get(string)'), () => {
      const c = next();
      for (let k = 0; k < BATCH; k++) sink ^= plain.get(hitKeys[c + k]!)!;
    })
    .add(tag('hit  reader.getUtf8(bytes)'), () => {
      const c = next();
      for (let k = 0; k < BATCH; k++) {
        const i = c + k;
        sink ^= plain.getUtf8(utf8, utf8Start[i]!, utf8Start[i + 1]!)!;
      }
    })
    .add(tag('hit  reader.getByHash'), () => {
      const c = next();
      for (let k = 0; k < BATCH; k++) {
        const i = c + k;
        sink ^= plain.getByHash(hitLo[i]!, hitHi[i]!)!;
      }
    })
    .add(tag('hit  reader.getByHash, atomicReads'), () => {
      const c = next();
      for (let k = 0; k < BATCH; k++) {
        const i = c + k;
        sink ^= atomic.getByHash(hitLo[i]!, hitHi[i]!)!;
      }
    })
    .add(tag('hit  writer table.get(string)'), () => {
      const c = next();
      for (let k = 0; k < BATCH; k++) sink ^= table.get(hitKeys[c + k]!)!;
    })
    .add(tag('miss reader.get(string)'), () => {
      const c = next();
      for (let k = 0; k < BATCH; k++) if (plain.get(missKeys[c + k]!) === undefined) sink++;
    })
    .add(tag('miss reader.getByHash'), () => {
      const c = next();
      for (let k = 0; k < BATCH; k++) {
        const i = c + k;
        if (plain.getByHash(missLo[i]!, missHi[i]!) === undefined) sink++;
      }
    })
    .add(tag('miss reader.getByHash, atomicReads'), () => {
      const c = next();
      for (let k = 0; k < BATCH; k++) {
        const i = c + k;
        if (atomic.getByHash(missLo[i]!, missHi[i]!) === undefined) sink++;
      }
    })
    .add(tag('base Map<string,number>.get'), () => {
      const c = next();
      for (let k = 0; k < BATCH; k++) sink ^= baseline.get(hitKeys[c + k]!)!;
    });
}

await bench.run();

const mib = (b: number): string => (b / 1048576).toFixed(1);
console.log(`SharedTable, ${N.toLocaleString('en')} keys, Node ${process.version} ${process.arch}, tinybench ${TIME} ms/task, batches of ${BATCH}`);
console.log(
  `capacityPow2 ${capacityPow2}: ${table.capacity / kLineSlots} lines of ${kLineSlots} = ${table.capacity} slots, load ${table.loadFactor.toFixed(3)}, ` +
    `SAB ${table.sab.byteLength} B = ${mib(table.sab.byteLength)} MiB (${(table.sab.byteLength / N).toFixed(1)} B/key); ` +
    `lines (64 B) read per lookup: hit ${probes.hit.toFixed(2)}, miss ${probes.miss.toFixed(2)}`,
);
console.log(
  `insert ${median(insertRates).toFixed(2)} M/s, delete ${median(deleteRates).toFixed(2)} M/s ` +
    '(median of 5; entries never move: a delete clears its slot and the overflow counts it raised)',
);
console.log(
  gc === undefined
    ? 'Map heap: run with --expose-gc to measure'
    : `Map<string,number> of the same keys: ${mib(mapHeap)} MiB heap (keys shared), ${mib(mapStringsHeap)} MiB with its own key strings`,
);
const rows = bench.tasks.map((t) => {
  const r = t.result;
  if (r.state !== 'completed') return { task: t.name, state: r.state };
  const ns = (r.latency.mean * 1e6) / BATCH;
  return {
    task: t.name,
    'ns/op': Number(ns.toFixed(1)),
    'M ops/s': Number((1e3 / ns).toFixed(2)),
    '±%': Number(((r.latency.moe / r.latency.mean) * 100).toFixed(1)),
    samples: r.latency.samplesCount,
  };
});
console.table(rows);
if (sink === 0.5) console.log(sink);
const jsonOut = process.env['BENCH_JSON'];
if (jsonOut !== undefined && jsonOut !== '') {
  writeFileSync(jsonOut, JSON.stringify({
    guard: await checkNativeFree(),
    keys: N,
    capacitySlots: table.capacity,
    loadFactor: Number(table.loadFactor.toFixed(3)),
    sabBytes: table.sab.byteLength,
    probes: { hit: Number(probes.hit.toFixed(2)), miss: Number(probes.miss.toFixed(2)) },
    insertMPerSec: Number(median(insertRates).toFixed(2)),
    deleteMPerSec: Number(median(deleteRates).toFixed(2)),
    mapHeapMiB: Number.isNaN(mapHeap) ? null : Number(mib(mapHeap)),
    mapOwnKeysHeapMiB: Number.isNaN(mapStringsHeap) ? null : Number(mib(mapStringsHeap)),
    unit: 'per lookup',
    rows,
  }, null, 2) + '\n');
}
