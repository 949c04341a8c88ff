/**
 * (worker) Framing worker: one framer per link pinned to this thread, fed the batches main sends
 * (see docs/internals/worker-channel.md): the ByteFramer, whose stanzas go back as bytes, until
 * it meets input it leaves to saxes; then a StreamFramer for the rest of that stream, whose
 * stanzas go back as element trees. Pure apart from its link table: no sockets,
 * timers or logging; everything it learns goes back as the task's result, in order, encoded by
 * codec.ts.
 *
 * Loaded through worker-entry.mjs (tsx registration); `frameTask` is also callable on any
 * thread with an explicit table, which the unit tests do.
 */
import type { FramerHandler, StreamFramer } from '../xml/stream-framer.ts';
import { HotFramer, type HotFramerHandler } from '../xml/hot-framer.ts';
import { resumeFramer } from './handover.ts';
import { EventWriter } from './codec.ts';
import type { FrameResult, FrameTask } from './messages.ts';

class LinkFraming {
  /** the hot path (a link attached with its root) */
  hot: HotFramer | null = null;
  /** a link attached without its root (before its stream header): the StreamFramer alone */
  framer: StreamFramer | null = null;
  stanzas = 0;
  errors = 0;
  /** the next onStreamOpen is the synthetic header's */
  skipOpen: boolean;

  constructor(readonly w: EventWriter, skipOpen: boolean) {
    this.skipOpen = skipOpen;
  }
}

export type LinkTable = Map<number, LinkFraming>;

const links: LinkTable = new Map();
const writer = new EventWriter();

function handlerFor(l: LinkFraming): FramerHandler {
  return {
    onStreamOpen: (root) => {
      if (l.skipOpen) l.skipOpen = false;
      else l.w.open(root);
    },
    onStanza: (el, raw) => {
      l.stanzas++;
      l.w.stanza(el, raw);
    },
    onStreamClose: () => l.w.close(),
    onError: (fault) => {
      l.errors++;
      l.w.error(fault.condition, fault.message);
    },
  };
}

/** Stanzas of the byte framer go back as bytes; after a fallback, as element trees and text. */
function hotHandlerFor(l: LinkFraming): HotFramerHandler {
  return {
    onStanza: (st) => {
      l.stanzas++;
      const raw = st.raw;
      if (typeof raw === 'string') l.w.stanza(st.el, raw);
      else l.w.bytes(raw);
    },
    onStreamClose: () => l.w.close(),
    onError: (fault) => {
      l.errors++;
      l.w.error(fault.condition, fault.message);
    },
  };
}

function result(l: LinkFraming | null, w: EventWriter): FrameResult {
  const r: FrameResult = { ...w.take(), stanzas: l?.stanzas ?? 0, errors: l?.errors ?? 0 };
  if (l) {
    l.stanzas = 0;
    l.errors = 0;
  }
  return r;
}

/** Frames one task against `table` (the worker's own table by default). */
export function frameTask(task: FrameTask, table: LinkTable = links, w: EventWriter = writer): FrameResult {
  w.discard();
  let l = table.get(task.id);
  if (task.attach !== null) {
    l = new LinkFraming(w, task.attach.header !== '');
    table.set(task.id, l);
    try {
      const { root, header, tail } = task.attach;
      if (root) {
        l.hot = new HotFramer(root.name, { scope: root.scope, header }, task.attach, hotHandlerFor(l));
        if (tail.length > 0) l.hot.write(asBuffer(tail));
      } else l.framer = resumeFramer(task.attach, handlerFor(l));
    } catch (err) {
      table.delete(task.id);
      l.errors++;
      w.fault(`cannot resume the stream: ${(err as Error).message}`);
      return result(l, w);
    }
  } else if (l === undefined) {
    // not attached here: this thread replaced the one the link was attached to
    if (!task.end) w.lost();
    return result(null, w);
  }
  for (const c of task.chunks) {
    try {
      if (l.hot !== null) l.hot.write(asBuffer(c));
      else l.framer!.write(c);
    } catch (err) {
      table.delete(task.id);
      l.errors++;
      w.fault((err as Error).message);
      return result(l, w);
    }
  }
  if (task.end) table.delete(task.id);
  return result(l, w);
}

/** piscina's task handler (the default export of the worker module). */
export default function handle(task: FrameTask): FrameResult {
  return frameTask(task);
}

function asBuffer(u: Uint8Array): Buffer {
  return Buffer.isBuffer(u) ? u : Buffer.from(u.buffer, u.byteOffset, u.byteLength);
}
