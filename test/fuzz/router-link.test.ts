/**
 * Seeded fuzzing of the router link (RouterLink + Switchboard + ClusterRouter on the router
 * side). Several rigs run side by side, each an in-process ClusterNode (half of them clustered)
 * whose router is a scripted fake jabberd2 router (test/helpers/fuzz-router.ts) and whose sm
 * listener holds a witness component bound like a real sm ('sm', then 'example.test' with
 * multi='to'). Each rig takes its cases one after the other (there is one router link):
 * - post (most): on the authenticated link, 1..4 mutated elements of real router→component
 *   traffic (routes, bounces, advertisements, bind replies, features), then a probe route to
 *   'sm' that must reach the witness;
 * - handshake: the next connection's handshake has one stage mutated (stream header and
 *   features, challenge, success, restart header); the node must get through, or close and
 *   reconnect.
 * Outcomes: answered (probe delivered / link up), closed by the node with a stream error or
 * silently (then it must reconnect, re-bind and carry traffic within 5 s), or stalled (the
 * router then drops the connection and the node must reconnect).
 *
 * Checked on every case: the node's output to the router parses; the witness receives only
 * parseable component-namespace XML; no internal error is logged. After every batch: no uncaught
 * exception; each rig's link is up, with both names bound upstream; the witness's traffic
 * crosses the link both ways; connections and names are at their baseline; heap growth bounded.
 *
 * Env: FUZZ_SEED, FUZZ_CASES (default 3400), FUZZ_ONLY, FUZZ_VERBOSE, FUZZ_KNOWN.
 */
import assert from 'node:assert/strict';
import { after, before, test } from 'node:test';
import { freePorts } from '../../src/local/jabberd2.ts';
import { ClusterNode, type NodeOptions } from '../../src/daemon.ts';
import { createLogger } from '../../src/log.ts';
import { NS_CLIENT, NS_COMPONENT as C, NS_SASL, NS_STREAM } from '../../src/protocol/ns.ts';
import { FakeComponent } from '../helpers/fake-component.ts';
import { FuzzRouter, type FuzzRouterConn, type HandshakeStage, type Replacement } from '../helpers/fuzz-router.ts';
import {
  Rng, XML_DECLS, base64ish, caseSeed, chunks, el, fromXml, junk, mutateDigest, mutateTree, preview, samples, ser, serOpen,
  splitPoints, xmlCase, type GenContext, type MEl,
} from '../helpers/fuzz-gen.ts';
import { Findings, LogTap, MB, ProcessGuard, Tally, caseIndexes, entitySwallow, fuzzRun, heapUsedAfterGc } from '../helpers/fuzz-harness.ts';

const run = fuzzRun('router link', 'test/fuzz/router-link.test.ts', 3400);
const findings = new Findings(run);
const tally = new Tally();

const RIGS = 12;
const BATCH_PER_RIG = 100;
const PROBE_MS = 250;
const UP_MS = 5000;
const R2C = samples('R>C');
const FEATURES = R2C.filter((s) => s.el.local === 'features');
const OK_NS = new Set([C, NS_STREAM]);

interface Rig {
  k: number;
  fr: FuzzRouter;
  node: ClusterNode;
  tap: LogTap;
  port: number;
  witness: FakeComponent;
  current: number | null;
  upSeen: Set<string>;
  internalErrors: number;
}

let guard: ProcessGuard;
const rigs: Rig[] = [];

async function witnessFor(port: number): Promise<FakeComponent> {
  const w = await FakeComponent.login(port);
  w.socket.setNoDelay(true);
  w.send(`<bind xmlns='${C}' name='sm'/>`);
  await w.expect((e) => e.local === 'bind', 'bind sm');
  w.send(`<bind xmlns='${C}' name='example.test' multi='to'/>`);
  await w.expect((e) => e.local === 'bind', 'bind example.test');
  w.inbox.length = 0;
  return w;
}

async function startRig(k: number): Promise<Rig> {
  const fr = await FuzzRouter.start({ jabberd: 'secret' });
  const [listen, peerPort, dead] = await freePorts(3);
  const clustered = k % 2 === 0;
  const opts: NodeOptions = {
    id: `r${k}`,
    router: { ip: '127.0.0.1', port: fr.port, user: 'jabberd', pass: 'secret', retry: { initMs: 10, maxMs: 40 }, keepaliveSec: 0 },
    local: {
      ip: '127.0.0.1', port: listen!, maxConnections: 16, users: new Map([['jabberd', 'secret']]),
      acl: { all: ['jabberd'], bind: [], 'default-route': [], log: [] },
    },
    limits: { maxStanzaBytes: 64 * 1024, maxDepth: 64, queueBytes: 16 << 20, authTimeoutSec: 10 },
    ...(clustered ? {
      domains: ['example.test'],
      peers: {
        secret: 'fuzz-secret-0123456789abcdef', listen: { ip: '127.0.0.1', port: peerPort! },
        peers: [{ name: 'n2', host: '127.0.0.1', port: dead! }], retry: { initMs: 500, maxMs: 2000 }, heartbeatMs: 1000, maxFrameBytes: 1 << 20,
      },
    } : {}),
  };
  const tap = new LogTap(['internal error', 'reconnecting in', 'lost name']);
  const node = new ClusterNode(opts, createLogger('debug', tap, `r${k}`));
  const port = await node.start();
  await node.routerUp();
  const rig: Rig = { k, fr, node, tap, port, witness: await witnessFor(port), current: null, upSeen: new Set(), internalErrors: 0 };
  tap.onLine = (line) => {
    if (line.includes('internal error')) {
      rig.internalErrors++;
      findings.add('router-internal-error', 'internal error while handling router input (a handler threw)', rig.current, line);
    }
  };
  fr.onElement = (_c, e, raw) => {
    if (e.local === 'route' && raw.includes('fz-up-')) rig.upSeen.add(/fz-up-[\w-]+/.exec(raw)![0]);
  };
  return rig;
}

before(async () => {
  guard = new ProcessGuard();
  for (let k = 0; k < RIGS; k++) rigs.push(await startRig(k));
});

after(async () => {
  for (const r of rigs) {
    r.witness.close();
    await r.node.stop().catch(() => {});
    await r.fr.stop();
  }
  guard?.dispose();
});

/** Polls cond every 3 ms; true once it holds, false after ms. */
async function poll(cond: () => boolean, ms: number): Promise<boolean> {
  const until = Date.now() + ms;
  while (!cond()) {
    if (Date.now() >= until) return false;
    await new Promise((r) => setTimeout(r, 3));
  }
  return true;
}

function linkUp(r: Rig): FuzzRouterConn | undefined {
  return r.node.router.ready ? r.fr.upWith(2) : undefined;
}

// ---------------------------------------------------------------------------------------------
// generators

function context(): GenContext {
  return { own: 'c2s', names: ['sm', 'sm', 'example.test', 'example.test', 'c2s', 'sm--n2', 'c2s--n2', 'nowhere.test', 's2s'] };
}

function extras(rng: Rng, ctx: GenContext): (() => MEl)[] {
  const name = (): string => rng.pick(ctx.names);
  return [
    () => el('route', { xmlns: C, from: name(), to: name() }, [el('message', { xmlns: NS_CLIENT, to: `bob@example.test/${rng.hex(3)}`, from: `alice@${name()}/x` }, [el('body', {}, [{ text: 'hi' }])])]),
    () => el('route', { xmlns: C, type: rng.pick(['broadcast', 'log']), from: name() }, [el('message', { xmlns: NS_CLIENT })]),
    () => el('route', { xmlns: C, error: rng.pick(['400', '401', '404', '503']), from: name(), to: name() }, [el('message', { xmlns: NS_CLIENT, to: 'x@nowhere.test' })]),
    () => el('presence', { xmlns: C, from: name(), ...(rng.chance(0.4) ? { type: 'unavailable' } : {}) }),
    () => el(rng.pick(['bind', 'unbind']), { xmlns: C, ...(rng.chance(0.5) ? { error: rng.pick(['400', '403', '404', '409']) } : {}), ...(rng.chance(0.3) ? { multi: 'to' } : {}) }),
    () => el('throttle', { xmlns: C }),
    () => el('stream:error', { 'xmlns:stream': NS_STREAM }, [el(rng.pick(['conflict', 'host-gone', 'xml-not-well-formed', 'system-shutdown']), { xmlns: 'urn:ietf:params:xml:ns:xmpp-streams' })]),
    () => el('stream:features', { 'xmlns:stream': NS_STREAM }),
    () => el(rng.pick(['challenge', 'success', 'failure']), { xmlns: NS_SASL }, [{ text: rng.bytes(20).toString('base64') }]),
  ];
}

function decodeSasl(valid: string): string {
  const m = />([^<]*)</.exec(valid.slice(valid.indexOf('>')));
  return m ? Buffer.from(m[1]!, 'base64').toString('utf8') : '';
}

/** A mutated handshake stage (what the router sends instead of `valid`). */
function mutateStage(rng: Rng, stage: HandshakeStage, valid: string, ops: string[], nsTrick: boolean): Replacement {
  const ctx = context();
  const mutHeader = (): string => {
    const h = el('stream:stream', { 'xmlns:stream': NS_STREAM, version: '1.0', id: rng.hex(40) });
    const k = rng.range(0, 3);
    for (let n = 0; n < k; n++) ops.push(`header: ${mutateTree(rng, h, ctx)}`);
    return rng.pick(XML_DECLS) + serOpen(h, rng);
  };
  const features = (): string => {
    if (rng.chance(0.5)) {
      const f = fromXml(rng.pick(FEATURES).el);
      ops.push(`features: ${mutateTree(rng, f, ctx)}`);
      return ser(f, rng);
    }
    const mech = rng.pick([[], ['PLAIN'], ['DIGEST-MD5', 'DIGEST-MD5'], [' DIGEST-MD5 '], ['digest-md5'], ['SCRAM-SHA-1', 'DIGEST-MD5'], ['x'.repeat(5000)]]);
    ops.push(`mechanisms ${JSON.stringify(mech).slice(0, 60)}`);
    return `<stream:features xmlns:stream='${NS_STREAM}'><mechanisms xmlns='${NS_SASL}'>${mech.map((m) => `<mechanism>${m}</mechanism>`).join('')}</mechanisms></stream:features>`;
  };
  const headerEnd = valid.indexOf('>', valid.indexOf('<stream:stream')) + 1;
  switch (stage) {
    case 'header': {
      const v = rng.int(3);
      if (v === 0) return { send: mutHeader() + valid.slice(headerEnd) };
      if (v === 1) return { send: valid.slice(0, headerEnd) + features() };
      ops.push('junk');
      return { send: junk(rng) };
    }
    case 'restart': {
      if (nsTrick) {
        const decl = rng.pick([` xmlns:c='${C}'`, ` xmlns='${C}'`, ` xmlns:c='${C}' xmlns='${C}'`]);
        ops.push(`restart header declares${decl}`);
        return { send: valid.slice(0, headerEnd - 1) + decl + '>' + valid.slice(headerEnd), authenticated: true };
      }
      const v = rng.int(3);
      if (v === 0) return { send: mutHeader() + valid.slice(headerEnd), authenticated: true };
      if (v === 1) return { send: valid.slice(0, headerEnd) + features(), authenticated: true };
      ops.push('junk');
      return { send: junk(rng), authenticated: true };
    }
    case 'challenge': {
      switch (rng.int(5)) {
        case 0: case 1: {
          const [t, what] = mutateDigest(rng, decodeSasl(valid));
          const [b, how] = base64ish(rng, t);
          ops.push(`challenge: ${what}; ${how}`);
          const e: MEl = el('challenge', { xmlns: NS_SASL }, [{ text: b }]);
          if (rng.chance(0.2)) ops.push(mutateTree(rng, e, ctx));
          return { send: ser(e, rng) };
        }
        case 2:
          ops.push('rspauth instead of a challenge');
          return { send: `<challenge xmlns='${NS_SASL}'>${Buffer.from(`rspauth=${rng.hex(32)}`).toString('base64')}</challenge>` };
        case 3:
          ops.push('success before the response');
          return { send: `<success xmlns='${NS_SASL}'/>`, restart: true };
        default:
          ops.push('failure/junk');
          return { send: rng.chance(0.5) ? `<failure xmlns='${NS_SASL}'><temporary-auth-failure/></failure>` : junk(rng) };
      }
    }
    case 'success': {
      switch (rng.int(4)) {
        case 0: {
          const [b, how] = base64ish(rng, rng.pick([`rspauth=${rng.hex(32)}`, 'rspauth=', '', 'x'.repeat(3000), `rspauth=${rng.hex(32)},rspauth=${rng.hex(32)}`]));
          ops.push(`success with a wrong rspauth (${how})`);
          return { send: `<success xmlns='${NS_SASL}'>${b}</success>`, restart: true };
        }
        case 1:
          ops.push('another challenge (rspauth)');
          return { send: `<challenge xmlns='${NS_SASL}'>${Buffer.from(`rspauth=${rng.hex(32)}`).toString('base64')}</challenge>` };
        case 2: {
          const e: MEl = el('success', { xmlns: NS_SASL }, [{ text: Buffer.from(`rspauth=${rng.hex(32)}`).toString('base64') }]);
          ops.push(`success: ${mutateTree(rng, e, ctx)}`);
          return { send: ser(e, rng), restart: true };
        }
        default:
          ops.push('failure after a good response');
          return { send: `<failure xmlns='${NS_SASL}'><not-authorized/></failure>` };
      }
    }
  }
}

// ---------------------------------------------------------------------------------------------
// cases

interface CaseState {
  i: number;
  kind: string;
  ops: string[];
  sent: Buffer[];
  conn?: FuzzRouterConn;
}

function describe(r: Rig, st: CaseState): string {
  const c = st.conn;
  return `rig ${r.k}; ${st.kind}; ops: ${st.ops.join(' | ') || '-'}\n` +
    `sent: ${st.sent.map((b) => preview(b, 500)).join(' ++ ')}\n` +
    (c ? `connection #${c.n}: stages ${c.stages.join(', ')}; stream error ${c.streamError ?? '-'}; parse error ${c.parseError ?? '-'}\nnode→router tail: ${c.tail.slice(-600)}\n` : '') +
    `witness: ${r.witness.errors.join('; ') || 'no parse errors'}\nnode log:\n${r.tap.tail(12)}`;
}

/** Settles a case on its connection: probe delivered, closed by the node, or stalled. */
async function settle(r: Rig, st: CaseState, c: FuzzRouterConn, delivered: () => boolean): Promise<string> {
  await poll(() => delivered() || c.closed, PROBE_MS);
  if (delivered()) return 'answered';
  if (c.closed && !c.closedByUs) return c.streamError ? `stream-error:${c.streamError}` : 'closed-silently';
  const swallowed = entitySwallow((r.node.router as unknown as { link: { framer: unknown } | null }).link?.framer);
  if (swallowed !== null) {
    findings.add('router-link-amp-swallow', 'the router link stopped processing input: after a bare & the framer swallows everything that follows, without an error (saxes reads an entity up to the next ;)', st.i,
      `swallowed so far: ${JSON.stringify(swallowed.slice(0, 300))}\n${describe(r, st)}`);
  }
  c.close();
  return 'stalled→router-closed';
}

function checkWitness(r: Rig, st: CaseState | null): void {
  const w = r.witness;
  const i = st?.i ?? null;
  if (w.errors.length) {
    const unbound = w.errors.some((e) => e.includes('unbound namespace prefix'));
    findings.add(unbound ? 'raw-forward-ns-context' : 'router-witness-malformed',
      unbound ? 'a route forwarded as raw text uses a prefix declared on the sender\'s stream header: the receiver cannot parse it'
        : 'the sm (witness) received XML it cannot parse', i, st ? describe(r, st) : w.errors.join('; '));
  }
  const foreign = w.inbox.filter((x) => !OK_NS.has(x.el.uri));
  if (foreign.length) {
    const dflt = foreign.some((x) => x.el.uri === '' && x.el.local === 'route');
    findings.add(dflt ? 'raw-forward-ns-context' : 'router-witness-foreign-ns',
      dflt ? 'a route forwarded as raw text relies on a default namespace declared on the sender\'s stream header: the receiver sees it outside the component namespace'
        : 'the sm (witness) received an element outside the component namespace', i,
      `${foreign.map((x) => x.raw.slice(0, 300)).join('\n')}\n${st ? describe(r, st) : ''}`);
  }
  w.inbox.length = 0;
}

async function repairWitness(r: Rig): Promise<void> {
  if (!r.witness.closed && r.witness.errors.length === 0) return;
  r.witness.close();
  await poll(() => r.node.server.connectionCount === 0, 2000);
  // the node takes sm connections only while its router link is up
  if (!(await poll(() => r.node.router.ready, UP_MS))) return;
  r.witness = await witnessFor(r.port);
}

async function waitUp(r: Rig, st: CaseState | null): Promise<FuzzRouterConn> {
  if (await poll(() => !!linkUp(r), UP_MS)) return linkUp(r)!;
  findings.add('router-no-reconnect', `the router link did not come back (authenticated, both names bound) within ${UP_MS} ms`, st?.i ?? null,
    `${st ? describe(r, st) : ''}\n${rigState(r)}\nnode log:\n${r.tap.tail(30)}`);
  // kick: the router drops whatever it has, the node must reconnect from scratch
  for (const c of r.fr.conns) c.close();
  if (await poll(() => !!linkUp(r), 10000)) return linkUp(r)!;
  throw new Error(`rig ${r.k}: router link down for good\n${rigState(r)}\n${r.tap.tail(40)}`);
}

async function routerCase(r: Rig, i: number): Promise<void> {
  const rng = new Rng(caseSeed(run.seed, 'router', i));
  r.current = i;
  const conn = await waitUp(r, null);
  const kind = rng.weighted([[8, 'post'], [2, 'handshake']] as const);
  const st: CaseState = { i, kind, ops: [], sent: [], conn };
  const t0 = Date.now();
  let outcome: string;
  if (kind === 'post') {
    const ctx = context();
    const x = xmlCase(rng, R2C, ctx, extras(rng, ctx));
    st.ops.push(...x.ops);
    st.sent.push(x.bytes);
    for (const part of chunks(x.bytes, splitPoints(rng, x.bytes.length))) {
      conn.send(part);
      if (rng.chance(0.3)) await new Promise((res) => setImmediate(res));
    }
    const id = `fz-down-${i}`;
    conn.send(`<route xmlns='${C}' from='c2s' to='sm'><message xmlns='${NS_CLIENT}' id='${id}'/></route>`);
    outcome = await settle(r, st, conn, () => r.witness.inbox.some((x) => x.el.local === 'route' && x.raw.includes(id)));
  } else {
    const stage = rng.pick(['header', 'challenge', 'success', 'restart'] as const);
    const nsTrick = stage === 'restart' && rng.chance(0.3);
    const target = r.fr.total + 1;
    r.fr.script = (c, s, valid) => (c.n === target && s === stage ? mutateStage(rng, s, valid, st.ops, nsTrick) : null);
    st.ops.push(`stage ${stage}`);
    conn.close();
    if (!(await poll(() => r.fr.total >= target, UP_MS))) {
      r.fr.script = null;
      findings.add('router-no-reconnect', 'the node did not reconnect after the router closed the link', i, describe(r, st));
      outcome = 'hang';
    } else {
      const c = r.fr.conns.find((x) => x.n === target)!;
      st.conn = c;
      await poll(() => (c.authenticated && c.binds.length >= 2 && r.node.router.ready) || c.closed, PROBE_MS * 2);
      r.fr.script = null;
      if (c.authenticated && !c.closed && nsTrick) {
        // routes that only make sense with the declarations of this stream's header
        const id = `fz-ns-${i}`;
        const b = Buffer.from(`<c:route from='c2s' to='sm'><message xmlns='${NS_CLIENT}' id='${id}'/></c:route><route from='c2s' to='sm'><message xmlns='${NS_CLIENT}' id='${id}'/></route>`);
        st.sent.push(b);
        c.send(b);
        await poll(() => r.witness.inbox.some((x) => x.raw.includes(id)) || r.witness.errors.length > 0 || c.closed, PROBE_MS);
      }
      if (c.authenticated && !c.closed && r.node.router.ready) outcome = 'answered';
      else if (c.closed && !c.closedByUs) outcome = c.streamError ? `stream-error:${c.streamError}` : 'closed-silently';
      else {
        c.close();
        outcome = 'stalled→router-closed';
      }
    }
  }
  tally.add(outcome);
  const c = st.conn;
  if (c?.parseError && !(kind === 'handshake' && /restart|success|challenge/.test(st.ops.join()))) {
    findings.add('router-malformed-output', 'the node sent the router XML it cannot parse', i, describe(r, st));
  }
  checkWitness(r, st);
  if (run.verbose) console.log(`[fuzz] router case ${i}: ${outcome} in ${Date.now() - t0} ms\n${describe(r, st)}`);
  await repairWitness(r);
  if (outcome !== 'answered') await waitUp(r, st);
  r.current = null;
}

// ---------------------------------------------------------------------------------------------

let upSeq = 0;

/** What a report needs to know of a rig (status, witness, router connection; test-only introspection). */
function rigState(r: Rig): string {
  const c = r.fr.last;
  const w = r.witness;
  const st = r.node.status() as { flow?: unknown; router?: unknown; smListener?: unknown; stats?: unknown };
  return `status: ${JSON.stringify({ flow: st.flow, router: st.router, smListener: st.smListener, stats: st.stats })}\n` +
    `witness: closed=${w.closed} errors=${w.errors.join('; ') || '-'} paused-at-node=${JSON.stringify([...(r.node.server as unknown as { conns: Set<{ link: { socket: { isPaused(): boolean } } }> }).conns].map((x) => x.link.socket.isPaused()))}\n` +
    `router link: ${JSON.stringify({ state: (r.node.router as unknown as { state: string }).state, queued: (r.node.router as unknown as { queue: string[] }).queue.length, pending: (r.node.router as unknown as { pending: unknown[] }).pending.length })}\n` +
    `connections: ${r.fr.conns.slice(-4).map((x) => `#${x.n} auth=${x.authenticated} closed=${x.closed}${x.closedByUs ? ' (by us)' : ''} stages=${x.stages.join(',')}`).join(' | ')}\n` +
    `router connection #${c?.n}: authenticated=${c?.authenticated} closed=${c?.closed} binds=${c?.binds.map((b) => b.name).join('+')} parse error=${c?.parseError ?? '-'} tail=${c?.tail.slice(-400)}`;
}

async function invariants(r: Rig, label: string): Promise<void> {
  assert.deepEqual(guard.errors, [], `uncaught exception in the node's process (${label})`);
  await waitUp(r, null);
  await repairWitness(r);
  // the sm's traffic crosses the link both ways (a try may be lost to a connection that the last
  // case left dying: up to three, each on the connection that is up then)
  let upOk = false;
  let downOk = false;
  for (let attempt = 0; attempt < 3 && !(upOk && downOk); attempt++) {
    const cur = await waitUp(r, null);
    const up = `fz-up-${++upSeq}`;
    r.witness.send(`<route xmlns='${C}' from='sm' to='c2s'><message xmlns='${NS_CLIENT}' id='${up}'/></route>`);
    upOk = upOk || (await poll(() => r.upSeen.has(up), 2000));
    r.upSeen.delete(up);
    const down = `fz-down-check-${upSeq}`;
    cur.send(`<route xmlns='${C}' from='c2s' to='sm'><message xmlns='${NS_CLIENT}' id='${down}'/></route>`);
    downOk = downOk || (await poll(() => r.witness.inbox.some((x) => x.raw.includes(down)), 2000));
  }
  assert.ok(upOk, `rig ${r.k}: the witness's routes did not reach the router (${label})\n${rigState(r)}\n${r.tap.tail(30)}`);
  assert.ok(downOk, `rig ${r.k}: routes from the router did not reach the witness (${label})\n${rigState(r)}\n${r.tap.tail(30)}`);
  checkWitness(r, null);
  if (r.node.server.connectionCount !== 1) {
    findings.add('router-conns', 'connections on the sm listener other than the witness', null, `rig ${r.k}: ${r.node.server.connectionCount} connections after ${label}`);
  }
  const names = r.node.switchboard.names().map((n) => n.name).sort().join(',');
  if (names !== 'example.test,sm') findings.add('router-names', 'local names changed by router input', null, `rig ${r.k}: ${names} after ${label}`);
  const upstream = (await waitUp(r, null)).binds.map((b) => b.name);
  if (!upstream.includes('sm') || !upstream.includes('example.test')) {
    findings.add('router-lost-bind', 'a name the sm holds is no longer bound on the router after a reconnect (a stray bind reply was taken for the answer to a re-bind)', null,
      `rig ${r.k}: names bound on the current router connection: ${upstream.join(', ') || 'none'} (${label}); node log:\n${r.tap.example('lost name')}`);
  }
}

test(`router link fuzz: ${run.cases} cases`, { timeout: 600_000 }, async () => {
  const idx = caseIndexes(run);
  const perRig: number[][] = rigs.map(() => []);
  idx.forEach((i, n) => perRig[n % RIGS]!.push(i));
  const rounds = Math.ceil(Math.max(...perRig.map((p) => p.length)) / BATCH_PER_RIG);
  let heap0 = 0;
  for (let b = 0; b < rounds; b++) {
    await Promise.all(rigs.map(async (r, k) => {
      for (const i of perRig[k]!.slice(b * BATCH_PER_RIG, (b + 1) * BATCH_PER_RIG)) await routerCase(r, i);
      await invariants(r, `batch ${b + 1}/${rounds}`);
    }));
    if (b === 0) heap0 = heapUsedAfterGc();
  }
  const heap1 = heapUsedAfterGc();
  if (heap1 - heap0 > 64 * MB) findings.add('router-heap', 'heap grew by more than 64 MB', null, `${(heap0 / MB).toFixed(1)} → ${(heap1 / MB).toFixed(1)} MB`);
  const reconnects = rigs.reduce((n, r) => n + r.fr.total - 1, 0);
  console.log(tally.figure('router link', run.seed, {
    errorLabel: 'closed by the node with a stream error', errorPrefix: 'stream-error:', crashes: guard.errors.length, findings: findings.keys(), heap: [heap0, heap1],
    extra: `${reconnects} reconnects over ${RIGS} rigs`,
  }));
  assert.deepEqual(guard.errors, [], 'uncaught exceptions in the node\'s process');
  assert.equal(findings.failing.length, 0, `findings:\n${findings.report()}`);
});
