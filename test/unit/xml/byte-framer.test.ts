/**
 * ByteFramer (src/xml/byte-framer.ts) against StreamFramer, the reference.
 *
 * Equivalence: for any input and any chunking, the ByteFramer's events, continued after a
 * fallback by a StreamFramer resumed with `resumeFramer` (its synthetic onStreamOpen ignored),
 * equal the events of one StreamFramer fed the root's start tag and the same chunks: same stanza
 * bytes, same close, same error condition at the same point.
 *
 * - the jabberd2 captures: every stream of every direction after its header, whole, byte by byte,
 *   in random splits and in the original TCP reads: the same stanzas, no fallback;
 * - unit cases for each rule, the exact `rest` of a fallback, close(), counters, buffer ownership;
 * - a seeded differential fuzz (FUZZ_SEED, default 20261125) of XMPP-ish stanzas and mutations of
 *   them, several chunkings each; valid inputs must never fall back;
 * - linear time: a 2 MiB stanza byte by byte.
 */
import { test } from 'node:test';
import assert from 'node:assert/strict';
import { ByteFramer } from '../../../src/xml/byte-framer.ts';
import type { ByteFramerSink } from '../../../src/xml/byte-framer.ts';
import { StreamFramer } from '../../../src/xml/stream-framer.ts';
import type { FramerHandler, FramerLimits } from '../../../src/xml/stream-framer.ts';
import type { XmlElement } from '../../../src/xml/node.ts';
import { resumeFramer, streamStartTag } from '../../../src/workers/handover.ts';
import { connections, loadCapture } from '../../helpers/captures.ts';
import { byByte, feeders, prng, randomSplits, splitAt } from '../../helpers/split.ts';
import type { Split } from '../../helpers/split.ts';

// --- harness -------------------------------------------------------------------------------------

/** stanza bytes as a latin1 string (exact bytes, readable in assertion diffs) */
type Ev = { t: 'stanza'; raw: string } | { t: 'close' } | { t: 'error'; condition: string };

const LIMITS: FramerLimits = { maxStanzaBytes: 1 << 16, maxDepth: 16 };
const NS_STREAM = 'http://etherx.jabber.org/streams';
const NS_COMPONENT = 'http://jabberd.jabberstudio.org/ns/component/1.0';
const NS_SESSION = 'http://jabberd.jabberstudio.org/ns/session/1.0';
const HEADER = `<stream:stream xmlns:stream='${NS_STREAM}' xmlns:ack='urn:xmpp:sm:3' version='1.0'>`;

const b = (s: string | readonly number[]): Buffer => (typeof s === 'string' ? Buffer.from(s, 'utf8') : Buffer.from(s));
const lat = (buf: Uint8Array): string => Buffer.from(buf.buffer, buf.byteOffset, buf.byteLength).toString('latin1');

function recorder(events: Ev[]): FramerHandler {
  return {
    onStreamOpen: () => {},
    onStanza: (_el, raw) => events.push({ t: 'stanza', raw: Buffer.from(raw, 'utf8').toString('latin1') }),
    onStreamClose: () => events.push({ t: 'close' }),
    onError: (f) => events.push({ t: 'error', condition: f.condition }),
  };
}

/** The stream root as StreamFramer reports it for `header`. */
function rootOf(header: string): XmlElement {
  let root: XmlElement | undefined;
  const f = new StreamFramer({ ...recorder([]), onStreamOpen: (r) => (root = r) }, LIMITS);
  f.write(b(header));
  assert.ok(root, `header ${header} opens a stream`);
  return root;
}

/** One StreamFramer fed the header, then the chunks. */
function reference(header: string, chunks: readonly Uint8Array[], limits: FramerLimits): Ev[] {
  const events: Ev[] = [];
  const f = new StreamFramer(recorder(events), limits);
  f.write(b(header));
  for (const c of chunks) f.write(c);
  return events;
}

interface Paired {
  events: Ev[];
  /** events the ByteFramer reported itself (before any fallback) */
  own: number;
  fallbacks: number;
  /** index of the chunk during which it fell back, and its rest */
  fallbackChunk: number;
  rest: Buffer | null;
  closes: number;
  framer: ByteFramer;
}

/** The ByteFramer, continued after a fallback by a resumed StreamFramer. */
function paired(root: XmlElement, chunks: readonly Buffer[], limits: FramerLimits): Paired {
  const events: Ev[] = [];
  const raws: [Buffer, Buffer][] = [];
  const r: Paired = { events, own: 0, fallbacks: 0, fallbackChunk: -1, rest: null, closes: 0, framer: null as unknown as ByteFramer };
  let idx = 0;
  const sink: ByteFramerSink = {
    stanza: (raw) => {
      assert.ok(Buffer.isBuffer(raw), 'raw is a Buffer');
      raws.push([raw, Buffer.from(raw)]);
      events.push({ t: 'stanza', raw: lat(raw) });
    },
    close: () => {
      r.closes++;
      events.push({ t: 'close' });
    },
    fallback: (rest) => {
      r.fallbacks++;
      r.fallbackChunk = idx;
      r.rest = Buffer.from(rest);
    },
  };
  const bf = new ByteFramer({ name: root.name, scope: root.scope }, limits);
  r.framer = bf;
  let resumed: StreamFramer | null = null;
  let opened = false;
  const handler = recorder(events);
  for (; idx < chunks.length; idx++) {
    const c = chunks[idx]!;
    if (resumed !== null) resumed.write(c);
    const before = events.length;
    bf.write(c, sink); // after a fallback or a close: must be ignored
    if (resumed !== null) assert.equal(events.length, before, 'the ByteFramer is silent after its fallback');
    if (r.rest !== null && resumed === null) {
      r.own = events.length;
      resumed = resumeFramer(
        { header: streamStartTag(root), tail: r.rest, maxStanzaBytes: limits.maxStanzaBytes, maxDepth: limits.maxDepth },
        {
          ...handler,
          onStreamOpen: () => {
            assert.equal(opened, false, 'only the synthetic header opens the resumed framer');
            opened = true;
          },
        },
      );
    }
  }
  if (resumed === null) r.own = events.length;
  for (const [raw, copy] of raws) assert.ok(raw.equals(copy), 'a reported raw was changed by a later write');
  assert.ok(r.fallbacks <= 1 && r.closes <= 1 && r.fallbacks + r.closes <= 1, 'at most one of fallback/close, once');
  return r;
}

/** `rest` is the suffix of the input received so far that ends with the fallback's chunk. */
function assertRestIsSuffix(chunks: readonly Buffer[], p: Paired, what: string): void {
  if (p.rest === null) return;
  const sofar = Buffer.concat(chunks.slice(0, p.fallbackChunk + 1));
  assert.ok(p.rest.length <= sofar.length, `${what}: rest longer than the input`);
  assert.ok(sofar.subarray(sofar.length - p.rest.length).equals(p.rest), `${what}: rest is not the tail of the input received`);
}

const ROOT = rootOf(HEADER);

/** Equivalence for one input and one chunking; returns the paired run. */
function equivalent(input: Buffer, split: Split, limits = LIMITS, header = HEADER, root = ROOT, what = ''): Paired {
  const chunks = split(input).map((c) => Buffer.from(c.buffer, c.byteOffset, c.byteLength));
  const ref = reference(header, chunks, limits);
  const p = paired(root, chunks, limits);
  assert.deepStrictEqual(p.events, ref, `${what} input=${JSON.stringify(lat(input))} chunks=${JSON.stringify(chunks.map((c) => c.length))}`);
  assertRestIsSuffix(chunks, p, what);
  return p;
}

/** Equivalence with every feeder; returns the runs. */
function equivalentAll(input: string | Buffer, limits = LIMITS): Paired[] {
  const data = typeof input === 'string' ? b(input) : input;
  return feeders().map((f) => equivalent(data, f.split, limits, HEADER, ROOT, f.name));
}

/** ByteFramer alone, input whole: its stanzas and its fallback rest (null: none). */
function alone(input: string | Buffer | (string | Buffer)[], limits = LIMITS): { stanzas: string[]; rest: string | null; closed: boolean } {
  const parts = Array.isArray(input) ? input : [input];
  const out = { stanzas: [] as string[], rest: null as string | null, closed: false };
  const bf = new ByteFramer({ name: ROOT.name, scope: ROOT.scope }, limits);
  for (const part of parts) {
    bf.write(typeof part === 'string' ? b(part) : part, {
      stanza: (raw) => out.stanzas.push(raw.toString('utf8')),
      close: () => (out.closed = true),
      fallback: (rest) => (out.rest = rest.toString('latin1')),
    });
  }
  return out;
}

/** Valid input: the fast path takes it all with every feeder, and agrees with StreamFramer. */
function fast(input: string, limits = LIMITS): string[] {
  const runs = equivalentAll(input, limits);
  for (const r of runs) assert.equal(r.fallbacks, 0, `no fallback for ${JSON.stringify(input)}`);
  return alone(input, limits).stanzas;
}

/** Input the ByteFramer hands over: it falls back (whole input) and the pair agrees with StreamFramer. */
function handedOver(input: string | Buffer, limits = LIMITS): Ev[] {
  const runs = equivalentAll(input, limits);
  assert.equal(alone(input, limits).rest !== null, true, `falls back on ${JSON.stringify(typeof input === 'string' ? input : lat(input))}`);
  return runs[0]!.events;
}

// --- the captures --------------------------------------------------------------------------------

interface Segment {
  what: string;
  header: string;
  body: Buffer;
  /** the original TCP reads, cut to the body */
  reads: Buffer[];
}

/** Every stream of every direction of every capture: its header and what follows it. */
function segments(): Segment[] {
  const out: Segment[] = [];
  for (const file of ['sm-router.log', 'c2s-router.log']) {
    for (const c of connections(loadCapture(file))) {
      for (const dir of ['C>R', 'R>C'] as const) {
        const data = c.bytes[dir];
        const s = data.toString('latin1');
        const starts: number[] = [];
        for (let at = s.indexOf('<?xml'); at >= 0; at = s.indexOf('<?xml', at + 1)) starts.push(at);
        assert.equal(starts.length, 2, `${file} ${dir}: initial stream and the restart after SASL`);
        // original read boundaries
        const offsets: number[] = [];
        let o = 0;
        for (const r of c.reads[dir]) offsets.push((o += r.length));
        starts.forEach((from, k) => {
          const to = starts[k + 1] ?? data.length;
          const hEnd = s.indexOf('>', s.indexOf('<stream:stream', from)) + 1;
          const body = data.subarray(hEnd, to);
          const reads = splitAt(body, offsets.map((x) => x - hEnd)).map((x) => Buffer.from(x.buffer, x.byteOffset, x.byteLength));
          out.push({ what: `${file} #${c.conn} ${dir} stream ${k + 1}`, header: s.slice(s.indexOf('<stream:stream', from), hEnd), body, reads });
        });
      }
    }
  }
  return out;
}

test('captures: every jabberd2 stream after its header frames identically, with no fallback, in any chunking', () => {
  let stanzas = 0;
  for (const seg of segments()) {
    const root = rootOf(seg.header);
    const splits: { name: string; split: Split }[] = [...feeders(), { name: 'original TCP reads', split: () => seg.reads }];
    for (const f of splits) {
      const what = `${seg.what} (${f.name})`;
      const p = equivalent(seg.body, f.split, { maxStanzaBytes: 1 << 16, maxDepth: 32 }, seg.header, root, what);
      assert.equal(p.fallbacks, 0, `${what}: no fallback`);
      assert.equal(p.own, p.events.length, what);
      assert.ok(p.events.every((e) => e.t === 'stanza'), what);
      assert.equal(p.framer.stanzasIn, p.events.length, what);
      assert.equal(p.framer.bytesIn, seg.body.length, what);
      if (f.name === 'whole') stanzas += p.events.length;
    }
  }
  // independently counted in captures.test.ts: depth-1 elements of every direction
  assert.equal(stanzas, 82 + 86 + 44 + 50);
});

// --- unit cases ----------------------------------------------------------------------------------

test('stanzas, whitespace between them, raw exact; close() at the root end tag', () => {
  assert.deepStrictEqual(fast(`<a/> \t\r\n<b x='1'>t</b>\n<c:d xmlns:c='u'/>`), [`<a/>`, `<b x='1'>t</b>`, `<c:d xmlns:c='u'/>`]);
  const r = alone(`<a/> </stream:stream>`);
  assert.deepStrictEqual([r.stanzas, r.closed, r.rest], [['<a/>'], true, null]);
  equivalentAll(`<a/> </stream:stream>`);
  equivalentAll(`<a/></stream:stream \t\n>`);
  assert.equal(alone(`</stream:stream\r\n>`).closed, true);
});

test('tags: whitespace inside, self-closing, both quotes, > in values and text, CRLF', () => {
  assert.deepStrictEqual(
    fast(`<a  b = 'c' d\t=\n"e'>"\r\n></a ><f\n/><g h='"'>x > y</g\t>`),
    [`<a  b = 'c' d\t=\n"e'>"\r\n></a >`, `<f\n/>`, `<g h='"'>x > y</g\t>`],
  );
  fast(`<route xmlns='${NS_COMPONENT}' to='a' from='b'><message xmlns='jabber:client'><body>x\r\ny\rz</body></message></route>`);
  fast(`<a b=']]>'>]] ]> ]]]</a>`); // `]]>` is fine in a value, `]]` without `>` in text
});

test('names: ASCII NCName or NCName:NCName only; otherwise handed over', () => {
  fast(`<_a-b.c9 _d.e-f='1'/>`);
  for (const bad of [`<é/>`, `<aé/>`, `<a bé='1'/>`, `<a:b:c xmlns:a='u'/>`, `<a: xmlns:a='u'/>`, `<a:1b xmlns:a='u'/>`, `<a b:='1'/>`, `<1a/>`, `<a 1b='1'/>`, `<-a/>`, `< a/>`]) {
    handedOver(bad);
  }
  // a non-ASCII name StreamFramer refuses, and one saxes accepts and StreamFramer too
  assert.deepStrictEqual(handedOver(`<x/><é/>`), [{ t: 'stanza', raw: '<x/>' }, { t: 'error', condition: 'not-well-formed' }]);
  assert.deepStrictEqual(handedOver(`<a:1b xmlns:a='u'/>`), [{ t: 'stanza', raw: `<a:1b xmlns:a='u'/>` }]);
});

test('tag syntax errors are handed over', () => {
  for (const bad of [`<a b='1'c='2'/>`, `<a b/>`, `<a b=1/>`, `<a b='<'/>`, `<a / >`, `<a/ >`, `<a></b>`, `<a></a b>`, `<a></ a>`, `<a><b></a></b>`, `<a b='1' b='2'/>`, `<a xmlns='x' xmlns='y'/>`]) {
    handedOver(bad);
  }
});

test('end tags must match; depth (stanza = 1) and size limits hand over to policy-violation', () => {
  const deep = { maxStanzaBytes: 1 << 16, maxDepth: 3 };
  fast(`<a><b><c/></b></a>`, deep);
  assert.deepStrictEqual(handedOver(`<a><b><c><d/></c></b></a>`, deep), [{ t: 'error', condition: 'policy-violation' }]);
  assert.deepStrictEqual(handedOver(`<x/><a/>`, { maxStanzaBytes: 1 << 16, maxDepth: 0 }), [{ t: 'error', condition: 'policy-violation' }]);
  // (StreamFramer applies maxStanzaBytes to the stream header too: the limit must fit it)
  assert.ok(HEADER.length <= 120);
  const small = { maxStanzaBytes: 120, maxDepth: 16 };
  const x = (n: number): string => 'x'.repeat(n);
  assert.deepStrictEqual(fast(`<a>${x(113)}</a>`, small), [`<a>${x(113)}</a>`]); // exactly 120 bytes
  assert.deepStrictEqual(handedOver(`<a/><a>${x(114)}</a>`, small), [{ t: 'stanza', raw: '<a/>' }, { t: 'error', condition: 'policy-violation' }]);
  // size counts UTF-8 bytes (121 bytes, 120 characters)
  assert.deepStrictEqual(handedOver(`<a>${x(112)}é</a><b/>`, small), [{ t: 'error', condition: 'policy-violation' }]);
  // an unfinished stanza over the limit falls back at the end of its chunk
  assert.equal(alone([`<a>`, x(117)], small).rest, null);
  assert.equal(alone([`<a>`, x(118)], small).rest, `<a>${x(118)}`);
  assert.equal(alone([`<a>`, x(60), x(60)], small).rest, `<a>${x(120)}`);
});

test('namespaces: prefixes declared on the root, an ancestor or the element itself; xml always bound', () => {
  fast(`<stream:features><ack:r/></stream:features>`);
  fast(`<a xmlns:p='u' p:x='1'><p:b><c p:y='2'/></p:b></a><d xml:lang='en'/><xml:e/>`);
  fast(`<p:a p:x='1' xmlns:p='u'/>`); // declared after its use on the same element
  fast(`<a xmlns=''/><b xmlns="u"/>`);
  // jabberd2's sc: and sm: for the same session namespace, on different elements
  fast(`<route xmlns='${NS_COMPONENT}'><sc:session xmlns:sc='${NS_SESSION}' sc:c2s='1'/><iq xmlns:sm='${NS_SESSION}' sm:c2s='1'/></route>`);
  for (const bad of [
    `<p:a/>`, `<a p:x='1'/>`, `<a xmlns:p='u'/><p:b/>`, `<a><b xmlns:p='u'/><p:c/></a>`, `<xmlns:a/>`,
    `<a xmlns:p=''/>`, `<a xmlns:p=' '/>`, `<a xmlns:p=' u '/>`, `<a xmlns:p='u&amp;'/>`, `<a xmlns:p='é'/>`,
    `<a xmlns:xml='http://www.w3.org/XML/1998/namespace'/>`, `<a xmlns:xml='u'/>`, `<a xmlns:xmlns='u'/>`,
    `<a xmlns:p='http://www.w3.org/XML/1998/namespace'/>`, `<a xmlns:p='http://www.w3.org/2000/xmlns/'/>`,
    `<a xmlns='http://www.w3.org/XML/1998/namespace'/>`, `<a xmlns='http://www.w3.org/2000/xmlns/'/>`,
    `<a xmlns:p='u' xmlns:q='u' p:x='1' q:x='2'/>`, `<a xmlns:p='u' xmlns:q='v' p:x='1' q:x='2'/>`,
    `<a xmlns:p='u' p:x='1' p:x='2'/>`,
  ]) {
    handedOver(bad);
  }
});

test('character data and values: entities, character references, ]]>, controls, U+FFFE/U+FFFF', () => {
  fast(`<a b='&lt;&gt;&amp;&quot;&apos;&#65;&#x1F600;&#x10FFFF;&#9;'>&lt;&gt;&amp;&quot;&apos;&#10;&#xd;&#xE000;&#xfffd;&#00000065;</a>`);
  fast(`<a b='\t\n\r\x7f\u0085\u2028'>\t\n\r\x7f\u0085\u2028 é 今日 🙂</a>`);
  for (const bad of [
    `<a>&bogus;</a>`, `<a>&</a>`, `<a>& </a>`, `<a>&;</a>`, `<a>&#;</a>`, `<a>&#x;</a>`, `<a>&#X41;</a>`, `<a>&#0;</a>`,
    `<a>&#xD800;</a>`, `<a>&#xFFFE;</a>`, `<a>&#x110000;</a>`, `<a>&#1114112;</a>`, `<a>&lt</a>`, `<a b='&bogus;'/>`,
    `<a>]]></a>`, `<a>]]]></a>`, `<a>\x01</a>`, `<a>\x00</a>`, `<a b='\x0b'/>`, `<a>\uFFFE</a>`, `<a b='\uFFFF'/>`,
  ]) {
    handedOver(bad);
  }
  // legal but left to saxes: long character references (StreamFramer's dangling-reference limit is
  // per chunk), literal U+FFFD (StreamFramer's UTF-8 check depends on it)
  handedOver(`<a>&#000000065;</a>`);
  handedOver(`<a>\uFFFD</a>`);
  handedOver(`<a b='\uFFFD'/>`);
});

test('comments, PIs, CDATA, DOCTYPE and XML declarations are handed over (restricted-xml)', () => {
  for (const bad of [`<a><!--c--></a>`, `<a><![CDATA[x]]></a>`, `<a><?pi x?></a>`, `<!--c-->`, `<?pi x?>`, `<!DOCTYPE a>`, `<?xml version='1.0'?>`, `<a/><![CDATA[x]]>`]) {
    handedOver(bad);
  }
  assert.deepStrictEqual(handedOver(`<a/><!--c--><b/>`), [{ t: 'stanza', raw: '<a/>' }, { t: 'error', condition: 'restricted-xml' }]);
});

test('depth 0: only whitespace and <; text, stray end tags and a wrong root end tag are handed over', () => {
  for (const bad of [`x`, ` x <a/>`, `&amp;`, `</x>`, `</stream:streams>`, `</stream>`, `</stream:stream/>`, `</stream:stream x>`, `\x0c`, `\u00a0<a/>`]) {
    handedOver(bad);
  }
});

test('fallback: rest is exact (unfinished stanza or offending byte, to the end of the chunk); later input ignored', () => {
  assert.deepStrictEqual(alone(`<a/>  <b><!--x--></b><c/>`), { stanzas: ['<a/>'], rest: '<b><!--x--></b><c/>', closed: false });
  assert.deepStrictEqual(alone(`<a/> \n x<b/>`), { stanzas: ['<a/>'], rest: 'x<b/>', closed: false });
  assert.deepStrictEqual(alone(`<a/></x><b/>`), { stanzas: ['<a/>'], rest: '</x><b/>', closed: false });
  // across chunks: the stanza's start (carried) to the end of the chunk where it failed
  assert.deepStrictEqual(alone([`<a/> <b>`, `12`, `3<!--`, `x--></b>`, `<c/>`]), { stanzas: ['<a/>'], rest: '<b>123<!--', closed: false });
  assert.deepStrictEqual(alone([`<a/> `, `\t`, `y`, `<c/>`]), { stanzas: ['<a/>'], rest: 'y', closed: false });
  // a chunk refused for its UTF-8 is handed over whole (with the carried stanza), before any of it is reported
  assert.deepStrictEqual(alone([b(`<a/><b>`), b([0x3c, 0x63, 0x2f, 0x3e, 0x20, 0xff, 0x3c, 0x2f, 0x62])]), { stanzas: ['<a/>'], rest: '<b><c/> \xff</b', closed: false });
  // ignored afterwards
  const events: string[] = [];
  const bf = new ByteFramer({ name: ROOT.name, scope: ROOT.scope }, LIMITS);
  const sink: ByteFramerSink = { stanza: () => events.push('stanza'), close: () => events.push('close'), fallback: () => events.push('fallback') };
  bf.write(b(`<a/>x`), sink);
  bf.write(b(`<b/></stream:stream>`), sink);
  assert.deepStrictEqual(events, ['stanza', 'fallback']);
  assert.deepStrictEqual([bf.bytesIn, bf.stanzasIn], [25, 1]);
});

test('close(): data after the root end tag is ignored, in the same chunk and later', () => {
  const events: string[] = [];
  const bf = new ByteFramer({ name: ROOT.name, scope: ROOT.scope }, LIMITS);
  const sink: ByteFramerSink = { stanza: (r) => events.push(r.toString()), close: () => events.push('close'), fallback: () => events.push('fallback') };
  bf.write(b(`<a/></stream:st`), sink);
  bf.write(b(`ream>garbage<b/>`), sink);
  bf.write(b(`<c/>\xff`), sink);
  assert.deepStrictEqual(events, ['<a/>', 'close']);
  assert.deepStrictEqual([bf.bytesIn, bf.stanzasIn], [15 + 16 + 6, 1]);
  equivalentAll(`<a/></stream:stream>garbage<b/>`);
});

test('UTF-8: split characters are fine, invalid sequences are handed over, a chunk cut inside EF (BF) falls back', () => {
  fast(`<a b='é今🙂'>é今🙂</a>`); // feeders cut inside every character
  for (const bad of [[0xff], [0xc0, 0x80], [0xed, 0xa0, 0x80], [0xe2, 0x82, 0x41], [0xf4, 0x90, 0x80, 0x80], [0xf8], [0x80]]) {
    handedOver(Buffer.concat([b(`<x/><a>`), b(bad), b(`</a>`)]));
    handedOver(Buffer.concat([b(`<x/><a b='`), b(bad), b(`'/>`)]));
  }
  // an incomplete character at the very end, or completed wrongly by the next chunk
  equivalentAll(b([0x3c, 0x61, 0x3e, 0xe2, 0x82]));
  // a literal U+FFFD is left to saxes (StreamFramer tells it from invalid UTF-8 by counting), as
  // is a chunk cut after EF / EF BF: the ByteFramer hands over at the end of that chunk
  const fffd = b(`<a>\uFFFD</a><b/>`);
  assert.deepStrictEqual(alone([fffd.subarray(0, 4), fffd.subarray(4)]), { stanzas: [], rest: '<a>\xef', closed: false });
  assert.deepStrictEqual(alone([fffd.subarray(0, 5), fffd.subarray(5)]), { stanzas: [], rest: '<a>\xef\xbf', closed: false });
  for (const cut of [4, 5]) {
    const p = equivalent(fffd, (d) => splitAt(d, [cut]));
    assert.deepStrictEqual(p.events, [{ t: 'stanza', raw: '<a>\xef\xbf\xbd</a>' }, { t: 'stanza', raw: '<b/>' }], 'a U+FFFD split across writes is a character, not an error');
  }
  // invalid UTF-8 next to a literal U+FFFD in one chunk is still an error
  const mixed = Buffer.concat([b(`<a>\uFFFD`), b([0xff]), b(`</a>`)]);
  assert.deepStrictEqual(equivalent(mixed, (d) => [d]).events, [{ t: 'error', condition: 'not-well-formed' }]);
  // other characters of U+F000..U+FFFF (EF lead byte) are on the fast path unless a chunk ends
  // right after their EF, or after EF BF (U+FFC0..U+FFFC)
  const ff = b(`<a>\uFF01\uFFE0\uF900</a>`); // EF BC 81, EF BF A0, EF A4 80
  for (let cut = 1; cut < ff.length; cut++) {
    const head = ff.subarray(0, cut);
    const tail = head.subarray(Math.max(0, cut - 2));
    const efCut = head.at(-1) === 0xef || (tail.length === 2 && tail[0] === 0xef && tail[1] === 0xbf);
    assert.deepStrictEqual(alone([head, ff.subarray(cut)]).rest, efCut ? lat(head) : null, `cut at ${cut}`);
  }
  equivalentAll(ff);
});

/** `raw` lies inside `chunk`'s memory */
const within = (raw: Buffer, chunk: Buffer): boolean =>
  raw.buffer === chunk.buffer && raw.byteOffset >= chunk.byteOffset && raw.byteOffset + raw.length <= chunk.byteOffset + chunk.length;

test('bytesIn and stanzasIn; a stanza inside a chunk is a subarray of it, one spanning chunks a fresh Buffer', () => {
  const bf = new ByteFramer({ name: ROOT.name, scope: ROOT.scope }, LIMITS);
  const raws: Buffer[] = [];
  const sink: ByteFramerSink = { stanza: (r) => raws.push(r), close: () => {}, fallback: () => assert.fail('no fallback') };
  const c1 = b(`<a>1</a> <b>`);
  const c2 = b(`2</b><c/><d>`);
  const c3 = b(`3</d>`);
  bf.write(c1, sink);
  bf.write(c2, sink);
  bf.write(c3, sink);
  assert.deepStrictEqual(raws.map(String), ['<a>1</a>', '<b>2</b>', '<c/>', '<d>3</d>']);
  assert.deepStrictEqual([bf.bytesIn, bf.stanzasIn], [c1.length + c2.length + c3.length, 4]);
  assert.ok(within(raws[0]!, c1));
  assert.ok(within(raws[2]!, c2));
  assert.ok(!within(raws[1]!, c1) && !within(raws[1]!, c2)); // copied out of the carry
  assert.ok(!within(raws[3]!, c2) && !within(raws[3]!, c3));
  // the carry is reused, and grows: earlier raws stay intact, the chunks are not written to
  const before = raws.map((r) => Buffer.from(r));
  const chunks: [Buffer, Buffer][] = [];
  for (let k = 0; k < 50; k++) {
    const pair: [Buffer, Buffer] = [b(`<e>${'x'.repeat(k * 40)}`), b(`${'y'.repeat(16)}</e>`)];
    chunks.push([pair[0], Buffer.from(pair[0])], [pair[1], Buffer.from(pair[1])]);
    bf.write(pair[0], sink);
    bf.write(pair[1], sink);
  }
  before.forEach((x, k) => assert.ok(raws[k]!.equals(x)));
  raws.slice(4).forEach((r, k) => assert.equal(r.toString(), `<e>${'x'.repeat(k * 40)}${'y'.repeat(16)}</e>`));
  for (const [c, copy] of chunks) assert.ok(c.equals(copy));
  assert.equal(bf.stanzasIn, 54);
});

test('carried stanzas: long stanzas finished by large chunks that hold more stanzas (pieces appended to the carry)', () => {
  const route = `<route xmlns='${NS_COMPONENT}' to='c2s' from='sm'><message xmlns='jabber:client' id='m'><body>hi é</body></message></route>`;
  const input = Buffer.concat([bigStanza(5_000), b(route), b(' '), bigStanza(40_000), b(route.repeat(20)), bigStanza(900), b(route)]);
  const limits = { maxStanzaBytes: 1 << 20, maxDepth: 16 };
  const starts: number[] = [];
  for (let k = input.indexOf('<iq'); k >= 0; k = input.indexOf('<iq', k + 1)) starts.push(k);
  // cut a little way into each long stanza: the rest of it, and what follows, arrives in one chunk
  for (const into of [1, 10, 300, 600, 2000]) {
    const p = equivalent(input, (d) => splitAt(d, starts.map((x) => x + into)), limits, HEADER, ROOT, `cut ${into} bytes in`);
    assert.deepStrictEqual([p.fallbacks, p.events.length], [0, 25]);
  }
  for (const f of feeders(16)) assert.equal(equivalent(input, f.split, limits, HEADER, ROOT, f.name).fallbacks, 0);
});

test('a sink that throws stops the framer; write() from inside a sink callback is refused', () => {
  const bf = new ByteFramer({ name: ROOT.name, scope: ROOT.scope }, LIMITS);
  assert.throws(() => bf.write(b(`<a/><b/>`), { stanza: () => { throw new Error('boom'); }, close: () => {}, fallback: () => {} }), /boom/);
  const seen: string[] = [];
  bf.write(b(`<c/>`), { stanza: (r) => seen.push(String(r)), close: () => {}, fallback: () => seen.push('fallback') });
  assert.deepStrictEqual(seen, []);
  const bf2 = new ByteFramer({ name: ROOT.name, scope: ROOT.scope }, LIMITS);
  const sink: ByteFramerSink = { stanza: () => bf2.write(b(`<x/>`), sink), close: () => {}, fallback: () => {} };
  assert.throws(() => bf2.write(b(`<a/>`), sink), /re-entrantly/);
});

test('a cut token longer than 512 bytes falls back at the chunk end; a complete one does not', () => {
  const input = `<a ${'n'.repeat(600)}='1'/><b/>`;
  assert.equal(alone(input).rest, null);
  assert.equal(alone([input.slice(0, 300), input.slice(300)]).rest, null);
  assert.equal(alone([input.slice(0, 550), input.slice(550)]).rest, input.slice(0, 550));
  for (const r of equivalentAll(input)) assert.equal(r.events.length, 2);
});

// --- differential fuzz ---------------------------------------------------------------------------

const FUZZ_SEED = (Number.parseInt(process.env['FUZZ_SEED'] ?? '', 10) || 20261125) >>> 0;
const FUZZ_CASES = 4000;
const FUZZ_BUDGET_MS = 12_000;

class Rng {
  private readonly r: () => number;
  constructor(seed: number) {
    this.r = prng(seed);
  }
  next(): number {
    return this.r();
  }
  int(n: number): number {
    return Math.floor(this.r() * n);
  }
  chance(p: number): boolean {
    return this.r() < p;
  }
  pick<T>(a: readonly T[]): T {
    return a[this.int(a.length)]!;
  }
}

const WORDS = ['hello', 'Hi there', 'x', 'a b c', '42', 'one, two; three.', '"quoted"', "it's", '>', '> >', ']', ']]', '] ]', '=', '/', '?', '!', '-', '--', '#', ':', 'a:b', '@example.test'];
/** valid multi-byte characters (none with the EF lead byte: see the UTF-8 unit test) */
const MULTI = ['é', 'ü', 'Привет', '今日は', '🙂', '𝄞', 'ß', '\u00a0', '\u0085', '\u2028', '\u200b', '\ue000', '\ud7ff', '\u{10ffff}', 'Ω'];
const ENTITIES = ['&lt;', '&gt;', '&amp;', '&quot;', '&apos;', '&#65;', '&#x1F600;', '&#10;', '&#xD;', '&#x10FFFF;', '&#0065;', '&#9;', '&#xe9;'];
const SPACES = [' ', '\t', '\n', '\r\n', '\r', '  '];
const LOCALS = ['message', 'presence', 'iq', 'body', 'subject', 'thread', 'query', 'item', 'x', 'delay', 'error', 'text', 'a', 'b-c', 'd.e', '_f', 'g1', 'session'];
const ATTR_NAMES = ['to', 'from', 'id', 'type', 'xml:lang', 'jid', 'name', 'ver', 'stamp', 'ask', 'subscription', 'a-b', 'c.d', '_e', 'f1'];
const PREFIX_URIS: Record<string, string> = { sc: NS_SESSION, sm: NS_SESSION, p1: 'urn:p1', p2: 'urn:p2', ack: 'urn:xmpp:sm:3' };
const DEFAULT_URIS = ['jabber:client', NS_COMPONENT, 'urn:xmpp:delay', 'jabber:iq:roster', ''];
const PREFIXED_LOCALS = ['c2s', 'sm', 'x', 'y'];

/** Generator of well-formed XMPP-ish stanzas with random (legal) spacing and quoting. */
class StanzaGen {
  constructor(private readonly r: Rng) {}

  private ws0(): string {
    return this.r.chance(0.85) ? '' : this.r.pick(SPACES);
  }

  private ws1(): string {
    return this.r.chance(0.8) ? ' ' : this.r.pick(SPACES);
  }

  /** character data; `quote`: an attribute value in these quotes */
  chars(quote?: string): string {
    let s = '';
    const n = this.r.int(5);
    for (let k = 0; k < n; k++) {
      const w = this.r.int(10);
      if (w < 4) s += this.r.pick(WORDS);
      else if (w < 6) s += this.r.pick(MULTI);
      else if (w < 8) s += this.r.pick(ENTITIES);
      else s += this.r.pick(SPACES);
    }
    s = s.replaceAll(']]>', ']] >');
    return quote === undefined ? s : s.replaceAll(quote, quote === "'" ? '&apos;' : '&quot;');
  }

  element(depth: number, maxDepth: number, scope: readonly string[], forced?: string): string {
    const attrs: [string, string][] = [];
    if (this.r.chance(0.4)) attrs.push(['xmlns', this.r.pick(DEFAULT_URIS)]);
    const here = [...scope];
    const declared = new Set<string>();
    for (let k = this.r.int(3); k > 0; k--) {
      const p = this.r.pick(Object.keys(PREFIX_URIS));
      if (declared.has(p)) continue;
      declared.add(p);
      attrs.push([`xmlns:${p}`, PREFIX_URIS[p]!]);
      if (!here.includes(p)) here.push(p);
    }
    const name = forced ?? (this.r.chance(0.2) ? `${this.r.pick(here)}:${this.r.pick(LOCALS)}` : this.r.pick(LOCALS));
    const used = new Set<string>();
    for (let k = this.r.int(6); k > 0; k--) {
      const a = this.r.pick(ATTR_NAMES);
      if (used.has(a)) continue;
      used.add(a);
      attrs.push([a, this.chars()]);
    }
    const locals = new Set<string>();
    for (let k = this.r.int(3); k > 0; k--) {
      const l = this.r.pick(PREFIXED_LOCALS);
      if (locals.has(l)) continue;
      locals.add(l);
      attrs.push([`${this.r.pick(here)}:${l}`, this.chars()]);
    }
    for (let k = attrs.length - 1; k > 0; k--) {
      const j = this.r.int(k + 1);
      [attrs[k], attrs[j]] = [attrs[j]!, attrs[k]!];
    }
    let s = `<${name}`;
    for (const [k, v] of attrs) {
      const q = this.r.chance(0.7) ? "'" : '"';
      s += `${this.ws1()}${k}${this.ws0()}=${this.ws0()}${q}${q === "'" ? v.replaceAll("'", '&apos;') : v.replaceAll('"', '&quot;')}${q}`;
    }
    s += this.ws0();
    const children = depth < maxDepth ? this.r.int(4) : 0;
    if (children === 0 && this.r.chance(0.5)) return `${s}/>`;
    s += '>';
    for (let k = 0; k < children; k++) {
      if (this.r.chance(0.6)) s += this.chars();
      s += this.element(depth + 1, maxDepth, here);
    }
    s += this.chars();
    return `${s}</${name}${this.ws0()}>`;
  }

  stanza(): string {
    if (this.r.chance(0.5)) {
      const inner = this.element(2, 2 + this.r.int(3), ['stream', 'ack'], this.r.pick(['message', 'presence', 'iq']));
      return `<route xmlns='${NS_COMPONENT}' to='example.test' from='c2s'>${inner}</route>`;
    }
    return this.element(1, 1 + this.r.int(4), ['stream', 'ack']);
  }

  stream(): string {
    let s = this.r.chance(0.3) ? this.r.pick(SPACES) : '';
    for (let k = 1 + this.r.int(4); k > 0; k--) s += this.stanza() + (this.r.chance(0.3) ? this.r.pick(SPACES) : '');
    if (this.r.chance(0.1)) s += `</stream:stream${this.ws0()}>` + (this.r.chance(0.5) ? this.stanza() : '');
    return s;
  }
}

/** Snippets a mutation inserts: malformations, and legal constructs the ByteFramer leaves to saxes. */
const SNIPPETS: readonly (string | readonly number[])[] = [
  '<!--c-->', '<![CDATA[x]]>', '<?pi x?>', '&bogus;', '&', '&#0;', '&#xD800;', '&#X41;', '&#' + '0'.repeat(40) + '65;', '&#000000065;',
  '</x>', '<x>', ']]>', '<!DOCTYPE x>', "<?xml version='1.0'?>", '\x01', '\x0b', '\x00', '\x7f', '\u0085', '\uFFFD', '\uFFFE', '\uFFFF',
  '\uFF01', '\uFFE0', '\uFB01', [0xff], [0xc0, 0x80], [0xed, 0xa0, 0x80], [0xe2, 0x82], [0xf4, 0x90, 0x80, 0x80], [0xef, 0xbf], [0x80],
  " zz:a='1'", " id='1' id='2'", '<zz:x/>', " xmlns:p=''", " xmlns:xml='http://www.w3.org/XML/1998/namespace'",
  " xmlns='http://www.w3.org/2000/xmlns/'", " xmlns:p=' u '", " xmlns:a='u' xmlns:b='u' a:x='1' b:x='2'",
  " xmlns:a='u' xmlns:b='v' a:x='1' b:x='2'", ' a="1"b="2"', 'é', '<a:b:c/>', '<1a/>', '</stream:stream>', '</stream:stream >',
  '</stream:streamx>', ' ', 'x', '<', '>', '/', '=', "'", '"', ':', '<a:1b xmlns:a="u"/>', '<xml:a/>', '\r\n', '<a/>', '</a>',
];
/** inserted where character data may be */
const CONTENT_SNIPPETS: readonly (string | readonly number[])[] = [
  '<!--c-->', '<![CDATA[x]]>', '<![CDATA[<a>]]>', '<?pi x?>', '<!DOCTYPE x>', "<?xml version='1.0'?>", '<!-- - -->', '<!', '<?', 'text', '&amp;',
  '\uFFFD', '\uFFFD\uFFFD', '\uFF01', '\uFFE0', 'x\uFFFDy', [0xff], [0xe2, 0x82],
  '</stream:stream>', '</stream:stream >', '</stream:streamx>', '</stream:strea>', '</stream:stream/>', '</ack:stream>', '</stream:stream\n>',
  '</stream:streax>', '</ack:streamxxx>', '</stream_stream>',
];
/** inserted in start tags */
const ATTR_SNIPPETS = [
  " zz:a='1'", " id='1' id='2'", " xmlns:p=''", " xmlns:p=' '", " xmlns:xml='urn:x'", " xmlns:xml='http://www.w3.org/XML/1998/namespace'",
  " xmlns:xmlns='urn:x'", " xmlns='http://www.w3.org/2000/xmlns/'", " xmlns='http://www.w3.org/XML/1998/namespace'",
  " xmlns:p='http://www.w3.org/XML/1998/namespace'", " xmlns:p='http://www.w3.org/2000/xmlns/'", " xmlns:p=' u '", " xmlns:p='\tu'",
  " xmlns=' http://www.w3.org/2000/xmlns/'", " xmlns:p='u&#32;'", " xmlns:a='u' xmlns:b='u' a:x='1' b:x='2'",
  " xmlns:a='u' xmlns:b='v' a:x='1' b:x='2'", " a='1'b='2'", " xmlns:sc='urn:x' sc:c2s='1'", " a='\uFFFD'", " a='<'", " a='&#0;'", ' a', " a='1",
];
const BYTES = [0x3c, 0x3e, 0x26, 0x3b, 0x2f, 0x3d, 0x27, 0x22, 0x3a, 0x20, 0x00, 0x01, 0x5d, 0x21, 0x3f, 0x23, 0x78, 0x80, 0xc3, 0xef, 0xbf, 0xbd, 0xff, 0x0d, 0x09];

function mutate(r: Rng, input: Buffer): Buffer {
  let d = input;
  for (let m = 1 + r.int(2); m > 0; m--) {
    // positions near markup are more interesting
    let at = r.int(d.length + 1);
    if (r.chance(0.5) && d.length > 0) {
      const marks: number[] = [];
      for (let k = 0; k < d.length; k++) if (d[k] === 0x3c || d[k] === 0x3e || d[k] === 0x20 || d[k] === 0x3d) marks.push(k);
      if (marks.length > 0) at = r.pick(marks) + r.int(3) - 1;
      at = Math.max(0, Math.min(d.length, at));
    }
    const kind = r.int(13);
    if (kind === 12) {
      // a U+FFFD, then invalid UTF-8 further on (StreamFramer's per-chunk UTF-8 check looks for both)
      const ends: number[] = [];
      for (let k = 0; k < d.length; k++) if (d[k] === 0x3e) ends.push(k + 1);
      const p1 = ends.length > 0 ? r.pick(ends) : 0;
      const p2 = Math.min(d.length, p1 + r.int(60));
      d = Buffer.concat([d.subarray(0, p1), b('\uFFFD'), d.subarray(p1, p2), b(r.pick([[0xff], [0xc3], [0xe2, 0x28]])), d.subarray(p2)]);
    } else if (kind === 11) {
      // an attribute (or declaration) added to a start tag, right before its '>' or '/>'
      const ends: number[] = [];
      for (let k = 0, open = -1; k < d.length; k++) {
        if (d[k] === 0x3c) open = d[k + 1] === 0x2f ? -1 : k;
        else if (d[k] === 0x3e && open >= 0) ends.push(d[k - 1] === 0x2f ? k - 1 : k);
      }
      const where = ends.length > 0 ? r.pick(ends) : at;
      d = Buffer.concat([d.subarray(0, where), b(r.pick(ATTR_SNIPPETS)), d.subarray(where)]);
    } else if (kind === 10) {
      // markup in character data or between stanzas: right after a '>'
      const ends: number[] = [];
      for (let k = 0; k < d.length; k++) if (d[k] === 0x3e) ends.push(k + 1);
      const where = ends.length > 0 ? r.pick(ends) : 0;
      const sn = r.pick(CONTENT_SNIPPETS);
      d = Buffer.concat([d.subarray(0, where), b(sn), d.subarray(where)]);
    } else if (kind < 2 && d.length > 0) {
      d = Buffer.from(d);
      d[Math.min(at, d.length - 1)] = r.chance(0.8) ? r.pick(BYTES) : r.int(256);
    } else if (kind < 7) {
      const sn = r.pick(SNIPPETS);
      d = Buffer.concat([d.subarray(0, at), b(sn), d.subarray(at)]);
    } else if (kind < 8) {
      d = Buffer.concat([d.subarray(0, at), d.subarray(Math.min(d.length, at + 1 + r.int(10)))]);
    } else if (kind < 9) {
      d = d.subarray(0, at);
    } else {
      const from = r.int(d.length + 1);
      d = Buffer.concat([d.subarray(0, at), d.subarray(from, from + r.int(40)), d.subarray(at)]);
    }
  }
  return d;
}

/** Cuts inside multi-byte characters: after their first byte, or their second. */
function insideCharacters(r: Rng): Split {
  return (data) => {
    const offsets: number[] = [];
    for (let k = 0; k < data.length; k++) if (data[k]! >= 0xc0 && r.chance(0.5)) offsets.push(k + 1 + r.int(2));
    return splitAt(data, offsets);
  };
}

function fixedSize(n: number): Split {
  return (data) => {
    const out: Uint8Array[] = [];
    for (let o = 0; o < data.length; o += n) out.push(data.subarray(o, Math.min(data.length, o + n)));
    return out.length > 0 ? out : [data];
  };
}

test(`differential fuzz against StreamFramer (FUZZ_SEED=${FUZZ_SEED}, up to ${FUZZ_CASES} cases)`, (t) => {
  const stats = { cases: 0, runs: 0, valid: 0, validFallbacks: 0, mutated: 0, mutatedFallbacks: 0, small: 0, errors: {} as Record<string, number>, closes: 0, stanzas: 0 };
  const validFallbackInputs: string[] = [];
  const t0 = performance.now();
  for (let n = 0; n < FUZZ_CASES && performance.now() - t0 < FUZZ_BUDGET_MS; n++) {
    const seed = (FUZZ_SEED ^ Math.imul(n + 1, 0x9e3779b1)) >>> 0;
    const r = new Rng(seed);
    const gen = new StanzaGen(r);
    let input = b(gen.stream());
    const mutated = r.chance(0.6);
    if (mutated) input = mutate(r, input);
    const small = r.chance(0.2);
    const limits: FramerLimits = small ? { maxStanzaBytes: HEADER.length + r.int(400), maxDepth: 1 + r.int(4) } : LIMITS;
    const splits: Split[] = [(d) => [d], randomSplits(seed, 4), randomSplits(seed ^ 0x5bd1e995, 32), fixedSize(1 + r.int(16)), insideCharacters(r)];
    if (input.length <= 600 || n % 4 === 0) splits.push(byByte);
    stats.cases++;
    if (mutated) stats.mutated++;
    if (small) stats.small++;
    const valid = !mutated && !small;
    if (valid) stats.valid++;
    for (const split of splits) {
      stats.runs++;
      const p = equivalent(input, split, limits, HEADER, ROOT, `fuzz case ${n} (seed ${seed}, FUZZ_SEED=${FUZZ_SEED}) limits=${JSON.stringify(limits)}`);
      if (p.fallbacks > 0) {
        if (valid) {
          stats.validFallbacks++;
          validFallbackInputs.push(lat(input));
        } else if (mutated) stats.mutatedFallbacks++;
      }
      if (split === splits[0]) {
        for (const e of p.events) {
          if (e.t === 'error') stats.errors[e.condition] = (stats.errors[e.condition] ?? 0) + 1;
          else if (e.t === 'close') stats.closes++;
          else stats.stanzas++;
        }
      }
    }
  }
  t.diagnostic(`fuzz: ${JSON.stringify(stats)} in ${Math.round(performance.now() - t0)} ms`);
  assert.ok(stats.cases >= 300, `at least 300 cases ran (${stats.cases})`);
  assert.ok(stats.stanzas > 1000 && stats.closes > 0, 'the corpus exercises stanzas and the stream end');
  for (const c of ['not-well-formed', 'policy-violation', 'restricted-xml']) assert.ok((stats.errors[c] ?? 0) > 0, `the corpus exercises ${c}`);
  assert.deepStrictEqual(validFallbackInputs.slice(0, 3), [], 'valid inputs never fall back');
});

// --- linear time ---------------------------------------------------------------------------------

/** A stanza of about `size` bytes: nested elements, attributes, entities, multi-byte text, long runs. */
function bigStanza(size: number): Buffer {
  const parts: string[] = [`<iq xmlns='jabber:client' type='result' id='roster'><query xmlns='jabber:iq:roster' xmlns:sc='${NS_SESSION}'>`];
  let len = parts[0]!.length;
  for (let k = 0; len < size; k++) {
    const item =
      k % 50 === 49
        ? `<note sc:c2s='${'v'.repeat(3000)}'>${'long text é 🙂 &amp; '.repeat(300)}</note>`
        : `<item jid='user${k}@example.test' name='User &amp; ${k} é' subscription='both' sc:c2s='${k}'><group>Friends 🙂 &lt;${k}&gt;</group></item>\n`;
    parts.push(item);
    len += Buffer.byteLength(item);
  }
  parts.push('</query></iq>');
  return b(parts.join(''));
}

/** Feeds `data` one byte at a time; returns the elapsed ms (asserts one stanza, no fallback). */
function byteByByte(data: Buffer): number {
  const limits = { maxStanzaBytes: 4 << 20, maxDepth: 16 };
  const bf = new ByteFramer({ name: ROOT.name, scope: ROOT.scope }, limits);
  let got: Buffer | null = null;
  const sink: ByteFramerSink = { stanza: (raw) => (got = raw), close: () => assert.fail('close'), fallback: () => assert.fail('fallback') };
  const t0 = performance.now();
  for (let k = 0; k < data.length; k++) bf.write(data.subarray(k, k + 1), sink);
  const ms = performance.now() - t0;
  assert.ok(got !== null && (got as Buffer).equals(data), 'the stanza comes out whole');
  return ms;
}

test('linear time: a 2 MiB stanza delivered one byte at a time', (t) => {
  const small = bigStanza(256 << 10);
  const big = bigStanza(2 << 20);
  byteByByte(small); // warm-up
  const tSmall = Math.min(byteByByte(small), byteByByte(small));
  const tBig = byteByByte(big);
  t.diagnostic(`256 KiB: ${tSmall.toFixed(0)} ms, 2 MiB: ${tBig.toFixed(0)} ms (ratio ${(tBig / tSmall).toFixed(1)} for 8x the bytes; quadratic would be 64)`);
  assert.ok(tBig < 8000, `2 MiB byte by byte in ${tBig.toFixed(0)} ms`);
  assert.ok(tBig / tSmall < 24, `8x the bytes took ${(tBig / tSmall).toFixed(1)}x the time`);
  // and the same stanza in one write, in 4 KiB chunks, and with StreamFramer's verdict
  assert.deepStrictEqual(equivalent(big, fixedSize(4096), { maxStanzaBytes: 4 << 20, maxDepth: 16 }).events.length, 1);
});
