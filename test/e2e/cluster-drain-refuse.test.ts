/**
 * A node that is draining (stopping gracefully) refuses new sessions the way the sm refuses a
 * start it cannot serve, so the client is told at once and can log in on another node.
 */
import assert from 'node:assert/strict';
import { after, before, test } from 'node:test';
import { startCluster, type TestCluster } from '../helpers/cluster.ts';
import { login, register } from '../helpers/xmpp.ts';

let c: TestCluster;
before(async () => {
  c = await startCluster({ nodes: 2 });
});
after(async () => {
  await c?.stop();
});

test('while draining, a new login on that node is refused and works on the other node', { timeout: 60000 }, async () => {
  const u = `dr${Date.now().toString(36)}`;
  const [n1, n2] = c.members;
  await register(n1!.j.c2sPort, c.domain, u, 'pw');
  const left = await n1!.node.cluster!.drain(1000); // nothing to end: returns at once, stays draining
  assert.equal(left, 0);
  await assert.rejects(login(n1!.j.c2sPort, c.domain, u, 'pw', 'x', { timeoutMs: 5000 }), /login of .* failed/);
  const { readFileSync } = await import('node:fs');
  assert.match(readFileSync(n1!.logFile, 'utf8'), /refused a session start for .*: node draining/);
  const s = await login(n2!.j.c2sPort, c.domain, u, 'pw', 'x');
  await s.stop();
});
