import { test } from 'node:test';
import assert from 'node:assert/strict';
import { Packr } from 'msgpackr';
import { WireError, decode, encode } from '../../../src/wire/codec.ts';
import { FrameDecoder, kFrameHeaderBytes } from '../../../src/wire/frame.ts';
import { MsgType, kMsgTypeName, type PeerMessage, type SessionEntry } from '../../../src/wire/messages.ts';
import { byByte, prng } from '../../helpers/split.ts';

/** Plain MessagePack, to craft payloads by hand (valid and not). */
const raw = new Packr({ useRecords: false });
const hex = (b: Uint8Array): string => Buffer.from(b.buffer, b.byteOffset, b.byteLength).toString('hex');
/** The payload of one encoded message (frame prefix checked and removed). */
function payloadOf(frame: Buffer): Buffer {
  assert.equal(frame.readUInt32BE(0), frame.length - kFrameHeaderBytes);
  return frame.subarray(kFrameHeaderBytes);
}

const nonce = Buffer.from(Array.from({ length: 32 }, (_, i) => i));
const sess = (i: number): SessionEntry => ({
  jid: `user${i}@example.test/res-${i}`,
  home: 'node1',
  c2sNode: 'node2',
  c2s: 'c2s',
  sm: `sm-${i.toString(16)}`,
  prio: [-128, -1, 0, 1, 127][i % 5]!,
  avail: i % 2 === 0,
  since: 1_700_000_000_000 + i,
  c2sId: String(10 + i),
});

/** One sample of every message type, with edge values. */
const samples: PeerMessage[] = [
  { type: MsgType.HELLO, version: 1, minVersion: 1, node: 'node1', incarnation: 1_700_000_000_123, caps: ['snap', ''], nonce },
  { type: MsgType.HELLO, version: 3, minVersion: 0, node: 'n', incarnation: 0, caps: [], nonce },
  { type: MsgType.AUTH, proof: Buffer.alloc(32, 0xab) },
  { type: MsgType.AUTH_OK },
  { type: MsgType.AUTH_FAIL, reason: 'authentication failed: wrong cluster secret?' },
  { type: MsgType.AUTH_FAIL, reason: '' },
  { type: MsgType.SNAPSHOT, origin: 'node1', incarnation: 1_700_000_000_123, seq: 0, sessions: [], names: [] },
  {
    type: MsgType.SNAPSHOT,
    origin: 'node1',
    incarnation: 1_700_000_000_123,
    seq: 2 ** 53 - 1,
    sessions: Array.from({ length: 300 }, (_, i) => sess(i)), // > 8 KiB: msgpackr grows its buffer
    names: [
      { name: 'sm.example.test', kind: 'sm' },
      { name: 'example.test', kind: 'domain' },
      { name: 'muc.example.test', kind: 'component' },
    ],
  },
  {
    type: MsgType.DELTA,
    origin: 'node2',
    incarnation: 42,
    seq: 17,
    ops: [
      { op: 'sess+', s: sess(1) },
      { op: 'sess-', jid: 'user1@example.test/res-1' },
      { op: 'name+', n: { name: 'pubsub.example.test', kind: 'component' } },
      { op: 'name-', name: 'pubsub.example.test' },
    ],
  },
  { type: MsgType.DELTA, origin: 'node2', incarnation: 42, seq: 18, ops: [] },
  { type: MsgType.RESYNC, origin: 'node3' },
  { type: MsgType.STANZA, bytes: Buffer.from("<route to='sm' from='c2s'><message to='a@b'><body>héllo ☃ 🎉</body></message></route>") },
  { type: MsgType.STANZA, bytes: Buffer.alloc(0) },
  { type: MsgType.STANZA, bytes: Buffer.alloc(70_000, 0x61) },
  { type: MsgType.PING, t: 123.456 },
  { type: MsgType.PONG, t: 0 },
  { type: MsgType.BYE, reason: 'shutdown' },
];

test('round trip of every message type, through the frame decoder, whole and byte by byte', () => {
  const seen = new Set<number>();
  for (const m of samples) {
    seen.add(m.type);
    const frame = encode(m);
    assert.deepStrictEqual(decode(payloadOf(frame)), m, kMsgTypeName[m.type]);
    for (const chunks of [[frame], byByte(frame)]) {
      const got: PeerMessage[] = [];
      const d = new FrameDecoder(1 << 20, (p) => got.push(decode(p)), (e) => assert.fail(e));
      for (const c of chunks) d.push(c);
      assert.deepStrictEqual(got, [m]);
    }
  }
  assert.deepEqual([...seen].sort((a, b) => a - b), Object.values(MsgType));
});

test('encoded frames stay intact while later messages are encoded', () => {
  const frames = samples.map((m) => Buffer.from(encode(m))); // copies, for reference
  const live = samples.map((m) => encode(m));
  for (let i = 0; i < 50; i++) for (const m of samples) encode(m);
  live.forEach((f, i) => assert.ok(f.equals(frames[i]!), `frame ${i} was overwritten`));
});

test('golden bytes: HELLO (any change here is a wire-format change: bump the protocol version)', () => {
  const frame = encode({ type: MsgType.HELLO, version: 1, minVersion: 1, node: 'node1', incarnation: 1_700_000_000_123, caps: ['snap'], nonce });
  assert.equal(
    hex(frame),
    '0000003b' + // frame length 59
      '97' + // array of 7
      '01' + // HELLO
      '01' + // version 1
      '01' + // minVersion 1
      'a56e6f646531' + // 'node1'
      'cb4278bcfe5687b000' + // incarnation 1700000000123 (float64: exact below 2^53)
      '91a4736e6170' + // caps ['snap']
      'c420' + // bin8, 32 bytes
      '000102030405060708090a0b0c0d0e0f101112131415161718191a1b1c1d1e1f',
  );
});

test('golden bytes: SNAPSHOT with packed sessions (protocol 2; any change here is a wire-format change)', () => {
  const m: PeerMessage = {
    type: MsgType.SNAPSHOT,
    origin: 'n1',
    incarnation: 5,
    seq: 7,
    sessions: [
      { jid: 'a@b/c', home: 'n1', c2sNode: 'n2', c2s: 'c2s', sm: 'ab01', prio: -1, avail: true, since: 300, c2sId: '12' },
      { jid: 'd@b/é', home: 'n1', c2sNode: 'n1', c2s: 'c2s', sm: 'S', prio: 5, avail: false, since: 0, c2sId: 'x' },
    ],
    names: [{ name: 'sm', kind: 'sm' }],
  };
  const packed =
    '02' + // 2 sessions
    '03' + '026e31' + '026e32' + '03633273' + // table: 'n1', 'n2', 'c2s'
    '07' + 'ff' + '00' + '01' + '02' + // avail | sm hex | c2sId number; prio -1; home 'n1', c2sNode 'n2', c2s 'c2s'
    'ac02' + '0c' + '02ab01' + '056140622f63' + // since 300, c2sId 12, sm 2 bytes ab 01, jid 'a@b/c'
    '00' + '05' + '00' + '00' + '02' + // no flags; prio 5; 'n1', 'n1', 'c2s'
    '00' + '0178' + '0153' + '066440622fc3a9'; // since 0, c2sId 'x', sm 'S', jid 'd@b/é'
  assert.equal(
    hex(encode(m)),
    '0000003f' + // frame length 63
      '96' + '05' + 'a26e31' + '05' + '07' + // [SNAPSHOT, 'n1', 5, 7,
      'c42e' + packed + // bin8 of 46 bytes,
      '91' + '92a2736da2736d', // [['sm', 'sm']]]
  );
  assert.deepStrictEqual(decode(payloadOf(encode(m))), m);
});

test('SNAPSHOT: packed on protocol 2, Session arrays on protocol 1; both decode, from either', () => {
  const sessions: SessionEntry[] = [
    ...Array.from({ length: 50 }, (_, i) => sess(i)),
    { jid: `${'ü'.repeat(100)}@d/${'r'.repeat(200)}`, home: 'node1', c2sNode: 'x'.repeat(300), c2s: 'c2s', sm: 'f'.repeat(600), prio: 0, avail: true, since: 2 ** 53 - 1, c2sId: '999999999999999' },
    { jid: 'd/r', home: 'node1', c2sNode: 'node1', c2s: 'c2s', sm: 'ABCD', prio: 1, avail: false, since: 0, c2sId: '1000000000000000' },
    { jid: 'e@d/r', home: 'node1', c2sNode: 'node1', c2s: 'c2s', sm: 'abc', prio: 1, avail: false, since: 1, c2sId: '007' },
  ];
  const m: PeerMessage = { type: MsgType.SNAPSHOT, origin: 'node1', incarnation: 3, seq: 9, sessions, names: [], more: true };
  const v2 = payloadOf(encode(m));
  const v1 = payloadOf(encode(m, 1));
  // [0x97, 5, 'node1', 3, 9, sessions…]: the sessions start at byte 10
  assert.equal(v2[10], 0xc5, 'protocol 2: sessions as bin16');
  assert.equal(v1[10], 0xdc, 'protocol 1: sessions as array16');
  assert.ok(v2.length < v1.length * 0.8, `packed ${v2.length} B, arrays ${v1.length} B`);
  // framed by hand, byte for byte what msgpackr writes for the same array
  assert.ok(Buffer.from(raw.pack(raw.unpack(v2) as unknown[])).equals(v2), 'same bytes as msgpackr');
  assert.deepStrictEqual(decode(v2), m);
  assert.deepStrictEqual(decode(v1), m);
  assert.deepStrictEqual(raw.unpack(v1), [5, 'node1', 3, 9, sessions.map((s) => [s.jid, s.home, s.c2sNode, s.c2s, s.sm, s.prio, s.avail, s.since, s.c2sId]), [], true]);
  // what protocol 1 refused, packing brings into range
  const odd = { ...sess(1), prio: 300, since: -5 };
  const got = decode(payloadOf(encode({ type: MsgType.SNAPSHOT, origin: 'n', incarnation: 1, seq: 1, sessions: [odd, { ...odd, prio: -1000, since: 1.5 }], names: [] })));
  assert.deepEqual((got as { sessions: SessionEntry[] }).sessions.map((s) => [s.prio, s.since]), [[127, 0], [-128, 1]]);
});

test('malformed packed sessions: a WireError naming the problem', () => {
  const good = payloadOf(encode({ type: MsgType.SNAPSHOT, origin: 'n1', incarnation: 1, seq: 2, sessions: [sess(2)], names: [] }));
  const bin = Buffer.from((raw.unpack(good) as unknown[])[4] as Uint8Array);
  const snap = (b: Uint8Array): Uint8Array => raw.pack([5, 'n1', 1, 2, b, []]);
  const cases: [string, RegExp][] = [
    ['', /^SNAPSHOT\.sessions\.count: truncated$/],
    ['01', /^SNAPSHOT\.sessions\.nStrings: truncated$/],
    ['0100', /^SNAPSHOT\.sessions: 1 sessions cannot fit in 0 bytes$/],
    ['0005', /^SNAPSHOT\.sessions: 5 table strings in 0 bytes$/],
    ['00ffffffffffffffff01', /^SNAPSHOT\.sessions\.nStrings: varint longer than 8 bytes$/],
    ['0001036e31', /^SNAPSHOT\.sessions\.table\[0\]: string of 3 bytes runs past the end$/],
    ['0000ff', /^SNAPSHOT\.sessions: 1 bytes after the last session$/],
    ['01' + '01' + '00' + '08' + '00' + '000000' + '00' + '00' + '0178' + '0178' + '0178', /^SNAPSHOT\.sessions\[0\]\.flags: unknown bits 0x8$/],
    ['01' + '01' + '00' + '00' + '00' + '000000' + '00' + '0178' + '0178' + '0178', /^SNAPSHOT\.sessions\[0\]\.home: expected a non-empty string, got string ""$/],
    ['01' + '01' + '01' + '78' + '00' + '00' + '000100' + '00' + '0178' + '0178' + '0178', /^SNAPSHOT\.sessions\[0\]\.c2sNode: index 1 is not in the table of 1$/],
    ['01' + '01' + '01' + '78' + '00' + '00' + '000000' + '00' + '0178' + '0178' + '00' + '00', /^SNAPSHOT\.sessions\[0\]\.jid: expected a non-empty string, got string ""$/],
    ['01' + '01' + '01' + '78' + '00' + '00' + '000000' + 'ffffffffffffff7f' + '0178' + '0178' + '0178', /^SNAPSHOT\.sessions\[0\]\.since: number \d+ is beyond 2\^53$/],
    ['01' + '01' + '01' + '78' + '02' + '00' + '000000' + '00' + '0178' + '00' + '0178', /^SNAPSHOT\.sessions\[0\]\.sm: 0 bytes of hex id$/],
  ];
  for (const [h, re] of cases) rejects(snap(Buffer.from(h, 'hex')), re);
  // truncations of a valid part anywhere: always a WireError
  for (let n = 0; n < bin.length; n++) assert.throws(() => decode(snap(bin.subarray(0, n))), WireError, `cut at ${n}`);
  assert.deepStrictEqual((decode(snap(bin)) as { sessions: SessionEntry[] }).sessions, [sess(2)]);
});

test('golden bytes: STANZA carries the UTF-8 as binary (bin8/16/32), never as a string', () => {
  const xml = Buffer.from("<route to='sm'><m>é</m></route>");
  assert.equal(hex(encode({ type: MsgType.STANZA, bytes: xml })), '00000024' + '92' + '08' + 'c420' + hex(xml));
  // bytes that are not valid UTF-8 survive untouched (a string type would mangle them)
  const junk = Uint8Array.of(0x3c, 0xff, 0xfe, 0xc3, 0x3e);
  assert.equal(hex((decode(payloadOf(encode({ type: MsgType.STANZA, bytes: junk }))) as { bytes: Uint8Array }).bytes), '3cfffec33e');
});

test('STANZA fast paths agree with msgpackr at every size class', () => {
  for (const n of [0, 1, 255, 256, 65_535, 65_536, 100_000]) {
    const bytes = Buffer.alloc(n, n & 0xff);
    const fast = payloadOf(encode({ type: MsgType.STANZA, bytes }));
    const generic = raw.pack([MsgType.STANZA, bytes]);
    assert.ok(fast.equals(generic), `encode, ${n} bytes`);
    const got = decode(generic);
    assert.equal(got.type, MsgType.STANZA);
    assert.ok(Buffer.from((got as { bytes: Uint8Array }).bytes).equals(bytes), `decode, ${n} bytes`);
  }
  // the decoded bytes are a view of the payload, not a copy
  const p = payloadOf(encode({ type: MsgType.STANZA, bytes: Buffer.from('<route/>') }));
  const b = (decode(p) as { bytes: Uint8Array }).bytes;
  assert.equal(b.buffer, p.buffer);
  assert.equal(b.byteOffset, p.byteOffset + 4);
  // non-minimal length encodings and appended fields go the general way and still decode
  assert.deepStrictEqual(decode(Buffer.from('9208c5000361626364', 'hex').subarray(0, 8)), { type: MsgType.STANZA, bytes: Buffer.from('abc') });
  assert.deepStrictEqual(decode(raw.pack([8, Buffer.from('abc'), 'future'])), { type: MsgType.STANZA, bytes: Buffer.from('abc') });
});

test('forward compatibility: trailing fields a later version appends are ignored', () => {
  const hello = raw.pack([1, 2, 1, 'node9', 5, ['x'], nonce, { future: true }, 'more']);
  assert.deepStrictEqual(decode(hello), { type: MsgType.HELLO, version: 2, minVersion: 1, node: 'node9', incarnation: 5, caps: ['x'], nonce });
  const s = ['j@d/r', 'n1', 'n2', 'c2s', 'sm1', 5, true, 10, '11', 'extra-session-field'];
  const snap = decode(raw.pack([5, 'n1', 1, 2, [s], [['d', 'domain', 'extra']], 'extra']));
  assert.deepStrictEqual(snap, {
    type: MsgType.SNAPSHOT,
    origin: 'n1',
    incarnation: 1,
    seq: 2,
    sessions: [{ jid: 'j@d/r', home: 'n1', c2sNode: 'n2', c2s: 'c2s', sm: 'sm1', prio: 5, avail: true, since: 10, c2sId: '11' }],
    names: [{ name: 'd', kind: 'domain' }],
  });
  assert.deepStrictEqual(decode(raw.pack([6, 'n1', 1, 3, [[2, 'j@d/r', 'extra']]])), { type: MsgType.DELTA, origin: 'n1', incarnation: 1, seq: 3, ops: [{ op: 'sess-', jid: 'j@d/r' }] });
  assert.deepStrictEqual(decode(raw.pack([3, 'x'])), { type: MsgType.AUTH_OK });
  assert.deepStrictEqual(decode(raw.pack([9, 1, 2])), { type: MsgType.PING, t: 1 });
});

function rejects(payload: Uint8Array, re: RegExp): void {
  assert.throws(
    () => decode(payload),
    (e: unknown) => {
      assert.ok(e instanceof WireError, `not a WireError: ${String(e)}`);
      assert.equal(e.code, 'JC_ERR_WIRE_DECODE');
      assert.match(e.message, re);
      return true;
    },
    hex(payload),
  );
}

test('malformed input: a WireError naming the problem', () => {
  const s = ['j@d/r', 'n1', 'n2', 'c2s', 'sm1', 5, true, 10, '11'];
  const cases: [unknown, RegExp | 'valid'][] = [
    ['not an array', /^message: expected an array \[type, …\], got string "not an array"$/],
    [new Map([['type', 1]]), /^message: expected an array .*got map of 1$/],
    [[], /got array of 0/],
    [[99], /^unknown message type: number 99 \(this node knows 1\.\.11\)$/],
    [['1'], /^unknown message type: string "1"/],
    [[0], /unknown message type: number 0/],
    [[1, 1, 1, 'n'], /^HELLO: expected HELLO \[1, version, minVersion, node, incarnation, caps, nonce\], got only 4 elements$/],
    [[1, 1, 1, 'n', 1, [], Buffer.alloc(31)], /^HELLO\.nonce: expected 32 bytes, got 31$/],
    [[1, 1, 1, 'n', 1, [], 'x'.repeat(32)], /^HELLO\.nonce: expected binary, got string/],
    [[1, 1, 1, '', 1, [], nonce], /^HELLO\.node: expected a non-empty string, got string ""$/],
    [[1, 1, 1, 7, 1, [], nonce], /^HELLO\.node: expected a non-empty string, got number 7$/],
    [[1, 1.5, 1, 'n', 1, [], nonce], /^HELLO\.version: expected an integer 0\.\.65535, got number 1\.5$/],
    [[1, 1, 1, 'n', -1, [], nonce], /^HELLO\.incarnation: expected a non-negative integer, got number -1$/],
    [[1, 1, 1, 'n', 2 ** 60, [], nonce], /^HELLO\.incarnation: expected a non-negative integer/],
    [[1, 1, 1, 'n', 1, 'caps', nonce], /^HELLO\.caps: expected an array, got string/],
    [[1, 1, 1, 'n', 1, ['a', 2], nonce], /^HELLO\.caps\[1\]: expected a string, got number 2$/],
    [[1, 1, 1, 'n', 1, [], nonce, null], 'valid'], // trailing nil ignored
    [[2, 'proof'], /^AUTH\.proof: expected binary, got string "proof"$/],
    [[2], /^AUTH: expected AUTH \[2, proof\], got only 1 element$/],
    [[4, null], /^AUTH_FAIL\.reason: expected a string, got nil$/],
    [[5, 'n1', 1, 2, [s], []], 'valid'],
    [[5, 'n1', 1, 2, [s, [...s.slice(0, 5), 300, true, 10, '11']], []], /^SNAPSHOT\.sessions\[1\]\.prio: expected an integer -128\.\.127, got number 300$/],
    [[5, 'n1', 1, 2, [s, [...s.slice(0, 6), 1, 10, '11']], []], /^SNAPSHOT\.sessions\[1\]\.avail: expected a boolean, got number 1$/],
    [[5, 'n1', 1, 2, [s.slice(0, 7)], []], /^SNAPSHOT\.sessions\[0\]: expected a session \[jid, .*\], got only 7 elements$/],
    [[5, 'n1', 1, 2, [], [['x', 'router']]], /^SNAPSHOT\.names\[0\]\.kind: expected one of 'sm', 'domain', 'component', got string "router"$/],
    [[5, 'n1', 1, 2, {}, []], /^SNAPSHOT\.sessions: expected an array, got map of 0$/],
    [[5, 'n1', 1, -2, [], []], /^SNAPSHOT\.seq: expected a non-negative integer/],
    [[6, 'n1', 1, 2, [[9, 'x']]], /^DELTA\.ops\[0\]\.code: expected an op code 1\.\.4, got number 9$/],
    [[6, 'n1', 1, 2, [[1]]], /^DELTA\.ops\[0\]: expected an op \[code, operand\], got only 1 element$/],
    [[6, 'n1', 1, 2, [[1, ['j']]]], /^DELTA\.ops\[0\]\.s: expected a session/],
    [[6, 'n1', 1, 2, [[3, ['x', 'sm']], [4, '']]], /^DELTA\.ops\[1\]\.name: expected a non-empty string, got string ""$/],
    [[7], /^RESYNC: expected RESYNC \[7, origin\]/],
    [[8, "<route to='x'/>"], /^STANZA\.bytes: expected binary, got string "<route to='x'\/>"$/],
    [[9, 'now'], /^PING\.t: expected a finite number, got string "now"$/],
    [[10, NaN], /^PONG\.t: expected a finite number, got number NaN$/],
    [[11, true], /^BYE\.reason: expected a string, got boolean true$/],
    [[9, new Date(0)], /^PING\.t: expected a finite number, got an extension value$/],
  ];
  for (const [value, re] of cases) {
    const payload = raw.pack(value);
    if (re === 'valid') decode(payload);
    else rejects(payload, re);
  }
});

test('malformed MessagePack: empty, truncated, trailing bytes, reserved byte, uint64 overflow', () => {
  rejects(new Uint8Array(0), /^empty frame/);
  const frame = payloadOf(encode(samples[0]!));
  rejects(frame.subarray(0, frame.length - 1), /^not valid MessagePack: Unexpected end/);
  rejects(Buffer.concat([frame, Buffer.from([0xc0])]), /^not valid MessagePack: Data read, but end of buffer not reached/);
  // 0xc1 ("never used")
  rejects(Buffer.from('9209c1', 'hex'), /^PING\.t: expected a finite number, got an extension value$/);
  // a uint64 beyond 2^53 is not an exact integer: [1, 1, 1, 'n', uint64 2^53+1, [], nonce]
  rejects(Buffer.from('97010101a16ecf002000000000000190c420' + '00'.repeat(32), 'hex'), /^HELLO\.incarnation: expected a non-negative integer, got number 9007199254740992$/);
});

test('fuzz: 2000 seeded random byte strings → a message or a WireError, never another exception', () => {
  const seed = 0x5eed;
  const rnd = prng(seed);
  let errors = 0;
  for (let i = 0; i < 2000; i++) {
    const len = Math.floor(rnd() * 48);
    const b = new Uint8Array(len);
    for (let k = 0; k < len; k++) b[k] = Math.floor(rnd() * 256);
    // half of them look like the start of a message, to get past the first checks
    if (i % 2 === 1 && len >= 2) {
      b[0] = 0x90 | Math.floor(rnd() * 9);
      b[1] = 1 + Math.floor(rnd() * 11);
    }
    try {
      decode(b);
    } catch (e) {
      if (!(e instanceof WireError)) assert.fail(`seed ${seed} case ${i} (${hex(b)}): ${String(e)}`);
      errors++;
    }
  }
  assert.ok(errors > 1500, `only ${errors} rejected`);
});

test('fuzz: 2000 mutations of valid messages (bit flips, truncation, splices) → a message or a WireError', () => {
  const seed = 0xf1a5;
  const rnd = prng(seed);
  const valid = samples.filter((m) => m.type !== MsgType.STANZA || m.bytes.length < 1000).map((m) => Buffer.from(payloadOf(encode(m))));
  for (let i = 0; i < 2000; i++) {
    const src = valid[i % valid.length]!;
    let b = Buffer.from(src);
    const mode = i % 3;
    if (mode === 0) {
      for (let k = 0, n = 1 + Math.floor(rnd() * 4); k < n; k++) b[Math.floor(rnd() * b.length)] ^= 1 << Math.floor(rnd() * 8);
    } else if (mode === 1) {
      b = b.subarray(0, Math.floor(rnd() * b.length));
    } else {
      const at = Math.floor(rnd() * b.length);
      const other = valid[Math.floor(rnd() * valid.length)]!;
      b = Buffer.concat([b.subarray(0, at), other.subarray(Math.floor(rnd() * other.length))]);
    }
    try {
      decode(b);
    } catch (e) {
      if (!(e instanceof WireError)) assert.fail(`seed ${seed} case ${i} (${hex(b)}): ${String(e)}`);
    }
  }
});

test('deep nesting and huge declared lengths are WireErrors, not crashes', () => {
  rejects(Buffer.alloc(200_000, 0x91), /not valid MessagePack|message/);
  rejects(Buffer.from('dd7fffffff', 'hex'), /not valid MessagePack/);
  rejects(Buffer.from('92 08 c6 7fffffff 00'.replace(/ /g, ''), 'hex'), /not valid MessagePack/);
});
