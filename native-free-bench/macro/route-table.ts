/**
 * Route table at scale: 1 M sessions (one per user: 1 M routes, bare JID → home node) held by a
 * node about another node (src/cluster/table.ts ClusterTable, with its SharedArrayBuffer
 * bare-JID index, src/routing/shared-table.ts).
 *
 * - memory: what a joining node holds after applying the SNAPSHOT (heap after GC + the SAB),
 *   and the SAB index alone;
 * - lookups/s: ClusterTable.homeOf(bare) (string hash + SAB probe + node name), random order over
 *   all keys, and over a hot set of 10k;
 * - resync: time from `snapshot()` on the origin to the last entry applied on the joining node,
 *   through a real loopback TCP connection and FrameDecoder: encode, transfer, decode, apply.
 *   A SNAPSHOT is one frame; when it exceeds the default `max_frame_bytes` (4 MiB) the receiver
 *   refuses it and closes the link, so two ways are measured: one frame (as the protocol does it
 *   today, with max_frame_bytes raised to fit), and chunked: a SNAPSHOT of the first chunk, then
 *   DELTAs of `sess+` ops, every frame ≤ 4 MiB (not in the protocol today: what it would cost).
 *
 * Run with --expose-gc for clean memory figures (run.ts does).
 */
import '../guard.ts';
import { connect, createServer, type Socket } from 'node:net';
import { checkNativeFree } from '../guard.ts';
import { isMain, standalone, type BenchContext, type SectionResult } from '../lib/context.ts';
import { heapAfterGc } from '../lib/gc.ts';
import { median, sig3 } from '../lib/stats.ts';
import { ClusterTable, bareJid } from '../../src/cluster/table.ts';
import { capacityPow2For, kMaxLoadFactor } from '../../src/routing/shared-table.ts';
import { FrameDecoder, kFrameHeaderBytes } from '../../src/wire/frame.ts';
import { decode, encode } from '../../src/wire/codec.ts';
import { MsgType, type Op, type PeerMessage, type SessionEntry } from '../../src/wire/messages.ts';

const kDefaultMaxFrame = 4 << 20;
const MiB = 1 << 20;
const events = { onRemoteName: () => {}, onIndexFull: (bare: string, err: Error) => { throw new Error(`index full at ${bare}: ${err.message}`); } };

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

/** A loopback TCP pair: `a` writes, `b` reads. */
async function socketPair(): Promise<{ a: Socket; b: Socket; close: () => void }> {
  const server = createServer();
  await new Promise<void>((r) => server.listen(0, '127.0.0.1', () => r()));
  const port = (server.address() as { port: number }).port;
  const bP = new Promise<Socket>((r) => server.once('connection', r));
  const a = connect({ host: '127.0.0.1', port });
  await new Promise<void>((r) => a.once('connect', () => r()));
  const b = await bP;
  return { a, b, close: () => { a.destroy(); b.destroy(); server.close(); } };
}

interface Phases { [k: string]: number }

/** Sends `frames` over loopback into a FrameDecoder; `onMessage` applies each; resolves when all are applied. */
async function transfer(frames: Buffer[], maxFrame: number, onMessage: (m: PeerMessage) => void, ph: Phases): Promise<void> {
  const { a, b, close } = await socketPair();
  let decodeMs = 0;
  let applyMs = 0;
  let left = frames.length;
  try {
    await new Promise<void>((resolve, reject) => {
      const dec = new FrameDecoder(maxFrame, (payload) => {
        let t = performance.now();
        const m = decode(payload);
        decodeMs += performance.now() - t;
        t = performance.now();
        onMessage(m);
        applyMs += performance.now() - t;
        if (--left === 0) resolve();
      }, (msg) => reject(new Error(msg)));
      b.on('data', (d: Buffer) => dec.push(d));
      for (const f of frames) a.write(f);
    });
  } finally {
    close();
  }
  ph['decodeMs'] = decodeMs;
  ph['applyMs'] = applyMs;
}

export async function run(ctx: BenchContext): Promise<SectionResult> {
  const guard = await checkNativeFree();
  const N = ctx.quick ? 20_000 : 1_000_000;
  const pow2 = capacityPow2For(N);
  const since = Date.now() - 86_400_000;

  // ---- the origin node (n2) with N own sessions ----
  ctx.progress(`route table: building ${N.toLocaleString('en')} sessions on the origin node`);
  const origin = new ClusterTable('n2', 2, events, pow2);
  for (let i = 0; i < N; i++) origin.addOwnSession(session(i, since));
  origin.takeDelta();

  // ---- resync, one frame ----
  ctx.progress('route table: resync in one SNAPSHOT frame');
  const one: Phases = {};
  let t = performance.now();
  const t0 = t;
  const snap = origin.snapshot();
  one['snapshotMs'] = performance.now() - t;
  t = performance.now();
  const frame = Buffer.from(encode({ type: MsgType.SNAPSHOT, ...snap })); // own copy: encode() returns a view into msgpackr's slab
  one['encodeMs'] = performance.now() - t;
  const frameBytes = frame.length - kFrameHeaderBytes;
  const h0 = heapAfterGc();
  let joined: ClusterTable | null = new ClusterTable('n1', 1, events, pow2);
  const joinedRef = joined;
  const tx = performance.now();
  await transfer([frame], frameBytes, (m) => {
    if (m.type !== MsgType.SNAPSHOT) throw new Error('expected a SNAPSHOT');
    joinedRef.applySnapshot(m.origin, m.incarnation, m.seq, m.sessions, m.names);
  }, one);
  one['transferMs'] = performance.now() - tx - one['decodeMs']! - one['applyMs']!;
  one['totalMs'] = performance.now() - t0;
  if (joined.sessionCount('n2') !== N) throw new Error(`joined node has ${joined.sessionCount('n2')} sessions, expected ${N}`);

  // ---- memory of the joined node's copy ----
  const h1 = heapAfterGc();
  const sab = joined.shared.sab.byteLength;
  const tableBytes = h1 - h0 + sab;
  ctx.progress(`route table: ${N.toLocaleString('en')} routes take ${(tableBytes / MiB).toFixed(0)} MiB (heap ${((h1 - h0) / MiB).toFixed(0)} MiB + index ${(sab / MiB).toFixed(0)} MiB); one-frame resync ${(one['totalMs']! / 1000).toFixed(2)} s, frame ${(frameBytes / MiB).toFixed(1)} MiB`);

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
    const n = ctx.quick ? N : 2_000_000;
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

  // ---- resync, chunked into frames of at most 4 MiB ----
  const perEntry = frameBytes / N;
  const chunk = Math.max(1, Math.floor((0.9 * kDefaultMaxFrame) / (perEntry + 3)));
  ctx.progress(`route table: chunked resync, ${chunk.toLocaleString('en')} sessions per frame`);
  heapAfterGc();
  const ch: Phases = {};
  const c0 = performance.now();
  t = c0;
  const snap2 = origin.snapshot();
  ch['snapshotMs'] = performance.now() - t;
  t = performance.now();
  const frames: Buffer[] = [];
  const seq0 = snap2.seq;
  frames.push(Buffer.from(encode({ type: MsgType.SNAPSHOT, ...snap2, sessions: snap2.sessions.slice(0, chunk), seq: 0 })));
  for (let i = chunk, k = 1; i < N; i += chunk, k++) {
    const ops: Op[] = snap2.sessions.slice(i, i + chunk).map((s) => ({ op: 'sess+', s }));
    frames.push(Buffer.from(encode({ type: MsgType.DELTA, origin: 'n2', incarnation: snap2.incarnation, seq: k, ops })));
  }
  ch['encodeMs'] = performance.now() - t;
  void seq0;
  const maxFrameSeen = Math.max(...frames.map((f) => f.length - kFrameHeaderBytes));
  const joined2 = new ClusterTable('n1', 1, events, pow2);
  const tx2 = performance.now();
  await transfer(frames, kDefaultMaxFrame, (m) => {
    if (m.type === MsgType.SNAPSHOT) joined2.applySnapshot(m.origin, m.incarnation, m.seq, m.sessions, m.names);
    else if (m.type === MsgType.DELTA) {
      if (!joined2.applyDelta(m.origin, m.incarnation, m.seq, m.ops)) throw new Error(`DELTA ${m.seq} refused`);
    }
  }, ch);
  ch['transferMs'] = performance.now() - tx2 - ch['decodeMs']! - ch['applyMs']!;
  ch['totalMs'] = performance.now() - c0;
  if (joined2.sessionCount('n2') !== N) throw new Error(`chunked: joined node has ${joined2.sessionCount('n2')} sessions, expected ${N}`);
  ctx.progress(`route table: chunked resync ${(ch['totalMs']! / 1000).toFixed(2)} s in ${frames.length} frames`);

  const round = (p: Phases): Phases => Object.fromEntries(Object.entries(p).map(([k, v]) => [k, Math.round(v)]));
  // the capacity the node really uses: ClusterRouter constructs its table with the default
  const nodeSlots = new ClusterTable('probe', 0, events).shared.capacity;
  const defaultCap = Math.floor(kMaxLoadFactor * nodeSlots);
  return {
    guard,
    routes: N,
    memory: {
      totalBytes: tableBytes,
      totalMiB: sig3(tableBytes / MiB),
      heapMiB: sig3((h1 - h0) / MiB),
      indexMiB: sig3(sab / MiB),
      indexSlots: 2 ** pow2,
      bytesPerRoute: Math.round(tableBytes / N),
      nodeIndexSlots: nodeSlots,
      nodeIndexMaxUsers: defaultCap,
      note: `measured with an index of 2^${pow2} slots; the node as built sizes it at ${nodeSlots.toLocaleString('en')} slots (ClusterTable default), i.e. at most ${defaultCap.toLocaleString('en')} users with sessions`,
    },
    lookups: { homeOfPerSec: Math.round(lookupsAll), homeOfHot10kPerSec: Math.round(lookupsHot) },
    resync: {
      snapshotFrameBytes: frameBytes,
      snapshotFrameMiB: sig3(frameBytes / MiB),
      bytesPerSession: sig3(perEntry),
      defaultMaxFrameBytes: kDefaultMaxFrame,
      fitsDefaultMaxFrame: frameBytes <= kDefaultMaxFrame,
      maxSessionsPerDefaultFrame: Math.floor(kDefaultMaxFrame / perEntry),
      oneFrame: { ...round(one), maxFrameBytesNeeded: frameBytes },
      chunked: { ...round(ch), frames: frames.length, sessionsPerFrame: chunk, largestFrameBytes: maxFrameSeen, model: 'SNAPSHOT of the first chunk, then DELTAs of sess+ ops (not in the protocol today)' },
    },
  };
}

if (isMain(import.meta.url)) await standalone('route table', run);
