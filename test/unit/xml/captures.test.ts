/**
 * The framer against real jabberd2 wire captures (/work/shared/fixtures/jabberd2): every
 * direction of every connection, whole, byte by byte, in seeded random splits and in the original
 * TCP reads, with the stream restart after SASL success.
 */
import { test } from 'node:test';
import assert from 'node:assert/strict';
import { StreamFramer } from '../../../src/xml/stream-framer.ts';
import type { StreamFault } from '../../../src/xml/stream-framer.ts';
import { attr, attrNS, childElements, firstChild, serialize, text } from '../../../src/xml/node.ts';
import type { XmlElement } from '../../../src/xml/node.ts';
import { NS_CLIENT, NS_COMPONENT, NS_SASL, NS_SESSION, NS_STREAM } from '../../../src/protocol/ns.ts';
import { connections, loadCapture, parseCapture, unescapeData } from '../../helpers/captures.ts';
import type { CaptureConnection, CaptureRead, Direction } from '../../helpers/captures.ts';
import { feeders } from '../../helpers/split.ts';
import type { Feeder } from '../../helpers/split.ts';

const LIMITS = { maxStanzaBytes: 1 << 16, maxDepth: 32 };
const DISCO_INFO = 'http://jabber.org/protocol/disco#info';

interface Result {
  roots: XmlElement[];
  stanzas: { el: XmlElement; raw: string }[];
  closes: number;
  errors: StreamFault[];
  bytesIn: number;
  stanzasIn: number;
}

/**
 * Reset rule inside onStanza: the router restarts its side of the stream after sending
 * `<success/>` (R>C); the component restarts after receiving it, i.e. right after its last SASL
 * `<response/>` (C>R; DIGEST-MD5 with jabberd2 has a single response: rspauth comes in success).
 */
function isRestartPoint(dir: Direction, el: XmlElement): boolean {
  return el.uri === NS_SASL && el.local === (dir === 'R>C' ? 'success' : 'response');
}

/** Feeds `parts` (written one after the other, reset() between them) through a framer. */
function frame(dir: Direction | undefined, parts: Uint8Array[][]): Result {
  const r: Result = { roots: [], stanzas: [], closes: 0, errors: [], bytesIn: 0, stanzasIn: 0 };
  const framer: StreamFramer = new StreamFramer(
    {
      onStreamOpen: (root) => r.roots.push(root),
      onStanza: (el, raw) => {
        r.stanzas.push({ el, raw });
        if (dir !== undefined && isRestartPoint(dir, el)) framer.reset();
      },
      onStreamClose: () => r.closes++,
      onError: (f) => r.errors.push(f),
    },
    LIMITS,
  );
  parts.forEach((chunks, i) => {
    if (i > 0) framer.reset();
    for (const c of chunks) framer.write(c);
  });
  r.bytesIn = framer.bytesIn;
  r.stanzasIn = framer.stanzasIn;
  return r;
}

/** The decoded direction is exactly headers and stanza raws, in order (the captures have no whitespace). */
function assertTiling(textIn: string, r: Result, what: string): void {
  let at = 0;
  let s = 0;
  const HEADER = /(?:<\?xml[^>]*\?>)?<stream:stream[^>]*>/y;
  while (at < textIn.length) {
    HEADER.lastIndex = at;
    if (HEADER.test(textIn)) {
      at = HEADER.lastIndex;
      continue;
    }
    const st = r.stanzas[s++];
    assert.ok(st !== undefined, `${what}: text left at ${at}`);
    assert.equal(textIn.slice(at, at + st.raw.length), st.raw, `${what}: raw of stanza ${s} at ${at}`);
    at += st.raw.length;
  }
  assert.equal(s, r.stanzas.length, `${what}: every stanza accounted for`);
}

const EXPECTED: Record<string, Record<Direction, number>> = {
  // independently counted: depth-1 elements of each direction
  'sm-router.log': { 'C>R': 82, 'R>C': 86 },
  'c2s-router.log': { 'C>R': 44, 'R>C': 50 },
};

const tcpReads = (c: CaptureConnection, dir: Direction): Feeder => ({ name: 'original TCP reads', split: () => c.reads[dir] });

/** Byte offset in the C>R direction of `conn` where the router's `<success>` had been sent. */
function successOffset(reads: readonly CaptureRead[], conn: number): number {
  let off = 0;
  for (const r of reads) {
    if (r.conn !== conn) continue;
    if (r.dir === 'R>C' && r.data.includes('<success')) return off;
    if (r.dir === 'C>R') off += r.data.length;
  }
  throw new Error('no success in capture');
}

for (const file of Object.keys(EXPECTED)) {
  const reads = loadCapture(file);
  const conns = connections(reads);

  test(`${file}: every direction frames identically with every feeder, no errors`, () => {
    assert.equal(conns.length, 1);
    for (const c of conns) {
      for (const dir of ['C>R', 'R>C'] as const) {
        const data = c.bytes[dir];
        const textIn = data.toString('utf8');
        let first: Result | undefined;
        for (const f of [...feeders(), tcpReads(c, dir)]) {
          const what = `${file} #${c.conn} ${dir} (${f.name})`;
          const r = frame(dir, [f.split(data)]);
          assert.deepStrictEqual(r.errors, [], what);
          assert.equal(r.roots.length, 2, `${what}: initial stream and restart after SASL`);
          for (const root of r.roots) assert.deepStrictEqual([root.local, root.uri, root.children], ['stream', NS_STREAM, []]);
          assert.equal(r.stanzas.length, EXPECTED[file]![dir], what);
          assert.equal(r.stanzasIn, r.stanzas.length, what);
          assert.equal(r.bytesIn, data.length, what);
          assert.equal(r.closes, 0, `${what}: the captures end without </stream:stream>`);
          assertTiling(textIn, r, what);
          if (first === undefined) first = r;
          else assert.deepStrictEqual(r.stanzas, first.stanzas, what);
        }
      }
    }
  });

  test(`${file}: C>R restarted between writes at the moment the router's success arrived`, () => {
    for (const c of conns) {
      const data = c.bytes['C>R'];
      const off = successOffset(reads, c.conn);
      const reference = frame('C>R', [[data]]);
      for (const f of feeders()) {
        const r = frame(undefined, [f.split(data.subarray(0, off)), f.split(data.subarray(off))]);
        assert.deepStrictEqual(r.errors, [], f.name);
        assert.equal(r.roots.length, 2, f.name);
        assert.deepStrictEqual(r.stanzas, reference.stanzas, f.name);
      }
      // the restart point found in the data is right after the component's SASL response
      const before = frame(undefined, [[data.subarray(0, off)]]);
      assert.equal(before.stanzas.at(-1)!.el.local, 'response');
    }
  });

  test(`${file}: serialize() of every stanza is self-contained and stable`, () => {
    for (const c of conns) {
      for (const dir of ['C>R', 'R>C'] as const) {
        const r = frame(dir, [[c.bytes[dir]]]);
        const out = r.stanzas.map((s) => serialize(s.el));
        const wrapped = Buffer.from(`<stream:stream xmlns:stream='${NS_STREAM}'>${out.join('')}`);
        const again = frame(undefined, [[wrapped]]);
        assert.deepStrictEqual(again.errors, []);
        assert.deepStrictEqual(again.stanzas.map((s) => serialize(s.el)), out);
        again.stanzas.forEach((s, i) => {
          const orig = r.stanzas[i]!.el;
          assert.deepStrictEqual([s.el.name, s.el.uri], [orig.name, orig.uri]);
        });
      }
    }
  });
}

// --- specific stanzas ----------------------------------------------------------------------------

function stanzasOf(file: string, dir: Direction): XmlElement[] {
  const [c] = connections(loadCapture(file));
  return frame(dir, [[c!.bytes[dir]]]).stanzas.map((s) => s.el);
}

test('sm-router C>R: SASL, bind, then the first route is sm -> c2s disco#info', () => {
  const els = stanzasOf('sm-router.log', 'C>R');
  assert.deepStrictEqual(els.slice(0, 4).map((e) => `{${e.uri}}${e.local}`), [`{${NS_SASL}}auth`, `{${NS_SASL}}response`, `{${NS_COMPONENT}}bind`, `{${NS_COMPONENT}}bind`]);
  assert.equal(attr(els[0]!, 'mechanism'), 'DIGEST-MD5');
  assert.deepStrictEqual([attr(els[2]!, 'name'), attr(els[3]!, 'name'), attr(els[3]!, 'multi')], ['sm', 'example.test', 'to']);
  const route = els.find((e) => e.local === 'route')!;
  assert.equal(route.uri, NS_COMPONENT);
  assert.equal(attr(route, 'from'), 'sm');
  assert.equal(attr(route, 'to'), 'c2s');
  const iq = firstChild(route, 'iq', NS_CLIENT)!;
  assert.deepStrictEqual([attr(iq, 'type'), attr(iq, 'from'), attr(iq, 'to')], ['get', 'sm', 'c2s']);
  assert.ok(firstChild(iq, 'query', DISCO_INFO));
});

test('sm-router R>C: SASL challenge/success, and the router bounces to unknown.test with error=404', () => {
  const els = stanzasOf('sm-router.log', 'R>C');
  assert.deepStrictEqual(els.slice(0, 3).map((e) => `{${e.uri}}${e.local}`), [`{${NS_STREAM}}features`, `{${NS_SASL}}challenge`, `{${NS_SASL}}success`]);
  assert.equal(text(firstChild(firstChild(els[0]!, 'mechanisms', NS_SASL)!, 'mechanism')!), 'DIGEST-MD5');
  const rspauth = Buffer.from(text(els[2]!), 'base64').toString();
  assert.match(rspauth, /^rspauth=[0-9a-f]{32}$/);
  const bounces = els.filter((e) => e.local === 'route' && attr(e, 'error') === '404');
  assert.equal(bounces.length, 2);
  for (const b of bounces) assert.deepStrictEqual([attr(b, 'to'), attr(b, 'from')], ['unknown.test', 'sm']);
  const msg = firstChild(bounces[0]!, 'message', NS_CLIENT)!;
  assert.deepStrictEqual([attr(msg, 'to'), attr(msg, 'id'), text(firstChild(msg, 'body')!)], ['nobody@unknown.test', 'lab-unroutable-0', 'anyone?']);
  assert.equal(msg.attrs['xml:lang'], 'en');
  const iq = firstChild(bounces[1]!, 'iq', NS_CLIENT)!;
  assert.ok(firstChild(iq, 'query', 'jabber:iq:version'));
});

test('session attributes: sc: and sm: prefixes resolve to the same namespace', () => {
  // R>C of the sm link: the c2s writes sc:session / sc:c2s
  const smIn = stanzasOf('sm-router.log', 'R>C');
  const create = smIn.map((e) => firstChild(e, 'session', NS_SESSION)).find((s) => s !== undefined && attr(s, 'action') === 'create')!;
  assert.equal(create.name, 'sc:session');
  assert.equal(attrNS(create, NS_SESSION, 'c2s'), '11');
  assert.equal(attr(create, 'target'), 'alice@example.test');
  // C>R of the sm link: the sm writes sm:c2s / sm:sm on the routed stanzas
  const smOut = stanzasOf('sm-router.log', 'C>R');
  const routed = smOut.flatMap((e) => childElements(e)).filter((e) => e.attrs['sm:sm'] !== undefined);
  assert.ok(routed.length > 10);
  for (const e of routed) {
    assert.equal(e.scope['sm'], NS_SESSION);
    assert.equal(attrNS(e, NS_SESSION, 'sm'), e.attrs['sm:sm']);
    assert.match(attrNS(e, NS_SESSION, 'c2s')!, /^1[12]$/);
  }
  // the c2s link: c2s writes sc:, sm writes sm:, for the same session
  const c2sOut = stanzasOf('c2s-router.log', 'C>R').flatMap((e) => childElements(e));
  const c2sIn = stanzasOf('c2s-router.log', 'R>C').flatMap((e) => childElements(e));
  const sent = c2sOut.find((e) => e.local === 'iq' && e.attrs['sc:sm'] !== undefined)!;
  const received = c2sIn.find((e) => e.local === 'iq' && e.attrs['sm:sm'] !== undefined)!;
  assert.equal(attrNS(sent, NS_SESSION, 'sm'), 'f579e12dd3433a8e5fb6c4a54f914e6bfe8684af');
  assert.equal(attrNS(received, NS_SESSION, 'sm'), 'f579e12dd3433a8e5fb6c4a54f914e6bfe8684af');
  assert.equal(attrNS(received, NS_SESSION, 'c2s'), '11');
});

test('capture reader: unescaping and byte counts', () => {
  assert.deepStrictEqual(unescapeData('a\\\\b\\nc\\rd\\xffé'), Buffer.from([0x61, 0x5c, 0x62, 0x0a, 0x63, 0x0d, 0x64, 0xff, 0xc3, 0xa9]));
  const parsed = parseCapture('# comment\n2026-01-01T00:00:00Z #3 R>C 4 a\\xC3\\xA9\\n\n2026-01-01T00:00:01Z #4 C>R 2 \\\\x\n');
  assert.deepStrictEqual(
    parsed.map((r) => [r.conn, r.dir, [...r.data]]),
    [
      [3, 'R>C', [0x61, 0xc3, 0xa9, 0x0a]],
      [4, 'C>R', [0x5c, 0x78]],
    ],
  );
  assert.throws(() => parseCapture('2026-01-01T00:00:00Z #1 C>R 5 abc\n'), /3 bytes, header says 5/);
  assert.throws(() => parseCapture('nonsense\n'), /unrecognised/);
});
