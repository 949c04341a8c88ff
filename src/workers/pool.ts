/**
 * (main) The framing workers: N worker threads, each running worker-main.ts, and the links
 * pinned to them. A link is handed over once authenticated (XmlLink.offload) and then stays on
 * its worker for life; its input is batched (every chunk that arrives within one turn of the
 * event loop, or while the link already has `pipeline` tasks with the worker, goes in the next
 * task) and the framer's events come back in order, to be delivered by main to the link's
 * handler. Main stays the only writer of sockets.
 *
 * Affinity and order: piscina has none (least-busy scheduling), so each worker is its own
 * Piscina instance with exactly one thread, which works through its tasks one after the other in
 * the order they were posted; a link may have up to `pipeline` (default 2) tasks with it, so the
 * worker frames the next batch while main routes the previous one, and results are checked to
 * come back in sequence (anything else is treated as a worker failure, never reordered).
 *
 * Faults: a worker that exits, throws outside a task, rejects a task or turns out not to know a
 * link it was given (it was replaced) takes its links down: each is closed with
 * `worker-crashed` (logged by the link's owner), the Piscina instance is destroyed and a new one
 * started (at once; after a back-off when it keeps failing). Links handed over later go to the
 * live workers; with none alive a link simply stays inline. See docs/internals/worker-channel.md.
 */
import { fileURLToPath } from 'node:url';
import { Piscina } from 'piscina';
import type { Logger } from '../log.ts';
import type { AttachSpec, FrameEvent, FrameResult, FrameTask } from './messages.ts';
import { decodeEvents } from './codec.ts';

type Scope = Readonly<Record<string, string>>;

/** The link side of a hand-over (implemented by XmlLink). */
export interface OffloadTarget {
  readonly label: string;
  /** the events of one task, in order; may close the link */
  deliver(events: readonly FrameEvent[]): void;
  /** the worker failed: close the link with `worker-crashed` and `detail` */
  lost(detail: string): void;
  /** stop (true) or restart (false) reading: too much input is waiting for the worker */
  backpressure(on: boolean): void;
}

export interface WorkerPoolOptions {
  /** number of worker threads (≥ 1) */
  size: number;
  /** worker entry module (tests); default worker-entry.mjs next to this file */
  filename?: string;
  /**
   * input bytes waiting for one link's worker beyond which its reads are paused (default 64 KiB;
   * also bounds one task to about this plus one socket read)
   */
  highWater?: number;
  /** tasks one link may have with its worker at once (default 2) */
  pipeline?: number;
}

export interface WorkerStatus {
  worker: number;
  up: boolean;
  /** links pinned to it now */
  links: number;
  /** completed tasks (batches) */
  tasks: number;
  stanzas: number;
  /** input bytes handed to it */
  bytes: number;
  /** stream errors and framing faults it reported, plus failed tasks */
  errors: number;
  /** times it failed and was replaced */
  crashes: number;
}

const DEFAULT_ENTRY = fileURLToPath(new URL('./worker-entry.mjs', import.meta.url));
const DEFAULT_HIGH_WATER = 64 << 10;
/**
 * two tasks per link in flight: the worker frames the next batch while main routes the last one
 * (one at a time leaves the worker idle during every round trip)
 */
const DEFAULT_PIPELINE = 2;
/** a worker that fails again within this time is restarted after a growing delay */
const CRASH_WINDOW_MS = 10_000;
const MAX_RESTART_DELAY_MS = 5_000;

class Slot {
  piscina: Piscina | null = null;
  /** bumped on every failure: results and events of an older generation are ignored */
  gen = 0;
  readonly links = new Set<RemoteFraming>();
  tasks = 0;
  stanzas = 0;
  bytes = 0;
  errors = 0;
  crashes = 0;
  lastCrashAt = 0;
  restartDelay = 0;
  restartTimer: NodeJS.Timeout | null = null;

  constructor(readonly index: number) {}
}

/** Main's handle on one link whose input a worker frames. */
export class RemoteFraming {
  /** input not sent to the worker yet, in arrival order */
  chunks: Uint8Array[] = [];
  queuedBytes = 0;
  /** tasks of this link with the worker (at most the pool's `pipeline`) */
  inFlight = 0;
  /** tasks sent / results taken, to check they come back in order */
  sent = 0;
  taken = 0;
  /** waiting in the pool's next-turn list */
  scheduled = false;
  /** reads paused by us (backpressure) */
  paused = false;
  /** the link's reads are paused by flow control: keep its input here meanwhile */
  held = false;
  closed = false;

  constructor(
    private readonly pool: WorkerPool,
    readonly id: number,
    readonly slot: Slot,
    readonly target: OffloadTarget,
    /** sent with the first task, then null */
    public attach: AttachSpec | null,
    /** scope of the stream root: the parent scope of the stanzas main rebuilds */
    public rootScope: Scope | undefined,
  ) {}

  /**
   * A task can go to the worker now: the link is open and not held, has room in its pipeline, and
   * has something to send (input, or the attach of its first task).
   */
  get sendable(): boolean {
    return !this.closed && !this.held && this.inFlight < this.pool.pipeline && (this.chunks.length > 0 || this.attach !== null);
  }

  /** Input for the worker. */
  push(chunk: Uint8Array): void {
    if (this.closed) return;
    this.chunks.push(chunk);
    this.queuedBytes += chunk.length;
    if (this.sendable) this.pool.schedule(this);
    if (!this.paused && this.queuedBytes > this.pool.highWater) {
      this.paused = true;
      this.target.backpressure(true);
    }
  }

  /**
   * Flow control paused (true) or resumed (false) the link: while paused, queued input is not
   * sent to the worker, so that no more than the batch in flight reaches the handler after the
   * pause (inline framing stops after the chunk being parsed).
   */
  hold(on: boolean): void {
    this.held = on;
    if (this.sendable) this.pool.schedule(this);
  }

  /** The link is gone: drop what is queued and the worker's framer. */
  close(): void {
    this.pool.release(this);
  }
}

export class WorkerPool {
  readonly size: number;
  readonly highWater: number;
  /** tasks one link may have with its worker at once (results are taken in order) */
  readonly pipeline: number;
  private readonly filename: string;
  private readonly slots: Slot[] = [];
  private next = 0;
  private nextId = 1;
  private closing = false;
  /** links with input to send at the next turn */
  private dirty: RemoteFraming[] = [];
  private immediate: NodeJS.Immediate | null = null;

  constructor(opts: WorkerPoolOptions, private readonly log: Logger) {
    if (!Number.isInteger(opts.size) || opts.size < 1) throw new RangeError(`worker pool size must be a positive integer, got ${opts.size}`);
    this.size = opts.size;
    this.highWater = opts.highWater ?? DEFAULT_HIGH_WATER;
    this.pipeline = opts.pipeline ?? DEFAULT_PIPELINE;
    this.filename = opts.filename ?? DEFAULT_ENTRY;
    for (let i = 0; i < opts.size; i++) {
      const slot = new Slot(i);
      this.slots.push(slot);
      this.startWorker(slot);
    }
    this.log.info(`${opts.size} framing worker(s) started`);
  }

  /** Is there a live worker to hand a link to? */
  get available(): boolean {
    return !this.closing && this.slots.some((s) => s.piscina !== null);
  }

  /**
   * Pin a link to the next live worker (round robin) and queue its first task. `rootScope`: the
   * scope of the stream root main's framer reported (FramerTail.root), if any. Null when no
   * worker is alive (the caller keeps framing inline).
   */
  attach(target: OffloadTarget, spec: AttachSpec, rootScope: Scope | undefined): RemoteFraming | null {
    if (this.closing) return null;
    for (let k = 0; k < this.slots.length; k++) {
      const slot = this.slots[this.next]!;
      this.next = (this.next + 1) % this.slots.length;
      if (slot.piscina === null) continue;
      const r = new RemoteFraming(this, this.nextId++, slot, target, spec, rootScope);
      slot.links.add(r);
      this.schedule(r);
      return r;
    }
    return null;
  }

  /** Per-worker counters for status(). */
  status(): WorkerStatus[] {
    return this.slots.map((s) => ({
      worker: s.index,
      up: s.piscina !== null,
      links: s.links.size,
      tasks: s.tasks,
      stanzas: s.stanzas,
      bytes: s.bytes,
      errors: s.errors,
      crashes: s.crashes,
    }));
  }

  /** Stop every worker (links are expected to be closed by their owners first). */
  async close(): Promise<void> {
    if (this.closing) return;
    this.closing = true;
    if (this.immediate) clearImmediate(this.immediate);
    this.immediate = null;
    this.dirty = [];
    const all: Promise<void>[] = [];
    for (const s of this.slots) {
      if (s.restartTimer) clearTimeout(s.restartTimer);
      s.restartTimer = null;
      s.gen++;
      const p = s.piscina;
      s.piscina = null;
      for (const r of s.links) r.closed = true;
      s.links.clear();
      if (p) all.push(p.destroy().catch(() => {}));
    }
    await Promise.all(all);
  }

  /** Fault injection for tests: kill worker `i`'s thread as a crash would. */
  async terminateWorker(i: number): Promise<void> {
    const t = this.slots[i]?.piscina?.threads[0];
    if (t) await t.terminate();
  }

  // --- internals -------------------------------------------------------------------------------

  /** @internal (RemoteFraming) send `r`'s input at the next turn of the event loop */
  schedule(r: RemoteFraming): void {
    if (r.scheduled) return;
    r.scheduled = true;
    this.dirty.push(r);
    // setImmediate runs after the poll phase: every chunk read in this turn joins the batch
    this.immediate ??= setImmediate(() => this.flushDirty());
  }

  private flushDirty(): void {
    this.immediate = null;
    const list = this.dirty;
    this.dirty = [];
    for (const r of list) {
      r.scheduled = false;
      if (r.sendable) this.send(r);
    }
  }

  private send(r: RemoteFraming): void {
    const slot = r.slot;
    const p = slot.piscina;
    if (p === null) return; // failed: the link is being closed
    const chunks = r.chunks;
    const bytes = r.queuedBytes;
    r.chunks = [];
    r.queuedBytes = 0;
    // a chunk that covers its whole ArrayBuffer (what sockets hand out) moves without a copy;
    // any other view is copied once, so that nothing else sharing its buffer is detached
    const transferList: ArrayBuffer[] = [];
    for (let i = 0; i < chunks.length; i++) {
      const c = chunks[i]!;
      const buf = c.buffer;
      if (buf instanceof ArrayBuffer && c.byteOffset === 0 && c.byteLength === buf.byteLength) transferList.push(buf);
      else chunks[i] = new Uint8Array(c);
    }
    const task: FrameTask = { id: r.id, attach: r.attach, chunks, end: false };
    r.attach = null;
    r.inFlight++;
    const seq = ++r.sent;
    slot.bytes += bytes;
    const gen = slot.gen;
    p.run(task, { transferList }).then(
      (res: FrameResult) => this.onResult(r, gen, seq, res),
      (err: unknown) => this.fail(slot, gen, `task failed: ${(err as Error)?.message ?? err}`),
    );
    if (r.paused) {
      r.paused = false;
      if (!r.closed) r.target.backpressure(false);
    }
  }

  private onResult(r: RemoteFraming, gen: number, seq: number, res: FrameResult): void {
    const slot = r.slot;
    if (gen !== slot.gen) return; // the worker failed meanwhile: the link was closed
    r.inFlight--;
    if (seq !== ++r.taken) {
      // one thread works through its queue in order; anything else is a bug: never reorder input
      this.fail(slot, gen, `result ${seq} of ${r.target.label} came back before result ${r.taken}`);
      return;
    }
    slot.tasks++;
    slot.stanzas += res.stanzas;
    slot.errors += res.errors;
    if (r.closed || res.nums.length === 0) {
      if (r.sendable) this.send(r);
      return;
    }
    let events: FrameEvent[];
    try {
      const d = decodeEvents(res, r.rootScope);
      events = d.events;
      r.rootScope = d.rootScope;
    } catch (err) {
      this.fail(slot, gen, `undecodable result: ${(err as Error).message}`);
      return;
    }
    if (events.length === 1 && events[0]!.t === 'lost') {
      this.fail(slot, gen, 'the worker does not know the link (it was replaced)');
      return;
    }
    try {
      r.target.deliver(events);
    } catch (err) {
      // deliver() contains the handlers' exceptions; this is a bug in it: cost this link only
      this.log.error(`${r.target.label}: error while delivering framed input: ${(err as Error).stack ?? err}`);
      this.release(r);
      r.target.lost(`internal error while delivering framed input: ${(err as Error).message}`);
      return;
    }
    if (r.sendable) this.send(r);
  }

  /** @internal (RemoteFraming.close) */
  release(r: RemoteFraming): void {
    if (r.closed) return;
    r.closed = true;
    r.chunks = [];
    r.queuedBytes = 0;
    const slot = r.slot;
    slot.links.delete(r);
    const p = slot.piscina;
    if (r.attach !== null || p === null) return; // the worker never heard of it, or is gone
    // drop the worker's framer; FIFO behind the link's task in flight, if any
    const gen = slot.gen;
    const task: FrameTask = { id: r.id, attach: null, chunks: [], end: true };
    p.run(task).then(
      () => {},
      (err: unknown) => this.fail(slot, gen, `task failed: ${(err as Error)?.message ?? err}`),
    );
  }

  private startWorker(slot: Slot): void {
    slot.restartTimer = null;
    if (this.closing) return;
    const p = new Piscina({
      filename: this.filename,
      minThreads: 1,
      maxThreads: 1,
      concurrentTasksPerWorker: this.pipeline,
      idleTimeout: Infinity,
    });
    const gen = slot.gen;
    p.on('error', (err: Error) => this.fail(slot, gen, `worker error: ${err?.message ?? err}`));
    // with one thread and no idle timeout, piscina only drops a thread that exited or failed
    p.on('workerDestroy', () => this.fail(slot, gen, 'worker thread exited'));
    slot.piscina = p;
  }

  private fail(slot: Slot, gen: number, detail: string): void {
    if (gen !== slot.gen || this.closing) return;
    slot.gen++;
    slot.crashes++;
    slot.errors++;
    const p = slot.piscina;
    slot.piscina = null;
    const links = [...slot.links];
    slot.links.clear();
    this.log.error(`framing worker ${slot.index} failed (${detail}); closing its ${links.length} link(s) (worker-crashed) and replacing it`);
    if (p) void p.destroy().catch(() => {});
    for (const r of links) {
      r.closed = true;
      r.chunks = [];
      r.queuedBytes = 0;
      try {
        r.target.lost(`framing worker ${slot.index} failed: ${detail}`);
      } catch (err) {
        this.log.error(`${r.target.label}: error while closing after a worker failure: ${(err as Error).stack ?? err}`);
      }
    }
    const now = Date.now();
    slot.restartDelay = now - slot.lastCrashAt < CRASH_WINDOW_MS ? Math.min(MAX_RESTART_DELAY_MS, Math.max(100, slot.restartDelay * 2)) : 0;
    slot.lastCrashAt = now;
    if (slot.restartDelay === 0) this.startWorker(slot);
    else {
      this.log.warn(`framing worker ${slot.index} failed again within ${CRASH_WINDOW_MS / 1000} s; restarting it in ${slot.restartDelay} ms`);
      slot.restartTimer = setTimeout(() => this.startWorker(slot), slot.restartDelay);
      slot.restartTimer.unref();
    }
  }
}
