/**
 * Byte-level, streaming stanza framer for an XMPP stream AFTER its stream header: the hot-path
 * replacement for the saxes-based StreamFramer (./stream-framer.ts) once the root is open.
 *
 * Pure: no sockets, timers, loggers or globals; only Buffer, so it runs on the main thread and on
 * worker threads alike. Feed it the bytes of ONE direction of ONE stream with `write()`; it
 * reports every complete depth-1 element (a "stanza") as its exact original bytes, the stream's
 * end tag, or a "fallback": the point where it hands the stream over to a StreamFramer.
 *
 * Contract (pinned by test/unit/xml/byte-framer.test.ts, a differential fuzz against StreamFramer)
 * - It never reports an error. It reports a stanza only when StreamFramer would report the very
 *   same one (same bytes, same place in the stream). Whatever it does not handle with certainty
 *   (a malformation, a limit, or something legal but unusual: comments, CDATA, PIs, non-ASCII
 *   names, odd namespace declarations...) becomes fallback(rest): `rest` is every byte received and
 *   not yet reported, and the caller carries on with a StreamFramer resumed with the same root
 *   (src/workers/handover.ts: resumeFramer), fed `rest` then all further input. That framer then
 *   reports exactly what a single StreamFramer would have reported for the whole input, error
 *   included, whatever the chunking.
 * - Hence the rules: a fallback must come no later than the chunk in which StreamFramer would
 *   fail, and always hands over whole chunks' worth of bytes (rest runs to the end of the current
 *   chunk), so that the resumed framer sees the same chunk boundaries from there on (some of
 *   StreamFramer's checks run per write(): invalid UTF-8, the size of the unfinished stanza, a
 *   dangling entity reference).
 *
 * How it works
 * - One scanner (`scan`) over a byte array, a small state machine whose states are resume points:
 *   between stanzas (IDLE), character data (TEXT), a start tag's name (STAG), between attributes
 *   (ATTRS), inside an attribute value (AVAL), an end tag (ETAG). Inner loops are tight byte loops
 *   over lookup tables (unrolled by four for character data and values); no strings, regexes or
 *   objects are built, except the reported Buffer (a `subarray` of the chunk when the stanza lies
 *   inside it).
 * - Everything it must remember inside a stanza is kept as offsets relative to the stanza's first
 *   byte, in typed arrays: open elements (name, to match end tags), namespace prefixes declared in
 *   the stanza (prefix bytes), the attributes of the tag being read (a signature of each name —
 *   length, first and last byte — so that duplicates are looked for with integer compares).
 * - A stanza unfinished at the end of a chunk is copied to a growable carry buffer (amortized
 *   doubling) and scanning resumes from a checkpoint: the start of the token that was cut (tag
 *   name, attribute name up to its opening quote, end tag, entity reference, `]]` or a U+FFxx
 *   character), or the exact byte in character data, attribute values and between attributes. So
 *   a byte is rescanned only within a cut token; a cut token longer than MAX_TOKEN falls back,
 *   which bounds the rescan and keeps any chunking linear. The next chunk is appended to the carry
 *   in doubling pieces only until the carried stanza completes (reported as a fresh Buffer); the
 *   rest of that chunk is scanned in place.
 * - UTF-8 is checked per chunk before anything in it is reported (node:buffer isUtf8, with the
 *   0–3 bytes of a character split across chunks carried along): StreamFramer rejects a chunk with
 *   invalid UTF-8 before parsing any of it, telling a literal U+FFFD from a decoding error by
 *   counting EF BF BD sequences per write. The scanner simply leaves U+FFFD to it: it falls back
 *   on U+FFFD (EF BF BD) as on U+FFFE/U+FFFF, and on a chunk ending with the first bytes of one
 *   (EF or EF BF), so that the resumed framer sees the same chunk boundaries.
 *
 * What it checks (else fallback), as saxes (`xmlns: true`, XML 1.0) and StreamFramer do:
 * - names: ASCII NCName or NCName:NCName (StreamFramer's ASCII_NAME, saxes' QName split), element
 *   name terminated by whitespace, `>` or `/>`; attributes separated by whitespace, `=` with
 *   optional whitespace, quoted values; end tags matching their start tag, with optional trailing
 *   whitespace; at most MAX_ATTRS attributes per element;
 * - depth (root 0, stanza 1) ≤ maxDepth, stanza size ≤ maxStanzaBytes (also while it arrives);
 * - namespaces: element and attribute prefixes declared (root scope, an ancestor in the stanza, or
 *   the element itself; `xml` always), no `xmlns` element prefix, no duplicate attribute, and no
 *   two attributes with the same local name under different prefixes (possibly the same expanded
 *   name: left to saxes); declarations must have plain printable ASCII values (no whitespace,
 *   quote, `&` or `<`: saxes decodes and trims them), non-empty for prefixes, not the xml/xmlns
 *   namespaces, and must not declare the `xml` or `xmlns` prefixes;
 * - character data and attribute values: only the five predefined entities and character
 *   references (at most 8 digits, lowercase `x`) of XML 1.0 characters; no `<` in values; no `]]>`
 *   in character data; no C0 control other than TAB, LF, CR; no U+FFFD..U+FFFF;
 * - between stanzas: XML whitespace, stanzas, and the root's end tag (→ close()); anything else
 *   (text, comments, PIs, CDATA, a stray end tag) falls back.
 *
 * Legal (StreamFramer reports the stanza) but left to saxes, i.e. a fallback: CDATA sections;
 * character references of more than 8 digits; a literal U+FFFD; a chunk that ends right after the
 * EF of a U+F000..U+FFFF character, or after the EF BF of a U+FFC0..U+FFFC one; namespace
 * declarations of the `xml` prefix, or whose value holds whitespace, a quote, an entity or
 * non-ASCII; an element or attribute name whose local part does not start with a letter or `_`;
 * two attributes with the same local name under different prefixes; more than 64 attributes on
 * an element; a name, attribute head, end tag or reference longer than 512 bytes cut by a chunk
 * boundary. jabberd2 2.7.0 sends none of these (test: the captures frame with no fallback).
 */
import { isUtf8 } from 'node:buffer';
import type { FramerLimits } from './stream-framer.ts';
import { XML_NS } from './node.ts';

/** prefix → namespace URI, '' = default namespace (same shape as XmlElement.scope) */
export type Scope = Readonly<Record<string, string>>;

export interface ByteFramerSink {
  /**
   * a complete depth-1 element, its exact bytes from '<' to the final '>'. The framer never
   * reuses or mutates these bytes afterwards (a subarray of the chunk when the stanza lies inside
   * it; otherwise a fresh Buffer).
   */
  stanza(raw: Buffer): void;
  /** the stream's end tag (e.g. `</stream:stream>`) was seen at depth 0; the framer ignores all further input */
  close(): void;
  /**
   * the framer met something it does not handle: `rest` is every byte received and not yet
   * reported (from the first byte after the last reported stanza/whitespace: i.e. the start of
   * the unfinished stanza, or the offending byte at depth 0; a chunk refused for its UTF-8 is
   * handed over whole) to the end of the current chunk. The caller continues with a saxes
   * StreamFramer resumed with the same root (see resumeFramer in src/workers/handover.ts), fed
   * `rest` and then all further input. The ByteFramer ignores all further input.
   */
  fallback(rest: Buffer): void;
}

const XMLNS_NS = 'http://www.w3.org/2000/xmlns/';

/** a token (name, attribute head, end tag...) cut by a chunk end and longer than this falls back */
const MAX_TOKEN = 512;
/** attributes on one element; more fall back (the duplicate check is quadratic) */
const MAX_ATTRS = 64;
/** digits of a character reference (`&#x0010FFFF;`): StreamFramer fails a dangling one over 32 */
const MAX_REF_DIGITS = 8;
/** chunks up to this size are checked and copied in JS (cheaper than a call into C++) */
const SMALL = 32;
/** first piece of a chunk appended to the carry to finish a carried stanza (then doubling) */
const FIRST_PIECE = 512;
/** a carry buffer grown past this is dropped once its stanza is done */
const CARRY_KEEP = 64 * 1024;

// --- bytes and classes -------------------------------------------------------------------------

const SP = 0x20;
const DQ = 0x22;
const HASH = 0x23;
const AMP = 0x26;
const SQ = 0x27;
const SLASH = 0x2f;
const COLON = 0x3a;
const SEMI = 0x3b;
const LT = 0x3c;
const EQ = 0x3d;
const GT = 0x3e;
const RSQB = 0x5d;
const LOWER_X = 0x78;
/** lead byte of U+F000..U+FFFF: U+FFFD (EF BF BD), U+FFFE, U+FFFF are refused */
const EF = 0xef;
const BF = 0xbf;
const BD = 0xbd;

const C_WS = 1;
const C_NAME_START = 2;
const C_NAME = 4;

/** character classes: XML whitespace, ASCII name start (A-Z a-z _), ASCII name (+ 0-9 . -) */
const CC = new Uint8Array(256);
/** bytes that end a run of character data: < & ] (for `]]>`), forbidden C0 controls, EF */
const TEXT_STOP = new Uint8Array(256);
/** bytes that end a run of an attribute value: both quotes, < &, forbidden C0 controls, EF */
const VALUE_STOP = new Uint8Array(256);
/**
 * the same for a namespace declaration's value, which must be plain ASCII: any byte but
 * 0x21..0x7e, and & < and quotes (saxes decodes and trims these values: left to it)
 */
const DECL_STOP = new Uint8Array(256);
{
  for (const c of [0x20, 0x09, 0x0a, 0x0d]) CC[c] = C_WS;
  for (let c = 0; c < 256; c++) {
    const alpha = (c >= 0x41 && c <= 0x5a) || (c >= 0x61 && c <= 0x7a) || c === 0x5f;
    if (alpha) CC[c] = C_NAME_START | C_NAME;
    if ((c >= 0x30 && c <= 0x39) || c === 0x2e || c === 0x2d) CC[c] = C_NAME;
    const control = c < 0x20 && c !== 0x09 && c !== 0x0a && c !== 0x0d;
    if (control || c === LT || c === AMP || c === EF) TEXT_STOP[c] = VALUE_STOP[c] = 1;
  }
  TEXT_STOP[RSQB] = 1;
  VALUE_STOP[SQ] = VALUE_STOP[DQ] = 1;
  for (let c = 0; c < 256; c++) if (c <= SP || c >= 0x7f || c === AMP || c === LT || c === SQ || c === DQ) DECL_STOP[c] = 1;
}

const ascii = (s: string): Uint8Array => Uint8Array.from(s, (ch) => ch.charCodeAt(0));
const L_LT = ascii('lt;');
const L_GT = ascii('gt;');
const L_AMP = ascii('amp;');
const L_APOS = ascii('apos;');
const L_QUOT = ascii('quot;');
const B_XML_NS = ascii(XML_NS);
const B_XMLNS_NS = ascii(XMLNS_NS);

// --- scanner states and results ----------------------------------------------------------------

const M_IDLE = 0; // depth 0, between stanzas
const M_TEXT = 1; // character data inside the stanza
const M_STAG = 2; // at the '<' of a start tag
const M_ATTRS = 3; // in a start tag, after its name or an attribute value
const M_AVAL = 4; // inside an attribute value
const M_ETAG = 5; // at the '<' of an end tag
const M_END = 6; // the stanza ends right before the current position

const NEED_MORE = 0; // input exhausted; state saved (a checkpoint when something is pending)
const DONE = 1; // (carry) the carried stanza was reported; it ended at `doneAt`
const STOP = 2; // the stream's end tag: closed
const FAIL = 3; // fallback, rest from `failAt` (chunk) or from the carry's start

/** ints per attribute in ByteFramer.attrs */
const ATTR = 5;

// attribute kinds
const K_PLAIN = 0;
const K_PREFIXED = 1; // p:name, p not xmlns
const K_DEFAULT_NS = 2; // xmlns
const K_NS_DECL = 3; // xmlns:p

// entity reference and qualified name results
const NEED = -2;
const BAD = -1;

// UTF-8 check results
const U_OK = 0;
const U_BAD = 1;
const U_EF_TAIL = 2; // valid, but ends with EF or EF BF

function sameBytes(buf: Uint8Array, a: number, b: number, len: number): boolean {
  for (let k = 0; k < len; k++) if (buf[a + k] !== buf[b + k]) return false;
  return true;
}

function matches(buf: Uint8Array, at: number, lit: Uint8Array): boolean {
  for (let k = 0; k < lit.length; k++) if (buf[at + k] !== lit[k]) return false;
  return true;
}

/** `xmlns` at `at` (the caller knows 5 bytes are there) */
function isXmlns(buf: Uint8Array, at: number): boolean {
  return buf[at] === 0x78 && buf[at + 1] === 0x6d && buf[at + 2] === 0x6c && buf[at + 3] === 0x6e && buf[at + 4] === 0x73;
}

function isXml(buf: Uint8Array, at: number): boolean {
  return buf[at] === 0x78 && buf[at + 1] === 0x6d && buf[at + 2] === 0x6c;
}

/** XML 1.0 Char production */
function isXmlChar(v: number): boolean {
  return v >= 0x20 ? v <= 0xd7ff || (v >= 0xe000 && v <= 0xfffd) || (v >= 0x10000 && v <= 0x10ffff) : v === 0x09 || v === 0x0a || v === 0x0d;
}

/** Index of the colon of the last qualified name qnameEnd() read (-1: none). */
let qnameColon = -1;

/**
 * The end of a qualified name whose first character (a name start) is just before `k`: the index
 * after its last name character, BAD when a colon is not followed by a name start character, or
 * NEED when the input ends inside it. Sets qnameColon.
 */
function qnameEnd(buf: Uint8Array, k: number, end: number): number {
  qnameColon = -1;
  for (;;) {
    if (k >= end) return NEED;
    const b = buf[k]!;
    if ((CC[b]! & C_NAME) !== 0) {
      k++;
      continue;
    }
    if (b === COLON && qnameColon < 0) {
      if (k + 1 >= end) return NEED;
      if ((CC[buf[k + 1]!]! & C_NAME_START) === 0) return BAD;
      qnameColon = k;
      k += 2;
      continue;
    }
    return k;
  }
}

/**
 * The entity or character reference at `i` (an `&`): the index after its `;`, BAD, or NEED when
 * the input ends inside what can still become one we accept.
 */
function entityEnd(buf: Uint8Array, i: number, end: number): number {
  let j = i + 1;
  if (j >= end) return NEED;
  const c = buf[j];
  if (c === HASH) {
    j++;
    if (j >= end) return NEED;
    const hex = buf[j] === LOWER_X;
    if (hex) j++;
    const first = j;
    let v = 0;
    for (;;) {
      if (j >= end) return NEED;
      const d = buf[j];
      let x: number;
      if (d >= 0x30 && d <= 0x39) x = d - 0x30;
      else if (hex && (d | 0x20) >= 0x61 && (d | 0x20) <= 0x66) x = (d | 0x20) - 0x57;
      else break;
      if (j - first >= MAX_REF_DIGITS) return BAD;
      v = hex ? v * 16 + x : v * 10 + x;
      j++;
    }
    if (j === first || buf[j] !== SEMI || !isXmlChar(v)) return BAD;
    return j + 1;
  }
  let lit: Uint8Array;
  switch (c) {
    case 0x6c: // l
      lit = L_LT;
      break;
    case 0x67: // g
      lit = L_GT;
      break;
    case 0x71: // q
      lit = L_QUOT;
      break;
    case 0x61: // a
      if (j + 1 >= end) return NEED;
      lit = buf[j + 1] === 0x6d ? L_AMP : L_APOS;
      break;
    default:
      return BAD;
  }
  for (let k = 0; k < lit.length; k++, j++) {
    if (j >= end) return NEED;
    if (buf[j] !== lit[k]) return BAD;
  }
  return j;
}

function isAscii(buf: Uint8Array): boolean {
  for (let k = 0; k < buf.length; k++) if (buf[k]! >= 0x80) return false;
  return true;
}

/** Length of the UTF-8 sequence a lead byte starts (0: not a valid lead byte). */
function seqLen(b: number): number {
  if (b < 0x80) return 1;
  if (b < 0xc2) return 0;
  if (b < 0xe0) return 2;
  if (b < 0xf0) return 3;
  return b < 0xf5 ? 4 : 0;
}

/** `b` may be byte `idx` (1..3) of a sequence led by `lead` (no overlong, surrogate, > U+10FFFF). */
function contOk(lead: number, idx: number, b: number): boolean {
  if ((b & 0xc0) !== 0x80) return false;
  if (idx === 1) {
    if (lead === 0xe0) return b >= 0xa0;
    if (lead === 0xed) return b <= 0x9f;
    if (lead === 0xf0) return b >= 0x90;
    if (lead === 0xf4) return b <= 0x8f;
  }
  return true;
}

function grow(a: Int32Array, need: number): Int32Array<ArrayBuffer> {
  const b = new Int32Array(Math.max(need, a.length * 2));
  b.set(a);
  return b;
}

export class ByteFramer {
  private readonly maxBytes: number;
  private readonly maxDepth: number;
  /** the root's qualified name, for its end tag */
  private readonly rootName: Uint8Array;
  /** prefixes bound in the root scope (and `xml`) */
  private readonly rootPrefixes: Uint8Array[];

  private sink: ByteFramerSink | null = null;
  private done = false; // closed, fallen back, or a sink threw
  private inWrite = false;

  /** the unfinished stanza (or cut depth-0 token), from its '<' */
  private carry: Buffer = Buffer.alloc(0);
  private carryLen = 0;

  /** scanner state saved at a suspension; offsets relative to the stanza's first byte */
  private mode = M_IDLE;
  private pending = false; // something from `base` on is unfinished
  private base = 0; // (absolute, in the buffer being scanned) first byte of the pending stanza/token
  private ck = 0; // checkpoint: where scanning resumes
  private depth = 0; // open elements of the stanza
  private sep = false; // (ATTRS) whitespace seen since the name or the last value
  private quote = 0; // (AVAL) the value's quote
  private valRel = 0; // (AVAL) first byte of the value
  private doneAt = 0; // (DONE) end of the carried stanza in the carry
  private failAt = 0; // (FAIL) first byte of rest, in the chunk

  /** the start tag being read */
  private tagRel = 0;
  private tagLen = 0;
  private tagPfx = 0; // prefix length (0: none)
  private tagNs = 0; // nsTop before its declarations
  private nAttrs = 0;
  private nPrefixed = 0; // attributes of kind K_PREFIXED
  /** per attribute (ATTR ints): name offset, name length, prefix length, kind, signature */
  private readonly attrs = new Int32Array(MAX_ATTRS * ATTR);
  /** per open element: name offset, name length, nsTop before its declarations */
  private els = new Int32Array(3 * 16);
  /** per prefix declared in the stanza: offset, length */
  private ns = new Int32Array(2 * 16);
  private nsTop = 0;

  /** bytes of a UTF-8 character split at the end of the last chunk */
  private readonly pend = new Uint8Array(4);
  private pendLen = 0;

  private _bytesIn = 0;
  private _stanzasIn = 0;

  constructor(root: { name: string; scope: Scope }, limits: FramerLimits) {
    this.maxBytes = limits.maxStanzaBytes;
    this.maxDepth = limits.maxDepth;
    this.rootName = Buffer.from(root.name, 'utf8');
    const prefixes = [ascii('xml')];
    for (const p in root.scope) {
      // saxes resolves trimmed URIs; an empty or blank one does not bind
      if (p !== '' && p !== 'xml' && root.scope[p]!.trim() !== '') prefixes.push(Buffer.from(p, 'utf8'));
    }
    this.rootPrefixes = prefixes;
  }

  /** Bytes passed to write() since construction (including ignored ones). */
  get bytesIn(): number {
    return this._bytesIn;
  }

  /** Stanzas reported since construction. */
  get stanzasIn(): number {
    return this._stanzasIn;
  }

  write(chunk: Buffer, sink: ByteFramerSink): void {
    this._bytesIn += chunk.length;
    if (this.done) return;
    if (this.inWrite) throw new Error('ByteFramer.write() called re-entrantly from a sink callback');
    this.inWrite = true;
    this.sink = sink;
    try {
      this.feed(chunk);
    } catch (e) {
      // a sink threw: our state is unknown
      this.stop();
      throw e;
    } finally {
      this.inWrite = false;
      this.sink = null;
    }
  }

  // --- internals -------------------------------------------------------------------------------

  private feed(chunk: Buffer): void {
    if (chunk.length === 0) return;
    let efTail = false;
    if (this.pendLen !== 0 || !(chunk.length <= SMALL ? isAscii(chunk) : isUtf8(chunk))) {
      const u = this.checkUtf8(chunk);
      if (u === U_BAD) {
        // StreamFramer refuses (or, seeing a literal U+FFFD in it, decodes lossily) the whole chunk
        // before parsing any of it: hand it over whole
        this.fallback(this.carryLen > 0 ? Buffer.concat([this.carry.subarray(0, this.carryLen), chunk]) : chunk);
        return;
      }
      efTail = u === U_EF_TAIL;
    }
    let at = 0;
    if (this.carryLen > 0) {
      at = this.resume(chunk, efTail);
      if (at < 0) return;
    }
    const st = this.scan(chunk, at, chunk.length, false);
    if (st === FAIL) this.fallback(chunk.subarray(this.failAt));
    else if (st === NEED_MORE && this.pending) this.park(chunk, efTail);
  }

  /** The chunk ends inside a stanza (or a depth-0 token): keep it, or hand it over. */
  private park(chunk: Buffer, efTail: boolean): void {
    const base = this.base;
    const len = chunk.length - base;
    if (efTail || len > this.maxBytes || len - this.ck > MAX_TOKEN) {
      this.fallback(chunk.subarray(base));
      return;
    }
    if (this.carry.length < len) this.carry = Buffer.allocUnsafe(Math.max(len, 1024));
    chunk.copy(this.carry, 0, base);
    this.carryLen = len;
  }

  /**
   * A stanza is carried over: append the chunk to it piece by piece until it completes. Returns
   * where scanning goes on in the chunk, or -1 when this write is over.
   */
  private resume(chunk: Buffer, efTail: boolean): number {
    const cl0 = this.carryLen;
    let taken = 0;
    let piece = FIRST_PIECE;
    for (;;) {
      const n = Math.min(chunk.length - taken, piece);
      this.append(chunk, taken, n);
      taken += n;
      piece *= 2;
      const st = this.scan(this.carry, this.ck, this.carryLen, true);
      if (st === DONE) return this.doneAt - cl0;
      if (st === STOP) return -1;
      if (st === NEED_MORE) {
        const last = taken === chunk.length;
        if (!(last && (efTail || this.carryLen - this.ck > MAX_TOKEN)) && this.carryLen <= this.maxBytes) {
          if (last) return -1;
          continue;
        }
      }
      // rest runs from the carried stanza's first byte to the end of the chunk
      this.fallback(Buffer.concat([this.carry.subarray(0, cl0), chunk]));
      return -1;
    }
  }

  private append(chunk: Buffer, from: number, n: number): void {
    const need = this.carryLen + n;
    if (this.carry.length < need) {
      const next = Buffer.allocUnsafe(Math.max(need, this.carry.length * 2, 1024));
      this.carry.copy(next, 0, 0, this.carryLen);
      this.carry = next;
    }
    if (n <= SMALL) {
      const c = this.carry;
      for (let k = 0, o = this.carryLen; k < n; k++) c[o + k] = chunk[from + k]!;
    } else {
      chunk.copy(this.carry, this.carryLen, from, from + n);
    }
    this.carryLen = need;
  }

  private fallback(rest: Buffer): void {
    const sink = this.sink!;
    this.stop();
    sink.fallback(rest);
  }

  private stop(): void {
    this.done = true;
    this.carry = Buffer.alloc(0);
    this.carryLen = 0;
  }

  /** Saves the scanner's state at a checkpoint (`ck`, absolute) and reports NEED_MORE. */
  private suspend(mode: number, ck: number, base: number, depth: number, sep: boolean, quote: number): number {
    this.mode = mode;
    this.pending = true;
    this.base = base;
    this.ck = ck - base;
    this.depth = depth;
    this.sep = sep;
    this.quote = quote;
    return NEED_MORE;
  }

  private fail(at: number): number {
    this.failAt = at;
    return FAIL;
  }

  /**
   * Scans buf[from, end). Chunk (`inCarry` false): starts between stanzas, reports every stanza
   * it completes as a subarray. Carry: resumes at the checkpoint of the carried stanza and
   * returns once it is complete (DONE), reported as a copy.
   */
  private scan(buf: Buffer, from: number, end: number, inCarry: boolean): number {
    let i = from;
    let base = 0;
    let mode = this.mode;
    let depth = this.depth;
    let sep = this.sep;
    let q = this.quote;
    const TS = TEXT_STOP;
    for (;;) {
      switch (mode) {
        case M_TEXT: {
          for (;;) {
            // (unrolled: most bytes are plain)
            while (i + 4 <= end && (TS[buf[i]!]! | TS[buf[i + 1]!]! | TS[buf[i + 2]!]! | TS[buf[i + 3]!]!) === 0) i += 4;
            while (i < end && TS[buf[i]!] === 0) i++;
            if (i >= end) return this.suspend(M_TEXT, i, base, depth, sep, q);
            const c = buf[i]!;
            if (c === LT) break;
            if (c === AMP) {
              const r = entityEnd(buf, i, end);
              if (r >= 0) {
                i = r;
                continue;
              }
              if (r === NEED) return this.suspend(M_TEXT, i, base, depth, sep, q);
              return this.fail(base);
            }
            if (c === RSQB) {
              // `]]>` is not allowed in character data
              if (i + 2 < end) {
                if (buf[i + 1] === RSQB && buf[i + 2] === GT) return this.fail(base);
                i++;
                continue;
              }
              if (i + 1 < end && buf[i + 1] !== RSQB) {
                i++;
                continue;
              }
              return this.suspend(M_TEXT, i, base, depth, sep, q);
            }
            if (c === EF) {
              if (i + 2 < end) {
                if (buf[i + 1] === BF && buf[i + 2]! >= BD) return this.fail(base);
                i++;
                continue;
              }
              if (i + 1 < end && buf[i + 1] !== BF) {
                i++;
                continue;
              }
              return this.suspend(M_TEXT, i, base, depth, sep, q);
            }
            return this.fail(base); // a forbidden control character
          }
          // '<' at i
          if (i + 1 >= end) return this.suspend(M_TEXT, i, base, depth, sep, q);
          const c1 = buf[i + 1]!;
          if (c1 === SLASH) mode = M_ETAG;
          else if ((CC[c1]! & C_NAME_START) !== 0) mode = M_STAG;
          else return this.fail(base); // comment, CDATA, PI, or not markup at all
          continue;
        }

        case M_AVAL:
        case M_ATTRS: {
          // the attributes of a start tag: one loop per attribute, its value scanned in place
          const A = this.attrs;
          for (;;) {
            if (mode === M_AVAL) {
              // inside a value; a namespace declaration's must be plain ASCII (DECL_STOP)
              const kind = A[this.nAttrs * ATTR - ATTR + 3]!;
              const T = kind >= K_DEFAULT_NS ? DECL_STOP : VALUE_STOP;
              for (;;) {
                while (i + 4 <= end && (T[buf[i]!]! | T[buf[i + 1]!]! | T[buf[i + 2]!]! | T[buf[i + 3]!]!) === 0) i += 4;
                while (i < end && T[buf[i]!] === 0) i++;
                if (i >= end) return this.suspend(M_AVAL, i, base, depth, sep, q);
                const c = buf[i]!;
                if (c === q) break;
                if (T === DECL_STOP) return this.fail(base);
                if (c === SQ || c === DQ) {
                  i++;
                  continue;
                }
                if (c === AMP) {
                  const r = entityEnd(buf, i, end);
                  if (r >= 0) {
                    i = r;
                    continue;
                  }
                  if (r === NEED) return this.suspend(M_AVAL, i, base, depth, sep, q);
                  return this.fail(base);
                }
                if (c === EF) {
                  if (i + 2 < end) {
                    if (buf[i + 1] === BF && buf[i + 2]! >= BD) return this.fail(base);
                    i++;
                    continue;
                  }
                  if (i + 1 < end && buf[i + 1] !== BF) {
                    i++;
                    continue;
                  }
                  return this.suspend(M_AVAL, i, base, depth, sep, q);
                }
                return this.fail(base); // '<' or a forbidden control character
              }
              // closing quote at i
              if (kind >= K_DEFAULT_NS && !this.declare(buf, base, i, kind)) return this.fail(base);
              i++;
              sep = false;
              mode = M_ATTRS;
            }
            // between attributes: whitespace, then an attribute, '>' or '/>'
            if (i >= end) return this.suspend(M_ATTRS, i, base, depth, sep, q);
            let c = buf[i]!;
            if ((CC[c]! & C_WS) !== 0) {
              sep = true;
              do i++;
              while (i < end && (CC[buf[i]!]! & C_WS) !== 0);
              if (i >= end) return this.suspend(M_ATTRS, i, base, depth, sep, q);
              c = buf[i]!;
            }
            if (c === GT || c === SLASH) break;
            if (!sep || (CC[c]! & C_NAME_START) === 0) return this.fail(base);
            // an attribute: name, whitespace, '=', whitespace, opening quote (rescanned as a whole)
            const as = i;
            let k = qnameEnd(buf, i + 1, end);
            if (k === NEED) return this.suspend(M_ATTRS, as, base, depth, true, q);
            if (k === BAD) return this.fail(base);
            const pfx = qnameColon < 0 ? 0 : qnameColon - as;
            const nameLen = k - as;
            while (k < end && (CC[buf[k]!]! & C_WS) !== 0) k++;
            if (k >= end) return this.suspend(M_ATTRS, as, base, depth, true, q);
            if (buf[k] !== EQ) return this.fail(base);
            k++;
            while (k < end && (CC[buf[k]!]! & C_WS) !== 0) k++;
            if (k >= end) return this.suspend(M_ATTRS, as, base, depth, true, q);
            const qq = buf[k]!;
            if (qq !== SQ && qq !== DQ) return this.fail(base);
            // record it; a duplicate qualified name has the same signature (length, first, last byte)
            const n = this.nAttrs;
            if (n >= MAX_ATTRS) return this.fail(base);
            const sig = (nameLen << 16) | (c << 8) | buf[as + nameLen - 1]!;
            for (let y = 0; y < n; y++) {
              if (A[y * ATTR + 4] === sig && sameBytes(buf, base + A[y * ATTR]!, as, nameLen)) return this.fail(base);
            }
            let kind = K_PLAIN;
            if (pfx !== 0) kind = pfx === 5 && isXmlns(buf, as) ? K_NS_DECL : K_PREFIXED;
            else if (nameLen === 5 && isXmlns(buf, as)) kind = K_DEFAULT_NS;
            const o = n * ATTR;
            A[o] = as - base;
            A[o + 1] = nameLen;
            A[o + 2] = pfx;
            A[o + 3] = kind;
            A[o + 4] = sig;
            this.nAttrs = n + 1;
            if (kind === K_PREFIXED) this.nPrefixed++;
            q = qq;
            i = k + 1;
            this.valRel = i - base;
            mode = M_AVAL;
          }
          // '>' or '/' at i: the start tag ends
          let gt = i;
          if (buf[i] === SLASH) {
            if (i + 1 >= end) return this.suspend(M_ATTRS, i, base, depth, sep, q);
            if (buf[i + 1] !== GT) return this.fail(base);
            gt = i + 1;
          }
          if ((this.tagPfx !== 0 || this.nPrefixed !== 0) && !this.checkPrefixes(buf, base)) return this.fail(base);
          if (gt !== i) {
            this.nsTop = this.tagNs; // self-closing: its declarations go out of scope
          } else {
            let e = this.els;
            if (e.length < depth * 3 + 3) e = this.els = grow(e, depth * 3 + 3);
            e[depth * 3] = this.tagRel;
            e[depth * 3 + 1] = this.tagLen;
            e[depth * 3 + 2] = this.tagNs;
            depth++;
          }
          i = gt + 1;
          mode = depth === 0 ? M_END : M_TEXT;
          continue;
        }

        case M_STAG: {
          // '<' at i, a name start character after it
          const ts = i;
          const k = qnameEnd(buf, i + 2, end);
          if (k === NEED) return this.suspend(M_STAG, ts, base, depth, sep, q);
          if (k === BAD) return this.fail(base);
          const pfx = qnameColon < 0 ? 0 : qnameColon - ts - 1;
          // the new element's depth (stanza: 1) must not exceed maxDepth
          if (depth >= this.maxDepth) return this.fail(base);
          this.tagRel = ts + 1 - base;
          this.tagLen = k - ts - 1;
          this.tagPfx = pfx;
          this.tagNs = this.nsTop;
          this.nAttrs = 0;
          this.nPrefixed = 0;
          i = k;
          sep = false;
          mode = M_ATTRS;
          continue;
        }

        case M_ETAG: {
          // "</" at i: the name of the innermost open element, whitespace, '>'
          const ts = i;
          const top = depth - 1;
          const e = this.els;
          const ns = base + e[top * 3]!;
          const nl = e[top * 3 + 1]!;
          let k = i + 2;
          for (let n = 0; n < nl; n++, k++) {
            if (k >= end) return this.suspend(M_ETAG, ts, base, depth, sep, q);
            if (buf[k] !== buf[ns + n]) return this.fail(base);
          }
          for (;;) {
            if (k >= end) return this.suspend(M_ETAG, ts, base, depth, sep, q);
            const b = buf[k]!;
            if (b === GT) break;
            if ((CC[b]! & C_WS) === 0) return this.fail(base);
            k++;
          }
          this.nsTop = e[top * 3 + 2]!;
          depth = top;
          i = k + 1;
          mode = depth === 0 ? M_END : M_TEXT;
          continue;
        }

        case M_END: {
          // the stanza is buf[base, i)
          if (i - base > this.maxBytes) return this.fail(base);
          this._stanzasIn++;
          if (inCarry) {
            const raw = Buffer.allocUnsafe(i);
            buf.copy(raw, 0, 0, i);
            this.mode = M_IDLE;
            this.pending = false;
            this.depth = 0;
            this.nsTop = 0;
            this.carryLen = 0;
            if (this.carry.length > CARRY_KEEP) this.carry = Buffer.alloc(0);
            this.doneAt = i;
            this.sink!.stanza(raw);
            return DONE;
          }
          this.sink!.stanza(buf.subarray(base, i));
          mode = M_IDLE;
          continue;
        }

        default: {
          // M_IDLE: whitespace, then '<'
          let c = 0;
          while (i < end) {
            c = buf[i]!;
            if (c === LT) break;
            if ((CC[c]! & C_WS) === 0) return this.fail(i);
            i++;
          }
          if (i >= end) {
            this.mode = M_IDLE;
            this.pending = false;
            return NEED_MORE;
          }
          base = i;
          if (i + 1 >= end) return this.suspend(M_IDLE, i, base, 0, false, 0);
          c = buf[i + 1]!;
          if ((CC[c]! & C_NAME_START) !== 0) {
            depth = 0;
            this.nsTop = 0;
            mode = M_STAG;
            continue;
          }
          if (c !== SLASH) return this.fail(i);
          // the stream's end tag
          const rn = this.rootName;
          let k = i + 2;
          for (let n = 0; n < rn.length; n++, k++) {
            if (k >= end) return this.suspend(M_IDLE, i, base, 0, false, 0);
            if (buf[k] !== rn[n]) return this.fail(i);
          }
          for (;;) {
            if (k >= end) return this.suspend(M_IDLE, i, base, 0, false, 0);
            const b = buf[k]!;
            if (b === GT) break;
            if ((CC[b]! & C_WS) === 0) return this.fail(i);
            k++;
          }
          const sink = this.sink!;
          this.stop();
          sink.close();
          return STOP;
        }
      }
    }
  }

  /**
   * A start tag with prefixes is complete: they are bound, and no two prefixed attributes have
   * the same local name (possibly the same expanded name: left to saxes).
   */
  private checkPrefixes(buf: Uint8Array, base: number): boolean {
    const pfx = this.tagPfx;
    if (pfx !== 0) {
      const p = base + this.tagRel;
      if (pfx === 5 && isXmlns(buf, p)) return false;
      if (!this.bound(buf, base, p, pfx)) return false;
    }
    if (this.nPrefixed === 0) return true;
    const n = this.nAttrs;
    const a = this.attrs;
    for (let x = 0; x < n; x++) {
      if (a[x * ATTR + 3] !== K_PREFIXED) continue;
      const xs = base + a[x * ATTR]!;
      const xl = a[x * ATTR + 1]!;
      const xp = a[x * ATTR + 2]!;
      if (!this.bound(buf, base, xs, xp)) return false;
      for (let y = 0; y < x; y++) {
        if (a[y * ATTR + 3] !== K_PREFIXED) continue;
        const yp = a[y * ATTR + 2]!;
        if (xl - xp === a[y * ATTR + 1]! - yp && sameBytes(buf, xs + xp, base + a[y * ATTR]! + yp, xl - xp)) return false;
      }
    }
    return true;
  }

  /** The prefix buf[p, p + len) is declared in the stanza (in scope) or in the root's scope. */
  private bound(buf: Uint8Array, base: number, p: number, len: number): boolean {
    const ns = this.ns;
    for (let k = this.nsTop - 1; k >= 0; k--) {
      if (ns[k * 2 + 1] === len && sameBytes(buf, base + ns[k * 2]!, p, len)) return true;
    }
    const roots = this.rootPrefixes;
    for (let k = 0; k < roots.length; k++) {
      const r = roots[k]!;
      if (r.length === len && matches(buf, p, r)) return true;
    }
    return false;
  }

  /** The value of an xmlns / xmlns:p attribute ends at `vEnd`: check it, record the prefix. */
  private declare(buf: Uint8Array, base: number, vEnd: number, kind: number): boolean {
    // (its bytes are plain ASCII: scanned with DECL_STOP)
    const vs = base + this.valRel;
    const vl = vEnd - vs;
    if (vl === B_XML_NS.length && matches(buf, vs, B_XML_NS)) return false;
    if (vl === B_XMLNS_NS.length && matches(buf, vs, B_XMLNS_NS)) return false;
    if (kind === K_DEFAULT_NS) return true;
    if (vl === 0) return false;
    const a = this.attrs;
    const n = this.nAttrs - 1;
    const pl = a[n * ATTR + 1]! - 6;
    const ps = base + a[n * ATTR]! + 6;
    if ((pl === 3 && isXml(buf, ps)) || (pl === 5 && isXmlns(buf, ps))) return false;
    const top = this.nsTop;
    if (this.ns.length < top * 2 + 2) this.ns = grow(this.ns, top * 2 + 2);
    this.ns[top * 2] = ps - base;
    this.ns[top * 2 + 1] = pl;
    this.nsTop = top + 1;
    return true;
  }

  /**
   * Strict UTF-8 check of a chunk, given the bytes of a character split at the end of the
   * previous one; records the bytes split at its end.
   */
  private checkUtf8(chunk: Buffer): number {
    const n = chunk.length;
    const pend = this.pend;
    let s = 0;
    if (this.pendLen > 0) {
      const lead = pend[0]!;
      const need = seqLen(lead) - this.pendLen;
      let k = 0;
      for (; k < need && k < n; k++) if (!contOk(lead, this.pendLen + k, chunk[k]!)) return U_BAD;
      if (k < need) {
        for (let x = 0; x < k; x++) pend[this.pendLen + x] = chunk[x]!;
        this.pendLen += k;
        return lead === EF && (this.pendLen === 1 || pend[1] === BF) ? U_EF_TAIL : U_OK;
      }
      this.pendLen = 0;
      s = need;
    }
    // a character cut at the end: its lead byte is among the last three
    let t = n;
    let j = n - 1;
    while (j >= s && j > n - 4 && (chunk[j]! & 0xc0) === 0x80) j--;
    if (j >= s) {
      const lead = chunk[j]!;
      if (seqLen(lead) > n - j) {
        for (let k = j + 1; k < n; k++) if (!contOk(lead, k - j, chunk[k]!)) return U_BAD;
        t = j;
      }
    }
    if (t > s && !isUtf8(chunk.subarray(s, t))) return U_BAD;
    this.pendLen = n - t;
    for (let k = t; k < n; k++) pend[k - t] = chunk[k]!;
    return this.pendLen > 0 && pend[0] === EF && (this.pendLen === 1 || pend[1] === BF) ? U_EF_TAIL : U_OK;
  }
}
