/**
 * Seeded input generators for the listener fuzz tests (test/fuzz/*): mostly *almost valid* XML
 * made by structure-aware mutation of real jabberd2 traffic (the captures in
 * /work/shared/fixtures/jabberd2), plus byte-level damage and some pure random bytes.
 *
 * Everything is driven by one `Rng` per case (mulberry32 from split.ts), seeded from the run
 * seed, the face and the case index (`caseSeed`), so one case can be replayed alone.
 *
 * - `samples(dir)`: the stanzas jabberd2 really sent on the component protocol, per direction
 *   (C>R: what a component sends its router; R>C: what the router sends a component).
 * - `MEl`: a mutable element tree (qualified names and attribute order as written, raw pieces
 *   allowed anywhere) with a serializer that does NOT enforce well-formedness.
 * - `mutateTree` / `mutateBytes`: one random mutation of a tree / of serialized bytes.
 * - `xmlCase`: a sequence of (mutated) elements for one fuzz case.
 */
import { StreamFramer } from '../../src/xml/stream-framer.ts';
import type { XmlElement } from '../../src/xml/node.ts';
import {
  NS_CLIENT, NS_COMPONENT, NS_COMPONENT_ACCEPT, NS_SASL, NS_SESSION, NS_STREAM, NS_STREAMS_ERR,
} from '../../src/protocol/ns.ts';
import { connections, loadCapture, type Direction } from './captures.ts';
import { prng } from './split.ts';

// ---------------------------------------------------------------------------------------------
// Random numbers

/** 32-bit mix (murmur3 finalizer). */
function mix32(h: number): number {
  h = Math.imul(h ^ (h >>> 16), 0x85ebca6b);
  h = Math.imul(h ^ (h >>> 13), 0xc2b2ae35);
  return (h ^ (h >>> 16)) >>> 0;
}

/** The seed of case `index` of `face` in a run seeded with `runSeed`. */
export function caseSeed(runSeed: number, face: string, index: number): number {
  let h = mix32(runSeed >>> 0);
  for (let i = 0; i < face.length; i++) h = mix32(h ^ face.charCodeAt(i));
  return mix32(h ^ Math.imul(index + 1, 0x9e3779b1));
}

export class Rng {
  private readonly f: () => number;
  constructor(readonly seed: number) {
    this.f = prng(seed);
  }
  next(): number {
    return this.f();
  }
  /** integer in [0, n) */
  int(n: number): number {
    return Math.floor(this.f() * n);
  }
  /** integer in [lo, hi] */
  range(lo: number, hi: number): number {
    return lo + this.int(hi - lo + 1);
  }
  chance(p: number): boolean {
    return this.f() < p;
  }
  pick<T>(a: readonly T[]): T {
    return a[this.int(a.length)]!;
  }
  /** pick by weight: [[weight, value], ...] */
  weighted<T>(a: readonly (readonly [number, T])[]): T {
    let total = 0;
    for (const [w] of a) total += w;
    let r = this.f() * total;
    for (const [w, v] of a) {
      if ((r -= w) < 0) return v;
    }
    return a[a.length - 1]![1];
  }
  bytes(n: number): Buffer {
    const b = Buffer.allocUnsafe(n);
    for (let i = 0; i < n; i++) b[i] = this.int(256);
    return b;
  }
  /** a size, mostly small, sometimes large */
  size(max: number): number {
    return this.weighted([[6, this.range(0, 8)], [3, this.range(0, 64)], [1, this.range(0, max)]]);
  }
  str(alphabet: string, n: number): string {
    let s = '';
    for (let i = 0; i < n; i++) s += alphabet[this.int(alphabet.length)];
    return s;
  }
  hex(n: number): string {
    return this.str('0123456789abcdef', n);
  }
}

// ---------------------------------------------------------------------------------------------
// Real traffic

export interface Sample {
  raw: string;
  el: XmlElement;
}

const sampleCache = new Map<Direction, Sample[]>();

/** Every stanza of one direction of the jabberd2 captures (SASL included), in order. */
export function samples(dir: Direction): Sample[] {
  const hit = sampleCache.get(dir);
  if (hit) return hit;
  const out: Sample[] = [];
  for (const file of ['sm-router.log', 'c2s-router.log']) {
    for (const c of connections(loadCapture(file))) {
      const framer: StreamFramer = new StreamFramer(
        {
          onStreamOpen: () => {},
          onStanza: (el, raw) => {
            out.push({ el, raw });
            // the stream restarts after SASL: after <success/> (router side) or after the
            // component's <response/> (the next thing it sends is the new header)
            if (el.uri === NS_SASL && (el.local === (dir === 'R>C' ? 'success' : 'response'))) framer.reset();
          },
          onStreamClose: () => {},
          onError: (f) => {
            throw new Error(`capture ${file} #${c.conn} ${dir}: ${f.message}`);
          },
        },
        { maxStanzaBytes: 1 << 22, maxDepth: 200 },
      );
      framer.write(c.bytes[dir]);
    }
  }
  if (out.length === 0) throw new Error(`no ${dir} stanzas in the captures`);
  sampleCache.set(dir, out);
  return out;
}

// ---------------------------------------------------------------------------------------------
// Mutable trees

/** An attribute value: text (escaped on output) or raw (written as is, between the quotes). */
export type MAttrVal = string | { raw: string };
export interface MEl {
  name: string;
  attrs: [string, MAttrVal][];
  kids: MKid[];
}
export type MKid = MEl | { text: string } | { raw: string };

function isEl(k: MKid): k is MEl {
  return (k as MEl).name !== undefined;
}

export function fromXml(el: XmlElement): MEl {
  return {
    name: el.name,
    attrs: Object.entries(el.attrs),
    kids: el.children.map((c) => (typeof c === 'string' ? { text: c } : fromXml(c))),
  };
}

export function clone(e: MEl): MEl {
  return {
    name: e.name,
    attrs: e.attrs.map(([k, v]) => [k, typeof v === 'string' ? v : { raw: v.raw }]),
    kids: e.kids.map((k) => (isEl(k) ? clone(k) : { ...k })),
  };
}

export function el(name: string, attrs: Record<string, string> = {}, kids: MKid[] = []): MEl {
  return { name, attrs: Object.entries(attrs), kids };
}

const escA = (s: string, q: string): string =>
  s.replace(/[&<'"]/g, (c) => (c === '&' ? '&amp;' : c === '<' ? '&lt;' : c === q ? (q === "'" ? '&apos;' : '&quot;') : c));
const escT = (s: string): string => s.replace(/[&<>]/g, (c) => (c === '&' ? '&amp;' : c === '<' ? '&lt;' : '&gt;'));

/** Serializes without checking anything (names, duplicates, prefixes are written as they are). */
export function ser(e: MEl, rng?: Rng): string {
  const parts: string[] = [];
  const q = rng?.chance(0.2) ? '"' : "'";
  const walk = (x: MEl): void => {
    let s = '<' + x.name;
    for (const [k, v] of x.attrs) s += ` ${k}=${q}${typeof v === 'string' ? escA(v, q) : v.raw}${q}`;
    if (x.kids.length === 0 && !(rng?.chance(0.3) ?? false)) {
      parts.push(s + '/>');
      return;
    }
    parts.push(s + '>');
    for (const k of x.kids) {
      if (isEl(k)) walk(k);
      else if ('text' in k) parts.push(escT(k.text));
      else parts.push(k.raw);
    }
    parts.push(`</${x.name}>`);
  };
  walk(e);
  return parts.join('');
}

/** Every element of the tree with its parent (root first). */
function nodes(root: MEl): { e: MEl; parent: MEl | null; depth: number }[] {
  const out: { e: MEl; parent: MEl | null; depth: number }[] = [];
  const walk = (e: MEl, parent: MEl | null, depth: number): void => {
    if (out.length > 5000) return;
    out.push({ e, parent, depth });
    for (const k of e.kids) if (isEl(k)) walk(k, e, depth + 1);
  };
  walk(root, null, 0);
  return out;
}

// ---------------------------------------------------------------------------------------------
// Vocabulary

export const URIS = [
  NS_COMPONENT, NS_COMPONENT, NS_CLIENT, NS_SESSION, NS_SASL, NS_STREAM, NS_COMPONENT_ACCEPT, NS_STREAMS_ERR, '',
  'jabber:server', 'urn:x-fuzz', 'http://www.w3.org/XML/1998/namespace', 'http://www.w3.org/2000/xmlns/',
  'http://jabberd.jabberstudio.org/ns/component/1.0 ', 'HTTP://JABBERD.JABBERSTUDIO.ORG/NS/COMPONENT/1.0',
];

const NAMES = [
  'route', 'route', 'bind', 'unbind', 'throttle', 'presence', 'message', 'iq', 'session', 'sc:session', 'default', 'log',
  'stream:stream', 'stream:error', 'stream:features', 'auth', 'response', 'challenge', 'success', 'failure', 'abort',
  'handshake', 'x', 'Route', 'ROUTE', 'r\u00f6ute', 'p:route', 'xmlns:route', 'xml:route', 'xmlns', ':route', 'route:',
  'a:b:c', '1route', '-x', '_', '\u{10000}x', 'r\u0301', 'route\u00b7', 'stream:route', 'sc:route',
];

const ATTRS = [
  'to', 'from', 'type', 'error', 'multi', 'name', 'id', 'xmlns', 'xmlns:sc', 'xmlns:stream', 'action', 'target',
  'sc:sm', 'sc:c2s', 'sm:sm', 'mechanism', 'version', 'xml:lang', 'xmlns:xml', 'xmlns:xmlns', 'xmlns:', 'a:b:c', ':x',
  'x:', 'failed', 'sc:failed', 'TO', 'From', 'to\u00e9', 'p:to',
];

const USERS = ['alice', 'bob', 'carol', 'x', 'Alice', '\u00fc', 'a.b', 'a+b'];
const RESOURCES = ['home', 'work', 'r', 'a/b', '\u{1F600}', ' '];

const RAW_VALUES = [
  '&amp;', '&lt;x&gt;', '&#65;', '&#0;', '&#x1;', '&#x9;', '&#xD800;', '&#xDFFF;', '&#xFFFE;', '&#xFFFF;', '&#x10FFFF;',
  '&#x110000;', '&#99999999999;', '&foo;', '&', '<', '>', '&#;', '&#x;', '&#-1;', '\x01', '\x00', '\x7f', '&apos;&quot;',
  '\u0085', '\u2028', ']]>', '&lt', '&#x41', '&amp;amp;',
];

const RAW_TEXT = [
  '<![CDATA[x]]>', '<![CDATA[<route/>]]>', ']]>', '<!-- c -->', '<?pi x?>', '<!DOCTYPE x>', '<!ENTITY e "x">',
  '&foo;', '&amp;', '&#0;', '&#x10FFFF;', '&#xD800;', '&#xFFFE;', '&', '\x00', '\x01', '\x1b[0m', '\r\n', '\r',
  '</x>', '<x>', '<>', '</>', '<x y>', '<x y=>', "<x y='1' y='2'/>", "<p:x/>", "<x xmlns:p=''/>", "<x xmlns=''/>",
  '\uFEFF', '\uFFFE', '\uFFFF', '\u{10FFFF}', '\u0000',
];

const INJECT = [
  '</stream:stream>', "<?xml version='1.0'?>", "<stream:stream xmlns:stream='http://etherx.jabber.org/streams' version='1.0'>",
  '<!-- c -->', '<?pi?>', '<!DOCTYPE x>', '<![CDATA[x]]>', 'text', '\x00', '&', '<', '>', ' ', '\n', '\uFEFF', '/>', '</',
  "'", '"', '=', ':', "<stream:error xmlns:stream='http://etherx.jabber.org/streams'/>",
];

/** Invalid or tricky UTF-8 byte sequences. */
const BAD_UTF8: readonly number[][] = [
  [0xff], [0xfe], [0xc3], [0xe2, 0x82], [0xf0, 0x9f, 0x98], [0xc0, 0xaf], [0xe0, 0x80, 0xaf], [0xed, 0xa0, 0x80],
  [0xed, 0xbf, 0xbf], [0xf4, 0x90, 0x80, 0x80], [0xef, 0xbf, 0xbe], [0x00], [0x80], [0xbf], [0xc2, 0x85], [0xef, 0xbb, 0xbf],
];

export interface GenContext {
  /** names worth addressing (own bound name, other components, domains...) */
  names: readonly string[];
  /** name the sender holds (route `from`), if any */
  own?: string;
}

/** An attribute value: a name, a JID, an edge case, or a raw (unescaped) piece. */
export function value(rng: Rng, ctx: GenContext): MAttrVal {
  const name = (): string => rng.pick(ctx.names);
  switch (rng.int(22)) {
    case 0: case 1: case 2: return name();
    case 3: return `${rng.pick(USERS)}@${name()}`;
    case 4: return `${rng.pick(USERS)}@${name()}/${rng.pick(RESOURCES)}`;
    case 5: return rng.pick(['', ' ', '.', '@', '/', '@/', 'a@', '@b', 'a@b@c', '/x', 'x/', 'x//y', '-', 'localhost']);
    case 6: return name().toUpperCase();
    case 7: return name() + '.';
    case 8: return 'x'.repeat(rng.pick([64, 1023, 1024, 1025, 3071, 3072, 5000]));
    case 9: return rng.pick(['\u00fcn\u00efc\u00f8d\u00e9.test', '\u{1F600}@x.test', '\u202e.test', '\uFEFFexample.test', 'ex\u0000ample.test', 'a b.test', 'a\tb']);
    case 10: return rng.pick(['400', '401', '403', '404', '409', '503', '0', '-1', '1e9', 'abc', '99999999999999999999']);
    case 11: return rng.pick(['broadcast', 'log', 'unavailable', 'to', 'from', 'start', 'started', 'end', 'ended', 'bogus', 'create', 'created', 'delete', 'deleted', 'replaced', 'get', 'set', 'result', 'error', 'chat', 'DIGEST-MD5', 'PLAIN', '1.0', '0.9', '2.0']);
    case 12: case 13: return { raw: rng.pick(RAW_VALUES) };
    case 14: return { raw: name() + rng.pick(RAW_VALUES) };
    case 15: return rng.str('abcdefghijklmnopqrstuvwxyz0123456789.-@/_', rng.range(1, 40));
    case 16: return rng.hex(40);
    case 17: return 'x'.repeat(rng.pick([65536, 70000, 200000]));
    case 18: return `${name()}--${rng.pick(['n1', 'n2', 'n3', 'f1', 'nobody', ''])}`;
    case 19: return rng.str(' \t\r\n', rng.range(1, 4));
    case 20: return { raw: `${name()}' extra='1` };
    default: return rng.str('\u0100\u4e00\u00e9\u0301\u{1F600}abc', rng.range(1, 12));
  }
}

function textValue(rng: Rng, ctx: GenContext): MKid {
  switch (rng.int(6)) {
    case 0: return { raw: rng.pick(RAW_TEXT) };
    case 1: return { text: 'x'.repeat(rng.pick([100, 4096, 65000, 65536, 70000, 300000])) };
    case 2: return { text: rng.str(' \t\n', rng.range(1, 20)) };
    case 3: {
      const v = value(rng, ctx);
      return typeof v === 'string' ? { text: v } : { raw: v.raw };
    }
    case 4: return { raw: rng.str('<>&;/=\'"abc \n', rng.range(1, 30)) };
    default: return { text: rng.str('hello \u00e9\u4e00\u{1F600}', rng.range(1, 50)) };
  }
}

// ---------------------------------------------------------------------------------------------
// Tree mutations

type TreeMutator = (rng: Rng, root: MEl, ctx: GenContext) => string;

function pickNode(rng: Rng, root: MEl): { e: MEl; parent: MEl | null; depth: number } {
  const all = nodes(root);
  // the route and its first child carry most of the protocol: favour them
  return rng.chance(0.5) ? all[0]! : rng.chance(0.5) && all[1] ? all[1] : rng.pick(all);
}

const TREE_MUTATORS: readonly (readonly [number, TreeMutator])[] = [
  [12, (rng, root, ctx) => {
    const { e } = pickNode(rng, root);
    const existing = e.attrs.map(([k]) => k);
    const k = existing.length > 0 && rng.chance(0.6) ? rng.pick(existing) : rng.pick(ATTRS);
    const v = value(rng, ctx);
    const i = e.attrs.findIndex(([a]) => a === k);
    if (i >= 0) e.attrs[i] = [k, v];
    else e.attrs.push([k, v]);
    return `set @${k}`;
  }],
  [4, (rng, root) => {
    const { e } = pickNode(rng, root);
    if (e.attrs.length === 0) return 'del @(none)';
    const i = rng.int(e.attrs.length);
    const [k] = e.attrs.splice(i, 1)[0]!;
    return `del @${k}`;
  }],
  [2, (rng, root) => {
    const { e } = pickNode(rng, root);
    if (e.attrs.length === 0) return 'dup @(none)';
    const a = rng.pick(e.attrs);
    if (rng.chance(0.5)) {
      e.attrs.push([a[0], a[1]]);
      return `dup @${a[0]}`;
    }
    // the same expanded name through two prefixes
    e.attrs.push(['xmlns:p1', 'urn:dup'], ['xmlns:p2', 'urn:dup'], ['p1:a', '1'], ['p2:a', '2']);
    return 'dup expanded attr';
  }],
  [5, (rng, root) => {
    const { e } = pickNode(rng, root);
    const was = e.name;
    e.name = rng.pick(NAMES);
    return `rename ${was}->${e.name}`;
  }],
  [6, (rng, root) => {
    const { e } = pickNode(rng, root);
    const i = e.attrs.findIndex(([k]) => k === 'xmlns');
    if (i >= 0 && rng.chance(0.3)) {
      e.attrs.splice(i, 1);
      return 'drop xmlns';
    }
    const uri = rng.pick(URIS);
    if (i >= 0) e.attrs[i] = ['xmlns', uri];
    else e.attrs.unshift(['xmlns', uri]);
    return `xmlns=${uri}`;
  }],
  [5, (rng, root) => {
    // a prefix: declared here, on an ancestor, on a descendant only, or not at all
    const all = nodes(root);
    const t = rng.pick(all);
    const p = rng.pick(['c', 'sc', 'stream', 'x', 'xml', 'xmlns', 'p', 'sm']);
    const local = t.e.name.includes(':') ? t.e.name.slice(t.e.name.indexOf(':') + 1) : t.e.name;
    t.e.name = `${p}:${local}`;
    const where = rng.int(3);
    if (where === 0) t.e.attrs.push([`xmlns:${p}`, rng.pick(URIS)]);
    else if (where === 1) root.attrs.push([`xmlns:${p}`, rng.pick(URIS)]);
    return `prefix ${p}:${local} (${['declared', 'declared on root', 'undeclared'][where]})`;
  }],
  [3, (rng, root) => {
    const { e } = pickNode(rng, root);
    const d = rng.pick([1, 2, 10, 62, 63, 64, 65, 100, 1000]);
    let inner: MEl = { name: rng.pick(['x', 'route', 'message']), attrs: [], kids: e.kids };
    for (let i = 1; i < d; i++) inner = { name: 'x', attrs: [], kids: [inner] };
    e.kids = [inner];
    return `wrap depth ${d}`;
  }],
  [4, (rng, root) => {
    const { e } = pickNode(rng, root);
    const els = e.kids.filter(isEl);
    switch (rng.int(4)) {
      case 0: e.kids = []; return 'no kids';
      case 1: if (els.length) e.kids.push(clone(rng.pick(els))); return 'dup kid';
      case 2: e.kids.reverse(); return 'reverse kids';
      default: if (els.length) e.kids = els[0]!.kids; return 'hoist grandkids';
    }
  }],
  [3, (rng, root) => {
    const { e } = pickNode(rng, root);
    e.kids.push(clone(root));
    return 'nest root in itself';
  }],
  [6, (rng, root, ctx) => {
    const { e } = pickNode(rng, root);
    e.kids.splice(rng.int(e.kids.length + 1), 0, textValue(rng, ctx));
    return 'insert text';
  }],
  [2, (rng, root) => {
    const { e } = pickNode(rng, root);
    const n = rng.pick([10, 100, 1000, 5000]);
    for (let i = 0; i < n; i++) e.attrs.push([`a${i}`, 'v']);
    return `${n} attrs`;
  }],
  [2, (rng, root) => {
    const { e } = pickNode(rng, root);
    const n = rng.pick([10, 1000, 20000]);
    for (let i = 0; i < n; i++) e.kids.push({ name: 'x', attrs: [], kids: [] });
    return `${n} kids`;
  }],
];

/** Applies one random mutation to the tree; returns what it did (for the failure report). */
export function mutateTree(rng: Rng, root: MEl, ctx: GenContext): string {
  return rng.weighted(TREE_MUTATORS)(rng, root, ctx);
}

// ---------------------------------------------------------------------------------------------
// Byte mutations

function cut(rng: Rng, b: Buffer): number {
  if (b.length === 0) return 0;
  // at a tag boundary half of the time
  if (rng.chance(0.5)) {
    const marks: number[] = [];
    for (let i = 0; i < b.length && marks.length < 2000; i++) if (b[i] === 0x3c || b[i] === 0x3e || b[i] === 0x27 || b[i] === 0x3d) marks.push(i);
    if (marks.length) return rng.pick(marks) + rng.int(2);
  }
  return rng.int(b.length + 1);
}

type ByteMutator = (rng: Rng, b: Buffer) => [Buffer, string];

const BYTE_MUTATORS: readonly (readonly [number, ByteMutator])[] = [
  [5, (rng, b) => { const at = cut(rng, b); return [b.subarray(0, at), `truncate@${at}`]; }],
  [4, (rng, b) => {
    const at = cut(rng, b);
    const ins = rng.chance(0.5) ? Buffer.from(rng.pick(BAD_UTF8)) : rng.bytes(rng.range(1, 16));
    return [Buffer.concat([b.subarray(0, at), ins, b.subarray(at)]), `insert ${ins.toString('hex')}@${at}`];
  }],
  [3, (rng, b) => {
    if (!b.length) return [b, 'flip(empty)'];
    const c = Buffer.from(b);
    const at = rng.int(c.length);
    c[at] = c[at]! ^ (1 << rng.int(8));
    return [c, `flip@${at}`];
  }],
  [3, (rng, b) => {
    if (!b.length) return [b, 'replace(empty)'];
    const c = Buffer.from(b);
    const at = cut(rng, c);
    if (at < c.length) c[at] = rng.pick([0x3c, 0x3e, 0x2f, 0x3d, 0x27, 0x22, 0x26, 0x3a, 0x20, 0x00, 0x3b]);
    return [c, `replace@${at}`];
  }],
  [2, (rng, b) => {
    const a = rng.int(b.length + 1);
    const z = Math.min(b.length, a + rng.size(b.length));
    return [Buffer.concat([b.subarray(0, a), b.subarray(z)]), `delete ${a}..${z}`];
  }],
  [2, (rng, b) => {
    const a = rng.int(b.length + 1);
    const z = Math.min(b.length, a + rng.size(b.length));
    return [Buffer.concat([b.subarray(0, z), b.subarray(a, z), b.subarray(z)]), `duplicate ${a}..${z}`];
  }],
  [4, (rng, b) => {
    const at = cut(rng, b);
    const s = rng.pick(INJECT);
    return [Buffer.concat([b.subarray(0, at), Buffer.from(s), b.subarray(at)]), `inject ${JSON.stringify(s)}@${at}`];
  }],
];

/** Applies one random byte-level mutation. */
export function mutateBytes(rng: Rng, b: Buffer): [Buffer, string] {
  return rng.weighted(BYTE_MUTATORS)(rng, b);
}

/** Pure junk: random bytes, or random markup-ish characters. */
export function junk(rng: Rng): Buffer {
  const n = rng.weighted([[5, rng.range(1, 64)], [3, rng.range(64, 2048)], [1, rng.range(2048, 70000)]]);
  if (rng.chance(0.5)) return rng.bytes(n);
  return Buffer.from(rng.str("<>/='\"&;:?!-[] \nabcxyzstreamroute", n));
}

// ---------------------------------------------------------------------------------------------
// Cases

export interface XmlCase {
  bytes: Buffer;
  /** what was done, for the failure report */
  ops: string[];
}

/** A template: a real stanza (names rewritten into the context) or a built one. */
export function template(rng: Rng, pool: readonly Sample[], ctx: GenContext, extra: readonly (() => MEl)[] = []): MEl {
  if (extra.length && rng.chance(0.35)) return rng.pick(extra)();
  const t = fromXml(rng.pick(pool).el);
  // most real routes name the capture's components: aim them at names that exist here
  for (const a of t.attrs) {
    if (a[0] === 'to' && rng.chance(0.85)) a[1] = rng.pick(ctx.names);
    if (a[0] === 'from' && rng.chance(0.85)) a[1] = ctx.own ?? rng.pick(ctx.names);
    if (a[0] === 'name' && rng.chance(0.85)) a[1] = rng.pick(ctx.names);
  }
  return t;
}

/**
 * One case: 1..4 elements, each a template mutated 0..3 times (0 = valid traffic), the bytes
 * sometimes damaged, sometimes pure junk.
 */
export function xmlCase(rng: Rng, pool: readonly Sample[], ctx: GenContext, extra: readonly (() => MEl)[] = []): XmlCase {
  const ops: string[] = [];
  if (rng.chance(0.06)) {
    const b = junk(rng);
    return { bytes: b, ops: [`junk ${b.length} bytes`] };
  }
  const parts: Buffer[] = [];
  const n = rng.weighted([[5, 1], [3, 2], [1, 3], [1, 4]]);
  for (let i = 0; i < n; i++) {
    const t = template(rng, pool, ctx, extra);
    const k = rng.weighted([[2, 0], [5, 1], [2, 2], [1, 3]]);
    const mops: string[] = [];
    for (let j = 0; j < k; j++) mops.push(mutateTree(rng, t, ctx));
    let b: Buffer = Buffer.from(ser(t, rng), 'utf8');
    if (rng.chance(0.25)) {
      const [m, what] = mutateBytes(rng, b);
      b = m;
      mops.push(what);
    }
    ops.push(`<${t.name}>${mops.length ? ` [${mops.join('; ')}]` : ''}`);
    parts.push(b);
    if (rng.chance(0.1)) parts.push(Buffer.from(rng.pick([' ', '\n', '\r\n\t ', '    '])));
  }
  return { bytes: Buffer.concat(parts), ops };
}

/** Cut points for writing `b` in several socket writes (none most of the time). */
export function splitPoints(rng: Rng, len: number): number[] {
  if (len < 2 || rng.chance(0.5)) return [];
  if (len <= 64 && rng.chance(0.3)) return Array.from({ length: len - 1 }, (_, i) => i + 1);
  const n = rng.range(1, Math.min(8, len - 1));
  const out = new Set<number>();
  for (let i = 0; i < n; i++) out.add(rng.range(1, len - 1));
  return [...out].sort((a, b) => a - b);
}

export function chunks(b: Buffer, points: readonly number[]): Buffer[] {
  const out: Buffer[] = [];
  let prev = 0;
  for (const p of points) {
    if (p <= prev || p >= b.length) continue;
    out.push(b.subarray(prev, p));
    prev = p;
  }
  out.push(b.subarray(prev));
  return out;
}

/** A short printable preview of case bytes for reports. */
export function preview(b: Uint8Array, max = 600): string {
  const s = Buffer.from(b).toString('latin1').replace(/[^\x20-\x7e]/g, (c) => `\\x${c.charCodeAt(0).toString(16).padStart(2, '0')}`);
  return s.length > max ? `${s.slice(0, max)}… (${b.length} bytes)` : s;
}

// ---------------------------------------------------------------------------------------------
// SASL DIGEST-MD5 payloads

/** Splits a directive list into [key, value, quoted] (best effort; input is our own valid text). */
function directives(s: string): [string, string, boolean][] {
  const out: [string, string, boolean][] = [];
  const re = /\s*([^=,\s]+)=("((?:[^"\\]|\\.)*)"|[^,]*)\s*,?/g;
  let m: RegExpExecArray | null;
  while ((m = re.exec(s)) !== null && m[0] !== '') out.push([m[1]!, m[3] ?? m[2]!, m[3] !== undefined]);
  return out;
}

/**
 * A structure-aware mutation of a DIGEST-MD5 response (or challenge) text: directives dropped,
 * repeated, renamed, re-valued, quoting broken, junk added.
 */
export function mutateDigest(rng: Rng, text: string): [string, string] {
  const d = directives(text);
  const ops: string[] = [];
  const n = rng.range(1, 3);
  for (let k = 0; k < n; k++) {
    const i = rng.int(Math.max(d.length, 1));
    switch (rng.int(10)) {
      case 0: if (d.length) { ops.push(`drop ${d[i]![0]}`); d.splice(i, 1); } break;
      case 1: if (d.length) { ops.push(`repeat ${d[i]![0]}`); d.push([...d[i]!]); } break;
      case 2: if (d.length) { ops.push(`KEY ${d[i]![0]}`); d[i]![0] = rng.chance(0.5) ? d[i]![0].toUpperCase() : d[i]![0] + 'x'; } break;
      case 3:
        if (d.length) {
          const v = rng.pick(['', ' ', 'x', '00000002', 'auth-int', 'auth,auth-int', 'md5', 'iso-8859-1', 'utf-8', 'jabberd', 'nobody', '\u00fc',
            'x'.repeat(5000), 'a"b', 'a\\', 'a,b', 'a\r\nb', '\x00', '\x7f', rng.hex(32).toUpperCase(), rng.hex(31), rng.hex(33), 'zz' + rng.hex(30)]);
          ops.push(`${d[i]![0]}=${JSON.stringify(v.slice(0, 20))}`);
          d[i]![1] = v;
        }
        break;
      case 4: if (d.length) { ops.push(`unquote ${d[i]![0]}`); d[i]![2] = !d[i]![2]; } break;
      case 5: ops.push('authzid'); d.push(['authzid', rng.pick(['jabberd', 'other', '', 'x@y']), true]); break;
      case 6: ops.push('unknown directive'); d.push([rng.pick(['foo', 'rspauth', 'maxbuf', 'cipher', '-', '"']), rng.pick(['1', '', 'x y']), rng.chance(0.5)]); break;
      case 7: ops.push('shuffle'); d.reverse(); break;
      case 8: ops.push('empty'); d.length = 0; break;
      default: ops.push('noop');
    }
  }
  let s = d.map(([k, v, q]) => (q ? `${k}="${v.replace(/["\\]/g, (c) => (rng.chance(0.8) ? '\\' + c : c))}"` : `${k}=${v}`)).join(rng.pick([', ', ',', ' , ', ',,', ',\r\n ']));
  if (rng.chance(0.15)) {
    const at = rng.int(s.length + 1);
    const ins = rng.pick(['"', ',', '=', '\\', ' ', '\x00', '\u00ff', '==', 'a=']);
    s = s.slice(0, at) + ins + s.slice(at);
    ops.push(`insert ${JSON.stringify(ins)}@${at}`);
  }
  return [s, ops.join('; ')];
}

/** base64 of the text, sometimes damaged. */
export function base64ish(rng: Rng, text: string): [string, string] {
  const b = Buffer.from(text, 'utf8').toString('base64');
  switch (rng.weighted([[7, 0], [1, 1], [1, 2], [1, 3], [1, 4], [1, 5]])) {
    case 0: return [b, 'base64'];
    case 1: return [b.replace(/=+$/, ''), 'base64 unpadded'];
    case 2: return [b.replace(/(.{8})/g, '$1\n'), 'base64 with newlines'];
    case 3: return [rng.pick(['!!!', '=', '====', '', '*', 'a', 'YQ', '\u00e9']) + b.slice(0, rng.int(b.length)), 'not base64'];
    case 4: return [rng.bytes(rng.range(1, 300)).toString('base64'), 'base64 of junk'];
    default: return [Buffer.from(text, 'utf8').toString('hex'), 'hex instead of base64'];
  }
}

/** The start tag of a stream header (and whatever kids a mutation gave it, unclosed). */
export function serOpen(e: MEl, rng: Rng): string {
  const full = ser({ ...e, kids: [] }, rng);
  const start = full.endsWith('/>') ? full.slice(0, -2) + '>' : full.slice(0, full.indexOf('>') + 1);
  return start + e.kids.map((k) => (isEl(k) ? ser(k, rng) : 'text' in k ? escT(k.text) : k.raw)).join('');
}

export const XML_DECLS = [
  "<?xml version='1.0'?>", "<?xml version='1.0'?>", "<?xml version='1.0'?>", '', "<?xml version='1.1'?>",
  "<?xml version='1.0' encoding='UTF-16'?>", "<?xml version='1.0' encoding='ISO-8859-1'?>", "<?xml version='1.0' encoding='utf-8'?>",
  "<?xml version='1.0' standalone='yes'?>", '<?xml?>', "<?xml version='2.0'?>", "<?XML version='1.0'?>", "\uFEFF<?xml version='1.0'?>",
  "  <?xml version='1.0'?>", "<?xml version='1.0'?><?xml version='1.0'?>", '<!DOCTYPE stream:stream>', "<?xml version='1.0'?><!-- hi -->",
];
