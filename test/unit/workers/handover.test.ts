/**
 * Handing a stream's framing from one StreamFramer to a fresh one (main → worker) at a stanza
 * boundary: `detach()` + `takeTail()` on the old framer, `resumeFramer(attachSpec(tail))` for
 * the new one. Whatever the byte splits around the switch point, the events of the old framer up
 * to the switch followed by those of the new one must be exactly the events of one framer fed
 * the whole input.
 */
import { test } from 'node:test';
import assert from 'node:assert/strict';
import { StringDecoder } from 'node:string_decoder';
import { StreamFramer, type FramerLimits, type StreamErrorCondition } from '../../../src/xml/stream-framer.ts';
import type { XmlElement } from '../../../src/xml/node.ts';
import { attachSpec, resumeFramer, streamStartTag } from '../../../src/workers/handover.ts';
import { Stanza } from '../../../src/xml/stanza.ts';
import { frameTask, type LinkTable } from '../../../src/workers/worker-main.ts';
import { EventWriter, decodeEvents } from '../../../src/workers/codec.ts';
import type { FrameEvent, FrameTask } from '../../../src/workers/messages.ts';
import { NS_COMPONENT, NS_SASL, NS_SESSION, NS_STREAM } from '../../../src/protocol/ns.ts';
import { byByte, feeders, splitAt, utf8, whole, type Split } from '../../helpers/split.ts';

type Ev =
  | { t: 'open'; root: XmlElement }
  | { t: 'stanza'; el: XmlElement; raw: string }
  | { t: 'close' }
  | { t: 'error'; condition: StreamErrorCondition };

const LIMITS: FramerLimits = { maxStanzaBytes: 1 << 16, maxDepth: 16 };

const HEADER = `<?xml version='1.0'?><stream:stream xmlns:stream='${NS_STREAM}' xmlns='${NS_COMPONENT}' xmlns:sc='${NS_SESSION}' to='example.test' version='1.0'>`;
const SUCCESS = `<success xmlns='${NS_SASL}'>cnNwYXV0aD0x</success>`;
/** after the restart: what a ready component sends, with the awkward cases */
const STANZAS = [
  `<bind name='a.test'/>`,
  `<route to='sm' from='c2s'><message xmlns='jabber:client' to='u@example.test'><body>h\u00e9llo \u20ac \u{1F600} &amp; &lt;tag&gt;</body></message></route>`,
  `<route to='c2s' from='sm'><sc:session action='started' sc:sm='s1' target='u@example.test/r'/></route>`,
  `<route to='x' from='y' note='a &gt; b'><iq xmlns='jabber:client' type='get'><q><![CDATA[<not a tag>]]> tail</q></iq></route>`,
  `<route __proto__='p' to='z'/>`,
  `<presence type='unavailable' from='b.test'></presence>`,
];
const REST = ' \n' + STANZAS.join('\n ') + '\n';

const sourceOf = (s: string): Uint8Array => utf8(s);

/** a framer recording events; `hook` runs after each event and may call reset()/detach() */
function recorder(hook?: (ev: Ev, f: StreamFramer, n: number) => void): { framer: StreamFramer; events: Ev[] } {
  const events: Ev[] = [];
  const push = (ev: Ev): void => {
    events.push(ev);
    hook?.(ev, framer, events.length);
  };
  const framer: StreamFramer = new StreamFramer({
    onStreamOpen: (root) => push({ t: 'open', root }),
    onStanza: (el, raw) => push({ t: 'stanza', el, raw }),
    onStreamClose: () => push({ t: 'close' }),
    onError: (f) => push({ t: 'error', condition: f.condition }),
  }, LIMITS);
  return { framer, events };
}

/** the restart after SASL success, as the component server does it */
const restartAtSuccess = (ev: Ev, f: StreamFramer): void => {
  if (ev.t === 'stanza' && ev.el.uri === NS_SASL && ev.el.local === 'success') f.reset();
};

/** one framer over the whole input, restarting at <success/> */
function reference(data: Uint8Array): Ev[] {
  const r = recorder(restartAtSuccess);
  r.framer.write(data);
  return r.events;
}

/** the new framer's events for `spec`, then for `rest` (the synthetic open swallowed) */
function resumed(spec: ReturnType<typeof attachSpec>, rest: Uint8Array[]): Ev[] {
  const events: Ev[] = [];
  let skipOpen = spec.header !== '';
  const f = resumeFramer(spec, {
    onStreamOpen: (root) => {
      if (skipOpen) skipOpen = false;
      else events.push({ t: 'open', root });
    },
    onStanza: (el, raw) => events.push({ t: 'stanza', el, raw }),
    onStreamClose: () => events.push({ t: 'close' }),
    onError: (fault) => events.push({ t: 'error', condition: fault.condition }),
  });
  for (const c of rest) f.write(c);
  return events;
}

const show = (evs: Ev[]): string[] => evs.map((e) => (e.t === 'stanza' ? e.raw : e.t === 'error' ? `error:${e.condition}` : e.t === 'open' ? `open:${e.root.name}` : 'close'));

/** what an sm sends: header, SASL success (restart), header again, stanzas, footer */
const INPUT = sourceOf(HEADER + SUCCESS + HEADER + REST + '</stream:stream>');
/** one stream, no restart */
const PLAIN = sourceOf(HEADER + REST + '</stream:stream>');

test('reference: the corpus gives two opens, every stanza and the close', () => {
  const evs = reference(INPUT);
  assert.deepEqual(show(evs), [`open:stream:stream`, SUCCESS, `open:stream:stream`, ...STANZAS, 'close']);
});

test('detach between writes at every byte offset: the two framers together report exactly what one does', () => {
  const ref = reference(PLAIN);
  const restSplits: Split[] = [whole, byByte, ...feeders(16).slice(2).map((f) => f.split)];
  const INPUT = PLAIN;
  for (let cut = 0; cut <= INPUT.length; cut++) {
    for (const prefixSplit of [whole, byByte]) {
      const a = recorder();
      for (const c of prefixSplit(INPUT.subarray(0, cut))) a.framer.write(c);
      a.framer.detach();
      const tail = a.framer.takeTail();
      if (cut === INPUT.length) {
        // the footer was read: the stream is over, nothing to hand over
        assert.equal(tail, null);
        assert.deepStrictEqual(a.events, ref);
        continue;
      }
      assert.ok(tail, `tail at ${cut}`);
      assert.equal(a.framer.takeTail(), null, 'the tail is taken once');
      // the old framer ignores anything written after the switch
      const before = a.events.length;
      a.framer.write(INPUT.subarray(cut));
      assert.equal(a.events.length, before, 'no events after detach');
      const spec = attachSpec(tail, LIMITS);
      const split = restSplits[cut % restSplits.length]!;
      const got = [...a.events, ...resumed(spec, split(INPUT.subarray(cut)))];
      assert.deepStrictEqual(got, ref, `cut at byte ${cut}: ${JSON.stringify(show(got))}`);
    }
  }
});

test('detach from inside onStreamOpen/onStanza: switch right after that markup, whatever the chunking', () => {
  // with the SASL restart: the production switch point is the second open (event 3); the new
  // framer never sees a restart, so it can only take over after it
  const withRestart = { input: INPUT, first: 3 };
  const plain = { input: PLAIN, first: 1 };
  for (const { input, first } of [withRestart, plain]) {
    const ref = reference(input);
    for (let at = first; at <= ref.length - 1; at++) check(input, ref, at);
  }
});

function check(INPUT: Uint8Array, ref: Ev[], at: number): void {
  {
    for (const f of feeders(48)) {
      const chunks = f.split(INPUT);
      const a = recorder((ev, fr, n) => {
        restartAtSuccess(ev, fr);
        if (n === at) fr.detach();
      });
      let i = 0;
      let tail = null;
      for (; i < chunks.length; i++) {
        a.framer.write(chunks[i]!);
        tail = a.framer.takeTail();
        if (tail) break;
      }
      assert.ok(tail, `detached at event ${at} (${f.name})`);
      assert.equal(a.events.length, at, `no event after the one that detached (${f.name})`);
      const got = [...a.events, ...resumed(attachSpec(tail, LIMITS), chunks.slice(i + 1))];
      assert.deepStrictEqual(got, ref, `detach at event ${at} with ${f.name}: ${JSON.stringify(show(got))}`);
    }
  }
}

test('a UTF-8 character split at the switch point is completed by the new framer', () => {
  const body = `<message><body>\u00e9\u20ac\u{1F600}x</body></message>`;
  const data = sourceOf(HEADER + body);
  const ref = reference(data);
  const start = HEADER.length + body.indexOf('\u00e9');
  // every cut inside é (2 bytes), € (3) and 😀 (4)
  for (let cut = start; cut < start + 2 + 3 + 4 + 1; cut++) {
    const a = recorder();
    a.framer.write(data.subarray(0, cut));
    a.framer.detach();
    const tail = a.framer.takeTail()!;
    const expectBytes = cut - start === 1 ? 1 : cut - start === 3 ? 1 : cut - start === 4 ? 2 : cut - start === 6 ? 1 : cut - start === 7 ? 2 : cut - start === 8 ? 3 : 0;
    assert.equal(tail.bytes.length, expectBytes, `pending bytes at ${cut - start}`);
    for (const split of [whole, byByte]) {
      const got = [...a.events, ...resumed(attachSpec(tail, LIMITS), split(data.subarray(cut)))];
      assert.deepStrictEqual(got, ref, `cut ${cut - start} bytes into the text`);
    }
  }
});

test('the StringDecoder accessors the hand-over reads still exist (lastNeed, lastTotal, lastChar)', () => {
  const d = new StringDecoder('utf8') as StringDecoder & { lastNeed: number; lastTotal: number; lastChar: Buffer };
  assert.equal(d.write(Buffer.from([0x61, 0xf0, 0x9f])), 'a');
  assert.equal(d.lastNeed, 2);
  assert.equal(d.lastTotal, 4);
  assert.deepEqual([...d.lastChar.subarray(0, d.lastTotal - d.lastNeed)], [0xf0, 0x9f]);
});

test('errors after the switch point are reported by the new framer exactly as by one framer', () => {
  const cases: [string, StreamErrorCondition][] = [
    ['<route to="a"><x></y></route>', 'not-well-formed'],
    ['text at stream level', 'not-well-formed'],
    ['<!-- a comment -->', 'restricted-xml'],
    [`<route>${'<a>'.repeat(20)}</route>`, 'policy-violation'],
    [`<route>${'x'.repeat(LIMITS.maxStanzaBytes)}</route>`, 'policy-violation'],
  ];
  for (const [bad, cond] of cases) {
    const data = sourceOf(HEADER + STANZAS[0] + bad + STANZAS[1]);
    const ref = reference(data);
    assert.deepEqual(ref[ref.length - 1], { t: 'error', condition: cond });
    for (let cut = HEADER.length; cut <= HEADER.length + STANZAS[0]!.length + 3; cut++) {
      const a = recorder();
      a.framer.write(data.subarray(0, cut));
      a.framer.detach();
      const tail = a.framer.takeTail();
      if (tail === null) {
        // the fault was already in the old framer's part: it reported it, nothing to hand over
        assert.deepStrictEqual(a.events, ref, `${bad.slice(0, 30)} cut at ${cut} (before the switch)`);
        continue;
      }
      const got = [...a.events, ...resumed(attachSpec(tail, LIMITS), splitAt(data.subarray(cut), [1, 5, 9]))];
      assert.deepStrictEqual(got, ref, `${bad.slice(0, 30)} cut at ${cut}`);
    }
  }
});

test('nothing to hand over after an error or the end of the stream; detach is idempotent', () => {
  const failed = recorder();
  failed.framer.write(utf8(HEADER + 'junk'));
  failed.framer.detach();
  assert.equal(failed.framer.takeTail(), null);

  const ended = recorder();
  ended.framer.write(utf8(HEADER + '</stream:stream>'));
  ended.framer.detach();
  assert.equal(ended.framer.takeTail(), null);

  const fresh = recorder();
  fresh.framer.detach();
  fresh.framer.detach();
  const t = fresh.framer.takeTail();
  assert.deepEqual(t, { root: null, text: '', bytes: new Uint8Array(0) });
  fresh.framer.write(utf8(HEADER));
  assert.equal(fresh.events.length, 0);
  assert.equal(fresh.framer.bytesIn, utf8(HEADER).length, 'bytes after detach are counted, not parsed');
});

test('the synthetic start tag declares what the root declared', () => {
  const a = recorder();
  a.framer.write(utf8(`<stream:stream xmlns:stream='${NS_STREAM}' xmlns="${NS_COMPONENT}" id='a&amp;b"c'>`));
  const root = (a.events[0] as { root: XmlElement }).root;
  const tag = streamStartTag(root);
  assert.equal(tag, `<stream:stream xmlns:stream='${NS_STREAM}' xmlns='${NS_COMPONENT}' id='a&amp;b&quot;c'>`);
  const b = recorder();
  b.framer.write(utf8(tag));
  assert.deepStrictEqual((b.events[0] as { root: XmlElement }).root, root);
});

test('frameTask: attach, batches, lost link, end (the worker side, run in-process)', () => {
  const table: LinkTable = new Map();
  const w = new EventWriter();
  const a = recorder();
  a.framer.write(utf8(HEADER + STANZAS[0] + STANZAS[1]!.slice(0, 20)));
  const root = (a.events[0] as { root: XmlElement }).root;
  a.framer.detach();
  const spec = attachSpec(a.framer.takeTail()!, LIMITS);
  const run = (t: Partial<FrameTask> & { id: number }): { events: FrameEvent[]; stanzas: number; errors: number } => {
    const r = frameTask({ attach: null, chunks: [], end: false, ...t }, table, w);
    return { events: decodeEvents(r, root.scope).events, stanzas: r.stanzas, errors: r.errors };
  };

  assert.deepEqual(run({ id: 7, attach: spec }), { events: [], stanzas: 0, errors: 0 }, 'the synthetic open is not reported');
  const r2 = run({ id: 7, chunks: [utf8(STANZAS[1]!.slice(20)), utf8(STANZAS[2]!)] });
  assert.equal(r2.stanzas, 2);
  // the hot path: the stanzas come back as their bytes, exactly the text the inline framer gives
  const inline = recorder();
  inline.framer.write(utf8(HEADER + STANZAS[0] + STANZAS[1] + STANZAS[2]));
  assert.deepStrictEqual(
    r2.events.map((e) => (e.t === 'bytes' ? e.bytes.toString('utf8') : e.t)),
    inline.events.slice(2).map((e) => (e.t === 'stanza' ? e.raw : e.t)),
  );
  const second = r2.events[1]!;
  const st = second.t === 'bytes' ? Stanza.fromBytes(second.bytes, { scope: root.scope, header: streamStartTag(root) }) : undefined;
  assert.equal(st?.inner?.uri, NS_SESSION, 'prefix declared on the root resolves');
  assert.deepStrictEqual(st?.el, (inline.events[3] as { el: XmlElement }).el, 'the tree built on demand is the inline one');

  assert.deepEqual(run({ id: 8, chunks: [utf8('<x/>')] }), { events: [{ t: 'lost' }], stanzas: 0, errors: 0 }, 'unknown link');
  const r3 = run({ id: 7, chunks: [utf8('<a></b>')] });
  assert.equal(r3.events.length, 1);
  assert.equal(r3.events[0]!.t, 'error');
  assert.equal(r3.errors, 1);
  assert.deepEqual(run({ id: 7, end: true }), { events: [], stanzas: 0, errors: 0 });
  assert.equal(table.size, 0, 'end drops the framer');
  assert.deepEqual(run({ id: 7, end: true }), { events: [], stanzas: 0, errors: 0 }, 'end of an unknown link is not an error');
});
