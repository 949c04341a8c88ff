/**
 * (writer: main only; readers: any thread) Shared-memory hash map from a routing key (a bare
 * JID, or a name) to a 32-bit value, e.g. "which node is home for bare JID X" (node index +
 * flags). The main thread is the ONLY writer (`SharedTable`); workers (and main) read it
 * lock-free through `SharedTable.attach(sab)` (`SharedTableReader`). Measured design:
 * /work/shared/docs/perf-probe.md §5; prose version of this comment: docs/internals/routing-table.md.
 *
 * Layout: one SharedArrayBuffer of Int32 words, 128 + 16 * capacity bytes, where capacity (slots)
 * = 2^capacityPow2 as passed to create(); at most floor(0.75 * capacity) entries (TableFullError).
 *
 *   word  0  kHeaderMagic          0x4a435254 'JCRT'                        set once by create()
 *   word  1  kHeaderLayoutVersion  kLayoutVersion (this file + hash.ts)     set once
 *   word  2  kHeaderCapacity       slot count, a power of two               set once
 *   word  3  kHeaderCount          live entries (writer: Atomics.store)     per insert/delete
 *   words 4..15                    reserved, 0
 *   word 16  kHeaderGeneration     odd while entries move (writer: Atomics.add); alone in its
 *   words 17..31                   own 64-byte line, so count updates do not evict it from readers
 *   word 32  slot 0  ┌──────────┬──────────┬──────────┬──────────┐
 *                    │ version  │  keyLo   │  keyHi   │  value   │   16 B, 4 slots per cache line
 *   word 36  slot 1  └──────────┴──────────┴──────────┴──────────┘
 *   ...
 *
 *   version = seq << 2 | kSlotFull (bit 1) | kSlotBusy (bit 0); seq counts completed writes (wraps
 *   after 2^30, i.e. a reader would need to sleep through exactly 2^30 writes to one slot to be
 *   fooled). Empty slots have kSlotFull clear; their other words are stale and ignored.
 *
 * Keys: the 64-bit hash of the key's UTF-8 bytes (hash.ts) IS the key; the string is not stored.
 * Home slot = keyLo & (capacity - 1); linear probing. Collisions: see docs ("Collisions"); the
 * writer can keep an optional string map (`verifyKeys`) to detect them.
 *
 * Deletion: backward-shift (no tombstones, so probe lengths never degrade). Invariant I: for an
 * entry in slot s with home h, every slot in h..s (cyclic) is full.
 *
 * Memory ordering. All writer stores to the SAB are `Atomics.store`/`Atomics.add` (SeqCst). Readers
 * read version and generation words with `Atomics.load`; key/value words with plain loads on x64
 * and ia32 (TSO hardware keeps load-load order, and V8 keeps typed-array loads in program order
 * around Atomics operations; perf-probe §5 measured this "version-only" form fastest), with
 * `Atomics.load` elsewhere (ARM's acquire loads do not stop an earlier plain load from being
 * satisfied late) or when JC_ROUTING_ATOMIC_READS=1 / `attach(sab, { atomicReads: true })`.
 *
 *  1. Seqlock per slot (every slot write): the writer stores version|kSlotBusy, then the key and
 *     value words, then (seq+1)<<2 | state. A reader loads v1 (spins while busy), reads the words,
 *     loads v2 and uses them only if v2 === v1. A validated read is a (key, value) pair that was in
 *     that slot at one instant, never a torn mix. Inserts (fill an empty slot), overwrites (value
 *     word only) and a delete whose slot no later entry may move into (just clear it: by I no probe
 *     chain runs through it) each touch one slot and need nothing more.
 *  2. Generation (operations that move entries: a backward-shift delete that moves at least one
 *     entry, and clear()): Atomics.add makes it odd before the first slot write and even after the
 *     last. While entries move, a key may be found in two slots (copied, old copy not yet
 *     overwritten), which is harmless, or a probe may pass the hole before the entry lands in it,
 *     which would be a false miss. So readers trust hits always (1. suffices) and misses only if
 *     the generation loaded before the probe was even and equals the one loaded after it;
 *     otherwise they probe again. Generation and version words are only ever accessed with SeqCst
 *     atomics (and emptiness is read from the version word), so "no generation change between my
 *     two loads" means every moving operation lies entirely before or entirely
 *     after my probe, and with no moves a key present during the whole probe keeps its slot and,
 *     by I, a full path from its home: the probe cannot stop at an empty slot before it.
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
export const kHeaderGeneration = 16;
export const kHeaderWords = 32;

export const kSlotWords = 4;
export const kSlotVersion = 0;
export const kSlotKeyLo = 1;
export const kSlotKeyHi = 2;
export const kSlotValue = 3;

export const kSlotBusy = 1;
export const kSlotFull = 2;
export const kSlotSeqStep = 4;
export const kSlotSeqMask = ~3;

export const kMagic = 0x4a435254; // 'JCRT'
export const kLayoutVersion = 1;

export const kMaxLoadFactor = 0.75;
// Table sizes are given as capacityPow2 = log2(slots): 3 (8 slots) .. 26 (2^26 slots, 1 GiB of
// SAB, which keeps every word index below 2^31).
export const kMinCapacityPow2 = 3;
export const kMaxCapacityPow2 = 26;

/** Bytes of SharedArrayBuffer for a table of 2^capacityPow2 slots: 128 + 16 * 2^capacityPow2. */
export function byteLengthFor(capacityPow2: number): number {
  checkCapacityPow2(capacityPow2);
  return (kHeaderWords + 2 ** capacityPow2 * kSlotWords) * 4;
}

/** Smallest capacityPow2 whose table holds `keys` entries at or below the max load factor (1 M → 21). */
export function capacityPow2For(keys: number): number {
  for (let p = kMinCapacityPow2; p <= kMaxCapacityPow2; p++) {
    if (Math.floor(2 ** p * kMaxLoadFactor) >= keys) return p;
  }
  throw new RangeError(`no routing table up to 2^${kMaxCapacityPow2} slots holds ${keys} keys`);
}

function maxSizeFor(capacity: number): number {
  return Math.floor(capacity * kMaxLoadFactor);
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
        `${Math.log2(capacity) + 1} or more`,
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
    const hint = Number.isInteger(p) && p > 0 && (p & (p - 1)) === 0 ? ` (for ${p} slots pass ${Math.log2(p)})` : '';
    throw new RangeError(
      `routing table capacityPow2 must be an integer from ${kMinCapacityPow2} to ${kMaxCapacityPow2} ` +
        `(the table gets 2^capacityPow2 slots), got ${p}${hint}`,
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
  readonly #mask: number;
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
    const capacity = Atomics.load(w, kHeaderCapacity);
    const p = Math.log2(capacity);
    if (!Number.isInteger(p) || p < kMinCapacityPow2 || p > kMaxCapacityPow2) {
      throw new TypeError(`SharedTable.attach: bad capacity ${capacity} in the header`);
    }
    if (sab.byteLength !== byteLengthFor(p)) {
      throw new TypeError(`SharedTable.attach: ${sab.byteLength} bytes, expected ${byteLengthFor(p)} for capacity ${capacity}`);
    }
    this.#sab = sab;
    this.#w = w;
    this.#capacity = capacity;
    this.#mask = capacity - 1;
    this.#atomicReads = options?.atomicReads ?? kDefaultAtomicReads;
    this.#h = new Int32Array(2);
    this.#retries = 0;
  }

  get sab(): SharedArrayBuffer {
    return this.#sab;
  }
  /** Slots: 2^capacityPow2. */
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
  /** Re-reads so far: a slot seen mid-write or changed under us, or a miss during a move. */
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
    lo |= 0;
    hi |= 0;
    const w = this.#w;
    const mask = this.#mask;
    const atomic = this.#atomicReads;
    for (;;) {
      const gen = Atomics.load(w, kHeaderGeneration);
      let i = lo & mask;
      for (let n = 0; n <= mask; ) {
        const base = kHeaderWords + (i << 2);
        const v = Atomics.load(w, base);
        if ((v & kSlotBusy) !== 0) {
          this.#retries++; // writer is inside this slot: read it again
          continue;
        }
        if ((v & kSlotFull) === 0) break;
        let klo: number;
        let khi: number;
        let val: number;
        if (atomic) {
          klo = Atomics.load(w, base + kSlotKeyLo);
          khi = Atomics.load(w, base + kSlotKeyHi);
          val = Atomics.load(w, base + kSlotValue);
        } else {
          klo = w[base + kSlotKeyLo]!;
          khi = w[base + kSlotKeyHi]!;
          val = w[base + kSlotValue]!;
        }
        if (Atomics.load(w, base) !== v) {
          this.#retries++; // rewritten while we read it
          continue;
        }
        if (klo === lo && khi === hi) return val >>> 0;
        i = (i + 1) & mask;
        n++;
      }
      // A miss counts only if no entry moved during the probe (rule 2 in the file comment).
      if ((gen & 1) === 0 && Atomics.load(w, kHeaderGeneration) === gen) return undefined;
      this.#retries++;
    }
  }
}

/** The single writer (main thread). Its own reads need no seqlock: nobody else writes. */
export class SharedTable {
  readonly #sab: SharedArrayBuffer;
  readonly #w: Int32Array;
  readonly #mask: number;
  readonly #capacity: number;
  readonly #maxSize: number;
  readonly #h: Int32Array;
  readonly #keys: Map<string, string> | null;
  #count: number;

  /**
   * A new empty table of 2^capacityPow2 slots (3..26), holding at most 0.75 * 2^capacityPow2
   * entries: e.g. 16 → 65 536 slots (1 MiB, 49 152 keys), 21 → 2 097 152 slots (32 MiB, 1 M keys
   * at load 0.48). `capacityPow2For(keys)` picks it.
   */
  static create(capacityPow2: number, options?: CreateOptions): SharedTable {
    const bytes = byteLengthFor(capacityPow2); // validates
    const capacity = 2 ** capacityPow2;
    const sab = new SharedArrayBuffer(bytes);
    const w = new Int32Array(sab);
    Atomics.store(w, kHeaderCapacity, capacity);
    Atomics.store(w, kHeaderLayoutVersion, kLayoutVersion);
    Atomics.store(w, kHeaderMagic, kMagic);
    return new SharedTable(sab, capacity, options?.verifyKeys === true);
  }

  /** A reader over `sab` (from `table.sab`, e.g. sent in workerData); also fine on main. */
  static attach(sab: SharedArrayBuffer, options?: AttachOptions): SharedTableReader {
    return new SharedTableReader(sab, options);
  }

  static readonly capacityPow2For = capacityPow2For;
  static readonly byteLengthFor = byteLengthFor;

  private constructor(sab: SharedArrayBuffer, capacity: number, verifyKeys: boolean) {
    this.#sab = sab;
    this.#w = new Int32Array(sab);
    this.#capacity = capacity;
    this.#mask = capacity - 1;
    this.#maxSize = maxSizeFor(capacity);
    this.#h = new Int32Array(2);
    this.#keys = verifyKeys ? new Map() : null;
    this.#count = 0;
  }

  get sab(): SharedArrayBuffer {
    return this.#sab;
  }
  /** Slots: 2^capacityPow2. */
  get capacity(): number {
    return this.#capacity;
  }
  get size(): number {
    return this.#count;
  }
  /** Most entries the table accepts: floor(capacity * 0.75). */
  get maxSize(): number {
    return this.#maxSize;
  }
  get loadFactor(): number {
    return this.#count / this.#capacity;
  }

  get(key: string): number | undefined {
    const i = this.#find(key);
    return i < 0 ? undefined : this.#w[kHeaderWords + (i << 2) + kSlotValue]! >>> 0;
  }

  /** Look up by a precomputed hash64 result. Not checked against `verifyKeys`. */
  getByHash(lo: number, hi: number): number | undefined {
    const i = this.#findHash(lo | 0, hi | 0);
    return i < 0 ? undefined : this.#w[kHeaderWords + (i << 2) + kSlotValue]! >>> 0;
  }

  /** Insert or overwrite. Throws TableFullError (inserts only) and, with verifyKeys, HashCollisionError. */
  set(key: string, value: number): void {
    checkValue(value);
    const h = this.#h;
    hash64Into(key, h);
    const lo = h[0]!;
    const hi = h[1]!;
    const w = this.#w;
    const mask = this.#mask;
    let i = lo & mask;
    for (;;) {
      const base = kHeaderWords + (i << 2);
      if ((w[base]! & kSlotFull) === 0) break; // no tombstones: the first empty slot ends the chain
      if (w[base + kSlotKeyLo] === lo && w[base + kSlotKeyHi] === hi) {
        if (this.#keys !== null) {
          const other = this.#keys.get(`${lo}:${hi}`)!;
          if (other !== key) throw new HashCollisionError(key, other);
        }
        if (w[base + kSlotValue] !== (value | 0)) this.#writeValue(base, value | 0);
        return;
      }
      i = (i + 1) & mask;
    }
    if (this.#count >= this.#maxSize) throw new TableFullError(this.#capacity, this.#maxSize);
    this.#writeSlot(kHeaderWords + (i << 2), lo, hi, value | 0);
    Atomics.store(w, kHeaderCount, ++this.#count);
    if (this.#keys !== null) this.#keys.set(`${lo}:${hi}`, key);
  }

  /** Remove `key`; true if it was present. Backward-shift deletion, see the file comment. */
  delete(key: string): boolean {
    const i = this.#find(key);
    if (i < 0) return false;
    this.#removeAt(i);
    Atomics.store(this.#w, kHeaderCount, --this.#count);
    if (this.#keys !== null) {
      const h = this.#h; // still holds key's hash from #find
      this.#keys.delete(`${h[0]}:${h[1]}`);
    }
    return true;
  }

  /** Remove every entry. Readers retry misses until it is done (it bumps the generation). */
  clear(): void {
    if (this.#count === 0) return;
    const w = this.#w;
    Atomics.add(w, kHeaderGeneration, 1);
    const end = kHeaderWords + this.#capacity * kSlotWords;
    for (let base = kHeaderWords; base < end; base += kSlotWords) {
      if ((w[base]! & kSlotFull) !== 0) this.#clearSlot(base);
    }
    this.#count = 0;
    Atomics.store(w, kHeaderCount, 0);
    Atomics.add(w, kHeaderGeneration, 1);
    if (this.#keys !== null) this.#keys.clear();
  }

  /** Slot index of `key`, or -1; leaves the hash in #h. */
  #find(key: string): number {
    const h = this.#h;
    hash64Into(key, h);
    const i = this.#findHash(h[0]!, h[1]!);
    if (i >= 0 && this.#keys !== null && this.#keys.get(`${h[0]}:${h[1]}`) !== key) return -1;
    return i;
  }

  #findHash(lo: number, hi: number): number {
    const w = this.#w;
    const mask = this.#mask;
    let i = lo & mask;
    for (;;) {
      const base = kHeaderWords + (i << 2);
      if ((w[base]! & kSlotFull) === 0) return -1;
      if (w[base + kSlotKeyLo] === lo && w[base + kSlotKeyHi] === hi) return i;
      i = (i + 1) & mask;
    }
  }

  /**
   * Backward-shift deletion of slot `i`: walk the cluster after it; each entry whose home is not
   * cyclically in (hole, j] may fill the hole, and its old slot becomes the hole; clear the last
   * hole. If nothing moves, no probe chain runs through `i` and clearing it alone is safe, so the
   * generation is bumped only around actual moves.
   */
  #removeAt(i: number): void {
    const w = this.#w;
    const mask = this.#mask;
    let hole = i;
    let j = i;
    let moving = false;
    for (;;) {
      j = (j + 1) & mask;
      const bj = kHeaderWords + (j << 2);
      if ((w[bj]! & kSlotFull) === 0) break;
      const home = w[bj + kSlotKeyLo]! & mask;
      const stays = hole <= j ? hole < home && home <= j : hole < home || home <= j;
      if (stays) continue;
      if (!moving) {
        Atomics.add(w, kHeaderGeneration, 1); // odd: misses from now on are not trusted
        moving = true;
      }
      this.#writeSlot(kHeaderWords + (hole << 2), w[bj + kSlotKeyLo]!, w[bj + kSlotKeyHi]!, w[bj + kSlotValue]!);
      hole = j;
    }
    this.#clearSlot(kHeaderWords + (hole << 2));
    if (moving) Atomics.add(w, kHeaderGeneration, 1); // even again
  }

  // ---- seqlock writes (rule 1) ----

  #writeSlot(base: number, lo: number, hi: number, value: number): void {
    const w = this.#w;
    const v = w[base]!;
    Atomics.store(w, base, v | kSlotBusy);
    Atomics.store(w, base + kSlotKeyLo, lo);
    Atomics.store(w, base + kSlotKeyHi, hi);
    Atomics.store(w, base + kSlotValue, value);
    Atomics.store(w, base, ((v & kSlotSeqMask) + kSlotSeqStep) | kSlotFull);
  }

  #writeValue(base: number, value: number): void {
    const w = this.#w;
    const v = w[base]!;
    Atomics.store(w, base, v | kSlotBusy);
    Atomics.store(w, base + kSlotValue, value);
    Atomics.store(w, base, ((v & kSlotSeqMask) + kSlotSeqStep) | kSlotFull);
  }

  #clearSlot(base: number): void {
    const w = this.#w;
    const v = w[base]!;
    // key/value words stay stale: readers stop at the version word of an empty slot
    Atomics.store(w, base, (v & kSlotSeqMask) + kSlotSeqStep);
  }
}
