/**
 * The README's main command end to end: `npx tsx scripts/local-cluster.ts --nodes 2 --json` as a
 * child process, real XMPP clients on the two nodes' c2s ports, then SIGINT and an orderly stop.
 *
 * The child is started in its own process group. The SIGINT goes to the script's own process
 * (the JSON's `pid`), as a script driving it would do: `npx` itself does not pass a signal sent to
 * its pid on to the script (npm forwards it to `sh -c`, which does not forward it further).
 */
import assert from 'node:assert/strict';
import { existsSync, readFileSync } from 'node:fs';
import { dirname, join } from 'node:path';
import { after, test } from 'node:test';
import { login, register, xml, type XmppSession } from '../helpers/xmpp.ts';
import { LocalClusterProcess, alive, allPids, exited, type NodeInfo } from '../helpers/local-cluster-proc.ts';

const PASS = 'pw-local-1234';
const START_TIMEOUT_MS = 120000;
const STOP_TIMEOUT_MS = 60000;

let lc: LocalClusterProcess | undefined;

after(async () => {
  await lc?.cleanup();
});

test('local cluster of 2 nodes: JSON, clients on both nodes talk, SIGINT stops everything', { timeout: START_TIMEOUT_MS + STOP_TIMEOUT_MS + 60000 }, async () => {
  lc = await LocalClusterProcess.start(2, START_TIMEOUT_MS);
  const i = lc.info!;
  const child = lc.child;

  // the JSON
  assert.equal(i.state, 'meshed');
  assert.equal(i.domain, 'example.test');
  assert.deepEqual(i.nodes.map((n) => n.name), ['n1', 'n2']);
  const ports = i.nodes.flatMap((n) => [n.c2sPort, n.routerPort, n.peerPort, n.smListenerPort]);
  assert.ok(ports.every((p) => Number.isInteger(p) && p > 0 && p < 65536), `ports: ${ports}`);
  assert.equal(new Set(ports).size, ports.length, `ports must all differ: ${ports}`);
  for (const p of allPids(i)) assert.ok(Number.isInteger(p) && alive(p), `pid ${p} must be alive`);
  for (const n of i.nodes) {
    assert.ok(existsSync(n.logDir), `${n.logDir} exists`);
    assert.equal(dirname(n.logDir), i.runDir);
  }

  // clients: alice on n1, bob on n2
  const [n1, n2] = i.nodes as [NodeInfo, NodeInfo];
  const tag = Date.now().toString(36);
  const alice = `lca${tag}`;
  const bob = `lcb${tag}`;
  await register(n1.c2sPort, i.domain, alice, PASS);
  await register(n2.c2sPort, i.domain, bob, PASS);
  const sessions: XmppSession[] = [];
  try {
    const a = await login(n1.c2sPort, i.domain, alice, PASS, 'a');
    sessions.push(a);
    const b = await login(n2.c2sPort, i.domain, bob, PASS, 'b');
    sessions.push(b);
    await a.send(xml('presence'));
    await b.send(xml('presence'));
    await a.send(xml('message', { to: b.jid, type: 'chat' }, xml('body', {}, 'hello from n1')));
    const m1 = await b.waitFor((el) => el.is('message') && el.getChildText('body') === 'hello from n1', 10000, 'alice (n1) → bob (n2)');
    assert.equal(m1.attrs.from, a.jid);
    await b.send(xml('message', { to: a.jid, type: 'chat' }, xml('body', {}, 'hello from n2')));
    const m2 = await a.waitFor((el) => el.is('message') && el.getChildText('body') === 'hello from n2', 10000, 'bob (n2) → alice (n1)');
    assert.equal(m2.attrs.from, b.jid);
  } finally {
    await Promise.all(sessions.map((s) => s.stop()));
  }

  // the cluster secret is in the generated config, and printed nowhere
  const secret = /<secret>([^<]+)<\/secret>/.exec(readFileSync(join(n1.logDir, 'cluster.xml'), 'utf8'))?.[1];
  assert.ok(secret && secret.length >= 32, 'a cluster secret of at least 32 characters');
  for (const n of i.nodes) assert.ok(!readFileSync(join(n.logDir, 'jabberd2-cluster.log'), 'utf8').includes(secret), `${n.name}'s log must not contain the secret`);

  // SIGINT: everything stops, exit status 0, run dir removed
  const t0 = Date.now();
  process.kill(i.pid, 'SIGINT');
  const res = await exited(child, STOP_TIMEOUT_MS);
  assert.ok(res, `still running ${STOP_TIMEOUT_MS} ms after SIGINT\nstderr:\n${lc.stderr}`);
  assert.deepEqual(res, { code: 0, signal: null }, `exit status\nstderr:\n${lc.stderr}`);
  const left = allPids(i).filter(alive);
  assert.deepEqual(left, [], 'no listed process is left');
  assert.ok(!existsSync(i.runDir), `${i.runDir} removed`);
  assert.ok(Date.now() - t0 < STOP_TIMEOUT_MS);

  // stdout carried the JSON only; the secret was never printed
  assert.equal(lc.stdout.trim().split('\n').length, 1, `stdout: ${lc.stdout}`);
  assert.ok(!lc.stdout.includes(secret) && !lc.stderr.includes(secret), 'secret not printed');
  assert.match(lc.stderr, /stopping the cluster/);
});
