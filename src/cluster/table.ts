/**
 * (main) The cluster routing table: every session in the cluster (full JID → home node, c2s
 * node, priority, availability; sm session id and c2s id where this node can use them, see
 * below), a bare-JID index giving each user's home node, and the names (sm ids, clustered
 * domains, router components) each node serves.
 *
 * Each node writes only its own entries (sessions hosted by its sm, names it serves) and
 * replicates them: a snapshot when a peer link comes up, deltas after, with per-origin
 * sequence numbers so that a gap is detected (the receiver asks for a resync). The bare-JID →
 * home index is mirrored in a SharedArrayBuffer table (main is its only writer) that worker
 * threads read.
 *
 * Storage. Own sessions (the few hosted by our sm) are `SessionEntry` objects in Maps. Remote
 * sessions (nearly all of a large cluster) live in `RemoteSessions`: one byte arena of packed
 * records (about 29 B for a typical session, 52 B with its sm and c2s ids: see below) chained
 * per bare JID from a bucket array, with no object per session; the methods that return
 * `SessionEntry`s build them on demand.
 * docs/internals/routing-table.md ("The cluster table") describes the record layout.
 *
 * A node keeps what it can act on. A session's `sm` id and `c2sId` are only ever used to
 * address the sm and the c2s in session control (ending a session, telling a c2s its session
 * ended); this node sends that for its own sessions and for sessions whose client connection is
 * on its own c2s (`c2sNode === self`), never for another node's session whose client is on
 * another node. So a remote session whose c2sNode is not this node is stored without them: the
 * table returns it with `sm: ''` and `c2sId: ''` (every other field exactly as received).
 */
import { hash64BytesInto } from '../routing/hash.ts';
import { SharedTable } from '../routing/shared-table.ts';
import { decimalValue, hexOf, putLowerHex, putVarint, type RawBuffer } from '../wire/codec.ts';
import type { NameEntry, Op, SessionEntry } from '../wire/messages.ts';

export type { NameEntry, Op, SessionEntry };

interface Origin {
  incarnation: number;
  seq: number;
  names: Map<string, NameEntry>;
  /** sessions of this origin (remote origins: records in the store) */
  count: number;
}

export interface TableEvents {
  /** a remote node's name appeared or went away (to bind or unbind it upstream) */
  onRemoteName(origin: string, n: NameEntry, present: boolean): void;
  /** a peer announced a session hosted by another node: refused (a node writes only its own entries) */
  onForeignEntry(origin: string, s: SessionEntry): void;
  /** the shared index is full: the user's home cannot be recorded (routing falls back to the local sm) */
  onIndexFull(bare: string, err: Error): void;
}

export function bareJid(full: string): string {
  const i = full.indexOf('/');
  return i < 0 ? full : full.slice(0, i);
}

// ---------------------------------------------------------------------------------------------
// Remote sessions: packed records in one arena

/** End of a chain. */
const kNil = -1;

// record flags (byte 4 of a record)
const kAvail = 1;
const kDead = 2;
/** sm is lowercase hex, stored as its bytes (half the length) after a varint length */
const kSmHex = 4;
/** c2sId is a canonical decimal number, stored as a varint */
const kC2sIdNum = 8;
/** since is not an integer within 2^52 of the base: stored as 8 bytes of float64 */
const kSinceF64 = 16;
/** the JID has a local part (an '@' before any '/') */
const kHasAt = 32;
/** the JID has a resource (a '/') */
const kHasSlash = 64;
/** sm is 40 lowercase hex digits (jabberd2's session ids): its 20 bytes, no length */
const kSm20 = 128;
/**
 * kSm20 without kSmHex (a combination kSm20 never takes otherwise): neither c2sId nor sm is
 * stored, as the session's client is not on this node's c2s (they read as '').
 */
const kNoIds = kSm20;
const kIdsMask = kSmHex | kSm20;

/** Interned domains and (home, c2sNode, c2s) triples beyond these counts are stored inline. */
const kMaxDomains = 1024;
const kMaxTriples = 4096;

const kMinArena = 64 << 10;
/** Ranges kept per home node before they are merged into one. */
const kMaxRanges = 64;
/** Records are addressed by their offset, an int32. */
const kMaxArena = 0x7fffffff;
const kMinBuckets = 1 << 10;

const gScratchF64 = new Float64Array(1);
const gScratchF64Bytes = new Uint8Array(gScratchF64.buffer);

/** Position after the last varint read by getVarint (module-level: no allocation). */
let gPos = 0;

function getVarint(b: Uint8Array, o: number): number {
  let x = b[o++]!;
  if (x < 0x80) {
    gPos = o;
    return x;
  }
  x &= 0x7f;
  let s = 128;
  for (;;) {
    const c = b[o++]!;
    x += (c & 0x7f) * s;
    if (c < 0x80) break;
    s *= 128;
  }
  gPos = o;
  return x;
}

function skipVarint(b: Uint8Array, o: number): number {
  while (b[o++]! >= 0x80);
  return o;
}

/** Little-endian int32 at b[o] (any alignment). */
function rd32(b: Uint8Array, o: number): number {
  return b[o]! | (b[o + 1]! << 8) | (b[o + 2]! << 16) | (b[o + 3]! << 24);
}

function wr32(b: Uint8Array, o: number, v: number): void {
  b[o] = v;
  b[o + 1] = v >>> 8;
  b[o + 2] = v >>> 16;
  b[o + 3] = v >>> 24;
}

/** Bytes `a[ao..ao+n)` equal `b[bo..bo+n)`. */
function bytesEq(a: Uint8Array, ao: number, b: Uint8Array, bo: number, n: number): boolean {
  for (let i = 0; i < n; i++) if (a[ao + i] !== b[bo + i]) return false;
  return true;
}

/** Copies `n` bytes (short runs: a loop beats Buffer#copy, which allocates a view per call). */
function copyBytes(src: Uint8Array, so: number, dst: Uint8Array, d: number, n: number): void {
  if (n > 64) {
    dst.set(src.subarray(so, so + n), d);
    return;
  }
  for (let i = 0; i < n; i++) dst[d + i] = src[so + i]!;
}

/** Result of RemoteSessions.scan(). */
interface ScanResult {
  /** the record with the key's exact JID and the given home, or kNil */
  ref: number;
  /** its predecessor in the chain (kNil: it is the head) */
  prev: number;
  /** the oldest other session of the key's bare JID: since, and home node index (-1: none) */
  bestSince: number;
  bestHome: number;
}

/**
 * Remote sessions as packed records in one arena (`buf`), back to back, each addressed by its
 * offset (a "ref"). Records of the same bucket (by the bare JID's hash) are chained through
 * their first four bytes. Layout of a record:
 *
 *   +0  i32  next ref in the bucket chain, little-endian (kNil ends it)
 *   +4  u8   flags (kAvail, kDead, kSmHex, kC2sIdNum, kSinceF64, kHasAt, kHasSlash, kSm20)
 *   +5  i8   prio
 *   +6       [kHasAt] varint n, n bytes: local part
 *            varint d: d > 0: interned domain d - 1; d = 0: varint n, n bytes (inline)
 *            [kHasSlash] varint n, n bytes: resource
 *            varint t: t > 0: interned (home, c2sNode, c2s) t - 1; t = 0: varint home (node
 *              index), then c2sNode and c2s as varint n, n bytes
 *            since: zigzag varint of (since - base), or [kSinceF64] 8 bytes
 *            [only when c2sNode is this node (`self`); else flags has kNoIds (kSm20 without
 *            kSmHex) and the record ends here:]
 *            c2sId: [kC2sIdNum] varint number, else varint n, n bytes
 *            sm: [kSm20] 20 bytes; else varint n, n bytes (the hex digits' bytes when kSmHex)
 *
 * Removing a record unlinks it and marks it dead; the arena is compacted when dead records
 * take more than half of it. Operations work on a "key" (a JID encoded into `key`) set by
 * setKey() or loadKey(); they are not reentrant.
 */
class RemoteSessions {
  private buf: Buffer;
  private end = 0;
  private garbage = 0;
  count = 0;
  private heads: Int32Array;
  private bmask: number;
  private readonly base: number;

  private readonly domainIdx = new Map<string, number>();
  private readonly domains: string[] = [];
  private readonly domainBytes: Buffer[] = [];
  /** home → c2sNode → c2s → triple index */
  private readonly tripleIdx = new Map<number, Map<string, Map<string, number>>>();
  /**
   * Per home node: where its records are, as [start, end) byte ranges of the arena, flat
   * (coalesced as records are appended; at most kMaxRanges, then merged into one that covers
   * them all). A superset: records of other homes, or dead ones, may lie inside.
   */
  private readonly ranges = new Map<number, number[]>();
  private readonly tripleHome: number[] = [];
  private readonly tripleNode: string[] = [];
  private readonly tripleName: string[] = [];
  private lastHome = -1;
  private lastNode = '';
  private lastName = '';
  private lastTriple = -1;

  // the key: a JID's UTF-8 bytes, where its parts are, its bare JID's hash
  private key: Buffer = Buffer.allocUnsafe(1024);
  private keyLen = 0;
  /** index of the '@' (or -1), of the '/' (or -1), end of the bare JID */
  private keyAt = -1;
  private keySlash = -1;
  private keyBare = 0;
  private keyDomain = -1;
  readonly hash = new Int32Array(2);
  /** materialising: a JID is assembled here */
  private tmp: Buffer = Buffer.allocUnsafe(1024);

  readonly res: ScanResult = { ref: kNil, prev: kNil, bestSince: 0, bestHome: -1 };

  /**
   * nodes: node names by index (shared with the ClusterTable); self: this node's name (sessions
   * whose client is on another node's c2s are stored without their c2sId and sm).
   */
  constructor(readonly nodes: readonly string[], private readonly self: string) {
    this.base = Date.now();
    this.buf = Buffer.from(new ArrayBuffer(kMinArena));
    this.heads = new Int32Array(kMinBuckets).fill(kNil);
    this.bmask = kMinBuckets - 1;
  }

  /** Bytes held: arena, buckets (the intern tables are small and bounded). */
  get bytes(): number {
    return this.buf.byteLength + this.heads.byteLength;
  }

  // ---- keys ----

  /** Sets the key to `jid` (a full or bare JID). */
  setKey(jid: string): void {
    const n = jid.length;
    if (this.key.length < 3 * n) this.key = Buffer.allocUnsafe(Math.max(3 * n, 2 * this.key.length));
    const k = this.key;
    let at = -1;
    let slash = -1;
    let i = 0;
    for (; i < n; i++) {
      const c = jid.charCodeAt(i);
      if (c >= 0x80) break;
      if (c === 0x2f) {
        if (slash < 0) slash = i;
      } else if (c === 0x40 && at < 0 && slash < 0) at = i;
      k[i] = c;
    }
    let len = i;
    if (i < n) {
      // not ASCII: let Buffer encode it, then find the separators in the bytes ('@' and '/' never
      // occur inside a multi-byte sequence)
      len = k.write(jid, 0, 'utf8');
      at = -1;
      slash = -1;
      for (let j = 0; j < len; j++) {
        const c = k[j];
        if (c === 0x2f) {
          slash = j;
          break;
        }
        if (c === 0x40 && at < 0) at = j;
      }
    }
    this.setKeyParts(len, at, slash);
  }

  private setKeyParts(len: number, at: number, slash: number): void {
    this.keyLen = len;
    this.keyAt = at;
    this.keySlash = slash;
    this.keyBare = slash < 0 ? len : slash;
    this.keyDomain = -1;
    hash64BytesInto(this.key, 0, this.keyBare, this.hash);
  }

  /** Sets the key to record p's JID. */
  private loadKey(p: number): void {
    this.jidParts(p);
    const need = this.jLocalLen + this.jDomLen + this.jResLen + 3;
    if (this.key.length < need) this.key = Buffer.allocUnsafe(Math.max(need, 2 * this.key.length));
    const len = this.jidInto(this.key);
    this.setKeyParts(len, this.jAt, this.jSlash);
  }

  /** The key's bare JID as a string. */
  keyBareString(): string {
    return (this.key as RawBuffer).utf8Slice(0, this.keyBare);
  }

  /** The interned index of the key's domain (-1: not interned). */
  private keyDomainIdx(): number {
    if (this.keyDomain >= 0) return this.keyDomain;
    const from = this.keyAt + 1;
    const n = this.keyBare - from;
    // most JIDs share a domain or a few: compare with the interned bytes before making a string
    const db = this.domainBytes;
    for (let d = 0; d < db.length && d < 4; d++) {
      const b = db[d]!;
      if (b.length === n && bytesEq(b, 0, this.key, from, n)) return (this.keyDomain = d);
    }
    const d = this.domainIdx.get((this.key as RawBuffer).utf8Slice(from, this.keyBare));
    if (d !== undefined) return (this.keyDomain = d);
    return -1;
  }

  // ---- records ----

  /** Where the last jidParts() call found the parts of a record's JID. */
  private jLocal = 0;
  private jLocalLen = 0;
  private jDom = -1;
  private jDomOff = 0;
  private jDomLen = 0;
  private jRes = 0;
  private jResLen = -1;
  private jAt = -1;
  private jSlash = -1;
  /** offset after the JID */
  private jEnd = 0;

  /** Parses record p's JID parts into the j* fields; returns the offset after them. */
  private jidParts(p: number): number {
    const b = this.buf;
    const flags = b[p + 4]!;
    let o = p + 6;
    if ((flags & kHasAt) !== 0) {
      this.jLocalLen = getVarint(b, o);
      this.jLocal = gPos;
      o = gPos + this.jLocalLen;
    } else this.jLocalLen = -1;
    const d = getVarint(b, o);
    o = gPos;
    if (d > 0) {
      this.jDom = d - 1;
      this.jDomLen = this.domainBytes[d - 1]!.length;
    } else {
      this.jDom = -1;
      this.jDomLen = getVarint(b, o);
      this.jDomOff = gPos;
      o = gPos + this.jDomLen;
    }
    if ((flags & kHasSlash) !== 0) {
      this.jResLen = getVarint(b, o);
      this.jRes = gPos;
      o = gPos + this.jResLen;
    } else this.jResLen = -1;
    return (this.jEnd = o);
  }

  /** After jidParts(): writes the JID into `out` (large enough); returns its length; sets jAt, jSlash. */
  private jidInto(out: Buffer): number {
    const b = this.buf;
    let o = 0;
    this.jAt = -1;
    this.jSlash = -1;
    if (this.jLocalLen >= 0) {
      copyBytes(b, this.jLocal, out, 0, this.jLocalLen);
      o = this.jLocalLen;
      this.jAt = o;
      out[o++] = 0x40;
    }
    if (this.jDom >= 0) {
      const db = this.domainBytes[this.jDom]!;
      copyBytes(db, 0, out, o, db.length);
      o += db.length;
    } else {
      copyBytes(b, this.jDomOff, out, o, this.jDomLen);
      o += this.jDomLen;
    }
    if (this.jResLen >= 0) {
      this.jSlash = o;
      out[o++] = 0x2f;
      copyBytes(b, this.jRes, out, o, this.jResLen);
      o += this.jResLen;
    }
    return o;
  }

  /** Record p has the key's bare JID (record parts in the j* fields after the call). */
  private bareIsKey(p: number): boolean {
    this.jidParts(p);
    const k = this.key;
    const at = this.keyAt;
    if (at >= 0) {
      if (this.jLocalLen !== at || !bytesEq(this.buf, this.jLocal, k, 0, at)) return false;
    } else if (this.jLocalLen >= 0) return false;
    const from = at + 1;
    const n = this.keyBare - from;
    if (this.jDom >= 0) {
      const db = this.domainBytes[this.jDom]!;
      return db.length === n && bytesEq(db, 0, k, from, n);
    }
    return this.jDomLen === n && bytesEq(this.buf, this.jDomOff, k, from, n);
  }

  /** After bareIsKey(p) returned true: the record's resource is the key's. */
  private resourceIsKey(): boolean {
    const slash = this.keySlash;
    if (slash < 0) return this.jResLen < 0;
    const n = this.keyLen - slash - 1;
    return this.jResLen === n && bytesEq(this.buf, this.jRes, this.key, slash + 1, n);
  }

  /** From the offset after the JID (jEnd): the home node index; gPos after the (home, c2sNode, c2s) part. */
  private homeAt(o: number): number {
    const b = this.buf;
    const t = getVarint(b, o);
    if (t > 0) return this.tripleHome[t - 1]!;
    const home = getVarint(b, gPos);
    gPos = this.skipString(this.skipString(gPos));
    return home;
  }

  private sinceAt(p: number, o: number): number {
    const b = this.buf;
    if ((b[p + 4]! & kSinceF64) !== 0) {
      for (let i = 0; i < 8; i++) gScratchF64Bytes[i] = b[o + i]!;
      gPos = o + 8;
      return gScratchF64[0]!;
    }
    const z = getVarint(b, o);
    return this.base + (z % 2 === 0 ? z / 2 : -(z + 1) / 2);
  }

  /**
   * Walks the key's chain: finds the record with the key's JID and home `home` (-1: none
   * wanted) and the oldest other session of the key's bare JID. Fills and returns `res`.
   */
  scan(home: number): ScanResult {
    const r = this.res;
    r.ref = kNil;
    r.prev = kNil;
    r.bestSince = Infinity;
    r.bestHome = -1;
    const b = this.buf;
    const nodes = this.nodes;
    let prev = kNil;
    for (let ref = this.heads[this.hash[0]! & this.bmask]!; ref !== kNil; prev = ref, ref = rd32(b, ref)) {
      if (!this.bareIsKey(ref)) continue;
      const h = this.homeAt(this.jEnd);
      if (h === home && r.ref === kNil && this.resourceIsKey()) {
        r.ref = ref;
        r.prev = prev;
        continue;
      }
      const since = this.sinceAt(ref, gPos);
      if (since < r.bestSince || (since === r.bestSince && r.bestHome >= 0 && nodes[h]! < nodes[r.bestHome]!)) {
        r.bestSince = since;
        r.bestHome = h;
      }
    }
    return r;
  }

  /** Records of the key's bare JID (for sessionsOf) or with the key's full JID (for session). */
  collect(full: boolean, out: SessionEntry[], first = false): void {
    const b = this.buf;
    for (let ref = this.heads[this.hash[0]! & this.bmask]!; ref !== kNil; ref = rd32(b, ref)) {
      if (!this.bareIsKey(ref)) continue;
      if (full && !this.resourceIsKey()) continue;
      out.push(this.entry(ref));
      if (first) return;
    }
  }

  /** Unlinks the record scan() found (res.ref), marks it dead. */
  removeFound(): void {
    const r = this.res;
    const ref = r.ref;
    const b = this.buf;
    const next = rd32(b, ref);
    if (r.prev === kNil) this.heads[this.hash[0]! & this.bmask] = next;
    else wr32(b, r.prev, next);
    b[ref + 4]! |= kDead;
    this.garbage += this.recordEnd(ref) - ref;
    this.count--;
    r.ref = kNil;
  }

  /** Buckets for `n` more records (sized once, not by doubling as they come). */
  reserveRecords(n: number): void {
    const want = this.count + n;
    if (want > this.heads.length) this.rehash(pow2AtLeast(want));
  }

  /** Arena bytes used so far. */
  get used(): number {
    return this.end;
  }

  /** Room for `bytes` more arena bytes (one allocation instead of growing by half again and again). */
  reserveBytes(bytes: number): void {
    if (this.end + bytes > this.buf.length) this.resize(Math.min(kMaxArena, Math.ceil(this.end + bytes)));
  }

  /** Appends a record for `s` (whose JID is the key) with home `home`, at the head of its chain. */
  insert(s: SessionEntry, home: number): void {
    if (this.count >= this.heads.length) this.rehash(2 * this.heads.length);
    const k = this.key;
    const at = this.keyAt;
    const slash = this.keySlash;
    // room: fixed part, varints, the JID's bytes, the strings at up to 3 bytes per UTF-16 unit
    const need = 80 + this.keyLen + 3 * (s.sm.length + s.c2sId.length + s.c2sNode.length + s.c2s.length);
    if (this.end + need > this.buf.length) {
      if (this.end + need > kMaxArena) throw new RangeError(`cluster table: the remote sessions need more than ${kMaxArena} bytes`);
      this.resize(Math.min(kMaxArena, Math.max(this.end + need, Math.ceil(this.buf.length * 1.5))));
    }
    const b = this.buf;
    const p = this.end;
    let flags = s.avail ? kAvail : 0;
    let o = p + 6;
    if (at >= 0) {
      flags |= kHasAt;
      o = putVarint(b, o, at);
      copyBytes(k, 0, b, o, at);
      o += at;
    }
    let d = this.keyDomainIdx();
    if (d < 0 && this.domains.length < kMaxDomains) d = this.intern((k as RawBuffer).utf8Slice(at + 1, this.keyBare));
    if (d >= 0) o = putVarint(b, o, d + 1);
    else {
      const n = this.keyBare - at - 1;
      o = putVarint(b, o, 0);
      o = putVarint(b, o, n);
      copyBytes(k, at + 1, b, o, n);
      o += n;
    }
    if (slash >= 0) {
      flags |= kHasSlash;
      const n = this.keyLen - slash - 1;
      o = putVarint(b, o, n);
      copyBytes(k, slash + 1, b, o, n);
      o += n;
    }
    const t = this.tripleOf(home, s.c2sNode, s.c2s);
    if (t >= 0) o = putVarint(b, o, t + 1);
    else {
      o = putVarint(b, o, 0);
      o = putVarint(b, o, home);
      o = this.putString(o, s.c2sNode);
      o = this.putString(o, s.c2s);
    }
    const d2 = s.since - this.base;
    if (Number.isInteger(d2) && d2 < 2 ** 52 && d2 > -(2 ** 52)) o = putVarint(b, o, d2 >= 0 ? d2 * 2 : -d2 * 2 - 1);
    else {
      flags |= kSinceF64;
      gScratchF64[0] = s.since;
      for (let i = 0; i < 8; i++) b[o++] = gScratchF64Bytes[i]!;
    }
    if (s.c2sNode !== this.self) flags |= kNoIds; // the ids are of no use here: not stored
    else {
      const id = decimalValue(s.c2sId);
      if (id >= 0) {
        flags |= kC2sIdNum;
        o = putVarint(b, o, id);
      } else o = this.putString(o, s.c2sId);
      const smEnd = putLowerHex(b, o, s.sm);
      if (smEnd < 0) o = this.putString(o, s.sm);
      else if (smEnd - o === 21) {
        // 20 bytes after a varint length of one byte: drop the length
        flags |= kSmHex | kSm20;
        b.copyWithin(o, o + 1, smEnd);
        o = smEnd - 1;
      } else {
        flags |= kSmHex;
        o = smEnd;
      }
    }
    b[p + 4] = flags;
    b[p + 5] = s.prio;
    const bucket = this.hash[0]! & this.bmask;
    wr32(b, p, this.heads[bucket]!);
    this.heads[bucket] = p;
    this.end = o;
    this.count++;
    this.addRange(home, p, o);
  }

  private addRange(home: number, start: number, end: number): void {
    let r = this.ranges.get(home);
    if (r === undefined) this.ranges.set(home, (r = []));
    const n = r.length;
    if (n > 0 && r[n - 1] === start) r[n - 1] = end;
    else if (n < 2 * kMaxRanges) r.push(start, end);
    else {
      const lo = Math.min(r[0]!, start);
      r.length = 2;
      r[0] = lo;
      r[1] = end;
    }
  }

  private putString(o: number, s: string): number {
    const n = Buffer.byteLength(s, 'utf8');
    o = putVarint(this.buf, o, n);
    this.buf.write(s, o, n, 'utf8');
    return o + n;
  }

  private intern(domain: string): number {
    const d = this.domains.length;
    this.domains.push(domain);
    this.domainBytes.push(Buffer.from(domain, 'utf8'));
    this.domainIdx.set(domain, d);
    return (this.keyDomain = d);
  }

  private tripleOf(home: number, node: string, name: string): number {
    if (home === this.lastHome && node === this.lastNode && name === this.lastName) return this.lastTriple;
    let byNode = this.tripleIdx.get(home);
    let byName = byNode?.get(node);
    let i = byName?.get(name);
    if (i === undefined) {
      if (this.tripleHome.length >= kMaxTriples) return -1;
      i = this.tripleHome.length;
      this.tripleHome.push(home);
      this.tripleNode.push(node);
      this.tripleName.push(name);
      if (byNode === undefined) this.tripleIdx.set(home, (byNode = new Map()));
      if (byName === undefined) byNode.set(node, (byName = new Map()));
      byName.set(name, i);
    }
    this.lastHome = home;
    this.lastNode = node;
    this.lastName = name;
    return (this.lastTriple = i);
  }

  private getString(o: number): string {
    const n = getVarint(this.buf, o);
    const s = (this.buf as RawBuffer).utf8Slice(gPos, gPos + n);
    gPos += n;
    return s;
  }

  private skipString(o: number): number {
    const n = getVarint(this.buf, o);
    return gPos + n;
  }

  /** Offset just past record p. */
  private recordEnd(p: number): number {
    const b = this.buf;
    const flags = b[p + 4]!;
    this.homeAt(this.jidParts(p));
    let o = (flags & kSinceF64) !== 0 ? gPos + 8 : skipVarint(b, gPos);
    if ((flags & kIdsMask) === kNoIds) return o;
    o = (flags & kC2sIdNum) !== 0 ? skipVarint(b, o) : this.skipString(o);
    return (flags & kSm20) !== 0 ? o + 20 : this.skipString(o);
  }

  /** Home node index of record p. */
  homeOfRecord(p: number): number {
    return this.homeAt(this.jidParts(p));
  }

  /** Record p as a SessionEntry (sm and c2sId '' when the record has kNoIds). */
  entry(p: number): SessionEntry {
    const b = this.buf;
    const flags = b[p + 4]!;
    this.jidParts(p);
    const need = this.jLocalLen + this.jDomLen + this.jResLen + 3;
    if (this.tmp.length < need) this.tmp = Buffer.allocUnsafe(Math.max(need, 2 * this.tmp.length));
    const n = this.jidInto(this.tmp);
    const jid = (this.tmp as RawBuffer).utf8Slice(0, n);
    let home: number;
    let c2sNode: string;
    let c2s: string;
    const t = getVarint(b, this.jEnd);
    if (t > 0) {
      home = this.tripleHome[t - 1]!;
      c2sNode = this.tripleNode[t - 1]!;
      c2s = this.tripleName[t - 1]!;
    } else {
      home = getVarint(b, gPos);
      c2sNode = this.getString(gPos);
      c2s = this.getString(gPos);
    }
    const since = this.sinceAt(p, gPos);
    let c2sId = '';
    let sm = '';
    if ((flags & kIdsMask) !== kNoIds) {
      let o = gPos;
      if ((flags & kC2sIdNum) !== 0) c2sId = String(getVarint(b, o));
      else c2sId = this.getString(o);
      o = gPos;
      if ((flags & kSm20) !== 0) sm = hexOf(b, o, 20);
      else if ((flags & kSmHex) !== 0) {
        const len = getVarint(b, o);
        sm = hexOf(b, gPos, len);
      } else sm = this.getString(o);
    }
    return { jid, home: this.nodes[home]!, c2sNode, c2s, sm, prio: (b[p + 5]! << 24) >> 24, avail: (flags & kAvail) !== 0, since, c2sId };
  }

  /**
   * Calls fn(p) for every live record of home node `home`, then forgets where they were: they
   * must all be removed by fn (records must not be added meanwhile).
   */
  forEachOf(home: number, fn: (p: number) => void): void {
    const r = this.ranges.get(home);
    if (r === undefined) return;
    this.ranges.delete(home);
    for (let i = 0; i < r.length; i += 2) {
      for (let p = r[i]!, end = r[i + 1]!; p < end; ) {
        const next = this.recordEnd(p);
        if ((this.buf[p + 4]! & kDead) === 0 && this.homeOfRecord(p) === home) fn(p);
        p = next;
      }
    }
  }

  /** Calls fn(p) for every live record (records must not be added meanwhile; removing is fine). */
  forEach(fn: (p: number) => void): void {
    const end = this.end;
    for (let p = 0; p < end; ) {
      const next = this.recordEnd(p);
      if ((this.buf[p + 4]! & kDead) === 0) fn(p);
      p = next;
    }
  }

  /**
   * Removes record p (found by a scan of the arena, not of its chain): loads its JID as the key,
   * unlinks it and leaves `res` as scan(-1) after the removal (the best remaining session).
   */
  removeRecord(p: number): void {
    this.loadKey(p);
    // find it in its chain by identity
    const b = this.buf;
    let prev = kNil;
    for (let r = this.heads[this.hash[0]! & this.bmask]!; r !== p; prev = r, r = rd32(b, r)) {
      if (r === kNil) throw new Error('cluster table: record not in its chain');
    }
    this.res.ref = p;
    this.res.prev = prev;
    this.removeFound();
    this.scan(-1);
  }

  // ---- space ----

  private resize(cap: number): void {
    cap = Math.min(kMaxArena, Math.max(kMinArena, cap));
    const nb = Buffer.from(new ArrayBuffer(cap));
    this.buf.copy(nb, 0, 0, this.end);
    this.buf = nb;
  }

  /** Trims the arena when more than 1/32 of it is unused (after a large insert). */
  trim(): void {
    const want = Math.max(kMinArena, this.end + (this.end >>> 8));
    if (this.buf.length > want + (want >>> 5)) this.resize(want);
  }

  /** Rebuilds the chains over `size` buckets (a power of two). */
  private rehash(size: number): void {
    size = Math.max(kMinBuckets, size);
    const heads = new Int32Array(size).fill(kNil);
    const mask = size - 1;
    const h = this.hash;
    const saved = [this.keyLen, this.keyAt, this.keySlash, this.keyBare, h[0]!, h[1]!, this.keyDomain] as const;
    const savedKey = Buffer.from(this.key.subarray(0, this.keyLen));
    const end = this.end;
    for (let p = 0; p < end; ) {
      const next = this.recordEnd(p);
      if ((this.buf[p + 4]! & kDead) === 0) {
        this.loadKey(p);
        const bucket = h[0]! & mask;
        wr32(this.buf, p, heads[bucket]!);
        heads[bucket] = p;
      }
      p = next;
    }
    this.heads = heads;
    this.bmask = mask;
    savedKey.copy(this.key);
    [this.keyLen, this.keyAt, this.keySlash, this.keyBare, h[0], h[1], this.keyDomain] = saved;
  }

  /** Compacts the arena when dead records fill more than half of it (and at least 1 MiB). */
  maybeCompact(): void {
    if (this.garbage < 1 << 20 || 2 * this.garbage < this.end) return;
    const live = this.end - this.garbage;
    const nb = Buffer.from(new ArrayBuffer(Math.max(kMinArena, live + (live >>> 4))));
    const ob = this.buf;
    // pass 1: copy live records, leave the new ref in the old record's first word; ranges anew
    this.ranges.clear();
    let q = 0;
    for (let p = 0; p < this.end; ) {
      const next = this.recordEnd(p);
      if ((ob[p + 4]! & kDead) === 0) {
        ob.copy(nb, q, p, next);
        wr32(ob, p, q);
        this.addRange(this.homeOfRecord(p), q, q + next - p);
        q += next - p;
      }
      p = next;
    }
    // pass 2: follow the forwarding refs
    const heads = this.heads;
    for (let i = 0; i < heads.length; i++) if (heads[i] !== kNil) heads[i] = rd32(ob, heads[i]!);
    this.buf = nb;
    for (let r = 0; r < q; ) {
      const n = rd32(nb, r);
      if (n !== kNil) wr32(nb, r, rd32(ob, n));
      r = this.recordEnd(r);
    }
    this.end = q;
    this.garbage = 0;
    if (this.count < this.heads.length >>> 3 && this.heads.length > kMinBuckets) this.rehash(pow2AtLeast(2 * this.count));
  }
}

function pow2AtLeast(n: number): number {
  let p = kMinBuckets;
  while (p < n) p *= 2;
  return p;
}

// ---------------------------------------------------------------------------------------------

/**
 * Sessions returned by the queries below (sessionsOf, session, allSessions, dropOrigin): own
 * sessions as added; a remote session (hosted by another node's sm) with every field as its node
 * sent it, except that `sm` and `c2sId` are '' unless its client connection is on this node's
 * c2s (`c2sNode === self`): a node keeps what it can act on (see the file header).
 */
export class ClusterTable {
  private readonly origins = new Map<string, Origin>();
  /** own sessions by full JID */
  private readonly ownSessions = new Map<string, SessionEntry>();
  /** own sessions by bare JID (a user's own sessions, for the home) */
  private readonly ownByBare = new Map<string, SessionEntry[]>();
  /** own sessions by sm session id (sc:sm) */
  private readonly bySm = new Map<string, SessionEntry>();
  /** sessions of the other nodes */
  private readonly remote: RemoteSessions;
  /** node name → index stored in the shared table (stable for the life of the process) */
  private readonly nodeIndex = new Map<string, number>();
  readonly nodes: string[] = [];
  readonly shared: SharedTable;
  private pendingOps: Op[] = [];

  /**
   * capacityPow2: size of the shared index (SharedTable.create): 8 * 2^capacityPow2 bytes, up to
   * 2^(capacityPow2 - 1) users with sessions; the default 22 is 32 MiB for up to 2 097 152 users
   * (21: 16 MiB, 1 048 576 users).
   */
  constructor(readonly self: string, readonly incarnation: number, private readonly events: TableEvents, capacityPow2 = 22) {
    this.shared = SharedTable.create(capacityPow2);
    this.remote = new RemoteSessions(this.nodes, self);
    this.origins.set(self, { incarnation, seq: 0, names: new Map(), count: 0 });
    this.indexOf(self);
  }

  private indexOf(node: string): number {
    let i = this.nodeIndex.get(node);
    if (i === undefined) {
      i = this.nodes.length;
      this.nodes.push(node);
      this.nodeIndex.set(node, i);
    }
    return i;
  }

  private get own(): Origin {
    return this.origins.get(this.self)!;
  }

  /** Bytes of the remote-session store (arena and buckets), for the operators' figures. */
  get remoteBytes(): number {
    return this.remote.bytes;
  }

  // ---- queries ---------------------------------------------------------------------------

  /** The node hosting the user's sessions (its home sm), or undefined if none anywhere. */
  homeOf(bare: string): string | undefined {
    const v = this.shared.get(bare);
    return v === undefined ? undefined : this.nodes[v];
  }

  /** The user's sessions, own and remote (remote ones: sm and c2sId '' unless c2sNode is self). */
  sessionsOf(bare: string): SessionEntry[] {
    const out = [...(this.ownByBare.get(bare) ?? [])];
    if (this.remote.count > 0) {
      this.remote.setKey(bare);
      this.remote.collect(false, out);
    }
    return out;
  }

  /** The session of a full JID (a remote one: sm and c2sId '' unless c2sNode is self). */
  session(full: string): SessionEntry | undefined {
    const s = this.ownSessions.get(full);
    if (s !== undefined || this.remote.count === 0) return s;
    const out: SessionEntry[] = [];
    this.remote.setKey(full);
    this.remote.collect(true, out, true);
    return out[0];
  }

  ownSessionBySm(sm: string): SessionEntry | undefined {
    return this.bySm.get(sm);
  }

  /**
   * The user's sessions hosted here (a Map lookup). sessionsOf() builds every remote session
   * from its packed record (about 1 µs each): a caller that only acts on users with own sessions
   * (e.g. reconciling after a snapshot) can test this first.
   */
  ownSessionsOf(bare: string): SessionEntry[] {
    return [...(this.ownByBare.get(bare) ?? [])];
  }

  /** Own sessions whose client connection is on `node`'s c2s. */
  ownSessionsVia(node: string): SessionEntry[] {
    return [...this.ownSessions.values()].filter((s) => s.c2sNode === node);
  }

  namesOf(origin: string): NameEntry[] {
    return [...(this.origins.get(origin)?.names.values() ?? [])];
  }

  /** Which remote node serves this name (component or sm id), if any. */
  remoteNameOwner(name: string): string | undefined {
    for (const [o, org] of this.origins) if (o !== this.self && org.names.has(name)) return o;
    return undefined;
  }

  knownOrigins(): string[] {
    return [...this.origins.keys()];
  }

  sessionCount(origin?: string): number {
    if (origin === this.self) return this.ownSessions.size;
    if (origin !== undefined) return this.origins.get(origin)?.count ?? 0;
    return this.ownSessions.size + this.remote.count;
  }

  /** Every session, own and remote (remote ones: sm and c2sId '' unless c2sNode is self). */
  allSessions(): SessionEntry[] {
    const out = [...this.ownSessions.values()];
    this.remote.forEach((p) => out.push(this.remote.entry(p)));
    return out;
  }

  // ---- own changes (they become deltas) ----------------------------------------------------

  addOwnSession(s: SessionEntry): void {
    const old = this.ownSessions.get(s.jid);
    if (old) {
      this.bySm.delete(old.sm);
      this.unlistOwn(old);
    }
    this.ownSessions.set(s.jid, s);
    this.bySm.set(s.sm, s);
    const bare = bareJid(s.jid);
    const list = this.ownByBare.get(bare);
    if (list) list.push(s);
    else this.ownByBare.set(bare, [s]);
    this.refreshHome(s.jid);
    this.pendingOps.push({ op: 'sess+', s });
  }

  /** lost: the session died with the sm, which told nobody */
  removeOwnSession(jid: string, lost = false): SessionEntry | undefined {
    const s = this.ownSessions.get(jid);
    if (!s) return undefined;
    this.ownSessions.delete(jid);
    this.bySm.delete(s.sm);
    this.unlistOwn(s);
    this.refreshHome(s.jid);
    this.pendingOps.push(lost ? { op: 'sess-', jid, lost } : { op: 'sess-', jid });
    return s;
  }

  private unlistOwn(s: SessionEntry): void {
    const bare = bareJid(s.jid);
    const list = this.ownByBare.get(bare);
    if (!list) return;
    const i = list.indexOf(s);
    if (i >= 0) list.splice(i, 1);
    if (list.length === 0) this.ownByBare.delete(bare);
  }

  /** Drop every own session (the local sm went away). */
  clearOwnSessions(): SessionEntry[] {
    const all = [...this.ownSessions.values()];
    for (const s of all) this.removeOwnSession(s.jid, true);
    return all;
  }

  addOwnName(n: NameEntry): void {
    const old = this.own.names.get(n.name);
    if (old && old.kind === n.kind) return;
    this.own.names.set(n.name, n);
    this.pendingOps.push({ op: 'name+', n });
  }

  removeOwnName(name: string): void {
    if (!this.own.names.delete(name)) return;
    this.pendingOps.push({ op: 'name-', name });
  }

  ownNames(): NameEntry[] {
    return [...this.own.names.values()];
  }

  /** Take the ops accumulated since the last call, stamped with the next sequence number. */
  takeDelta(): { seq: number; ops: Op[] } | null {
    if (this.pendingOps.length === 0) return null;
    const ops = this.pendingOps;
    this.pendingOps = [];
    this.own.seq++;
    return { seq: this.own.seq, ops };
  }

  snapshot(): { origin: string; incarnation: number; seq: number; sessions: SessionEntry[]; names: NameEntry[] } {
    const o = this.own;
    return { origin: this.self, incarnation: o.incarnation, seq: o.seq, sessions: [...this.ownSessions.values()], names: [...o.names.values()] };
  }

  // ---- remote changes --------------------------------------------------------------------

  /**
   * Replace everything known of `origin` with a snapshot. Its sessions are stored without sm and
   * c2sId unless their client is on our c2s (as are sessions added by applyDelta).
   */
  applySnapshot(origin: string, incarnation: number, seq: number, sessions: SessionEntry[], names: NameEntry[]): void {
    if (origin === this.self) return;
    const old = this.origins.get(origin);
    const fresh: Origin = { incarnation, seq, names: new Map(), count: 0 };
    const idx = this.indexOf(origin);
    if (old && old.count > 0) this.removeAllOf(idx, null);
    this.origins.set(origin, fresh);
    const r = this.remote;
    r.reserveRecords(sessions.length);
    // the arena: sized once from the first records' average, not grown by copying as it fills
    const sample = Math.min(256, sessions.length);
    const used0 = r.used;
    for (let i = 0; i < sessions.length; i++) {
      const s = sessions[i]!;
      if (i === sample && sessions.length > 4 * sample) r.reserveBytes(Math.ceil((((r.used - used0) / sample) * 1.02 + 1) * (sessions.length - sample)));
      if (s.home !== origin) {
        this.events.onForeignEntry(origin, s);
        continue;
      }
      this.putRemote(fresh, idx, s);
    }
    r.trim();
    const oldNames = old?.names ?? new Map<string, NameEntry>();
    for (const n of names) fresh.names.set(n.name, n);
    for (const [k, n] of oldNames) if (!fresh.names.has(k)) this.events.onRemoteName(origin, n, false);
    for (const [k, n] of fresh.names) {
      const was = oldNames.get(k);
      if (was && was.kind !== n.kind) this.events.onRemoteName(origin, was, false); // the old kind goes first
      if (!was || was.kind !== n.kind) this.events.onRemoteName(origin, n, true);
    }
  }

  /**
   * Apply a delta. Returns false when it cannot be applied (unknown origin, other
   * incarnation, or a sequence gap): the caller then asks the origin for a snapshot.
   */
  applyDelta(origin: string, incarnation: number, seq: number, ops: Op[]): boolean {
    const o = this.origins.get(origin);
    if (!o || o.incarnation !== incarnation) return false;
    if (seq <= o.seq) return true; // already seen (a snapshot overtook it)
    if (seq !== o.seq + 1) return false;
    o.seq = seq;
    const idx = this.indexOf(origin);
    for (const op of ops) {
      switch (op.op) {
        case 'sess+': {
          if (op.s.home !== origin) {
            this.events.onForeignEntry(origin, op.s);
            break;
          }
          this.putRemote(o, idx, op.s);
          break;
        }
        case 'sess-': {
          const r = this.remote;
          if (o.count === 0) break;
          r.setKey(op.jid);
          if (r.scan(idx).ref === kNil) break;
          r.removeFound();
          o.count--;
          this.publishHome(null);
          break;
        }
        case 'name+': {
          const was = o.names.get(op.n.name);
          o.names.set(op.n.name, op.n);
          if (was && was.kind !== op.n.kind) this.events.onRemoteName(origin, was, false); // the old kind goes first
          if (!was || was.kind !== op.n.kind) this.events.onRemoteName(origin, op.n, true);
          break;
        }
        case 'name-': {
          const was = o.names.get(op.name);
          if (was) {
            o.names.delete(op.name);
            this.events.onRemoteName(origin, was, false);
          }
          break;
        }
      }
    }
    this.remote.maybeCompact();
    return true;
  }

  /**
   * Forget everything of a node (its link is gone for good, or it said goodbye). Returns its
   * sessions (sm and c2sId '' unless their client was on our c2s: those are the ones whose
   * clients this node ends).
   */
  dropOrigin(origin: string): SessionEntry[] {
    if (origin === this.self) return [];
    const o = this.origins.get(origin);
    if (!o) return [];
    this.origins.delete(origin);
    const lost: SessionEntry[] = [];
    if (o.count > 0) this.removeAllOf(this.indexOf(origin), lost);
    for (const n of o.names.values()) this.events.onRemoteName(origin, n, false);
    return lost;
  }

  originState(origin: string): { incarnation: number; seq: number } | undefined {
    const o = this.origins.get(origin);
    return o ? { incarnation: o.incarnation, seq: o.seq } : undefined;
  }

  // ---- indexes ---------------------------------------------------------------------------

  /** Add or replace (same JID and home) a session of remote origin `o`. */
  private putRemote(o: Origin, idx: number, s: SessionEntry): void {
    const r = this.remote;
    r.setKey(s.jid);
    const res = r.scan(idx);
    if (res.ref !== kNil) {
      r.removeFound();
      o.count--;
    }
    r.insert(s, idx);
    o.count++;
    // the new session against the oldest other one
    if (s.since < res.bestSince || (s.since === res.bestSince && (res.bestHome < 0 || s.home < this.nodes[res.bestHome]!))) {
      res.bestSince = s.since;
      res.bestHome = idx;
    }
    this.publishHome(s.jid);
  }

  /** Removes every remote session of node `idx` (into `lost` when given). */
  private removeAllOf(idx: number, lost: SessionEntry[] | null): void {
    const r = this.remote;
    r.forEachOf(idx, (p) => {
      if (lost !== null) lost.push(r.entry(p));
      r.removeRecord(p);
      this.publishHome(null);
    });
    r.maybeCompact();
  }

  /**
   * Publish the home of the remote store's key: the best remote session found by its last scan
   * (`res`), against the user's own sessions. `jid`: the key as a string, when the caller has it.
   */
  private publishHome(jid: string | null): void {
    const res = this.remote.res;
    let since = res.bestSince;
    let home = res.bestHome >= 0 ? this.nodes[res.bestHome]! : undefined;
    let bare: string | undefined;
    if (this.ownByBare.size > 0) {
      bare = jid !== null ? bareJid(jid) : this.remote.keyBareString();
      for (const s of this.ownByBare.get(bare) ?? []) {
        if (home === undefined || s.since < since || (s.since === since && s.home < home)) {
          since = s.since;
          home = s.home;
        }
      }
    }
    const h = this.remote.hash;
    if (home === undefined) {
      this.shared.deleteByHash(h[0]!, h[1]!);
      return;
    }
    try {
      this.shared.setByHash(h[0]!, h[1]!, this.indexOf(home));
    } catch (err) {
      this.events.onIndexFull(bare ?? (jid !== null ? bareJid(jid) : this.remote.keyBareString()), err as Error);
    }
  }

  /** The home of `jid`'s user after a change of its own sessions. */
  private refreshHome(jid: string): void {
    const r = this.remote;
    r.setKey(jid);
    if (r.count > 0) r.scan(-1);
    else {
      r.res.bestHome = -1;
      r.res.bestSince = Infinity;
    }
    this.publishHome(jid);
  }
}
