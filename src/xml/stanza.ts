/**
 * (main, pure) One stanza on its way through the node: its original bytes (or text) and what
 * routing reads of it, computed only when asked.
 *
 * On the hot path a stanza arrives as bytes found by the ByteFramer (already checked
 * well-formed, with no comments, CDATA or processing instructions); routing needs only the start
 * tag of the depth-1 element (`tag`: a route's to/from/type/error) and of its first child
 * (`inner`: the stanza's to/from/type, session control attributes), which are read straight from
 * the bytes. The whole tree (`el`) is built with the saxes framer only when some code needs more
 * (a bind, a presence whose priority matters); the bytes go out unchanged.
 *
 * Stanzas framed by the StreamFramer (before authentication, or after a fallback) come with their
 * element tree already built, and their text; their bytes are made when asked.
 */
import { StreamFramer } from './stream-framer.ts';
import { deriveScope, firstChild, type XmlElement } from './node.ts';

export type Scope = Readonly<Record<string, string>>;

/** What goes out on a link: original bytes, or text built by the node. */
export type Raw = string | Buffer;

/** A start tag: the parts of an XmlElement that do not need the content. */
export interface StartTag {
  name: string;
  local: string;
  uri: string;
  attrs: Record<string, string>;
  scope: Scope;
}

/** How to read the stanzas of one stream: the scope at depth 1 and the root's start tag. */
export interface StreamContext {
  scope: Scope;
  /** the stream root's start tag as written, to parse a stanza in its context */
  header: string;
}

const LT = 0x3c;
const GT = 0x3e;
const SLASH = 0x2f;
const EQ = 0x3d;
const AMP = 0x26;

function isWs(c: number): boolean {
  return c === 0x20 || c === 0x0a || c === 0x09 || c === 0x0d;
}

const ENTITY = /&(lt|gt|amp|quot|apos|#[0-9]+|#x[0-9a-fA-F]+);/g;
const NAMED: Record<string, string> = { lt: '<', gt: '>', amp: '&', quot: '"', apos: "'" };

/** An attribute value as the XML parser gives it: whitespace normalized, references replaced. */
function attrValue(b: Buffer, from: number, to: number): string {
  let ascii = true;
  let plain = true;
  for (let i = from; i < to; i++) {
    const c = b[i]!;
    if (c >= 0x80) ascii = false;
    else if (c === AMP || c === 0x09 || c === 0x0a || c === 0x0d) plain = false;
  }
  const s = b.toString(ascii ? 'latin1' : 'utf8', from, to);
  if (plain) return s;
  return s.replace(/[\t\n\r]/g, ' ').replace(ENTITY, (_, e: string) =>
    e[0] === '#' ? String.fromCodePoint(e[1] === 'x' ? Number.parseInt(e.slice(2), 16) : Number.parseInt(e.slice(1), 10)) : NAMED[e]!);
}

function ownAttr(attrs: Record<string, string>, k: string, v: string): void {
  if (k === '__proto__') Object.defineProperty(attrs, k, { value: v, enumerable: true, writable: true, configurable: true });
  else attrs[k] = v;
}

/**
 * Reads the start tag at `b[at]` (a `<`) of well-formed markup. Returns the tag and the index
 * just past its `>`, with `empty` set for `<x/>`.
 */
export function readStartTag(b: Buffer, at: number, parent: Scope): { tag: StartTag; end: number; empty: boolean } {
  let i = at + 1;
  const n = b.length;
  while (i < n && !isWs(b[i]!) && b[i] !== SLASH && b[i] !== GT) i++;
  const name = b.toString('latin1', at + 1, i);
  const attrs: Record<string, string> = {};
  let empty = false;
  for (;;) {
    while (i < n && isWs(b[i]!)) i++;
    if (i >= n) throw new Error('unterminated start tag');
    const c = b[i]!;
    if (c === GT) {
      i++;
      break;
    }
    if (c === SLASH) {
      empty = true;
      i += 2;
      break;
    }
    const ks = i;
    while (i < n && b[i] !== EQ && !isWs(b[i]!)) i++;
    const key = b.toString('latin1', ks, i);
    while (i < n && b[i] !== EQ) i++;
    i++;
    while (i < n && isWs(b[i]!)) i++;
    const q = b[i]!;
    const vs = i + 1;
    const ve = b.indexOf(q, vs);
    if (ve < 0) throw new Error('unterminated attribute value');
    ownAttr(attrs, key, attrValue(b, vs, ve));
    i = ve + 1;
  }
  const scope = deriveScope(attrs, parent);
  const colon = name.indexOf(':');
  const prefix = colon < 0 ? '' : name.slice(0, colon);
  return {
    tag: { name, local: colon < 0 ? name : name.slice(colon + 1), uri: Object.hasOwn(scope, prefix) ? scope[prefix]! : '', attrs, scope },
    end: i,
    empty,
  };
}

/** Builds the element tree of one stanza's bytes, read in its stream's context. */
export function parseStanza(bytes: Buffer, ctx: StreamContext): XmlElement {
  let el: XmlElement | null = null;
  let err: string | null = null;
  const f = new StreamFramer({
    onStreamOpen: () => {},
    onStanza: (e) => {
      el ??= e;
    },
    onStreamClose: () => {},
    onError: (fault) => {
      err ??= `${fault.condition}: ${fault.message}`;
    },
  }, { maxStanzaBytes: bytes.length + ctx.header.length * 3 + 16, maxDepth: 1 << 20 });
  f.write(Buffer.from(ctx.header, 'utf8'));
  f.write(bytes);
  if (el === null) throw new Error(`stanza cannot be parsed: ${err ?? 'incomplete'}`);
  return el;
}

export class Stanza {
  private _tag: StartTag | null;
  /** undefined: not looked for yet; null: none */
  private _inner: StartTag | null | undefined;
  private _el: XmlElement | null;
  private _bytes: Buffer | null;
  private _text: string | null;

  private constructor(
    private readonly ctx: StreamContext | null,
    el: XmlElement | null,
    bytes: Buffer | null,
    text: string | null,
  ) {
    this._el = el;
    this._tag = el;
    this._inner = undefined;
    this._bytes = bytes;
    this._text = text;
  }

  /** A stanza found by the ByteFramer: well-formed bytes of the stream described by `ctx`. */
  static fromBytes(bytes: Buffer, ctx: StreamContext): Stanza {
    return new Stanza(ctx, null, bytes, null);
  }

  /** A stanza framed by the StreamFramer, or built by the node: its tree and its text. */
  static fromElement(el: XmlElement, text: string): Stanza {
    return new Stanza(null, el, null, text);
  }

  /** The start tag of the depth-1 element. */
  get tag(): StartTag {
    if (this._tag === null) this._tag = readStartTag(this._bytes!, 0, this.ctx!.scope).tag;
    return this._tag;
  }

  /** The start tag of its first child element (undefined: none). */
  get inner(): StartTag | undefined {
    if (this._inner === undefined) {
      if (this._el !== null) this._inner = firstChild(this._el) ?? null;
      else this._inner = this.readInner();
    }
    return this._inner ?? undefined;
  }

  private readInner(): StartTag | null {
    const b = this._bytes!;
    const top = readStartTag(b, 0, this.ctx!.scope);
    this._tag ??= top.tag;
    if (top.empty) return null;
    const lt = b.indexOf(LT, top.end);
    if (lt < 0 || b[lt + 1] === SLASH) return null;
    if (b[lt + 1] === 0x21 || b[lt + 1] === 0x3f) return firstChild(this.el) ?? null; // <! or <? (not on the fast path)
    return readStartTag(b, lt, top.tag.scope).tag;
  }

  /** The whole element tree (parsed on first use when the stanza came as bytes). */
  get el(): XmlElement {
    if (this._el === null) {
      this._el = parseStanza(this._bytes!, this.ctx!);
      this._tag = this._el;
    }
    return this._el;
  }

  /** What to send: the original bytes when there are, else the text. */
  get raw(): Raw {
    return this._bytes ?? this._text!;
  }

  get bytes(): Buffer {
    return (this._bytes ??= Buffer.from(this._text!, 'utf8'));
  }

  get text(): string {
    return (this._text ??= this._bytes!.toString('utf8'));
  }

  attr(name: string): string | undefined {
    return this.tag.attrs[name];
  }
}

/** The length in bytes of what goes out. */
export function rawLength(r: Raw): number {
  return typeof r === 'string' ? Buffer.byteLength(r, 'utf8') : r.length;
}

/** The stanza's original text or bytes with one attribute added to its start tag (a bounce, a log copy). */
export function withAttr(st: Stanza, name: string, value: string): Raw {
  const at = 1 + st.tag.name.length;
  const add = ` ${name}='${value}'`;
  const r = st.raw;
  if (typeof r === 'string') return `${r.slice(0, at)}${add}${r.slice(at)}`;
  return Buffer.concat([r.subarray(0, at), Buffer.from(add, 'utf8'), r.subarray(at)]);
}
