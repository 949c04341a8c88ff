/**
 * Light XML element model shared by the framer, the protocol code and the tests.
 * Pure; usable on any thread.
 *
 * An element keeps its qualified name and its attributes exactly as written (namespace
 * declarations included), plus its resolved namespace URI and the in-scope prefix map, so that
 * code can match on namespace URIs (jabberd2 uses both `sc:` and `sm:` for the same namespace)
 * and the serializer can emit a self-contained element even when a prefix was declared on an
 * ancestor such as the stream root.
 */

export interface XmlElement {
  /** qualified name as written, e.g. `sc:session` */
  name: string;
  /** local part of the name, e.g. `session` */
  local: string;
  /** resolved namespace URI ('' when none) */
  uri: string;
  /** attributes by qualified name, as written, including xmlns declarations */
  attrs: Record<string, string>;
  /** in-scope prefix → URI map ('' is the default namespace); shared with the parent when unchanged */
  scope: Readonly<Record<string, string>>;
  children: XmlNode[];
}

export type XmlNode = XmlElement | string;

export const XML_NS = 'http://www.w3.org/XML/1998/namespace';

const EMPTY_SCOPE: Readonly<Record<string, string>> = Object.freeze({ xml: XML_NS });

function splitName(qname: string): [prefix: string, local: string] {
  const i = qname.indexOf(':');
  return i < 0 ? ['', qname] : [qname.slice(0, i), qname.slice(i + 1)];
}

/** Scope of an element given its attributes and its parent's scope. */
export function deriveScope(attrs: Record<string, string>, parent: Readonly<Record<string, string>> = EMPTY_SCOPE): Readonly<Record<string, string>> {
  let scope: Record<string, string> | undefined;
  for (const k in attrs) {
    if (k === 'xmlns') (scope ??= { ...parent })[''] = attrs[k]!;
    else if (k.startsWith('xmlns:')) (scope ??= { ...parent })[k.slice(6)] = attrs[k]!;
  }
  return scope ?? parent;
}

/**
 * Builds an element. Namespaces are resolved from `xmlns` declarations in `attrs` and from
 * `parentScope`; children built with `element()` keep their own scope.
 */
export function element(name: string, attrs: Record<string, string | undefined> = {}, children: XmlNode[] = [], parentScope?: Readonly<Record<string, string>>): XmlElement {
  const clean: Record<string, string> = {};
  for (const k in attrs) {
    const v = attrs[k];
    if (v !== undefined) clean[k] = v;
  }
  const scope = deriveScope(clean, parentScope);
  const [prefix, local] = splitName(name);
  return { name, local, uri: scope[prefix] ?? '', attrs: clean, scope, children };
}

/** Attribute in no namespace (an unprefixed attribute). */
export function attr(el: Pick<XmlElement, 'attrs'>, name: string): string | undefined {
  return el.attrs[name];
}

/** Attribute by namespace URI and local name, whatever prefix the sender used. */
export function attrNS(el: Pick<XmlElement, 'attrs' | 'scope'>, uri: string, local: string): string | undefined {
  for (const k in el.attrs) {
    const i = k.indexOf(':');
    if (i < 0 || k.slice(i + 1) !== local) continue;
    const p = k.slice(0, i);
    if (p !== 'xmlns' && el.scope[p] === uri) return el.attrs[k];
  }
  return undefined;
}

/** Qualified name of the attribute `{uri}local` on `el`, if present. */
export function attrNSName(el: XmlElement, uri: string, local: string): string | undefined {
  for (const k in el.attrs) {
    const i = k.indexOf(':');
    if (i < 0 || k.slice(i + 1) !== local) continue;
    const p = k.slice(0, i);
    if (p !== 'xmlns' && el.scope[p] === uri) return k;
  }
  return undefined;
}

/** Element children only. */
export function childElements(el: XmlElement): XmlElement[] {
  const out: XmlElement[] = [];
  for (const c of el.children) if (typeof c !== 'string') out.push(c);
  return out;
}

/** First child element, optionally matching a local name and namespace URI. */
export function firstChild(el: XmlElement, local?: string, uri?: string): XmlElement | undefined {
  for (const c of el.children) {
    if (typeof c === 'string') continue;
    if (local !== undefined && c.local !== local) continue;
    if (uri !== undefined && c.uri !== uri) continue;
    return c;
  }
  return undefined;
}

/** Concatenated text content of direct text children. */
export function text(el: XmlElement): string {
  let s = '';
  for (const c of el.children) if (typeof c === 'string') s += c;
  return s;
}

export function escapeText(s: string): string {
  // a literal CR would be read back as LF (end-of-line normalization): keep it as a reference
  return s.replace(/[&<>\r]/g, (c) => (c === '&' ? '&amp;' : c === '<' ? '&lt;' : c === '>' ? '&gt;' : '&#13;'));
}

export function escapeAttr(s: string): string {
  return s.replace(/[&<>'"\t\n\r]/g, (c) => {
    switch (c) {
      case '&': return '&amp;';
      case '<': return '&lt;';
      case '>': return '&gt;';
      case "'": return '&apos;';
      case '"': return '&quot;';
      case '\t': return '&#9;';
      case '\n': return '&#10;';
      default: return '&#13;';
    }
  });
}

/**
 * Serializes an element as a self-contained fragment: any prefix (or default namespace) the
 * element or its descendants use but that is declared outside the fragment gets a declaration
 * added on the first element that needs it. Empty elements are written `<x/>`.
 */
export function serialize(el: XmlElement, outer: Readonly<Record<string, string>> = EMPTY_SCOPE): string {
  const parts: string[] = [];
  write(el, outer, parts);
  return parts.join('');
}

function write(el: XmlElement, declared: Readonly<Record<string, string>>, out: string[]): void {
  let scope = declared;
  let extra = '';
  // declarations written on this element
  const own = deriveScope(el.attrs, declared);
  scope = own;
  const need = (prefix: string): void => {
    // no default namespace in scope means "no namespace": undeclare an inherited one (xmlns='')
    const uri = el.scope[prefix] ?? (prefix === '' ? '' : undefined);
    if (prefix === 'xml') return;
    if (uri === undefined) return; // undeclared prefix: written as is
    if (scope[prefix] === uri) return;
    extra += prefix === '' ? ` xmlns='${escapeAttr(uri)}'` : ` xmlns:${prefix}='${escapeAttr(uri)}'`;
    if (scope === declared || scope === own) scope = { ...scope };
    (scope as Record<string, string>)[prefix] = uri;
  };
  const [p] = splitName(el.name);
  if (p !== '' || (el.scope[''] ?? '') !== (scope[''] ?? '')) need(p);
  for (const k in el.attrs) {
    const i = k.indexOf(':');
    if (i > 0) {
      const ap = k.slice(0, i);
      if (ap !== 'xmlns') need(ap);
    }
  }
  let s = '<' + el.name;
  for (const k in el.attrs) s += ` ${k}='${escapeAttr(el.attrs[k]!)}'`;
  s += extra;
  if (el.children.length === 0) {
    out.push(s + '/>');
    return;
  }
  out.push(s + '>');
  for (const c of el.children) {
    if (typeof c === 'string') out.push(escapeText(c));
    else write(c, scope, out);
  }
  out.push('</' + el.name + '>');
}
