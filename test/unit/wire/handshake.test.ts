import { test } from 'node:test';
import assert from 'node:assert/strict';
import { createHmac } from 'node:crypto';
import { decode, encode } from '../../../src/wire/codec.ts';
import { PeerHandshake, authProof, kAuthLabel, type HandshakeOptions, type HandshakeStep } from '../../../src/wire/handshake.ts';
import { MsgType, kProtocolVersion, type PeerMessage } from '../../../src/wire/messages.ts';

const SECRET = 'correct horse battery staple';
const kFrameHeader = 4;

function hs(self: string, over: Partial<HandshakeOptions> = {}): PeerHandshake {
  return new PeerHandshake({
    self,
    incarnation: self === 'A' ? 1000 : 2000,
    secret: SECRET,
    allowedPeers: new Set(['A', 'B', 'C'].filter((n) => n !== self)),
    version: kProtocolVersion,
    ...over,
  });
}

/** Through the real codec, as on the wire. */
const wire = (m: PeerMessage): PeerMessage => decode(encode(m).subarray(kFrameHeader));

interface Side {
  hs: PeerHandshake;
  /** everything this side sent, in order */
  sent: PeerMessage[];
  done?: HandshakeStep['done'];
  fail?: string;
}

/**
 * Two handshakes wired back to back: both start, then messages are delivered alternately, in
 * order, until neither has anything in flight. A side stops reading once it is done or failed
 * (the link takes over, or closes).
 */
function connect(a: PeerHandshake, b: PeerHandshake, bHello: Partial<Extract<PeerMessage, { type: 1 }>> = {}): { a: Side; b: Side } {
  const A: Side = { hs: a, sent: [] };
  const B: Side = { hs: b, sent: [] };
  const toA: PeerMessage[] = [];
  const toB: PeerMessage[] = [];
  for (const m of a.start()) (A.sent.push(m), toB.push(wire(m)));
  for (const m of b.start()) (B.sent.push(m), toA.push(wire(m.type === MsgType.HELLO ? { ...m, ...bHello } : m)));
  const deliver = (side: Side, queue: PeerMessage[], out: PeerMessage[]): boolean => {
    const m = queue.shift();
    if (m === undefined) return false;
    if (side.done !== undefined || side.fail !== undefined) return true;
    const r = side.hs.receive(m);
    for (const s of r.send) (side.sent.push(s), out.push(wire(s)));
    if (r.done) side.done = r.done;
    if (r.fail !== undefined) side.fail = r.fail;
    return true;
  };
  for (let guard = 0; guard < 100; guard++) {
    const movedB = deliver(B, toB, toA);
    const movedA = deliver(A, toA, toB);
    if (!movedA && !movedB) return { a: A, b: B };
  }
  throw new Error('handshake does not converge');
}

/** Feeds recorded messages to a fresh handshake (after its start()); returns the last step. */
function feed(h: PeerHandshake, msgs: PeerMessage[]): HandshakeStep {
  h.start();
  let last: HandshakeStep = { send: [] };
  for (const m of msgs) {
    last = h.receive(wire(m));
    if (last.fail !== undefined || last.done) break;
  }
  return last;
}

function assertNoSecret(...things: unknown[]): void {
  for (const t of things) {
    const s = typeof t === 'string' ? t : JSON.stringify(t, (_k, v: unknown) => (v instanceof Uint8Array ? Buffer.from(v).toString('latin1') : v));
    assert.ok(!s.includes(SECRET) && !s.includes('horse'), `secret leaked: ${s}`);
  }
}

test('success: HELLO, AUTH, AUTH_OK both ways; both done with the other side facts', () => {
  const { a, b } = connect(hs('A', { expectPeer: 'B', caps: ['snap'] }), hs('B'));
  assert.equal(a.fail, undefined);
  assert.equal(b.fail, undefined);
  assert.deepEqual(a.done, { peer: 'B', peerIncarnation: 2000, caps: [], version: 2 });
  assert.deepEqual(b.done, { peer: 'A', peerIncarnation: 1000, caps: ['snap'], version: 2 });
  assert.deepEqual(a.sent.map((m) => m.type), [MsgType.HELLO, MsgType.AUTH, MsgType.AUTH_OK]);
  assert.deepEqual(b.sent.map((m) => m.type), [MsgType.HELLO, MsgType.AUTH, MsgType.AUTH_OK]);
  assert.equal(a.hs.state, 'done');
  assert.equal(a.hs.peer, 'B');
  // nonces are fresh and distinct; proofs are 32 bytes, distinct, and not the secret
  const [ha, hb] = [a.sent[0], b.sent[0]] as [Extract<PeerMessage, { type: 1 }>, Extract<PeerMessage, { type: 1 }>];
  assert.equal(ha.nonce.length, 32);
  assert.ok(!Buffer.from(ha.nonce).equals(hb.nonce));
  const [pa, pb] = [a.sent[1], b.sent[1]] as [Extract<PeerMessage, { type: 2 }>, Extract<PeerMessage, { type: 2 }>];
  assert.equal(pa.proof.length, 32);
  assert.ok(!Buffer.from(pa.proof).equals(pb.proof));
  assertNoSecret(a.sent, b.sent);
});

test('authProof: HMAC-SHA256 over label, nonces and length-prefixed names, direction-bound', () => {
  const n1 = Buffer.alloc(32, 1);
  const n2 = Buffer.alloc(32, 2);
  const expected = createHmac('sha256', SECRET)
    .update(Buffer.concat([Buffer.from(kAuthLabel), n1, n2, Buffer.from([0, 1]), Buffer.from('A'), Buffer.from([0, 2]), Buffer.from('BC')]))
    .digest();
  assert.ok(authProof(SECRET, n1, n2, 'A', 'BC').equals(expected));
  // every input matters, including which side is which and where names split
  const variants = [
    authProof(SECRET, n2, n1, 'A', 'BC'),
    authProof(SECRET, n1, n2, 'BC', 'A'),
    authProof(SECRET, n1, n2, 'AB', 'C'),
    authProof(SECRET + 'x', n1, n2, 'A', 'BC'),
  ];
  for (const v of variants) assert.ok(!v.equals(expected));
});

test('wrong secret: both sides fail, each blaming the other, and tell it; the secret is in no message', () => {
  const { a, b } = connect(hs('A', { expectPeer: 'B' }), hs('B', { secret: 'another secret of 16+ chars' }));
  assert.equal(a.done, undefined);
  assert.equal(b.done, undefined);
  assert.equal(a.fail, "peer 'B' failed authentication: wrong cluster secret?");
  assert.equal(b.fail, "peer 'A' failed authentication: wrong cluster secret?");
  assert.deepEqual(a.sent.at(-1), { type: MsgType.AUTH_FAIL, reason: 'authentication failed: wrong cluster secret?' });
  assert.equal(a.hs.state, 'failed');
  assertNoSecret(a.fail, b.fail, a.sent, b.sent);
});

test('replay: messages recorded from a good session fail against a fresh handshake', () => {
  const { a, b } = connect(hs('A', { expectPeer: 'B' }), hs('B'));
  assert.ok(a.done && b.done);
  // an attacker replays what B sent to A, to a new A (which draws a new nonce)
  const r1 = feed(hs('A', { expectPeer: 'B' }), b.sent);
  assert.equal(r1.fail, "peer 'B' failed authentication: wrong cluster secret?");
  // and what A sent to B, to a new B
  const r2 = feed(hs('B'), a.sent);
  assert.equal(r2.fail, "peer 'A' failed authentication: wrong cluster secret?");
});

test('reflection: our own AUTH (or HELLO) echoed back fails', () => {
  // the attacker claims to be B, then sends A's own proof back
  const a = hs('A');
  const [helloA] = a.start() as [Extract<PeerMessage, { type: 1 }>];
  const step = a.receive(wire({ ...helloA, node: 'B', nonce: Buffer.alloc(32, 7) }));
  assert.equal(step.fail, undefined);
  const authA = step.send[0]!;
  assert.equal(authA.type, MsgType.AUTH);
  assert.equal(a.receive(wire(authA)).fail, "peer 'B' failed authentication: wrong cluster secret?");

  // same, with A's nonce echoed too: refused at HELLO already
  const a2 = hs('A');
  const [hello2] = a2.start() as [Extract<PeerMessage, { type: 1 }>];
  assert.match(a2.receive(wire({ ...hello2, node: 'B' })).fail ?? '', /^peer 'B' sent back our own nonce: reflected connection\?$/);

  // A's HELLO echoed unchanged: a connection to ourselves
  const a3 = hs('A');
  const [hello3] = a3.start();
  const r3 = a3.receive(wire(hello3!));
  assert.match(r3.fail ?? '', /^connected to ourselves: the peer's name 'A' is this node's id/);
  assert.equal(r3.send[0]?.type, MsgType.AUTH_FAIL);
});

test('version mismatch: refused with both ranges; the other side learns why', () => {
  const a = hs('A', { expectPeer: 'B' });
  const [hello] = a.start() as [Extract<PeerMessage, { type: 1 }>];
  const r = a.receive(wire({ ...hello, node: 'B', version: 4, minVersion: 3, nonce: Buffer.alloc(32, 9) }));
  assert.equal(r.fail, "peer protocol version mismatch: peer 'B' speaks 3..4, node 'A' speaks 1..2");
  assert.deepEqual(r.send, [{ type: MsgType.AUTH_FAIL, reason: r.fail }]);
  // a newer peer that still speaks 1 is fine
  const a2 = hs('A');
  a2.start();
  const r2 = a2.receive(wire({ ...hello, node: 'B', version: 5, minVersion: 1, nonce: Buffer.alloc(32, 9) }));
  assert.equal(r2.fail, undefined);
  assert.equal(r2.send[0]?.type, MsgType.AUTH);
  // an inverted range is refused
  const a3 = hs('A');
  a3.start();
  assert.match(a3.receive(wire({ ...hello, node: 'B', version: 1, minVersion: 2, nonce: Buffer.alloc(32, 9) })).fail ?? '', /version mismatch: peer 'B' speaks 2\.\.1/);
  // a peer of version 1 (SNAPSHOT sessions as arrays): the link runs at 1
  const { a: c } = connect(hs('C', { expectPeer: 'A' }), hs('A'), { version: 1, minVersion: 1 });
  assert.equal(c.fail, undefined);
  assert.equal(c.done?.version, 1);
  // the receiving side of the AUTH_FAIL fails with the reason
  const b = hs('B');
  b.start();
  assert.equal(b.receive(wire({ type: MsgType.AUTH_FAIL, reason: r.fail! })).fail, `the peer refused the handshake: ${r.fail}`);
});

test('unknown peer, name mismatch, self-connection: both sides fail with clear reasons', () => {
  const unknown = connect(hs('A', { allowedPeers: new Set(['C']) }), hs('B'));
  assert.equal(unknown.a.fail, "unknown peer 'B': not in the <peers> list of node 'A'");
  assert.equal(unknown.b.fail, "peer 'A' refused the handshake: unknown peer 'B': not in the <peers> list of node 'A'");

  const mismatch = connect(hs('A', { expectPeer: 'C' }), hs('B'));
  assert.equal(mismatch.a.fail, "dialled peer 'C' but it introduced itself as 'B': check the host and port of <peer> 'C'");
  assert.match(mismatch.b.fail ?? '', /^peer 'A' refused the handshake: dialled peer 'C'/);

  const self = connect(hs('A', { allowedPeers: new Set(['A', 'B']) }), hs('A', { allowedPeers: new Set(['A', 'B']) }));
  assert.match(self.a.fail ?? '', /^connected to ourselves/);
  assert.match(self.b.fail ?? '', /^connected to ourselves/);
});

test('protocol errors: out-of-order messages, bad proof length, BYE, misuse', () => {
  const a = hs('A');
  a.start();
  const r = a.receive(wire({ type: MsgType.AUTH, proof: Buffer.alloc(32) }));
  assert.equal(r.fail, 'the peer: protocol error: expected HELLO, got AUTH');
  assert.deepEqual(r.send, [{ type: MsgType.AUTH_FAIL, reason: 'protocol error: expected HELLO, got AUTH' }]);
  assert.throws(() => a.receive({ type: MsgType.AUTH_OK }), /after the handshake failed/);

  const b = hs('B', { expectPeer: 'A' });
  b.start();
  assert.equal(b.receive(wire({ type: MsgType.PING, t: 1 })).fail, "peer 'A': protocol error: expected HELLO, got PING");

  // AUTH_OK before AUTH: refused
  const x = hs('A');
  const [hx] = x.start() as [Extract<PeerMessage, { type: 1 }>];
  x.receive(wire({ ...hx, node: 'B', nonce: Buffer.alloc(32, 3) }));
  assert.equal(x.receive(wire({ type: MsgType.AUTH_OK })).fail, "peer 'B': protocol error: expected AUTH, got AUTH_OK");

  // a short proof fails like a wrong one (no exception from timingSafeEqual)
  const c = hs('A');
  const [hc] = c.start() as [Extract<PeerMessage, { type: 1 }>];
  c.receive(wire({ ...hc, node: 'B', nonce: Buffer.alloc(32, 4) }));
  assert.equal(c.receive(wire({ type: MsgType.AUTH, proof: Buffer.alloc(5) })).fail, "peer 'B' failed authentication: wrong cluster secret?");

  // BYE during the handshake; peer strings are cleaned before quoting
  const d = hs('A');
  d.start();
  const bye = d.receive(wire({ type: MsgType.BYE, reason: 'shutting\ndown\u0007' + 'x'.repeat(500) }));
  assert.match(bye.fail ?? '', /^the peer closed the link during the handshake: shutting\?down\?x+…$/);
  assert.deepEqual(bye.send, []);

  const e = hs('A');
  assert.throws(() => e.receive({ type: MsgType.AUTH_OK }), /before start\(\)/);
  e.start();
  assert.throws(() => e.start(), /twice/);
  assert.throws(() => hs('A', { secret: '' }), TypeError);
});
