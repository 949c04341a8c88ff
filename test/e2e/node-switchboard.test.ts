/**
 * jabberd2's router rules as the node applies them on its sm listener (Switchboard): binds and
 * their ACLs, unbinds, multi binders, route checks and bounces, broadcast, local delivery versus
 * the way up through the real jabberd2 router, and advertisements.
 *
 * The node's router side is a real jabberd2 router; FakeComponents play the sms. Where the node
 * must answer exactly as jabberd2's router, the same script runs against a plain jabberd2 router
 * (`ref`) and the canonical replies must be equal. After every test a well-behaved component bound
 * to another name still gets a route it sends itself back through the node, and the node's
 * router link is up.
 */
import assert from 'node:assert/strict';
import { after, before, test } from 'node:test';
import { Jabberd2 } from '../../src/local/jabberd2.ts';
import { attr } from '../../src/xml/node.ts';
import { FakeComponent, type Received } from '../helpers/fake-component.ts';
import {
  NS_COMPONENT, assertNodeUnharmed as assertNodeUnharmed_, barrier, canon, isAd, loginBound, routerWithNode, type RouterWithNode,
} from '../helpers/component-wire.ts';

const USERS = { jabberd: 'secret', other: 'pw2' };
const C = NS_COMPONENT;

let rwn: RouterWithNode | undefined;
let ref: Jabberd2 | undefined;
let good: FakeComponent | undefined;
/** bound directly on the node's jabberd2 router, not through the node */
let direct: FakeComponent | undefined;
const opened: FakeComponent[] = [];

before(async () => {
  rwn = await routerWithNode({ users: USERS, aclAll: ['jabberd'] });
  ref = await Jabberd2.create({ routerUsers: USERS, aclAll: ['jabberd'] });
  await ref.start('router');
  good = track(await loginBound(rwn.port, 'good.test'));
  direct = track(await loginBound(rwn.j.routerPort, 'direct.test'));
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

function targets(): [string, number][] {
  return [['node', rwn!.port], ['ref', ref!.routerPort]];
}

function assertNodeUnharmed(): Promise<void> {
  return assertNodeUnharmed_(rwn!, good!, 'good.test', track);
}

/** Canonical texts of what arrived, advertisements (and post-auth stream features) left aside. */
function noAds(rs: Received[]): string[] {
  return rs.filter((x) => !isAd(x) && x.el.local !== 'features').map((x) => canon(x.el));
}

interface Status {
  router: { routesIn: number; routesOut: number };
  stats: { localDeliveries: number; bounces: number; dropped: number };
}
const status = (): Status => rwn!.node.status() as unknown as Status;

test('bind rules: 409 taken, 400 no name, 403 ACL, 404 unbind of a name not held, multi join; as jabberd2', { timeout: 20000 }, async () => {
  const got: Record<string, string[]> = {};
  for (const [k, port] of targets()) {
    const a = track(await FakeComponent.login(port));
    const b = track(await FakeComponent.login(port));
    const o = track(await FakeComponent.login(port, 'other', 'pw2'));
    const out: string[] = [];
    const ask = async (c: FakeComponent, xml: string, label: string): Promise<void> => {
      c.send(xml);
      const r = await c.expect((e) => e.local === 'bind' || e.local === 'unbind', `${k}: reply to ${label}`);
      out.push(`${label} -> ${canon(r.el)}`);
    };
    await ask(a, `<bind xmlns='${C}' name='one.test'/>`, 'a binds one.test');
    await ask(b, `<bind xmlns='${C}' name='one.test'/>`, 'b binds one.test (taken)');
    await ask(b, `<bind xmlns='${C}'/>`, 'b binds without a name');
    await ask(o, `<bind xmlns='${C}' name='notother.test'/>`, "other binds a name not its own, not in the ACL");
    await ask(o, `<bind xmlns='${C}' name='other'/>`, 'other binds its own name');
    await ask(b, `<unbind xmlns='${C}' name='nope.test'/>`, 'b unbinds a name nobody holds');
    await ask(b, `<unbind xmlns='${C}' name='other'/>`, 'b unbinds a name another component holds');
    await ask(b, `<unbind xmlns='${C}'/>`, 'b unbinds without a name');
    await ask(b, `<bind xmlns='${C}' name='one.test' multi='to'/>`, 'b joins one.test with multi');
    await ask(b, `<bind xmlns='${C}' name='user@two.test/res'/>`, 'b binds a JID: only its domain');
    await ask(b, `<unbind xmlns='${C}' name='two.test'/>`, 'b unbinds it by domain');
    await ask(a, `<unbind xmlns='${C}' name='one.test'/>`, 'a unbinds one.test');
    await ask(a, `<unbind xmlns='${C}' name='one.test'/>`, 'a unbinds one.test again');
    got[k] = out;
    for (const c of [a, b, o]) c.close();
  }
  assert.deepEqual(got['node'], got['ref']);
  const bind = (x = ''): string => `<{${C}}bind${x}></>`;
  const unbind = (x = ''): string => `<{${C}}unbind${x}></>`;
  assert.deepEqual(got['node'], [
    `a binds one.test -> ${bind()}`,
    `b binds one.test (taken) -> ${bind(" error='409'")}`,
    `b binds without a name -> ${bind(" error='400'")}`,
    `other binds a name not its own, not in the ACL -> ${bind(" error='403'")}`,
    `other binds its own name -> ${bind()}`,
    `b unbinds a name nobody holds -> ${unbind(" error='404'")}`,
    `b unbinds a name another component holds -> ${unbind(" error='404'")}`,
    `b unbinds without a name -> ${unbind(" error='400'")}`,
    `b joins one.test with multi -> ${bind(" multi='to'")}`,
    `b binds a JID: only its domain -> ${bind()}`,
    `b unbinds it by domain -> ${unbind()}`,
    `a unbinds one.test -> ${unbind()}`,
    `a unbinds one.test again -> ${unbind(" error='404'")}`,
  ]);
  await assertNodeUnharmed();
});

test('a component binding a multi name twice, then leaving, leaves nothing bound (jabberd2 would keep a dangling binder)', { timeout: 20000 }, async () => {
  // jabberd2's router.c answers both binds with success, lists the component twice and removes it
  // once when it leaves; it is not run against the reference router here, whose state it would spoil
  const a = track(await FakeComponent.login(rwn!.port));
  const replies: string[] = [];
  for (const label of ['first', 'second']) {
    a.send(`<bind xmlns='${C}' name='twice.test' multi='to'/>`);
    replies.push(canon((await a.expect((e) => e.local === 'bind', `reply to the ${label} bind`)).el));
  }
  assert.deepEqual(replies, [`<{${C}}bind multi='to'></>`, `<{${C}}bind multi='to'></>`]);
  const held = (): boolean => rwn!.node.switchboard.names().some((n) => n.name === 'twice.test');
  assert.deepEqual(rwn!.node.switchboard.names().find((n) => n.name === 'twice.test')?.components, ['jabberd'], 'one entry');
  a.close();
  const deadline = Date.now() + 5000;
  while (held() && Date.now() < deadline) await new Promise((r) => setTimeout(r, 20));
  assert.equal(held(), false, `twice.test is still bound: ${JSON.stringify(rwn!.node.switchboard.names())}`);
  await assertNodeUnharmed();
});

test("multi='to' binders share a name by jabberd2's hash of the inner 'to'", { timeout: 20000 }, async () => {
  const got: Record<string, string[]> = {};
  for (const [k, port] of targets()) {
    const a = track(await FakeComponent.login(port));
    const b = track(await FakeComponent.login(port));
    for (const c of [a, b]) {
      c.send(`<bind xmlns='${C}' name='multi.test' multi='to'/>`);
      const r = await c.expect((e) => e.local === 'bind', 'multi bind reply');
      assert.equal(attr(r.el, 'error'), undefined, `${k}: ${r.raw}`);
    }
    const s = track(await loginBound(port, 'sender.test'));
    const n = 16;
    for (let i = 0; i < n; i++) {
      s.send(`<route xmlns='${C}' from='sender.test' to='multi.test'><message xmlns='jabber:client' to='user${i}@multi.test/r' id='m${i}'/></route>`);
    }
    const routes = (c: FakeComponent): Received[] => c.inbox.filter((x) => x.el.local === 'route');
    await a.until(() => routes(a).length + routes(b).length === n, `${k}: ${n} routes over both binders`);
    const who = (c: FakeComponent, tag: string): string[] => routes(c).map((x) => `${attr(x.el.children.find((e) => typeof e !== 'string') as never, 'id')}:${tag}`);
    got[k] = [...who(a, 'a'), ...who(b, 'b')].sort();
    assert.ok(routes(a).length > 0 && routes(b).length > 0, `${k}: one binder got everything`);
    for (const c of [a, b, s]) c.close();
  }
  assert.deepEqual(got['node'], got['ref']);
  await assertNodeUnharmed();
});

test('route rules: 401 from a name not bound, 400 without to/from, error routes and unknown types dropped, broadcast; as jabberd2', { timeout: 20000 }, async () => {
  const got: Record<string, Record<string, { a: string[]; b: string[]; u: string[] }>> = {};
  for (const [k, port] of targets()) {
    const a = track(await loginBound(port, 'ra.test'));
    const b = track(await loginBound(port, 'rb.test'));
    // connected and authenticated, bound to nothing
    const u = track(await FakeComponent.login(port));
    const steps: Record<string, { a: string[]; b: string[]; u: string[] }> = {};
    const step = async (label: string, xml: string, uExpects = 0): Promise<void> => {
      u.inbox.splice(0);
      a.send(xml);
      const fromA = await barrier(a, 'ra.test');
      const fromB = await barrier(b, 'rb.test');
      if (uExpects > 0) await u.until(() => u.inbox.filter((x) => x.el.local === 'route').length >= uExpects, `${k}: ${label} at the unbound component`);
      steps[label] = { a: noAds(fromA), b: noAds(fromB), u: noAds(u.inbox.splice(0)) };
    };
    const msg = `<message xmlns='jabber:client' from='x@ra.test/r' to='y@rb.test/r' type='chat' id='m1'><body>hi</body></message>`;
    await step('unicast', `<route xmlns='${C}' from='ra.test' to='rb.test'>${msg}</route>`);
    await step('from a name not bound', `<route xmlns='${C}' from='zz.test' to='rb.test'>${msg}</route>`);
    await step('no to', `<route xmlns='${C}' from='ra.test'>${msg}</route>`);
    await step('no from', `<route xmlns='${C}' to='rb.test'>${msg}</route>`);
    await step('empty to', `<route xmlns='${C}' from='ra.test' to=''>${msg}</route>`);
    await step('invalid to (empty node)', `<route xmlns='${C}' from='ra.test' to='@rb.test'>${msg}</route>`);
    await step('invalid to (empty resource)', `<route xmlns='${C}' from='ra.test' to='rb.test/'>${msg}</route>`);
    await step('carrying an error', `<route xmlns='${C}' from='ra.test' to='rb.test' error='404'>${msg}</route>`);
    await step('carrying an error, to a name nobody holds', `<route xmlns='${C}' from='ra.test' to='nowhere.test' error='503'>${msg}</route>`);
    await step('unknown type', `<route xmlns='${C}' from='ra.test' to='rb.test' type='bogus'>${msg}</route>`);
    await step('broadcast', `<route xmlns='${C}' type='broadcast' from='ra.test'>${msg}</route>`, 1);
    await step('broadcast without from', `<route xmlns='${C}' type='broadcast'>${msg}</route>`);
    await step('broadcast from a name not bound', `<route xmlns='${C}' type='broadcast' from='zz.test'>${msg}</route>`);
    await step('to an unknown domain', `<route xmlns='${C}' from='ra.test' to='unknown.test'>${msg}</route>`);
    got[k] = steps;
    for (const c of [a, b, u]) c.close();
  }
  // through the node, the broadcast also reached good.test, and, sent up, the router's components
  const isBroadcast = (e: { local: string; attrs: Record<string, string> }): boolean => e.local === 'route' && e.attrs['type'] === 'broadcast' && e.attrs['from'] === 'ra.test';
  await good!.expect(isBroadcast, 'the broadcast at good.test');
  await direct!.expect(isBroadcast, 'the broadcast at the component on the router');
  assert.deepEqual(got['node'], got['ref']);
  // and what that is: jabberd2's bounce is the unchanged route with error='NNN', back to the sender
  const m = `<{jabber:client}message from='x@ra.test/r' id='m1' to='y@rb.test/r' type='chat'><{jabber:client}body>hi</></>`;
  const none = { a: [], b: [], u: [] };
  assert.deepEqual(got['node'], {
    unicast: { a: [], b: [`<{${C}}route from='ra.test' to='rb.test'>${m}</>`], u: [] },
    'from a name not bound': { a: [`<{${C}}route error='401' from='zz.test' to='rb.test'>${m}</>`], b: [], u: [] },
    'no to': { a: [`<{${C}}route error='400' from='ra.test'>${m}</>`], b: [], u: [] },
    'no from': { a: [`<{${C}}route error='400' to='rb.test'>${m}</>`], b: [], u: [] },
    'empty to': { a: [`<{${C}}route error='400' from='ra.test' to=''>${m}</>`], b: [], u: [] },
    'invalid to (empty node)': { a: [`<{${C}}route error='400' from='ra.test' to='@rb.test'>${m}</>`], b: [], u: [] },
    'invalid to (empty resource)': { a: [`<{${C}}route error='400' from='ra.test' to='rb.test/'>${m}</>`], b: [], u: [] },
    'carrying an error': none,
    'carrying an error, to a name nobody holds': none,
    'unknown type': none,
    broadcast: { a: [], b: [`<{${C}}route from='ra.test' type='broadcast'>${m}</>`], u: [`<{${C}}route from='ra.test' type='broadcast'>${m}</>`] },
    'broadcast without from': { a: [`<{${C}}route error='400' type='broadcast'>${m}</>`], b: [], u: [] },
    'broadcast from a name not bound': { a: [`<{${C}}route error='401' from='zz.test' type='broadcast'>${m}</>`], b: [], u: [] },
    'to an unknown domain': { a: [`<{${C}}route error='404' from='ra.test' to='unknown.test'>${m}</>`], b: [], u: [] },
  });
  await assertNodeUnharmed();
});

test('routes to a local name stay local; to a name on the router they go up and come back; unknown domain: 404 from the router', { timeout: 20000 }, async () => {
  const w = rwn!;
  const d = direct!;
  const a = track(await loginBound(w.port, 'la.test'));
  const msg = (id: string): string => `<message xmlns='jabber:client' from='x@la.test/r' to='y@good.test/r' id='${id}'><body>hi</body></message>`;

  // to a name bound on the node: delivered by the node, never seen by the router
  let s0 = status();
  a.send(`<route xmlns='${C}' from='la.test' to='good.test'>${msg('local')}</route>`);
  const atGood = await good!.expect((e) => e.local === 'route', 'the local route at good.test');
  assert.equal(canon(atGood.el), `<{${C}}route from='la.test' to='good.test'><{jabber:client}message from='x@la.test/r' id='local' to='y@good.test/r'><{jabber:client}body>hi</></></>`);
  let s1 = status();
  assert.equal(s1.router.routesOut, s0.router.routesOut, 'a local route went to the router');
  assert.equal(s1.stats.localDeliveries, s0.stats.localDeliveries + 1);
  assert.deepEqual(noAds(await barrier(d, 'direct.test')), [], 'the component on the router saw the local route');

  // to a name bound directly on the jabberd2 router: up, and its answer comes back down
  s0 = status();
  a.send(`<route xmlns='${C}' from='la.test' to='direct.test'>${msg('up')}</route>`);
  const atDirect = await d.expect((e) => e.local === 'route', 'the route at the component on the router');
  assert.equal(attr(atDirect.el, 'from'), 'la.test');
  assert.equal(attr(atDirect.el, 'to'), 'direct.test');
  d.send(`<route xmlns='${C}' from='direct.test' to='la.test'><message xmlns='jabber:client' from='z@direct.test' to='x@la.test/r' id='down'/></route>`);
  const back = await a.expect((e) => e.local === 'route', 'the answer from the component on the router');
  assert.equal(canon(back.el), `<{${C}}route from='direct.test' to='la.test'><{jabber:client}message from='z@direct.test' id='down' to='x@la.test/r'></></>`);
  s1 = status();
  assert.equal(s1.router.routesOut, s0.router.routesOut + 1);
  assert.equal(s1.router.routesIn, s0.router.routesIn + 1);

  // to a domain nobody serves: the real router bounces it with 404, the node hands it back
  s0 = status();
  a.send(`<route xmlns='${C}' from='la.test' to='unknown.test'>${msg('lost')}</route>`);
  const bounce = await a.expect((e) => e.local === 'route', 'the 404 bounce');
  assert.equal(canon(bounce.el), `<{${C}}route error='404' from='la.test' to='unknown.test'><{jabber:client}message from='x@la.test/r' id='lost' to='y@good.test/r'><{jabber:client}body>hi</></></>`);
  s1 = status();
  assert.equal(s1.router.routesOut, s0.router.routesOut + 1, 'the node did not send it up');
  assert.equal(s1.router.routesIn, s0.router.routesIn + 1, 'the bounce did not come from the router');
  assert.equal(s1.stats.bounces, s0.stats.bounces, 'the node bounced it itself');

  // a broadcast goes to the local components and up, to the router's other components
  a.send(`<route xmlns='${C}' type='broadcast' from='la.test'><message xmlns='jabber:client' id='all'/></route>`);
  await d.expect((e) => e.local === 'route' && attr(e, 'type') === 'broadcast', 'the broadcast at the component on the router');
  await good!.expect((e) => e.local === 'route' && attr(e, 'type') === 'broadcast', 'the broadcast at good.test');
  assert.deepEqual(noAds(await barrier(a, 'la.test')), [], 'the broadcast came back to its sender');
  a.close();
  await assertNodeUnharmed();
});

test('advertisements: told of names as jabberd2 does, unavailable first the first time (§12)', { timeout: 20000 }, async () => {
  const w = rwn!;
  const ads = (rs: Received[]): string[] => rs.filter(isAd).map((x) => `${attr(x.el, 'from')}:${attr(x.el, 'type') ?? 'available'}`);
  const a = track(await loginBound(w.port, 'adv-a.test'));
  const b = track(await loginBound(w.port, 'adv-b.test'));
  // connected, bound to nothing: told nothing (jabberd2 advertises to bound components only)
  const u = track(await FakeComponent.login(w.port));
  // a was there first: it hears of b's name
  assert.deepEqual(ads(await barrier(a, 'adv-a.test')), ['adv-b.test:unavailable', 'adv-b.test:available']);

  // a binds a name: b hears it (unavailable first: b never heard of it); as jabberd2, a is told
  // again of every name it is not part of (only "available": it has heard of them all)
  a.send(`<bind xmlns='${C}' name='adv-x.test'/>`);
  await a.expect((e) => e.local === 'bind', 'bind reply');
  assert.deepEqual(ads(await barrier(b, 'adv-b.test')), ['adv-x.test:unavailable', 'adv-x.test:available']);
  const again = ads(await barrier(a, 'adv-a.test'));
  assert.ok(['adv-b.test', 'good.test', 'direct.test'].every((n) => again.includes(`${n}:available`)), again.join(', '));
  assert.ok(again.every((x) => x.endsWith(':available') && !x.startsWith('adv-x.test:') && !x.startsWith('adv-a.test:')), again.join(', '));

  // a name bound directly on the jabberd2 router reaches the node's components through the node
  const d2 = track(await loginBound(w.j.routerPort, 'adv-up.test'));
  await b.until(() => ads(b.inbox).includes('adv-up.test:available'), 'adv-up.test available at b');
  await a.until(() => ads(a.inbox).includes('adv-up.test:available'), 'adv-up.test available at a');
  assert.deepEqual(ads(await barrier(b, 'adv-b.test')), ['adv-up.test:unavailable', 'adv-up.test:available']);
  assert.deepEqual(ads(await barrier(a, 'adv-a.test')), ['adv-up.test:unavailable', 'adv-up.test:available']);

  // the last binder leaves: unavailable
  a.send(`<unbind xmlns='${C}' name='adv-x.test'/>`);
  await a.expect((e) => e.local === 'unbind', 'unbind reply');
  assert.deepEqual(ads(await barrier(b, 'adv-b.test')), ['adv-x.test:unavailable']);
  d2.close();
  await b.until(() => ads(b.inbox).includes('adv-up.test:unavailable'), 'adv-up.test unavailable at b');
  assert.deepEqual(ads(await barrier(b, 'adv-b.test')), ['adv-up.test:unavailable']);
  assert.deepEqual(ads(await barrier(a, 'adv-a.test')), ['adv-up.test:unavailable']);

  // bound again: b has heard of it, so only "available" this time
  a.send(`<bind xmlns='${C}' name='adv-x.test'/>`);
  await a.expect((e) => e.local === 'bind', 'bind reply');
  assert.deepEqual(ads(await barrier(b, 'adv-b.test')), ['adv-x.test:available']);

  // a newly bound component is told of every name it is not part of, each unavailable first
  const c = track(await FakeComponent.login(w.port));
  c.send(`<bind xmlns='${C}' name='adv-c.test'/>`);
  await c.expect((e) => e.local === 'bind', 'bind reply');
  const told = ads(await barrier(c, 'adv-c.test'));
  const names = [...new Set(told.map((x) => x.split(':')[0]!))];
  assert.ok(names.includes('adv-x.test') && names.includes('good.test') && names.includes('direct.test'), told.join(', '));
  for (const n of names) assert.deepEqual(told.filter((x) => x.startsWith(`${n}:`)), [`${n}:unavailable`, `${n}:available`], told.join(', '));
  // ... and the others hear of it once
  assert.deepEqual(ads(await barrier(b, 'adv-b.test')), ['adv-c.test:unavailable', 'adv-c.test:available']);

  // the unbound component heard nothing through all of this
  assert.deepEqual(ads(u.inbox), []);
  // jabberd2 itself sends no "unavailable first", and one copy per name the recipient has bound
  // (a component bound to two names hears every advertisement twice); the node sends one copy
  const r = ref!;
  const rb = track(await loginBound(r.routerPort, 'adv-b.test'));
  rb.send(`<bind xmlns='${C}' name='adv-b2.test'/>`);
  await rb.expect((e) => e.local === 'bind', 'bind reply');
  const ra = track(await loginBound(r.routerPort, 'adv-a.test'));
  ra.send(`<bind xmlns='${C}' name='adv-x.test'/>`);
  await ra.expect((e) => e.local === 'bind', 'bind reply');
  assert.deepEqual(ads(await barrier(rb, 'adv-b.test')), ['adv-a.test:available', 'adv-a.test:available', 'adv-x.test:available', 'adv-x.test:available']);
  for (const x of [a, b, c, u, ra, rb]) x.close();
  await assertNodeUnharmed();
});
