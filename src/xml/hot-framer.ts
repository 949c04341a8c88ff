/**
 * (main, pure) The hot-path framer of one stream once its header is known: the ByteFramer,
 * whose stanzas come out as bytes, and, from the first input it leaves to saxes on, a
 * StreamFramer resumed at that point (src/xml/byte-framer.ts says what falls back). Used inline by
 * XmlLink (a node without workers), by the peer links, and by the framing workers
 * (src/workers/worker-main.ts), which send what it reports to main.
 */
import { ByteFramer, type ByteFramerSink } from './byte-framer.ts';
import { StreamFramer, type FramerLimits, type StreamFault } from './stream-framer.ts';
import { Stanza, type StreamContext } from './stanza.ts';
import { resumeFramer } from '../workers/handover.ts';

export interface HotFramerHandler {
  onStanza(st: Stanza): void;
  onStreamClose(): void;
  onError(fault: StreamFault): void;
  /** the ByteFramer handed the rest of the stream to saxes (for a log line) */
  onFallback?(): void;
}

export class HotFramer {
  private fast: ByteFramer | null;
  private slow: StreamFramer | null = null;
  private readonly sink: ByteFramerSink;

  /** `rootName`: the stream root's qualified name; `ctx`: its scope and start tag */
  constructor(rootName: string, readonly ctx: StreamContext, private readonly limits: FramerLimits, private readonly handler: HotFramerHandler) {
    this.fast = new ByteFramer({ name: rootName, scope: ctx.scope }, limits);
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
