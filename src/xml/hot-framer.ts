/**
 * (main, pure) The hot-path framer of one stream once its header is known: the ByteFramer,
 * whose stanzas come out as bytes, and, from the first input it leaves to saxes on, a
 * StreamFramer resumed at that point (src/xml/byte-framer.ts says what falls back). Used inline by
 * XmlLink (a node without workers) and by the peer links; the framing workers run the same pair
 * (src/workers/worker-main.ts) and send their events to main instead.
 */
import { ByteFramer, type ByteFramerSink } from './byte-framer.ts';
import { StreamFramer, type FramerLimits, type StreamFault } from './stream-framer.ts';
import { Stanza, type StreamContext } from './stanza.ts';
import type { XmlElement } from './node.ts';
import { resumeFramer, streamStartTag } from '../workers/handover.ts';

export interface HotFramerHandler {
  onStanza(st: Stanza): void;
  onStreamClose(): void;
  onError(fault: StreamFault): void;
  /** the ByteFramer handed the rest of the stream to saxes (for a log line) */
  onFallback?(): void;
}

export class HotFramer {
  readonly ctx: StreamContext;
  private fast: ByteFramer | null;
  private slow: StreamFramer | null = null;
  private readonly sink: ByteFramerSink;

  constructor(root: Pick<XmlElement, 'name' | 'attrs' | 'scope'>, private readonly limits: FramerLimits, private readonly handler: HotFramerHandler) {
    this.ctx = { scope: root.scope, header: streamStartTag(root as XmlElement) };
    this.fast = new ByteFramer({ name: root.name, scope: root.scope }, limits);
    this.sink = {
      stanza: (raw) => handler.onStanza(Stanza.fromBytes(raw, this.ctx)),
      close: () => handler.onStreamClose(),
      fallback: (rest) => this.fallback(rest),
    };
  }

  /** Is the rest of the stream going through saxes? */
  get fellBack(): boolean {
    return this.slow !== null;
  }

  write(chunk: Buffer): void {
    if (this.fast !== null) this.fast.write(chunk, this.sink);
    else this.slow!.write(chunk);
  }

  private fallback(rest: Buffer): void {
    this.fast = null;
    this.handler.onFallback?.();
    const h = this.handler;
    let opened = false;
    this.slow = resumeFramer(
      { header: this.ctx.header, tail: rest, maxStanzaBytes: this.limits.maxStanzaBytes, maxDepth: this.limits.maxDepth },
      {
        // the first open is the synthetic header's
        onStreamOpen: () => {
          opened = true;
        },
        onStanza: (el, raw) => {
          if (opened) h.onStanza(Stanza.fromElement(el, raw));
        },
        onStreamClose: () => h.onStreamClose(),
        onError: (fault) => h.onError(fault),
      },
    );
  }
}
