/**
 * (main + worker, pure) Moving a stream's framing from the main thread's StreamFramer to a
 * fresh one, typically on a worker thread, at a stanza boundary chosen by main.
 *
 * main: `framer.detach()` from inside the callback that made the link ready (or between
 * writes), then `attachSpec(framer.takeTail()!, limits)`.
 * worker: `resumeFramer(spec, handler)`: a new framer is fed a start tag equivalent to the
 * stream root main already reported (its `open` event is not main's business and is swallowed by
 * the caller), then the unconsumed text and the bytes of a split UTF-8 character; from there on
 * it reports exactly what main's framer would have reported for the same input.
 */
import { StreamFramer, type FramerHandler, type FramerTail } from '../xml/stream-framer.ts';
import { escapeAttr, type XmlElement } from '../xml/node.ts';
import type { AttachSpec } from './messages.ts';

/**
 * The start tag of `root` as written: its qualified name and every attribute, namespace
 * declarations included, so that the new framer resolves the same prefixes for the stanzas.
 */
export function streamStartTag(root: XmlElement): string {
  let s = '<' + root.name;
  for (const k in root.attrs) s += ` ${k}='${escapeAttr(root.attrs[k]!)}'`;
  return s + '>';
}

export function attachSpec(tail: FramerTail, limits: { maxStanzaBytes: number; maxDepth: number }): AttachSpec {
  const text = tail.text.length > 0 ? Buffer.from(tail.text, 'utf8') : null;
  let bytes: Uint8Array;
  if (text === null) bytes = tail.bytes;
  else if (tail.bytes.length === 0) bytes = text;
  else {
    bytes = new Uint8Array(text.length + tail.bytes.length);
    bytes.set(text, 0);
    bytes.set(tail.bytes, text.length);
  }
  return {
    header: tail.root !== null ? streamStartTag(tail.root) : '',
    tail: bytes,
    maxStanzaBytes: limits.maxStanzaBytes,
    maxDepth: limits.maxDepth,
    root: tail.root !== null ? { name: tail.root.name, scope: tail.root.scope } : null,
  };
}

/**
 * A framer that carries on where the detached one stopped. The handler sees the synthetic
 * header's onStreamOpen first when `spec.header` is not empty: the caller must ignore that one.
 */
export function resumeFramer(spec: AttachSpec, handler: FramerHandler): StreamFramer {
  const f = new StreamFramer(handler, { maxStanzaBytes: spec.maxStanzaBytes, maxDepth: spec.maxDepth });
  if (spec.header !== '') f.write(Buffer.from(spec.header, 'utf8'));
  if (spec.tail.length > 0) f.write(spec.tail);
  return f;
}
