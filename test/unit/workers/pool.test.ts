/**
 * WorkerPool with real worker threads: per-link order, batching, round-robin pinning,
 * transfer rules, backpressure, and what happens when a worker dies or a task is rejected.
 */
import { test } from 'node:test';
import assert from 'node:assert/strict';
import { fileURLToPath } from 'node:url';
import { WorkerPool, type OffloadTarget, type RemoteFraming } from '../../../src/workers/pool.ts';
import { attachSpec } from '../../../src/workers/handover.ts';
import { StreamFramer } from '../../../src/xml/stream-framer.ts';
import type { FrameEvent } from '../../../src/workers/messages.ts';
import { memoryLogger } from '../../../src/log.ts';
import { NS_COMPONENT, NS_STREAM } from '../../../src/protocol/ns.ts';
import { prng, randomSplits } from '../../helpers/split.ts';
import { waitUntil } from '../../helpers/wait.ts';

const LIMITS = { maxStanzaBytes: 1 << 16, maxDepth: 16 };
const HEADER = `<stream:stream xmlns:stream='${NS_STREAM}' xmlns='${NS_COMPONENT}'>`;
const FAULTY = fileURLToPath(new URL('./faulty-worker.mjs', import.meta.url));

class Target implements OffloadTarget {
  readonly events: FrameEvent[] = [];
  deliveries = 0;
  lostWith: string | null = null;
  readonly pauses: boolean[] = [];
  constructor(readonly label: string) {}
  deliver(evs: readonly FrameEvent[]): void {
    this.deliveries++;
    this.events.push(...evs);
  }
  lost(detail: string): void {
    this.lostWith = detail;
  }
  backpressure(on: boolean): void {
    this.pauses.push(on);
  }
  get raws(): string[] {
    return this.events.flatMap((e) => (e.t === 'stanza' ? [e.raw] : e.t === 'bytes' ? [e.bytes.toString('utf8')] : []));
  }
}

/** attach as main does for a link that is ready right after its header */
function attach(pool: WorkerPool, t: OffloadTarget): RemoteFraming | null {
  const f = new StreamFramer({ onStreamOpen: () => f.detach(), onStanza: () => {}, onStreamClose: () => {}, onError: () => {} }, LIMITS);
  f.write(Buffer.from(HEADER));
  const tail = f.takeTail()!;
  return pool.attach(t, attachSpec(tail, LIMITS), tail.root!.scope);
}

/** copies into fresh ArrayBuffers, as sockets hand them out */
const own = (u: Uint8Array): Buffer => Buffer.from(Uint8Array.from(u).buffer);

const stanza = (link: number, i: number): string => `<route to='l${link}' n='${i}'><message xmlns='jabber:client'><body>\u00e9 ${i}</body></message></route>`;

test('per-link order, batching and round-robin pinning across 2 workers', { timeout: 30000 }, async () => {
  const log = memoryLogger();
  const pool = new WorkerPool({ size: 2 }, log);
  try {
    const targets = [0, 1, 2].map((i) => new Target(`link ${i}`));
    const remotes = targets.map((t) => attach(pool, t)!);
    assert.deepEqual(remotes.map((r) => r.slot.index), [0, 1, 0], 'round robin');
    const N = 1500;
    const inputs = targets.map((_, l) => Buffer.from(Array.from({ length: N }, (_, i) => stanza(l, i)).join(' ')));
    const chunks = inputs.map((b, l) => randomSplits(7 + l, 400)(b));
    let pushed = 0;
    // interleave the links' chunks over several turns of the event loop
    const rnd = prng(99);
    while (chunks.some((c) => c.length > 0)) {
      for (let l = 0; l < 3; l++) {
        const k = Math.floor(rnd() * 6);
        for (let j = 0; j < k && chunks[l]!.length > 0; j++) {
          remotes[l]!.push(own(chunks[l]!.shift()!));
          pushed++;
        }
      }
      if (rnd() < 0.5) await new Promise((r) => setImmediate(r));
    }
    await waitUntil(() => targets.every((t) => t.raws.length === N), 'every stanza back', 20000,
      () => targets.map((t) => `${t.label}: ${t.raws.length}`).join(', '));
    for (let l = 0; l < 3; l++) {
      assert.deepEqual(targets[l]!.raws, Array.from({ length: N }, (_, i) => stanza(l, i)), `order on link ${l}`);
      assert.equal(targets[l]!.lostWith, null);
    }
    const st = pool.status();
    const tasks = st.reduce((a, s) => a + s.tasks, 0);
    assert.ok(tasks < pushed, `chunks are batched: ${tasks} tasks for ${pushed} chunks`);
    assert.equal(st.reduce((a, s) => a + s.stanzas, 0), 3 * N);
    assert.equal(st.reduce((a, s) => a + s.bytes, 0), inputs.reduce((a, b) => a + b.length, 0));
    assert.deepEqual(st.map((s) => [s.links, s.errors, s.crashes]), [[2, 0, 0], [1, 0, 0]]);
    for (const r of remotes) r.close();
    assert.deepEqual(pool.status().map((s) => s.links), [0, 0]);
  } finally {
    await pool.close();
  }
});

test('whole-buffer chunks are transferred, views on a larger buffer are copied', { timeout: 20000 }, async () => {
  const pool = new WorkerPool({ size: 1 }, memoryLogger());
  try {
    const t = new Target('link');
    const r = attach(pool, t)!;
    const whole = own(Buffer.from(stanza(0, 0)));
    const big = Buffer.from(stanza(0, 1) + 'trailing bytes that are not for the link');
    const view = big.subarray(0, Buffer.byteLength(stanza(0, 1)));
    r.push(whole);
    r.push(view);
    await waitUntil(() => t.raws.length === 2, 'two stanzas', 3000, () => JSON.stringify(t.events));
    assert.equal(whole.byteLength, 0, 'transferred: detached on main');
    assert.equal(big.toString(), stanza(0, 1) + 'trailing bytes that are not for the link', 'the larger buffer is untouched');
  } finally {
    await pool.close();
  }
});

test('input waiting for a busy worker beyond the high-water mark pauses the link until it is sent', { timeout: 20000 }, async () => {
  const pool = new WorkerPool({ size: 1, highWater: 1024 }, memoryLogger());
  try {
    const t = new Target('link');
    const r = attach(pool, t)!;
    for (let i = 0; i < 40; i++) r.push(own(Buffer.from(stanza(0, i))));
    assert.deepEqual(t.pauses, [true], 'paused once over the mark');
    await waitUntil(() => t.raws.length === 40, 'every stanza');
    assert.deepEqual(t.pauses, [true, false], 'resumed once the queue went to the worker');
  } finally {
    await pool.close();
  }
});

test('a stream error found by the worker is an event like any other, and counted', { timeout: 20000 }, async () => {
  const pool = new WorkerPool({ size: 1 }, memoryLogger());
  try {
    const t = new Target('link');
    const r = attach(pool, t)!;
    r.push(own(Buffer.from(`${stanza(0, 0)}<a></b>${stanza(0, 1)}`)));
    await waitUntil(() => t.events.length === 2, 'two events');
    assert.equal(t.events[0]!.t, 'bytes', 'the hot path frames the good stanza');
    assert.equal(t.events[1]!.t, 'error');
    assert.equal(pool.status()[0]!.errors, 1);
  } finally {
    await pool.close();
  }
});

async function crashScenario(how: 'terminate' | 'reject' | 'exit'): Promise<void> {
  const log = memoryLogger();
  const pool = new WorkerPool({ size: 2, filename: FAULTY }, log);
  try {
    const [a, b, c] = ['a', 'b', 'c'].map((n) => new Target(n)) as [Target, Target, Target];
    const ra = attach(pool, a)!;
    const rb = attach(pool, b)!;
    const rc = attach(pool, c)!;
    assert.deepEqual([ra, rb, rc].map((r) => r.slot.index), [0, 1, 0]);
    for (const r of [ra, rb, rc]) r.push(own(Buffer.from(stanza(0, 0))));
    await waitUntil(() => [a, b, c].every((t) => t.raws.length === 1), 'first stanzas');

    if (how === 'terminate') await pool.terminateWorker(0);
    else ra.push(own(Buffer.from(how === 'reject' ? '<x>BOOM</x>' : '<x>EXIT</x>')));
    await waitUntil(() => a.lostWith !== null && c.lostWith !== null, 'the links of worker 0 to be closed', 10000, () => log.lines.join('\n'));
    assert.match(a.lostWith!, /framing worker 0 failed/);
    assert.match(c.lostWith!, /framing worker 0 failed/);
    assert.ok(log.lines.some((l) => /framing worker 0 failed .*closing its 2 link\(s\) \(worker-crashed\)/.test(l)), log.lines.join('\n'));
    // pushing into a closed link is ignored
    ra.push(own(Buffer.from(stanza(0, 9))));

    // the other worker's link is unharmed
    rb.push(own(Buffer.from(stanza(0, 1))));
    await waitUntil(() => b.raws.length === 2, 'b goes on');
    assert.equal(b.lostWith, null);

    // worker 0 was replaced: new links on both workers work
    await waitUntil(() => pool.status()[0]!.up, 'worker 0 back');
    const d = new Target('d');
    const e = new Target('e');
    const rd = attach(pool, d)!;
    const re = attach(pool, e)!;
    assert.deepEqual([rd, re].map((r) => r.slot.index).sort(), [0, 1]);
    rd.push(own(Buffer.from(stanza(0, 0))));
    re.push(own(Buffer.from(stanza(0, 0))));
    await waitUntil(() => d.raws.length === 1 && e.raws.length === 1, 'new links framed');
    const st = pool.status();
    assert.equal(st[0]!.crashes, 1);
    assert.equal(st[1]!.crashes, 0);
    assert.equal(a.raws.length, 1, 'nothing delivered to a closed link');
  } finally {
    await pool.close();
  }
}

test('a worker thread killed: its links are closed with the reason, the others carry on, it is replaced', { timeout: 30000 }, () => crashScenario('terminate'));
test('a rejected task: same', { timeout: 30000 }, () => crashScenario('reject'));
test('a worker that exits by itself: same', { timeout: 30000 }, () => crashScenario('exit'));

test('close() stops every thread; links attached afterwards are refused', { timeout: 20000 }, async () => {
  const pool = new WorkerPool({ size: 2 }, memoryLogger());
  const t = new Target('link');
  const r = attach(pool, t)!;
  r.push(own(Buffer.from(stanza(0, 0))));
  await waitUntil(() => t.raws.length === 1, 'one stanza');
  await pool.close();
  assert.equal(pool.available, false);
  assert.equal(attach(pool, new Target('late')), null);
  assert.equal(t.lostWith, null, 'closing the pool is not a crash');
});
