/**
 * (writer: main only; readers: any thread) Shared-memory hash map from a routing key (a bare
 * JID, or a name) to a 32-bit value, e.g. "which node is home for bare JID X" (node index +
 * flags). The main thread is the ONLY writer (`SharedTable`); workers (and main) read it
 * lock-free through `SharedTable.attach(sab)` (`SharedTableReader`). Measured design:
 * /work/shared/docs/perf-probe.md §5; prose version of this comment: docs/internals/routing-table.md.
 *
 * Layout: one SharedArrayBuffer of Int32 words, 128 + 8 * 2^capacityPow2 bytes: a header, then
 * 2^(capacityPow2 - 3) lines of 64 bytes (one cache line each), 5 slots per line; at most
 * 4 entries per line on average, i.e. 2^(capacityPow2 - 1) entries (load 0.8: TableFullError).
 *
 *   word  0  kHeaderMagic          0x4a435254 'JCRT'                        set once by create()
 *   word  1  kHeaderLayoutVersion  kLayoutVersion (this file + hash.ts)     set once
 *   word  2  kHeaderCapacity       slots: 5 per line                        set once
 *   word  3  kHeaderCount          live entries (writer: Atomics.store)     per insert/delete
 *   word  4  kHeaderLines          lines, a power of two                    set once
 *   words 5..15                    reserved, 0
 *   word 16  kHeaderGeneration     odd during clear() (writer: Atomics.add); alone in its
 *   words 17..31                   own 64-byte line, so count updates do not evict it from readers
 *   word 32  line 0  ┌─────────┬───────────────────────────────┬─────────────────────────┐
 *                    │ version │ keyLo0 keyHi0 … keyLo4 keyHi4 │ value0 … value4         │  64 B
 *   word 48  line 1  └─────────┴───────────────────────────────┴─────────────────────────┘
 *   ...
 *
 *   version = seq << 12 | overflow << 6 | occupancy << 1 | kLineBusy: occupancy bit k (k = 0..4)
 *   marks slot k full; overflow counts the entries that live past this line but probed through
 *   it (0..63; at 63 it sticks: it is never decremented again); seq counts completed writes of the
 *   line (wraps after 2^20, i.e. a reader would need to sleep through exactly 2^20 writes to one
 *   line to be fooled). An empty slot's words are stale and ignored.
 *
 * Keys: the 64-bit hash of the key's UTF-8 bytes (hash.ts) IS the key; the string is not stored.
 * Home line = keyLo & (lines - 1); a key sits in the first line from its home that had a free
 * slot when it was inserted, and every line it passed counts it in its overflow (as F14 hash
 * tables do). A lookup reads lines from the home until it finds the key or reaches a line whose
 * overflow is 0. Entries never move: a delete clears the slot and takes the entry off the
 * overflow counts of the lines it passed. Collisions: see docs ("Collisions"); the writer can keep
 * an optional string map (`verifyKeys`) to detect them.
 *
 * Invariant I: for an entry in line l with home line h, every line in h..l-1 (cyclic) has a
 * non-zero overflow.
 *
 * Memory ordering. All writer stores to the SAB are `Atomics.store`/`Atomics.add` (SeqCst). Readers
 * read version and generation words with `Atomics.load`; key/value words with plain loads on x64
 * and ia32 (TSO hardware keeps load-load order, and V8 keeps typed-array loads in program order
 * around Atomics operations; perf-probe §5 measured this "version-only" form fastest), with
 * `Atomics.load` elsewhere (ARM's acquire loads do not stop an earlier plain load from being
 * satisfied late) or when JC_ROUTING_ATOMIC_READS=1 / `attach(sab, { atomicReads: true })`.
 *
 *  1. Seqlock per line (every line write): the writer stores version|kLineBusy, then the key and
 *     value words, then the next version (seq + 1, new occupancy and overflow); a change of the
 *     version word alone (a slot cleared, an overflow count changed) is one store. A reader loads
 *     v1 (spins while busy), reads the words of the slots v1 marks full, loads v2 and uses them
 *     only if v2 === v1. A validated read is the line's content at one instant (which slots are
 *     full, their (key, value) pairs, the overflow), never a torn mix.
 *  2. Order: an insert raises the overflow of the lines it passes before it fills its slot; a
 *     delete clears the slot before it lowers them. So while a key is present, every line between
 *     its home and its line has a non-zero overflow (I holds at every instant), and a probe for a
 *     key that is present during the whole probe cannot stop before it: entries never move, so
 *     no miss needs a second look.
 *  3. Generation (clear() only, which empties line after line): Atomics.add makes it odd before
 *     the first line write and even after the last. Readers trust hits always and misses only if
 *     the generation loaded before the probe was even and equals the one loaded after it;
 *     otherwise they probe again.
 *
 * Readers never write shared memory. Spins are bounded by the writer's critical sections (a few
 * stores, or one clear()); if the main thread is descheduled mid-write a reader spins until it runs.
 */
import { hash64BytesInto, hash64Into } from './hash.ts';

// ---- layout: shared between threads and releases (append only, never reorder) ----
export const kHeaderMagic = 0;
export const kHeaderLayoutVersion = 1;
export const kHeaderCapacity = 2;
export const kHeaderCount = 3;
export const kHeaderLines = 4;
export const kHeaderGeneration = 16;
export const kHeaderWords = 32;

export const kLineWords = 16;
export const kLineSlots = 5;
/** word of the line's version */
export const kLineVersion = 0;
/** slot k's keyLo is word kLineKeys + 2k of its line, keyHi the next */
export const kLineKeys = 1;
/** slot k's value is word kLineValues + k of its line */
export const kLineValues = 11;

export const kLineBusy = 1;
export const kLineOccShift = 1;
/** occupancy bits of a line, after the shift: all 5 slots full */
export const kLineFull = (1 << kLineSlots) - 1;
export const kLineOverflowShift = 6;
/** overflow counts stop (and stick) here */
export const kLineOverflowMax = 63;
export const kLineSeqStep = 1 << 12;
export const kLineSeqMask = ~((1 << 12) - 1);

export const kMagic = 0x4a435254; // 'JCRT'
export const kLayoutVersion = 2;

const kOccBits = kLineFull << kLineOccShift;
const kOvfBits = kLineOverflowMax << kLineOverflowShift;
const kOvfOne = 1 << kLineOverflowShift;

/** Entries per slot at most (TableFullError beyond): 4 of a line's 5 slots on average. */
export const kMaxLoadFactor = 0.8;
// Table sizes are given as capacityPow2: 8 * 2^capacityPow2 bytes of lines (2^(capacityPow2 - 3)
// lines), 3 (one line) .. 27 (2^24 lines, 1 GiB of SAB, which keeps every word index below 2^31).
export const kMinCapacityPow2 = 3;
export const kMaxCapacityPow2 = 27;

/** Bytes of SharedArrayBuffer for a table of capacityPow2: 128 + 8 * 2^capacityPow2. */
export function byteLengthFor(capacityPow2: number): number {
  checkCapacityPow2(capacityPow2);
  return (kHeaderWords + 2 ** (capacityPow2 - 3) * kLineWords) * 4;
}

/** Smallest capacityPow2 whose table holds `keys` entries (2^(capacityPow2 - 1) ≥ keys; 1 M → 21). */
export function capacityPow2For(keys: number): number {
  for (let p = kMinCapacityPow2; p <= kMaxCapacityPow2; p++) {
    if (maxSizeFor(kLineSlots * 2 ** (p - 3)) >= keys) return p;
  }
  throw new RangeError(`no routing table up to capacityPow2 ${kMaxCapacityPow2} holds ${keys} keys`);
}

function maxSizeFor(slots: number): number {
  return Math.floor(slots * kMaxLoadFactor);
}

// x64/ia32 hardware keeps loads in order, so plain key/value loads between two Atomics.load of the
// version are sound there (see the header comment); elsewhere, or when asked, load every word atomically.
const kDefaultAtomicReads =
  !(process.arch === 'x64' || process.arch === 'ia32') || process.env['JC_ROUTING_ATOMIC_READS'] === '1';

export class TableFullError extends Error {
  readonly code = 'JC_ERR_ROUTING_TABLE_FULL';
  readonly capacity: number;
  readonly maxSize: number;
  constructor(capacity: number, maxSize: number) {
    super(
      `routing table full: ${maxSize} entries in ${capacity} slots is the maximum at load factor ` +
        `${kMaxLoadFactor}; a table over a fixed SharedArrayBuffer cannot grow, create one with capacityPow2 ` +
        `${Math.log2((capacity / kLineSlots) * 8) + 1} or more`,
    );
    this.name = 'TableFullError';
    this.capacity = capacity;
    this.maxSize = maxSize;
  }
}

export class HashCollisionError extends Error {
  readonly code = 'JC_ERR_ROUTING_HASH_COLLISION';
  readonly key: string;
  readonly other: string;
  constructor(key: string, other: string) {
    super(`routing keys ${JSON.stringify(key)} and ${JSON.stringify(other)} have the same 64-bit hash`);
    this.name = 'HashCollisionError';
    this.key = key;
    this.other = other;
  }
}

export interface CreateOptions {
  /**
   * Keep a writer-side Map from hash to key string and refuse (HashCollisionError) a key whose
   * hash is taken by another key; get/delete then answer only for the exact string. Costs about
   * as much heap as a Map of all keys, on the writer only; readers cannot verify.
   */
  verifyKeys?: boolean;
}

export interface AttachOptions {
  /** Load key/value words with Atomics.load too (default: only off x64/ia32, or JC_ROUTING_ATOMIC_READS=1). */
  atomicReads?: boolean;
}

function checkCapacityPow2(p: number): void {
  if (!Number.isInteger(p) || p < kMinCapacityPow2 || p > kMaxCapacityPow2) {
    throw new RangeError(
      `routing table capacityPow2 must be an integer from ${kMinCapacityPow2} to ${kMaxCapacityPow2} ` +
        `(the table gets 8 * 2^capacityPow2 bytes and holds up to 2^(capacityPow2 - 1) keys), got ${p}`,
    );
  }
}

function checkValue(value: number): void {
  if (value >>> 0 !== value) throw new RangeError(`routing table value must be an unsigned 32-bit integer, got ${value}`);
}

/** Lock-free reader over a table's SAB; usable on any thread. Never writes shared memory. */
export class SharedTableReader {
  readonly #sab: SharedArrayBuffer;
  readonly #w: Int32Array;
  readonly #lmask: number;
  readonly #capacity: number;
  readonly #atomicReads: boolean;
  readonly #h: Int32Array;
  #retries: number;

  constructor(sab: SharedArrayBuffer, options?: AttachOptions) {
    if (!(sab instanceof SharedArrayBuffer)) throw new TypeError('SharedTable.attach: expected a SharedArrayBuffer');
    if (sab.byteLength < kHeaderWords * 4) throw new TypeError(`SharedTable.attach: buffer of ${sab.byteLength} bytes is too small for a routing table`);
    const w = new Int32Array(sab);
    const magic = Atomics.load(w, kHeaderMagic);
    if (magic !== kMagic) throw new TypeError(`SharedTable.attach: bad magic 0x${(magic >>> 0).toString(16)}, not a routing table`);
    const layout = Atomics.load(w, kHeaderLayoutVersion);
    if (layout !== kLayoutVersion) throw new TypeError(`SharedTable.attach: layout version ${layout}, this code reads ${kLayoutVersion}`);
    const lines = Atomics.load(w, kHeaderLines);
    const capacity = Atomics.load(w, kHeaderCapacity);
    const p = Math.log2(lines) + 3;
    if (!Number.isInteger(p) || p < kMinCapacityPow2 || p > kMaxCapacityPow2 || capacity !== lines * kLineSlots) {
      throw new TypeError(`SharedTable.attach: bad size in the header (${lines} lines, ${capacity} slots)`);
    }
    if (sab.byteLength !== byteLengthFor(p)) {
      throw new TypeError(`SharedTable.attach: ${sab.byteLength} bytes, expected ${byteLengthFor(p)} for ${lines} lines`);
    }
    this.#sab = sab;
    this.#w = w;
    this.#capacity = capacity;
    this.#lmask = lines - 1;
    this.#atomicReads = options?.atomicReads ?? kDefaultAtomicReads;
    this.#h = new Int32Array(2);
    this.#retries = 0;
  }

  get sab(): SharedArrayBuffer {
    return this.#sab;
  }
  /** Slots: 5 per line. */
  get capacity(): number {
    return this.#capacity;
  }
  /** Live entries as last published by the writer. */
  get size(): number {
    return Atomics.load(this.#w, kHeaderCount);
  }
  get loadFactor(): number {
    return this.size / this.#capacity;
  }
  /** Whether key/value words are loaded with Atomics.load (see the file comment). */
  get atomicReads(): boolean {
    return this.#atomicReads;
  }
  /** Re-reads so far: a line seen mid-write or changed under us, or a miss during a clear(). */
  get retries(): number {
    return this.#retries;
  }

  get(key: string): number | undefined {
    const h = this.#h;
    hash64Into(key, h);
    return this.getByHash(h[0]!, h[1]!);
  }

  /** Look up a key given as UTF-8 bytes `buf[start..end)` (no string is created). */
  getUtf8(buf: Uint8Array, start: number, end: number): number | undefined {
    const h = this.#h;
    hash64BytesInto(buf, start, end, h);
    return this.getByHash(h[0]!, h[1]!);
  }

  /** Look up by a precomputed hash64 result (signed or unsigned words both accepted). */
  getByHash(lo: number, hi: number): number | undefined {
    return this.#atomicReads ? this.#getAtomic(lo | 0, hi | 0) : this.#getPlain(lo | 0, hi | 0);
  }

  // The two forms are written out separately: a branch on the form inside the probe cost ~20 ns.

  /** getByHash with plain key/value loads between the version loads (x64, ia32). */
  #getPlain(lo: number, hi: number): number | undefined {
    const w = this.#w;
    const lmask = this.#lmask;
    for (;;) {
      const gen = Atomics.load(w, kHeaderGeneration);
      let line = lo & lmask;
      for (let n = 0; n <= lmask; ) {
        const base = kHeaderWords + (line << 4);
        const v = Atomics.load(w, base);
        if ((v & kLineBusy) !== 0) {
          this.#retries++; // writer is inside this line: read it again
          continue;
        }
        const k = slotOf(w, base, v, lo, hi);
        const val = k >= 0 ? w[base + kLineValues + k]! : 0;
        if (Atomics.load(w, base) !== v) {
          this.#retries++; // rewritten while we read it
          continue;
        }
        if (k >= 0) return val >>> 0;
        if ((v & kOvfBits) === 0) break; // no entry lives past this line after probing through it
        line = (line + 1) & lmask;
        n++;
      }
      // A miss counts only if no clear() ran during the probe (rule 3 in the file comment).
      if ((gen & 1) === 0 && Atomics.load(w, kHeaderGeneration) === gen) return undefined;
      this.#retries++;
    }
  }

  /** getByHash with every word loaded by Atomics.load. */
  #getAtomic(lo: number, hi: number): number | undefined {
    const w = this.#w;
    const lmask = this.#lmask;
    for (;;) {
      const gen = Atomics.load(w, kHeaderGeneration);
      let line = lo & lmask;
      for (let n = 0; n <= lmask; ) {
        const base = kHeaderWords + (line << 4);
        const v = Atomics.load(w, base);
        if ((v & kLineBusy) !== 0) {
          this.#retries++;
          continue;
        }
        const k = slotOfAtomic(w, base, v, lo, hi);
        const val = k >= 0 ? Atomics.load(w, base + kLineValues + k) : 0;
        if (Atomics.load(w, base) !== v) {
          this.#retries++;
          continue;
        }
        if (k >= 0) return val >>> 0;
        if ((v & kOvfBits) === 0) break;
        line = (line + 1) & lmask;
        n++;
      }
      if ((gen & 1) === 0 && Atomics.load(w, kHeaderGeneration) === gen) return undefined;
      this.#retries++;
    }
  }
}

/** The single writer (main thread). Its own reads need no seqlock: nobody else writes. */
export class SharedTable {
  readonly #sab: SharedArrayBuffer;
  readonly #w: Int32Array;
  readonly #lmask: number;
  readonly #capacity: number;
  readonly #maxSize: number;
  readonly #h: Int32Array;
  readonly #keys: Map<string, string> | null;
  #count: number;

  /**
   * A new empty table of 8 * 2^capacityPow2 bytes (3..27), holding at most 2^(capacityPow2 - 1)
   * entries: e.g. 16 → 512 KiB, 32 768 keys; 21 → 16 MiB, 1 048 576 keys.
   * `capacityPow2For(keys)` picks it.
   */
  static create(capacityPow2: number, options?: CreateOptions): SharedTable {
    const bytes = byteLengthFor(capacityPow2); // validates
    const lines = 2 ** (capacityPow2 - 3);
    const sab = new SharedArrayBuffer(bytes);
    const w = new Int32Array(sab);
    Atomics.store(w, kHeaderLines, lines);
    Atomics.store(w, kHeaderCapacity, lines * kLineSlots);
    Atomics.store(w, kHeaderLayoutVersion, kLayoutVersion);
    Atomics.store(w, kHeaderMagic, kMagic);
    return new SharedTable(sab, lines, options?.verifyKeys === true);
  }

  /** A reader over `sab` (from `table.sab`, e.g. sent in workerData); also fine on main. */
  static attach(sab: SharedArrayBuffer, options?: AttachOptions): SharedTableReader {
    return new SharedTableReader(sab, options);
  }

  static readonly capacityPow2For = capacityPow2For;
  static readonly byteLengthFor = byteLengthFor;

  private constructor(sab: SharedArrayBuffer, lines: number, verifyKeys: boolean) {
    this.#sab = sab;
    this.#w = new Int32Array(sab);
    this.#capacity = lines * kLineSlots;
    this.#lmask = lines - 1;
    this.#maxSize = maxSizeFor(this.#capacity);
    this.#h = new Int32Array(2);
    this.#keys = verifyKeys ? new Map() : null;
    this.#count = 0;
  }

  get sab(): SharedArrayBuffer {
    return this.#sab;
  }
  /** Slots: 5 per line. */
  get capacity(): number {
    return this.#capacity;
  }
  get size(): number {
    return this.#count;
  }
  /** Most entries the table accepts: floor(capacity * 0.8) = 2^(capacityPow2 - 1). */
  get maxSize(): number {
    return this.#maxSize;
  }
  get loadFactor(): number {
    return this.#count / this.#capacity;
  }

  get(key: string): number | undefined {
    const at = this.#find(key);
    return at < 0 ? undefined : this.#w[at]! >>> 0;
  }

  /** Look up by a precomputed hash64 result. Not checked against `verifyKeys`. */
  getByHash(lo: number, hi: number): number | undefined {
    const at = this.#findHash(lo | 0, hi | 0);
    return at < 0 ? undefined : this.#w[at]! >>> 0;
  }

  /** Insert or overwrite. Throws TableFullError (inserts only) and, with verifyKeys, HashCollisionError. */
  set(key: string, value: number): void {
    checkValue(value);
    const h = this.#h;
    hash64Into(key, h);
    this.#set(h[0]!, h[1]!, value, key);
  }

  /** `set` by a precomputed hash64 result (signed or unsigned words). Not checked against `verifyKeys`. */
  setByHash(lo: number, hi: number, value: number): void {
    checkValue(value);
    this.#set(lo | 0, hi | 0, value, null);
  }

  /** Remove `key`; true if it was present. Its slot is cleared, entries never move: see the file comment. */
  delete(key: string): boolean {
    const at = this.#find(key);
    if (at < 0) return false;
    this.#remove(at);
    if (this.#keys !== null) {
      const h = this.#h; // still holds key's hash from #find
      this.#keys.delete(`${h[0]}:${h[1]}`);
    }
    return true;
  }

  /** `delete` by a precomputed hash64 result. Not checked against `verifyKeys`. */
  deleteByHash(lo: number, hi: number): boolean {
    const at = this.#findHash(lo | 0, hi | 0);
    if (at < 0) return false;
    this.#remove(at);
    this.#keys?.delete(`${lo | 0}:${hi | 0}`);
    return true;
  }

  /** Remove every entry. Readers retry misses until it is done (it bumps the generation). */
  clear(): void {
    if (this.#count === 0) return;
    const w = this.#w;
    Atomics.add(w, kHeaderGeneration, 1);
    const end = kHeaderWords + (this.#lmask + 1) * kLineWords;
    for (let base = kHeaderWords; base < end; base += kLineWords) {
      const v = w[base]!;
      if ((v & (kOccBits | kOvfBits)) !== 0) Atomics.store(w, base, (v & kLineSeqMask) + kLineSeqStep);
    }
    this.#count = 0;
    Atomics.store(w, kHeaderCount, 0);
    Atomics.add(w, kHeaderGeneration, 1);
    if (this.#keys !== null) this.#keys.clear();
  }

  // An entry's position ("at") is the index of its value word: its line starts at at & ~15 (lines
  // are 16 words, after a 32-word header), its slot is (at & 15) - kLineValues.

  #set(lo: number, hi: number, value: number, key: string | null): void {
    const w = this.#w;
    const at = this.#findHash(lo, hi);
    if (at >= 0) {
      if (this.#keys !== null && key !== null) {
        const other = this.#keys.get(`${lo}:${hi}`)!;
        if (other !== key) throw new HashCollisionError(key, other);
      }
      if (w[at] !== (value | 0)) this.#writeValue(at & ~15, (at & 15) - kLineValues, value | 0);
      return;
    }
    if (this.#count >= this.#maxSize) throw new TableFullError(this.#capacity, this.#maxSize);
    // the first line from home with a free slot; the lines before it count the entry as overflow
    const lmask = this.#lmask;
    const home = lo & lmask;
    let line = home;
    while (((w[kHeaderWords + (line << 4)]! >>> kLineOccShift) & kLineFull) === kLineFull) line = (line + 1) & lmask;
    for (let l = home; l !== line; l = (l + 1) & lmask) this.#overflow(kHeaderWords + (l << 4), 1);
    const base = kHeaderWords + (line << 4);
    this.#writeSlot(base, freeSlot((w[base]! >>> kLineOccShift) & kLineFull), lo, hi, value | 0);
    Atomics.store(w, kHeaderCount, ++this.#count);
    if (this.#keys !== null && key !== null) this.#keys.set(`${lo}:${hi}`, key);
  }

  /** Position of `key`, or -1; leaves the hash in #h. */
  #find(key: string): number {
    const h = this.#h;
    hash64Into(key, h);
    const at = this.#findHash(h[0]!, h[1]!);
    if (at >= 0 && this.#keys !== null && this.#keys.get(`${h[0]}:${h[1]}`) !== key) return -1;
    return at;
  }

  #findHash(lo: number, hi: number): number {
    const w = this.#w;
    const lmask = this.#lmask;
    for (let line = lo & lmask; ; line = (line + 1) & lmask) {
      const base = kHeaderWords + (line << 4);
      const v = w[base]!;
      const k = slotOf(w, base, v, lo, hi);
      if (k >= 0) return base + kLineValues + k;
      if ((v & kOvfBits) === 0) return -1;
    }
  }

  /** Deletes the entry at `at`: its slot is cleared, then the lines it passed count it no more (rule 2). */
  #remove(at: number): void {
    const w = this.#w;
    const lmask = this.#lmask;
    const base = at & ~15;
    const k = (at & 15) - kLineValues;
    const line = (base - kHeaderWords) >>> 4;
    const home = w[base + kLineKeys + 2 * k]! & lmask;
    this.#clearSlot(base, k);
    for (let l = home; l !== line; l = (l + 1) & lmask) this.#overflow(kHeaderWords + (l << 4), -1);
    Atomics.store(w, kHeaderCount, --this.#count);
  }

  // ---- seqlock writes (rule 1) ----

  #writeSlot(base: number, k: number, lo: number, hi: number, value: number): void {
    const w = this.#w;
    const v = w[base]!;
    Atomics.store(w, base, v | kLineBusy);
    Atomics.store(w, base + kLineKeys + 2 * k, lo);
    Atomics.store(w, base + kLineKeys + 2 * k + 1, hi);
    Atomics.store(w, base + kLineValues + k, value);
    Atomics.store(w, base, ((v & kLineSeqMask) + kLineSeqStep) | (v & (kOccBits | kOvfBits)) | (1 << (k + kLineOccShift)));
  }

  #writeValue(base: number, k: number, value: number): void {
    const w = this.#w;
    const v = w[base]!;
    Atomics.store(w, base, v | kLineBusy);
    Atomics.store(w, base + kLineValues + k, value);
    Atomics.store(w, base, ((v & kLineSeqMask) + kLineSeqStep) | (v & (kOccBits | kOvfBits)));
  }

  #clearSlot(base: number, k: number): void {
    const w = this.#w;
    const v = w[base]!;
    // one store: the slot's words stay stale, readers see its occupancy bit clear
    Atomics.store(w, base, ((v & kLineSeqMask) + kLineSeqStep) | (v & (kOccBits | kOvfBits) & ~(1 << (k + kLineOccShift))));
  }

  /** The line's overflow count + delta (one store); at kLineOverflowMax it sticks. */
  #overflow(base: number, delta: 1 | -1): void {
    const w = this.#w;
    const v = w[base]!;
    const ovf = (v & kOvfBits) >>> kLineOverflowShift;
    if (ovf === kLineOverflowMax) return;
    if (ovf === 0 && delta === -1) throw new Error('routing table: overflow count below 0 (invariant I broken)');
    Atomics.store(w, base, ((v & kLineSeqMask) + kLineSeqStep) | (v & (kOccBits | kOvfBits)) + (delta === 1 ? kOvfOne : -kOvfOne));
  }
}

/**
 * The full slot of the line at `base` (version `v`) holding key (lo, hi), or -1. Unrolled (a
 * loop over the slots measured ~20 ns slower per lookup): each slot's occupancy bit, then its key.
 * Plain loads: the writer's own reads, and readers on x64/ia32 (see the file comment).
 */
function slotOf(w: Int32Array, base: number, v: number, lo: number, hi: number): number {
  if ((v & 2) !== 0 && w[base + 1] === lo && w[base + 2] === hi) return 0;
  if ((v & 4) !== 0 && w[base + 3] === lo && w[base + 4] === hi) return 1;
  if ((v & 8) !== 0 && w[base + 5] === lo && w[base + 6] === hi) return 2;
  if ((v & 16) !== 0 && w[base + 7] === lo && w[base + 8] === hi) return 3;
  if ((v & 32) !== 0 && w[base + 9] === lo && w[base + 10] === hi) return 4;
  return -1;
}

/** slotOf with every key word loaded by Atomics.load (readers off x64/ia32, or when asked). */
function slotOfAtomic(w: Int32Array, base: number, v: number, lo: number, hi: number): number {
  for (let k = 0; k < kLineSlots; k++) {
    const kb = base + kLineKeys + 2 * k;
    if ((v & (1 << (k + kLineOccShift))) !== 0 && Atomics.load(w, kb) === lo && Atomics.load(w, kb + 1) === hi) return k;
  }
  return -1;
}

/** Lowest free slot of a line's occupancy bits (the line is not full). */
function freeSlot(occ: number): number {
  let k = 0;
  while ((occ & (1 << k)) !== 0) k++;
  return k;
}
