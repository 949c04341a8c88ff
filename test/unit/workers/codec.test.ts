/**
 * The flat event encoding between workers and main (src/workers/codec.ts): what main rebuilds
 * is deep-equal to what the framer reported, scope objects shared as the framer shares them.
 */
import { test } from 'node:test';
import assert from 'node:assert/strict';
import { serialize, deserialize } from 'node:v8';
import { StreamFramer } from '../../../src/xml/stream-framer.ts';
import { EventWriter, decodeEvents, kStanza, type EncodedEvents } from '../../../src/workers/codec.ts';
import type { FrameEvent } from '../../../src/workers/messages.ts';
import { NS_COMPONENT, NS_SESSION, NS_STREAM } from '../../../src/protocol/ns.ts';
import { utf8 } from '../../helpers/split.ts';

const HEADER = `<stream:stream xmlns:stream='${NS_STREAM}' xmlns='${NS_COMPONENT}' xmlns:sc='${NS_SESSION}'>`;
const BODY = [
  `<route to='sm' from='c2s'><message xmlns='jabber:client' to='u@d'><body>h\u00e9 \u{1F600} &amp;<![CDATA[ <x> ]]>tail</body><x xmlns=''/></message></route>`,
  `<route><sc:session action='start' sc:sm='1'/><p:q xmlns:p='urn:p' p:a='1' b=''>text<p:r/>more</p:q></route>`,
  `<route __proto__='p' constructor='c' xmlns:__proto__='urn:odd'/>`,
  `<e/>`,
  `<route>${'x'.repeat(5000)}</route>`,
].join(' \n');

function frame(input: string): FrameEvent[] {
  const out: FrameEvent[] = [];
  const f = new StreamFramer({
    onStreamOpen: (root) => out.push({ t: 'open', root }),
    onStanza: (el, raw) => out.push({ t: 'stanza', el, raw }),
    onStreamClose: () => out.push({ t: 'close' }),
    onError: (e) => out.push({ t: 'error', condition: e.condition, message: e.message }),
  }, { maxStanzaBytes: 1 << 16, maxDepth: 16 });
  f.write(utf8(input));
  return out;
}

function encode(events: FrameEvent[], w = new EventWriter()): EncodedEvents {
  for (const e of events) {
    if (e.t === 'stanza') w.stanza(e.el, e.raw);
    else if (e.t === 'open') w.open(e.root);
    else if (e.t === 'close') w.close();
    else if (e.t === 'error') w.error(e.condition, e.message);
    else if (e.t === 'fault') w.fault(e.message);
    else w.lost();
  }
  return w.take();
}

test('stanzas, the root, close, error, fault and lost round-trip exactly (through structured clone)', () => {
  const events = frame(HEADER + BODY + '</stream:stream>');
  assert.equal(events.length, 7);
  const all: FrameEvent[] = [...events, { t: 'error', condition: 'not-well-formed', message: 'm \u00e9' }, { t: 'fault', message: 'f' }, { t: 'lost' }];
  const enc = deserialize(serialize(encode(all))) as EncodedEvents;
  const root = (events[0] as { root: { scope: Record<string, string> } }).root;
  // from the start of the stream: the open event sets the stanzas' parent scope
  const fromStart = decodeEvents(enc, undefined);
  assert.deepStrictEqual(fromStart.events, all);
  // after a hand-over: the stanzas' parent is the root main already has
  const tail = encode(events.slice(1));
  const d = decodeEvents(tail, root.scope);
  assert.deepStrictEqual(d.events, events.slice(1));
  assert.equal(d.rootScope, root.scope);
  const first = d.events[0]!;
  assert.ok(first.t === 'stanza' && first.el.scope === root.scope, 'a stanza without declarations shares the root scope, as inline');
  const inner = first.t === 'stanza' ? first.el.children[0] : undefined;
  assert.ok(typeof inner === 'object' && inner.scope !== root.scope && inner.uri === 'jabber:client');
  const proto = d.events[2]!;
  assert.ok(proto.t === 'stanza' && Object.hasOwn(proto.el.attrs, '__proto__') && Object.getPrototypeOf(proto.el.attrs) === Object.prototype);
});

test('the writer is reusable and grows; take() empties it', () => {
  const w = new EventWriter();
  const events = frame(HEADER + Array.from({ length: 400 }, (_, i) => `<route n='${i}'><a><b><c x='1' y='2'/></b></a></route>`).join(''));
  for (let k = 0; k < 3; k++) {
    const enc = encode(events, w);
    assert.equal(enc.nums[0], 2 /* kOpen */);
    assert.deepStrictEqual(decodeEvents(enc, undefined).events, events);
    assert.ok(w.empty);
  }
  const one = events[1]!;
  assert.ok(one.t === 'stanza');
  w.stanza(one.el, 'x');
  w.discard();
  const empty = w.take();
  assert.deepEqual([empty.text, empty.nums, empty.bytes.length], ['', new Int32Array(0), 0]);
});

test('a corrupt batch is refused, not misread', () => {
  assert.throws(() => decodeEvents({ text: '', nums: Int32Array.of(99), bytes: new Uint8Array(0) }, undefined), /corrupt event batch/);
  assert.equal(kStanza, 1);
});
