import { test } from 'node:test';
import assert from 'node:assert/strict';
import { SaxesParser } from 'saxes';
import { StreamFramer, StreamFault } from '../../../src/xml/stream-framer.ts';
import type { FramerLimits, StreamErrorCondition } from '../../../src/xml/stream-framer.ts';
import { attrNS, element, firstChild, serialize, text, XML_NS } from '../../../src/xml/node.ts';
import type { XmlElement } from '../../../src/xml/node.ts';
import { NS_SESSION, NS_STREAM } from '../../../src/protocol/ns.ts';
import { byByte, feeders, randomSplits, splitAt, utf8 } from '../../helpers/split.ts';

// --- harness -------------------------------------------------------------------------------------

type Ev =
  | { t: 'open'; root: XmlElement }
  | { t: 'stanza'; el: XmlElement; raw: string }
  | { t: 'close' }
  | { t: 'error'; condition: StreamErrorCondition };

const LIMITS: FramerLimits = { maxStanzaBytes: 1 << 16, maxDepth: 16 };

interface RunOpts {
  limits?: FramerLimits;
  /** called after each event is recorded; may call framer.reset() */
  hook?: (ev: Ev, framer: StreamFramer) => void;
}

function run(chunks: Iterable<Uint8Array>, opts: RunOpts = {}): { events: Ev[]; framer: StreamFramer } {
  const events: Ev[] = [];
  const push = (ev: Ev): void => {
    events.push(ev);
    opts.hook?.(ev, framer);
  };
  const framer: StreamFramer = new StreamFramer(
    {
      onStreamOpen: (root) => push({ t: 'open', root }),
      onStanza: (el, raw) => push({ t: 'stanza', el, raw }),
      onStreamClose: () => push({ t: 'close' }),
      onError: (fault) => {
        assert.ok(fault instanceof StreamFault);
        assert.ok(fault instanceof Error);
        push({ t: 'error', condition: fault.condition });
      },
    },
    opts.limits ?? LIMITS,
  );
  for (const c of chunks) framer.write(c);
  return { events, framer };
}

const bytes = (input: string | Uint8Array): Uint8Array => (typeof input === 'string' ? utf8(input) : input);

/** Runs `input` through every feeder; all must produce the same events, which are returned. */
function runAll(input: string | Uint8Array, opts: RunOpts = {}): Ev[] {
  const data = bytes(input);
  let first: Ev[] | undefined;
  for (const f of feeders()) {
    const { events, framer } = run(f.split(data), opts);
    assert.equal(framer.bytesIn, data.length, `bytesIn with feeder ${f.name}`);
    if (first === undefined) first = events;
    else assert.deepStrictEqual(events, first, `events differ with feeder ${f.name}`);
  }
  return first!;
}

const summary = (events: Ev[]): string[] =>
  events.map((e) => (e.t === 'stanza' ? `stanza:${e.raw}` : e.t === 'error' ? `error:${e.condition}` : e.t === 'open' ? `open:${e.root.name}` : 'close'));

/** Expects `input` to end in exactly one error with `condition`, whatever the feeder. */
function expectError(input: string | Uint8Array, condition: StreamErrorCondition, opts: RunOpts = {}): Ev[] {
  const data = bytes(input);
  let first: Ev[] | undefined;
  for (const f of feeders()) {
    // what follows the fault must be ignored: valid stanzas in the same input and in later writes
    const tail = utf8(`<message xmlns='jabber:client'/> <iq xmlns='jabber:client'/>`);
    const chunks = [...f.split(data), tail, tail];
    const { events } = run(chunks, opts);
    const errs = events.filter((e) => e.t === 'error');
    assert.equal(errs.length, 1, `one error with ${f.name}: ${JSON.stringify(summary(events))}`);
    assert.deepStrictEqual(events[events.length - 1], { t: 'error', condition }, `condition with ${f.name}: ${JSON.stringify(summary(events))}`);
    if (first === undefined) first = events;
    else assert.deepStrictEqual(events, first, `events differ with feeder ${f.name}`);
  }
  return first!;
}

const HDR = `<?xml version='1.0'?><stream:stream xmlns:stream='${NS_STREAM}' version='1.0'>`;
const FTR = '</stream:stream>';
const stanzas = (events: Ev[]): Extract<Ev, { t: 'stanza' }>[] => events.filter((e): e is Extract<Ev, { t: 'stanza' }> => e.t === 'stanza');

// --- saxes semantics we rely on --------------------------------------------------------------------

test('saxes: position is the UTF-16 index just past the > of opentag/closetag, across chunks', () => {
  const doc = `<r>\r\n<a x='日本'>é😀</a >\r\n<b/><c\r\n y='1'\r\n/>x😀<d></d></r>`;
  // expected ends: index after each '>' closing a start tag, end tag or empty-element tag
  const ends = (re: RegExp): number[] => [...doc.matchAll(re)].map((m) => m.index! + m[0].length);
  const expOpen = ends(/<[a-z][^>]*>/g);
  const expClose = ends(/<\/[a-z]+\s*>|<[a-z][^>]*\/>/g);
  const cuts: string[][] = [[doc], [...doc], ...[1, 2, 3].map((seed) => splitStr(doc, seed))];
  // splitting between \r and \n, and inside surrogate pairs, is covered by the per-UTF-16-unit cut
  cuts.push(Array.from({ length: doc.length }, (_, i) => doc[i]!));
  for (const pieces of cuts) {
    const p = new SaxesParser({ xmlns: true });
    const open: number[] = [];
    const close: number[] = [];
    p.on('opentag', () => open.push(p.position));
    p.on('closetag', () => close.push(p.position));
    p.on('error', (e) => assert.fail(e));
    for (const s of pieces) p.write(s);
    p.close();
    assert.deepStrictEqual(open, expOpen);
    assert.deepStrictEqual(close.sort((a, b) => a - b), expClose.sort((a, b) => a - b));
  }
});

function splitStr(s: string, seed: number): string[] {
  // split a JS string at code-unit offsets drawn from the shared PRNG (may cut surrogate pairs)
  const codes = Uint8Array.from({ length: s.length }, () => 0);
  return randomSplits(seed, 12)(codes).reduce<{ out: string[]; at: number }>(
    (acc, c) => ({ out: [...acc.out, s.slice(acc.at, acc.at + c.length)], at: acc.at + c.length }),
    { out: [], at: 0 },
  ).out;
}

test('split helpers: splitAt, byByte, randomSplits reassemble the input', () => {
  const data = utf8('héllo 日本 😀 <x/>');
  assert.deepStrictEqual(splitAt(data, [3, 1, 3, 0, 99]).map((c) => c.length), [1, 2, data.length - 3]);
  assert.equal(byByte(data).length, data.length);
  for (const f of feeders()) {
    const chunks = f.split(data);
    assert.deepStrictEqual(Buffer.concat(chunks), Buffer.from(data), f.name);
    assert.ok(chunks.every((c) => c.length > 0), f.name);
  }
  assert.deepStrictEqual(randomSplits(7, 5)(data), randomSplits(7, 5)(data), 'deterministic per seed');
});

// --- framing -------------------------------------------------------------------------------------

test('header, stanzas and footer', () => {
  const s1 = `<message xmlns='jabber:client' to='bob@example.test' id='1'><body>hi &amp; bye</body></message>`;
  const s2 = `<iq xmlns='jabber:client' type='get' id='2'><query xmlns='jabber:iq:version'/></iq>`;
  const s3 = `<presence/>`;
  const input = HDR + s1 + s2 + s3 + FTR;
  const events = runAll(input);
  assert.deepStrictEqual(summary(events), ['open:stream:stream', `stanza:${s1}`, `stanza:${s2}`, `stanza:${s3}`, 'close']);
  const root = (events[0] as Extract<Ev, { t: 'open' }>).root;
  assert.deepStrictEqual(root, {
    name: 'stream:stream',
    local: 'stream',
    uri: NS_STREAM,
    attrs: { 'xmlns:stream': NS_STREAM, version: '1.0' },
    scope: { xml: XML_NS, stream: NS_STREAM },
    children: [],
  });
  const [m, iq, pres] = stanzas(events).map((e) => e.el);
  assert.equal(m!.uri, 'jabber:client');
  assert.equal(text(firstChild(m!, 'body')!), 'hi & bye');
  assert.equal(firstChild(iq!, 'query', 'jabber:iq:version')!.children.length, 0);
  assert.deepStrictEqual(pres, { name: 'presence', local: 'presence', uri: '', attrs: {}, scope: root.scope, children: [] });

  const { framer } = run([utf8(input)]);
  assert.equal(framer.stanzasIn, 3);
  assert.equal(framer.bytesIn, utf8(input).length);
});

test('the XML declaration is optional; a root in the default namespace is accepted', () => {
  const a = runAll(`<stream:stream xmlns:stream='${NS_STREAM}'><a/></stream:stream>`);
  assert.deepStrictEqual(summary(a), ['open:stream:stream', 'stanza:<a/>', 'close']);
  const b = runAll(`<stream xmlns='${NS_STREAM}'><a/></stream>`);
  assert.deepStrictEqual(summary(b), ['open:stream', 'stanza:<a/>', 'close']);
  // a stanza inherits the root's default namespace
  assert.equal(stanzas(b)[0]!.el.uri, NS_STREAM);
  // a self-closing root opens and closes the stream
  assert.deepStrictEqual(summary(runAll(`<stream:stream xmlns:stream='${NS_STREAM}'/>`)), ['open:stream:stream', 'close']);
});

test('whitespace keepalives between stanzas are ignored; raw has no surrounding whitespace', () => {
  const input = `${HDR} \n<a>x</a>  \r\n\t<b/> ${' '.repeat(100)}<c> y </c>\r\n ${FTR}`;
  const events = runAll(input);
  assert.deepStrictEqual(summary(events), ['open:stream:stream', 'stanza:<a>x</a>', 'stanza:<b/>', 'stanza:<c> y </c>', 'close']);
  // whitespace is not counted against the stanza limit (an idle link sends one space a minute)
  const idle = `${HDR}<a/>${' '.repeat(5000)}<b/>${' '.repeat(5000)}${FTR}`;
  assert.deepStrictEqual(summary(runAll(idle, { limits: { maxStanzaBytes: 100, maxDepth: 4 } })), ['open:stream:stream', 'stanza:<a/>', 'stanza:<b/>', 'close']);
});

test('multibyte UTF-8 split across chunks: text, attributes and raw are exact', () => {
  const s1 = `<message xmlns='jabber:client' to='josé@example.test'><body>é 日本 😀 ok</body></message>`;
  const s2 = `<nihon zokusei='値😀'>😀😀</nihon>`;
  const events = runAll(`${HDR}${s1}\n${s2}${FTR}`);
  const [a, b] = stanzas(events);
  assert.equal(a!.raw, s1);
  assert.equal(b!.raw, s2);
  assert.equal(a!.el.attrs['to'], 'josé@example.test');
  assert.equal(text(firstChild(a!.el, 'body')!), 'é 日本 😀 ok');
  assert.equal(b!.el.name, 'nihon');
  assert.equal(b!.el.attrs['zokusei'], '値😀');
  assert.deepStrictEqual(b!.el.children, ['😀😀']);
});

test('non-ASCII element and attribute names are refused (jabberd2\'s expat refuses some that saxes accepts)', () => {
  for (const bad of [`<日本/>`, `<a 属性='x'/>`, `<a\u2070b/>`]) {
    assert.deepStrictEqual(summary(runAll(`${HDR}${bad}`)).slice(-1), ['error:not-well-formed'], bad);
  }
});

test('a bare & does not make the framer swallow the stream: it fails fast', () => {
  const ev = summary(runAll(`${HDR}<a x='1 & 2'/><b/>${'x'.repeat(100)}`));
  assert.deepStrictEqual(ev.slice(-1), ['error:not-well-formed']);
});

test('invalid UTF-8 is refused', () => {
  const framerEvents: string[] = [];
  const f = new StreamFramer({
    onStreamOpen: () => framerEvents.push('open'),
    onStanza: () => framerEvents.push('stanza'),
    onStreamClose: () => framerEvents.push('close'),
    onError: (e) => framerEvents.push(`error:${e.condition}`),
  }, { maxStanzaBytes: 1 << 20, maxDepth: 10 });
  f.write(Buffer.concat([utf8(HDR), Buffer.from([0x3c, 0x61, 0xff, 0x62, 0x2f, 0x3e])]));
  assert.deepStrictEqual(framerEvents.slice(-1), ['error:not-well-formed']);
  assert.ok(!framerEvents.includes('stanza'));
});

test('a literal U+FFFD is a character, also split across writes; invalid UTF-8 beside one is still refused', () => {
  const run = (chunks: Uint8Array[]): string[] => {
    const out: string[] = [];
    const f = new StreamFramer({
      onStreamOpen: () => out.push('open'),
      onStanza: (_el, raw) => out.push(raw),
      onStreamClose: () => out.push('close'),
      onError: (e) => out.push(`error:${e.condition}`),
    }, { maxStanzaBytes: 1 << 20, maxDepth: 10 });
    f.write(utf8(HDR));
    for (const c of chunks) f.write(c);
    return out;
  };
  const s = utf8('<a>\uFFFD</a>');
  for (let cut = 1; cut < s.length; cut++) assert.deepStrictEqual(run([s.subarray(0, cut), s.subarray(cut)]), ['open', '<a>\uFFFD</a>'], `cut at ${cut}`);
  assert.deepStrictEqual(run([Buffer.concat([utf8('<a>\uFFFD'), Buffer.from([0xff]), utf8('</a>')])]).slice(-1), ['error:not-well-formed']);
});

test('raw is the original text: entities, CDATA, CRLF, quotes and spacing are preserved', () => {
  const s = `<m a="x&apos;y" b = '&#x41;&lt;'\r\n><![CDATA[<not a tag> & ]]>t&#233;xt&gt;\r\n</m\r\n>`;
  const events = runAll(`${HDR}${s}${FTR}`);
  const st = stanzas(events)[0]!;
  assert.equal(st.raw, s);
  assert.deepStrictEqual(st.el.attrs, { a: "x'y", b: 'A<' });
  // CDATA and the following text are one text child; CRLF is normalized to LF in the model
  assert.deepStrictEqual(st.el.children, ['<not a tag> & téxt>\n']);
});

test('namespaces: sc: and sm: resolve to the session namespace; scope and attrs as written', () => {
  const hdr = `<stream:stream xmlns:stream='${NS_STREAM}' xmlns:sc='${NS_SESSION}' xmlns='jabber:component:accept'>`;
  const s1 = `<route from='c2s' to='sm'><sc:session action='start' sc:c2s='11' target='a@example.test'/></route>`;
  const s2 = `<route xmlns='http://jabberd.jabberstudio.org/ns/component/1.0'><iq xmlns:sm='${NS_SESSION}' xmlns='jabber:client' sm:c2s='12' sm:sm='abc'/></route>`;
  const events = runAll(hdr + s1 + s2 + FTR);
  const root = (events[0] as Extract<Ev, { t: 'open' }>).root;
  assert.deepStrictEqual(root.scope, { xml: XML_NS, stream: NS_STREAM, sc: NS_SESSION, '': 'jabber:component:accept' });
  const [r1, r2] = stanzas(events).map((e) => e.el);

  // s1: everything inherited from the root
  assert.equal(r1!.uri, 'jabber:component:accept');
  assert.equal(r1!.scope, root.scope, 'scope object shared with the parent when unchanged');
  const sess = r1!.children[0] as XmlElement;
  assert.deepStrictEqual([sess.name, sess.local, sess.uri], ['sc:session', 'session', NS_SESSION]);
  assert.deepStrictEqual(sess.attrs, { action: 'start', 'sc:c2s': '11', target: 'a@example.test' });
  assert.equal(attrNS(sess, NS_SESSION, 'c2s'), '11');
  assert.equal(attrNS(sess, NS_SESSION, 'action'), undefined, 'unprefixed attributes are in no namespace');

  // s2: declarations on the stanza itself, kept in attrs
  const iq = r2!.children[0] as XmlElement;
  assert.equal(r2!.uri, 'http://jabberd.jabberstudio.org/ns/component/1.0');
  assert.deepStrictEqual(iq.attrs, { 'xmlns:sm': NS_SESSION, xmlns: 'jabber:client', 'sm:c2s': '12', 'sm:sm': 'abc' });
  assert.equal(iq.uri, 'jabber:client');
  assert.equal(iq.scope['sm'], NS_SESSION);
  assert.equal(iq.scope['sc'], NS_SESSION);
  assert.equal(attrNS(iq, NS_SESSION, 'c2s'), '12');
  assert.equal(attrNS(iq, NS_SESSION, 'sm'), 'abc');

  // serialize(): prefixes and the default namespace declared on the root are re-declared
  const out = serialize(r1!);
  assert.match(out, /^<route from='c2s' to='sm' xmlns='jabber:component:accept'>/);
  assert.match(out, /<sc:session [^>]*xmlns:sc='http:\/\/jabberd\.jabberstudio\.org\/ns\/session\/1\.0'/);
  // and the result parses standalone to the same model (modulo the added declarations)
  const again = stanzas(runAll(`<stream:stream xmlns:stream='${NS_STREAM}'>${out}</stream:stream>`))[0]!.el;
  const againSess = again.children[0] as XmlElement;
  assert.equal(again.uri, r1!.uri);
  assert.equal(againSess.uri, NS_SESSION);
  assert.equal(attrNS(againSess, NS_SESSION, 'c2s'), '11');
});

test('serialize() output frames back to the same text and namespaces (node.ts fixes)', () => {
  // a CR from a character reference survives (a literal CR would be read back as LF)
  const m = stanzas(runAll(`${HDR}<m>a&#13;b\r\nc</m>`))[0]!.el;
  assert.deepStrictEqual(m.children, ['a\rb\nc']);
  const m2 = stanzas(runAll(`${HDR}${serialize(m)}`))[0]!.el;
  assert.deepStrictEqual(m2.children, ['a\rb\nc']);
  // a child in no namespace under a parent with a default namespace gets xmlns=''
  const built = element('message', { xmlns: 'jabber:client' }, [element('x')]);
  const back = stanzas(runAll(`${HDR}${serialize(built)}`))[0]!.el;
  assert.deepStrictEqual([back.uri, (back.children[0] as XmlElement).uri], ['jabber:client', '']);
});

// --- reset (stream restart after SASL success) ---------------------------------------------------

const SASL = 'urn:ietf:params:xml:ns:xmpp-sasl';
const SUCCESS = `<success xmlns='${SASL}'>cnNwYXV0aD0x</success>`;
const HDR2 = `<?xml version='1.0'?><stream:stream xmlns:stream='${NS_STREAM}' version='1.0' id='two'>`;
const resetOnSuccess: RunOpts['hook'] = (ev, framer) => {
  if (ev.t === 'stanza' && ev.el.local === 'success' && ev.el.uri === SASL) framer.reset();
};

test('reset() from inside onStanza: the rest of the same chunk is the new stream', () => {
  const input = `${HDR}<challenge xmlns='${SASL}'>x</challenge>${SUCCESS}${HDR2}<bind xmlns='c'/>${FTR}`;
  const events = runAll(input, { hook: resetOnSuccess });
  assert.deepStrictEqual(summary(events), [
    'open:stream:stream',
    `stanza:<challenge xmlns='${SASL}'>x</challenge>`,
    `stanza:${SUCCESS}`,
    'open:stream:stream',
    `stanza:<bind xmlns='c'/>`,
    'close',
  ]);
  assert.equal((events[3] as Extract<Ev, { t: 'open' }>).root.attrs['id'], 'two');
  // a keepalive between the success and the new header is tolerated
  const ws = runAll(`${HDR}${SUCCESS} \n ${HDR2}<a/>`, { hook: resetOnSuccess });
  assert.deepStrictEqual(summary(ws), ['open:stream:stream', `stanza:${SUCCESS}`, 'open:stream:stream', 'stanza:<a/>']);
  // without the reset, the second header is an error
  expectError(`${HDR}${SUCCESS}${HDR2}`, 'not-well-formed');
});

test('reset() between writes', () => {
  for (const f of feeders()) {
    const events: string[] = [];
    const framer = new StreamFramer(
      {
        onStreamOpen: (r) => events.push(`open:${r.attrs['id'] ?? ''}`),
        onStanza: (el) => events.push(el.local),
        onStreamClose: () => events.push('close'),
        onError: (e) => events.push(`error:${e.condition}`),
      },
      LIMITS,
    );
    for (const c of f.split(utf8(`${HDR}${SUCCESS}`))) framer.write(c);
    framer.reset();
    for (const c of f.split(utf8(`${HDR2}<bind xmlns='c'/>${FTR}<ignored/>`))) framer.write(c);
    assert.deepStrictEqual(events, ['open:', 'success', 'open:two', 'bind', 'close'], f.name);
    assert.equal(framer.stanzasIn, 2);
  }
});

test('reset() from onStreamOpen / onStreamClose restarts right after that markup', () => {
  const a = runAll(`${HDR}${HDR2}<a/>`, { hook: (ev, fr) => ev.t === 'open' && ev.root.attrs['id'] === undefined && fr.reset() });
  assert.deepStrictEqual(summary(a), ['open:stream:stream', 'open:stream:stream', 'stanza:<a/>']);
  const b = runAll(`${HDR}<a/>${FTR}${HDR2}<b/>`, { hook: (ev, fr) => ev.t === 'close' && fr.reset() });
  assert.deepStrictEqual(summary(b), ['open:stream:stream', 'stanza:<a/>', 'close', 'open:stream:stream', 'stanza:<b/>']);
});

test('reset() after an error starts over with the next write', () => {
  for (const f of feeders()) {
    const events: string[] = [];
    const framer: StreamFramer = new StreamFramer(
      {
        onStreamOpen: () => events.push('open'),
        onStanza: (el) => events.push(el.local),
        onStreamClose: () => events.push('close'),
        onError: (e) => events.push(`error:${e.condition}`),
      },
      LIMITS,
    );
    // an incomplete multibyte character is pending in the decoder when the error hits
    for (const c of f.split(Buffer.concat([utf8(`${HDR}<a/><!-- x -->`), Buffer.from([0xe6, 0x97])]))) framer.write(c);
    framer.write(utf8('<b/>'));
    framer.reset();
    for (const c of f.split(utf8(`${HDR}<n>日</n>`))) framer.write(c);
    assert.deepStrictEqual(events, ['open', 'a', 'error:restricted-xml', 'open', 'n'], f.name);
  }
  // reset() called from inside onError: the rest of that chunk is dropped, the next write is new
  const events: string[] = [];
  const framer: StreamFramer = new StreamFramer(
    {
      onStreamOpen: () => events.push('open'),
      onStanza: (el) => events.push(el.local),
      onStreamClose: () => events.push('close'),
      onError: (e) => {
        events.push(`error:${e.condition}`);
        framer.reset();
      },
    },
    LIMITS,
  );
  framer.write(utf8(`${HDR}<a/><?pi?><dropped/>`));
  framer.write(utf8(`${HDR}<c/>`));
  assert.deepStrictEqual(events, ['open', 'a', 'error:restricted-xml', 'open', 'c']);
});

test('data after </stream:stream> is ignored', () => {
  const events = runAll(`${HDR}<a/>${FTR}<b/>garbage<<<&bogus;${HDR}`);
  assert.deepStrictEqual(summary(events), ['open:stream:stream', 'stanza:<a/>', 'close']);
});

// --- forbidden constructs (RFC 6120 §11.1) -------------------------------------------------------

test('restricted XML: DOCTYPE, DTD, entity declarations, PIs, comments -> restricted-xml', () => {
  const cases = [
    `<?xml version='1.0'?><!DOCTYPE stream:stream>${HDR.slice(21)}`,
    `<!DOCTYPE x [<!ENTITY boom 'aaaaaaaaaa'>]><stream:stream xmlns:stream='${NS_STREAM}'>`,
    `${HDR}<a><!DOCTYPE x></a>`,
    `${HDR}<!DOCTYPE x>`,
    `<?foo bar?>${HDR}`,
    `${HDR}<a/><?foo bar?><b/>`,
    `${HDR}<a><?foo?></a>`,
    `<!-- hello -->${HDR}`,
    `${HDR}<a/><!-- keepalive? --><b/>`,
    `${HDR}<a>x<!-- c -->y</a>`,
    `${HDR}<a><b><!----></b></a>`,
  ];
  for (const c of cases) {
    const events = expectError(c, 'restricted-xml');
    assert.ok(!events.some((e) => e.t === 'stanza' && e.raw !== '<a/>'), c);
  }
  // the stanza before the construct is delivered, the ones after are not
  assert.deepStrictEqual(summary(expectError(`${HDR}<a/><!-- c --><b/>`, 'restricted-xml')), ['open:stream:stream', 'stanza:<a/>', 'error:restricted-xml']);
});

test('undefined entities and other saxes errors -> not-well-formed', () => {
  const cases = [
    `${HDR}<a>&bogus;</a>`,
    `${HDR}<a b='&bogus;'/>`,
    `${HDR}<a/>&bogus;`,
    `${HDR}<a><b></a>`, // mismatched, inner
    `${HDR}<a></b>`, // mismatched at depth 1
    `${HDR}<a><b></b></c><d/>`,
    `${HDR}<a b='1' b='2'/>`,
    `${HDR}<a xmlns:p='u' xmlns:q='u' p:x='1' q:x='2'/>`, // same expanded name
    `${HDR}<a b='<'/>`,
    `${HDR}<a b=1/>`,
    `${HDR}<a>\u0001</a>`,
    `${HDR}<a/>hello<b/>`, // text at depth 1
    `${HDR}<a/>hello`,
    `${HDR}<a/>&amp;<b/>`,
    `${HDR}<a/><![CDATA[x]]><b/>`,
    `${HDR}<a/>hello${FTR}`,
    `${HDR}<a/></stream:foo>`,
    `${HDR}<a/></b>`,
    `hello${HDR}`,
    `${HDR}<a/><?xml version='1.0'?>`,
    `${HDR}<p:a/>`, // unbound element prefix
    `${HDR}<a p:b='1'/>`, // unbound attribute prefix
    `<stream:stream>`, // unbound root prefix
    `${HDR}<a xmlns:p=''/>`, // undeclaring a prefix (XML 1.1 only)
    `<?xml version='1.1'?>${HDR.slice(21)}<a>&#1;</a>`, // parsed as XML 1.0 whatever the declaration
    `${HDR}<1a/>`,
    `${HDR}<a>]]></a>`,
  ];
  for (const c of cases) expectError(c, 'not-well-formed');
  // saxes reports a close-tag mismatch only after its closetag event: the stanza must not leak out
  assert.deepStrictEqual(summary(expectError(`${HDR}<a/><b></c>`, 'not-well-formed')), ['open:stream:stream', 'stanza:<a/>', 'error:not-well-formed']);
  assert.deepStrictEqual(summary(expectError(`${HDR}<a><x/></b >`, 'not-well-formed')), ['open:stream:stream', 'error:not-well-formed']);
  assert.deepStrictEqual(summary(expectError(`${HDR}<ab></a>`, 'not-well-formed')), ['open:stream:stream', 'error:not-well-formed']);
  assert.deepStrictEqual(summary(expectError(`${HDR}<a></ab>`, 'not-well-formed')), ['open:stream:stream', 'error:not-well-formed']);
  // ... nor the stream close
  assert.deepStrictEqual(summary(expectError(`${HDR}<a/></stream:foo>`, 'not-well-formed')), ['open:stream:stream', 'stanza:<a/>', 'error:not-well-formed']);
  assert.deepStrictEqual(summary(expectError(`${HDR}<a/></stream>`, 'not-well-formed')), ['open:stream:stream', 'stanza:<a/>', 'error:not-well-formed']);
});

test('the root must be {http://etherx.jabber.org/streams}stream -> invalid-namespace', () => {
  expectError(`<stream:features xmlns:stream='${NS_STREAM}'>`, 'invalid-namespace');
  expectError(`<stream:stream xmlns:stream='urn:not-streams'>`, 'invalid-namespace');
  expectError(`<stream xmlns='jabber:client'>`, 'invalid-namespace');
  expectError(`<?xml version='1.0'?><message xmlns='jabber:client'/>`, 'invalid-namespace');
});

test('a non-UTF-8 encoding declaration -> bad-format', () => {
  expectError(`<?xml version='1.0' encoding='ISO-8859-1'?><stream:stream xmlns:stream='${NS_STREAM}'>`, 'bad-format');
  assert.deepStrictEqual(summary(runAll(`<?xml version='1.0' encoding='UTF-8'?><stream:stream xmlns:stream='${NS_STREAM}'><a/>`)), ['open:stream:stream', 'stanza:<a/>']);
});

// --- limits --------------------------------------------------------------------------------------

test('maxDepth: the root is depth 0, a stanza depth 1', () => {
  const limits = { maxStanzaBytes: 1 << 16, maxDepth: 3 };
  assert.deepStrictEqual(summary(runAll(`${HDR}<a><b><c/></b></a>`, { limits })), ['open:stream:stream', 'stanza:<a><b><c/></b></a>']);
  const ev = expectError(`${HDR}<z/><a><b><c><d/></c></b></a>`, 'policy-violation', { limits });
  assert.deepStrictEqual(summary(ev), ['open:stream:stream', 'stanza:<z/>', 'error:policy-violation']);
  expectError(`${HDR}<a><b><c><d>`, 'policy-violation', { limits });
  expectError(`${HDR}<a/>`, 'policy-violation', { limits: { maxStanzaBytes: 100, maxDepth: 0 } });
});

test('maxStanzaBytes counts UTF-8 bytes of the stanza; the limit itself is allowed', () => {
  const hdr = `<stream xmlns='${NS_STREAM}'>`;
  assert.equal(Buffer.byteLength(hdr), 49);
  const ok = `<m>${'😀'.repeat(13)}a</m>`; // 3 + 52 + 1 + 4 = 60 bytes, 34 UTF-16 units
  const over = `<m>${'😀'.repeat(13)}é</m>`; // 61 bytes
  assert.equal(Buffer.byteLength(ok), 60);
  assert.equal(Buffer.byteLength(over), 61);
  const limits = { maxStanzaBytes: 60, maxDepth: 4 };
  // whitespace around stanzas does not count
  assert.deepStrictEqual(summary(runAll(`${hdr}  ${ok}\n${ok} `, { limits })), ['open:stream', `stanza:${ok}`, `stanza:${ok}`]);
  const ev = expectError(`${hdr}${ok} ${over}`, 'policy-violation', { limits });
  assert.deepStrictEqual(summary(ev), ['open:stream', `stanza:${ok}`, 'error:policy-violation']);
  // 3-byte characters: 20 x 日 = 60 bytes of text, 67 bytes of stanza
  const cjk = `<m>${'日'.repeat(20)}</m>`;
  assert.deepStrictEqual(summary(runAll(`${hdr}${cjk}`, { limits: { maxStanzaBytes: 67, maxDepth: 4 } })), ['open:stream', `stanza:${cjk}`]);
  expectError(`${hdr}${cjk}`, 'policy-violation', { limits: { maxStanzaBytes: 66, maxDepth: 4 } });
});

test('a never-ending stanza is stopped while it arrives (bounded memory)', () => {
  const max = 10_000;
  for (const chunkSize of [1, 7, 1000, 4096]) {
    let errorAt = -1;
    let written = 0;
    const framer = new StreamFramer(
      {
        onStreamOpen: () => {},
        onStanza: () => assert.fail('no stanza expected'),
        onStreamClose: () => assert.fail('no close expected'),
        onError: (f) => {
          assert.equal(f.condition, 'policy-violation');
          errorAt = written;
        },
      },
      { maxStanzaBytes: max, maxDepth: 8 },
    );
    framer.write(utf8(`${HDR}<message><body>`));
    written = 0;
    const payload = utf8('é日😀'.repeat(2 * max)); // split anywhere, including inside characters
    for (let at = 0; at < payload.length && errorAt < 0; at += chunkSize) {
      const chunk = payload.subarray(at, at + chunkSize);
      written += chunk.length;
      framer.write(chunk);
    }
    assert.ok(errorAt > 0, `error fired (chunk ${chunkSize})`);
    assert.ok(errorAt <= max + chunkSize, `error fired at ${errorAt} bytes (chunk ${chunkSize})`);
    framer.write(utf8('</body></message><a/>')); // ignored
    assert.equal(framer.stanzasIn, 0);
  }
});

test('the stream header counts against maxStanzaBytes while unterminated', () => {
  const limits = { maxStanzaBytes: 200, maxDepth: 4 };
  // an endless header, in many chunks
  let fired = '';
  const framer = new StreamFramer(
    {
      onStreamOpen: () => assert.fail('no open expected'),
      onStanza: () => assert.fail('no stanza expected'),
      onStreamClose: () => assert.fail('no close expected'),
      onError: (f) => (fired = f.condition),
    },
    limits,
  );
  framer.write(utf8(`<?xml version='1.0'?><stream:stream xmlns:stream='${NS_STREAM}'`));
  for (let i = 0; i < 100 && fired === ''; i++) framer.write(utf8(` a${i}='${'x'.repeat(20)}'`));
  assert.equal(fired, 'policy-violation');
  // a complete but oversized header in one write
  expectError(`<stream:stream xmlns:stream='${NS_STREAM}' id='${'x'.repeat(300)}'><a/>`, 'policy-violation', { limits });
  // a never-ending comment or CDATA is bounded by the limit as well
  expectError(`${HDR.slice(21)}<a><![CDATA[${'x'.repeat(300)}`, 'policy-violation', { limits });
  expectError(`<stream:stream xmlns:stream='${NS_STREAM}'><!-- ${'x'.repeat(300)}`, 'policy-violation', { limits });
});

// --- handler contract ----------------------------------------------------------------------------

test('an exception thrown by a handler propagates out of write(); the framer then stops until reset()', () => {
  const seen: string[] = [];
  const framer = new StreamFramer(
    {
      onStreamOpen: () => seen.push('open'),
      onStanza: (el) => {
        seen.push(el.local);
        if (el.local === 'boom') throw new Error('handler failed');
      },
      onStreamClose: () => seen.push('close'),
      onError: () => seen.push('error'),
    },
    LIMITS,
  );
  assert.throws(() => framer.write(utf8(`${HDR}<a/><boom/><b/>`)), /handler failed/);
  framer.write(utf8('<c/>'));
  framer.reset();
  framer.write(utf8(`${HDR}<d/>`));
  assert.deepStrictEqual(seen, ['open', 'a', 'boom', 'open', 'd']);
});

test('write() from inside a handler is refused', () => {
  const framer: StreamFramer = new StreamFramer(
    {
      onStreamOpen: () => {},
      onStanza: () => framer.write(utf8('<x/>')),
      onStreamClose: () => {},
      onError: () => {},
    },
    LIMITS,
  );
  assert.throws(() => framer.write(utf8(`${HDR}<a/>`)), /re-entrant/);
});
