/**
 * Failure basics with real daemons: a jabberd2 router, c2s and sm with a jabberd2-cluster node
 * in front of the sm (the node in this process). Each test leaves the system healthy for the next.
 *
 * What plain jabberd2 does (../shared/docs/jabberd2-protocol.md §7.3, §7.4, §12), and what we
 * assert the node keeps:
 * - router restart: c2s keeps its clients and rebinds; the node reconnects and re-binds the sm's
 *   names; the sm, connected to the node, does not notice; traffic flows again.
 * - sm death: its names are de-advertised, c2s closes the domain's clients (same client-visible
 *   outcome as with plain jabberd2); a restarted sm binds again through the node.
 * - node restart: c2s drops the domain's clients, the sm reconnects by itself (retry -1/-1/1); the
 *   sm is told `c2s` is unavailable before it is available again, so it ends the sessions it
 *   still holds (no `<conflict/>` for a user who logs in again with the same resource).
 */
import assert from 'node:assert/strict';
import { randomBytes } from 'node:crypto';
import { readFileSync } from 'node:fs';
import { after, before, test } from 'node:test';
import { Jabberd2, freePorts } from '../../src/local/jabberd2.ts';
import { nodeOptionsFor } from '../../src/local/node-options.ts';
import { ClusterNode } from '../../src/daemon.ts';
import { createLogger, fileSink } from '../../src/log.ts';
import { NS_COMPONENT } from '../../src/protocol/ns.ts';
import { attr } from '../../src/xml/node.ts';
import { FakeComponent } from '../helpers/fake-component.ts';
import { startJabberd2WithNode, type NodeSetup } from '../helpers/node.ts';
import { LogCursor, waitUntil } from '../helpers/wait.ts';
import { login, register, xml, type XmppSession } from '../helpers/xmpp.ts';

const PASS = 'pw-secret';

let setup: NodeSetup | undefined;
let plain: Jabberd2 | undefined;
const sessions: XmppSession[] = [];
const fakes: FakeComponent[] = [];

before(async () => {
  setup = await startJabberd2WithNode({ domain: 'example.test' });
});

after(async () => {
  for (const f of fakes) f.close();
  await Promise.allSettled(sessions.map((s) => s.stop()));
  await setup?.stop();
  await plain?.cleanup();
});

interface NodeStatus {
  router: { up: boolean; connects: number };
  smListener: { connections: number };
  names: { name: string; components: string[]; bound: boolean }[];
}
const status = (): NodeStatus => setup!.node.status() as unknown as NodeStatus;
const boundNames = (): string[] => status().names.filter((n) => n.bound).map((n) => n.name).sort();

function diag(): string {
  const w = setup!;
  const tail = (s: string): string => s.split('\n').slice(-25).join('\n');
  return [
    `node status: ${JSON.stringify(w.node.status())}`,
    `--- router log ---\n${tail(w.j.logOf('router'))}`,
    `--- sm log ---\n${tail(w.j.logOf('sm'))}`,
    `--- c2s log ---\n${tail(w.j.logOf('c2s'))}`,
    `--- node log ---\n${tail(readNodeLog())}`,
  ].join('\n');
}
function readNodeLog(): string {
  try {
    return readFileSync(setup!.logFile, 'utf8');
  } catch {
    return '';
  }
}

/** Fresh user names (the database is shared by all tests of the file). */
function users(tag: string): { alice: string; bob: string } {
  const p = `${tag}${randomBytes(3).toString('hex')}`;
  return { alice: `${p}alice`, bob: `${p}bob` };
}

async function online(port: number, domain: string, user: string, resource: string, registerFirst: boolean): Promise<XmppSession> {
  if (registerFirst) await register(port, domain, user, PASS);
  const s = await login(port, domain, user, PASS, resource);
  sessions.push(s);
  return s;
}

/** alice sends bob (full JID) a chat message; resolves when bob has it. */
async function messageFlows(alice: XmppSession, bob: XmppSession, body: string): Promise<void> {
  await alice.send(xml('message', { to: bob.jid, type: 'chat' }, xml('body', {}, body)));
  await bob.waitFor((el) => el.is('message') && el.attrs.from === alice.jid && el.getChildText('body') === body, 10000, `message '${body}' from ${alice.jid}`);
}

/** What a client saw of its stream going away. */
interface Outcome {
  closed: boolean;
  streamErrors: string[];
}
function watch(s: XmppSession): () => Outcome {
  const streamErrors: string[] = [];
  s.client.on('error', (e: unknown) => {
    const cond = (e as { condition?: string }).condition;
    if (cond) streamErrors.push(cond);
  });
  return () => ({ closed: s.closed, streamErrors: [...streamErrors] });
}

test('router restart: the node reconnects and re-binds, c2s keeps its clients, traffic flows', { timeout: 45000 }, async () => {
  const w = setup!;
  const { j } = w;
  const u = users('rr');
  const alice = await online(j.c2sPort, j.domain, u.alice, 'home', true);
  const bob = await online(j.c2sPort, j.domain, u.bob, 'work', true);
  await messageFlows(alice, bob, 'before the router restart');
  const aliceSaw = watch(alice);
  const bobSaw = watch(bob);

  const before = status();
  assert.equal(before.router.up, true);
  assert.deepEqual(boundNames(), ['example.test', 'sm']);
  const smLog = new LogCursor(() => j.logOf('sm'));
  const routerLog = new LogCursor(() => j.logOf('router'));
  const smConnections = before.smListener.connections;

  await j.kill('router', 'SIGKILL');
  await waitUntil(() => !status().router.up, 'the node to notice the router is gone', 5000, diag);
  await j.start('router');

  // the node reconnects (a new authenticated connection) and binds the sm's names again
  await waitUntil(() => status().router.up && status().router.connects === before.router.connects + 1, 'the node to reconnect to the router', 10000, diag);
  await routerLog.waitFor('[example.test] online', 'the router to see the node re-bind the domain');
  await routerLog.waitFor('[sm] online', "the router to see the node re-bind the sm's id");
  // c2s reconnects and rebinds by itself (retry -1/-1/1)
  await routerLog.waitFor('[c2s] online', 'c2s to rebind on the restarted router', 15000);
  assert.deepEqual(boundNames(), ['example.test', 'sm']);

  // the sm sits behind the node: its connection never broke, it did not reconnect
  assert.equal(status().smListener.connections, smConnections);
  assert.ok(!smLog.has('connection to router established') && !smLog.has('attempting reconnect'), `the sm noticed the router restart:\n${smLog.text()}`);
  // as with plain jabberd2 (§7.4), c2s kept its clients over the router restart
  assert.deepEqual(aliceSaw(), { closed: false, streamErrors: [] });
  assert.deepEqual(bobSaw(), { closed: false, streamErrors: [] });

  // traffic flows again, both ways, on the same client streams
  await messageFlows(alice, bob, 'after the router restart');
  await messageFlows(bob, alice, 'and back');
  for (const d of ['router', 'sm', 'c2s'] as const) assert.ok(j.isRunning(d), `${d} died`);
});

/** Kill the sm of `inst` with two clients online; what do the clients see? */
async function smDeathOutcome(port: number, domain: string, kill: () => Promise<void>, tag: string): Promise<{ alice: Outcome; bob: Outcome }> {
  const u = users(tag);
  const alice = await online(port, domain, u.alice, 'home', true);
  const bob = await online(port, domain, u.bob, 'work', true);
  await messageFlows(alice, bob, 'before the sm dies');
  const a = watch(alice);
  const b = watch(bob);
  await kill();
  await waitUntil(() => alice.closed && bob.closed, 'c2s to close the clients of the domain', 10000);
  return { alice: a(), bob: b() };
}

test('sm death: names unbound, c2s ends the clients as with plain jabberd2; a restarted sm serves again', { timeout: 50000 }, async () => {
  const w = setup!;
  const { j } = w;

  // the reference: plain jabberd2
  plain = await Jabberd2.create({ domain: 'example.test' });
  await plain.start('router');
  await plain.start('sm');
  await plain.start('c2s');
  const p = plain;
  const reference = await smDeathOutcome(p.c2sPort, p.domain, () => p.kill('sm', 'SIGKILL'), 'sp');
  assert.deepEqual(reference, { alice: { closed: true, streamErrors: [] }, bob: { closed: true, streamErrors: [] } });
  await p.cleanup();
  plain = undefined;

  // the same with the node in front of the sm
  const routerLog = new LogCursor(() => j.logOf('router'));
  const withNode = await smDeathOutcome(j.c2sPort, j.domain, () => j.kill('sm', 'SIGKILL'), 'sn');
  assert.deepEqual(withNode, reference);
  // the node unbound the sm's names, locally and on the router (which de-advertised them to c2s)
  await waitUntil(() => status().names.length === 0 && status().smListener.connections === 0, "the node to drop the sm's names", 5000, diag);
  await routerLog.waitFor('[example.test] offline', 'the router to take the domain offline');
  await routerLog.waitFor('[sm] offline', "the router to take the sm's id offline");
  assert.equal(status().router.up, true);

  // the domain is gone for c2s: a login is refused while the sm is down
  await assert.rejects(login(j.c2sPort, j.domain, 'nobody', PASS, 'x', { timeoutMs: 5000 }));

  // sm back: it binds again through the node, users log in and talk
  await j.start('sm');
  await waitUntil(() => boundNames().join() === 'example.test,sm', 'the restarted sm to bind its names through the node', 10000, diag);
  await routerLog.waitFor('[example.test] online', 'the router to see the domain again');
  const u = users('sa');
  const alice = await online(j.c2sPort, j.domain, u.alice, 'home', true);
  const bob = await online(j.c2sPort, j.domain, u.bob, 'work', true);
  await messageFlows(alice, bob, 'after the sm came back');
  await messageFlows(bob, alice, 'and back');
});

/**
 * A FakeComponent in the sm's place binds `name` on `port`; returns what it received from the
 * bind reply on, up to a route it sent itself afterwards (a barrier: everything the node had to
 * say about the bind has arrived by then, so no duplicate can come later).
 */
async function bindAndListen(port: number, name: string): Promise<string[]> {
  const fake = await FakeComponent.login(port, setup!.j.smRouterUser, setup!.j.smRouterPass);
  fakes.push(fake);
  fake.inbox.length = 0;
  fake.send(`<bind xmlns='${NS_COMPONENT}' name='${name}'></bind>`);
  await fake.until(() => fake.inbox.some((x) => x.el.local === 'bind'), 'bind reply');
  // the advertisements come in the same burst as the bind reply; c2s is among them
  await fake.until(() => fake.inbox.some((x) => x.el.local === 'presence' && attr(x.el, 'from') === 'c2s' && attr(x.el, 'type') === undefined), 'c2s available');
  fake.send(`<route xmlns='${NS_COMPONENT}' from='${name}' to='${name}'><message xmlns='jabber:client' id='barrier'/></route>`);
  await fake.until(() => fake.inbox.some((x) => x.el.local === 'route'), 'the barrier route back');
  const seen = fake.inbox.filter((x) => x.el.uri === NS_COMPONENT && x.el.local !== 'route').map((x) =>
    x.el.local === 'bind' ? `bind${attr(x.el, 'error') ? ` error=${attr(x.el, 'error')}` : ''}` : `${attr(x.el, 'from')}:${attr(x.el, 'type') ?? 'available'}`);
  fake.close();
  return seen;
}

/** Every advertised name must be heard unavailable first, then available, once each. */
function assertUnavailableFirst(seen: string[], names: string[]): void {
  assert.equal(seen[0], 'bind', `the bind reply must come before any advertisement: ${seen.join(', ')}`);
  const heard = new Map<string, string[]>();
  for (const x of seen.slice(1)) {
    const [n, t] = x.split(':') as [string, string];
    heard.set(n, [...(heard.get(n) ?? []), t]);
  }
  assert.deepEqual([...heard.keys()].sort(), [...names].sort(), seen.join(', '));
  for (const [n, ts] of heard) assert.deepEqual(ts, ['unavailable', 'available'], `${n}: ${seen.join(', ')}`);
}

test('stale sessions fix on the wire: a component binding on the node hears c2s unavailable first, after its bind reply', { timeout: 20000 }, async () => {
  const w = setup!;
  // on the running node, which already knows c2s (user jabberd is in 'all': it may bind 'sm2')
  assertUnavailableFirst(await bindAndListen(w.node.listenPort, 'sm2'), ['c2s', 'example.test', 'sm']);
  await waitUntil(() => !boundNames().includes('sm2'), 'the node to drop sm2', 5000, diag);

  // on a fresh node (as after a node restart): it learns c2s from the router in the same burst as
  // the reply to its own bind, while the component's bind is still unanswered; the sm drops
  // whatever arrives before its first bind reply, so the advertisements must wait for it
  const [port2] = await freePorts(1);
  const o2 = nodeOptionsFor(w.j, 'node2');
  o2.local.port = port2!;
  const node2 = new ClusterNode(o2, createLogger('debug', fileSink(`${w.logFile}.node2`), 'node2'));
  try {
    await node2.start();
    await node2.routerUp();
    assertUnavailableFirst(await bindAndListen(port2!, 'sm3'), ['c2s', 'example.test', 'sm']);
  } finally {
    await node2.stop();
  }
});

test('node restart: the sm reconnects by itself, ends stale sessions, users log in again without conflict', { timeout: 50000 }, async () => {
  const w = setup!;
  const { j } = w;
  const u = users('nr');
  const alice = await online(j.c2sPort, j.domain, u.alice, 'home', true);
  const bob = await online(j.c2sPort, j.domain, u.bob, 'work', true);
  await alice.send(xml('presence'));
  await bob.send(xml('presence'));
  await messageFlows(alice, bob, 'before the node restart');
  const aliceSaw = watch(alice);
  const smLog = new LogCursor(() => j.logOf('sm'));
  const routerLog = new LogCursor(() => j.logOf('router'));

  await w.node.stop();
  // the router takes the domain offline, c2s drops the domain's clients; the sm keeps its sessions
  await routerLog.waitFor('[example.test] offline', 'the router to take the domain offline');
  await waitUntil(() => alice.closed && bob.closed, 'c2s to close the clients of the domain', 10000, diag);
  assert.deepEqual(aliceSaw(), { closed: true, streamErrors: [] });
  await smLog.waitFor('attempting reconnect', 'the sm to start retrying');
  assert.ok(!smLog.has(`session ended: jid=${alice.jid}`), 'the sm ended a session while it could not hear from c2s');
  assert.ok(j.isRunning('sm'), 'the sm exited while the node was down');

  smLog.mark();
  routerLog.mark();
  await w.restartNode();
  // the sm reconnects by itself and binds again
  await smLog.waitFor('connection to router established', 'the sm to reconnect to the new node', 10000);
  await waitUntil(() => boundNames().join() === 'example.test,sm', 'the sm to bind its names on the new node', 10000, diag);
  await routerLog.waitFor('[example.test] online', 'the router to see the domain again');
  // told that c2s was unavailable, the sm ends the stale sessions before anyone logs in again
  await smLog.waitFor(`session ended: jid=${alice.jid}`, "the sm to end alice's stale session");
  await smLog.waitFor(`session ended: jid=${bob.jid}`, "the sm to end bob's stale session");

  // the same users, the same resources: no <conflict/>, and traffic flows
  const alice2 = await online(j.c2sPort, j.domain, u.alice, 'home', false);
  const bob2 = await online(j.c2sPort, j.domain, u.bob, 'work', false);
  const alice2Saw = watch(alice2);
  const bob2Saw = watch(bob2);
  await alice2.send(xml('presence'));
  await bob2.send(xml('presence'));
  await messageFlows(alice2, bob2, 'after the node restart');
  await messageFlows(bob2, alice2, 'and back');
  const ping = await alice2.iq(xml('iq', { type: 'get', to: j.domain }, xml('ping', { xmlns: 'urn:xmpp:ping' })));
  assert.equal(ping.attrs.type, 'result');
  assert.ok(!smLog.has('session replaced'), `the sm replaced a session:\n${smLog.text()}`);
  assert.deepEqual(alice2Saw(), { closed: false, streamErrors: [] });
  assert.deepEqual(bob2Saw(), { closed: false, streamErrors: [] });
  for (const d of ['router', 'sm', 'c2s'] as const) assert.ok(j.isRunning(d), `${d} died`);
});
