/**
 * Push-driven, streaming, namespace-aware XMPP stream framer built on saxes.
 *
 * Pure: no sockets, timers, loggers or globals; only Buffer, StringDecoder and saxes, so it can
 * run inside worker threads. Feed it the bytes of ONE direction of ONE connection with
 * `write()`; it reports the stream header, every complete depth-1 element (a "stanza") with its
 * exact original text, the stream footer, and at most one fatal error.
 *
 * How it works
 * - Bytes are decoded with a StringDecoder (UTF-8 characters may be split across chunks). Invalid
 *   UTF-8 is decoded lossily to U+FFFD, not rejected (the peer is a local jabberd2 that already
 *   validated its input with expat).
 * - Each decoded chunk is written to saxes (`xmlns: true`, XML 1.0 forced). Positions are saxes'
 *   `position`: a UTF-16 index into the concatenation of all strings written to the current
 *   parser; when `closetag`/`opentag` fire it points just past the `>` that completed the tag
 *   (pinned by a unit test).
 * - `raw` of a stanza runs from its `<` to that position. Its `<` is the first non-whitespace
 *   character after the end of the previous depth-1 markup (root start tag or previous stanza):
 *   anything else there is an error (text at depth 1, comment, PI, CDATA...), so no extra
 *   bookkeeping is needed to find it.
 * - Only the text of the stanza still arriving is retained across chunks (an array of pieces,
 *   joined once at the end: no quadratic concatenation); whitespace between stanzas is never
 *   retained, neither by us nor by saxes (its text handler is only installed while a stanza is
 *   open). Text of delivered stanzas is dropped.
 * - Errors and restarts abort saxes mid-chunk by throwing a private sentinel out of a handler; the
 *   parser is then discarded (after an error) or replaced (reset).
 */
import { StringDecoder } from 'node:string_decoder';
import { SaxesParser } from 'saxes';
import type { SaxesTagNS } from 'saxes';
import { deriveScope } from './node.ts';
import type { XmlElement } from './node.ts';

export type StreamErrorCondition = 'not-well-formed' | 'restricted-xml' | 'policy-violation' | 'invalid-namespace' | 'bad-format' | 'invalid-xml';

export class StreamFault extends Error {
  readonly condition: StreamErrorCondition;
  constructor(condition: StreamErrorCondition, message: string) {
    super(message);
    this.name = 'StreamFault';
    this.condition = condition;
  }
}

export interface FramerHandler {
  /** The stream root (`stream` in NS_STREAM); its `children` are always []. */
  onStreamOpen(root: XmlElement): void;
  /** A complete depth-1 element; `raw` is its exact original text from `<` to the final `>`. */
  onStanza(el: XmlElement, raw: string): void;
  /** `</stream:stream>` seen; further input is ignored until reset(). */
  onStreamClose(): void;
  /** Fatal: after this the framer ignores all further input until reset(). */
  onError(fault: StreamFault): void;
}

export interface FramerLimits {
  /** Maximum UTF-8 size of one stanza (and of the unterminated stream header). */
  maxStanzaBytes: number;
  /** Maximum element depth; the stream root is depth 0, a stanza depth 1. */
  maxDepth: number;
}

const NS_STREAM = 'http://etherx.jabber.org/streams';

const UTF8_FFFD = Buffer.from([0xef, 0xbf, 0xbd]);
const NO_BYTES = new Uint8Array(0);

function countOf(s: string, ch: string): number {
  let n = 0;
  for (let i = s.indexOf(ch); i >= 0; i = s.indexOf(ch, i + 1)) n++;
  return n;
}

function countBytes(b: Buffer, seq: Buffer): number {
  let n = 0;
  for (let i = b.indexOf(seq); i >= 0; i = b.indexOf(seq, i + seq.length)) n++;
  return n;
}

/** Sentinel thrown out of saxes handlers to stop the current parser (error or stream closed). */
const STOP: unique symbol = Symbol('stop');
/** Sentinel thrown out of saxes handlers when reset() was called from inside a callback. */
const RESTART: unique symbol = Symbol('restart');
/** Sentinel thrown out of saxes handlers when detach() was called from inside a callback. */
const DETACH: unique symbol = Symbol('detach');

/** XML whitespace run (sticky: always matches, possibly empty, at lastIndex). */
const WS = /[ \t\r\n]*/y;
const WS_ONLY = /^[ \t\r\n]*$/;

function skipWs(s: string, from: number): number {
  WS.lastIndex = from;
  WS.test(s);
  return WS.lastIndex;
}

/** UTF-8 size of `s`, computed only when the UTF-16 length does not decide against `max`. */
function exceeds(s: string, max: number): boolean {
  // every UTF-16 unit is 1..3 UTF-8 bytes (a surrogate pair: 2 units, 4 bytes)
  if (s.length > max) return true;
  if (s.length * 3 <= max) return false;
  return Buffer.byteLength(s, 'utf8') > max;
}

/** `text` (which ends with the `>` of a close tag, or of a self-closing tag) closes `name`. */
function closes(text: string, name: string, selfClosing: boolean): boolean {
  if (selfClosing) return true;
  const j = text.lastIndexOf('</');
  if (j < 0 || !text.startsWith(name, j + 2)) return false;
  return WS_ONLY.test(text.slice(j + 2 + name.length, text.length - 1));
}

function setAttr(attrs: Record<string, string>, k: string, v: string): void {
  if (k === '__proto__') Object.defineProperty(attrs, k, { value: v, enumerable: true, writable: true, configurable: true });
  else attrs[k] = v;
}

/**
 * What a framer had not consumed yet when detach() took effect: enough for another framer (on a
 * worker thread) to carry on with the same stream. Feeding a fresh framer a start tag equivalent
 * to `root`, then `text` (UTF-8), then `bytes`, then the rest of the input reproduces the events
 * this framer would have reported after the detach point.
 */
export interface FramerTail {
  /** the open stream's root element (null: detached before the stream header was complete) */
  root: XmlElement | null;
  /** decoded text after the last reported markup: the beginning of an unfinished stanza, or '' */
  text: string;
  /** bytes of an incomplete UTF-8 character at the end of the input (0–3 bytes) */
  bytes: Uint8Array;
}

type Parser = SaxesParser<{ xmlns: true; forceXMLVersion: true; defaultXMLVersion: '1.0' }>;

export class StreamFramer {
  private readonly handler: FramerHandler;
  private readonly maxBytes: number;
  private readonly maxDepth: number;
  private decoder = new StringDecoder('utf8');
  private parser!: Parser;

  /** framer state */
  private failed = false;
  private closed = false;
  private inWrite = false;
  private resetPending = false;
  private detachPending = false;
  /** set once detach() took effect: write() ignores input; takeTail() returns it once */
  private detached = false;
  private tail: FramerTail | null = null;
  /** parser position where the new stream starts after a reset requested from a callback */
  private restartAt = 0;

  /** per-stream state (parser coordinates: UTF-16 offsets into the strings fed to this parser) */
  private fresh = true; // nothing but whitespace fed to this parser yet
  private fed = 0; // total length fed to the parser before `cur`
  private cur = ''; // the string being parsed
  private curStart = 0;
  private lastEnd = 0; // end of the last depth-0/1 markup (root start tag, stanza)
  private stanzaStart = 0;
  private parts: string[] = []; // retained text of the unfinished stanza/header, from its first `<`
  private partsBytes = 0;
  private stack: XmlElement[] = [];

  private _bytesIn = 0;
  private _stanzasIn = 0;

  constructor(handler: FramerHandler, limits: FramerLimits) {
    this.handler = handler;
    this.maxBytes = limits.maxStanzaBytes;
    this.maxDepth = limits.maxDepth;
    this.newStream();
  }

  /** Bytes passed to write() since construction (including ignored ones). */
  get bytesIn(): number {
    return this._bytesIn;
  }

  /** Stanzas delivered to onStanza since construction. */
  get stanzasIn(): number {
    return this._stanzasIn;
  }

  write(chunk: Uint8Array): void {
    if (this.inWrite) throw new Error('StreamFramer.write() called re-entrantly from a handler');
    this._bytesIn += chunk.length;
    if (this.failed || this.closed || this.detached) return;
    const held = this.pendingBytes();
    const s = this.decoder.write(chunk);
    if (s.length === 0) return;
    this.inWrite = true;
    try {
      // invalid UTF-8: decoded as U+FFFD where the input had no EF BF BD (counted, with the bytes
      // of a character split across writes, so that a real U+FFFD cut in two is no error)
      if (s.includes('\uFFFD')) {
        const c = Buffer.from(chunk.buffer, chunk.byteOffset, chunk.byteLength);
        if (countOf(s, '\uFFFD') !== countBytes(held.length > 0 ? Buffer.concat([held, c]) : c, UTF8_FFFD)) {
          this.fail('not-well-formed', 'invalid UTF-8');
          return;
        }
      }
      this.feed(s);
      // saxes 6 reads an entity reference up to the next `;` whatever comes between, so after a
      // bare `&` it would swallow the stream silently until some `;` arrives: fail fast instead
      const pending = (this.parser as unknown as { entity?: string } | null)?.entity;
      if (!this.failed && pending !== undefined && (pending.length > MAX_ENTITY_NAME || !ENTITY_NAME_CHARS.test(pending))) {
        this.fail('not-well-formed', 'malformed entity reference (a bare & must be written &amp;)');
        return;
      }
    } catch (e) {
      // a handler threw: the parser state is unknown, stop until reset()
      this.failed = true;
      this.release();
      throw e;
    } finally {
      this.inWrite = false;
    }
  }

  /**
   * Expect a fresh stream header (stream restart after SASL success).
   * - From inside onStanza (or onStreamOpen/onStreamClose): the new stream starts right after the
   *   markup being reported; the rest of the same chunk is parsed as the new stream.
   * - Between writes: the new stream starts with the next write().
   * - Inside onError or after an error: the next write() starts a new stream (the rest of the
   *   failing chunk is dropped, and so are undecoded bytes of a partial UTF-8 character).
   * Leading whitespace before the new header is skipped. Counters are not reset.
   */
  reset(): void {
    if (this.inWrite && !this.failed) {
      // inside onStreamOpen/onStanza/onStreamClose: restart right after the reported markup
      this.resetPending = true;
      return;
    }
    // between writes, or inside onError (the rest of that chunk is dropped)
    if (this.failed) this.decoder = new StringDecoder('utf8'); // byte continuity is lost anyway
    this.resetPending = false;
    this.failed = false;
    this.closed = false;
    this.newStream();
  }

  /**
   * Stop framing: the rest of the input is for another framer (the hand-over of a link to a
   * worker thread). Like reset(), from inside onStreamOpen/onStanza the framer stops right after
   * the markup being reported; between writes, at once. Once it has taken effect, takeTail()
   * returns what was not consumed and write() ignores all further input. A framer that has
   * failed or seen the end of its stream has nothing to hand over (takeTail() stays null).
   */
  detach(): void {
    if (this.detached || this.failed || this.closed) return;
    if (this.inWrite) {
      this.detachPending = true;
      return;
    }
    // between writes: the unconsumed text is the retained unfinished stanza (or header)
    this.finishDetach(this.parts.join(''));
  }

  /** The unconsumed input once detach() has taken effect (once; null before, and afterwards). */
  takeTail(): FramerTail | null {
    const t = this.tail;
    this.tail = null;
    return t;
  }

  // --- internals -------------------------------------------------------------------------------

  /**
   * The first bytes of a UTF-8 character split across chunks, waiting in the decoder (these
   * legacy accessors are pinned by a unit test).
   */
  private pendingBytes(): Uint8Array {
    const d = this.decoder as StringDecoder & { lastNeed?: number; lastTotal?: number; lastChar?: Buffer };
    const need = d.lastNeed ?? 0;
    return need > 0 && d.lastChar !== undefined && d.lastTotal !== undefined
      ? Uint8Array.from(d.lastChar.subarray(0, d.lastTotal - need))
      : NO_BYTES;
  }

  private finishDetach(text: string): void {
    const bytes = this.pendingBytes();
    this.tail = { root: this.stack[0] ?? null, text, bytes: bytes === NO_BYTES ? new Uint8Array(0) : bytes };
    this.detached = true;
    this.detachPending = false;
    this.release();
    this.decoder = new StringDecoder('utf8');
  }

  private newStream(): void {
    this.fresh = true;
    this.fed = 0;
    this.cur = '';
    this.curStart = 0;
    this.lastEnd = 0;
    this.stanzaStart = 0;
    this.parts = [];
    this.partsBytes = 0;
    this.stack = [];
    this.parser = this.makeParser();
  }

  /** Drops everything retained for the current stream. */
  private release(): void {
    this.cur = '';
    this.parts = [];
    this.partsBytes = 0;
    this.stack = [];
  }

  private feed(input: string): void {
    let s = input;
    for (;;) {
      if (this.fresh) {
        // leading whitespace before the header (e.g. a keepalive right after a restart) is skipped
        const i = skipWs(s, 0);
        if (i === s.length) return;
        if (i > 0) s = s.slice(i);
        this.fresh = false;
      }
      this.cur = s;
      this.curStart = this.fed;
      try {
        this.parser.write(s);
      } catch (e) {
        if (e === RESTART) {
          // reset() from inside a callback: the rest of this chunk is the new stream
          const rest = s.slice(this.restartAt - this.curStart);
          this.resetPending = false;
          this.closed = false;
          this.newStream();
          if (rest.length === 0) return;
          s = rest;
          continue;
        }
        if (e === DETACH) {
          // detach() from inside a callback: the rest of this chunk belongs to the next framer
          this.finishDetach(s.slice(this.restartAt - this.curStart));
          return;
        }
        if (e === STOP) return; // error reported, or stream closed
        throw e;
      }
      this.fed += s.length;
      this.chunkEnd();
      this.cur = '';
      return;
    }
  }

  /** At the end of each parsed chunk: retain the unfinished stanza/header and check its size. */
  private chunkEnd(): void {
    const cur = this.cur;
    let piece: string;
    if (this.parts.length > 0) {
      piece = cur;
    } else {
      const from = skipWs(cur, Math.max(this.lastEnd - this.curStart, 0));
      if (from >= cur.length) return;
      if (this.stack.length === 1 && cur.charCodeAt(from) !== 0x3c /* < */) {
        this.fail('not-well-formed', 'character data at stream level');
        return;
      }
      piece = from === 0 ? cur : cur.slice(from);
    }
    this.parts.push(piece);
    this.partsBytes += Buffer.byteLength(piece, 'utf8');
    if (this.partsBytes > this.maxBytes) {
      this.fail('policy-violation', this.stack.length === 0 ? `stream header exceeds ${this.maxBytes} bytes` : `stanza exceeds ${this.maxBytes} bytes`);
    }
  }

  /** Reports a fatal error; call only from within write(). */
  private fault(condition: StreamErrorCondition, message: string): never {
    this.failed = true;
    this.release();
    this.handler.onError(new StreamFault(condition, message));
    throw STOP;
  }

  /** Same, from outside saxes (chunkEnd): swallows the sentinel. */
  private fail(condition: StreamErrorCondition, message: string): void {
    try {
      this.fault(condition, message);
    } catch (e) {
      if (e !== STOP) throw e;
    }
  }

  /** Text from the first non-whitespace character after lastEnd up to parser position `end`. */
  private spanTo(end: number): string {
    const rel = end - this.curStart;
    if (this.parts.length > 0) {
      this.parts.push(this.cur.slice(0, rel));
      const s = this.parts.join('');
      this.parts = [];
      this.partsBytes = 0;
      return s;
    }
    const from = skipWs(this.cur, Math.max(this.lastEnd - this.curStart, 0));
    return this.cur.slice(from, rel);
  }

  private afterCallback(at: number): void {
    if (this.resetPending) {
      this.restartAt = at;
      throw RESTART;
    }
    if (this.detachPending) {
      this.restartAt = at;
      throw DETACH;
    }
  }

  private makeParser(): Parser {
    const p: Parser = new SaxesParser({ xmlns: true, forceXMLVersion: true, defaultXMLVersion: '1.0' });
    // adjacent text (text, CDATA, text...) is kept as one string child
    const addText = (t: string): void => {
      const children = this.stack[this.stack.length - 1]!.children;
      const last = children.length - 1;
      if (last >= 0 && typeof children[last] === 'string') children[last] += t;
      else children.push(t);
    };

    p.on('error', (err) => {
      const m = err.message;
      this.fault(m.includes('doctype') ? 'restricted-xml' : 'not-well-formed', m);
    });
    p.on('doctype', () => this.fault('restricted-xml', 'DTD/DOCTYPE is not allowed in XMPP'));
    p.on('comment', () => this.fault('restricted-xml', 'comments are not allowed in XMPP'));
    p.on('processinginstruction', (pi) => this.fault('restricted-xml', `processing instruction <?${pi.target}?> is not allowed in XMPP`));
    p.on('xmldecl', (decl) => {
      if (decl.encoding !== undefined && decl.encoding.toLowerCase() !== 'utf-8') {
        this.fault('bad-format', `unsupported encoding ${decl.encoding}`);
      }
    });
    p.on('cdata', (t) => {
      if (this.stack.length < 2) this.fault('not-well-formed', 'character data at stream level');
      addText(t);
    });

    p.on('opentagstart', () => {
      const depth = this.stack.length;
      if (depth > this.maxDepth) this.fault('policy-violation', `element depth exceeds ${this.maxDepth}`);
      if (depth === 1) {
        // its `<` is the first non-whitespace character after the previous stanza, either at the
        // head of the retained pieces (validated by chunkEnd) or in this chunk
        if (this.parts.length === 0) {
          const from = skipWs(this.cur, Math.max(this.lastEnd - this.curStart, 0));
          if (this.cur.charCodeAt(from) !== 0x3c) this.fault('not-well-formed', 'character data at stream level');
          this.stanzaStart = this.curStart + from;
        }
      }
    });

    p.on('opentag', (tag: SaxesTagNS) => {
      const stack = this.stack;
      const depth = stack.length;
      const parent = depth > 0 ? stack[depth - 1]! : undefined;
      if (!ASCII_NAME.test(tag.name)) this.fault('not-well-formed', `element name '${tag.name.slice(0, 40)}' is not an ASCII XML name`);
      const attrs: Record<string, string> = {};
      const ta = tag.attributes;
      for (const k in ta) {
        if (!ASCII_NAME.test(k)) this.fault('not-well-formed', `attribute name '${k.slice(0, 40)}' is not an ASCII XML name`);
        setAttr(attrs, k, ta[k]!.value);
      }
      const scope = deriveScope(attrs, parent?.scope);
      const prefix = tag.prefix;
      const el: XmlElement = {
        name: tag.name,
        local: tag.local,
        uri: Object.hasOwn(scope, prefix) ? scope[prefix]! : '',
        attrs,
        scope,
        children: [],
      };
      if (depth === 0) {
        if (tag.local !== 'stream' || el.uri !== NS_STREAM) {
          this.fault('invalid-namespace', `stream root must be {${NS_STREAM}}stream, got {${el.uri}}${tag.local}`);
        }
        const end = p.position;
        const header = this.spanTo(end);
        if (exceeds(header, this.maxBytes)) this.fault('policy-violation', `stream header exceeds ${this.maxBytes} bytes`);
        this.lastEnd = end;
        stack.push(el);
        this.handler.onStreamOpen(el);
        this.afterCallback(end);
        return;
      }
      if (depth === 1) {
        if (!tag.isSelfClosing) p.on('text', addText);
      } else {
        parent!.children.push(el);
      }
      stack.push(el);
    });

    p.on('closetag', (tag: SaxesTagNS) => {
      const stack = this.stack;
      const el = stack.pop()!;
      const depth = stack.length;
      if (depth > 1) return;
      const end = p.position;
      if (depth === 1) {
        p.off('text');
        const raw = this.parts.length > 0 ? this.spanTo(end) : this.cur.slice(this.stanzaStart - this.curStart, end - this.curStart);
        if (!closes(raw, tag.name, tag.isSelfClosing)) this.fault('not-well-formed', `mismatched close tag for <${tag.name}>`);
        if (exceeds(raw, this.maxBytes)) this.fault('policy-violation', `stanza exceeds ${this.maxBytes} bytes`);
        this.lastEnd = end;
        this._stanzasIn++;
        this.handler.onStanza(el, raw);
        this.afterCallback(end);
        return;
      }
      // the stream root
      if (!tag.isSelfClosing) {
        const footer = this.spanTo(end);
        if (footer.lastIndexOf('</') !== 0 || !closes(footer, tag.name, false)) {
          this.fault('not-well-formed', `mismatched or misplaced close tag for <${tag.name}>`);
        }
      }
      this.lastEnd = end;
      this.closed = true;
      this.release();
      this.handler.onStreamClose();
      this.afterCallback(end);
      throw STOP;
    });
    return p;
  }
}

/**
 * Element and attribute names we accept: ASCII XML names. saxes accepts every XML 1.0 (5th
 * edition) name character, jabberd2's expat only those of the 4th edition: a name that expat
 * refuses would make the jabberd2 router drop our link when we forward it.
 */
const ASCII_NAME = /^[A-Za-z_][A-Za-z0-9_.:-]*$/;

/** longest entity or character reference name we wait for across chunks */
const MAX_ENTITY_NAME = 32;
/** what the name of an entity or character reference can hold so far */
const ENTITY_NAME_CHARS = /^[A-Za-z0-9_.:#-]*$/;
