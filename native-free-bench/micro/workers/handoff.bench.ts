/**
 * Handing socket bytes to a framing worker thread: transferred buffers (piscina, as the product
 * does, and raw worker_threads messages) against a SharedArrayBuffer ring pair, on the real
 * work — the worker frames the chunks with the ByteFramer and returns the stanzas' bytes and
 * lengths; main consumes them in order.
 *
 * Input: the macro-benchmarks' routes (lib/stanzas.ts: router→sm 356 B and sm→router 377 B,
 * alternating) as one stream, cut into chunks of 64 KiB and 4 KiB (cuts fall anywhere inside
 * routes). Every chunk is first copied to a fresh ArrayBuffer on main, in every row including
 * the inline one: that stands for the socket read's own buffer (which is what piscina and raw
 * messages transfer; the ring copies it once more into shared memory); the 'read simulation'
 * row is that copy alone. Channels, each with ONE worker thread and one long-lived framer:
 *
 * - inline: ByteFramer on main, no hand-off (the reference).
 * - piscina: the product's way (src/workers/pool.ts): a Piscina with one thread,
 *   concurrentTasksPerWorker 2, running the product's worker (src/workers/worker-entry.mjs →
 *   worker-main.ts frameTask); one chunk per task, its ArrayBuffer in transferList; the result
 *   {bytes, nums} is structured-cloned back (piscina does not transfer results); 2 tasks in flight.
 * - raw postMessage: worker_threads messages, same frameTask in the worker, the chunk transferred
 *   to it and the result's ArrayBuffers transferred back; 2 in flight. Also 'raw (clone back)':
 *   the result copied back as piscina does, to separate piscina's own cost from the transfer.
 * - SAB ring: main copies each chunk into an input ring (length-prefixed records) and publishes
 *   it (Atomics.store; Atomics.notify only when the worker sleeps); the worker frames in place (a
 *   view over the shared memory; a record wrapping around the ring's end is copied first), writes
 *   each stanza as a record of an output ring plus an end-of-chunk marker; main copies what is
 *   there out of the ring in one piece (the ring is reused; stanzas must outlive it) and consumes
 *   it. Waiting: 'Atomics.wait / waitAsync' sleeps at once on both sides (worker Atomics.wait,
 *   main Atomics.waitAsync); 'poll ≤ 50 µs, then wait' first polls (main: setImmediate turns;
 *   worker: a spin) for up to 50 µs. 2 chunks in flight, like the others; ring full → the
 *   writer waits (checked at the start by a self-test with tiny rings, no in-flight cap, and
 *   records that wrap). See handoff-worker.ts for the ring format.
 * - 8 in flight: raw postMessage (transfer both ways) and the SAB ring (wait) with a deeper
 *   pipeline (the product keeps 2).
 *
 * Main's consumption, the same for every channel: per stanza, its length summed and its first
 * and last byte checked ('<', '>'). Each run checks that the stanzas returned add up to the
 * input (count and bytes) and throws otherwise.
 *
 * Figures: stanzas/s and µs per stanza (wall), the main thread's CPU per stanza
 * (/proc/thread-self/schedstat, read on main: ns resolution; else /proc/thread-self/stat, 10 ms
 * ticks), the rest of the process's CPU per stanza (process.cpuUsage() minus main: the worker
 * plus V8/libuv helper threads), medians over rounds interleaving the channels; and the round
 * trip of one chunk holding one route, median of ~500 (sample by sample across channels).
 *
 *   npx tsx native-free-bench/micro/workers/handoff.bench.ts [--quick]
 */
import '../../guard.ts';
import { checkNativeFree } from '../../guard.ts';
import { readFileSync } from 'node:fs';
import { fileURLToPath } from 'node:url';
import { Worker } from 'node:worker_threads';
import { Piscina } from 'piscina';
import { isMain, standalone, type BenchContext, type SectionResult } from '../../lib/context.ts';
import { clkTck } from '../../lib/procfs.ts';
import { median, sig3, summarizeLatency, type LatencySummary } from '../../lib/stats.ts';
import { batch, nowNs, routerToSm, smToRouter } from '../../lib/stanzas.ts';
import { ByteFramer, type ByteFramerSink } from '../../../src/xml/byte-framer.ts';
import { StreamFramer, type FramerHandler, type FramerLimits } from '../../../src/xml/stream-framer.ts';
import type { XmlElement } from '../../../src/xml/node.ts';
import { kBytes } from '../../../src/workers/codec.ts';
import type { AttachSpec, FrameResult, FrameTask } from '../../../src/workers/messages.ts';
import { kR, kStop, kW, kWraps, kWWaiting, newRing, Ring, type RawReply, type RawRequest, type RawWorkerData, type RingWorkerData } from './handoff-worker.ts';

const HEADER = Buffer.from(`<?xml version='1.0'?><stream:stream xmlns:stream='http://etherx.jabber.org/streams' version='1.0' id='x'>`);
const kLimits: FramerLimits = { maxStanzaBytes: 2 << 20, maxDepth: 64 };
const PRODUCT_ENTRY = fileURLToPath(new URL('../../../src/workers/worker-entry.mjs', import.meta.url));
const WORKER_ENTRY = fileURLToPath(new URL('./handoff-worker.mjs', import.meta.url));
/** output ring of the SAB channel: room for the stanzas of a few chunks (a stanza must fit) */
const OUT_RING = 1 << 20;
const PIPELINE = 2;
const DEEP = 8;
const POLL_US = 50;

type WaitAsyncResult = { async: false; value: 'not-equal' | 'timed-out' } | { async: true; value: Promise<'ok' | 'timed-out'> };

// ES2024 (not in this project's lib): Node 20 has it
const waitAsync = (Atomics as unknown as { waitAsync(a: Int32Array, i: number, v: number, t?: number): WaitAsyncResult }).waitAsync.bind(Atomics);

// --- accounting ------------------------------------------------------------------------------

let cpuSource: 'schedstat' | 'stat' | 'none' | null = null;

/** CPU time of the CALLING thread (call it on main), ns; NaN when /proc is not there. */
function threadCpuNs(): number {
  if (cpuSource === null || cpuSource === 'schedstat') {
    try {
      const s = readFileSync('/proc/thread-self/schedstat', 'utf8');
      const ns = Number(s.slice(0, s.indexOf(' ')));
      if (Number.isFinite(ns)) {
        cpuSource = 'schedstat';
        return ns;
      }
    } catch {
      // fall through
    }
    cpuSource = 'stat';
  }
  if (cpuSource === 'stat') {
    try {
      const s = readFileSync('/proc/thread-self/stat', 'utf8');
      const f = s.slice(s.lastIndexOf(')') + 2).split(' ');
      return ((Number(f[11]) + Number(f[12])) * 1e9) / clkTck();
    } catch {
      cpuSource = 'none';
    }
  }
  return Number.NaN;
}

/** What main saw come back; checked against the input after each run. */
class Acc {
  stanzas = 0;
  bytes = 0;
  /** one stanza at bytes[off, off + len) */
  take(bytes: Uint8Array, off: number, len: number): void {
    if (len <= 0 || bytes[off] !== 0x3c || bytes[off + len - 1] !== 0x3e) throw new Error(`stanza ${this.stanzas}: bad bytes (length ${len})`);
    this.stanzas++;
    this.bytes += len;
  }
  /** a frameTask result: nums is (kBytes, length)* for ByteFramer stanzas */
  takeEncoded(r: { bytes: Uint8Array; nums: Int32Array; errors: number }): void {
    if (r.errors !== 0) throw new Error(`the worker reported ${r.errors} error(s)`);
    const nums = r.nums;
    let off = 0;
    for (let i = 0; i < nums.length; i += 2) {
      if (nums[i] !== kBytes) throw new Error(`unexpected event code ${nums[i]} (only stanza bytes expected)`);
      const len = nums[i + 1]!;
      this.take(r.bytes, off, len);
      off += len;
    }
    if (off !== r.bytes.length) throw new Error(`result has ${r.bytes.length} bytes, its lengths add up to ${off}`);
  }
}

/** What a socket read costs in buffers: a fresh, whole ArrayBuffer holding the chunk. */
function readSim(src: Uint8Array): Buffer {
  const c = Buffer.allocUnsafeSlow(src.length);
  c.set(src);
  return c;
}

function withTimeout<T>(p: Promise<T>, ms: number, what: string): Promise<T> {
  let timer: NodeJS.Timeout | undefined;
  return Promise.race([
    p,
    new Promise<never>((_, reject) => {
      timer = setTimeout(() => reject(new Error(`${what}: no result within ${ms} ms`)), ms);
    }),
  ]).finally(() => clearTimeout(timer));
}

// --- channels --------------------------------------------------------------------------------

interface Channel {
  name: string;
  /** false: returns no stanzas (the read simulation alone) */
  frames: boolean;
  /** pushes every chunk through, in order; resolves once main consumed every result */
  pump(chunks: readonly Uint8Array[], acc: Acc): Promise<void>;
  close(): Promise<void>;
  /** extra figures for the report */
  info?(): Record<string, unknown>;
}

function streamRoot(): { name: string; scope: Readonly<Record<string, string>> } {
  let r: XmlElement | undefined;
  const h: FramerHandler = { onStreamOpen: (el) => (r = el), onStanza: () => {}, onStreamClose: () => {}, onError: (f) => { throw f; } };
  new StreamFramer(h, kLimits).write(HEADER);
  if (!r) throw new Error('no stream root');
  return { name: r.name, scope: { ...r.scope } };
}

function attachSpec(root: { name: string; scope: Readonly<Record<string, string>> }): AttachSpec {
  return { header: '', tail: new Uint8Array(0), maxStanzaBytes: kLimits.maxStanzaBytes, maxDepth: kLimits.maxDepth, root };
}

function inline(root: { name: string; scope: Readonly<Record<string, string>> }): Channel {
  const framer = new ByteFramer(root, kLimits);
  let acc: Acc | null = null;
  const sink: ByteFramerSink = {
    stanza: (raw) => acc!.take(raw, 0, raw.length),
    close: () => {
      throw new Error('unexpected end of stream');
    },
    fallback: () => {
      throw new Error('unexpected fallback');
    },
  };
  return {
    name: 'inline (ByteFramer on main)',
    frames: true,
    pump: async (chunks, a) => {
      acc = a;
      for (const c of chunks) framer.write(readSim(c), sink);
      acc = null;
    },
    close: async () => {},
  };
}

function readOnly(): Channel {
  return {
    name: 'read simulation only (no framing)',
    frames: false,
    pump: async (chunks) => {
      // what every row pays for the chunk's fresh buffer
      let x = 0;
      for (const c of chunks) x ^= readSim(c)[0]!;
      if (x === -1) throw new Error('unreachable');
    },
    close: async () => {},
  };
}

function piscina(root: { name: string; scope: Readonly<Record<string, string>> }): Channel {
  const p = new Piscina({ filename: PRODUCT_ENTRY, minThreads: 1, maxThreads: 1, concurrentTasksPerWorker: PIPELINE, idleTimeout: Infinity });
  let attach: AttachSpec | null = attachSpec(root);
  return {
    name: 'piscina (product: transfer in, clone back)',
    frames: true,
    pump: (chunks, acc) =>
      new Promise<void>((resolve, reject) => {
        let next = 0;
        let done = 0;
        let failed = false;
        const send = (): void => {
          const i = next++;
          const c = readSim(chunks[i]!);
          const task: FrameTask = { id: 1, attach, chunks: [c], end: false };
          attach = null;
          p.run(task, { transferList: [c.buffer as ArrayBuffer] }).then(
            (res: FrameResult) => {
              if (failed) return;
              try {
                // one thread works through its tasks in order: results resolve in order
                if (i !== done) throw new Error(`result ${i} came back before result ${done}`);
                acc.takeEncoded(res);
                done++;
                if (next < chunks.length) send();
                else if (done === chunks.length) resolve();
              } catch (err) {
                failed = true;
                reject(err as Error);
              }
            },
            (err: unknown) => {
              failed = true;
              reject(err as Error);
            },
          );
        };
        for (let k = 0; k < PIPELINE && next < chunks.length; k++) send();
      }),
    close: () => p.destroy(),
  };
}

function raw(root: { name: string; scope: Readonly<Record<string, string>> }, transfer: boolean, pipeline = PIPELINE): Channel {
  const wd: RawWorkerData = { mode: 'raw', transfer };
  const w = new Worker(WORKER_ENTRY, { workerData: wd });
  let attach: AttachSpec | null = attachSpec(root);
  let onReply: ((m: RawReply) => void) | null = null;
  let onFail: ((err: Error) => void) | null = null;
  let dead: Error | null = null;
  w.on('message', (m: RawReply) => onReply?.(m));
  const fail = (err: Error): void => {
    dead ??= err;
    onFail?.(err);
  };
  w.on('error', fail);
  w.on('exit', (code) => fail(new Error(`raw worker exited with ${code}`)));
  return {
    name: `raw postMessage (${transfer ? 'transfer both ways' : 'transfer in, clone back'})${pipeline !== PIPELINE ? `, ${pipeline} in flight` : ''}`,
    frames: true,
    pump: (chunks, acc) =>
      new Promise<void>((resolve, reject) => {
        if (dead) return reject(dead);
        let next = 0;
        let done = 0;
        const finish = (err: Error | null): void => {
          onReply = null;
          onFail = null;
          if (err) reject(err);
          else resolve();
        };
        const send = (): void => {
          const c = readSim(chunks[next]!);
          const req: RawRequest = { seq: next++, attach, chunk: c };
          attach = null;
          w.postMessage(req, [c.buffer as ArrayBuffer]);
        };
        onFail = finish;
        onReply = (m) => {
          try {
            if (m.seq !== done) throw new Error(`reply ${m.seq} came back before reply ${done}`);
            acc.takeEncoded(m);
            done++;
            if (next < chunks.length) send();
            else if (done === chunks.length) finish(null);
          } catch (err) {
            finish(err as Error);
          }
        };
        for (let k = 0; k < pipeline && next < chunks.length; k++) send();
      }),
    close: async () => {
      w.removeAllListeners('exit');
      await w.terminate();
    },
  };
}

interface RingOptions {
  /** input ring capacity (power of two) */
  inCap: number;
  outCap: number;
  /** largest chunk */
  maxChunk: number;
  /** chunks in flight at most (Infinity: only the ring bounds it) */
  inFlight: number;
  /**
   * before sleeping, main polls the output with setImmediate for this long (µs) and the worker
   * spins watching its input (or the output's room) as long (0: both sleep at once)
   */
  pollUs: number;
}

function ring(root: { name: string; scope: Readonly<Record<string, string>> }, o: RingOptions): Channel {
  const inS = newRing(o.inCap);
  const outS = newRing(o.outCap);
  const input = new Ring(inS);
  const output = new Ring(outS);
  const wd: RingWorkerData = { mode: 'ring', input: inS, output: outS, root, limits: kLimits, maxChunk: o.maxChunk, spinUs: o.pollUs };
  const w = new Worker(WORKER_ENTRY, { workerData: wd });
  let dead: Error | null = null;
  // a dead worker wakes main's waitAsync itself (no timeout on it: V8 would post a delayed
  // task, i.e. a libuv timer, for every wait)
  const died = (err: Error): void => {
    dead ??= err;
    Atomics.notify(output.ctrl, kW);
  };
  w.on('error', died);
  w.on('exit', (code) => died(new Error(`ring worker exited with ${code}`)));
  let records = 0;
  let waits = 0;
  let sleeps = 0;

  /** Copies out whatever the output ring holds, consumes it; returns the end-of-chunk markers seen. */
  const drain = (acc: Acc): number => {
    const w = output.published();
    const avail = (w - output.pos) | 0;
    if (avail === 0) return 0;
    // one copy out of the shared memory (the ring is reused; the stanzas must outlive it)
    const copy = Buffer.allocUnsafeSlow(avail);
    const start = output.pos & output.mask;
    const first = Math.min(avail, output.cap - start);
    output.bytes.copy(copy, 0, start, start + first);
    if (first < avail) output.bytes.copy(copy, first, 0, avail - first);
    output.release(w);
    const words = new Int32Array(copy.buffer, 0, avail >> 2);
    let markers = 0;
    for (let off = 0; off < avail; ) {
      const len = words[off >> 2]!;
      if (len < 0) {
        markers++;
        off += 4;
      } else {
        acc.take(copy, off + 4, len);
        off += 4 + ((len + 3) & ~3);
      }
    }
    return markers;
  };

  /** Waits until the worker published more output (or the worker died), bounded. */
  const waitOutput = async (deadline: number): Promise<void> => {
    waits++;
    const seen = output.pos;
    if (o.pollUs > 0) {
      const until = performance.now() + o.pollUs / 1000;
      while (output.published() === seen && performance.now() < until) await new Promise<void>((r) => setImmediate(r));
    }
    for (;;) {
      if (dead) throw dead;
      if (output.published() !== seen) return;
      if (performance.now() > deadline) throw new Error('ring: no output from the worker in time');
      sleeps++;
      Atomics.store(output.ctrl, kWWaiting, 1);
      const r = waitAsync(output.ctrl, kW, seen);
      if (r.async) await r.value;
      Atomics.store(output.ctrl, kWWaiting, 0);
    }
  };

  return {
    name: `SAB ring (${o.pollUs > 0 ? `poll ≤ ${o.pollUs} µs, then wait` : 'Atomics.wait / waitAsync'})${o.inFlight !== PIPELINE ? `, ${o.inFlight} in flight` : ''}`,
    frames: true,
    pump: async (chunks, acc) => {
      if (dead) throw dead;
      const deadline = performance.now() + 120_000;
      let sent = 0;
      let done = 0;
      let pending: Buffer | null = null;
      while (done < chunks.length) {
        while (sent < chunks.length && sent - done < o.inFlight) {
          pending ??= readSim(chunks[sent]!);
          if (!input.put(pending)) break; // ring full: wait for the worker
          pending = null;
          sent++;
          records++;
          // publish each record at once: the worker may be waiting for it
          input.publish();
        }
        const got = drain(acc);
        done += got;
        if (done > sent) throw new Error(`ring: ${done} chunks done, ${sent} sent`);
        // nothing came back: the input is at its cap (or full), or all of it is sent
        if (got === 0 && done < chunks.length) await waitOutput(deadline);
      }
    },
    close: async () => {
      Atomics.store(input.ctrl, kStop, 1);
      Atomics.notify(input.ctrl, kW);
      Atomics.notify(output.ctrl, kR);
      w.removeAllListeners('exit');
      await w.terminate();
    },
    info: () => ({ inRingBytes: o.inCap, outRingBytes: o.outCap, inFlight: Number.isFinite(o.inFlight) ? o.inFlight : 'ring-bounded', records, wrappedRecordsCopied: Atomics.load(input.ctrl, kWraps), mainWaits: waits, mainSleeps: sleeps }),
  };
}

// --- input -----------------------------------------------------------------------------------

/** About `bytes` of routes, alternating router→sm and sm→router; whole routes. */
function stream(bytes: number): { data: Buffer; routes: number } {
  const a = routerToSm();
  const b = smToRouter();
  const stamp = nowNs();
  const parts: Buffer[] = [];
  for (let u = 0; u < 500; u++) parts.push(batch(a, 1, u, 1000, stamp), batch(b, 1, u, 1000, stamp));
  const block = Buffer.concat(parts);
  const blocks = Math.max(1, Math.round(bytes / block.length));
  if (bytes < block.length) {
    // small: a prefix of whole routes
    let n = 0;
    let len = 0;
    while (len < bytes) len += parts[n++]!.length;
    return { data: Buffer.concat(parts.slice(0, n)), routes: n };
  }
  return { data: Buffer.concat(Array.from({ length: blocks }, () => block)), routes: blocks * parts.length };
}

function chunksOf(b: Buffer, size: number): Buffer[] {
  const out: Buffer[] = [];
  for (let o = 0; o < b.length; o += size) out.push(b.subarray(o, Math.min(b.length, o + size)));
  return out;
}

const sizeName = (size: number): string => (size >= 1024 ? `${size / 1024} KiB` : `${size} B`);
const nextPow2 = (n: number): number => 2 ** Math.ceil(Math.log2(n));

async function check(ch: Channel, chunks: readonly Uint8Array[], routes: number, bytes: number, timeoutMs: number): Promise<void> {
  const acc = new Acc();
  await withTimeout(ch.pump(chunks, acc), timeoutMs, ch.name);
  if (acc.stanzas !== routes || acc.bytes !== bytes) throw new Error(`${ch.name}: got ${acc.stanzas} stanzas / ${acc.bytes} B back, sent ${routes} / ${bytes} B`);
}

interface Sample {
  wallS: number;
  mainNs: number;
  procUs: number;
}

export async function run(ctx: BenchContext): Promise<SectionResult> {
  const guard = await checkNativeFree();
  const root = streamRoot();
  const quick = ctx.quick;
  const sizes = [65536, 4096];
  const bytesPerRun = quick ? 1 << 20 : 48 << 20;
  const rounds = quick ? 1 : 7;
  const latencySamples = quick ? 40 : 500;
  const timeoutMs = quick ? 30_000 : 120_000;
  const maxChunk = Math.max(...sizes);

  // 1. the ring under backpressure: tiny rings, no in-flight cap, chunks that do not divide the
  // ring (records wrap); both the input ring (main waits) and the output ring (worker waits) fill
  const selfCheck = await (async () => {
    const { data, routes } = stream(256 << 10);
    const chunks = chunksOf(data, 3000);
    const ch = ring(root, { inCap: 8192, outCap: 1024, maxChunk: 3000, inFlight: Infinity, pollUs: 0 });
    try {
      await check(ch, chunks, routes, data.length, timeoutMs);
      const info = ch.info!();
      const wrapped = Number(info['wrappedRecordsCopied']);
      if (wrapped === 0) throw new Error('ring self-check: no record wrapped');
      return { ok: true, chunks: chunks.length, routes, wrapped, info };
    } finally {
      await ch.close();
    }
  })();
  ctx.progress(`handoff: ring self-check ok (${selfCheck.routes} routes, ${selfCheck.wrapped} wrapped records)`);

  const { data, routes } = stream(bytesPerRun);
  const oneRoute = batch(routerToSm(), 1, 7, 1000, nowNs());
  const channels: Channel[] = [
    readOnly(),
    inline(root),
    piscina(root),
    raw(root, true),
    raw(root, false),
    ring(root, { inCap: nextPow2(PIPELINE * (maxChunk + 4)), outCap: OUT_RING, maxChunk, inFlight: PIPELINE, pollUs: 0 }),
    ring(root, { inCap: nextPow2(PIPELINE * (maxChunk + 4)), outCap: OUT_RING, maxChunk, inFlight: PIPELINE, pollUs: POLL_US }),
    // a deeper pipeline, for both kinds of channel (the product keeps 2)
    raw(root, true, DEEP),
    ring(root, { inCap: nextPow2(DEEP * (maxChunk + 4)), outCap: 2 * OUT_RING, maxChunk, inFlight: DEEP, pollUs: 0 }),
  ];
  try {
    const chunkSets = sizes.map((s) => ({ size: s, chunks: chunksOf(data, s) }));
    // 2. warm-up (and the first check of every channel)
    for (const { chunks } of chunkSets) {
      const part = chunks.slice(0, Math.max(1, Math.floor(chunks.length / 4)));
      for (const ch of channels) {
        if (!ch.frames) continue;
        // a prefix may end inside a route: finish the stream so that the framers end between routes
        const acc = new Acc();
        await withTimeout(ch.pump(part, acc), timeoutMs, ch.name);
        await withTimeout(ch.pump(chunks.slice(part.length), acc), timeoutMs, ch.name);
        if (acc.stanzas !== routes || acc.bytes !== data.length) throw new Error(`${ch.name}: warm-up got ${acc.stanzas} stanzas / ${acc.bytes} B, sent ${routes} / ${data.length} B`);
      }
    }
    ctx.progress(`handoff: warmed up; ${rounds} round(s) of ${(data.length / 2 ** 20).toFixed(1)} MiB (${routes} routes) per channel and chunk size`);

    // 3. throughput: rounds interleave the channels
    const samples = new Map<string, Sample[]>();
    const gc = (globalThis as { gc?: () => void }).gc;
    for (let r = 0; r < rounds; r++) {
      for (const { size, chunks } of chunkSets) {
        for (const ch of channels) {
          gc?.();
          const acc = new Acc();
          const m0 = threadCpuNs();
          const p0 = process.cpuUsage();
          const t0 = performance.now();
          await withTimeout(ch.pump(chunks, acc), timeoutMs, ch.name);
          const t1 = performance.now();
          const p1 = process.cpuUsage(p0);
          const m1 = threadCpuNs();
          if (ch.frames && (acc.stanzas !== routes || acc.bytes !== data.length)) {
            throw new Error(`${ch.name}, chunks of ${sizeName(size)}: got ${acc.stanzas} stanzas / ${acc.bytes} B back, sent ${routes} / ${data.length} B`);
          }
          const key = `${ch.name}|${size}`;
          const list = samples.get(key) ?? [];
          list.push({ wallS: (t1 - t0) / 1000, mainNs: m1 - m0, procUs: p1.user + p1.system });
          samples.set(key, list);
        }
      }
      ctx.progress(`handoff: round ${r + 1}/${rounds} done`);
    }
    const rows = [];
    for (const { size, chunks } of chunkSets) {
      for (const ch of channels) {
        const s = samples.get(`${ch.name}|${size}`)!;
        const wall = median(s.map((x) => x.wallS));
        const mainUs = median(s.map((x) => x.mainNs / 1000 / routes));
        const procUs = median(s.map((x) => x.procUs / routes));
        rows.push({
          task: `${ch.name}, chunks of ${sizeName(size)}`,
          stanzasPerSec: Math.round(routes / wall),
          wallUsPerStanza: sig3((wall * 1e6) / routes),
          mainCpuUsPerStanza: sig3(mainUs),
          otherThreadsCpuUsPerStanza: sig3(Math.max(0, procUs - mainUs)),
          mbPerSec: sig3(data.length / wall / 1e6),
          // for the suite's text report (lib/report.ts reads nsPerOp and task)
          nsPerOp: sig3((wall * 1e9) / routes),
          chunks: chunks.length,
          rounds: s.length,
          spreadPct: sig3(((Math.max(...s.map((x) => x.wallS)) - Math.min(...s.map((x) => x.wallS))) / wall) * 100),
        });
      }
    }

    // 4. round trip of one chunk holding one route, sample by sample across the channels
    const lat = new Map<string, number[]>();
    const one = [oneRoute];
    const measured = channels.filter((c) => c.frames);
    // one watchdog for the whole phase (a timer per sample would be part of what is measured)
    let watchdogTimer: NodeJS.Timeout | undefined;
    const watchdog = new Promise<never>((_, reject) => {
      watchdogTimer = setTimeout(() => reject(new Error('round trips: not done in time')), timeoutMs);
    });
    watchdog.catch(() => {});
    try {
      for (let i = -20; i < latencySamples; i++) {
        for (const ch of measured) {
          const acc = new Acc();
          const t0 = performance.now();
          await Promise.race([ch.pump(one, acc), watchdog]);
          const us = (performance.now() - t0) * 1000;
          if (acc.stanzas !== 1 || acc.bytes !== oneRoute.length) throw new Error(`${ch.name}: round trip got ${acc.stanzas} stanzas / ${acc.bytes} B`);
          if (i >= 0) {
            const l = lat.get(ch.name) ?? [];
            l.push(us);
            lat.set(ch.name, l);
          }
        }
      }
    } finally {
      clearTimeout(watchdogTimer);
    }
    const roundTrip: (LatencySummary & { channel: string })[] = measured.map((ch) => ({ channel: ch.name, ...summarizeLatency(lat.get(ch.name)!) }));

    const ringInfo = Object.fromEntries(channels.filter((c) => c.info).map((c) => [c.name, c.info!()]));
    return {
      guard,
      unit: 'per stanza (route)',
      method: {
        input: `${routes} routes (router→sm ${routerToSm().bytes.length} B and sm→router ${smToRouter().bytes.length} B alternating), ${data.length} B per run`,
        chunkSizes: sizes,
        rounds,
        pipeline: PIPELINE,
        mainThreadCpu: cpuSource,
        note: 'medians over rounds; every row includes copying each chunk to a fresh buffer on main (the socket read); shared 2-core machine: figures are noisy',
      },
      selfCheck,
      rows,
      roundTrip,
      ring: ringInfo,
    };
  } finally {
    await Promise.all(channels.map((c) => c.close().catch(() => {})));
  }
}

if (isMain(import.meta.url)) await standalone('micro handoff', run);
