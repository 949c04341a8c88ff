/**
 * Mutual TLS on peer links (`<peers><tls>`): a TLS cluster meshes and carries stanzas; a node
 * whose certificate comes from another CA, or names another node, is refused with a clear log
 * line on every attempt and never joins, while the other links are unaffected. The PKI is made
 * at test time with the openssl CLI.
 */
import assert from 'node:assert/strict';
import { readFileSync } from 'node:fs';
import { connect } from 'node:net';
import { after, before, describe, test } from 'node:test';
import { startCluster, type TestCluster } from '../helpers/cluster.ts';
import { TestPki, opensslMissing, type TlsFiles } from '../helpers/tls.ts';
import { login, register, xml } from '../helpers/xmpp.ts';

const PASS = 'pw-1234';
const skip = opensslMissing() ?? false;

let pki: TestPki;
/** the cluster's CA certificate file */
let clusterCa = '';
before(() => {
  if (skip) return;
  pki = new TestPki();
  clusterCa = pki.ca('cluster');
  pki.ca('other');
});
after(() => pki?.rm());

const logOf = (c: TestCluster, i: number): string => readFileSync(c.members[i]!.logFile, 'utf8');

/** Waits until every pattern matches the log of its member. */
async function waitLogs(c: TestCluster, want: [number, RegExp][], timeoutMs = 10000): Promise<void> {
  const until = Date.now() + timeoutMs;
  for (;;) {
    const missing = want.filter(([i, re]) => !re.test(logOf(c, i)));
    if (missing.length === 0) return;
    if (Date.now() > until) {
      throw new Error(`not logged: ${missing.map(([i, re]) => `n${i + 1}: ${re}`).join('; ')}\n${c.members.map((_m, i) => `--- n${i + 1}\n${logOf(c, i).slice(-2500)}`).join('\n')}`);
    }
    await new Promise((r) => setTimeout(r, 20));
  }
}

const count = (s: string, re: RegExp): number => s.match(new RegExp(re.source, 'g'))?.length ?? 0;

describe('peer links over mutual TLS', { skip }, () => {
  test('a 2-node TLS cluster meshes, carries a message across nodes, and refuses plain TCP', { timeout: 60000 }, async () => {
    const files = [pki.node('ok-n1', 'cluster', 'n1'), pki.node('ok-n2', 'cluster', 'n2', { dns: [] })]; // n2: by CN only
    const c = await startCluster({ nodes: 2, tweak: (i, o) => void (o.peers!.tls = files[i]!) });
    try {
      for (let i = 0; i < 2; i++) assert.match(logOf(c, i), /listening for peers on 127\.0\.0\.1:\d+ \(mutual TLS\)/);
      const u = `tls${Date.now().toString(36)}`;
      await register(c.members[0]!.j.c2sPort, c.domain, `${u}a`, PASS);
      await register(c.members[1]!.j.c2sPort, c.domain, `${u}b`, PASS);
      const a = await login(c.members[0]!.j.c2sPort, c.domain, `${u}a`, PASS, 'ra');
      const b = await login(c.members[1]!.j.c2sPort, c.domain, `${u}b`, PASS, 'rb');
      try {
        await a.send(xml('message', { to: b.jid, type: 'chat' }, xml('body', {}, 'over TLS')));
        await b.waitFor((m) => m.is('message') && m.getChildText('body') === 'over TLS' && m.attrs.from === a.jid, 5000, 'message from n1 at n2');
        assert.ok(c.members[0]!.node.cluster!.stats.toPeers > 0);
      } finally {
        await Promise.all([a.stop(), b.stop()]);
      }
      // the peer port speaks TLS only: a plain-TCP client is refused, the link stays up
      const port = c.members[0]!.node.peers!.listenPort;
      await new Promise<void>((resolve) => {
        const s = connect({ host: '127.0.0.1', port }, () => s.write('not TLS at all\r\n\r\n'));
        s.on('error', () => {});
        s.on('close', () => resolve());
        setTimeout(() => s.destroy(), 3000).unref();
      });
      await waitLogs(c, [[0, /peer link from 127\.0\.0\.1:\d+: TLS handshake failed: /]]);
      assert.deepEqual(c.members.map((m) => m.node.peers!.upNodes()), [['n2'], ['n1']]);
    } finally {
      await c.stop();
    }
  });

  test('a node whose certificate another CA signed is refused on every attempt, never joins, and the other links are unaffected', { timeout: 60000 }, async () => {
    const files = [pki.node('ca-n1', 'cluster', 'n1'), pki.node('ca-n2', 'cluster', 'n2'), pki.node('ca-n3', 'other', 'n3', { caFile: clusterCa })];
    const c = await startCluster({ nodes: 3, waitMesh: false, tweak: (i, o) => void (o.peers!.tls = files[i]!) });
    try {
      const refusedDial = /peer 'n3' \(127\.0\.0\.1:\d+\): TLS handshake failed: certificate not signed by a CA in <peers><tls><ca> \(UNABLE_TO_VERIFY_LEAF_SIGNATURE\)/;
      const refusedAccept = /peer link from 127\.0\.0\.1:\d+: TLS handshake failed: client certificate refused: certificate not signed by a CA in <peers><tls><ca> \(UNABLE_TO_VERIFY_LEAF_SIGNATURE\)/;
      // n1 and n2 refuse n3 whichever side dials; n3 learns its dial was refused; each is retried
      await waitLogs(c, [
        [0, refusedDial],
        [0, refusedAccept],
        [1, refusedDial],
        [1, refusedAccept],
        [2, /peer 'n1' \(127\.0\.0\.1:\d+\): closed by the peer right after the TLS handshake/],
      ]);
      const until = Date.now() + 10000;
      while (count(logOf(c, 0), refusedDial) < 2 || count(logOf(c, 0), refusedAccept) < 2) {
        if (Date.now() > until) throw new Error(`n1 did not retry n3:\n${logOf(c, 0).slice(-3000)}`);
        await new Promise((r) => setTimeout(r, 20));
      }
      // logged once per attempt: each failed dial gives that one line (and no other about the attempt)
      const dials = logOf(c, 0).split('\n').filter((l) => /peer 'n3' \(127\.0\.0\.1:\d+\): /.test(l) && !/ECONNREFUSED/.test(l));
      assert.ok(dials.every((l) => refusedDial.test(l)), dials.join('\n'));
      assert.deepEqual(c.members.map((m) => m.node.peers!.upNodes().sort()), [['n2'], ['n1'], []]);
      assert.ok(!/peer 'n3' up/.test(logOf(c, 0) + logOf(c, 1)));
    } finally {
      await c.stop();
    }
  });

  test('a certificate naming another node is refused, whichever side dials', { timeout: 60000 }, async () => {
    const files: TlsFiles[] = [pki.node('name-n1', 'cluster', 'n1'), pki.node('name-n2', 'cluster', 'n3', { dns: ['n3', 'n3.example'] })];
    const c = await startCluster({ nodes: 2, waitMesh: false, tweak: (i, o) => void (o.peers!.tls = files[i]!) });
    try {
      await waitLogs(c, [
        // n1 dials n2: the server certificate does not name 'n2'
        [0, /peer 'n2' \(127\.0\.0\.1:\d+\): TLS handshake failed: peer 'n2' presented a certificate for 'n3', 'n3\.example'/],
        // n2 dials n1: it proves it is 'n2' (the secret) but its client certificate names 'n3'
        [0, /peer link 127\.0\.0\.1:\d+: peer 'n2' presented a certificate for 'n3', 'n3\.example'; refused/],
        [1, /peer 'n1' refused the handshake: your TLS certificate is for 'n3', 'n3\.example', not 'n2'/],
      ]);
      assert.deepEqual(c.members.map((m) => m.node.peers!.upNodes()), [[], []]);
      assert.ok(!/ up \(incarnation/.test(logOf(c, 0) + logOf(c, 1)), 'a link came up');
    } finally {
      await c.stop();
    }
  });
});
