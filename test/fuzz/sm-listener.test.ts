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
 * internal-server-error. After every batch: no uncaught exception; the router link is up (and
 * did not drop); the jabberd2 router runs; a witness component bound to a name no case uses gets
 * a route it sends itself back, and received nothing it should not have; a sink component that
 * cases do address received only well-formed component-namespace XML; a fresh login works;
 * connections and names are back to their baseline; heap growth is bounded.
 *
 * Env: FUZZ_SEED, FUZZ_CASES (default 4000), FUZZ_ONLY, FUZZ_VERBOSE (test/helpers/fuzz-harness.ts).
 */
import assert from 'node:assert/strict';
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
import { barrier, loginBound, streamErrorCondition } from '../helpers/component-wire.ts';
import {
  Rng, XML_DECLS, base64ish, caseSeed, chunks, el, junk, mutateDigest, mutateTree, preview, samples, ser, serOpen,
  splitPoints, xmlCase, type GenContext, type MEl,
} from '../helpers/fuzz-gen.ts';
import {
  Findings, LogTap, MB, ProcessGuard, Tally, caseIndexes, eventually, fuzzRun, heapUsedAfterGc, pool,
} from '../helpers/fuzz-harness.ts';

const run = fuzzRun('sm listener', 'test/fuzz/sm-listener.test.ts', 4000);
const findings = new Findings(run);
const tally = new Tally();
const tap = new LogTap(['internal error', 'router link closed', 'router sent a stream error']);

const USERS = { jabberd: 'secret', other: 'pw2' };
const MAX_STANZA = 64 * 1024;
const AUTH_TIMEOUT_SEC = 2;
const WITNESS = 'witness.test';
const SINK = 'sink.test';
const CONCURRENCY = 24;
const BATCH = 500;
/** how long a probe may take before the case counts as stalled */
const PROBE_MS = 400;
/** pre-auth stalls left to the node's own authentication timeout (the rest get EOF) */
let timeoutSamples = 4;

let guard: ProcessGuard;
let j: Jabberd2 | undefined;
let node: ClusterNode | undefined;
let port = 0;
let witness: FakeComponent;
let sink: FakeComponent;
let sinkTail = '';
let baselineNames: string[] = [];
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
  witness = await loginBound(port, WITNESS);
  await connectSink();
  baselineNames = names();
});

after(async () => {
  witness?.close();
  sink?.close();
  await node?.stop().catch(() => {});
  await j?.cleanup().catch(() => {});
  guard?.dispose();
});

async function connectSink(): Promise<void> {
  sink = await loginBound(port, SINK);
  sinkTail = '';
  sink.socket.on('data', (d: Buffer) => {
    sinkTail = (sinkTail + d.toString('utf8')).slice(-8192);
  });
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

/** A valid SASL round; returns false when the connection misbehaved (counted by the caller). */
async function authenticate(c: FakeComponent, user: string, pass: string): Promise<boolean> {
  try {
    await c.authenticate(user, pass);
    return true;
  } catch {
    return false;
  }
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
  } catch (e) {
    tally.add('refused');
    findings.add('connection refused by the sm listener', i, String(e));
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
    c.send(auth);
    if (!(await waitFor(c, () => c.inbox.some((x) => isSasl('challenge')(x.el)), 5000))) return false;
    const ch = c.inbox.find((x) => isSasl('challenge')(x.el))!;
    const r = digestClientResponse({ challenge: Buffer.from(text(ch.el), 'base64').toString(), user, pass, digestUri: 'jabberd-router/test' });
    c.send(`<response xmlns='${NS_SASL}'>${Buffer.from(r.response).toString('base64')}</response>`);
    if (!(await waitFor(c, () => c.inbox.some((x) => isSasl('success')(x.el)), 5000))) return false;
    st.preAuth = false;
    const h = el('stream:stream', { 'xmlns:stream': NS_STREAM, version: '1.0' });
    const k = rng.range(1, 3);
    for (let n = 0; n < k; n++) st.ops.push(mutateTree(rng, h, ctx));
    const opens = c.streamOpens;
    await write(c, st, Buffer.from(rng.pick(XML_DECLS) + serOpen(h, rng)));
    if (!(await waitFor(c, () => c.streamOpens > opens))) return false;
    return bindProbe(c, st, `p${i}.test`);
  }
}

async function postAuth(c: FakeComponent, st: CaseState, ctx: GenContext, user: string, pass: string): Promise<boolean> {
  const { rng, i } = st;
  const own = ctx.own!;
  if (!(await authenticate(c, user, pass))) {
    st.ops.push('valid login failed');
    return false;
  }
  st.preAuth = false;
  const multi = own === 'example.test' || own === 'other';
  c.send(`<bind xmlns='${C}' name='${own}'${multi ? " multi='to'" : ''}/>`);
  if (!(await waitFor(c, () => c.inbox.some((x) => x.el.local === 'bind'), 5000))) {
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
    outcome = 'stalled→auth-timeout';
    if (!c.closed || cond !== 'connection-timeout') {
      findings.add('pre-auth connection not closed by the authentication timeout', i, `closed=${ok} condition=${cond}\n${describe(c, st)}`);
    }
  } else {
    c.socket.end();
    const ok = await waitFor(c, () => c.closed, 3000);
    outcome = ok ? 'stalled→closed-on-eof' : 'hang';
    if (!ok) findings.add('connection neither answered nor closed, even after EOF', i, describe(c, st));
  }
  tally.add(outcome);
  if (run.verbose) console.log(`[fuzz] sm case ${i}: ${outcome} in ${Date.now() - st.t0} ms\n${describe(c, st)}`);

  if (c.errors.length) findings.add('the node sent XML the component cannot parse', i, describe(c, st));
  if (outcome === 'stream-error:internal-server-error') findings.add('internal-server-error (a handler threw)', i, describe(c, st));
  if (outcome.startsWith('stream-error:') && !c.streamClosed && c.errors.length === 0) {
    findings.add('stream error without the stream footer', i, describe(c, st));
  }
  const foreign = c.inbox.filter((x) => !STREAM_OK.has(x.el.uri));
  if (foreign.length) {
    findings.add('element outside the component namespace sent to a component', i, `${foreign.map((x) => `{${x.el.uri}}${x.el.local}: ${x.raw.slice(0, 300)}`).join('\n')}\n${describe(c, st)}`);
  }
  c.close();
}

// ---------------------------------------------------------------------------------------------
// batch invariants

let routerDrops = 0;
let freshSeq = 0;

function checkReceiver(who: string, c: FakeComponent, isWitness: boolean): void {
  if (c.errors.length) {
    findings.add(`${who} received XML it cannot parse`, null, `errors: ${c.errors.join('; ')}\nlast bytes: ${preview(Buffer.from(sinkTail), 2000)}\n(${suspect(sinkTail.slice(sinkTail.lastIndexOf('<route') >= 0 ? sinkTail.lastIndexOf('<route') : 0))})`);
  }
  const bad: Received[] = [];
  for (const x of c.inbox.splice(0)) {
    if (!STREAM_OK.has(x.el.uri)) bad.push(x);
    else if (isWitness && x.el.local === 'route' && attr(x.el, 'type') !== 'broadcast') bad.push(x);
  }
  if (bad.length) {
    findings.add(`${who} received ${isWitness ? 'a route nobody sent it, or ' : ''}an element outside the component namespace`, null, bad.map((x) => `${x.raw.slice(0, 400)} (${suspect(x.raw)})`).join('\n'));
  }
}

async function invariants(label: string): Promise<void> {
  assert.deepEqual(guard.errors, [], `uncaught exception in the node's process (${label})`);
  const drops = tap.count('router link closed');
  if (drops > routerDrops) {
    findings.add('the jabberd2 router dropped the node\'s link during sm-listener fuzzing', null, `${drops - routerDrops} drop(s) before ${label}; node log:\n${tap.tail(30)}`);
    routerDrops = drops;
  }
  assert.ok(await eventually(() => node!.router.ready, 10000), `router link not up (${label})\n${tap.tail()}`);
  assert.ok(j!.isRunning('router'), 'the jabberd2 router died');
  // the witness: its own route comes back, nothing else arrived
  assert.equal(witness.closed, false, `the witness was disconnected (${label})\n${tap.tail()}`);
  await barrier(witness, WITNESS, 5000);
  checkReceiver('the witness', witness, true);
  if (sink.closed || sink.errors.length) {
    checkReceiver('the sink', sink, false);
    sink.close();
    await connectSink();
  } else {
    checkReceiver('the sink', sink, false);
  }
  const fresh = await loginBound(port, `fresh-${++freshSeq}.test`);
  fresh.close();
  // connections and names back to the baseline (the witness and the sink)
  const connsOk = await eventually(() => node!.server.connectionCount === 2, 5000);
  if (!connsOk) findings.add('connections left open on the sm listener after every case closed', null, `${node!.server.connectionCount} connections (expected 2) after ${label}`);
  const namesOk = await eventually(() => names().join() === baselineNames.join(), 5000);
  if (!namesOk) findings.add('names left bound after every case closed', null, `names ${names().join(', ')}; expected ${baselineNames.join(', ')}`);
}

test(`sm listener fuzz: ${run.cases} cases`, { timeout: 600_000 }, async () => {
  const idx = caseIndexes(run);
  const batches: number[][] = [];
  for (let k = 0; k < idx.length; k += BATCH) batches.push(idx.slice(k, k + BATCH));
  let heap0 = 0;
  for (let b = 0; b < batches.length; b++) {
    await pool(batches[b]!, CONCURRENCY, 20000, smCase, (i) => {
      tally.add('hang');
      findings.add('case did not finish within 20 s', i, 'hard deadline of the test driver');
    });
    await invariants(`batch ${b + 1}/${batches.length}`);
    if (b === 0) heap0 = heapUsedAfterGc();
  }
  const heap1 = heapUsedAfterGc();
  const secs = ((Date.now() - tally.t0) / 1000).toFixed(1);
  console.log(`[fuzz] sm listener: ${tally.cases} cases in ${secs} s (seed ${run.seed}): ` +
    `answered ${tally.sum('answered')}, closed with a stream error ${tally.sum('stream-error:')}${tally.detail('stream-error:')}, ` +
    `dropped silently ${tally.sum('closed-silently') + tally.sum('refused')}, stalled ${tally.sum('stalled')}${tally.detail('stalled')}, ` +
    `hangs ${tally.sum('hang')}, crashes ${guard.errors.length}; heap ${(heap0 / MB).toFixed(1)} → ${(heap1 / MB).toFixed(1)} MB; node log lines ${tap.total}`);
  if (heap1 - heap0 > 64 * MB) findings.add('heap grew by more than 64 MB', null, `${(heap0 / MB).toFixed(1)} MB after the first batch, ${(heap1 / MB).toFixed(1)} MB at the end`);
  assert.equal(tap.count('internal error'), 0, `internal errors in the node log:\n${tap.tail()}`);
  assert.equal(findings.size, 0, `findings:\n${findings.report()}`);
});
