/**
 * (main) One XML stream over one TCP socket: framing on the way in, coalesced writes on the way
 * out, a bounded outbound queue and exactly one close with a reason. Protocol state machines
 * (router link, component server) sit on top of it.
 *
 * Until the owner calls `offload()` (once the link is authenticated), the saxes StreamFramer
 * frames the input on the main thread and every stanza comes with its element tree. From then on
 * the hot path takes over: the ByteFramer finds the stanzas as bytes (src/xml/byte-framer.ts), on
 * a worker when the node has workers (the socket's chunks go to it in batches and its events come
 * back here, in order, to the same handler: src/workers/pool.ts), inline otherwise; stanzas are
 * handed on as bytes that routing reads only as far as it needs (src/xml/stanza.ts). Writing
 * stays on the main thread either way, as bytes.
 */
import type { Socket } from 'node:net';
import { StreamFramer, type StreamFault } from '../xml/stream-framer.ts';
import { HotFramer } from '../xml/hot-framer.ts';
import { serialize, type XmlElement } from '../xml/node.ts';
import { Stanza, type Raw, type StreamContext } from '../xml/stanza.ts';
import { STREAM_FOOTER, streamError, type StreamErrorName } from '../protocol/component.ts';
import { CloseReason } from './close-reason.ts';
import type { Logger } from '../log.ts';
import type { FlowControl, FlowSource } from './flow-control.ts';
import { attachSpec, streamStartTag } from '../workers/handover.ts';
import type { FrameEvent } from '../workers/messages.ts';
import type { OffloadTarget, RemoteFraming, WorkerPool } from '../workers/pool.ts';

export interface LinkLimits {
  maxStanzaBytes: number;
  maxDepth: number;
  /** outbound bytes buffered beyond which the link is closed as a slow consumer */
  queueBytes: number;
}

export interface XmlLinkHandler {
  onStreamOpen(root: XmlElement): void;
  onStanza(st: Stanza): void;
  onStreamClose(): void;
  onClosed(reason: CloseReason, detail: string): void;
}

/**
 * Does the stream root declare namespaces besides `stream`? Then a stanza's original text may
 * use a prefix declared only there, and is forwarded re-serialized (self-contained) instead.
 */
function declaresMore(root: XmlElement): boolean {
  for (const k in root.attrs) if ((k === 'xmlns' || k.startsWith('xmlns:')) && k !== 'xmlns:stream') return true;
  return false;
}

export class XmlLink implements FlowSource, OffloadTarget {
  /** the peer's stream root declares namespaces its stanzas may rely on */
  private rootDeclares = false;
  readonly framer: StreamFramer;
  /** backpressure shared by every link of the node (absent: no flow control) */
  private flow: FlowControl | null = null;
  private congestedNow = false;
  closed = false;
  /**
   * Sent before a stream error while our side of the stream is not open yet: a server sets it to
   * its stream header until it has sent that header (as jabberd2's sx does, and RFC 6120 4.9.1.1
   * requires), so that the peer can parse the error.
   */
  errorPreamble = '';
  bytesOut = 0;
  lastActivity = Date.now();
  private pending: Raw[] = [];
  private pendingBytes = 0;
  private flushScheduled = false;
  /** a hand-over was asked for from inside a framer callback: to this pool, or 'inline' */
  private offloadTo: WorkerPool | 'inline' | null = null;
  /** the stream root (set when its header arrives) */
  private root: XmlElement | null = null;
  /** the hot path on this thread (a node without workers) */
  private hot: HotFramer | null = null;
  /** the worker framing this link's input, once handed over (null: framing inline) */
  private remote: RemoteFraming | null = null;
  /** reads paused by the node's flow control / because the worker has too much input queued */
  private flowPaused = false;
  private queuePaused = false;

  constructor(
    readonly socket: Socket,
    private readonly limits: LinkLimits,
    private readonly log: Logger,
    private readonly handler: XmlLinkHandler,
    readonly label: string,
  ) {
    socket.setNoDelay(true);
    this.framer = new StreamFramer(
      {
        onStreamOpen: (root) => this.streamOpen(root),
        onStanza: (el, raw) => handler.onStanza(Stanza.fromElement(el, this.rootDeclares ? serialize(el) : raw)),
        onStreamClose: () => handler.onStreamClose(),
        onError: (fault) => this.onFault(fault),
      },
      { maxStanzaBytes: limits.maxStanzaBytes, maxDepth: limits.maxDepth },
    );
    socket.on('data', (chunk: Buffer) => {
      if (this.closed) return;
      this.lastActivity = Date.now();
      if (this.remote !== null) {
        this.remote.push(chunk);
        return;
      }
      try {
        if (this.hot !== null) this.hot.write(chunk);
        else this.framer.write(chunk);
      } catch (err) {
        this.internalError(err);
      }
      if (this.offloadTo !== null) this.completeOffload();
    });
    socket.on('error', (err) => this.destroy(CloseReason.SocketError, err.message));
    socket.on('close', () => this.destroy(CloseReason.PeerClosed, 'connection closed by peer'));
    socket.on('end', () => {
      if (!this.closed) socket.end();
    });
    socket.on('drain', () => {
      if (this.congestedNow) {
        this.congestedNow = false;
        this.flow?.congestion(this, false, this.label, () => {});
      }
    });
  }

  /** Join the node's flow control: as a destination that can congest, and as a source to pause. */
  attachFlow(flow: FlowControl, asSource = true): void {
    this.flow = flow;
    if (asSource) flow.addSource(this);
  }

  pause(): void {
    this.flowPaused = true;
    this.socket.pause();
    if (this.remote !== null) this.remote.hold(true);
  }

  resume(): void {
    this.flowPaused = false;
    if (this.remote !== null) this.remote.hold(false);
    if (!this.closed && !this.queuePaused) this.socket.resume();
  }

  private onFault(fault: StreamFault): void {
    this.fail(fault.condition as StreamErrorName, CloseReason.ParseError, fault.message);
  }

  /** a bug in a handler must cost this link only, never the process */
  private internalError(err: unknown): void {
    this.log.error(`${this.label}: internal error while handling input: ${(err as Error).stack ?? err}`);
    this.fail('internal-server-error', CloseReason.ProtocolError, `internal error: ${(err as Error).message}`);
  }

  // --- framing on a worker -----------------------------------------------------------------------

  /** Is this link's input framed by a worker? */
  get offloaded(): boolean {
    return this.remote !== null;
  }

  private ctx: StreamContext | null = null;
  /** how to read the stanzas a worker sends back as bytes */
  private context(): StreamContext {
    return (this.ctx ??= { scope: this.root!.scope, header: streamStartTag(this.root!) });
  }

  private streamOpen(root: XmlElement): void {
    this.rootDeclares = declaresMore(root);
    this.root = root;
    this.ctx = null;
    this.handler.onStreamOpen(root);
  }

  /**
   * Switch this link's input to the hot path: the ByteFramer, on a worker of `pool` (null: no
   * workers, inline on this thread). Called from inside onStreamOpen/onStanza, the switch happens
   * right after the markup being reported (the rest of that chunk already goes the new way);
   * between writes, at once. A stream whose root declares namespaces its stanzas may use stays
   * on the StreamFramer (its stanzas are re-serialized), as does a link when no worker is alive.
   */
  offload(pool: WorkerPool | null): void {
    if (this.closed || this.remote !== null || this.hot !== null || this.offloadTo !== null) return;
    if (this.rootDeclares) {
      this.log.debug(`${this.label}: the stream root declares namespaces: its input stays on the StreamFramer`);
      return;
    }
    if (pool !== null && !pool.available) {
      this.log.warn(`${this.label}: no framing worker available; its input is framed on the main thread`);
      pool = null;
    }
    this.offloadTo = pool ?? 'inline';
    this.framer.detach();
    this.completeOffload();
  }

  /** Once the framer has stopped (at once, or when the write in progress returns): switch. */
  private completeOffload(): void {
    const tail = this.framer.takeTail();
    if (tail === null) return; // still inside write(), or nothing to hand over (stream failed)
    const to = this.offloadTo!;
    this.offloadTo = null;
    if (this.closed) return;
    const spec = attachSpec(tail, this.limits);
    if (tail.root === null) {
      // cannot happen (offload follows the stream header); never leave the input unframed
      this.fail('internal-server-error', CloseReason.ProtocolError, 'hot path asked for before the stream header');
      return;
    }
    if (to === 'inline') {
      const h = this.handler;
      this.hot = new HotFramer(tail.root.name, this.context(), this.limits, {
        onStanza: (st) => {
          if (!this.closed) h.onStanza(st);
        },
        onStreamClose: () => h.onStreamClose(),
        onError: (fault) => this.onFault(fault),
        onFallback: () => this.log.debug(`${this.label}: input the byte framer leaves to saxes; the rest of the stream goes through it`),
      });
      if (spec.tail.length > 0) this.hot.write(Buffer.from(spec.tail.buffer, spec.tail.byteOffset, spec.tail.byteLength));
      return;
    }
    this.remote = to.attach(this, spec, tail.root.scope);
    if (this.remote === null) {
      this.fail('internal-server-error', CloseReason.WorkerCrashed, 'no framing worker to hand the stream to');
    } else if (this.flowPaused) this.remote.hold(true);
  }

  /** @internal (WorkerPool) the events of one batch, in order */
  deliver(events: readonly FrameEvent[]): void {
    const h = this.handler;
    for (let i = 0; i < events.length; i++) {
      if (this.closed) return;
      const ev = events[i]!;
      try {
        switch (ev.t) {
          case 'bytes':
            h.onStanza(Stanza.fromBytes(ev.bytes, this.context()));
            break;
          case 'stanza':
            h.onStanza(Stanza.fromElement(ev.el, ev.raw));
            break;
          case 'open':
            this.streamOpen(ev.root);
            break;
          case 'close':
            h.onStreamClose();
            break;
          case 'error':
            this.fail(ev.condition as StreamErrorName, CloseReason.ParseError, ev.message);
            break;
          case 'fault':
            throw new Error(`framing worker: ${ev.message}`);
          case 'lost':
            break; // handled by the pool
        }
      } catch (err) {
        this.internalError(err);
        return;
      }
    }
  }

  /** @internal (WorkerPool) the worker failed */
  lost(detail: string): void {
    this.remote = null;
    this.fail('internal-server-error', CloseReason.WorkerCrashed, detail);
  }

  /** @internal (WorkerPool) too much input waiting for the worker: stop reading meanwhile */
  backpressure(on: boolean): void {
    this.queuePaused = on;
    if (on) this.socket.pause();
    else if (!this.closed && !this.flowPaused) this.socket.resume();
  }

  /** Queue text or bytes for the peer; all writes of one tick leave in one socket write. */
  send(data: Raw): void {
    if (this.closed) return;
    this.pending.push(data);
    this.pendingBytes += data.length;
    if (!this.flushScheduled) {
      this.flushScheduled = true;
      queueMicrotask(() => this.flush());
    }
    if (this.pendingBytes + this.socket.writableLength > this.limits.queueBytes) {
      this.destroy(CloseReason.SlowConsumer, `more than ${this.limits.queueBytes} bytes queued for the peer`);
    }
  }

  flush(): void {
    this.flushScheduled = false;
    if (this.closed || this.pending.length === 0) return;
    const data = coalesce(this.pending);
    this.pending = [];
    this.pendingBytes = 0;
    this.bytesOut += data.length;
    this.lastActivity = Date.now();
    this.socket.write(data);
    const flow = this.flow;
    if (flow && !this.congestedNow && this.socket.writableLength > flow.highWater) {
      this.congestedNow = true;
      flow.congestion(this, true, this.label, () => this.destroy(CloseReason.SlowConsumer, `queued data not taken for ${flow.stallMs} ms`));
    }
  }

  /** Send a stream error and the footer, then close. */
  fail(cond: StreamErrorName, reason: CloseReason, detail: string, textMsg?: string): void {
    if (this.closed) return;
    this.send(this.errorPreamble + streamError(cond, textMsg) + STREAM_FOOTER);
    this.errorPreamble = '';
    this.end(reason, `${cond}: ${detail}`);
  }

  /** Flush what is queued, close our side gracefully, and report the close. */
  end(reason: CloseReason, detail: string): void {
    if (this.closed) return;
    this.flush();
    this.closed = true;
    this.socket.end();
    // do not wait for ever on a peer that never closes its side
    setTimeout(() => this.socket.destroy(), 2000).unref();
    this.report(reason, detail);
  }

  /** Close at once, dropping anything queued. */
  destroy(reason: CloseReason, detail: string): void {
    if (this.closed) return;
    this.closed = true;
    this.pending = [];
    this.socket.destroy();
    this.report(reason, detail);
  }

  private reported = false;
  private report(reason: CloseReason, detail: string): void {
    if (this.reported) return;
    this.reported = true;
    if (this.remote !== null) {
      this.remote.close();
      this.remote = null;
    }
    if (this.flow) {
      this.flow.release(this);
      this.flow.removeSource(this);
    }
    this.handler.onClosed(reason, detail);
  }
}

/** One write for a tick's worth of output: text joined, or everything as one Buffer. */
function coalesce(parts: Raw[]): Raw {
  if (parts.length === 1) return parts[0]!;
  let text = true;
  for (let i = 0; i < parts.length; i++) if (typeof parts[i] !== 'string') {
    text = false;
    break;
  }
  if (text) return (parts as string[]).join('');
  const bufs: Buffer[] = new Array(parts.length);
  for (let i = 0; i < parts.length; i++) {
    const p = parts[i]!;
    bufs[i] = typeof p === 'string' ? Buffer.from(p, 'utf8') : p;
  }
  return Buffer.concat(bufs);
}
