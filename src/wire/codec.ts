/**
 * Peer protocol codec: PeerMessage ↔ framed MessagePack bytes (layout in messages.ts). Pure;
 * shared.
 *
 * - msgpackr is used through its plain JS API, configured for plain MessagePack: no records
 *   (`useRecords: false`: no structure table shared between the ends), no structured clone, no
 *   bundled strings. Whether msgpackr's optional native string extractor is loaded changes speed
 *   only, never bytes.
 * - `encode` packs straight after 4 reserved bytes (msgpackr `RESERVE_START_SPACE`) and fills in
 *   the length prefix: one pass, no copy. The Buffer returned is a view into msgpackr's output
 *   slab (msgpackr never writes over bytes it has returned).
 * - STANZA, the hot path, has hand-written fast paths both ways: encoding copies the stanza bytes
 *   once into the frame; decoding returns a `subarray` of the payload. They produce and accept
 *   exactly what msgpackr does (pinned by tests); anything unusual falls back to msgpackr.
 * - SNAPSHOT sessions go packed (PackedSessions in messages.ts) on version-2 links: a few bytes
 *   per field, node and c2s names once per part, hex sm ids as their bytes; `encode(m, 1)` writes
 *   the version-1 arrays for an older peer. `decode` accepts both.
 * - `decode` validates strictly: the payload must be one MessagePack value, an array whose
 *   element 0 is a known MsgType, with every known field of the right type; anything else throws
 *   a WireError naming the field (`SNAPSHOT.sessions[3].prio: expected an integer -128..127,
 *   got number 300`). Trailing elements a later version may append are ignored. Never another
 *   exception: msgpackr's own errors (truncated input, bad extension…) are wrapped.
 */
import { Packr, RESERVE_START_SPACE, Unpackr } from 'msgpackr';
import { kFrameHeaderBytes, kMaxFramePayload } from './frame.ts';
import {
  MsgType,
  NAME_KINDS,
  OpCode,
  kNonceBytes,
  kPackedSnapshotVersion,
  kProtocolVersion,
  type NameEntry,
  type NameKind,
  type Op,
  type PeerMessage,
  type SessionEntry,
  type SnapshotMsg,
} from './messages.ts';

/** A payload that is not a valid peer message. The link closes with a protocol error. */
export class WireError extends Error {
  override name = 'WireError';
  readonly code = 'JC_ERR_WIRE_DECODE';
}

const packr = new Packr({ useRecords: false, structuredClone: false, bundleStrings: false });
// mapsAsObjects: false: a map (never valid in this protocol) decodes to a Map, not to an object
// whose keys come from the peer; int64AsType 'number': 64-bit integers become numbers, which the
// safe-integer checks below reject when they are not exact.
const unpackr = new Unpackr({ useRecords: false, mapsAsObjects: false, int64AsType: 'number' });

const kFixArray2 = 0x92;
const kBin8 = 0xc4;
const kBin16 = 0xc5;
const kBin32 = 0xc6;

// ---------------------------------------------------------------------------------------------
// Encoding

function sessionToWire(s: SessionEntry): unknown[] {
  return [s.jid, s.home, s.c2sNode, s.c2s, s.sm, s.prio, s.avail, s.since, s.c2sId];
}

function nameToWire(n: NameEntry): unknown[] {
  return [n.name, n.kind];
}

function opToWire(o: Op): unknown[] {
  switch (o.op) {
    case 'sess+':
      return [OpCode.SESS_ADD, sessionToWire(o.s)];
    case 'sess-':
      return o.lost ? [OpCode.SESS_DEL, o.jid, true] : [OpCode.SESS_DEL, o.jid];
    case 'name+':
      return [OpCode.NAME_ADD, nameToWire(o.n)];
    case 'name-':
      return [OpCode.NAME_DEL, o.name];
  }
}

function toWire(m: PeerMessage): unknown[] {
  switch (m.type) {
    case MsgType.HELLO:
      return [m.type, m.version, m.minVersion, m.node, m.incarnation, m.caps, m.nonce];
    case MsgType.AUTH:
      return [m.type, m.proof];
    case MsgType.AUTH_OK:
      return [m.type];
    case MsgType.AUTH_FAIL:
      return [m.type, m.reason];
    case MsgType.SNAPSHOT:
      // protocol 1 (protocol 2 packs the sessions: encodeSnapshotPacked)
      return m.more
        ? [m.type, m.origin, m.incarnation, m.seq, m.sessions.map(sessionToWire), m.names.map(nameToWire), true]
        : [m.type, m.origin, m.incarnation, m.seq, m.sessions.map(sessionToWire), m.names.map(nameToWire)];
    case MsgType.DELTA:
      return [m.type, m.origin, m.incarnation, m.seq, m.ops.map(opToWire)];
    case MsgType.RESYNC:
      return [m.type, m.origin];
    case MsgType.STANZA:
      return [m.type, m.bytes];
    case MsgType.PING:
    case MsgType.PONG:
      return [m.type, m.t];
    case MsgType.BYE:
      return [m.type, m.reason];
  }
}

/** Writes a MessagePack bin header (`size` 2, 3 or 5 bytes) for `n` bytes at `o`; returns the offset after it. */
function writeBinHead(out: Buffer, o: number, n: number, size: number): number {
  if (size === 2) {
    out[o] = kBin8;
    out[o + 1] = n;
  } else if (size === 3) {
    out[o] = kBin16;
    out.writeUInt16BE(n, o + 1);
  } else {
    out[o] = kBin32;
    out.writeUInt32BE(n, o + 1);
  }
  return o + size;
}

/** STANZA as `[len][0x92 0x08 bin8|bin16|bin32 …bytes]`, the bytes copied once. */
function encodeStanza(bytes: Uint8Array): Buffer {
  const n = bytes.length;
  const binHead = n < 0x100 ? 2 : n < 0x10000 ? 3 : 5;
  const payload = 2 + binHead + n;
  if (payload > kMaxFramePayload) throw new RangeError(`STANZA of ${n} bytes does not fit in a frame`);
  const out = Buffer.allocUnsafe(kFrameHeaderBytes + payload);
  out.writeUInt32BE(payload, 0);
  let o = kFrameHeaderBytes;
  out[o++] = kFixArray2;
  out[o++] = MsgType.STANZA;
  o = writeBinHead(out, o, n, binHead);
  out.set(bytes, o);
  return out;
}

/**
 * The frame for `msg` (length prefix included), ready to write to the socket, in the layout of
 * protocol `version` (the link's; only SNAPSHOT differs). The receiver refuses frames over its
 * `max_frame_bytes`: callers sending large SNAPSHOTs check `length - kFrameHeaderBytes` against
 * the configured limit.
 */
export function encode(msg: PeerMessage, version: number = kProtocolVersion): Buffer {
  if (msg.type === MsgType.STANZA) return encodeStanza(msg.bytes);
  if (msg.type === MsgType.SNAPSHOT && version >= kPackedSnapshotVersion) return encodeSnapshotPacked(msg);
  const out = packr.pack(toWire(msg), RESERVE_START_SPACE | kFrameHeaderBytes);
  const payload = out.length - kFrameHeaderBytes;
  if (payload > kMaxFramePayload) throw new RangeError(`message of ${payload} bytes does not fit in a frame`);
  out.writeUInt32BE(payload, 0);
  return out;
}

// ---------------------------------------------------------------------------------------------
// Packed sessions (SNAPSHOT.sessions from protocol version 2; layout in messages.ts)

const kPackAvail = 1;
const kPackSmHex = 2;
const kPackC2sIdNum = 4;
const kPackFlags = kPackAvail | kPackSmHex | kPackC2sIdNum;
/** Smallest record: flags, prio, 3 indexes, since, c2sId, sm (length + 1 byte), jid (length + 1 byte). */
const kMinPackedRecord = 11;

/** Node's Buffer string methods without the argument handling of toString() (present since Node 0.x). */
export interface RawBuffer extends Buffer {
  utf8Slice(start: number, end: number): string;
  latin1Slice(start: number, end: number): string;
}

/** The value of `s` if it is a number as String(n) writes it, below 10^15 (an id that packs as a varint); else -1. */
export function decimalValue(s: string): number {
  const n = s.length;
  if (n === 0 || n > 15 || (n > 1 && s.charCodeAt(0) === 0x30)) return -1;
  let v = 0;
  for (let i = 0; i < n; i++) {
    const c = s.charCodeAt(i) - 0x30;
    if (c < 0 || c > 9) return -1;
    v = v * 10 + c;
  }
  return v;
}

function nibble(c: number): number {
  return c >= 0x30 && c <= 0x39 ? c - 0x30 : c >= 0x61 && c <= 0x66 ? c - 0x57 : -1;
}

/**
 * If `s` is lowercase hex of even, non-zero length below 2^15 (an id that packs into half as many
 * bytes): writes varint(length / 2) and the bytes at b[o..] (room for 3 + length / 2 bytes needed)
 * and returns the end; else -1 (b[o..] may have been written).
 */
export function putLowerHex(b: Uint8Array, o: number, s: string): number {
  const len = s.length;
  if (len === 0 || (len & 1) !== 0 || len >= 1 << 15) return -1;
  const n = len >>> 1;
  o = putVarint(b, o, n);
  for (let i = 0; i < n; i++) {
    const hi = nibble(s.charCodeAt(2 * i));
    const lo = nibble(s.charCodeAt(2 * i + 1));
    if ((hi | lo) < 0) return -1;
    b[o + i] = (hi << 4) | lo;
  }
  return o + n;
}

const kHexDigits = Uint8Array.from('0123456789abcdef', (c) => c.charCodeAt(0));
let hexScratch = Buffer.allocUnsafe(256);

/** `n` bytes of b at o as a lowercase hex string (one flat string). */
export function hexOf(b: Uint8Array, o: number, n: number): string {
  if (hexScratch.length < 2 * n) hexScratch = Buffer.allocUnsafe(2 * n);
  const t = hexScratch;
  for (let i = 0; i < n; i++) {
    const x = b[o + i]!;
    t[2 * i] = kHexDigits[x >>> 4]!;
    t[2 * i + 1] = kHexDigits[x & 15]!;
  }
  return (t as RawBuffer).latin1Slice(0, 2 * n);
}

/** Unsigned LEB128 of a safe integer at b[o..]; returns the end. */
export function putVarint(b: Uint8Array, o: number, v: number): number {
  while (v > 0x7fffffff) {
    b[o++] = (v & 0x7f) | 0x80; // ToInt32 keeps the low bits of any safe integer
    v = Math.floor(v / 128);
  }
  while (v >= 0x80) {
    b[o++] = (v & 0x7f) | 0x80;
    v >>>= 7;
  }
  b[o++] = v;
  return o;
}

let packOut = Buffer.allocUnsafe(1 << 20);

function packRoom(o: number, n: number): void {
  if (o + n <= packOut.length) return;
  const b = Buffer.allocUnsafe(Math.max(o + n, 2 * packOut.length));
  packOut.copy(b, 0, 0, o);
  packOut = b;
}

/** varint length + UTF-8 of `s` at packOut[o..]; returns the end. */
function packStr(o: number, s: string): number {
  const n = s.length;
  packRoom(o, 3 * n + 8);
  const b = packOut;
  if (n < 0x80) {
    // ASCII, the usual case: one pass, the length byte first
    let i = 0;
    for (; i < n; i++) {
      const c = s.charCodeAt(i);
      if (c >= 0x80) break;
      b[o + 1 + i] = c;
    }
    if (i === n) {
      b[o] = n;
      return o + 1 + n;
    }
  }
  const len = Buffer.byteLength(s, 'utf8');
  o = putVarint(b, o, len);
  return o + b.write(s, o, len, 'utf8');
}

/** Bytes of records the last packSessions() left at the start of packOut. */
let packedRecords = 0;

/**
 * SNAPSHOT sessions in the packed layout (PackedSessions): returns the head (count and table);
 * the records follow in packOut[0..packedRecords). Out-of-range values that a version-1 receiver
 * would have refused are brought into range: prio clamped to -128..127, since to a non-negative
 * integer.
 */
function packSessions(sessions: readonly SessionEntry[]): Buffer {
  const table = new Map<string, number>();
  const names: string[] = [];
  const idx = (v: string): number => {
    let i = table.get(v);
    if (i === undefined) {
      i = names.length;
      names.push(v);
      table.set(v, i);
    }
    return i;
  };
  let lastHome = '';
  let lastHomeIdx = -1;
  let lastNode = '';
  let lastNodeIdx = -1;
  let lastC2s = '';
  let lastC2sIdx = -1;
  let o = 0;
  for (const s of sessions) {
    packRoom(o, 64);
    const b = packOut;
    const p = o;
    let flags = s.avail ? kPackAvail : 0;
    const prio = Number.isFinite(s.prio) ? Math.max(-128, Math.min(127, Math.trunc(s.prio))) : 0;
    b[p + 1] = prio & 0xff;
    if (s.home !== lastHome || lastHomeIdx < 0) lastHomeIdx = idx((lastHome = s.home));
    if (s.c2sNode !== lastNode || lastNodeIdx < 0) lastNodeIdx = idx((lastNode = s.c2sNode));
    if (s.c2s !== lastC2s || lastC2sIdx < 0) lastC2sIdx = idx((lastC2s = s.c2s));
    o = putVarint(b, p + 2, lastHomeIdx);
    o = putVarint(b, o, lastNodeIdx);
    o = putVarint(b, o, lastC2sIdx);
    const since = s.since;
    o = putVarint(b, o, since >= 0 && since <= Number.MAX_SAFE_INTEGER ? Math.floor(since) : 0);
    const id = decimalValue(s.c2sId);
    if (id >= 0) {
      flags |= kPackC2sIdNum;
      o = putVarint(b, o, id);
    } else o = packStr(o, s.c2sId);
    packRoom(o, 3 + (s.sm.length >>> 1));
    const smEnd = putLowerHex(packOut, o, s.sm);
    if (smEnd >= 0) {
      flags |= kPackSmHex;
      o = smEnd;
    } else o = packStr(o, s.sm);
    o = packStr(o, s.jid);
    packOut[p] = flags;
  }
  packedRecords = o;
  // head: count, the table
  let headLen = 16;
  for (const n of names) headLen += 8 + 3 * n.length;
  const head = Buffer.allocUnsafe(headLen);
  let h = putVarint(head, 0, sessions.length);
  h = putVarint(head, h, names.length);
  for (const n of names) {
    const len = Buffer.byteLength(n, 'utf8');
    h = putVarint(head, h, len);
    h += head.write(n, h, len, 'utf8');
  }
  return head.subarray(0, h);
}

/**
 * SNAPSHOT with packed sessions, framed by hand: what msgpackr writes for
 * `[5, origin, incarnation, seq, bin, names, true?]`, with the bin copied once, straight into the
 * frame (msgpackr would copy it into its own buffer first, and keep a buffer of that size).
 */
function encodeSnapshotPacked(m: SnapshotMsg): Buffer {
  const head = packSessions(m.sessions);
  const records = packedRecords;
  // the small fields through msgpackr: [origin, incarnation, seq] without its array header, then names
  const mid = Buffer.from(packr.pack([m.origin, m.incarnation, m.seq])).subarray(1);
  const names = Buffer.from(packr.pack(m.names.map(nameToWire)));
  const n = head.length + records;
  const binHead = n < 0x100 ? 2 : n < 0x10000 ? 3 : 5;
  const payload = 2 + mid.length + binHead + n + names.length + (m.more ? 1 : 0);
  if (payload > kMaxFramePayload) throw new RangeError(`SNAPSHOT of ${payload} bytes does not fit in a frame`);
  const out = Buffer.allocUnsafe(kFrameHeaderBytes + payload);
  out.writeUInt32BE(payload, 0);
  let o = kFrameHeaderBytes;
  out[o++] = m.more ? 0x97 : 0x96;
  out[o++] = MsgType.SNAPSHOT;
  mid.copy(out, o);
  o += mid.length;
  o = writeBinHead(out, o, n, binHead);
  head.copy(out, o);
  o += head.length;
  packOut.copy(out, o, 0, records);
  o += records;
  names.copy(out, o);
  o += names.length;
  if (m.more) out[o++] = 0xc3;
  return out;
}

/**
 * Reading packed sessions: the position and end, and where we are for error messages (built only
 * when one is thrown: `rdWhere`, then `[rdAt]` when reading entry rdAt, then `.field`).
 */
let rdPos = 0;
let rdEnd = 0;
let rdWhere = '';
let rdAt = -1;
let rdTable = false;

function loc(field: string): string {
  if (rdAt < 0) return field === '' ? rdWhere : `${rdWhere}.${field}`;
  const at = rdTable ? `${rdWhere}.table[${rdAt}]` : `${rdWhere}[${rdAt}]`;
  return field === '' ? at : `${at}.${field}`;
}

function rdVarint(b: Uint8Array, field: string): number {
  let x = 0;
  let mul = 1;
  for (let i = 0; i < 8; i++) {
    if (rdPos >= rdEnd) throw new WireError(`${loc(field)}: truncated`);
    const c = b[rdPos++]!;
    x += (c & 0x7f) * mul;
    if (c < 0x80) {
      if (x > Number.MAX_SAFE_INTEGER) throw new WireError(`${loc(field)}: number ${x} is beyond 2^53`);
      return x;
    }
    mul *= 128;
  }
  throw new WireError(`${loc(field)}: varint longer than 8 bytes`);
}

/** A str: varint length, then UTF-8; `nonEmpty`: refuse "". */
function rdStr(b: RawBuffer, field: string, nonEmpty: boolean): string {
  const n = rdVarint(b, field);
  if (n > rdEnd - rdPos) throw new WireError(`${loc(field)}: string of ${n} bytes runs past the end`);
  if (n === 0 && nonEmpty) throw new WireError(`${loc(field)}: expected a non-empty string, got string ""`);
  const s = b.utf8Slice(rdPos, rdPos + n);
  rdPos += n;
  return s;
}

/** Table string `i` for `field`: present and non-empty. */
function rdName(names: string[], b: Uint8Array, field: string): string {
  const i = rdVarint(b, field);
  const v = names[i];
  if (v === undefined) throw new WireError(`${loc(field)}: index ${i} is not in the table of ${names.length}`);
  if (v.length === 0) throw new WireError(`${loc(field)}: expected a non-empty string, got string ""`);
  return v;
}

function unpackSessions(bin: Uint8Array, where: string): SessionEntry[] {
  const b = (Buffer.isBuffer(bin) ? bin : Buffer.from(bin.buffer, bin.byteOffset, bin.byteLength)) as RawBuffer;
  rdPos = 0;
  rdEnd = b.length;
  rdWhere = where;
  rdAt = -1;
  rdTable = false;
  const count = rdVarint(b, 'count');
  const nStrings = rdVarint(b, 'nStrings');
  if (nStrings > rdEnd - rdPos) throw new WireError(`${where}: ${nStrings} table strings in ${rdEnd - rdPos} bytes`);
  const names: string[] = [];
  rdTable = true;
  for (rdAt = 0; rdAt < nStrings; rdAt++) names.push(rdStr(b, '', false));
  rdTable = false;
  rdAt = -1;
  if (count > (rdEnd - rdPos) / kMinPackedRecord) throw new WireError(`${where}: ${count} sessions cannot fit in ${rdEnd - rdPos} bytes`);
  const out: SessionEntry[] = new Array(count);
  for (let i = 0; i < count; i++) {
    rdAt = i;
    if (rdEnd - rdPos < 2) throw new WireError(`${loc('')}: truncated`);
    const flags = b[rdPos]!;
    if ((flags & ~kPackFlags) !== 0) throw new WireError(`${loc('flags')}: unknown bits 0x${(flags & ~kPackFlags).toString(16)}`);
    const prio = (b[rdPos + 1]! << 24) >> 24;
    rdPos += 2;
    const home = rdName(names, b, 'home');
    const c2sNode = rdName(names, b, 'c2sNode');
    const c2s = rdName(names, b, 'c2s');
    const since = rdVarint(b, 'since');
    const c2sId = (flags & kPackC2sIdNum) !== 0 ? String(rdVarint(b, 'c2sId')) : rdStr(b, 'c2sId', true);
    let sm: string;
    if ((flags & kPackSmHex) !== 0) {
      const n = rdVarint(b, 'sm');
      if (n === 0 || n > rdEnd - rdPos) throw new WireError(`${loc('sm')}: ${n} bytes of hex id`);
      sm = hexOf(b, rdPos, n);
      rdPos += n;
    } else sm = rdStr(b, 'sm', true);
    const jid = rdStr(b, 'jid', true);
    out[i] = { jid, home, c2sNode, c2s, sm, prio, avail: (flags & kPackAvail) !== 0, since, c2sId };
  }
  rdAt = -1;
  if (rdPos !== rdEnd) throw new WireError(`${where}: ${rdEnd - rdPos} bytes after the last session`);
  return out;
}

// ---------------------------------------------------------------------------------------------
// Decoding

function describe(v: unknown): string {
  switch (typeof v) {
    case 'string':
      return `string ${JSON.stringify(v.length > 40 ? v.slice(0, 40) + '…' : v)}`;
    case 'number':
    case 'boolean':
      return `${typeof v} ${String(v)}`;
    case 'bigint':
      return `integer ${String(v)}`;
    case 'undefined':
      return 'undefined';
    case 'object':
      if (v === null) return 'nil';
      if (Array.isArray(v)) return `array of ${v.length}`;
      if (v instanceof Uint8Array) return `binary of ${v.length} bytes`;
      if (v instanceof Map) return `map of ${v.size}`;
      return 'an extension value';
    default:
      return typeof v;
  }
}

function bad(where: string, expected: string, v: unknown): never {
  throw new WireError(`${where}: expected ${expected}, got ${describe(v)}`);
}

function arr(v: unknown, where: string, minLen: number, what: string): unknown[] {
  if (!Array.isArray(v)) bad(where, what, v);
  if (v.length < minLen) throw new WireError(`${where}: expected ${what}, got only ${v.length} element${v.length === 1 ? '' : 's'}`);
  return v;
}

function list(v: unknown, where: string): unknown[] {
  if (!Array.isArray(v)) bad(where, 'an array', v);
  return v;
}

/** A non-empty string (names, JIDs, ids). */
function id(v: unknown, where: string): string {
  if (typeof v !== 'string' || v.length === 0) bad(where, 'a non-empty string', v);
  return v;
}

/** Any string (reasons, caps). */
function str(v: unknown, where: string): string {
  if (typeof v !== 'string') bad(where, 'a string', v);
  return v;
}

function uint(v: unknown, where: string): number {
  if (typeof v !== 'number' || !Number.isSafeInteger(v) || v < 0) bad(where, 'a non-negative integer', v);
  return v;
}

function intIn(v: unknown, where: string, min: number, max: number): number {
  if (typeof v !== 'number' || !Number.isInteger(v) || v < min || v > max) bad(where, `an integer ${min}..${max}`, v);
  return v;
}

function finite(v: unknown, where: string): number {
  if (typeof v !== 'number' || !Number.isFinite(v)) bad(where, 'a finite number', v);
  return v;
}

function bool(v: unknown, where: string): boolean {
  if (typeof v !== 'boolean') bad(where, 'a boolean', v);
  return v;
}

function bin(v: unknown, where: string): Uint8Array {
  if (!(v instanceof Uint8Array)) bad(where, 'binary', v);
  return v;
}

function sessionFromWire(v: unknown, where: string): SessionEntry {
  const a = arr(v, where, 9, 'a session [jid, home, c2sNode, c2s, sm, prio, avail, since, c2sId]');
  return {
    jid: id(a[0], `${where}.jid`),
    home: id(a[1], `${where}.home`),
    c2sNode: id(a[2], `${where}.c2sNode`),
    c2s: id(a[3], `${where}.c2s`),
    sm: id(a[4], `${where}.sm`),
    prio: intIn(a[5], `${where}.prio`, -128, 127),
    avail: bool(a[6], `${where}.avail`),
    since: uint(a[7], `${where}.since`),
    c2sId: id(a[8], `${where}.c2sId`),
  };
}

function nameFromWire(v: unknown, where: string): NameEntry {
  const a = arr(v, where, 2, 'a name [name, kind]');
  const kind = a[1];
  if (typeof kind !== 'string' || !(NAME_KINDS as readonly string[]).includes(kind)) bad(`${where}.kind`, `one of ${NAME_KINDS.map((k) => `'${k}'`).join(', ')}`, kind);
  return { name: id(a[0], `${where}.name`), kind: kind as NameKind };
}

function opFromWire(v: unknown, where: string): Op {
  const a = arr(v, where, 2, 'an op [code, operand]');
  switch (a[0]) {
    case OpCode.SESS_ADD:
      return { op: 'sess+', s: sessionFromWire(a[1], `${where}.s`) };
    case OpCode.SESS_DEL:
      return a[2] === true ? { op: 'sess-', jid: id(a[1], `${where}.jid`), lost: true } : { op: 'sess-', jid: id(a[1], `${where}.jid`) };
    case OpCode.NAME_ADD:
      return { op: 'name+', n: nameFromWire(a[1], `${where}.n`) };
    case OpCode.NAME_DEL:
      return { op: 'name-', name: id(a[1], `${where}.name`) };
    default:
      return bad(`${where}.code`, 'an op code 1..4', a[0]);
  }
}

function fromWire(m: unknown[]): PeerMessage {
  const type = m[0];
  switch (type) {
    case MsgType.HELLO: {
      const a = arr(m, 'HELLO', 7, 'HELLO [1, version, minVersion, node, incarnation, caps, nonce]');
      const nonce = bin(a[6], 'HELLO.nonce');
      if (nonce.length !== kNonceBytes) throw new WireError(`HELLO.nonce: expected ${kNonceBytes} bytes, got ${nonce.length}`);
      return {
        type,
        version: intIn(a[1], 'HELLO.version', 0, 0xffff),
        minVersion: intIn(a[2], 'HELLO.minVersion', 0, 0xffff),
        node: id(a[3], 'HELLO.node'),
        incarnation: uint(a[4], 'HELLO.incarnation'),
        caps: list(a[5], 'HELLO.caps').map((c, i) => str(c, `HELLO.caps[${i}]`)),
        nonce,
      };
    }
    case MsgType.AUTH:
      return { type, proof: bin(arr(m, 'AUTH', 2, 'AUTH [2, proof]')[1], 'AUTH.proof') };
    case MsgType.AUTH_OK:
      return { type };
    case MsgType.AUTH_FAIL:
      return { type, reason: str(arr(m, 'AUTH_FAIL', 2, 'AUTH_FAIL [4, reason]')[1], 'AUTH_FAIL.reason') };
    case MsgType.SNAPSHOT: {
      const a = arr(m, 'SNAPSHOT', 6, 'SNAPSHOT [5, origin, incarnation, seq, sessions, names]');
      return {
        type,
        origin: id(a[1], 'SNAPSHOT.origin'),
        incarnation: uint(a[2], 'SNAPSHOT.incarnation'),
        seq: uint(a[3], 'SNAPSHOT.seq'),
        sessions:
          a[4] instanceof Uint8Array
            ? unpackSessions(a[4], 'SNAPSHOT.sessions')
            : list(a[4], 'SNAPSHOT.sessions').map((s, i) => sessionFromWire(s, `SNAPSHOT.sessions[${i}]`)),
        names: list(a[5], 'SNAPSHOT.names').map((n, i) => nameFromWire(n, `SNAPSHOT.names[${i}]`)),
        ...(a[6] === true ? { more: true } : {}),
      };
    }
    case MsgType.DELTA: {
      const a = arr(m, 'DELTA', 5, 'DELTA [6, origin, incarnation, seq, ops]');
      return {
        type,
        origin: id(a[1], 'DELTA.origin'),
        incarnation: uint(a[2], 'DELTA.incarnation'),
        seq: uint(a[3], 'DELTA.seq'),
        ops: list(a[4], 'DELTA.ops').map((o, i) => opFromWire(o, `DELTA.ops[${i}]`)),
      };
    }
    case MsgType.RESYNC:
      return { type, origin: id(arr(m, 'RESYNC', 2, 'RESYNC [7, origin]')[1], 'RESYNC.origin') };
    case MsgType.STANZA:
      return { type, bytes: bin(arr(m, 'STANZA', 2, 'STANZA [8, bytes]')[1], 'STANZA.bytes') };
    case MsgType.PING:
      return { type, t: finite(arr(m, 'PING', 2, 'PING [9, t]')[1], 'PING.t') };
    case MsgType.PONG:
      return { type, t: finite(arr(m, 'PONG', 2, 'PONG [10, t]')[1], 'PONG.t') };
    case MsgType.BYE:
      return { type, reason: str(arr(m, 'BYE', 2, 'BYE [11, reason]')[1], 'BYE.reason') };
    default:
      throw new WireError(`unknown message type: ${describe(type)} (this node knows 1..${MsgType.BYE})`);
  }
}

/** The common STANZA `[8, bin]` straight from the bytes, or null to take the general path. */
function stanzaFast(p: Uint8Array): Uint8Array | null {
  const len = p.length;
  if (len < 4 || p[0] !== kFixArray2 || p[1] !== MsgType.STANZA) return null;
  let n: number;
  let start: number;
  switch (p[2]) {
    case kBin8:
      n = p[3]!;
      start = 4;
      break;
    case kBin16:
      if (len < 5) return null;
      n = (p[3]! << 8) | p[4]!;
      start = 5;
      break;
    case kBin32:
      if (len < 7) return null;
      n = p[3]! * 0x1000000 + ((p[4]! << 16) | (p[5]! << 8) | p[6]!);
      start = 7;
      break;
    default:
      return null;
  }
  return start + n === len ? p.subarray(start) : null;
}

/**
 * The message in one frame payload. Binary fields (STANZA.bytes, HELLO.nonce, AUTH.proof) are
 * views into `payload`: copy them to keep them past the payload's lifetime.
 * @throws WireError when the payload is not a valid peer message
 */
export function decode(payload: Uint8Array): PeerMessage {
  const fast = stanzaFast(payload);
  if (fast !== null) return { type: MsgType.STANZA, bytes: fast };
  if (payload.length === 0) throw new WireError('empty frame: expected a message');
  let v: unknown;
  try {
    v = unpackr.unpack(payload);
  } catch (e) {
    const msg = e instanceof Error ? e.message : String(e);
    throw new WireError(`not valid MessagePack: ${msg.length > 120 ? msg.slice(0, 120) + '…' : msg}`, { cause: e });
  }
  if (!Array.isArray(v) || v.length === 0) bad('message', 'an array [type, …]', v);
  return fromWire(v);
}
