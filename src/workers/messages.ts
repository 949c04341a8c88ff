/**
 * (main + worker) The messages between the main thread and a framing worker. One task is one
 * piscina `run()`: the chunks one link received since its previous task, and the events they
 * produced come back as its result. See docs/internals/worker-channel.md.
 *
 * Only flat data crosses: numbers, strings, Uint8Arrays (their ArrayBuffers transferred when the
 * view covers the whole buffer) and, back, one string, one Int32Array and one byte array per
 * task (codec.ts).
 */
import type { StreamErrorCondition } from '../xml/stream-framer.ts';
import type { XmlElement } from '../xml/node.ts';
import type { EncodedEvents } from './codec.ts';

/** Sent once, in a link's first task: how to rebuild the main thread's framer in the worker. */
export interface AttachSpec {
  /** start tag equivalent to the stream root main has already reported ('' if none yet) */
  header: string;
  /** UTF-8 of the text main's framer had not consumed, then the bytes of a split character */
  tail: Uint8Array;
  maxStanzaBytes: number;
  maxDepth: number;
  /**
   * the stream root (its qualified name and scope): the worker frames with the ByteFramer and
   * sends stanzas back as bytes; absent, with the StreamFramer and sends element trees
   */
  root?: { name: string; scope: Readonly<Record<string, string>> } | null;
}

export interface FrameTask {
  /** the link, unique within the pool */
  id: number;
  /** present in the link's first task only */
  attach: AttachSpec | null;
  /** input in arrival order */
  chunks: Uint8Array[];
  /** the link is gone: drop its framer (after framing `chunks`, which is then empty) */
  end: boolean;
}

/**
 * What the framer reported, in order (as decoded on main). `fault`: an exception inside the worker while framing this
 * link (a bug); `lost`: the worker has no framer for the link (it is not the thread the link was
 * attached to: it was replaced).
 */
export type FrameEvent =
  | { t: 'open'; root: XmlElement }
  | { t: 'stanza'; el: XmlElement; raw: string }
  /** a stanza found by the ByteFramer: its bytes */
  | { t: 'bytes'; bytes: Buffer }
  | { t: 'close' }
  | { t: 'error'; condition: StreamErrorCondition; message: string }
  | { t: 'fault'; message: string }
  | { t: 'lost' };

/**
 * A task's result: its events encoded by codec.ts (one string, one Int32Array; decoded on main
 * into FrameEvents), and counts for the worker's counters.
 */
export interface FrameResult extends EncodedEvents {
  stanzas: number;
  /** error and fault events */
  errors: number;
}
