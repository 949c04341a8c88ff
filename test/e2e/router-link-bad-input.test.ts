/**
 * The router side of the node (RouterLink) against a scripted fake router that misbehaves:
 * malformed XML, SASL failures, a bind refused on re-bind. Each time the node must log why,
 * reconnect with backoff, re-bind what its sm holds and keep the sm (a FakeComponent bound
 * like a real sm: its id, then the domain with multi='to') connected throughout.
 */
import assert from 'node:assert/strict';
import { after, test } from 'node:test';
import { freePorts } from '../../src/local/jabberd2.ts';
import { ClusterNode, type NodeOptions } from '../../src/daemon.ts';
import { createLogger } from '../../src/log.ts';
import { NS_COMPONENT as C, NS_STREAM } from '../../src/protocol/ns.ts';
import { attr, type XmlElement } from '../../src/xml/node.ts';
import { FakeComponent } from '../helpers/fake-component.ts';
import { FakeRouter } from '../helpers/fake-router.ts';
import { waitUntil } from '../helpers/wait.ts';

const INIT_MS = 200;
const cleanups: (() => Promise<void> | void)[] = [];

after(async () => {
  for (const f of cleanups.reverse()) await Promise.resolve(f()).catch(() => {});
});

interface Rig {
  fr: FakeRouter;
  node: ClusterNode;
  lines: string[];
  sm: FakeComponent;
}

/** A fake router, a node on it, and an sm-like FakeComponent bound to 'sm' and 'example.test'. */
async function rig(): Promise<Rig> {
  const fr = await FakeRouter.start({ jabberd: 'secret' });
  cleanups.push(() => fr.stop());
  const [port] = await freePorts(1);
  const opts: NodeOptions = {
    id: 'node-rl',
    router: { ip: '127.0.0.1', port: fr.port, user: 'jabberd', pass: 'secret', retry: { initMs: INIT_MS, maxMs: 2000 }, keepaliveSec: 0 },
    local: {
      ip: '127.0.0.1', port: port!, maxConnections: 8,
      users: new Map([['jabberd', 'secret']]),
      acl: { all: ['jabberd'], bind: [], 'default-route': [], log: [] },
    },
    limits: { maxStanzaBytes: 1 << 20, maxDepth: 64, queueBytes: 1 << 20, authTimeoutSec: 10 },
  };
  const lines: string[] = [];
  const node = new ClusterNode(opts, createLogger('debug', { write: (l) => lines.push(l) }, 'node'));
  cleanups.push(() => node.stop());
  await node.start();
  await node.routerUp();
  const sm = await FakeComponent.login(port!);
  cleanups.push(() => sm.close());
  for (const [name, multi] of [['sm', ''], ['example.test', " multi='to'"]] as const) {
    sm.send(`<bind xmlns='${C}' name='${name}'${multi}></bind>`);
    const r = await sm.expect((e) => e.local === 'bind', `bind reply for ${name}`);
    assert.equal(attr(r.el, 'error'), undefined, r.raw);
  }
  assert.deepEqual(fr.conns[0]!.binds, [{ name: 'sm', multi: '', error: null }, { name: 'example.test', multi: 'to', error: null }]);
  return { fr, node, lines, sm };
}

function diag(r: Rig): string {
  return `fake router: ${r.fr.describe()}\nnode log:\n${r.lines.slice(-25).join('\n')}`;
}

function logged(r: Rig, ...parts: string[]): Promise<void> {
  return waitUntil(() => r.lines.some((l) => parts.every((p) => l.includes(p))), `a node log line with ${parts.map((p) => `'${p}'`).join(' and ')}`, 5000, () => diag(r));
}

/** The delays the node announced in "reconnecting in N ms" lines, in order. */
function delays(r: Rig): number[] {
  return r.lines.flatMap((l) => {
    const m = /reconnecting in (\d+) ms/.exec(l);
    return m ? [Number(m[1])] : [];
  });
}

/** The sm is still connected and its traffic crosses the (current) router link both ways. */
async function smStillWorks(r: Rig, conn = r.fr.last!): Promise<void> {
  assert.equal(r.sm.closed, false, 'the sm was disconnected');
  assert.equal(r.node.server.connectionCount, 1);
  const id = `up-${conn.n}`;
  r.sm.send(`<route xmlns='${C}' from='sm' to='c2s'><message xmlns='jabber:client' id='${id}'/></route>`);
  await r.fr.until(() => conn.inbox.some((x) => x.el.local === 'route' && x.raw.includes(id)), `route ${id} at the fake router`);
  const down = `down-${conn.n}`;
  conn.send(`<route xmlns='${C}' from='c2s' to='sm'><message xmlns='jabber:client' id='${down}'/></route>`);
  await r.sm.expect((e, raw) => e.local === 'route' && raw.includes(down), `route ${down} at the sm`);
}

function streamErrorOf(els: { el: XmlElement }[]): string | undefined {
  const e = els.find((x) => x.el.uri === NS_STREAM && x.el.local === 'error');
  const cond = e?.el.children.find((k): k is XmlElement => typeof k !== 'string' && k.local !== 'text');
  return cond?.local;
}

test('malformed XML from the router: the node closes the link, says why, reconnects with backoff and re-binds', { timeout: 20000 }, async () => {
  const r = await rig();
  const first = r.fr.conns[0]!;
  first.send(`<route xmlns='${C}' from='c2s' to='sm'><message xmlns='jabber:client'><a></b></message></route>`);
  await r.fr.until(() => first.closed, 'the node to close the first link');
  // told the router, and logged, why
  assert.equal(streamErrorOf(first.inbox), 'not-well-formed');
  await logged(r, 'router link closed (parse-error', 'not-well-formed', 'reconnecting in');

  // while the link is down: the sm's local traffic still flows, its traffic for the router is held
  assert.equal(r.node.router.ready, false);
  r.sm.send(`<route xmlns='${C}' from='sm' to='example.test'><message xmlns='jabber:client' id='local-while-down'/></route>`);
  await r.sm.expect((e, raw) => e.local === 'route' && raw.includes('local-while-down'), 'a local route while the router link is down');
  r.sm.send(`<route xmlns='${C}' from='sm' to='c2s'><message xmlns='jabber:client' id='held'/></route>`);

  // a second connection, after the announced backoff; the same names bound again, same flags
  await r.fr.until(() => r.fr.conns.length === 2 && r.fr.conns[1]!.binds.length === 2, 'the node to reconnect and re-bind', 10000);
  const second = r.fr.conns[1]!;
  const [d1] = delays(r);
  assert.ok(d1 !== undefined && d1 >= INIT_MS / 2 && d1 <= INIT_MS, `first backoff ${d1} ms`);
  assert.ok(second.openedAt - first.closedAt >= d1! - 50, `reconnected after ${second.openedAt - first.closedAt} ms, announced ${d1} ms`);
  assert.deepEqual(second.binds, first.binds);
  // the held route follows the binds on the new link
  await r.fr.until(() => second.inbox.some((x) => x.raw.includes("id='held'")), 'the held route on the new link');
  assert.deepEqual(second.inbox.slice(0, 3).map((x) => x.el.local), ['bind', 'bind', 'route']);
  assert.equal(r.node.router.connects, 2);
  await smStillWorks(r, second);
});

test('SASL failure from the router: logged, retried with growing backoff, then up and re-bound', { timeout: 20000 }, async () => {
  const r = await rig();
  // connections 2 and 3 refuse our credentials
  r.fr.policy.saslFail = (c) => c.n === 2 || c.n === 3;
  r.fr.conns[0]!.close();
  await r.fr.until(() => r.fr.conns.length === 4 && r.fr.conns[3]!.binds.length === 2, 'the node to get through on the 4th connection', 15000);
  const [c2, c3, c4] = [r.fr.conns[1]!, r.fr.conns[2]!, r.fr.conns[3]!];
  for (const c of [c2, c3]) {
    assert.equal(c.saslFailures, 1);
    assert.equal(c.authenticated, false);
    assert.deepEqual(c.binds, []);
    assert.ok(c.closed, `connection ${c.n} left open after a SASL failure`);
  }
  await logged(r, "router refused our credentials (user 'jabberd')");
  assert.equal(r.lines.filter((l) => l.includes('router refused our credentials')).length, 2);
  // exponential backoff (with jitter in [base/2, base]): init, 2*init, 4*init
  const d = delays(r);
  assert.equal(d.length, 3, d.join(', '));
  assert.ok(d[0]! >= INIT_MS / 2 && d[0]! <= INIT_MS, d.join(', '));
  assert.ok(d[1]! >= INIT_MS && d[1]! <= 2 * INIT_MS, d.join(', '));
  assert.ok(d[2]! >= 2 * INIT_MS && d[2]! <= 4 * INIT_MS, d.join(', '));
  assert.deepEqual(c4.binds, r.fr.conns[0]!.binds);
  assert.equal(r.node.router.connects, 2);
  await smStillWorks(r, c4);
  // after a good connection the backoff starts over
  c4.close();
  await r.fr.until(() => r.fr.conns.length === 5 && r.fr.conns[4]!.binds.length === 2, 'the next reconnect', 10000);
  const d5 = delays(r)[3]!;
  assert.ok(d5 >= INIT_MS / 2 && d5 <= INIT_MS, `backoff after a good connection: ${d5} ms`);
});

test("a bind refused with error='409' on re-bind: logged as a lost name; the sm stays, its other names work", { timeout: 20000 }, async () => {
  const r = await rig();
  // from the 2nd connection on, the domain is taken
  r.fr.policy.bindError = (c, name) => (c.n >= 2 && name === 'example.test' ? '409' : null);
  r.fr.conns[0]!.close();
  await r.fr.until(() => r.fr.conns.length === 2 && r.fr.conns[1]!.binds.length === 2, 'the re-binds on the 2nd connection', 10000);
  const second = r.fr.conns[1]!;
  assert.deepEqual(second.binds, [{ name: 'sm', multi: '', error: null }, { name: 'example.test', multi: 'to', error: '409' }]);
  await logged(r, "router refused bind of 'example.test': error 409");
  await logged(r, "lost name 'example.test' after the router came back (error 409)");
  // the sm is not told (jabberd2 has no way to take a bind back); it keeps its local bind
  assert.equal(r.sm.closed, false);
  assert.ok(r.node.switchboard.names().some((n) => n.name === 'example.test'));
  await smStillWorks(r, second);
  // the lost name is no longer wanted upstream: the next reconnect binds only 'sm'
  second.close();
  await r.fr.until(() => r.fr.conns.length === 3 && r.fr.conns[2]!.authenticated && r.fr.conns[2]!.binds.length >= 1, 'the 3rd connection', 10000);
  await smStillWorks(r, r.fr.conns[2]!);
  assert.deepEqual(r.fr.conns[2]!.binds, [{ name: 'sm', multi: '', error: null }]);
});
