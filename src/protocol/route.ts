/**
 * Editing a route's start tag without re-serializing the stanza inside it: everything after
 * the start tag travels as its original bytes (or text).
 */
import { escapeAttr } from '../xml/node.ts';
import type { Raw, Stanza } from '../xml/stanza.ts';

/** Index just past the `>` that ends the start tag of `raw` (quotes honoured). */
function startTagEnd(raw: Raw): number {
  let q = 0;
  for (let i = 1; i < raw.length; i++) {
    const ch = typeof raw === 'string' ? raw.charCodeAt(i) : raw[i]!;
    if (q !== 0) {
      if (ch === q) q = 0;
    } else if (ch === 0x22 || ch === 0x27) q = ch;
    else if (ch === 0x3e) return i + 1;
  }
  return raw.length;
}

/**
 * The stanza with some attributes of its start tag replaced (or added); a value of null
 * removes the attribute.
 */
export function rewriteAttrs(st: Stanza, changes: Record<string, string | null>): Raw {
  const raw = st.raw;
  if (typeof raw !== 'string') return spliceAttrs(raw, changes);
  const tagIn = st.tag;
  const end = startTagEnd(raw);
  const selfClosing = (typeof raw === 'string' ? raw.charCodeAt(end - 2) : raw[end - 2]) === 0x2f;
  let tag = '<' + tagIn.name;
  for (const k in tagIn.attrs) {
    if (k in changes) continue;
    tag += ` ${k}='${escapeAttr(tagIn.attrs[k]!)}'`;
  }
  for (const k in changes) {
    const v = changes[k];
    if (v !== null && v !== undefined) tag += ` ${k}='${escapeAttr(v)}'`;
  }
  tag += selfClosing ? '/>' : '>';
  return tag + raw.slice(end);
}

const WS = (c: number): boolean => c === 0x20 || c === 0x0a || c === 0x09 || c === 0x0d;

/**
 * The same on bytes (a stanza from the hot path: well-formed, ASCII names): the changed
 * attributes are cut out of the start tag and the new values appended before its end; every
 * other byte, of the start tag included, stays as it was.
 */
function spliceAttrs(b: Buffer, changes: Record<string, string | null>): Buffer {
  const parts: Buffer[] = [];
  let last = 0;
  let i = 1;
  const n = b.length;
  while (i < n && !WS(b[i]!) && b[i] !== 0x2f && b[i] !== 0x3e) i++;
  for (;;) {
    const wsStart = i;
    while (i < n && WS(b[i]!)) i++;
    if (i >= n || b[i] === 0x3e || b[i] === 0x2f) break;
    const ks = i;
    while (i < n && b[i] !== 0x3d && !WS(b[i]!)) i++;
    const key = b.toString('latin1', ks, i);
    while (i < n && b[i] !== 0x3d) i++;
    i++;
    while (i < n && WS(b[i]!)) i++;
    const q = b[i]!;
    const close = b.indexOf(q, i + 1);
    if (close < 0) throw new Error('unterminated attribute value');
    i = close + 1;
    if (Object.hasOwn(changes, key)) {
      parts.push(b.subarray(last, wsStart));
      last = i;
    }
  }
  // i is at the `>` or `/>` that ends the start tag
  parts.push(b.subarray(last, i));
  let add = '';
  for (const k in changes) {
    const v = changes[k];
    if (v !== null && v !== undefined) add += ` ${k}='${escapeAttr(v)}'`;
  }
  if (add !== '') parts.push(Buffer.from(add, 'utf8'));
  parts.push(b.subarray(i));
  return Buffer.concat(parts);
}
