/**
 * Seeded fuzzing of the peer listener (PeerManager: frames, msgpackr codec, handshake, then
 * STANZA/SNAPSHOT/DELTA/… into ClusterRouter). Two in-process ClusterNodes, n1 and n2, each with
 * a scripted fake jabberd2 router (test/helpers/fuzz-router.ts), linked to each other; n1 also
 * lists twelve peers f1..f12 that are never there: the fuzzer authenticates as them (it knows the
 * cluster secret and uses PeerHandshake). Raw TCP connections to n1's peer port, each one case:
 * - pre-handshake: 1..4 frames (mutated HELLO/AUTH/…, any other message, MessagePack oddities,
 *   junk, wrong length prefixes);
 * - post-handshake: a valid handshake as a free fK, mostly a valid SNAPSHOT, then 1..5 fuzz
 *   frames (mutated messages of every type, wrong-origin snapshots and deltas, STANZA bytes with
 *   mutated route XML), then a PING that must come back as a PONG.
 * Outcomes: answered (PONG), closed by n1 with AUTH_FAIL/BYE or silently, or stalled (then EOF
 * must close it; a sample waits for n1's own handshake deadline instead).
 *
 * Checked on every case: n1's frames decode; once a post-handshake case's link is gone, n1 holds
 * nothing learnt from that peer (no table origin, no proxied names). After every batch: no
 * uncaught exception; the n1–n2 link stayed up (no flap) and carries a route each way between
 * witness components on both nodes; the witnesses received only parseable component-namespace
 * XML; n1's table and proxied names are back to what n2 alone explains; neither router link
 * dropped; heap growth bounded.
 *
 * Env: FUZZ_SEED, FUZZ_CASES (default 4600), FUZZ_ONLY, FUZZ_VERBOSE, FUZZ_KNOWN.
 */
import assert from 'node:assert/strict';
import { connect, type Socket } from 'node:net';
import { after, before, test } from 'node:test';
import { freePorts } from '../../src/local/jabberd2.ts';
import { ClusterNode, type NodeOptions } from '../../src/daemon.ts';
import { createLogger } from '../../src/log.ts';
import { NS_CLIENT, NS_COMPONENT as C, NS_STREAM } from '../../src/protocol/ns.ts';
import { FrameDecoder } from '../../src/wire/frame.ts';
import { decode, encode } from '../../src/wire/codec.ts';
import { PeerHandshake } from '../../src/wire/handshake.ts';
import { MsgType, kProtocolVersion, type PeerMessage } from '../../src/wire/messages.ts';
import { FakeComponent } from '../helpers/fake-component.ts';
import { FuzzRouter } from '../helpers/fuzz-router.ts';
import { Rng, caseSeed, chunks, samples, splitPoints, xmlCase } from '../helpers/fuzz-gen.ts';
import { fuzzFrame, messageArr, plainFrame, type WireContext } from '../helpers/fuzz-wire.ts';
import { Findings, LogTap, MB, ProcessGuard, Tally, caseIndexes, fuzzRun, heapUsedAfterGc, pool } from '../helpers/fuzz-harness.ts';

const run = fuzzRun('peer listener', 'test/fuzz/peer-listener.test.ts', 4600);
const findings = new Findings(run);
const tally = new Tally();

const SECRET = 'fuzz-cluster-secret-0123456789abcdef';
const IDENTITIES = Array.from({ length: 12 }, (_, k) => `f${k + 1}`);
const MAX_FRAME = 1 << 20;
const AUTH_TIMEOUT_SEC = 2;
const CONCURRENCY = 24;
const BATCH = 500;
const PROBE_MS = 400;
const OK_NS = new Set([C, NS_STREAM]);
const ROUTES = [...samples('C>R'), ...samples('R>C')].filter((s) => s.el.local === 'route');

interface Member {
  name: string;
  node: ClusterNode;
  fr: FuzzRouter;
  tap: LogTap;
  peerPort: number;
  witness: FakeComponent;
  witnessName: string;
}

let guard: ProcessGuard;
let n1: Member;
let n2: Member;
let baselineProxied = '';
let timeoutSamples = 4;
const free = [...IDENTITIES];
const waiting: ((id: string) => void)[] = [];
/** the case using each identity, for attributing log lines */
const owner = new Map<string, number>();

async function member(name: string, peerPort: number, peers: { name: string; port: number }[], witnessName: string): Promise<Member> {
  const fr = await FuzzRouter.start({ jabberd: 'secret' });
  const [listen] = await freePorts(1);
  const opts: NodeOptions = {
    id: name,
    router: { ip: '127.0.0.1', port: fr.port, user: 'jabberd', pass: 'secret', retry: { initMs: 50, maxMs: 500 }, keepaliveSec: 0 },
    local: {
      ip: '127.0.0.1', port: listen!, maxConnections: 16, users: new Map([['jabberd', 'secret']]),
      acl: { all: ['jabberd'], bind: [], 'default-route': [], log: [] },
    },
    limits: { maxStanzaBytes: 64 * 1024, maxDepth: 64, queueBytes: 16 << 20, authTimeoutSec: AUTH_TIMEOUT_SEC },
    domains: ['example.test'],
    peers: {
      secret: SECRET, listen: { ip: '127.0.0.1', port: peerPort },
      peers: peers.map((p) => ({ name: p.name, host: '127.0.0.1', port: p.port })),
      retry: { initMs: 100, maxMs: 1000 }, heartbeatMs: 500, maxFrameBytes: MAX_FRAME,
    },
  };
  const tap = new LogTap(['internal error', "peer 'n1' down", "peer 'n2' down", 'router link closed']);
  const node = new ClusterNode(opts, createLogger('debug', tap, name));
  await node.start();
  await node.routerUp();
  const witness = await FakeComponent.login(node.listenPort);
  witness.send(`<bind xmlns='${C}' name='${witnessName}'/>`);
  await witness.expect((e) => e.local === 'bind', 'witness bind');
  witness.inbox.length = 0;
  return { name, node, fr, tap, peerPort, witness, witnessName };
}

before(async () => {
  guard = new ProcessGuard();
  const [p1, p2, dead] = await freePorts(3);
  n1 = await member('n1', p1!, [{ name: 'n2', port: p2! }, ...IDENTITIES.map((name) => ({ name, port: dead! }))], 'wb.test');
  n2 = await member('n2', p2!, [{ name: 'n1', port: p1! }], 'wa.test');
  n1.tap.onLine = (line) => {
    if (!line.includes('internal error')) return;
    const m = /peer '(f\d+)'/.exec(line);
    findings.add('peer-internal-error', 'internal error on the peer listener', m ? (owner.get(m[1]!) ?? null) : null, line);
  };
  // meshed: each node has bound the other's witness name on its router
  const ok = await poll(() => n1.node.peers!.isUp('n2') && n1.node.cluster!.proxiedNames().includes('wa.test') && n2.node.cluster!.proxiedNames().includes('wb.test'), 10000);
  assert.ok(ok, `n1 and n2 did not mesh\n${n1.tap.tail(20)}\n${n2.tap.tail(20)}`);
  baselineProxied = n1.node.cluster!.proxiedNames().sort().join(',');
});

after(async () => {
  for (const m of [n1, n2]) {
    if (!m) continue;
    m.witness.close();
    await m.node.stop().catch(() => {});
    await m.fr.stop();
  }
  guard?.dispose();
});

async function poll(cond: () => boolean, ms: number, every = 5): Promise<boolean> {
  const until = Date.now() + ms;
  while (!cond()) {
    if (Date.now() >= until) return false;
    await new Promise((r) => setTimeout(r, every));
  }
  return true;
}

function acquire(): Promise<string> {
  const id = free.shift();
  if (id !== undefined) return Promise.resolve(id);
  return new Promise((r) => waiting.push(r));
}

function release(id: string): void {
  const w = waiting.shift();
  if (w) w(id);
  else free.push(id);
}

// ---------------------------------------------------------------------------------------------
// a raw peer connection

class RawPeer {
  readonly inbox: PeerMessage[] = [];
  readonly errors: string[] = [];
  closed = false;
  private readonly decoder: FrameDecoder;

  private constructor(readonly socket: Socket) {
    socket.setNoDelay(true);
    this.decoder = new FrameDecoder(64 << 20, (p) => {
      try {
        const m = decode(p);
        // keep what a check needs, not whole snapshots
        this.inbox.push(m.type === MsgType.SNAPSHOT ? { ...m, sessions: [], names: [] } : m);
      } catch (e) {
        this.errors.push(`undecodable frame from n1: ${(e as Error).message}`);
      }
    }, (msg) => this.errors.push(`bad frame from n1: ${msg}`));
    socket.on('data', (d: Buffer) => {
      try {
        this.decoder.push(d);
      } catch (e) {
        this.errors.push(String(e));
      }
    });
    socket.on('close', () => {
      this.closed = true;
    });
    socket.on('error', () => {});
  }

  static open(port: number): Promise<RawPeer> {
    return new Promise((resolve, reject) => {
      const s = connect({ host: '127.0.0.1', port });
      s.once('connect', () => resolve(new RawPeer(s)));
      s.once('error', reject);
    });
  }

  send(b: Uint8Array): void {
    if (!this.socket.destroyed) this.socket.write(b);
  }

  sendMsg(m: PeerMessage): void {
    this.send(encode(m));
  }

  has(pred: (m: PeerMessage) => boolean): boolean {
    return this.inbox.some(pred);
  }

  /** A valid handshake as `self`; resolves with n1's incarnation, or a failure reason. */
  async handshake(self: string, incarnation: number): Promise<string | null> {
    const hs = new PeerHandshake({ self, incarnation, secret: SECRET, expectPeer: 'n1', allowedPeers: new Set(['n1']), version: kProtocolVersion });
    for (const m of hs.start()) this.sendMsg(m);
    let seen = 0;
    const until = Date.now() + 5000;
    while (Date.now() < until) {
      while (seen < this.inbox.length) {
        const step = hs.receive(this.inbox[seen++]!);
        for (const m of step.send) this.sendMsg(m);
        if (step.fail) return step.fail;
        if (step.done) {
          this.inbox.splice(0, seen);
          return null;
        }
      }
      if (this.closed) return 'closed by n1 during the handshake';
      await new Promise((r) => setTimeout(r, 2));
    }
    return 'no handshake within 5 s';
  }
}

// ---------------------------------------------------------------------------------------------
// cases

interface CaseState {
  i: number;
  mode: string;
  ops: string[];
  id?: string;
}

function wireContext(rng: Rng, self: string): WireContext {
  const ctx: WireContext = {
    self,
    incarnation: Date.now() - rng.int(1e6),
    seq: 0,
    names: ['wb.test', 'wa.test', 'example.test', 'sm', 'c2s', `c2s--${self}`, 'sm--n1', 'fz.comp.test', `${self}.comp.test`, 'sm--n2', 'x'],
    stanza: () => Buffer.alloc(0),
  };
  const gctx = { own: rng.pick(['c2s', 'sm', `sm--${self}`, 'example.test', 'wa.test']), names: ['wb.test', 'wb.test', 'example.test', 'sm', 'c2s', 'sm--n1', `c2s--${self}`, 'c2s--n1', 'nowhere.test', 'wa.test'] };
  ctx.stanza = () => xmlCase(rng, ROUTES, gctx).bytes;
  return ctx;
}

function describe(p: RawPeer, st: CaseState): string {
  return `mode ${st.mode}${st.id ? ` as ${st.id}` : ''}; frames: ${st.ops.join(' || ') || '-'}\n` +
    `n1 sent: ${p.inbox.map((m) => `${m.type}${m.type === MsgType.AUTH_FAIL || m.type === MsgType.BYE ? `(${m.reason})` : ''}`).join(',')}; errors: ${p.errors.join('; ') || '-'}\n` +
    `n1 log:\n${n1.tap.tail(10)}`;
}

async function peerCase(i: number): Promise<void> {
  const rng = new Rng(caseSeed(run.seed, 'peer', i));
  const mode = rng.weighted([[4, 'pre'], [6, 'post']] as const);
  const st: CaseState = { i, mode, ops: [] };
  let id: string | undefined;
  if (mode === 'post') {
    id = await acquire();
    st.id = id;
    owner.set(id, i);
  }
  let p: RawPeer;
  try {
    p = await RawPeer.open(n1.peerPort);
  } catch (e) {
    tally.add('refused');
    findings.add('peer-refused', 'connection to the peer port refused', i, String(e));
    if (id) release(id);
    return;
  }
  try {
    await drive(p, st, rng);
  } catch (e) {
    st.ops.push(`driver: ${(e as Error).message}`);
    tally.add('driver-error');
    findings.add('peer-driver', 'the fuzz driver failed', i, `${(e as Error).stack}\n${describe(p, st)}`);
  } finally {
    p.socket.destroy();
    if (id) {
      // once n1 has seen the link go, nothing learnt from this peer may remain
      await poll(() => !n1.node.peers!.isUp(id!), 2000);
      const origin = n1.node.cluster!.table.knownOrigins().includes(id);
      const left = proxiedOwners().filter(([, o]) => o === id).map(([n]) => n);
      if (origin) {
        findings.add('peer-state-after-close', 'n1 keeps table state of a peer whose link is gone: frames after the one that closed the link were still processed', i,
          `up=${n1.node.peers!.isUp(id)} origins=${n1.node.cluster!.table.knownOrigins().join(',')} proxied=${n1.node.cluster!.proxiedNames().join(',')}\n${describe(p, st)}`);
      } else if (left.length) {
        findings.add('peer-proxied-left', 'names stay bound on the router for a peer that is gone (a name whose kind changed keeps its old upstream name)', i,
          `left bound for ${id}: ${left.join(', ')}\n${describe(p, st)}`);
      }
      // clean the slate for this identity before it is used again
      if (origin || left.length) await scrub(id, left);
      owner.delete(id);
      release(id);
    }
  }
}

function proxiedOwners(): [string, string][] {
  return [...(n1.node.cluster as unknown as { proxied: Map<string, string> }).proxied];
}

/** Bring n1's view of identity `id` back to nothing (after a finding): claim `left` again, then nothing. */
async function scrub(id: string, left: string[]): Promise<void> {
  const p = await RawPeer.open(n1.peerPort);
  const inc = Date.now();
  if ((await p.handshake(id, inc)) === null) {
    const names = left.map((n) => (n.endsWith(`--${id}`) ? { name: n.slice(0, -(id.length + 2)), kind: 'sm' as const } : { name: n, kind: 'component' as const }));
    p.sendMsg({ type: MsgType.SNAPSHOT, origin: id, incarnation: inc, seq: 0, sessions: [], names });
    p.sendMsg({ type: MsgType.SNAPSHOT, origin: id, incarnation: inc, seq: 0, sessions: [], names: [] });
    p.sendMsg({ type: MsgType.PING, t: 0.25 });
    await poll(() => p.has((m) => m.type === MsgType.PONG), 2000);
  }
  p.socket.destroy();
  await poll(() => !n1.node.peers!.isUp(id) && !n1.node.cluster!.table.knownOrigins().includes(id), 2000);
}

async function drive(p: RawPeer, st: CaseState, rng: Rng): Promise<void> {
  const { i } = st;
  let outcome: string;
  let answered = false;
  if (st.mode === 'pre') {
    const self = rng.pick([...IDENTITIES, 'n2', 'n1', 'nobody']);
    const ctx = wireContext(rng, self);
    const n = rng.range(1, 4);
    const bufs: Buffer[] = [];
    for (let k = 0; k < n; k++) {
      const type = rng.weighted([[5, MsgType.HELLO], [2, MsgType.AUTH], [1, MsgType.AUTH_OK], [3, undefined as unknown as number]]);
      const [f, what] = fuzzFrame(rng, ctx, MAX_FRAME, type);
      bufs.push(f);
      st.ops.push(what);
    }
    const all = Buffer.concat(bufs);
    for (const part of chunks(all, splitPoints(rng, all.length))) {
      p.send(part);
      if (rng.chance(0.3)) await new Promise((r) => setImmediate(r));
    }
  } else {
    const id = st.id!;
    const ctx = wireContext(rng, id);
    const fail = await p.handshake(id, ctx.incarnation);
    if (fail !== null) {
      findings.add('peer-handshake', 'a valid handshake as a configured peer failed', i, `${fail}\n${describe(p, st)}`);
      tally.add('handshake-failed');
      return;
    }
    const bufs: Buffer[] = [];
    if (rng.chance(0.8)) {
      const snap = messageArr(rng, ctx, MsgType.SNAPSHOT);
      snap[1] = id;
      snap[2] = ctx.incarnation;
      snap[3] = 0;
      bufs.push(plainFrame(snap));
      st.ops.push('valid SNAPSHOT');
    }
    const n = rng.weighted([[4, 1], [3, 2], [2, 3], [1, 5]]);
    for (let k = 0; k < n; k++) {
      const [f, what] = fuzzFrame(rng, ctx, MAX_FRAME);
      bufs.push(f);
      st.ops.push(what);
    }
    // most frames in one write: what follows a frame that closes the link must not count
    const all = Buffer.concat(bufs);
    for (const part of chunks(all, splitPoints(rng, all.length))) {
      p.send(part);
      if (rng.chance(0.3)) await new Promise((r) => setImmediate(r));
    }
    const t = i + 0.5;
    p.sendMsg({ type: MsgType.PING, t });
    answered = await poll(() => p.has((m) => m.type === MsgType.PONG && m.t === t) || p.closed, PROBE_MS) && p.has((m) => m.type === MsgType.PONG && m.t === t);
  }
  if (!answered && !p.closed) await poll(() => p.closed, st.mode === 'pre' ? PROBE_MS : 50);
  const told = p.inbox.find((m) => m.type === MsgType.AUTH_FAIL || m.type === MsgType.BYE);
  if (answered) outcome = 'answered';
  else if (p.closed) outcome = told ? `closed-with:${told.type === MsgType.AUTH_FAIL ? 'AUTH_FAIL' : 'BYE'}` : 'closed-silently';
  else if (st.mode === 'pre' && timeoutSamples > 0) {
    timeoutSamples--;
    const ok = await poll(() => p.closed, AUTH_TIMEOUT_SEC * 1000 + 2000, 20);
    outcome = ok ? 'stalled→handshake-deadline' : 'hang';
    if (!ok) findings.add('peer-no-deadline', 'a connection that never completes the handshake is not closed by the handshake deadline', i, describe(p, st));
  } else {
    p.socket.end();
    const ok = await poll(() => p.closed, 3000);
    outcome = ok ? 'stalled→closed-on-eof' : 'hang';
    if (!ok) findings.add('peer-hang', 'a peer connection neither answered nor closed, even after EOF', i, describe(p, st));
  }
  tally.add(outcome);
  if (p.errors.length) findings.add('peer-malformed-output', 'n1 sent frames that do not decode', i, describe(p, st));
  if (run.verbose) console.log(`[fuzz] peer case ${i}: ${outcome}\n${describe(p, st)}`);
}

// ---------------------------------------------------------------------------------------------
// batch invariants

let seq = 0;

function checkWitness(m: Member): void {
  const w = m.witness;
  if (w.errors.length) findings.add('peer-witness-malformed', `the component on ${m.name} received XML it cannot parse`, null, w.errors.join('; '));
  const foreign = w.inbox.filter((x) => !OK_NS.has(x.el.uri));
  if (foreign.length) {
    findings.add('peer-foreign-element', `a peer's STANZA that is not a component-protocol <route> was delivered to the component on ${m.name}`, null,
      foreign.map((x) => `{${x.el.uri}}${x.el.local}: ${x.raw.slice(0, 300)}`).join('\n'));
  }
  w.inbox.length = 0;
}

async function crossRoute(from: Member, to: Member, label: string): Promise<void> {
  const id = `fz-x-${++seq}`;
  from.witness.send(`<route xmlns='${C}' from='${from.witnessName}' to='${to.witnessName}'><message xmlns='${NS_CLIENT}' id='${id}'/></route>`);
  const ok = await poll(() => to.witness.inbox.some((x) => x.raw.includes(id)), 5000);
  assert.ok(ok, `${label}: a route from ${from.name}'s component did not reach ${to.name}'s over the peer link\n${n1.tap.tail(20)}\n${n2.tap.tail(10)}`);
}

async function invariants(label: string): Promise<void> {
  assert.deepEqual(guard.errors, [], `uncaught exception in the node's process (${label})`);
  const flaps = n1.tap.count("peer 'n2' down") + n2.tap.count("peer 'n1' down");
  if (flaps > 0) findings.add('peer-witness-flap', 'the n1–n2 link went down during peer fuzzing', null, `${flaps} time(s) by ${label}\n${n1.tap.example("peer 'n2' down")}\n${n2.tap.example("peer 'n1' down")}`);
  assert.ok(await poll(() => n1.node.peers!.isUp('n2') && n2.node.peers!.isUp('n1'), 5000), `n1–n2 link down (${label})\n${n1.tap.tail(20)}`);
  for (const m of [n1, n2]) {
    if (m.witness.closed) assert.fail(`the component on ${m.name} was disconnected (${label})\n${m.tap.tail(20)}`);
  }
  await crossRoute(n2, n1, label);
  await crossRoute(n1, n2, label);
  checkWitness(n1);
  checkWitness(n2);
  const up = n1.node.peers!.upNodes().sort().join(',');
  if (up !== 'n2') findings.add('peer-links-left', 'peer links still up after every case closed', null, `n1 up: ${up} (${label})`);
  const origins = n1.node.cluster!.table.knownOrigins().sort().join(',');
  if (origins !== 'n1,n2') findings.add('peer-origins-left', 'table origins left after every case closed', null, `n1 origins: ${origins} (${label})`);
  const proxied = n1.node.cluster!.proxiedNames().sort().join(',');
  if (proxied !== baselineProxied) {
    const owners = proxiedOwners().map(([k, v]) => `${k}→${v}`).join(', ');
    findings.add('peer-proxied-left', 'names bound on the router for peers that are gone', null, `n1 proxied: ${proxied}; expected ${baselineProxied} (${label}); owners: ${owners}; origins: ${origins}\n${n1.tap.tail(40)}`);
  }
  for (const m of [n1, n2]) {
    if (m.fr.total !== 1 || m.tap.count('router link closed') > 0) {
      findings.add('peer-router-drop', `peer input made ${m.name}'s router link drop`, null, `${m.fr.total} router connections; last parse error: ${m.fr.last?.parseError ?? '-'}\n${m.tap.example('router link closed')}`);
    }
  }
}

test(`peer listener fuzz: ${run.cases} cases`, { timeout: 600_000 }, async () => {
  const idx = caseIndexes(run);
  let heap0 = 0;
  const nodes0 = n1.node.cluster!.table.nodes.length;
  const rounds = Math.ceil(idx.length / BATCH);
  for (let b = 0; b < rounds; b++) {
    await pool(idx.slice(b * BATCH, (b + 1) * BATCH), CONCURRENCY, 20000, peerCase, (i) => {
      tally.add('hang');
      findings.add('peer-case-hang', 'case did not finish within 20 s', i, 'hard deadline of the test driver');
    });
    await invariants(`batch ${b + 1}/${rounds}`);
    if (b === 0) heap0 = heapUsedAfterGc();
  }
  const heap1 = heapUsedAfterGc();
  if (heap1 - heap0 > 64 * MB) findings.add('peer-heap', 'heap grew by more than 64 MB', null, `${(heap0 / MB).toFixed(1)} → ${(heap1 / MB).toFixed(1)} MB`);
  const nodes1 = n1.node.cluster!.table.nodes.length;
  console.log(tally.figure('peer listener', run.seed, {
    errorLabel: 'closed by n1 with AUTH_FAIL/BYE', errorPrefix: 'closed-with:', crashes: guard.errors.length, findings: findings.keys(), heap: [heap0, heap1],
    extra: `n1 table node names ${nodes0} → ${nodes1}`,
  }));
  assert.deepEqual(guard.errors, [], 'uncaught exceptions in the node\'s process');
  assert.equal(findings.failing.length, 0, `findings:\n${findings.report()}`);
});

