/**
 * The worker side of handoff.bench.ts, and the SharedArrayBuffer ring both sides use.
 *
 * Loaded in a worker thread through handoff-worker.mjs (which registers tsx first, as
 * src/workers/worker-entry.mjs does); the bench imports only `Ring`, `newRing` and the types from
 * here on the main thread. Two worker modes (workerData.mode):
 *
 * - 'raw': plain worker_threads messages. Each message is one chunk (its ArrayBuffer transferred);
 *   the worker frames it with the product's own task handler (src/workers/worker-main.ts
 *   frameTask: ByteFramer, stanzas copied into an EventWriter, take()) and posts back
 *   {bytes, nums} — transferred (workerData.transfer) or structured-cloned (as piscina does).
 * - 'ring': a pair of single-producer single-consumer rings over SharedArrayBuffers. The worker
 *   blocks in Atomics.wait for input records (one chunk each), frames each in place with a
 *   ByteFramer (a Buffer view over the shared memory; a record that wraps around the end of the
 *   ring is copied to a scratch buffer first), writes every stanza it finds as a record of the
 *   output ring, then an end-of-chunk marker, publishes the output and only then frees the input
 *   record. It blocks (Atomics.wait) when the output ring is full.
 *
 * Ring format: capacity a power of two (so that the Int32 positions may wrap around 2^32 and
 * `pos & mask` stays right), records 4-byte aligned: an Int32 length (−1: end-of-chunk marker)
 * then the payload padded to 4 bytes; a record may wrap around the end of the data. Positions
 * are free-running Int32 counters; the published write position (kW) and read position (kR)
 * live in their own SharedArrayBuffer, 64 bytes apart, and are only accessed with Atomics: the
 * producer writes the payload, then Atomics.store(kW) (release); the consumer Atomics.load(kW)
 * (acquire), reads, then Atomics.store(kR). Each side keeps its own position in `pos`.
 * Wake-ups: a side about to sleep sets its waiting flag (kWWaiting, kRWaiting), then waits on the
 * index with the value it last saw (Atomics.wait / waitAsync return at once if it moved); the
 * other side stores the index, then notifies only if the flag is set. All of these are
 * sequentially consistent, so either the sleeper sees the new index or the mover sees the flag:
 * no lost wake-up, and no futex call while the other side is busy.
 */
import { parentPort, workerData } from 'node:worker_threads';
import { ByteFramer, type ByteFramerSink, type Scope } from '../../../src/xml/byte-framer.ts';
import type { FramerLimits } from '../../../src/xml/stream-framer.ts';
import type { AttachSpec } from '../../../src/workers/messages.ts';

/** Int32 indices in a ring's control array */
export const kW = 0;
/** set by the consumer while it sleeps (or is about to) waiting for kW to move */
export const kWWaiting = 1;
export const kR = 16;
/** set by the producer while it sleeps (or is about to) waiting for kR to move */
export const kRWaiting = 17;
/** (input ring) main asks the worker to stop */
export const kStop = 32;
/** (input ring) records the worker had to copy because they wrapped */
export const kWraps = 33;
const kCtrlInts = 48;

export interface RingShared {
  ctrl: SharedArrayBuffer;
  data: SharedArrayBuffer;
}

export function newRing(capacity: number): RingShared {
  if (capacity < 64 || (capacity & (capacity - 1)) !== 0) throw new RangeError(`ring capacity must be a power of two ≥ 64, got ${capacity}`);
  return { ctrl: new SharedArrayBuffer(kCtrlInts * 4), data: new SharedArrayBuffer(capacity) };
}

/** Bytes a record of `len` payload bytes takes (a marker: 4). */
export function recordSize(len: number): number {
  return len < 0 ? 4 : 4 + ((len + 3) & ~3);
}

export class Ring {
  readonly ctrl: Int32Array;
  readonly bytes: Buffer;
  readonly words: Int32Array;
  readonly cap: number;
  readonly mask: number;
  /** producer: where the next record goes (published or not); consumer: the next record */
  pos = 0;

  constructor(s: RingShared) {
    this.ctrl = new Int32Array(s.ctrl);
    this.bytes = Buffer.from(s.data);
    this.words = new Int32Array(s.data);
    this.cap = s.data.byteLength;
    this.mask = this.cap - 1;
  }

  // --- producer ---

  /** Free bytes now (the consumer may free more meanwhile). */
  free(): number {
    return this.cap - ((this.pos - Atomics.load(this.ctrl, kR)) | 0);
  }

  /** Appends one record (`src` null: an end-of-chunk marker) if it fits; false (nothing written) if not. Not visible before publish(). */
  put(src: Uint8Array | null): boolean {
    const len = src === null ? -1 : src.length;
    const need = recordSize(len);
    if (need > this.free()) return false;
    const at = this.pos & this.mask;
    this.words[at >> 2] = len;
    if (src !== null && len > 0) {
      const p = (at + 4) & this.mask;
      const first = Math.min(len, this.cap - p);
      this.bytes.set(first === len ? src : src.subarray(0, first), p);
      if (first < len) this.bytes.set(src.subarray(first), 0);
    }
    this.pos = (this.pos + need) | 0;
    return true;
  }

  /** Makes every record put so far visible and wakes a consumer waiting on kW. */
  publish(): void {
    Atomics.store(this.ctrl, kW, this.pos);
    if (Atomics.load(this.ctrl, kWWaiting) !== 0) Atomics.notify(this.ctrl, kW);
  }

  // --- consumer ---

  /** The published write position (compare with `pos`: equal means empty). */
  published(): number {
    return Atomics.load(this.ctrl, kW);
  }

  /** Frees everything before `to` and wakes a producer waiting on kR. */
  release(to: number): void {
    this.pos = to;
    Atomics.store(this.ctrl, kR, to);
    if (Atomics.load(this.ctrl, kRWaiting) !== 0) Atomics.notify(this.ctrl, kR);
  }
}

export interface RawWorkerData {
  mode: 'raw';
  /** transfer the result's buffers back (else structured clone copies them) */
  transfer: boolean;
}

export interface RawRequest {
  seq: number;
  attach: AttachSpec | null;
  chunk: Uint8Array;
}

export interface RawReply {
  seq: number;
  bytes: Uint8Array;
  nums: Int32Array;
  text: string;
  stanzas: number;
  errors: number;
}

export interface RingWorkerData {
  mode: 'ring';
  input: RingShared;
  output: RingShared;
  root: { name: string; scope: Scope };
  limits: FramerLimits;
  /** largest input record payload (scratch size for records that wrap) */
  maxChunk: number;
  /** before sleeping, spin this long (µs) watching the index (0: sleep at once) */
  spinUs: number;
}

class Stopped extends Error {}

/**
 * (worker) Blocks until ctrl[idx] moves from `seen`: spins up to `spinUs` first, then sleeps with
 * the waiting flag set; wakes at least every 50 ms to look at the stop flag.
 */
function waitMove(ctrl: Int32Array, idx: number, flag: number, seen: number, spinUs: number, stop: Int32Array): void {
  if (spinUs > 0) {
    const until = performance.now() + spinUs / 1000;
    while (Atomics.load(ctrl, idx) === seen) if (performance.now() > until) break;
  }
  while (Atomics.load(ctrl, idx) === seen) {
    if (Atomics.load(stop, kStop) !== 0) throw new Stopped();
    Atomics.store(ctrl, flag, 1);
    Atomics.wait(ctrl, idx, seen, 50);
    Atomics.store(ctrl, flag, 0);
  }
}

async function rawWorker(d: RawWorkerData): Promise<void> {
  const { frameTask } = await import('../../../src/workers/worker-main.ts');
  const port = parentPort!;
  port.on('message', (m: RawRequest) => {
    const res = frameTask({ id: 1, attach: m.attach, chunks: [m.chunk], end: false });
    const reply: RawReply = { seq: m.seq, bytes: res.bytes, nums: res.nums, text: res.text, stanzas: res.stanzas, errors: res.errors };
    const transfer: ArrayBuffer[] = [];
    if (d.transfer) {
      // only whole, own buffers (take() slices them so; an empty result is a shared constant)
      for (const v of [res.bytes, res.nums]) {
        const b = v.buffer;
        if (b instanceof ArrayBuffer && v.byteLength > 0 && v.byteOffset === 0 && v.byteLength === b.byteLength) transfer.push(b);
      }
    }
    port.postMessage(reply, transfer);
  });
}

function ringWorker(d: RingWorkerData): void {
  const input = new Ring(d.input);
  const output = new Ring(d.output);
  const ictl = input.ctrl;
  const octl = output.ctrl;
  const framer = new ByteFramer(d.root, d.limits);
  const scratch = Buffer.allocUnsafe(d.maxChunk);
  let wraps = 0;

  /** output is full: publish what is there and wait for main to make room for `len` bytes */
  const waitRoom = (len: number): void => {
    if (recordSize(len) > output.cap) throw new Error(`a ${len}-byte stanza does not fit in the ${output.cap}-byte output ring`);
    output.publish();
    for (;;) {
      const r = Atomics.load(octl, kR);
      if (output.cap - ((output.pos - r) | 0) >= recordSize(len)) return;
      waitMove(octl, kR, kRWaiting, r, d.spinUs, ictl);
    }
  };
  const sink: ByteFramerSink = {
    stanza(raw) {
      while (!output.put(raw)) waitRoom(raw.length);
    },
    close() {
      throw new Error('unexpected end of stream');
    },
    fallback(rest) {
      throw new Error(`unexpected fallback at ${JSON.stringify(rest.subarray(0, 60).toString())}`);
    },
  };

  try {
    for (;;) {
      if (Atomics.load(ictl, kStop) !== 0) return;
      const w = input.published();
      if (w === input.pos) {
        waitMove(ictl, kW, kWWaiting, w, d.spinUs, ictl);
        continue;
      }
      while (input.pos !== w) {
        const q = input.pos;
        const at = q & input.mask;
        const len = input.words[at >> 2]!;
        if (len < 0 || len > d.maxChunk) throw new Error(`bad input record length ${len}`);
        const p = (at + 4) & input.mask;
        let chunk: Buffer;
        if (p + len <= input.cap) chunk = input.bytes.subarray(p, p + len);
        else {
          const first = input.cap - p;
          input.bytes.copy(scratch, 0, p, input.cap);
          input.bytes.copy(scratch, first, 0, len - first);
          chunk = scratch.subarray(0, len);
          Atomics.store(ictl, kWraps, ++wraps);
        }
        framer.write(chunk, sink);
        while (!output.put(null)) waitRoom(-1);
        output.publish();
        // the chunk's bytes are not needed any more (the framer copies an unfinished stanza)
        input.release((q + recordSize(len)) | 0);
      }
    }
  } catch (err) {
    if (err instanceof Stopped) return;
    throw err;
  }
}

/** Called by handoff-worker.mjs in the worker thread. */
export async function startWorker(): Promise<void> {
  const d = workerData as RawWorkerData | RingWorkerData;
  if (d.mode === 'raw') await rawWorker(d);
  else if (d.mode === 'ring') ringWorker(d);
  else throw new Error(`unknown worker mode ${JSON.stringify((d as { mode?: unknown }).mode)}`);
}
