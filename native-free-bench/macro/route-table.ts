/**
 * Route table at scale: 1 M sessions (one per user: 1 M routes, bare JID → home node) held by a
 * node about another node (src/cluster/table.ts ClusterTable, with its SharedArrayBuffer
 * bare-JID index, src/routing/shared-table.ts).
 *
 * - memory: what a joining node holds after applying the SNAPSHOT: JS heap after GC plus
 *   ArrayBuffer memory (the packed session store lives in ArrayBuffers, outside the JS heap, and
 *   so does the SAB), and the SAB index alone;
 * - lookups/s: ClusterTable.homeOf(bare) (string hash + SAB probe + node name), random order over
 *   all keys, and over a hot set of 10k;
 * - resync: time from `snapshot()` on the origin to the last entry applied on the joining node,
 *   over a real peer link: two PeerManagers on loopback with the default peer settings, the
 *   snapshot sent as the node sends it (PeerManager.sendSnapshot: packed SNAPSHOT parts of
 *   kSnapshotPartSessions, protocol 2, each encoded when the socket has taken the previous ones),
 *   joined and applied as the node does; then the link is watched for three heartbeat intervals
 *   (drops and warnings are recorded: a resync that costs the link is none). Both nodes run in
 *   this one process, so the phases add up on one thread: encoding on the origin, decoding on the
 *   joiner, and the joiner's apply.
 *
 * Run with --expose-gc for clean memory figures (run.ts does).
 */
import '../guard.ts';
import { checkNativeFree } from '../guard.ts';
import { isMain, standalone, type BenchContext, type SectionResult } from '../lib/context.ts';
import { gcFn } from '../lib/gc.ts';
import { quietEvents } from '../lib/table-events.ts';
import { median, sig3 } from '../lib/stats.ts';
import { ClusterTable, bareJid } from '../../src/cluster/table.ts';
import { capacityPow2For } from '../../src/routing/shared-table.ts';
import { type SessionEntry } from '../../src/wire/messages.ts';
import { PeerManager, kSnapshotPartSessions, type PeerEvents } from '../../src/cluster/peer-manager.ts';
import { freePorts } from '../../src/local/jabberd2.ts';
import { memoryLogger } from '../../src/log.ts';
import { kClusterSecret } from '../lib/children.ts';
import { setTimeout as sleep } from 'node:timers/promises';

const MiB = 1 << 20;
const events = quietEvents();

/** JS heap and ArrayBuffer memory (SABs and Buffers included) after two full collections. */
function memAfterGc(): { heap: number; buffers: number } {
  const gc = gcFn();
  gc();
  gc();
  const m = process.memoryUsage();
  return { heap: m.heapUsed, buffers: m.arrayBuffers };
}

function session(i: number, since: number): SessionEntry {
  // realistic sizes: ~27 B JID with resource, 40 hex sm id (as jabberd2's sm makes them)
  const n = String(i).padStart(7, '0');
  return {
    jid: Buffer.from(`user${n}@example.test/res${i % 10}`).toString(),
    home: 'n2',
    c2sNode: i % 3 === 0 ? 'n1' : 'n2',
    c2s: 'c2s',
    sm: Buffer.from(`${n}${'0123456789abcdef0123456789abcdef0'}`).toString(),
    prio: i % 5,
    avail: true,
    since: since + i,
    c2sId: String(i % 100_000),
  };
}

interface Phases { [k: string]: number }

interface LinkResync {
  completed: boolean;
  phases: Phases;
  bytes: number;
  parts: number;
  drops: string[];
  upAfter: boolean;
  warnings: string[];
  config: Record<string, number>;
}

/**
 * Two PeerManagers (the product's peer links) on loopback with the default settings of
 * config/schema.ts; the origin sends its snapshot as the node does when a peer comes up
 * (ClusterRouter.onPeerUp → PeerManager.sendSnapshot), the joiner applies it as the node does
 * (onSnapshot → ClusterTable.applySnapshot). Then the link is watched for three heartbeat
 * intervals: a resync that costs the link is no resync.
 */
async function resyncOverPeerLink(origin: ClusterTable, into: ClusterTable, ctx: BenchContext, queueBytes: number): Promise<LinkResync> {
  const [p1, p2] = (await freePorts(2)) as [number, number];
  const log = memoryLogger('info');
  const config = { heartbeatMs: 800, maxFrameBytes: 4 << 20, queueBytes };
  const base = { secret: kClusterSecret, retry: { initMs: 250, maxMs: 5000 }, maxStanzaBytes: 2 << 20, maxDepth: 64, authTimeoutMs: 10_000, ...config };
  const drops: string[] = [];
  let watching = true;
  let upN1 = false;
  let upN2 = false;
  let done: (() => void) | null = null;
  const got = new Promise<void>((r) => (done = r));
  let dropped: (() => void) | null = null;
  const drop = new Promise<void>((r) => (dropped = r));
  const ph: Phases = {};
  let tSent = 0;
  let tStart = performance.now();
  let parts = 0;
  let bytes = 0;
  const events = (self: string): PeerEvents => ({
    onUp: (node) => {
      if (self === 'n1') upN1 = true;
      else upN2 = true;
      void node;
    },
    onDown: (node, reason) => {
      if (watching) {
        drops.push(`${self} lost ${node}: ${reason} (${(performance.now() - tStart).toFixed(0)} ms after the snapshot began)`);
        dropped?.();
      }
      if (self === 'n1') upN1 = false;
      else upN2 = false;
    },
    onStanza: () => {},
    onSnapshot: (_node, m) => {
      if (self !== 'n1') return;
      const t = performance.now();
      ph['transferDecodeJoinMs'] = t - tSent;
      into.applySnapshot(m.origin, m.incarnation, m.seq, m.sessions, m.names);
      ph['applyMs'] = performance.now() - t;
      done?.();
    },
    onDelta: () => {},
    onResync: () => {},
  });
  const n2 = new PeerManager({ ...base, self: 'n2', incarnation: origin.incarnation, listen: { ip: '127.0.0.1', port: p2 }, peers: [{ name: 'n1', host: '127.0.0.1', port: p1 }] }, events('n2'), log.child('n2'));
  const n1 = new PeerManager({ ...base, self: 'n1', incarnation: into.incarnation, listen: { ip: '127.0.0.1', port: p1 }, peers: [{ name: 'n2', host: '127.0.0.1', port: p2 }] }, events('n1'), log.child('n1'));
  try {
    await n1.start();
    await n2.start();
    const until = performance.now() + 10_000;
    while (!(upN1 && upN2)) {
      if (performance.now() > until) throw new Error('peer link not up after 10 s');
      await sleep(10);
    }
    // count what goes on the wire
    const conn = (n2 as unknown as { links: Map<string, { socket: { bytesWritten: number } }> }).links.get('n1');
    const w0 = conn?.socket.bytesWritten ?? 0;
    const t0 = performance.now();
    tStart = t0;
    const snap = origin.snapshot();
    ph['snapshotMs'] = performance.now() - t0;
    const t1 = performance.now();
    n2.sendSnapshot('n1', snap);
    tSent = performance.now();
    ph['encodeMs'] = tSent - t1;
    parts = Math.max(1, Math.ceil(snap.sessions.length / kSnapshotPartSessions));
    const timeout = sleep(ctx.quick ? 20_000 : 120_000).then(() => 'timeout' as const);
    // a dropped link loses the parts received so far: the node would start again (and again)
    const r = await Promise.race([got.then(() => 'ok' as const), drop.then(() => 'dropped' as const), timeout]);
    ph['totalMs'] = performance.now() - t0;
    bytes = (conn?.socket.bytesWritten ?? 0) - w0;
    // the link must outlive the resync: watch it for 3 heartbeat intervals
    if (r === 'ok') await sleep(3 * config.heartbeatMs);
    watching = false;
    const warnings = log.lines.filter((l) => / (warn|error) /.test(l)).map((l) => l.replace(/^\S+ /, ''));
    return { completed: r === 'ok', phases: ph, bytes, parts, drops, upAfter: upN1 && upN2 && n1.isUp('n2') && n2.isUp('n1'), warnings, config };
  } finally {
    await n1.stop();
    await n2.stop();
  }
}

export async function run(ctx: BenchContext): Promise<SectionResult> {
  const guard = await checkNativeFree();
  const N = Number(process.env['BENCH_ROUTES'] ?? 0) || (ctx.quick ? 20_000 : 1_000_000);
  const pow2 = capacityPow2For(N);
  const since = Date.now() - 86_400_000;

  // ---- the origin node (n2) with N own sessions ----
  ctx.progress(`route table: building ${N.toLocaleString('en')} sessions on the origin node`);
  const origin = new ClusterTable('n2', 2, events, pow2);
  for (let i = 0; i < N; i++) origin.addOwnSession(session(i, since));
  origin.takeDelta();

  // ---- resync over a real peer link (PeerManager, the product's SNAPSHOT parts) ----
  const kDefaultQueue = 16 << 20;
  ctx.progress('route table: resync over a peer link with the default settings (PeerManager.sendSnapshot, SNAPSHOT parts)');
  let h0 = memAfterGc();
  let joined: ClusterTable | null = new ClusterTable('n1', 1, events, pow2);
  const atDefault = await resyncOverPeerLink(origin, joined, ctx, kDefaultQueue);
  ctx.progress(`route table: default settings: ${atDefault.completed ? `done in ${(atDefault.phases['totalMs']! / 1000).toFixed(2)} s` : `FAILED after ${(atDefault.phases['totalMs']! / 1000).toFixed(2)} s: ${atDefault.drops[0] ?? 'timeout'}`}`);
  let raised: LinkResync | null = null;
  let raisedQueue = 0;
  if (!atDefault.completed) {
    // the same with a link queue that holds the whole snapshot: how long a resync takes when it works
    raisedQueue = 2 ** Math.ceil(Math.log2(Math.max(kDefaultQueue, 2 * atDefault.bytes)));
    ctx.progress(`route table: resync again with queue_bytes raised to ${raisedQueue / MiB} MiB`);
    joined = null;
    h0 = memAfterGc();
    joined = new ClusterTable('n1', 1, events, pow2);
    raised = await resyncOverPeerLink(origin, joined, ctx, raisedQueue);
    ctx.progress(`route table: queue_bytes ${raisedQueue / MiB} MiB: ${raised.completed ? `done in ${(raised.phases['totalMs']! / 1000).toFixed(2)} s` : `FAILED: ${raised.drops[0] ?? 'timeout'}`}`);
  }
  const link = raised ?? atDefault;
  if (!link.completed) {
    // no resync worked: build the joined table directly, for the memory and lookup figures
    joined = null;
    h0 = memAfterGc();
    joined = new ClusterTable('n1', 1, events, pow2);
    const snap = origin.snapshot();
    joined.applySnapshot(snap.origin, snap.incarnation, snap.seq, snap.sessions.map((x) => ({ ...x })), snap.names);
  }
  if (joined.sessionCount('n2') !== N) throw new Error(`joined node has ${joined.sessionCount('n2')} sessions, expected ${N}`);

  // ---- memory of the joined node's copy ----
  const h1 = memAfterGc();
  const sab = joined.shared.sab.byteLength;
  const indexSlots = joined.shared.capacity;
  const store = joined.remoteBytes;
  const heap = h1.heap - h0.heap;
  const buffers = h1.buffers - h0.buffers; // the store's arena and buckets, the SAB, and scratch buffers of the codec
  const tableBytes = heap + buffers;
  ctx.progress(
    `route table: ${N.toLocaleString('en')} routes take ${(tableBytes / MiB).toFixed(1)} MiB: JS heap ${(heap / MiB).toFixed(1)} MiB + ArrayBuffers ` +
      `${(buffers / MiB).toFixed(1)} MiB (session store ${(store / MiB).toFixed(1)} MiB, index ${(sab / MiB).toFixed(1)} MiB, other ${((buffers - store - sab) / MiB).toFixed(1)} MiB)`,
  );

  // ---- lookups ----
  const bare = Array.from({ length: N }, (_, i) => bareJid(session(i, since).jid));
  const order = Uint32Array.from({ length: N }, (_, i) => i);
  for (let i = N - 1; i > 0; i--) {
    const k = (Math.random() * (i + 1)) | 0;
    const x = order[i]!;
    order[i] = order[k]!;
    order[k] = x;
  }
  const hotN = Math.min(10_000, N);
  const lookups = (set: 'all' | 'hot10k'): number => {
    const rates: number[] = [];
    const n = ctx.quick ? N : 1_000_000;
    let sink = 0;
    for (let rep = 0; rep < 3; rep++) {
      const ts = performance.now();
      for (let i = 0; i < n; i++) {
        const k = set === 'all' ? order[i % N]! : order[i % hotN]!;
        if (joined!.homeOf(bare[k]!) === 'n2') sink++;
      }
      rates.push(n / ((performance.now() - ts) / 1000));
    }
    if (sink === 0) throw new Error('lookups found nothing');
    return median(rates);
  };
  const lookupsAll = lookups('all');
  const lookupsHot = lookups('hot10k');
  ctx.progress(`route table: homeOf ${Math.round(lookupsAll).toLocaleString('en')} lookups/s over all keys, ${Math.round(lookupsHot).toLocaleString('en')} over a hot 10k`);
  joined = null;

  const round = (p: Phases): Phases => Object.fromEntries(Object.entries(p).map(([k, v]) => [k, Math.round(v)]));
  const outcome = (l: LinkResync): Record<string, unknown> => ({ completed: l.completed, ...round(l.phases), config: l.config, linkDrops: l.drops, linkUpAfter: l.upAfter, warnings: l.warnings.slice(0, 10) });
  // the capacity the node really uses: ClusterRouter constructs its table with the default
  const probe = new ClusterTable('probe', 0, events).shared;
  const nodeSlots = probe.capacity;
  const defaultCap = probe.maxSize;
  const nodeIndexMiB = probe.sab.byteLength / MiB;
  return {
    guard,
    routes: N,
    memory: {
      totalBytes: tableBytes,
      totalMiB: sig3(tableBytes / MiB),
      heapMiB: sig3(heap / MiB),
      arrayBuffersMiB: sig3(buffers / MiB),
      storeMiB: sig3(store / MiB),
      indexMiB: sig3(sab / MiB),
      indexSlots,
      bytesPerRoute: Math.round(tableBytes / N),
      nodeIndexSlots: nodeSlots,
      nodeIndexMaxUsers: defaultCap,
      note:
        `JS heap ${(heap / MiB).toFixed(1)} MiB + ArrayBuffers ${(buffers / MiB).toFixed(1)} MiB (packed session store ${(store / MiB).toFixed(1)} MiB, ` +
        `index ${(sab / MiB).toFixed(1)} MiB, codec scratch buffers ${((buffers - store - sab) / MiB).toFixed(1)} MiB); measured with an index of capacityPow2 ${pow2} ` +
        `(${indexSlots.toLocaleString('en')} slots); the node as built sizes it at capacityPow2 ${Math.log2((probe.sab.byteLength - 128) / 8)} (ClusterTable default: ${nodeIndexMiB.toFixed(0)} MiB, ` +
        `${nodeSlots.toLocaleString('en')} slots), i.e. at most ${defaultCap.toLocaleString('en')} users with sessions`,
    },
    lookups: { homeOfPerSec: Math.round(lookupsAll), homeOfHot10kPerSec: Math.round(lookupsHot) },
    resync: {
      snapshotBytes: atDefault.bytes,
      snapshotMiB: sig3(atDefault.bytes / MiB),
      bytesPerSession: sig3(atDefault.bytes / N),
      parts: atDefault.parts,
      sessionsPerPart: kSnapshotPartSessions,
      defaultSettings: outcome(atDefault),
      raisedQueue: raised === null ? null : { queueBytes: raisedQueue, ...outcome(raised) },
      how:
        'two PeerManagers on loopback (plain TCP), in this one process; origin.snapshot() → PeerManager.sendSnapshot (packed SNAPSHOT parts, protocol 2, each encoded when the socket ' +
        'has taken the previous ones: encodeMs is the call, which encodes the first parts; the rest is in transferDecodeJoinMs) → frames → the receiving PeerConn decodes and joins ' +
        'the parts → ClusterTable.applySnapshot; then 3 heartbeat intervals watching the link. When the default settings fail, again with a link queue (queue_bytes) that holds the whole snapshot',
    },
  };
}

if (isMain(import.meta.url)) await standalone('route table', run);
