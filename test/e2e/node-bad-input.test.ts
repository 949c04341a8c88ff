/**
 * Bad input on the sm listener (ComponentServer), stream and authentication level. The node's
 * router side is a real jabberd2 router; FakeComponents play the sms. Where the node answers as
 * jabberd2's router does, the same script also runs against a plain jabberd2 router (`ref`) and
 * the canonical replies must be equal; where the node deliberately differs (stricter XML, a
 * stanza size limit, an auth timeout, a cap on SASL attempts), the test asserts the node's reply
 * and pins what jabberd2 2.7.0 does instead, so a change on either side is noticed.
 *
 * After every case: the offending link is closed or still open, as stated; a well-behaved
 * component bound to another name still gets a route it sends itself back through the node; the
 * node's router link is up and the listener takes new logins.
 */
import assert from 'node:assert/strict';
import { after, before, test } from 'node:test';
import { Jabberd2 } from '../../src/local/jabberd2.ts';
import { ClusterNode } from '../../src/daemon.ts';
import { nodeOptionsFor } from '../../src/local/node-options.ts';
import { freePorts } from '../../src/local/jabberd2.ts';
import { createLogger } from '../../src/log.ts';
import { saslAuth } from '../../src/protocol/component.ts';
import { NS_SASL } from '../../src/protocol/ns.ts';
import { FakeComponent } from '../helpers/fake-component.ts';
import {
  NS_COMPONENT, assertNodeUnharmed as assertNodeUnharmed_, barrier, canon, loginBound, openStream, routerWithNode, saslRound, streamErrorCondition, type RouterWithNode,
} from '../helpers/component-wire.ts';

const USERS = { jabberd: 'secret', other: 'pw2' };
const MAX_STANZA = 64 * 1024;

let rwn: RouterWithNode | undefined;
let ref: Jabberd2 | undefined;
let good: FakeComponent | undefined;
const opened: FakeComponent[] = [];

before(async () => {
  rwn = await routerWithNode({ users: USERS, aclAll: ['jabberd'], limits: { maxStanzaBytes: MAX_STANZA } });
  ref = await Jabberd2.create({ routerUsers: USERS, aclAll: ['jabberd'] });
  await ref.start('router');
  good = await loginBound(rwn.port, 'good.test');
  opened.push(good);
});

after(async () => {
  for (const c of opened) c.close();
  await rwn?.stop();
  await ref?.cleanup();
});

function track(c: FakeComponent): FakeComponent {
  opened.push(c);
  return c;
}

/** Both targets: the node's sm listener and the plain jabberd2 router. */
function ports(): { node: number; ref: number } {
  return { node: rwn!.port, ref: ref!.routerPort };
}

/** The well-behaved component still works, the node is up and takes new logins. */
function assertNodeUnharmed(): Promise<void> {
  return assertNodeUnharmed_(rwn!, good!, 'good.test', track);
}

/** Log in and bind `own`, then send `bad` (raw text). */
async function misbehave(port: number, own: string, bad: string): Promise<FakeComponent> {
  const c = track(await loginBound(port, own));
  c.send(bad);
  return c;
}

test('malformed XML: stream error and close (jabberd2 names it xml-not-well-formed)', { timeout: 20000 }, async () => {
  const bad = `<route xmlns='${NS_COMPONENT}' from='bad.test' to='bad.test'><a></b></route>`;
  const n = await misbehave(ports().node, 'bad.test', bad);
  const r = await misbehave(ports().ref, 'bad.test', bad);
  await n.closedSoon();
  await r.closedSoon();
  assert.equal(streamErrorCondition(n.inbox), 'not-well-formed');
  assert.equal(n.streamClosed, true, 'no </stream:stream> after the error');
  // jabberd2 closes at the same point; its condition is the RFC 3920 draft name
  assert.equal(streamErrorCondition(r.inbox), 'xml-not-well-formed');
  assert.equal(r.streamClosed, true);
  // the name it held is released
  assert.ok(!rwn!.node.switchboard.names().some((x) => x.name === 'bad.test'));
  await assertNodeUnharmed();
});

test('oversized stanza: policy-violation and close (jabberd2 has no limit on its router port)', { timeout: 20000 }, async () => {
  const route = (own: string, size: number): string =>
    `<route xmlns='${NS_COMPONENT}' from='${own}' to='${own}'><message xmlns='jabber:client' id='big'><body>${'x'.repeat(size)}</body></message></route>`;
  // just below the limit passes
  const ok = track(await loginBound(ports().node, 'big1.test'));
  ok.send(route('big1.test', MAX_STANZA - 500));
  await ok.expect((e) => e.local === 'route', 'the large route back', 10000);
  ok.close();
  // above the limit: the link is closed
  const n = await misbehave(ports().node, 'big2.test', route('big2.test', MAX_STANZA + 1000));
  await n.closedSoon(10000);
  assert.equal(streamErrorCondition(n.inbox), 'policy-violation');
  assert.equal(n.streamClosed, true);
  assert.ok(!n.inbox.some((x) => x.el.local === 'route'));
  // jabberd2's router routes it
  const r = await misbehave(ports().ref, 'big2.test', route('big2.test', MAX_STANZA + 1000));
  await r.expect((e) => e.local === 'route', 'the oversized route back from jabberd2', 10000);
  assert.equal(r.closed, false);
  await assertNodeUnharmed();
});

test('restricted XML (comment, PI, DOCTYPE): restricted-xml and close (jabberd2 ignores them)', { timeout: 20000 }, async () => {
  for (const [what, bad] of [['comment', '<!-- hello -->'], ['processing instruction', '<?foo bar?>']] as const) {
    const n = await misbehave(ports().node, 'restricted.test', bad);
    await n.closedSoon();
    assert.equal(streamErrorCondition(n.inbox), 'restricted-xml', what);
    assert.equal(n.streamClosed, true, what);
    // jabberd2's expat has no handler for them: skipped, the link stays
    const r = await misbehave(ports().ref, 'restricted.test', bad);
    assert.deepEqual(await barrier(r, 'restricted.test'), [], what);
    r.close();
  }
  // a DOCTYPE comes before the stream header: the node opens its stream to say why it closes
  const n = track(await FakeComponent.open(ports().node));
  n.send(`<?xml version='1.0'?><!DOCTYPE stream:stream><stream:stream xmlns:stream='http://etherx.jabber.org/streams' version='1.0'>`);
  await n.closedSoon();
  assert.deepEqual(n.errors, [], 'the reply was not a parseable stream');
  assert.equal(n.streamOpens, 1);
  assert.equal(streamErrorCondition(n.inbox), 'restricted-xml');
  assert.equal(n.streamClosed, true);
  // jabberd2 accepts a DOCTYPE without declarations (and refuses entity declarations)
  const r = track(await FakeComponent.open(ports().ref));
  r.send(`<?xml version='1.0'?><!DOCTYPE stream:stream><stream:stream xmlns:stream='http://etherx.jabber.org/streams' version='1.0'>`);
  await r.expect((e) => e.local === 'features', 'features from jabberd2');
  r.close();
  await assertNodeUnharmed();
});

test('unknown element in the component namespace, element in another namespace: dropped, link stays', { timeout: 20000 }, async () => {
  for (const bad of [
    `<frob xmlns='${NS_COMPONENT}' name='x'/>`,
    `<iq xmlns='jabber:client' type='get' id='1' to='good.test'><query xmlns='jabber:iq:version'/></iq>`,
    `<route xmlns='jabber:client' from='junk.test' to='good.test'><message/></route>`,
  ]) {
    const got: Record<string, string[]> = {};
    for (const [k, port] of Object.entries(ports())) {
      const c = await misbehave(port, 'junk.test', bad);
      got[k] = (await barrier(c, 'junk.test')).map((x) => canon(x.el));
      assert.equal(c.closed, false, `${k}: closed after ${bad}`);
      c.close();
    }
    assert.deepEqual(got['node'], got['ref'], bad);
    assert.deepEqual(got['node'], [], bad);
  }
  await assertNodeUnharmed();
});

test('routes and binds before authentication: dropped, link stays, authentication then works', { timeout: 20000 }, async () => {
  const got: Record<string, string[]> = {};
  for (const [k, port] of Object.entries(ports())) {
    const c = track(await openStream(port));
    c.send(`<route xmlns='${NS_COMPONENT}' from='good.test' to='good.test'><message xmlns='jabber:client' id='preauth'/></route>`);
    c.send(`<bind xmlns='${NS_COMPONENT}' name='preauth.test'/>`);
    const res = await saslRound(c, 'jabberd', 'secret');
    assert.equal(res.el.local, 'success', `${k}: ${res.raw}`);
    c.send(`<bind xmlns='${NS_COMPONENT}' name='preauth.test'/>`);
    const bind = await c.expect((e) => e.local === 'bind', 'bind reply');
    // (advertisements of what else is bound on each side left aside)
    got[k] = [...c.inbox.splice(0).filter((x) => x.el.local !== 'features' && x.el.local !== 'presence').map((x) => canon(x.el)), canon(bind.el)];
    assert.deepEqual(await barrier(c, 'preauth.test'), [], k);
    c.close();
  }
  assert.deepEqual(got['node'], got['ref']);
  assert.deepEqual(got['node'], [`<{${NS_COMPONENT}}bind></>`]);
  // the route sent before authentication never reached good.test
  await assertNodeUnharmed();
});

test('SASL: wrong password and unknown user get not-authorized; a retry on the same stream works', { timeout: 20000 }, async () => {
  const got: Record<string, string[]> = {};
  for (const [k, port] of Object.entries(ports())) {
    const c = track(await openStream(port));
    const wrong = await saslRound(c, 'jabberd', 'wrong');
    const unknown = await saslRound(c, 'nobody', 'secret');
    const right = await saslRound(c, 'jabberd', 'secret');
    got[k] = [canon(wrong.el), canon(unknown.el), right.el.local];
    c.close();
  }
  const failure = (t: string): string => `<{${NS_SASL}}failure><{${NS_SASL}}not-authorized></><{${NS_SASL}}text>${t}</></>`;
  assert.deepEqual(got['node'], [failure('Error authenticating user'), failure('Error authenticating user'), 'success']);
  // jabberd2's text for an unknown user (gsasl's GSASL_NO_PASSWORD) tells it from a wrong
  // password; the node answers both alike, so that user names cannot be probed
  assert.deepEqual(got['ref'], [failure('Error authenticating user'), failure('Authentication failed because the password was not provided.'), 'success']);
  await assertNodeUnharmed();
});

test('SASL: after 3 failures the node closes the stream (jabberd2 lets a component try for ever)', { timeout: 20000 }, async () => {
  const n = track(await openStream(ports().node));
  for (let i = 0; i < 3; i++) assert.equal((await saslRound(n, 'jabberd', `wrong${i}`)).el.local, 'failure');
  await n.closedSoon();
  assert.equal(streamErrorCondition(n.inbox), 'not-authorized');
  assert.equal(n.streamClosed, true);
  const r = track(await openStream(ports().ref));
  for (let i = 0; i < 4; i++) assert.equal((await saslRound(r, 'jabberd', `wrong${i}`)).el.local, 'failure');
  assert.equal((await saslRound(r, 'jabberd', 'secret')).el.local, 'success');
  r.close();
  await assertNodeUnharmed();
});

test('SASL: an unknown mechanism gets invalid-mechanism, link stays, DIGEST-MD5 then works', { timeout: 20000 }, async () => {
  const got: Record<string, string[]> = {};
  for (const [k, port] of Object.entries(ports())) {
    const c = track(await openStream(port));
    c.send(saslAuth('PLAIN'));
    const f = await c.expect((e) => e.uri === NS_SASL && e.local === 'failure', 'failure');
    const ok = await saslRound(c, 'jabberd', 'secret');
    got[k] = [canon(f.el), ok.el.local];
    c.close();
  }
  assert.deepEqual(got['node'], got['ref']);
  assert.deepEqual(got['node'], [`<{${NS_SASL}}failure><{${NS_SASL}}invalid-mechanism></></>`, 'success']);
  await assertNodeUnharmed();
});

test('XEP-0114 stream header on the sm listener: invalid-namespace and close, as jabberd2 without a secret', { timeout: 20000 }, async () => {
  const got: Record<string, unknown> = {};
  for (const [k, port] of Object.entries(ports())) {
    const c = track(await FakeComponent.open(port));
    c.send(`<?xml version='1.0'?><stream:stream xmlns='jabber:component:accept' xmlns:stream='http://etherx.jabber.org/streams' to='legacy.test'>`);
    await c.closedSoon();
    got[k] = { opens: c.streamOpens, errors: c.errors, cond: streamErrorCondition(c.inbox), footer: c.streamClosed };
  }
  assert.deepEqual(got['node'], got['ref']);
  assert.deepEqual(got['node'], { opens: 1, errors: [], cond: 'invalid-namespace', footer: true });
  await assertNodeUnharmed();
});

test('authentication timeout: connection-timeout and close, authenticated links unaffected (jabberd2 has none)', { timeout: 20000 }, async () => {
  const w = rwn!;
  // a second node on the same router with a 1 s authentication timeout
  const opts = nodeOptionsFor(w.j, 'node-timeout', { authTimeoutSec: 1 });
  const [port] = await freePorts(1);
  opts.local.port = port!;
  opts.local.users = new Map(Object.entries(USERS));
  const node2 = new ClusterNode(opts, createLogger('debug', { write: (l) => w.lines.push(l) }, 'node-timeout'));
  try {
    await node2.start();
    await node2.routerUp();
    const early = track(await loginBound(port!, 'intime.test'));
    const t0 = Date.now();
    // silent after connecting: the node opens its stream to say why it closes
    const silent = track(await FakeComponent.open(port!));
    // header sent, never authenticates
    const idle = track(await openStream(port!));
    // the same on jabberd2's router, which has no such timeout
    const refIdle = track(await openStream(ports().ref));
    await silent.closedSoon(5000);
    await idle.closedSoon(5000);
    const took = Date.now() - t0;
    assert.ok(took >= 900 && took < 4000, `closed after ${took} ms`);
    for (const c of [silent, idle]) {
      assert.deepEqual(c.errors, []);
      assert.equal(c.streamOpens, 1);
      assert.equal(streamErrorCondition(c.inbox), 'connection-timeout');
      assert.equal(c.streamClosed, true);
    }
    // authenticated in time: its timer was cancelled
    assert.equal(early.closed, false);
    assert.deepEqual(await barrier(early, 'intime.test'), []);
    early.close();
    // jabberd2's router still holds its idle unauthenticated link, and authenticates it now
    assert.equal(refIdle.closed, false);
    assert.equal((await saslRound(refIdle, 'jabberd', 'secret')).el.local, 'success');
    refIdle.close();
  } finally {
    await node2.stop();
  }
  await assertNodeUnharmed();
});
