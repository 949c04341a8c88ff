/**
 * 64-bit hash of a routing key (a bare JID or a name) over its UTF-8 bytes. Pure; usable on any
 * thread. The routing table (shared-table.ts) uses the 64 bits as the key's identity, so the
 * function must give the same answer on every node, thread and release: it is frozen, and
 * test/unit/routing/shared-table.test.ts pins golden values. Changing it is a layout change
 * (bump kLayoutVersion in shared-table.ts).
 *
 * Algorithm ("FNV/Fx two-lane + fmix"), one byte b at a time over the UTF-8 encoding:
 *
 *   lane a: FNV-1a 32   a = imul(a ^ b, 0x01000193)           a0 = 0x811c9dc5
 *           (Fowler/Noll/Vo, draft-eastlake-fnv; prime and offset basis as published)
 *   lane c: Fx 32       c = imul(rotl(c, 5) ^ b, 0x9e3779b9)  c0 = 0x6a09e667
 *           (rustc-hash FxHasher step; c0 is the first SHA-256 IV word, a nothing-up-my-sleeve seed)
 *   finish: x  = fmix32(a)                                (MurmurHash3 finaliser, public domain)
 *           hi = fmix32((c + x) | 0)
 *           lo = x ^ hi
 *
 * Why two different lanes: FNV-1a only carries upwards (xor, then multiply), so bit k of its
 * state depends only on bits 0..k of the input. Two FNV-1a lanes that differ only in seed or
 * prime therefore share bit 0 exactly (the parity of the bytes' low bits) and are strongly
 * correlated in their other low bits, which leaves well under 64 bits of state. The Fx lane's
 * rotation feeds high bits back down, so it is not tied to lane a bit by bit. The finish is a
 * bijection of the 64-bit state (fmix32 is invertible; x, then hi, then lo are each recoverable),
 * so no state bits are lost, and both output words depend on every input byte.
 *
 * Strings are encoded exactly like `Buffer.from(s, 'utf8')` / TextEncoder, including a lone
 * surrogate becoming U+FFFD (EF BF BD), so `hash64(s)` equals `hash64Bytes(Buffer.from(s))` for
 * every string. Routing keys must already be normalised (jabberd2 has applied stringprep): the
 * hash sees bytes, not JID semantics.
 *
 * Not keyed, so not resistant to deliberate collisions: see docs/internals/routing-table.md
 * ("Collisions") for why that is acceptable for this table.
 */

const kFnvOffset = 0x811c9dc5 | 0;
const kFnvPrime = 0x01000193;
const kFxSeed = 0x6a09e667 | 0;
const kFxMul = 0x9e3779b9 | 0;

/** MurmurHash3 fmix32: an invertible avalanche step (Austin Appleby, public domain). */
function fmix32(h: number): number {
  h ^= h >>> 16;
  h = Math.imul(h, 0x85ebca6b);
  h ^= h >>> 13;
  h = Math.imul(h, 0xc2b2ae35);
  h ^= h >>> 16;
  return h;
}

// Lane states while a hash runs. Module-level so the byte step needs no closure or object;
// every hash resets them before use, and JS runs one hash at a time per thread.
let gA = 0;
let gC = 0;

function step(b: number): void {
  gA = Math.imul(gA ^ b, kFnvPrime);
  gC = Math.imul(((gC << 5) | (gC >>> 27)) ^ b, kFxMul);
}

function run(s: string): void {
  let a = kFnvOffset;
  let c = kFxSeed;
  const n = s.length;
  for (let i = 0; i < n; i++) {
    let u = s.charCodeAt(i);
    if (u < 0x80) {
      // ASCII: the common case for JIDs, lanes inlined by hand
      a = Math.imul(a ^ u, kFnvPrime);
      c = Math.imul(((c << 5) | (c >>> 27)) ^ u, kFxMul);
      continue;
    }
    gA = a;
    gC = c;
    if (u < 0x800) {
      step(0xc0 | (u >>> 6));
      step(0x80 | (u & 0x3f));
    } else {
      if (u >= 0xd800 && u <= 0xdfff) {
        const next = i + 1 < n ? s.charCodeAt(i + 1) : 0;
        if (u <= 0xdbff && next >= 0xdc00 && next <= 0xdfff) {
          u = 0x10000 + ((u - 0xd800) << 10) + (next - 0xdc00);
          i++;
          step(0xf0 | (u >>> 18));
          step(0x80 | ((u >>> 12) & 0x3f));
          step(0x80 | ((u >>> 6) & 0x3f));
          step(0x80 | (u & 0x3f));
          a = gA;
          c = gC;
          continue;
        }
        u = 0xfffd; // lone surrogate, as Buffer.from / TextEncoder encode it
      }
      step(0xe0 | (u >>> 12));
      step(0x80 | ((u >>> 6) & 0x3f));
      step(0x80 | (u & 0x3f));
    }
    a = gA;
    c = gC;
  }
  gA = a;
  gC = c;
}

function runBytes(buf: Uint8Array, start: number, end: number): void {
  let a = kFnvOffset;
  let c = kFxSeed;
  for (let i = start; i < end; i++) {
    const b = buf[i]!;
    a = Math.imul(a ^ b, kFnvPrime);
    c = Math.imul(((c << 5) | (c >>> 27)) ^ b, kFxMul);
  }
  gA = a;
  gC = c;
}

// Finish into module-level results (int32) so the *Into variants allocate nothing.
let gLo = 0;
let gHi = 0;

function finish(): void {
  const x = fmix32(gA);
  const hi = fmix32((gC + x) | 0);
  gHi = hi;
  gLo = x ^ hi;
}

function checkRange(buf: Uint8Array, start: number, end: number): void {
  if (!(start >= 0 && end <= buf.length && start <= end) || (start | 0) !== start || (end | 0) !== end) {
    throw new RangeError(`hash64Bytes: bad range [${start}, ${end}) for a buffer of ${buf.length} bytes`);
  }
}

/** 64-bit hash of `s`'s UTF-8 bytes, as two unsigned 32-bit words. */
export function hash64(s: string): [lo: number, hi: number] {
  run(s);
  finish();
  return [gLo >>> 0, gHi >>> 0];
}

/**
 * The same hash over `buf[start..end)`, already UTF-8: `hash64Bytes(Buffer.from(s), 0, n)`
 * equals `hash64(s)`. Creates no string (the hot path hashes JIDs straight out of stream bytes).
 */
export function hash64Bytes(buf: Uint8Array, start = 0, end = buf.length): [lo: number, hi: number] {
  checkRange(buf, start, end);
  runBytes(buf, start, end);
  finish();
  return [gLo >>> 0, gHi >>> 0];
}

/**
 * Allocation-free form of {@link hash64}: writes lo to out[0] and hi to out[1]. An Int32Array
 * receives the words as signed int32 (the form the table stores), a Uint32Array as unsigned.
 */
export function hash64Into(s: string, out: Int32Array | Uint32Array): void {
  run(s);
  finish();
  out[0] = gLo;
  out[1] = gHi;
}

/** Allocation-free form of {@link hash64Bytes}; see {@link hash64Into}. */
export function hash64BytesInto(buf: Uint8Array, start: number, end: number, out: Int32Array | Uint32Array): void {
  checkRange(buf, start, end);
  runBytes(buf, start, end);
  finish();
  out[0] = gLo;
  out[1] = gHi;
}
