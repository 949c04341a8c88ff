/**
 * Stanza: what routing reads of a stanza's bytes (the start tags of the element and of its first
 * child) must be exactly what the StreamFramer's element tree says, and the tree built on demand
 * must be the StreamFramer's. Checked on every stanza of the jabberd2 captures and on hand-made
 * cases (entities, whitespace in tags, prefixes, self-closing, no child).
 */
import { test } from 'node:test';
import assert from 'node:assert/strict';
import { StreamFramer } from '../../../src/xml/stream-framer.ts';
import { firstChild, type XmlElement } from '../../../src/xml/node.ts';
import { Stanza, readStartTag, withAttr, type StartTag } from '../../../src/xml/stanza.ts';
import { rewriteAttrs } from '../../../src/protocol/route.ts';
import { streamStartTag } from '../../../src/workers/handover.ts';
import { connections, loadCapture } from '../../helpers/captures.ts';

const LIMITS = { maxStanzaBytes: 1 << 20, maxDepth: 64 };
const HEADER = `<stream:stream xmlns:stream='http://etherx.jabber.org/streams' xmlns:x='urn:x'>`;

const NS_SASL = 'urn:ietf:params:xml:ns:xmpp-sasl';

/** Frames a stream (restarted after SASL success, as in the captures); stanzas with their root. */
function frame(bytes: Buffer, header = ''): { root: XmlElement | null; stanzas: { el: XmlElement; raw: string; root: XmlElement }[] } {
  let root: XmlElement | null = null;
  const stanzas: { el: XmlElement; raw: string; root: XmlElement }[] = [];
  const f = new StreamFramer({
    onStreamOpen: (r) => {
      root = r;
    },
    onStanza: (el, raw) => {
      stanzas.push({ el, raw, root: root! });
      if (el.uri === NS_SASL && (el.local === 'success' || el.local === 'response')) f.reset();
    },
    onStreamClose: () => {},
    onError: (e) => {
      throw e;
    },
  }, LIMITS);
  if (header) f.write(Buffer.from(header));
  f.write(bytes);
  return { root, stanzas };
}

function startTag(el: XmlElement | StartTag): StartTag {
  return { name: el.name, local: el.local, uri: el.uri, attrs: { ...el.attrs }, scope: { ...el.scope } };
}

function check(st: Stanza, el: XmlElement): void {
  assert.deepEqual(startTag(st.tag), startTag(el));
  const inner = firstChild(el);
  assert.deepEqual(st.inner && startTag(st.inner), inner && startTag(inner));
  assert.deepEqual(st.el, el);
}

test('on every stanza of the jabberd2 captures, tag/inner/el from the bytes equal the framer tree', () => {
  let n = 0;
  for (const file of ['sm-router.log', 'c2s-router.log']) {
    for (const c of connections(loadCapture(file))) {
      for (const dir of ['C>R', 'R>C'] as const) {
        const { stanzas } = frame(c.bytes[dir]);
        for (const s of stanzas) {
          const st = Stanza.fromBytes(Buffer.from(s.raw, 'utf8'), { scope: s.root.scope, header: streamStartTag(s.root) });
          check(st, s.el);
          assert.equal(st.text, s.raw);
          n++;
        }
      }
    }
  }
  assert.ok(n > 100, `${n} stanzas checked`);
});

test('hand-made cases: entities, whitespace, prefixes declared on the root or the stanza, no child', () => {
  const cases = [
    `<route xmlns='urn:c' to='a&amp;b' from="c&#x41;&#66;d"><message xmlns='jabber:client' to='x@y/&lt;r&gt;' type='chat'><body>hi &amp; bye</body></message></route>`,
    `<route\n  xmlns='urn:c'\tto = 'sm' from='c2s' ><sc:session xmlns:sc='urn:s' sc:c2s='1' action='start' target='u@d/r'/></route>`,
    `<route xmlns='urn:c' to='sm'/>`,
    `<route xmlns='urn:c' to='sm'>text only</route>`,
    `<route xmlns='urn:c' to='sm'>  <x:y x:a='1'/></route>`,
    `<x:thing x:at='v' plain='a&#9;b c'/>`,
    `<route xmlns='urn:c' to='é.example' from='ü'><message xmlns='jabber:client' to='ñ@é.example'/></route>`,
    `<route xmlns='urn:c' __proto__='p' to='t'><a/></route>`,
  ];
  const { root, stanzas } = frame(Buffer.from(cases.join('')), HEADER);
  assert.equal(stanzas.length, cases.length);
  const ctx = { scope: root!.scope, header: streamStartTag(root!) };
  for (const s of stanzas) check(Stanza.fromBytes(Buffer.from(s.raw, 'utf8'), ctx), s.el);
});

test('readStartTag reports the end of the tag and self-closing', () => {
  const b = Buffer.from(`<a b='>' c="x'y"/><next/>`);
  const r = readStartTag(b, 0, {});
  assert.equal(r.empty, true);
  assert.equal(b.toString('latin1', r.end), '<next/>');
  assert.deepEqual(r.tag.attrs, { b: '>', c: "x'y" });
});

test('a stanza from the framer: tag is the element, bytes made on demand', () => {
  const { stanzas } = frame(Buffer.from(`<route xmlns='urn:c' to='sm'><m to='x'/></route>`), HEADER);
  const s = stanzas[0]!;
  const st = Stanza.fromElement(s.el, s.raw);
  assert.equal(st.tag, s.el);
  assert.equal(st.inner, s.el.children[0]);
  assert.equal(st.raw, s.raw);
  assert.equal(st.bytes.toString(), s.raw);
});

test('withAttr and rewriteAttrs edit the start tag of bytes and of text alike', () => {
  const text = `<route xmlns='urn:c' to='a' from='b'><m to='x'/></route>`;
  const { root, stanzas } = frame(Buffer.from(text), HEADER);
  const ctx = { scope: root!.scope, header: streamStartTag(root!) };
  const fromBytes = Stanza.fromBytes(Buffer.from(text), ctx);
  const fromText = Stanza.fromElement(stanzas[0]!.el, text);
  for (const st of [fromBytes, fromText]) {
    const bounced = withAttr(st, 'error', '400');
    assert.equal(bounced.toString(), `<route error='400' xmlns='urn:c' to='a' from='b'><m to='x'/></route>`);
    const moved = rewriteAttrs(st, { to: 'c', from: null });
    assert.equal(moved.toString(), `<route xmlns='urn:c' to='c'><m to='x'/></route>`);
    assert.equal(typeof moved, typeof st.raw);
  }
});

test('rewriteAttrs on bytes keeps every other byte and gives the attributes asked for', () => {
  const cases = [
    `<route xmlns='urn:c' to='a' from='b'><m to='x'/></route>`,
    `<route\n xmlns="urn:c"\tfrom = "b>'" to='a' type='t'/>`,
    `<route to='a'   from='b' ><m/></route>`,
    `<x:route xmlns:x='urn:c' x:k='v' to='é' from='b'>text</x:route>`,
  ];
  const { root, stanzas } = frame(Buffer.from(cases.join('')), HEADER);
  const ctx = { scope: root!.scope, header: streamStartTag(root!) };
  for (const s of stanzas) {
    for (const changes of [{ to: 'c' }, { from: 'n--b', to: null }, { to: 'q&<\'"' }, {}] as Record<string, string | null>[]) {
      const out = rewriteAttrs(Stanza.fromBytes(Buffer.from(s.raw, 'utf8'), ctx), changes) as Buffer;
      const viaText = rewriteAttrs(Stanza.fromElement(s.el, s.raw), changes) as string;
      const a = frame(out, HEADER).stanzas[0]!.el;
      const b = frame(Buffer.from(viaText), HEADER).stanzas[0]!.el;
      assert.deepEqual(a.attrs, b.attrs, `${s.raw} ${JSON.stringify(changes)}`);
      assert.deepEqual(a.children, b.children);
      const expected: Record<string, string> = { ...s.el.attrs };
      for (const [k, v] of Object.entries(changes)) if (v === null) delete expected[k]; else expected[k] = v;
      assert.deepEqual(a.attrs, expected);
      // the content after the start tag travels as its original bytes
      assert.ok(out.toString('utf8').endsWith(s.raw.slice(s.raw.search(/>/) + 1)) || s.raw.endsWith('/>'));
    }
  }
});
