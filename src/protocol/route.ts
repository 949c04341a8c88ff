/**
 * Editing a route's start tag without re-serializing the stanza inside it: everything after
 * the start tag travels as its original text.
 */
import { escapeAttr, type XmlElement } from '../xml/node.ts';

/** Index just past the `>` that ends the start tag of `raw` (quotes honoured). */
export function startTagEnd(raw: string): number {
  let q = '';
  for (let i = 1; i < raw.length; i++) {
    const ch = raw.charCodeAt(i);
    if (q) {
      if (raw[i] === q) q = '';
    } else if (ch === 0x22 || ch === 0x27) q = raw[i]!;
    else if (ch === 0x3e) return i + 1;
  }
  return raw.length;
}

/**
 * The element's text with some attributes of its start tag replaced (or added); a value of
 * null removes the attribute.
 */
export function rewriteAttrs(el: XmlElement, raw: string, changes: Record<string, string | null>): string {
  const end = startTagEnd(raw);
  const selfClosing = raw.charCodeAt(end - 2) === 0x2f;
  let tag = '<' + el.name;
  for (const k in el.attrs) {
    if (k in changes) continue;
    tag += ` ${k}='${escapeAttr(el.attrs[k]!)}'`;
  }
  for (const k in changes) {
    const v = changes[k];
    if (v !== null && v !== undefined) tag += ` ${k}='${escapeAttr(v)}'`;
  }
  return tag + (selfClosing ? '/>' : '>') + raw.slice(end);
}
