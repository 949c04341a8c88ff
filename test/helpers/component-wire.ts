/**
 * Helpers for wire-level tests of the component protocol against a REAL jabberd2 router and a
 * ClusterNode running in this process, with FakeComponents as the components:
 * - routerWithNode(): a jabberd2 router (only) plus a node whose router side is that router;
 * - canon(): an element in a canonical text form (attribute order, `<x/>` vs `<x></x>`, prefixes
 *   and namespace declarations do not matter; namespace URIs do), to compare what the node says
 *   with what jabberd2's router says;
 * - barrier(): a route a component sends itself; when it is back, everything the peer had to say
 *   before it has arrived, so "nothing else came" can be asserted without sleeping.
 */
import { Jabberd2, freePorts, type Jabberd2Options } from '../../src/local/jabberd2.ts';
import { nodeOptionsFor } from '../../src/local/node-options.ts';
import { ClusterNode, type NodeOptions } from '../../src/daemon.ts';
import { createLogger, type Logger } from '../../src/log.ts';
import { NS_COMPONENT, NS_SASL } from '../../src/protocol/ns.ts';
import { CLIENT_STREAM_HEADER, saslAuth, saslElement } from '../../src/protocol/component.ts';
import { digestClientResponse } from '../../src/protocol/sasl-digest-md5.ts';
import { attr, text, type XmlElement } from '../../src/xml/node.ts';
import { FakeComponent, type Received } from './fake-component.ts';
import { testWorkers } from './node.ts';

export { NS_COMPONENT };

export interface RouterWithNode {
  j: Jabberd2;
  node: ClusterNode;
  /** the node's sm listener */
  port: number;
  /** the node's log lines (debug level) */
  lines: string[];
  log: Logger;
  stop(): Promise<void>;
}

/**
 * A jabberd2 router (nothing else) and a ClusterNode on it. `users` are the node's sm-listener
 * credentials (default: those of the router user); ACL 'all' = aclAll (default: the first user).
 */
export async function routerWithNode(o: {
  jopts?: Jabberd2Options;
  users?: Record<string, string>;
  aclAll?: string[];
  limits?: Partial<NodeOptions['limits']>;
  tweak?: (opts: NodeOptions) => void;
} = {}): Promise<RouterWithNode> {
  const j = await Jabberd2.create(o.jopts ?? {});
  const lines: string[] = [];
  const log = createLogger('debug', { write: (l) => lines.push(l) }, 'node');
  let node: ClusterNode | undefined;
  const stop = async (): Promise<void> => {
    await node?.stop().catch(() => {});
    await j.cleanup();
  };
  try {
    await j.start('router');
    const opts = nodeOptionsFor(j, 'node1', o.limits ?? {});
    const [port] = await freePorts(1);
    opts.local.port = port!;
    const users = o.users ?? { [j.routerUser]: j.routerPass };
    opts.local.users = new Map(Object.entries(users));
    opts.local.acl = { all: o.aclAll ?? [Object.keys(users)[0]!], bind: [], 'default-route': [], log: [] };
    opts.workers = testWorkers();
    o.tweak?.(opts);
    node = new ClusterNode(opts, log);
    await node.start();
    await node.routerUp();
    return { j, node, port: port!, lines, log, stop };
  } catch (err) {
    await stop();
    throw err;
  }
}

/** The node's log, for assertion messages. */
export function tailOf(lines: string[], n = 30): string {
  return lines.slice(-n).join('\n');
}

function canonNode(x: XmlElement | string): string {
  if (typeof x === 'string') return x.trim() === '' ? '' : x.replace(/[&<>]/g, (c) => (c === '&' ? '&amp;' : c === '<' ? '&lt;' : '&gt;'));
  const attrs = Object.keys(x.attrs)
    .filter((k) => k !== 'xmlns' && !k.startsWith('xmlns:'))
    .sort()
    .map((k) => ` ${k.includes(':') ? `{${x.scope[k.slice(0, k.indexOf(':'))] ?? '?'}}${k.slice(k.indexOf(':') + 1)}` : k}='${x.attrs[k]}'`)
    .join('');
  const kids = x.children.map(canonNode).join('');
  return `<{${x.uri}}${x.local}${attrs}>${kids}</>`;
}

/** Canonical text of an element (see the module comment). */
export function canon(el: XmlElement): string {
  return canonNode(el);
}

/** A router advertisement (`<presence/>` in the component namespace)? */
export function isAd(r: Received): boolean {
  return r.el.uri === NS_COMPONENT && r.el.local === 'presence';
}

/**
 * One SASL DIGEST-MD5 round on a stream whose header and features were exchanged already.
 * Returns the server's final element (success or failure); on success the stream is restarted
 * and the post-auth header awaited.
 */
export async function saslRound(c: FakeComponent, user: string, pass: string): Promise<Received> {
  c.send(saslAuth('DIGEST-MD5'));
  const ch = await c.expect((e) => e.uri === NS_SASL && (e.local === 'challenge' || e.local === 'failure'), 'SASL challenge');
  if (ch.el.local === 'failure') return ch;
  const r = digestClientResponse({ challenge: Buffer.from(text(ch.el), 'base64').toString(), user, pass, digestUri: 'jabberd-router/test' });
  c.send(saslElement('response', Buffer.from(r.response).toString('base64')));
  const res = await c.expect((e) => e.uri === NS_SASL && (e.local === 'success' || e.local === 'failure'), 'SASL result');
  if (res.el.local === 'success') {
    const opens = c.streamOpens;
    c.send(CLIENT_STREAM_HEADER);
    await c.until(() => c.streamOpens > opens, 'post-auth stream header');
  }
  return res;
}

/** Open a connection and exchange the stream header and features (no authentication). */
export async function openStream(port: number): Promise<FakeComponent> {
  const c = await FakeComponent.open(port);
  c.send(CLIENT_STREAM_HEADER);
  await c.expect((e) => e.local === 'features', 'stream features');
  return c;
}

/** Log in and bind `own` (expecting success); drop everything received so far. */
export async function loginBound(port: number, own: string, user = 'jabberd', pass = 'secret'): Promise<FakeComponent> {
  const c = await FakeComponent.login(port, user, pass);
  c.send(`<bind xmlns='${NS_COMPONENT}' name='${own}'/>`);
  const r = await c.expect((e) => e.local === 'bind', `bind reply for ${own}`);
  if (attr(r.el, 'error') !== undefined) throw new Error(`bind of ${own} refused: ${r.raw}`);
  await barrier(c, own);
  c.inbox.length = 0;
  return c;
}

let barrierSeq = 0;

/**
 * Sends a route from `own` to `own` and waits until it is back. Returns (and removes from the
 * inbox) everything received before it, the barrier itself excluded.
 */
export async function barrier(c: FakeComponent, own: string, timeoutMs = 5000): Promise<Received[]> {
  const id = `barrier-${++barrierSeq}`;
  c.send(`<route xmlns='${NS_COMPONENT}' from='${own}' to='${own}'><message xmlns='jabber:client' id='${id}'/></route>`);
  await c.until(() => c.inbox.some((x) => isBarrier(x, id)), `barrier route ${id} back to ${own}`, timeoutMs);
  const i = c.inbox.findIndex((x) => isBarrier(x, id));
  const before = c.inbox.splice(0, i + 1);
  before.pop();
  return before;
}

function isBarrier(x: Received, id: string): boolean {
  if (x.el.local !== 'route') return false;
  const inner = x.el.children.find((k): k is XmlElement => typeof k !== 'string');
  return inner !== undefined && attr(inner, 'id') === id;
}

/** Element name of the stream error condition in a <stream:error/>, if any. */
export function streamErrorCondition(inbox: readonly Received[]): string | undefined {
  const err = inbox.find((x) => x.el.local === 'error' && x.el.uri === 'http://etherx.jabber.org/streams');
  if (!err) return undefined;
  const cond = err.el.children.find((k): k is XmlElement => typeof k !== 'string' && k.local !== 'text');
  return cond?.local;
}


/**
 * The node is unharmed: its router link is up, `good` (bound to `goodName`) still gets a route
 * it sends itself back through the node, with no stray route before it, and a new component can
 * log in and bind.
 */
export async function assertNodeUnharmed(w: RouterWithNode, good: FakeComponent, goodName: string, track: (c: FakeComponent) => void = () => {}): Promise<void> {
  if (!w.node.router.ready) throw new Error(`the node's router link is down:\n${tailOf(w.lines)}`);
  if (good.closed) throw new Error(`the well-behaved component was disconnected:\n${tailOf(w.lines)}`);
  const before = await barrier(good, goodName);
  const stray = before.filter((x) => x.el.local === 'route');
  if (stray.length > 0) throw new Error(`stray routes reached ${goodName}: ${stray.map((x) => x.raw).join(' | ')}`);
  const fresh = await loginBound(w.port, `fresh-${++freshSeq}.test`);
  track(fresh);
  fresh.close();
  if (!w.j.isRunning('router')) throw new Error('the jabberd2 router died');
}
let freshSeq = 0;
