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

/** byte tables: XML whitespace; what ends an element name; what an attribute value needs done to it (1: normalize, 2: UTF-8) */
const WS = new Uint8Array(256);
const STOP = new Uint8Array(256);
const VALUE = new Uint8Array(256);
for (const c of [0x20, 0x0a, 0x09, 0x0d]) {
  WS[c] = 1;
  STOP[c] = 1;
  VALUE[c] = c === 0x20 ? 0 : 1;
}
STOP[SLASH] = 1;
STOP[GT] = 1;
VALUE[AMP] = 1;
for (let c = 0x80; c < 256; c++) VALUE[c] = 2;

const ENTITY = /&(lt|gt|amp|quot|apos|#[0-9]+|#x[0-9a-fA-F]+);/g;
const NAMED: Record<string, string> = { lt: '<', gt: '>', amp: '&', quot: '"', apos: "'" };

type Latin1 = Buffer & { latin1Slice(start: number, end: number): string; utf8Slice(start: number, end: number): string };

/**
 * Strings met again and again (attribute names, namespace URIs, addresses such as `sm` or the
 * domain): a small direct-mapped cache, checked byte for byte, so that a repeated name or value
 * costs no native call and no new string. ASCII only, short strings only.
 */
const kInternSlots = 2048;
const kInternMax = 64;
const interned: (string | undefined)[] = new Array(kInternSlots);

/** Values interned when at most this long (namespace URIs: up to kInternMax). */
const kInternValueMax = 16;

function hashOf(b: Latin1, from: number, to: number): number {
  let h = 0;
  for (let i = from; i < to; i++) h = (Math.imul(h, 31) + b[i]!) | 0;
  return h;
}

function ascii(b: Latin1, from: number, to: number, hash: number): string {
  const len = to - from;
  if (len > kInternMax) return b.latin1Slice(from, to);
  const slot = (hash ^ (hash >>> 11)) & (kInternSlots - 1);
  const c = interned[slot];
  if (c !== undefined && c.length === len) {
    let k = 0;
    while (k < len && c.charCodeAt(k) === b[from + k]) k++;
    if (k === len) return c;
  }
  const str = b.latin1Slice(from, to);
  interned[slot] = str;
  return str;
}

/** Scope of an element whose only declaration is a default namespace, by parent scope and URI. */
const defaultScopes = new WeakMap<Scope, Map<string, Scope>>();

function scopeWithDefault(parent: Scope, uri: string): Scope {
  let m = defaultScopes.get(parent);
  if (m === undefined) defaultScopes.set(parent, (m = new Map()));
  let sc = m.get(uri);
  if (sc === undefined) {
    if (m.size >= 64) m.clear();
    sc = Object.freeze({ ...parent, '': uri });
    m.set(uri, sc);
  }
  return sc;
}

/** Scope of an element with several declarations, by parent scope and the declarations as written. */
const declScopes = new WeakMap<Scope, Map<string, Scope>>();

function scopeWithDecls(parent: Scope, key: string, attrs: Record<string, string>): Scope {
  let m = declScopes.get(parent);
  if (m === undefined) declScopes.set(parent, (m = new Map()));
  let sc = m.get(key);
  if (sc === undefined) {
    if (m.size >= 256) m.clear();
    sc = Object.freeze({ ...deriveScope(attrs, parent) });
    m.set(key, sc);
  }
  return sc;
}

/** An attribute value as the XML parser gives it, from its raw text: whitespace normalized, references replaced. */
function normalize(s: string): string {
  return s.replace(/[\t\n\r]/g, ' ').replace(ENTITY, (_, e: string) =>
    e[0] === '#' ? String.fromCodePoint(e[1] === 'x' ? Number.parseInt(e.slice(2), 16) : Number.parseInt(e.slice(1), 10)) : NAMED[e]!);
}

/**
 * Reads the start tag at `b[at]` (a `<`) of well-formed markup (the ByteFramer's output: ASCII
 * names). Returns the tag and the index just past its `>`, with `empty` set for `<x/>`.
 */
export function readStartTag(buf: Buffer, at: number, parent: Scope): { tag: StartTag; end: number; empty: boolean } {
  const b = buf as Latin1;
  const n = b.length;
  let i = at + 1;
  let h = 0;
  while (i < n) {
    const c = b[i]!;
    if (STOP[c] === 1) break;
    h = (Math.imul(h, 31) + c) | 0;
    i++;
  }
  const name = ascii(b, at + 1, i, h);
  const attrs: Record<string, string> = {};
  let empty = false;
  /** 0: no declaration; 1: only a default namespace (`defaultUri`); 2: others (`declKey`) */
  let decl = 0;
  let defaultUri = '';
  let declKey = '';
  for (;;) {
    while (i < n && WS[b[i]!] === 1) i++;
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
    h = 0;
    while (i < n) {
      const k = b[i]!;
      if (k === EQ || WS[k] === 1) break;
      h = (Math.imul(h, 31) + k) | 0;
      i++;
    }
    const key = ascii(b, ks, i, h);
    while (i < n && b[i] !== EQ) i++;
    i++;
    while (i < n && WS[b[i]!] === 1) i++;
    const q = b[i]!;
    const vs = ++i;
    let special = 0;
    while (i < n) {
      const k = b[i]!;
      if (k === q) break;
      special |= VALUE[k]!;
      i++;
    }
    if (i >= n) throw new Error('unterminated attribute value');
    const isDecl = b[ks] === 0x78 /* x */ && key.startsWith('xmlns') && (key.length === 5 || key.charCodeAt(5) === 0x3a);
    // repeated values are short names (`sm`, `c2s`, the domain, `chat`) and namespace URIs;
    // addresses of users and session ids vary: a plain slice
    let v = (special & 2) !== 0 ? b.utf8Slice(vs, i) : i - vs <= (isDecl ? kInternMax : kInternValueMax) ? ascii(b, vs, i, hashOf(b, vs, i)) : b.latin1Slice(vs, i);
    if ((special & 1) !== 0) v = normalize(v);
    i++;
    if (key === '__proto__') Object.defineProperty(attrs, key, { value: v, enumerable: true, writable: true, configurable: true });
    else attrs[key] = v;
    if (isDecl) {
      declKey += `${key}\u0000${v}\u0000`;
      if (decl === 0 && key.length === 5) {
        decl = 1;
        defaultUri = v;
      } else decl = 2;
    }
  }
  const scope = decl === 0 ? parent : decl === 1 ? scopeWithDefault(parent, defaultUri) : scopeWithDecls(parent, declKey, attrs);
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

  /** index just past the start tag's `>` in the bytes (0: the element is empty; -1: not read) */
  private _tagEnd = -1;

  private readTag(): StartTag {
    const r = readStartTag(this._bytes!, 0, this.ctx!.scope);
    this._tagEnd = r.empty ? 0 : r.end;
    return (this._tag = r.tag);
  }

  /** The start tag of the depth-1 element. */
  get tag(): StartTag {
    return this._tag ?? this.readTag();
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
    if (this._tagEnd < 0) this.readTag();
    if (this._tagEnd === 0) return null; // <x/>
    const lt = b.indexOf(LT, this._tagEnd);
    if (lt < 0 || b[lt + 1] === SLASH) return null;
    if (b[lt + 1] === 0x21 || b[lt + 1] === 0x3f) return firstChild(this.el) ?? null; // <! or <? (not on the fast path)
    return readStartTag(b, lt, this._tag!.scope).tag;
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

/** The stanza's original text or bytes with one attribute added to its start tag (a bounce, a log copy). */
export function withAttr(st: Stanza, name: string, value: string): Raw {
  const at = 1 + st.tag.name.length;
  const add = ` ${name}='${value}'`;
  const r = st.raw;
  if (typeof r === 'string') return `${r.slice(0, at)}${add}${r.slice(at)}`;
  return Buffer.concat([r.subarray(0, at), Buffer.from(add, 'utf8'), r.subarray(at)]);
}
