/**
 * Seeded generators for the peer-link fuzz (test/fuzz/peer-listener.test.ts): peer messages as
 * positional MessagePack arrays (layout in src/wire/messages.ts), valid-shaped first and then
 * mutated at a random path (a field retyped, dropped, added; an entry of the wrong arity; a
 * wrong origin; an unknown type code), packed by msgpackr with plain, record and
 * structured-clone settings or given as hand-made MessagePack oddities (extensions, deep
 * nesting, huge declared lengths), and framed with a correct or a wrong length prefix.
 */
import { Packr } from 'msgpackr';
import { MsgType, OpCode } from '../../src/wire/messages.ts';
import { mutateBytes, type Rng } from './fuzz-gen.ts';

export interface WireContext {
  /** the identity we authenticated as */
  self: string;
  incarnation: number;
  /** last DELTA seq we sent (after a SNAPSHOT with seq 0) */
  seq: number;
  /** names worth putting in tables */
  names: readonly string[];
  /** STANZA payloads (route XML) */
  stanza: () => Buffer;
}

const NODES = ['n1', 'n2', 'f1', 'f2', 'f99', '', 'n1 ', 'N1', 'x'.repeat(300)];

const packrs = [
  new Packr({ useRecords: false, structuredClone: false, bundleStrings: false }),
  new Packr({ useRecords: true }),
  new Packr({ structuredClone: true, bundleStrings: true, moreTypes: true, useRecords: false }),
];

/** Any value MessagePack can carry (and some it carries oddly). */
export function anyValue(rng: Rng, depth = 0): unknown {
  switch (rng.int(depth > 2 ? 9 : 12)) {
    case 0: return null;
    case 1: return rng.chance(0.5);
    case 2: return rng.pick([0, -1, 1, 127, 128, 255, 256, 65535, 65536, 2 ** 31, 2 ** 32, 2 ** 53 - 1, 2 ** 53 + 2, -(2 ** 53) - 2, 1.5, -0, NaN, Infinity, -Infinity, 1e300]);
    case 3: return rng.pick(['', 'x', 'n1', 'n2', 'wb.test', 'example.test', '\u00e9\u{1F600}', 'x'.repeat(rng.pick([100, 70000]))]);
    case 4: return Buffer.from(rng.bytes(rng.pick([0, 1, 31, 32, 33, 1000])));
    case 5: return rng.pick([2n ** 63n - 1n, -(2n ** 63n), 2n ** 64n - 1n, 123n]);
    case 6: return new Map<unknown, unknown>([[rng.pick(['__proto__', 'a', 1]), anyValue(rng, depth + 1)]]);
    case 7: return { __proto__: null, constructor: 'x', a: 1 };
    case 8: return new Date(rng.int(2 ** 40));
    case 9: return Array.from({ length: rng.range(0, 4) }, () => anyValue(rng, depth + 1));
    case 10: return new Set([1, 2]);
    default: return Array.from({ length: rng.pick([0, 1, 9, 100000]) }, () => 0);
  }
}

export function sessionArr(rng: Rng, ctx: WireContext): unknown[] {
  const user = rng.pick(['alice', 'bob', 'carol', 'dave', `u${rng.int(50)}`]);
  const dom = rng.pick(['example.test', 'example.test', 'other.test']);
  return [
    `${user}@${dom}/${rng.pick(['home', 'work', 'r' + rng.int(9)])}`,
    rng.weighted([[8, ctx.self], [1, 'n1'], [1, 'n2'], [1, rng.pick(NODES)]]),
    rng.weighted([[6, ctx.self], [2, 'n1'], [1, 'n2']]),
    rng.pick(['c2s', 'c2s', 'c2s--n1', 'sm']),
    rng.hex(40),
    rng.range(-128, 127),
    rng.chance(0.7),
    Date.now() - rng.int(1e6),
    String(rng.int(100)),
  ];
}

export function nameArr(rng: Rng, ctx: WireContext): unknown[] {
  return [rng.pick(ctx.names), rng.pick(['sm', 'domain', 'component', 'component'])];
}

export function opArr(rng: Rng, ctx: WireContext): unknown[] {
  switch (rng.int(4)) {
    case 0: return [OpCode.SESS_ADD, sessionArr(rng, ctx)];
    case 1: return [OpCode.SESS_DEL, sessionArr(rng, ctx)[0]];
    case 2: return [OpCode.NAME_ADD, nameArr(rng, ctx)];
    default: return [OpCode.NAME_DEL, rng.pick(ctx.names)];
  }
}

const list = <T>(rng: Rng, f: () => T, max: number): T[] => Array.from({ length: rng.weighted([[5, rng.range(0, 3)], [2, rng.range(0, 20)], [1, rng.range(0, max)]]) }, f);

/** A well-shaped message of the given type (or a random one). */
export function messageArr(rng: Rng, ctx: WireContext, type?: number): unknown[] {
  const t = type ?? rng.weighted([[1, 1], [1, 2], [1, 3], [1, 4], [4, 5], [5, 6], [1, 7], [6, 8], [1, 9], [1, 10], [1, 11]]);
  switch (t) {
    case MsgType.HELLO: return [1, 1, 1, rng.weighted([[3, ctx.self], [1, rng.pick(NODES)]]), ctx.incarnation, rng.chance(0.8) ? [] : ['x', ''], Buffer.from(rng.bytes(32))];
    case MsgType.AUTH: return [2, Buffer.from(rng.bytes(32))];
    case MsgType.AUTH_OK: return [3];
    case MsgType.AUTH_FAIL: return [4, 'fuzz'];
    case MsgType.SNAPSHOT:
      return [5, rng.weighted([[8, ctx.self], [1, rng.pick(NODES)]]), rng.weighted([[8, ctx.incarnation], [1, ctx.incarnation + 1]]), rng.weighted([[5, ctx.seq], [1, 0], [1, rng.int(2 ** 31)]]),
        list(rng, () => sessionArr(rng, ctx), 2000), list(rng, () => nameArr(rng, ctx), 50)];
    case MsgType.DELTA: {
      const seq = rng.weighted([[6, ctx.seq + 1], [1, ctx.seq], [1, ctx.seq + 2], [1, 0], [1, 2 ** 53 - 1]]);
      if (seq === ctx.seq + 1) ctx.seq = seq;
      return [6, rng.weighted([[8, ctx.self], [1, rng.pick(NODES)]]), rng.weighted([[8, ctx.incarnation], [1, ctx.incarnation - 1]]), seq, list(rng, () => opArr(rng, ctx), 500)];
    }
    case MsgType.RESYNC: return [7, rng.pick([ctx.self, 'n1', 'n2', ''])];
    case MsgType.STANZA: return [8, ctx.stanza()];
    case MsgType.PING: return [9, rng.pick([Date.now(), 0, -1, 1.5, 2 ** 60])];
    case MsgType.PONG: return [10, Date.now()];
    case MsgType.BYE: return [11, rng.pick(['bye', '', 'x'.repeat(1000)])];
    default: return [t];
  }
}

/** Mutates an array tree in place at a random path; returns what it did. */
export function mutateArr(rng: Rng, root: unknown[]): string {
  // walk down a random path of arrays
  const path: number[] = [];
  let cur: unknown[] = root;
  while (cur.length > 0 && rng.chance(0.5)) {
    const i = rng.int(cur.length);
    const next = cur[i];
    if (!Array.isArray(next)) break;
    path.push(i);
    cur = next;
  }
  const at = `[${path.join('][')}]`;
  const i = rng.int(cur.length + 1);
  switch (rng.int(7)) {
    case 0: case 1: case 2: {
      if (i >= cur.length) return `${at} (empty)`;
      cur[i] = anyValue(rng);
      return `${at}[${i}] := ${describeValue(cur[i])}`;
    }
    case 3: cur.splice(i, 1); return `${at} drop [${i}]`;
    case 4: cur.push(anyValue(rng)); return `${at} append`;
    case 5: cur.length = rng.int(cur.length + 1); return `${at} truncate to ${cur.length}`;
    default: {
      if (path.length === 0) {
        root[0] = rng.pick([0, 12, 255, -1, 65536, 3.5, '8', null, 1, 2, 5, 6, 8]);
        return `type := ${String(root[0])}`;
      }
      cur.reverse();
      return `${at} reversed`;
    }
  }
}

function describeValue(v: unknown): string {
  if (Buffer.isBuffer(v)) return `bin(${v.length})`;
  if (Array.isArray(v)) return `array(${v.length})`;
  if (typeof v === 'string') return `str(${v.length})`;
  if (typeof v === 'bigint') return `${v}n`;
  if (v instanceof Map) return 'map';
  return typeof v === 'object' && v !== null ? (v.constructor?.name ?? 'object') : String(v);
}

/** Hand-made MessagePack oddities. */
function oddPayload(rng: Rng): [Buffer, string] {
  switch (rng.int(9)) {
    case 0: {
      const t = rng.pick([0x00, 0x01, 0x42, 0x62, 0x65, 0x69, 0x70, 0x72, 0x73, 0x74, 0x78, 0x7f, 0xff, 0x80]);
      return [Buffer.from([0x92, 0x08, 0xd4, t, rng.int(256)]), `fixext1 type 0x${t.toString(16)}`];
    }
    case 1: {
      const t = rng.pick([0x62, 0x65, 0x69, 0x70, 0x72, 0x73, 0x74, 0x78, 0xff]);
      const data = rng.bytes(rng.range(0, 40));
      return [Buffer.concat([Buffer.from([0x93, 0x05, 0xc7, data.length, t]), data]), `ext8 type 0x${t.toString(16)}`];
    }
    case 2: {
      const n = rng.pick([100, 1000, 10000, 100000]);
      return [Buffer.concat([Buffer.alloc(n, 0x91), Buffer.from([0x01])]), `${n} nested arrays`];
    }
    case 3: return [Buffer.from([0xdd, 0xff, 0xff, 0xff, 0xff, 0x05]), 'array32 of 4G elements'];
    case 4: return [Buffer.from([0x92, 0x08, 0xc6, 0xff, 0xff, 0xff, 0xf0, 0x3c]), 'bin32 of 4G bytes'];
    case 5: return [Buffer.from([0x96, 0x05, 0xdb, 0xff, 0xff, 0xff, 0xff, 0x61]), 'str32 of 4G bytes'];
    case 6: return [Buffer.from([0x92, 0x08, 0xc4, 0x05, 0x3c, 0x61]), 'bin8 shorter than declared'];
    case 7: return [Buffer.from([0x92, 0x08, 0xc4, 0x01, 0x3c, 0x00, 0x00]), 'STANZA with trailing bytes'];
    default: return [Buffer.from([0xdf, 0xff, 0xff, 0xff, 0xff]), 'map32 of 4G entries'];
  }
}

/** A frame with plain MessagePack and a correct prefix. */
export function plainFrame(v: unknown): Buffer {
  const payload = packrs[0]!.pack(v);
  const out = Buffer.alloc(4 + payload.length);
  out.writeUInt32BE(payload.length, 0);
  out.set(payload, 4);
  return out;
}

export function pack(rng: Rng, v: unknown): [Buffer, string] {
  const k = rng.weighted([[8, 0], [1, 1], [1, 2]]);
  try {
    return [Buffer.from(packrs[k]!.pack(v)), ['plain', 'records', 'structured'][k]!];
  } catch (e) {
    return [Buffer.from([0xc1]), `unpackable (${(e as Error).message.slice(0, 40)})`];
  }
}

/** One frame: [u32 length][payload], the prefix sometimes wrong. */
export function frame(rng: Rng, payload: Buffer, maxFrame: number): [Buffer, string] {
  const head = Buffer.alloc(4);
  let len = payload.length;
  let what = '';
  if (rng.chance(0.06)) {
    len = rng.pick([0, payload.length + 1, Math.max(0, payload.length - 1), maxFrame + 1, 0xffffffff, payload.length + rng.range(2, 64)]);
    what = `length ${len} for ${payload.length} bytes`;
  }
  head.writeUInt32BE(len >>> 0, 0);
  return [Buffer.concat([head, payload]), what];
}

/** A fuzz frame: a mutated message, an oddity, junk, or a valid message. */
export function fuzzFrame(rng: Rng, ctx: WireContext, maxFrame: number, type?: number): [Buffer, string] {
  const ops: string[] = [];
  let payload: Buffer;
  const v = rng.weighted([[14, 0], [2, 1], [1, 2]]);
  if (v === 1) {
    const [b, what] = oddPayload(rng);
    payload = b;
    ops.push(what);
  } else if (v === 2) {
    payload = Buffer.from(rng.bytes(rng.size(300)));
    ops.push(`junk ${payload.length} bytes`);
  } else {
    const m = messageArr(rng, ctx, type);
    ops.push(`type ${String(m[0])}`);
    const k = rng.weighted([[10, 0], [3, 1], [1, 2]]);
    for (let n = 0; n < k; n++) ops.push(mutateArr(rng, m));
    const [b, how] = pack(rng, m);
    payload = b;
    if (how !== 'plain') ops.push(how);
    if (rng.chance(0.12)) {
      const [mb, what] = mutateBytes(rng, payload);
      payload = mb;
      ops.push(`bytes: ${what}`);
    }
  }
  const [f, fw] = frame(rng, payload, maxFrame);
  if (fw) ops.push(fw);
  return [f, ops.join(', ')];
}
