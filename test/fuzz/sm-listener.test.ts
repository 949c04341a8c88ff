/**
 * Seeded fuzzing of the sm listener (ComponentServer + Switchboard + ClusterRouter). One
 * in-process ClusterNode (clustered domain example.test, one configured peer that is never
 * there) whose router side is a real jabberd2 router. Many connections, each one fuzz case:
 * - raw-first: a mutated stream header (or junk) as the very first bytes;
 * - pre-auth: a valid header, then mutated traffic (SASL elements, routes, binds) before auth;
 * - sasl: a real challenge answered with a structure-mutated DIGEST-MD5 response, 1..4 times;
 * - restart: valid SASL, then a mutated restart header;
 * - post-auth: logged in and bound, then 1..4 mutated elements of real sm traffic.
 * Every case ends with a probe (auth, bind or a route to itself) and is classified: answered,
 * closed with a stream error, closed silently, or stalled (then EOF must close it; a sample
 * waits for the node's own authentication timeout instead).
 *
 * Checked on every case: what the node sends is well-formed XML in the component namespace; no
 * internal-server-error; a stalled connection is not stuck in the framer's swallow-after-& state.
 * After every batch: no uncaught exception; the router link did not drop, is up and carries
 * traffic both ways (a route to a name nobody holds comes back as a bounce); the jabberd2 router
 * runs; a witness component bound to a name no case uses gets a route it sends itself back and
 * received nothing it should not have; a sink component that cases do address received only
 * parseable component-namespace XML (and can bind its name again); a fresh login works;
 * connections and names are back to their baseline; heap growth is bounded.
 * The node reaches the jabberd2 router through a recording TCP relay, so that a dropped router
 * link can be explained from the bytes.
 *
 * Env: FUZZ_SEED, FUZZ_CASES (default 2400), FUZZ_ONLY, FUZZ_VERBOSE, FUZZ_KNOWN,
 * FUZZ_REPORT_DIR (test/helpers/fuzz-harness.ts).
 */
import assert from 'node:assert/strict';
import { readFileSync } from 'node:fs';
import { join } from 'node:path';
import { after, before, test } from 'node:test';
import { Jabberd2, freePorts } from '../../src/local/jabberd2.ts';
import { nodeOptionsFor } from '../../src/local/node-options.ts';
import { ClusterNode } from '../../src/daemon.ts';
import { createLogger } from '../../src/log.ts';
import { CLIENT_STREAM_HEADER, saslAuth } from '../../src/protocol/component.ts';
import { digestClientResponse } from '../../src/protocol/sasl-digest-md5.ts';
import { NS_CLIENT, NS_COMPONENT as C, NS_SASL, NS_SESSION, NS_STREAM } from '../../src/protocol/ns.ts';
import { attr, text, type XmlElement } from '../../src/xml/node.ts';
import { FakeComponent, type Received } from '../helpers/fake-component.ts';
import { barrier, streamErrorCondition } from '../helpers/component-wire.ts';
import {
  Rng, XML_DECLS, base64ish, caseSeed, chunks, el, junk, mutateDigest, mutateTree, preview, samples, ser, serOpen,
  splitPoints, xmlCase, type GenContext, type MEl,
} from '../helpers/fuzz-gen.ts';
import {
  Findings, LogTap, MB, ProcessGuard, Tally, TcpTap, entitySwallow, caseIndexes, eventually, fuzzRun, heapUsedAfterGc, pool,
} from '../helpers/fuzz-harness.ts';

const run = fuzzRun('sm listener', 'test/fuzz/sm-listener.test.ts', 2400);
const findings = new Findings(run);
const tally = new Tally();
const tap = new LogTap(['internal error', 'router link closed', 'router sent a stream error', 'router link closed (parse-error']);

const USERS = { jabberd: 'secret', other: 'pw2' };
const MAX_STANZA = 64 * 1024;
const AUTH_TIMEOUT_SEC = 2;
const WITNESS = 'witness.test';
/** the sink's name; a new one when the old one cannot be bound again (see sm-names-leak) */
let SINK = 'sink.test';
let sinkGen = 0;
const CONCURRENCY = 40;
const BATCH = 500;
/** how long a probe may take before the case counts as stalled */
const PROBE_MS = 400;
/** pre-auth stalls left to the node's own authentication timeout (the rest get EOF) */
let timeoutSamples = 4;

let guard: ProcessGuard;
let relay: TcpTap | undefined;
let j: Jabberd2 | undefined;
let node: ClusterNode | undefined;
let port = 0;
let witness: FakeComponent;
let sink: FakeComponent;
let sinkTail = '';
let baselineNames: string[] = [];
let baselineConns = 2;
const recent: { i: number; text: string }[] = [];

const C2R = samples('C>R');
const SASL_SAMPLES = C2R.filter((s) => s.el.uri === NS_SASL);
const STREAM_OK = new Set([C, NS_STREAM, NS_SASL]);

before(async () => {
  guard = new ProcessGuard();
  j = await Jabberd2.create({});
  await j.start('router');
  const opts = nodeOptionsFor(j, 'n1', { maxStanzaBytes: MAX_STANZA, authTimeoutSec: AUTH_TIMEOUT_SEC });
  const [listen, peerPort, deadPort] = await freePorts(3);
  relay = await TcpTap.start(j.routerPort);
  opts.router.port = relay.port;
  opts.local.port = listen!;
  opts.local.maxConnections = 512;
  opts.local.users = new Map(Object.entries(USERS));
  opts.local.acl = { all: ['jabberd'], bind: [], 'default-route': [], log: [] };
  opts.domains = ['example.test'];
  opts.peers = {
    secret: 'fuzz-secret-0123456789abcdef',
    listen: { ip: '127.0.0.1', port: peerPort! },
    peers: [{ name: 'n2', host: '127.0.0.1', port: deadPort! }],
    retry: { initMs: 200, maxMs: 2000 },
    heartbeatMs: 1000,
    maxFrameBytes: 1 << 20,
  };
  node = new ClusterNode(opts, createLogger('debug', tap, 'n1'));
  port = await node.start();
  await node.routerUp();
  witness = await bound(WITNESS);
  await connectSink();
  baselineNames = names();
});

after(async () => {
  witness?.close();
  sink?.close();
  await node?.stop().catch(() => {});
  await relay?.stop();
  await j?.cleanup().catch(() => {});
  guard?.dispose();
});

/** Log in and bind `name`; the connection is closed again when that fails. */
async function bound(name: string): Promise<FakeComponent> {
  const c = await FakeComponent.open(port);
  try {
    await c.authenticate('jabberd', 'secret');
    c.send(`<bind xmlns='${C}' name='${name}'/>`);
    const r = await c.expect((e) => e.local === 'bind', `bind reply for ${name}`);
    if (attr(r.el, 'error') !== undefined) throw new Error(`bind of ${name} refused: ${r.raw}`);
    await barrier(c, name);
    c.inbox.length = 0;
    return c;
  } catch (e) {
    c.close();
    throw new Error(`${(e as Error).message}\nnames: ${JSON.stringify(node!.switchboard.names())}\nstatus: ${JSON.stringify({ ...node!.status(), names: undefined, cluster: undefined })}\npending upstream: ${JSON.stringify((node!.router as unknown as { pending: { kind: string; name: string }[] }).pending.map((p) => `${p.kind} ${p.name}`))}\nrouter link internals: ${routerInternals()}\nwire (current): ${relay!.conns.filter((x) => !x.closed).map((x) => `node→router …${x.up.slice(-1500)}\nrouter→node …${x.down.slice(-1500)}`).join('\n')}\nnode log:\n${tap.tail(40)}`);
  }
}

async function connectSink(): Promise<void> {
  try {
    sink = await bound(SINK);
  } catch (e) {
    findings.add('sm-rebind-refused', 'a component that left cannot bind its name again (409): a binder that is gone still holds it', null, `${SINK}: ${(e as Error).message}`);
    SINK = `sink${++sinkGen}.test`;
    sink = await bound(SINK);
    baselineNames = names();
  }
  sinkTail = '';
  sink.socket.on('data', (d: Buffer) => {
    sinkTail = (sinkTail + d.toString('utf8')).slice(-8192);
  });
}

/**
 * If the node's router link is stuck in the framer's swallow-after-& state, record it and drop
 * the link so that the node reconnects (otherwise it stays stuck until 64 KB more arrive).
 */
function kickIfSwallowing(i: number | null): boolean {
  const link = (node!.router as unknown as { link: { framer: unknown; socket: { destroy(): void } } | null }).link;
  const swallowed = entitySwallow(link?.framer);
  if (swallowed === null) return false;
  findings.add('router-link-amp-swallow',
    'the router link stopped processing input: after a bare & from the router (jabberd2 does not escape & in namespace URIs) the framer swallows everything (saxes reads an entity up to the next ;)', i,
    `swallowed: ${JSON.stringify(swallowed.slice(0, 400))}\ninternals: ${routerInternals()}\nwire (current): ${relay!.conns.filter((x) => !x.closed).map((x) => `router→node …${x.down.slice(-2500)}`).join('\n')}`);
  link!.socket.destroy();
  return true;
}

/** State of the node's router link (test-only introspection, for reports). */
function routerInternals(): string {
  const l = (node!.router as unknown as { link: { socket: import('node:net').Socket; closed: boolean; framer: unknown } | null }).link;
  if (!l) return 'no link';
  const f = l.framer as { stanzasIn: number; bytesIn: number; stack?: unknown[]; parts?: string[] };
  return JSON.stringify({
    state: (node!.router as unknown as { state: string }).state, closed: l.closed, paused: l.socket.isPaused(), bytesRead: l.socket.bytesRead,
    stanzasIn: f.stanzasIn, bytesIn: f.bytesIn, depth: f.stack?.length, unfinished: (f.parts ?? []).join('').slice(0, 300), swallowed: entitySwallow(l.framer)?.slice(0, 200) ?? null,
  });
}

function routerLog(): string {
  try {
    return readFileSync(join(j!.dir, 'router.log'), 'utf8').split('\n').slice(-25).join('\n');
  } catch (e) {
    return String(e);
  }
}

function names(): string[] {
  return node!.switchboard.names().map((n) => n.name).sort();
}

/** The case whose input contains `needle`, among the recent ones. */
function suspect(needle: string): string {
  const n = needle.slice(0, 60);
  const hit = recent.find((r) => r.text.includes(n));
  return hit ? `probably case ${hit.i}` : 'case unknown';
}

function remember(i: number, b: Uint8Array): void {
  recent.push({ i, text: Buffer.from(b).toString('utf8') });
  if (recent.length > 400) recent.shift();
}

// ---------------------------------------------------------------------------------------------
// one case

interface CaseState {
  i: number;
  rng: Rng;
  mode: string;
  ops: string[];
  sent: Buffer[];
  preAuth: boolean;
  t0: number;
}

async function write(c: FakeComponent, st: CaseState, b: Buffer): Promise<void> {
  st.sent.push(b);
  remember(st.i, b);
  for (const part of chunks(b, splitPoints(st.rng, b.length))) {
    if (c.closed) return;
    c.socket.write(part);
    if (st.rng.chance(0.3)) await new Promise((r) => setImmediate(r));
  }
}

/** true once cond() holds; false when the connection closed first or after ms. */
async function waitFor(c: FakeComponent, cond: () => boolean, ms = PROBE_MS): Promise<boolean> {
  try {
    await c.until(() => cond() || c.closed, 'probe', ms);
  } catch {
    return false;
  }
  return cond();
}

function count(c: FakeComponent, pred: (e: XmlElement) => boolean): number {
  return c.inbox.filter((x) => pred(x.el)).length;
}

const isSasl = (local: string) => (e: XmlElement): boolean => e.uri === NS_SASL && e.local === local;

/** A valid SASL round (giving up as soon as the connection closes); false when it failed. */
async function authenticate(c: FakeComponent, user: string, pass: string, header = true): Promise<boolean> {
  if (header) {
    c.send(CLIENT_STREAM_HEADER);
    if (!(await waitFor(c, () => c.inbox.some((x) => x.el.local === 'features'), 5000))) return false;
  }
  c.send(saslAuth('DIGEST-MD5'));
  if (!(await waitFor(c, () => c.inbox.some((x) => isSasl('challenge')(x.el)), 5000))) return false;
  const ch = c.inbox.find((x) => isSasl('challenge')(x.el))!;
  const r = digestClientResponse({ challenge: Buffer.from(text(ch.el), 'base64').toString(), user, pass, digestUri: 'jabberd-router/test' });
  c.send(`<response xmlns='${NS_SASL}'>${Buffer.from(r.response).toString('base64')}</response>`);
  if (!(await waitFor(c, () => c.inbox.some((x) => isSasl('success')(x.el)), 5000))) return false;
  return true;
}

function context(own: string): GenContext {
  return { own, names: [own, own, SINK, SINK, 'example.test', 'c2s', 'sm', 'nowhere.test', 'sm--n2', 'c2s--n2', 'other'] };
}

/** Built elements for post-auth cases, beside the real traffic. */
function extras(rng: Rng, ctx: GenContext): (() => MEl)[] {
  const own = ctx.own!;
  const name = (): string => rng.pick(ctx.names);
  return [
    () => el('route', { xmlns: C, from: own, to: name() }, [el('message', { xmlns: NS_CLIENT, to: `alice@${name()}`, id: 'm1' }, [el('body', {}, [{ text: 'hi' }])])]),
    () => el('route', { xmlns: C, type: 'broadcast', from: own }, [el('message', { xmlns: NS_CLIENT, id: 'b' })]),
    () => el('route', { xmlns: C, from: own, to: name(), error: '404' }, [el('message', { xmlns: NS_CLIENT })]),
    () => el('bind', { xmlns: C, name: name(), ...(rng.chance(0.5) ? { multi: 'to' } : {}) }),
    () => el('bind', { xmlns: C, name: name() }, [el(rng.pick(['default', 'log']), {})]),
    () => el('unbind', { xmlns: C, name: name() }),
    () => el('throttle', { xmlns: C }),
    () => el('route', { xmlns: C, from: own, to: 'c2s' }, [el('sc:session', {
      'xmlns:sc': NS_SESSION, action: rng.pick(['started', 'ended', 'replaced', 'created']), target: `alice@example.test/${rng.hex(4)}`,
      'sc:sm': rng.hex(40), 'sc:c2s': String(rng.int(100)), id: rng.hex(40),
    })]),
    () => el('route', { xmlns: C, from: 'c2s', to: own }, [el('presence', { xmlns: NS_CLIENT, 'xmlns:sc': NS_SESSION, 'sc:sm': rng.hex(40), 'sc:c2s': '1' }, [el('priority', {}, [{ text: String(rng.range(-200, 200)) }])])]),
  ];
}

async function smCase(i: number): Promise<void> {
  const rng = new Rng(caseSeed(run.seed, 'sm', i));
  const mode = rng.weighted([[2, 'raw-first'], [3, 'pre-auth'], [2, 'sasl'], [1, 'restart'], [8, 'post-auth']] as const);
  const st: CaseState = { i, rng, mode, ops: [], sent: [], preAuth: true, t0: Date.now() };
  let c: FakeComponent;
  try {
    c = await FakeComponent.open(port);
    c.socket.setNoDelay(true);
  } catch (e) {
    tally.add('refused');
    findings.add('sm-refused', 'connection refused by the sm listener', i, String(e));
    return;
  }
  let answered = false;
  try {
    answered = await drive(c, st);
  } catch (e) {
    st.ops.push(`driver: ${(e as Error).message}`);
  }
  await classify(c, st, answered);
}

/** Runs the case; resolves true when the final probe was answered. */
async function drive(c: FakeComponent, st: CaseState): Promise<boolean> {
  const { rng, i } = st;
  const own = rng.weighted([[6, `f${i}.test`], [2, `f${i}`], [1, 'example.test'], [1, 'other']] as const);
  const ctx = context(own);
  const auth = saslAuth('DIGEST-MD5');
  const probeAuth = async (): Promise<boolean> => {
    const before = count(c, (e) => e.uri === NS_SASL && (e.local === 'challenge' || e.local === 'failure'));
    await write(c, st, Buffer.from(auth));
    return waitFor(c, () => count(c, (e) => e.uri === NS_SASL && (e.local === 'challenge' || e.local === 'failure')) > before);
  };

  if (st.mode === 'raw-first') {
    let b: Buffer;
    if (rng.chance(0.15)) {
      b = junk(rng);
      st.ops.push('junk header');
    } else {
      const h = el('stream:stream', { 'xmlns:stream': NS_STREAM, version: '1.0' });
      if (rng.chance(0.3)) h.attrs.push([rng.pick(['xmlns', 'xmlns:c', 'xmlns:sc', 'to', 'from', 'id']), rng.pick([C, NS_CLIENT, 'jabber:component:accept', 'x.test', ''])]);
      const k = rng.range(0, 3);
      for (let n = 0; n < k; n++) st.ops.push(mutateTree(rng, h, ctx));
      b = Buffer.from(rng.pick(XML_DECLS) + serOpen(h, rng));
      if (rng.chance(0.2)) b = b.subarray(0, rng.int(b.length + 1));
    }
    await write(c, st, b);
    if (!(await waitFor(c, () => c.inbox.some((x) => x.el.local === 'features')))) return false;
    return probeAuth();
  }

  const [user, pass] = own === 'other' ? ['other', 'pw2'] : ['jabberd', 'secret'];
  if (st.mode === 'post-auth') return postAuth(c, st, ctx, user, pass);

  await write(c, st, Buffer.from(CLIENT_STREAM_HEADER));
  if (!(await waitFor(c, () => c.inbox.some((x) => x.el.local === 'features'), 5000))) {
    st.ops.push('no features for a valid header');
    return false;
  }

  if (st.mode === 'pre-auth') {
    const pool = rng.chance(0.4) ? SASL_SAMPLES : C2R;
    const x = xmlCase(rng, pool, ctx, [() => el('auth', { xmlns: NS_SASL, mechanism: rng.pick(['DIGEST-MD5', 'PLAIN', '', 'digest-md5']) }), () => el('abort', { xmlns: NS_SASL }), () => el('response', { xmlns: NS_SASL }, [{ text: rng.bytes(40).toString('base64') }])]);
    st.ops.push(...x.ops);
    await write(c, st, x.bytes);
    return probeAuth();
  }

  if (st.mode === 'sasl') {
    const rounds = rng.range(1, 4);
    for (let r = 0; r < rounds; r++) {
      const before = count(c, isSasl('challenge'));
      await write(c, st, Buffer.from(auth));
      if (!(await waitFor(c, () => count(c, isSasl('challenge')) > before))) return false;
      const ch = c.inbox.filter((x) => isSasl('challenge')(x.el)).pop()!;
      const [user, pass] = rng.pick([['jabberd', 'secret'], ['jabberd', 'wrong'], ['other', 'pw2'], ['nobody', 'x'], ['', ''], ['jabberd', '']] as const);
      let resp = digestClientResponse({ challenge: Buffer.from(text(ch.el), 'base64').toString(), user, pass, digestUri: rng.pick(['jabberd-router/test', 'x', '']) }).response;
      if (rng.chance(0.8)) {
        const [m, what] = mutateDigest(rng, resp);
        resp = m;
        st.ops.push(`response: ${what}`);
      }
      const [b64, how] = base64ish(rng, resp);
      st.ops.push(how);
      const re: MEl = el('response', { xmlns: NS_SASL }, [{ text: b64 }]);
      if (rng.chance(0.2)) st.ops.push(mutateTree(rng, re, ctx));
      const results = count(c, (e) => e.uri === NS_SASL && (e.local === 'success' || e.local === 'failure'));
      await write(c, st, Buffer.from(ser(re, rng)));
      if (!(await waitFor(c, () => count(c, (e) => e.uri === NS_SASL && (e.local === 'success' || e.local === 'failure')) > results))) return false;
      if (c.inbox.some((x) => isSasl('success')(x.el))) {
        st.preAuth = false;
        const opens = c.streamOpens;
        await write(c, st, Buffer.from(CLIENT_STREAM_HEADER));
        return waitFor(c, () => c.streamOpens > opens);
      }
    }
    return true;
  }

  // restart: a valid login, then a mutated restart header
  {
    c.inbox.length = 0;
    if (!(await authenticate(c, user, pass, false))) return false;
    st.preAuth = false;
    const h = el('stream:stream', { 'xmlns:stream': NS_STREAM, version: '1.0' });
    const nsTrick = rng.chance(0.25);
    if (nsTrick) {
      // declarations on the header that the component's routes then rely on
      const decl = rng.pick([[['xmlns:c', C]], [['xmlns', C]], [['xmlns:c', C], ['xmlns', C]]] as [string, string][][]);
      h.attrs.push(...decl);
      st.ops.push(`header declares ${decl.map(([a, v]) => `${a}='${v}'`).join(' ')}`);
    } else {
      const k = rng.range(1, 3);
      for (let n = 0; n < k; n++) st.ops.push(mutateTree(rng, h, ctx));
    }
    const opens = c.streamOpens;
    await write(c, st, Buffer.from(rng.pick(XML_DECLS) + serOpen(h, rng)));
    if (!(await waitFor(c, () => c.streamOpens > opens))) return false;
    const own = `p${i}.test`;
    if (!(await bindProbe(c, st, own))) return false;
    if (!nsTrick) return true;
    // a route to itself, and one to the sink, written as the header allows
    const prefixed = h.attrs.some(([a]) => a === 'xmlns:c');
    const tag = prefixed ? 'c:route' : 'route';
    const id = `fz-ns-${i}`;
    await write(c, st, Buffer.from(`<${tag} from='${own}' to='${own}'><message xmlns='${NS_CLIENT}' id='${id}'/></${tag}><${tag} from='${own}' to='${SINK}'><message xmlns='${NS_CLIENT}' id='${id}'/></${tag}>`));
    return waitFor(c, () => c.inbox.some((x) => x.raw.includes(id)) || c.errors.length > 0);
  }
}

async function postAuth(c: FakeComponent, st: CaseState, ctx: GenContext, user: string, pass: string): Promise<boolean> {
  const { rng, i } = st;
  const own = ctx.own!;
  if (!(await authenticate(c, user, pass))) {
    st.ops.push('valid login failed');
    return false;
  }
  const opens = c.streamOpens;
  c.send(CLIENT_STREAM_HEADER);
  if (!(await waitFor(c, () => c.streamOpens > opens, 5000))) {
    st.ops.push('no stream header after the restart');
    return false;
  }
  st.preAuth = false;
  const multi = own === 'example.test' || own === 'other';
  c.send(`<bind xmlns='${C}' name='${own}'${multi ? " multi='to'" : ''}/>`);
  if (!(await waitFor(c, () => c.inbox.some((x) => x.el.local === 'bind'), 2000))) {
    // a bind waits for the router's answer: is the router link stuck?
    kickIfSwallowing(i);
    st.ops.push('no reply to a valid bind');
    return false;
  }
  const x = xmlCase(rng, C2R, ctx, extras(rng, ctx));
  st.ops.push(...x.ops);
  await write(c, st, x.bytes);
  if (multi) return bindProbe(c, st, `p${i}.test`);
  // a route to itself: back through the node (or bounced, if the case unbound its name)
  const id = `fz-probe-${i}`;
  await write(c, st, Buffer.from(`<route xmlns='${C}' from='${own}' to='${own}'><message xmlns='${NS_CLIENT}' id='${id}'/></route>`));
  return waitFor(c, () => c.inbox.some((r) => r.el.local === 'route' && r.raw.includes(id)));
}

async function bindProbe(c: FakeComponent, st: CaseState, name: string): Promise<boolean> {
  const before = count(c, (e) => e.local === 'bind');
  await write(c, st, Buffer.from(`<bind xmlns='${C}' name='${name}'/>`));
  return waitFor(c, () => count(c, (e) => e.local === 'bind') > before, 1500);
}

/** The node's side of a client connection (test-only introspection). */
function nodeConnOf(c: FakeComponent): { link: { framer: unknown } } | undefined {
  const conns = (node!.server as unknown as { conns: Set<{ link: { framer: unknown; socket: { remotePort?: number } } }> }).conns;
  for (const x of conns) if (x.link.socket.remotePort === c.socket.localPort) return x;
  return undefined;
}

function describe(c: FakeComponent, st: CaseState): string {
  return `mode ${st.mode}; ops: ${st.ops.join(' | ') || '-'}\n` +
    `sent: ${st.sent.map((b) => preview(b, 400)).join(' ++ ')}\n` +
    `received: ${c.inbox.map((x) => x.raw).join(' ').slice(-1200)}\n` +
    `client parse errors: ${c.errors.join('; ') || '-'}`;
}

async function classify(c: FakeComponent, st: CaseState, answered: boolean): Promise<void> {
  const { i } = st;
  let outcome: string;
  if (c.closed) {
    const cond = streamErrorCondition(c.inbox);
    outcome = cond ? `stream-error:${cond}` : 'closed-silently';
  } else if (answered) {
    outcome = 'answered';
  } else if (st.preAuth && timeoutSamples > 0) {
    timeoutSamples--;
    const ok = await waitFor(c, () => c.closed, AUTH_TIMEOUT_SEC * 1000 + 2500);
    const cond = streamErrorCondition(c.inbox);
    outcome = ok ? 'stalled→auth-timeout' : 'hang';
    if (!ok) findings.add('sm-auth-timeout', 'pre-auth connection not closed by the authentication timeout', i, describe(c, st));
    else if (cond !== 'connection-timeout') outcome = cond ? `stream-error:${cond}` : 'closed-silently'; // it was only late
  } else {
    const swallowed = entitySwallow(nodeConnOf(c)?.link.framer);
    if (swallowed !== null) {
      findings.add('framer-amp-swallow', 'after a bare & the stream framer swallows all further input without an error (saxes reads an entity up to the next ;)', i,
        `swallowed so far: ${JSON.stringify(swallowed.slice(0, 300))}\n${describe(c, st)}`);
    }
    c.socket.end();
    const ok = await waitFor(c, () => c.closed, 3000);
    outcome = ok ? 'stalled→closed-on-eof' : 'hang';
    if (!ok) findings.add('sm-hang', 'connection neither answered nor closed, even after EOF', i, describe(c, st));
  }
  tally.add(outcome);
  if (run.verbose) console.log(`[fuzz] sm case ${i}: ${outcome} in ${Date.now() - st.t0} ms\n${describe(c, st)}${run.only !== null ? `\nnode log:\n${tap.tail(30)}` : ""}`);

  if (c.errors.some((e) => e.includes('unbound namespace prefix')) || c.inbox.some((x) => x.el.uri === '' && x.el.local === 'route')) {
    findings.add('raw-forward-ns-context', 'a route forwarded as raw text relies on a namespace declared on the sender\'s stream header: the receiver cannot parse it, or sees it outside the component namespace', i, describe(c, st));
  } else if (c.errors.some((e) => e.includes('got {http://etherx.jabber.org/streams}error'))) {
    findings.add('sm-error-before-header', 'stream error sent without a stream header on a restarted stream (after SASL success)', i, describe(c, st));
  } else if (c.errors.length) findings.add('sm-malformed-output', 'the node sent XML the component cannot parse', i, describe(c, st));
  if (outcome === 'stream-error:internal-server-error') findings.add('sm-internal-error', 'internal-server-error (a handler threw)', i, describe(c, st));
  if (outcome.startsWith('stream-error:') && !c.streamClosed && c.errors.length === 0) {
    findings.add('sm-no-footer', 'stream error without the stream footer', i, describe(c, st));
  }
  const foreign = c.inbox.filter((x) => !STREAM_OK.has(x.el.uri) && !(x.el.uri === '' && x.el.local === 'route'));
  if (foreign.length) {
    findings.add('sm-foreign-ns', 'element outside the component namespace sent to a component', i, `${foreign.map((x) => `{${x.el.uri}}${x.el.local}: ${x.raw.slice(0, 300)}`).join('\n')}\n${describe(c, st)}`);
  }
  c.close();
}

// ---------------------------------------------------------------------------------------------
// batch invariants

const seen = new Map<string, number>();
let freshSeq = 0;

function checkReceiver(who: string, c: FakeComponent, isWitness: boolean): void {
  if (c.errors.some((e) => e.includes('unbound namespace prefix')) || c.inbox.some((x) => x.el.uri === '' && x.el.local === 'route')) {
    findings.add('raw-forward-ns-context', 'a route forwarded as raw text relies on a namespace declared on the sender\'s stream header: the receiver cannot parse it, or sees it outside the component namespace', null,
      `${who}: ${c.errors.join('; ')}\n${c.inbox.filter((x) => x.el.uri === '').map((x) => x.raw.slice(0, 300)).join('\n')}`);
    c.errors.length = 0;
    c.inbox.splice(0, c.inbox.length, ...c.inbox.filter((x) => !(x.el.uri === '' && x.el.local === 'route')));
  }
  if (c.errors.length) {
    findings.add(`${who}-malformed`, `the ${who} received XML it cannot parse`, null, `errors: ${c.errors.join('; ')}\nlast bytes: ${preview(Buffer.from(sinkTail), 2000)}\n(${suspect(sinkTail.slice(sinkTail.lastIndexOf('<route') >= 0 ? sinkTail.lastIndexOf('<route') : 0))})`);
  }
  const bad: Received[] = [];
  for (const x of c.inbox.splice(0)) {
    if (!STREAM_OK.has(x.el.uri)) bad.push(x);
    else if (isWitness && x.el.local === 'route' && attr(x.el, 'type') !== 'broadcast') bad.push(x);
  }
  if (bad.length) {
    findings.add(`${who}-unexpected`, `the ${who} received ${isWitness ? 'a route nobody sent it, or ' : ''}an element outside the component namespace`, null, bad.map((x) => `${x.raw.slice(0, 400)} (${suspect(x.raw)})`).join('\n'));
  }
}

async function invariants(label: string): Promise<void> {
  assert.deepEqual(guard.errors, [], `uncaught exception in the node's process (${label})`);
  for (const [key, pattern, title] of [
    ['router-rejects-forwarded-xml', 'router sent a stream error', 'the jabberd2 router closed the node\'s link: it cannot parse what the node forwarded'],
    ['router-output-unparseable', 'router link closed (parse-error', 'the node closed its router link: it cannot parse what the jabberd2 router sent (jabberd2 re-serialized a forwarded route)'],
  ] as const) {
    const n = tap.count(pattern);
    if (n > (seen.get(pattern) ?? 0)) {
      findings.add(key, title, null, `${n} time(s) by ${label}; node log:\n${tap.example(pattern)}\njabberd2 router log:\n${routerLog()}\nwire:\n${relay!.closedTails()}`);
      seen.set(pattern, n);
    }
  }
  assert.ok(await eventually(() => node!.router.ready, 10000), `router link not up (${label})\n${tap.tail()}`);
  assert.ok(j!.isRunning('router'), 'the jabberd2 router died');
  // the witness: its own route comes back, nothing else arrived
  assert.equal(witness.closed, false, `the witness was disconnected (${label})\n${tap.tail()}`);
  await barrier(witness, WITNESS, 5000);
  checkReceiver('witness', witness, true);
  // the router link carries traffic: a route to a name nobody holds comes back as a bounce
  const rid = `fz-rt-${++freshSeq}`;
  witness.send(`<route xmlns='${C}' from='${WITNESS}' to='probe-nowhere.test'><message xmlns='${NS_CLIENT}' id='${rid}'/></route>`);
  if (!(await waitFor(witness, () => witness.inbox.some((x) => x.raw.includes(rid)), 1500))) {
    const link = (node!.router as unknown as { link: { framer: unknown; socket: { destroy(): void } } | null }).link;
    const swallowed = entitySwallow(link?.framer);
    const dflt = (node!.switchboard as unknown as { defaultRoute: { name: string; comp: { closed: boolean } } | null }).defaultRoute;
    const deadDefault = dflt !== null && dflt.comp.closed;
    findings.add(swallowed !== null ? 'router-link-amp-swallow' : deadDefault ? 'sm-dead-default-route' : 'router-link-stalled',
      swallowed !== null
        ? 'the router link stopped processing input: after a bare & from the router (jabberd2 does not escape & in namespace URIs) the framer swallows everything (saxes reads an entity up to the next ;)'
        : deadDefault ? `traffic to unknown names is black-holed: the default route ('${dflt!.name}') belongs to a component that is gone (a bind processed after its close)`
          : 'the router link is up but does not carry traffic', null,
      `${swallowed !== null ? `swallowed: ${JSON.stringify(swallowed.slice(0, 400))}\n` : ''}internals: ${routerInternals()}\npending upstream: ${JSON.stringify((node!.router as unknown as { pending: { kind: string; name: string }[] }).pending.map((p) => `${p.kind} ${p.name}`).slice(0, 30))}\nwire (current): ${relay!.conns.filter((x) => !x.closed).map((x) => `node→router …${x.up.slice(-2500)}\nrouter→node …${x.down.slice(-2500)}`).join('\n')}\njabberd2 router log:\n${routerLog()}\nnode log:\n${tap.tail(20)}`);
    // recover from a stalled link: drop it (the node reconnects and re-binds)
    if (!deadDefault) link?.socket.destroy();
    assert.ok(await eventually(() => node!.router.ready, 10000), `router link not back (${label})`);
  }
  witness.inbox.length = 0;
  const sinkBroken = sink.closed || sink.errors.length > 0;
  checkReceiver('sink', sink, false);
  if (sinkBroken) {
    sink.close();
    await eventually(() => !names().includes(SINK), 2000);
    await connectSink();
  }
  const fresh = await bound(`fresh-${++freshSeq}.test`);
  fresh.close();
  // connections and names back to the baseline (the witness and the sink)
  const connsOk = await eventually(() => node!.server.connectionCount === baselineConns, 2000);
  if (!connsOk) {
    findings.add('sm-conns-leak', 'connections left open on the sm listener after every case closed', null, `${node!.server.connectionCount} connections (expected ${baselineConns}) after ${label}`);
    baselineConns = node!.server.connectionCount;
  }
  const namesOk = await eventually(() => names().join() === baselineNames.join(), 1000);
  if (!namesOk) {
    findings.add('sm-names-leak', 'names left bound (with a binder that is gone) after every case closed', null, `names ${JSON.stringify(node!.switchboard.names())}; expected ${baselineNames.join(', ')}\nnode log:\n${tap.tail(60)}`);
    baselineNames = names();
  }
}

test(`sm listener fuzz: ${run.cases} cases`, { timeout: 600_000 }, async () => {
  const idx = caseIndexes(run);
  const batches: number[][] = [];
  for (let k = 0; k < idx.length; k += BATCH) batches.push(idx.slice(k, k + BATCH));
  let heap0 = 0;
  for (let b = 0; b < batches.length; b++) {
    await pool(batches[b]!, CONCURRENCY, 20000, smCase, (i) => {
      tally.add('hang');
      findings.add('sm-case-hang', 'case did not finish within 20 s', i, 'hard deadline of the test driver');
    });
    await invariants(`batch ${b + 1}/${batches.length}`);
    if (b === 0) heap0 = heapUsedAfterGc();
  }
  const heap1 = heapUsedAfterGc();
  if (heap1 - heap0 > 64 * MB) findings.add('sm-heap', 'heap grew by more than 64 MB', null, `${(heap0 / MB).toFixed(1)} MB after the first batch, ${(heap1 / MB).toFixed(1)} MB at the end`);
  if (tap.count('internal error') > 0) findings.add('sm-internal-error', 'internal error logged by the node', null, tap.example('internal error'));
  console.log(tally.figure('sm listener', run.seed, {
    errorLabel: 'closed with a stream error', errorPrefix: 'stream-error:', crashes: guard.errors.length, findings: findings.keys(), heap: [heap0, heap1],
  }));
  assert.deepEqual(guard.errors, [], 'uncaught exceptions in the node\'s process');
  assert.equal(findings.failing.length, 0, `findings:\n${findings.report()}`);
});
