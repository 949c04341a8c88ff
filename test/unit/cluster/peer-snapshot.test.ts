/**
 * Two PeerManagers on loopback: the handshake, and a snapshot larger than one part (and than
 * one frame would allow) arriving whole, once, packed (protocol 2); a second snapshot asked for
 * while the first is being paced follows it whole, and what is sent meanwhile waits for both.
 */
import assert from 'node:assert/strict';
import { test } from 'node:test';
import { PeerManager, kSnapshotPartSessions, type PeerConfig, type PeerEvents } from '../../../src/cluster/peer-manager.ts';
import { freePorts } from '../../../src/local/jabberd2.ts';
import { memoryLogger } from '../../../src/log.ts';
import { MsgType, type SessionEntry } from '../../../src/wire/messages.ts';

test('a snapshot larger than the link queue cap arrives whole and once, paced; a second one follows it; a delta sent meanwhile comes after both', { timeout: 90000 }, async () => {
  const [pa, pb] = (await freePorts(2)) as [number, number];
  const base = (self: string, port: number, peer: string, peerPort: number): PeerConfig => ({
    self, incarnation: 1, secret: 'unit-test-secret-0123456789',
    listen: { ip: '127.0.0.1', port }, peers: [{ name: peer, host: '127.0.0.1', port: peerPort }],
    retry: { initMs: 20, maxMs: 200 }, heartbeatMs: 1000, maxFrameBytes: 1 << 20, maxStanzaBytes: 1 << 16, maxDepth: 32,
    queueBytes: 16 << 20, authTimeoutMs: 5000,
  });
  const got: { n: number; seq: number }[] = [];
  let last: SessionEntry[] = [];
  const deltas: number[] = [];
  const noop: PeerEvents = { onUp() {}, onDown() {}, onStanza() {}, onSnapshot() {}, onDelta() {}, onResync() {} };
  const a = new PeerManager(base('a', pa, 'b', pb), noop, memoryLogger());
  const b = new PeerManager(base('b', pb, 'a', pa), {
    ...noop,
    onSnapshot: (_n, m) => {
      got.push({ n: m.sessions.length, seq: m.seq });
      last = m.sessions;
    },
    onDelta: (_n, m) => deltas.push(m.seq),
  }, memoryLogger());
  await Promise.all([a.start(), b.start()]);
  try {
    const t0 = Date.now();
    while (!(a.isUp('b') && b.isUp('a'))) {
      if (Date.now() - t0 > 10000) throw new Error('peers never came up');
      await new Promise((r) => setTimeout(r, 10));
    }
    const n = kSnapshotPartSessions * 30;
    const sessions: SessionEntry[] = Array.from({ length: n }, (_, i) => ({
      jid: `user${i}@example.test/${'r'.repeat(40)}`, home: 'a', c2sNode: 'a', c2s: 'c2s', sm: `sm${i}`, prio: i % 5, avail: i % 2 === 0, since: 1000 + i, c2sId: `c${i}`,
    }));
    // far more than max_frame_bytes (1 MiB), and than queue_bytes (16 MiB), in one piece
    assert.ok(a.sendSnapshot('b', { origin: 'a', incarnation: 1, seq: 7, sessions, names: [{ name: 'sm', kind: 'sm' }] }));
    const second = sessions.slice(0, kSnapshotPartSessions + 1);
    assert.ok(a.sendSnapshot('b', { origin: 'a', incarnation: 1, seq: 8, sessions: second, names: [] }));
    a.send('b', { type: MsgType.DELTA, origin: 'a', incarnation: 1, seq: 9, ops: [] });
    const t1 = Date.now();
    while (deltas.length === 0) {
      if (Date.now() - t1 > 60000) throw new Error(`snapshot/delta not received: ${JSON.stringify(got)}`);
      await new Promise((r) => setTimeout(r, 10));
    }
    assert.deepEqual(got, [{ n, seq: 7 }, { n: kSnapshotPartSessions + 1, seq: 8 }]);
    assert.deepEqual(deltas, [9]);
    assert.deepStrictEqual(last, second);
  } finally {
    await Promise.all([a.stop(), b.stop()]);
  }
});
