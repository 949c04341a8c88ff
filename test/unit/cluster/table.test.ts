/**
 * ClusterTable (src/cluster/table.ts): remote sessions live packed in an arena, own sessions as
 * objects. Checked against a model of the table's semantics written with plain Maps (the
 * implementation before the packed store), under seeded random operations with awkward values
 * (non-ASCII JIDs, JIDs without a local part or a resource, ids that pack and ids that do not,
 * extreme times and priorities), plus the store's own mechanics: growth, compaction, intern caps,
 * a full shared index, memory per session. A remote session keeps its sm and c2sId only when its
 * client is on this node's c2s (c2sNode === self); otherwise they read as '' (`seen`).
 */
import assert from 'node:assert/strict';
import { test } from 'node:test';
import { ClusterTable, bareJid, type NameEntry, type Op, type SessionEntry, type TableEvents } from '../../../src/cluster/table.ts';
import { prng } from '../../helpers/split.ts';

/** Seed for randomized tests: JC_TEST_SEED to replay, else a new one per run (printed). */
function testSeed(): number {
  const env = process.env['JC_TEST_SEED'];
  return env !== undefined ? Number(env) >>> 0 : (Math.random() * 2 ** 32) >>> 0;
}

type Ev = string;

/**
 * A session as a table on node `self` returns it when it came from another node: sm and c2sId
 * are kept only when the client is on self's c2s ("a node keeps what it can act on").
 */
const seen = (self: string, s: SessionEntry): SessionEntry => (s.c2sNode === self ? s : { ...s, sm: '', c2sId: '' });

function recorder(out: Ev[]): TableEvents {
  return {
    onRemoteName: (o, n, present) => out.push(`name ${o} ${n.name}/${n.kind} ${present}`),
    onForeignEntry: (o, s) => out.push(`foreign ${o} ${s.jid}@${s.home}`),
    onIndexFull: (bare) => out.push(`full ${bare}`),
  };
}

/** The table's semantics with Maps: what ClusterTable must keep answering. */
class Model {
  readonly origins = new Map<string, { incarnation: number; seq: number; sessions: Map<string, SessionEntry>; names: Map<string, NameEntry> }>();
  constructor(readonly self: string, incarnation: number, readonly ev: TableEvents) {
    this.origins.set(self, { incarnation, seq: 0, sessions: new Map(), names: new Map() });
  }
  all(): SessionEntry[] {
    return [...this.origins.values()].flatMap((o) => [...o.sessions.values()]);
  }
  sessionsOf(bare: string): SessionEntry[] {
    return this.all().filter((s) => bareJid(s.jid) === bare);
  }
  homeOf(bare: string): string | undefined {
    let best: SessionEntry | undefined;
    for (const s of this.sessionsOf(bare)) if (!best || s.since < best.since || (s.since === best.since && s.home < best.home)) best = s;
    return best?.home;
  }
  addOwn(s: SessionEntry): void {
    this.origins.get(this.self)!.sessions.set(s.jid, s);
  }
  removeOwn(jid: string): SessionEntry | undefined {
    const m = this.origins.get(this.self)!.sessions;
    const s = m.get(jid);
    m.delete(jid);
    return s;
  }
  applySnapshot(origin: string, incarnation: number, seq: number, sessions: SessionEntry[], names: NameEntry[]): void {
    if (origin === this.self) return;
    const old = this.origins.get(origin);
    const fresh = { incarnation, seq, sessions: new Map<string, SessionEntry>(), names: new Map<string, NameEntry>() };
    this.origins.set(origin, fresh);
    for (const s of sessions) {
      if (s.home !== origin) this.ev.onForeignEntry(origin, s);
      else fresh.sessions.set(s.jid, seen(this.self, s));
    }
    const oldNames = old?.names ?? new Map<string, NameEntry>();
    for (const n of names) fresh.names.set(n.name, n);
    for (const [k, n] of oldNames) if (!fresh.names.has(k)) this.ev.onRemoteName(origin, n, false);
    for (const [k, n] of fresh.names) {
      const was = oldNames.get(k);
      if (was && was.kind !== n.kind) this.ev.onRemoteName(origin, was, false);
      if (!was || was.kind !== n.kind) this.ev.onRemoteName(origin, n, true);
    }
  }
  applyDelta(origin: string, incarnation: number, seq: number, ops: Op[]): boolean {
    const o = this.origins.get(origin);
    if (!o || o.incarnation !== incarnation) return false;
    if (seq <= o.seq) return true;
    if (seq !== o.seq + 1) return false;
    o.seq = seq;
    for (const op of ops) {
      if (op.op === 'sess+') {
        if (op.s.home !== origin) this.ev.onForeignEntry(origin, op.s);
        else o.sessions.set(op.s.jid, seen(this.self, op.s));
      } else if (op.op === 'sess-') o.sessions.delete(op.jid);
      else if (op.op === 'name+') {
        const was = o.names.get(op.n.name);
        o.names.set(op.n.name, op.n);
        if (was && was.kind !== op.n.kind) this.ev.onRemoteName(origin, was, false);
        if (!was || was.kind !== op.n.kind) this.ev.onRemoteName(origin, op.n, true);
      } else {
        const was = o.names.get(op.name);
        if (was) {
          o.names.delete(op.name);
          this.ev.onRemoteName(origin, was, false);
        }
      }
    }
    return true;
  }
  dropOrigin(origin: string): SessionEntry[] {
    if (origin === this.self) return [];
    const o = this.origins.get(origin);
    if (!o) return [];
    this.origins.delete(origin);
    for (const n of o.names.values()) this.ev.onRemoteName(origin, n, false);
    return [...o.sessions.values()];
  }
}

const canon = (xs: SessionEntry[]): string[] => xs.map((s) => JSON.stringify([s.jid, s.home, s.c2sNode, s.c2s, s.sm, s.prio, s.avail, s.since, s.c2sId])).sort();

const NODES = ['n1', 'n2', 'n3', 'n4'];
const USERS = ['alice', 'bob', 'carol', 'dåve', 'émile', '用户', 'x'.repeat(140), ''];
const DOMAINS = ['example.test', 'other.test', 'ünï.test'];
const RESOURCES = ['home', 'work', 'r1', 'phone/with/slashes', 'é🎉', 'y'.repeat(130)];

function randomSession(r: () => number, home: string): SessionEntry {
  const pick = <T>(xs: readonly T[]): T => xs[Math.floor(r() * xs.length)]!;
  const user = pick(USERS);
  const dom = pick(DOMAINS);
  const x = r();
  const bare = user === '' ? dom : `${user}@${dom}`;
  const jid = x < 0.05 ? bare : `${bare}/${pick(RESOURCES)}`;
  const smKind = r();
  const sm = smKind < 0.6 ? Math.floor(r() * 2 ** 52).toString(16).padStart(40, '0').slice(0, 40) : smKind < 0.7 ? 'ABCDEF0123' : smKind < 0.8 ? 'abc' : smKind < 0.9 ? `sm-${Math.floor(r() * 1000)}` : 'sm ü';
  const idKind = r();
  const c2sId = idKind < 0.6 ? String(Math.floor(r() * 100_000)) : idKind < 0.7 ? '0' : idKind < 0.8 ? '007' : idKind < 0.9 ? '1234567890123456789' : 'c2s-id';
  const sinceKind = r();
  const since =
    sinceKind < 0.5 ? 1_700_000_000_000 + Math.floor(r() * 10) : sinceKind < 0.7 ? Date.now() - Math.floor(r() * 1e9) : sinceKind < 0.8 ? 0 : sinceKind < 0.9 ? 2 ** 53 - 1 : 1_700_000_000_000.5;
  return {
    jid,
    home,
    c2sNode: r() < 0.7 ? home : pick(NODES),
    c2s: r() < 0.8 ? 'c2s' : pick(['c2s2', 'c2s--n1', 'ç2s']),
    sm,
    prio: pick([-128, -1, 0, 1, 5, 127]),
    avail: r() < 0.7,
    since,
    c2sId,
  };
}

function allBares(): string[] {
  const out: string[] = [];
  for (const u of USERS) for (const d of DOMAINS) out.push(u === '' ? d : `${u}@${d}`);
  return out;
}

function compare(t: ClusterTable, m: Model, where: string): void {
  for (const bare of allBares()) {
    assert.equal(t.homeOf(bare), m.homeOf(bare), `${where}: homeOf(${bare})`);
    assert.deepEqual(canon(t.ownSessionsOf(bare)), canon(m.sessionsOf(bare).filter((s) => s.home === m.self)), `${where}: ownSessionsOf(${bare})`);
    assert.deepEqual(canon(t.sessionsOf(bare)), canon(m.sessionsOf(bare)), `${where}: sessionsOf(${bare})`);
  }
  assert.deepEqual(canon(t.allSessions()), canon(m.all()), `${where}: allSessions`);
  for (const s of m.all()) {
    const got = t.session(s.jid);
    assert.ok(got !== undefined && got.jid === s.jid, `${where}: session(${s.jid})`);
  }
  for (const [o, org] of m.origins) assert.equal(t.sessionCount(o), org.sessions.size, `${where}: sessionCount(${o})`);
  assert.equal(t.sessionCount(), m.all().length, `${where}: sessionCount()`);
  assert.deepEqual(t.knownOrigins().sort(), [...m.origins.keys()].sort(), `${where}: knownOrigins`);
  for (const o of m.origins.keys()) assert.deepEqual(t.originState(o), { incarnation: m.origins.get(o)!.incarnation, seq: m.origins.get(o)!.seq });
}

test('random operations against the Map model: same homes, sessions, counts and events', (t) => {
  const seed = testSeed();
  t.diagnostic(`seed=${seed} (JC_TEST_SEED=${seed} to replay)`);
  const r = prng(seed);
  const evT: Ev[] = [];
  const evM: Ev[] = [];
  const table = new ClusterTable('n1', 1, recorder(evT), 12);
  const model = new Model('n1', 1, recorder(evM));
  const inc = new Map<string, number>();
  const seqs = new Map<string, number>();
  const pick = <T>(xs: readonly T[]): T => xs[Math.floor(r() * xs.length)]!;
  for (let op = 0; op < 3000; op++) {
    const where = `seed=${seed} op=${op}`;
    const x = r();
    if (x < 0.25) {
      const s = randomSession(r, 'n1');
      table.addOwnSession(s);
      model.addOwn(s);
    } else if (x < 0.35) {
      const own = model.all().filter((s) => s.home === 'n1');
      const jid = own.length > 0 && r() < 0.9 ? pick(own).jid : 'nobody@example.test/x';
      assert.deepEqual(table.removeOwnSession(jid), model.removeOwn(jid), where);
    } else if (x < 0.45) {
      const origin = pick(['n2', 'n3', 'n4', 'n1']);
      const i = (inc.get(origin) ?? 0) + (r() < 0.3 ? 1 : 0);
      inc.set(origin, i);
      const seq = Math.floor(r() * 5);
      seqs.set(origin, seq);
      const n = Math.floor(r() * 40);
      const sessions = Array.from({ length: n }, () => randomSession(r, r() < 0.95 ? origin : pick(NODES)));
      if (n > 2 && r() < 0.3) sessions.push({ ...sessions[0]!, prio: 99 % 128, since: sessions[0]!.since + 1 }); // the same JID twice
      const names: NameEntry[] = Array.from({ length: Math.floor(r() * 3) }, () => ({ name: pick(['sm', 'muc.example.test', 'pubsub']), kind: pick(['sm', 'component', 'domain'] as const) }));
      table.applySnapshot(origin, i, seq, sessions, names);
      model.applySnapshot(origin, i, seq, sessions, names);
    } else if (x < 0.85) {
      const origin = pick(['n2', 'n3', 'n4']);
      const i = inc.get(origin) ?? 0;
      const good = r() < 0.85;
      const seq = (seqs.get(origin) ?? 0) + (good ? 1 : pick([0, 2, 5]));
      const theirs = model.origins.get(origin)?.sessions;
      const ops: Op[] = [];
      for (let k = Math.floor(r() * 6); k > 0; k--) {
        const y = r();
        if (y < 0.5) ops.push({ op: 'sess+', s: randomSession(r, r() < 0.95 ? origin : pick(NODES)) });
        else if (y < 0.6 && theirs && theirs.size > 0) {
          const s = pick([...theirs.values()]);
          ops.push({ op: 'sess+', s: { ...s, prio: 3, avail: !s.avail } }); // a change
        } else if (y < 0.85) ops.push({ op: 'sess-', jid: theirs && theirs.size > 0 && r() < 0.8 ? pick([...theirs.keys()]) : 'gone@example.test/x' });
        else if (y < 0.95) ops.push({ op: 'name+', n: { name: pick(['sm', 'muc.example.test', 'c1']), kind: pick(['sm', 'component'] as const) } });
        else ops.push({ op: 'name-', name: pick(['sm', 'muc.example.test', 'c1']) });
      }
      const a = table.applyDelta(origin, i, seq, ops);
      assert.equal(a, model.applyDelta(origin, i, seq, ops), where);
      if (a && seq > (seqs.get(origin) ?? 0)) seqs.set(origin, seq);
    } else if (x < 0.9) {
      const origin = pick(['n2', 'n3', 'n4', 'n1', 'n9']);
      assert.deepEqual(canon(table.dropOrigin(origin)), canon(model.dropOrigin(origin)), where);
    } else if (x < 0.92) {
      const lost = table.clearOwnSessions();
      const m = model.origins.get('n1')!.sessions;
      assert.deepEqual(canon(lost), canon([...m.values()]), where);
      m.clear();
    } else {
      compare(table, model, where);
    }
    assert.deepEqual(evT, evM, where);
  }
  compare(table, model, `seed=${seed} end`);
  // deltas of own changes: one per op, in order
  const d = table.takeDelta();
  assert.ok(d !== null && d.seq === 1 && d.ops.length > 0);
  assert.deepEqual(canon(table.snapshot().sessions), canon([...model.origins.get('n1')!.sessions.values()]));
});

test('sessions come back exactly as stored: every field, edge values included (sm and c2sId: when the client is on self)', () => {
  const sessions: SessionEntry[] = [
    { jid: 'a@b/c', home: 'n2', c2sNode: 'n2', c2s: 'c2s', sm: 'ff'.repeat(20), prio: -128, avail: false, since: 0, c2sId: '0' },
    { jid: 'b@b', home: 'n2', c2sNode: 'n3', c2s: 'c2s', sm: 'FF00', prio: 127, avail: true, since: 2 ** 53 - 1, c2sId: '007' },
    { jid: 'example.test/res', home: 'n2', c2sNode: 'n1', c2s: 'ç2s', sm: 'a', prio: 0, avail: true, since: 1.5, c2sId: '999999999999999' },
    { jid: 'ü@ü.test/🎉', home: 'n2', c2sNode: 'n2', c2s: 'c2s', sm: 'sm ü', prio: 5, avail: true, since: Date.now(), c2sId: '1000000000000000' },
    { jid: `${'l'.repeat(300)}@${'d'.repeat(300)}/${'r'.repeat(300)}`, home: 'n2', c2sNode: 'x'.repeat(200), c2s: 'y'.repeat(200), sm: '0'.repeat(600), prio: 1, avail: true, since: -5, c2sId: 'z'.repeat(200) },
    { jid: 'a@b/c/d@e', home: 'n2', c2sNode: 'n2', c2s: 'c2s', sm: 'x', prio: 1, avail: true, since: 7, c2sId: '-1' },
    { jid: 'c@b/c', home: 'n2', c2sNode: 'n3', c2s: 'c2s', sm: '', prio: 0, avail: true, since: 8, c2sId: '' },
  ];
  // as seen from nodes whose c2s holds some of these clients (each set of ids packed another way) or none
  for (const self of ['n1', 'n3', 'x'.repeat(200), 'n9']) {
    const t = new ClusterTable(self, 1, recorder([]));
    const want = sessions.map((s) => seen(self, s));
    t.applySnapshot('n2', 1, 0, sessions, []);
    for (const s of want) assert.deepStrictEqual(t.session(s.jid), s, `self ${self.slice(0, 9)}: ${s.jid.slice(0, 20)}`);
    assert.deepStrictEqual(canon(t.sessionsOf('a@b')), canon([want[0]!, want[5]!]));
    assert.deepStrictEqual(t.sessionsOf('example.test'), [want[2]!]);
    assert.deepStrictEqual(canon(t.allSessions()), canon(want));
    assert.equal(t.homeOf('ü@ü.test'), 'n2');
    assert.equal(t.homeOf('a@b'), 'n2');
    assert.equal(t.session('a@b/c/d'), undefined);
    assert.equal(t.session('a@b'), undefined);
    assert.deepStrictEqual(canon(t.dropOrigin('n2')), canon(want));
    assert.equal(t.homeOf('a@b'), undefined);
    assert.equal(t.sessionCount(), 0);
  }
});

test('a node keeps what it can act on: sm and c2sId only for remote sessions whose client is on its c2s', () => {
  const ev: Ev[] = [];
  const t = new ClusterTable('n1', 1, recorder(ev));
  const hex = (i: number): string => (0x1234567 * (i + 1)).toString(16).padStart(40, 'a');
  const mk = (r: string, c2sNode: string, o: Partial<SessionEntry> = {}): SessionEntry =>
    ({ jid: `ü@example.test/${r}`, home: 'n2', c2sNode, c2s: 'c2s', sm: hex(r.length), prio: -3, avail: true, since: 1_700_000_000_123, c2sId: '4711', ...o });
  const here = mk('here', 'n1', { c2s: 'c2s2', prio: 7 });
  const hereOdd = mk('here-odd', 'n1', { sm: 'Sm ü', c2sId: 'c2s-id ü', avail: false, since: 1.5 });
  const there = mk('there', 'n2', { prio: 127, avail: false, since: 1_700_000_000_000 });
  const third = mk('third', 'n3', { c2s: 'ç2s', sm: 'sm ü', c2sId: '007', prio: -128, since: 2 ** 53 - 1 });
  const bare = 'ü@example.test';
  t.applySnapshot('n2', 1, 0, [here, hereOdd, there, third], []);
  // the client on our c2s: exactly as sent, ids included
  assert.deepStrictEqual(t.session(here.jid), here);
  assert.deepStrictEqual(t.session(hereOdd.jid), hereOdd);
  // the client elsewhere: '' for both ids, every other field unchanged
  for (const s of [there, third]) {
    const got = t.session(s.jid)!;
    assert.equal(got.sm, '');
    assert.equal(got.c2sId, '');
    assert.deepStrictEqual({ ...got, sm: s.sm, c2sId: s.c2sId }, s);
  }
  assert.deepStrictEqual(canon(t.sessionsOf(bare)), canon([here, hereOdd, seen('n1', there), seen('n1', third)]));
  assert.deepStrictEqual(canon(t.allSessions()), canon([here, hereOdd, seen('n1', there), seen('n1', third)]));
  assert.equal(t.homeOf(bare), 'n2');
  assert.equal(t.sessionCount('n2'), 4);
  // deltas: sess+ (new, and replacing one with its client now elsewhere / now here), sess-, sess- lost
  const moved = { ...here, c2sNode: 'n3', prio: 1 };
  const back = { ...there, c2sNode: 'n1', c2sId: '99', sm: hex(1) };
  const added = mk('added', 'n1', { c2sId: '1000000000000000' });
  const addedElsewhere = mk('added-elsewhere', 'n4');
  assert.ok(t.applyDelta('n2', 1, 1, [{ op: 'sess+', s: moved }, { op: 'sess+', s: back }, { op: 'sess+', s: added }, { op: 'sess+', s: addedElsewhere }]));
  assert.deepStrictEqual(t.session(here.jid), seen('n1', moved));
  assert.equal(t.session(here.jid)!.sm, '');
  assert.deepStrictEqual(t.session(there.jid), back);
  assert.deepStrictEqual(t.session(added.jid), added);
  assert.deepStrictEqual(t.session(addedElsewhere.jid), { ...addedElsewhere, sm: '', c2sId: '' });
  assert.equal(t.sessionCount('n2'), 6);
  assert.ok(t.applyDelta('n2', 1, 2, [{ op: 'sess-', jid: third.jid }, { op: 'sess-', jid: added.jid, lost: true }, { op: 'sess-', jid: 'nobody@example.test/x', lost: true }]));
  assert.equal(t.session(third.jid), undefined);
  assert.equal(t.session(added.jid), undefined);
  assert.equal(t.sessionCount('n2'), 4);
  assert.deepStrictEqual(canon(t.sessionsOf(bare)), canon([seen('n1', moved), hereOdd, back, seen('n1', addedElsewhere)]));
  assert.equal(t.homeOf(bare), 'n2');
  // a new snapshot replaces it all; the loss of the node returns what is kept, as it is kept
  t.applySnapshot('n2', 1, 3, [there, hereOdd, third], []);
  assert.deepStrictEqual(canon(t.allSessions()), canon([seen('n1', there), hereOdd, seen('n1', third)]));
  const lost = t.dropOrigin('n2');
  assert.deepStrictEqual(canon(lost), canon([seen('n1', there), hereOdd, seen('n1', third)]));
  // the clients a node ends when their sessions' node is lost (ClusterRouter.onPeerDown) have their ids
  assert.deepStrictEqual(lost.filter((s) => s.c2sNode === 'n1'), [hereOdd]);
  assert.equal(t.homeOf(bare), undefined);
  assert.equal(t.sessionCount(), 0);
  assert.deepEqual(ev, []);
});

test('a remote session whose client is elsewhere takes over 20 bytes less (a jabberd2 sm id and a c2s id)', () => {
  const t0 = Date.now() - 86_400_000;
  const mk = (i: number, c2sNode: string): SessionEntry => ({
    jid: `user${String(i).padStart(7, '0')}@example.test/res${i % 10}`, home: 'n2', c2sNode, c2s: 'c2s',
    sm: `${String(i).padStart(7, '0')}0123456789abcdef0123456789abcdef0`, prio: i % 5, avail: true, since: t0 + i, c2sId: String(i % 100_000),
  });
  const n = 20_000;
  const bytes = (c2sNode: string): number => {
    const t = new ClusterTable('n1', 1, recorder([]), 16);
    t.applySnapshot('n2', 1, 0, Array.from({ length: n }, (_, i) => mk(i, c2sNode)), []);
    assert.deepStrictEqual(t.session(mk(n - 1, c2sNode).jid), seen('n1', mk(n - 1, c2sNode)));
    return t.remoteBytes;
  };
  const here = bytes('n1');
  const there = bytes('n2');
  assert.ok(here - there >= 20 * n, `client here: ${here} B, elsewhere: ${there} B for ${n} sessions`);
});

test('many sessions: the store grows, compacts after mass removal, and keeps answering', () => {
  const t = new ClusterTable('n1', 1, recorder([]), 17);
  const mk = (i: number, home: string): SessionEntry => ({
    jid: `user${i}@example.test/r${i % 3}`,
    home,
    c2sNode: i % 3 === 0 ? home : 'n1', // records with and without ids, interleaved (most with: the removals below must fill 1 MiB to compact)
    c2s: 'c2s',
    sm: (i * 2654435761 >>> 0).toString(16).padStart(40, '0'),
    prio: i % 7,
    avail: true,
    since: 1_700_000_000_000 + i,
    c2sId: String(i),
  });
  const a = Array.from({ length: 30_000 }, (_, i) => mk(i, 'n2'));
  const b = Array.from({ length: 20_000 }, (_, i) => mk(i, 'n3')); // the same JIDs on another node, newer
  t.applySnapshot('n2', 1, 0, a, []);
  const bytes30k = t.remoteBytes;
  assert.ok(bytes30k < 30_000 * 80, `${bytes30k} bytes for 30k sessions`);
  t.applySnapshot('n3', 1, 0, b, []);
  assert.equal(t.sessionCount(), 50_000);
  assert.equal(t.homeOf('user5@example.test'), 'n2'); // the older session
  assert.equal(t.sessionsOf('user5@example.test').length, 2);
  // deltas removing most of n2's sessions, in several steps
  for (let s = 1; s <= 10; s++) {
    const ops: Op[] = a.slice((s - 1) * 2800, s * 2800).map((x) => ({ op: 'sess-', jid: x.jid }));
    assert.ok(t.applyDelta('n2', 1, s, ops));
  }
  assert.equal(t.sessionCount('n2'), 2000);
  assert.ok(t.remoteBytes < bytes30k * 1.2, 'compacted');
  assert.equal(t.homeOf('user5@example.test'), 'n3');
  assert.equal(t.homeOf('user29999@example.test'), 'n2');
  assert.equal(t.homeOf('user25000@example.test'), undefined);
  for (let i = 0; i < 30_000; i += 7) {
    const want = i >= 28_000 ? [seen('n1', mk(i, 'n2'))] : [];
    if (i < 20_000) want.push(seen('n1', mk(i, 'n3')));
    assert.deepStrictEqual(canon(t.sessionsOf(`user${i}@example.test`)), canon(want), `user${i}`);
  }
  // re-snapshot of n3 (replaces it), then the loss of n2
  t.applySnapshot('n3', 1, 1, b.slice(0, 100), []);
  assert.equal(t.sessionCount('n3'), 100);
  assert.deepStrictEqual(canon(t.dropOrigin('n2')), canon(a.slice(28_000).map((x) => seen('n1', x))));
  assert.equal(t.sessionCount(), 100);
  assert.equal(t.homeOf('user99@example.test'), 'n3');
  assert.equal(t.homeOf('user100@example.test'), undefined);
  assert.equal(t.shared.size, 100);
});

test('own sessions decide the home against remote ones; the oldest wins, ties go to the smaller node name', () => {
  const t = new ClusterTable('n2', 1, recorder([]));
  const s = (home: string, since: number, r = home): SessionEntry => ({ jid: `u@d/${r}`, home, c2sNode: home, c2s: 'c2s', sm: `${home}${since}`, prio: 0, avail: true, since, c2sId: '1' });
  t.applySnapshot('n3', 1, 0, [s('n3', 100)], []);
  assert.equal(t.homeOf('u@d'), 'n3');
  t.addOwnSession(s('n2', 100));
  assert.equal(t.homeOf('u@d'), 'n2'); // tie: n2 < n3
  t.applySnapshot('n1', 1, 0, [s('n1', 100)], []);
  assert.equal(t.homeOf('u@d'), 'n1');
  t.dropOrigin('n1');
  assert.equal(t.homeOf('u@d'), 'n2');
  t.removeOwnSession('u@d/n2');
  assert.equal(t.homeOf('u@d'), 'n3');
  assert.ok(t.applyDelta('n3', 1, 1, [{ op: 'sess+', s: s('n3', 50, 'other') }]));
  assert.equal(t.homeOf('u@d'), 'n3');
  assert.equal(t.sessionsOf('u@d').length, 2);
  assert.ok(t.applyDelta('n3', 1, 2, [{ op: 'sess-', jid: 'u@d/n3' }, { op: 'sess-', jid: 'u@d/other' }]));
  assert.equal(t.homeOf('u@d'), undefined);
  assert.equal(t.ownSessionBySm('n2100'), undefined);
});

test('interned domains and c2s names are capped: past the caps they are stored inline', () => {
  const sessions = Array.from({ length: 6000 }, (_, i): SessionEntry => ({
    jid: `u${i}@d${i % 1500}.test/r`,
    home: 'n2',
    c2sNode: `node${i}`,
    c2s: 'c2s',
    sm: 'ab'.repeat(20),
    prio: 0,
    avail: true,
    since: i,
    c2sId: String(i),
  }));
  // self's c2s holds no client, one whose triple is interned, one whose triple is inline
  for (const self of ['n1', 'node7', 'node5999']) {
    const t = new ClusterTable(self, 1, recorder([]), 16);
    t.applySnapshot('n2', 1, 0, sessions, []);
    for (const s of sessions) assert.deepStrictEqual(t.session(s.jid), seen(self, s));
    assert.equal(t.homeOf('u5999@d1499.test'), 'n2');
  }
});

test('a full shared index: onIndexFull, and the home is recorded again once there is room', () => {
  const ev: Ev[] = [];
  const t = new ClusterTable('n1', 1, recorder(ev), 3); // one line: at most 4 users
  const s = (i: number): SessionEntry => ({ jid: `u${i}@d/r`, home: 'n2', c2sNode: 'n2', c2s: 'c2s', sm: `s${i}`, prio: 0, avail: true, since: i, c2sId: '1' });
  t.applySnapshot('n2', 1, 0, [0, 1, 2, 3, 4].map(s), []);
  assert.deepEqual(ev, ['full u4@d']);
  assert.equal(t.homeOf('u4@d'), undefined);
  assert.equal(t.sessionsOf('u4@d').length, 1);
  assert.ok(t.applyDelta('n2', 1, 1, [{ op: 'sess-', jid: 'u0@d/r' }, { op: 'sess+', s: { ...s(4), prio: 1 } }]));
  assert.equal(t.homeOf('u4@d'), 'n2');
});
