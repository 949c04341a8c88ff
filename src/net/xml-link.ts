/**
 * (main) One XML stream over one TCP socket: framing on the way in, coalesced writes on the way
 * out, a bounded outbound queue and exactly one close with a reason. Protocol state machines
 * (router link, component server) sit on top of it.
 */
import type { Socket } from 'node:net';
import { StreamFramer, type StreamFault } from '../xml/stream-framer.ts';
import type { XmlElement } from '../xml/node.ts';
import { STREAM_FOOTER, streamError, type StreamErrorName } from '../protocol/component.ts';
import { CloseReason } from './close-reason.ts';
import type { Logger } from '../log.ts';
import type { FlowControl, FlowSource } from './flow-control.ts';

export interface LinkLimits {
  maxStanzaBytes: number;
  maxDepth: number;
  /** outbound bytes buffered beyond which the link is closed as a slow consumer */
  queueBytes: number;
}

export interface XmlLinkHandler {
  onStreamOpen(root: XmlElement): void;
  onStanza(el: XmlElement, raw: string): void;
  onStreamClose(): void;
  onClosed(reason: CloseReason, detail: string): void;
}

export class XmlLink implements FlowSource {
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
  private pending: string[] = [];
  private pendingBytes = 0;
  private flushScheduled = false;

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
        onStreamOpen: (root) => handler.onStreamOpen(root),
        onStanza: (el, raw) => handler.onStanza(el, raw),
        onStreamClose: () => handler.onStreamClose(),
        onError: (fault) => this.onFault(fault),
      },
      { maxStanzaBytes: limits.maxStanzaBytes, maxDepth: limits.maxDepth },
    );
    socket.on('data', (chunk: Buffer) => {
      if (this.closed) return;
      this.lastActivity = Date.now();
      try {
        this.framer.write(chunk);
      } catch (err) {
        // a bug in a handler must cost this link only, never the process
        this.log.error(`${label}: internal error while handling input: ${(err as Error).stack ?? err}`);
        this.fail('internal-server-error', CloseReason.ProtocolError, `internal error: ${(err as Error).message}`);
      }
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
    this.socket.pause();
  }

  resume(): void {
    if (!this.closed) this.socket.resume();
  }

  private onFault(fault: StreamFault): void {
    this.fail(fault.condition as StreamErrorName, CloseReason.ParseError, fault.message);
  }

  /** Queue text for the peer; all writes of one tick leave in one socket write. */
  send(text: string): void {
    if (this.closed) return;
    this.pending.push(text);
    this.pendingBytes += text.length;
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
    const data = this.pending.length === 1 ? this.pending[0]! : this.pending.join('');
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
    if (this.flow) {
      this.flow.release(this);
      this.flow.removeSource(this);
    }
    this.handler.onClosed(reason, detail);
  }
}
