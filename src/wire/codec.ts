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
  type NameEntry,
  type NameKind,
  type Op,
  type PeerMessage,
  type SessionEntry,
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
  if (binHead === 2) {
    out[o++] = kBin8;
    out[o++] = n;
  } else if (binHead === 3) {
    out[o++] = kBin16;
    out.writeUInt16BE(n, o);
    o += 2;
  } else {
    out[o++] = kBin32;
    out.writeUInt32BE(n, o);
    o += 4;
  }
  out.set(bytes, o);
  return out;
}

/**
 * The frame for `msg` (length prefix included), ready to write to the socket. The receiver
 * refuses frames over its `max_frame_bytes`: callers sending large SNAPSHOTs check
 * `length - kFrameHeaderBytes` against the configured limit.
 */
export function encode(msg: PeerMessage): Buffer {
  if (msg.type === MsgType.STANZA) return encodeStanza(msg.bytes);
  const out = packr.pack(toWire(msg), RESERVE_START_SPACE | kFrameHeaderBytes);
  const payload = out.length - kFrameHeaderBytes;
  if (payload > kMaxFramePayload) throw new RangeError(`message of ${payload} bytes does not fit in a frame`);
  out.writeUInt32BE(payload, 0);
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
        sessions: list(a[4], 'SNAPSHOT.sessions').map((s, i) => sessionFromWire(s, `SNAPSHOT.sessions[${i}]`)),
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
