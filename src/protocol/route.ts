/**
 * Editing a route's start tag without re-serializing the stanza inside it: everything after
 * the start tag travels as its original bytes (or text).
 */
import { escapeAttr } from '../xml/node.ts';
import type { Raw, Stanza } from '../xml/stanza.ts';

/** Index just past the `>` that ends the start tag of `raw` (quotes honoured). */
export function startTagEnd(raw: Raw): number {
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
  if (typeof raw === 'string') return tag + raw.slice(end);
  return Buffer.concat([Buffer.from(tag, 'utf8'), raw.subarray(end)]);
}
