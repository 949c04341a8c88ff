/**
 * Reads and validates the configuration file and the users file against `schema.ts`.
 * Main thread, once at start-up (and the users file again on SIGHUP).
 *
 * Rules: the whole file is parsed with saxes (no streaming needed for a few KiB); a DOCTYPE,
 * and so any entity definition, is refused; every value is trimmed; unknown elements and
 * attributes are refused with their path; single-valued elements may not repeat (repeatable ones,
 * `<peer>` and list items, are numbered from 1 in paths: `cluster.peers.peer[2].port`). Every error
 * is a ConfigError whose message names the exact element, e.g.
 * `cluster.router.port: expected an integer 1..65535, got 'abc' (line 12 of cluster.xml)`.
 */
import { readFileSync } from 'node:fs';
import { dirname, resolve } from 'node:path';
import { SaxesParser } from 'saxes';
import {
  ACL_TYPES,
  ValueError,
  crossChecks,
  defaultText,
  schema,
  type AclSpec,
  type AclType,
  type ClusterConfig,
  type GroupSpec,
  type LeafSpec,
  type ListSpec,
  type ParseContext,
  type Spec,
} from './schema.ts';

export class ConfigError extends Error {
  override name = 'ConfigError';
  /** XML path of the offending element or attribute, e.g. `cluster.router.port`, `cluster.log@type` */
  readonly path: string;
  /** 1-based line in the source, when known */
  readonly line: number | undefined;
  /** file name (or other source label) the error is in */
  readonly source: string | undefined;

  constructor(path: string, detail: string, line?: number, source?: string, options?: ErrorOptions) {
    const where = line !== undefined ? (source !== undefined ? ` (line ${line} of ${source})` : ` (line ${line})`) : source !== undefined ? ` (${source})` : '';
    super(`${path}: ${detail}${where}`, options);
    this.path = path;
    this.line = line;
    this.source = source;
  }
}

// ---------------------------------------------------------------------------------------------
// A minimal element tree with line numbers

interface RawElement {
  name: string;
  attrs: Record<string, string>;
  /** child elements in document order */
  children: RawElement[];
  /** text and CDATA content, comments removed */
  text: string;
  line: number;
}

/** Path used for errors about the document itself (syntax, DOCTYPE, root element). */
const kDocument = '(document)';

function parseTree(xml: string, source: string): RawElement {
  const parser = new SaxesParser<{ xmlns: false; position: true }>({ xmlns: false, position: true });
  const stack: RawElement[] = [];
  let root: RawElement | undefined;
  let tagLine = 1;
  const here = (): string => (stack.length === 0 ? kDocument : stack.map((e) => e.name).join('.'));
  parser.on('doctype', () => {
    throw new ConfigError(kDocument, 'a DOCTYPE (and so any entity definition) is not allowed', parser.line, source);
  });
  parser.on('processinginstruction', (pi) => {
    throw new ConfigError(here(), `processing instruction <?${pi.target}?> is not allowed`, parser.line, source);
  });
  parser.on('opentagstart', () => {
    tagLine = parser.line;
  });
  parser.on('opentag', (tag) => {
    const el: RawElement = { name: tag.name, attrs: { ...tag.attributes }, children: [], text: '', line: tagLine };
    const parent = stack[stack.length - 1];
    if (parent !== undefined) parent.children.push(el);
    else root = el;
    stack.push(el);
  });
  parser.on('closetag', () => {
    stack.pop();
  });
  const onText = (t: string): void => {
    const top = stack[stack.length - 1];
    if (top !== undefined) top.text += t;
  };
  parser.on('text', onText);
  parser.on('cdata', onText);
  parser.on('error', (err) => {
    // saxes prefixes "line:column: "; keep its message, use our format for the location
    const msg = err.message.replace(/^[^:]*:?\d+:\d+: /, '');
    throw new ConfigError(here(), `malformed XML: ${msg}`, parser.line, source, { cause: err });
  });
  parser.write(xml).close();
  if (root === undefined) throw new ConfigError(kDocument, 'no root element', undefined, source);
  return root;
}

// ---------------------------------------------------------------------------------------------
// Validation against the schema

interface Ctx extends ParseContext {
  source: string;
}

function fail(path: string, detail: string, line: number | undefined, ctx: Ctx): never {
  throw new ConfigError(path, detail, line, ctx.source);
}

function parseLeaf(spec: Pick<LeafSpec<unknown>, 'parse'>, raw: string, path: string, line: number | undefined, ctx: Ctx): unknown {
  try {
    return spec.parse(raw, ctx);
  } catch (e) {
    if (e instanceof ValueError) fail(path, e.message, line, ctx);
    throw e;
  }
}

/** Text content of an element that must hold text only. */
function leafText(el: RawElement, path: string, ctx: Ctx): string {
  const child = el.children[0];
  if (child !== undefined) fail(`${path}.${child.name}`, `unexpected element <${child.name}>: <${el.name}> holds a value, not elements`, child.line, ctx);
  for (const a of Object.keys(el.attrs)) fail(`${path}@${a}`, `unknown attribute '${a}' on <${el.name}>`, el.line, ctx);
  return el.text.trim();
}

function noText(el: RawElement, path: string, ctx: Ctx): void {
  const t = el.text.trim();
  if (t !== '') fail(path, `unexpected text ${JSON.stringify(t.length > 40 ? t.slice(0, 40) + '…' : t)} in <${el.name}>, which holds elements`, el.line, ctx);
}

function unknownElement(child: RawElement, path: string, allowed: string[], hints: Record<string, string> | undefined, ctx: Ctx): never {
  const hint = hints?.[child.name];
  const detail = hint !== undefined ? `unknown element <${child.name}>: ${hint}` : `unknown element <${child.name}>; expected one of: ${allowed.join(', ')}`;
  fail(`${path}.${child.name}`, detail, child.line, ctx);
}

/** Only one of each child name (except the `repeatable` ones); returns them by name. */
function indexChildren(el: RawElement, path: string, ctx: Ctx, repeatable?: ReadonlySet<string>): Map<string, RawElement> {
  const byName = new Map<string, RawElement>();
  for (const c of el.children) {
    if (repeatable?.has(c.name) === true) continue;
    const prev = byName.get(c.name);
    if (prev !== undefined) fail(`${path}.${c.name}`, `repeated element <${c.name}> (first at line ${prev.line})`, c.line, ctx);
    byName.set(c.name, c);
  }
  return byName;
}

function buildGroup(g: GroupSpec<Record<string, Spec>>, el: RawElement | undefined, path: string, ctx: Ctx): Record<string, unknown> {
  const out: Record<string, unknown> = {};
  const elemNames = new Map<string, string>(); // xml element name → key
  const attrNames = new Map<string, string>();
  const repeatable = new Set<string>();
  for (const [k, s] of Object.entries(g.children)) {
    if ('attr' in s.xml) attrNames.set(s.xml.attr, k);
    else elemNames.set(s.xml.elem, k);
    if (s.kind === 'group' && s.repeated === true) repeatable.add(s.xml.elem);
  }
  let byName = new Map<string, RawElement>();
  if (el !== undefined) {
    noText(el, path, ctx);
    for (const a of Object.keys(el.attrs)) {
      if (!attrNames.has(a)) fail(`${path}@${a}`, `unknown attribute '${a}' on <${el.name}>` + (attrNames.size > 0 ? `; expected: ${[...attrNames.keys()].join(', ')}` : ''), el.line, ctx);
    }
    for (const c of el.children) if (!elemNames.has(c.name)) unknownElement(c, path, [...elemNames.keys()], g.hints, ctx);
    byName = indexChildren(el, path, ctx, repeatable);
  }
  for (const [k, s] of Object.entries(g.children)) {
    if (s.kind === 'group') {
      const p = `${path}.${s.xml.elem}`;
      if (s.repeated === true) {
        // one entry per element, in document order; paths are 1-based: cluster.peers.peer[2].port
        const els = el?.children.filter((c) => c.name === s.xml.elem) ?? [];
        out[k] = els.map((c, i) => buildGroup(s, c, `${p}[${i + 1}]`, ctx));
      } else {
        const c = byName.get(s.xml.elem);
        if (c !== undefined || s.optional !== true) out[k] = buildGroup(s, c, p, ctx);
        // else: an optional section that is absent: the property stays absent
      }
    } else if (s.kind === 'acl') {
      const p = `${path}.${s.xml.elem}`;
      out[k] = buildAcl(s, byName.get(s.xml.elem), p, ctx);
    } else if (s.kind === 'list') {
      const p = `${path}.${s.xml.elem}`;
      out[k] = buildList(s, byName.get(s.xml.elem), p, ctx);
    } else if ('attr' in s.xml) {
      const p = `${path}@${s.xml.attr}`;
      const raw = el?.attrs[s.xml.attr];
      if (raw !== undefined) out[k] = parseLeaf(s, raw.trim(), p, el?.line, ctx);
      else setDefault(out, k, s, p, g, el, ctx);
    } else {
      const p = `${path}.${s.xml.elem}`;
      const c = byName.get(s.xml.elem);
      if (c !== undefined) out[k] = parseLeaf(s, leafText(c, p, ctx), p, c.line, ctx);
      else setDefault(out, k, s, p, g, el, ctx);
    }
  }
  return out;
}

/** `<elem><item>v</item>…</elem>`: items parsed one by one, each allowed once. */
function buildList(s: ListSpec<unknown>, el: RawElement | undefined, path: string, ctx: Ctx): unknown[] {
  if (el === undefined) return s.default.map((d) => s.parse(d, ctx));
  noText(el, path, ctx);
  for (const a of Object.keys(el.attrs)) fail(`${path}@${a}`, `unknown attribute '${a}' on <${el.name}>`, el.line, ctx);
  const out: unknown[] = [];
  const firstLine = new Map<unknown, number>();
  for (const [i, c] of el.children.entries()) {
    if (c.name !== s.xml.item) unknownElement(c, path, [s.xml.item], undefined, ctx);
    const p = `${path}.${s.xml.item}[${i + 1}]`;
    const v = parseLeaf(s, leafText(c, p, ctx), p, c.line, ctx);
    const prev = firstLine.get(v);
    if (prev !== undefined) fail(p, `'${String(v)}' is listed twice (first at line ${prev})`, c.line, ctx);
    firstLine.set(v, c.line);
    out.push(v);
  }
  return out;
}

function setDefault(
  out: Record<string, unknown>,
  key: string,
  s: LeafSpec<unknown>,
  path: string,
  parentSpec: GroupSpec<Record<string, Spec>>,
  parent: RawElement | undefined,
  ctx: Ctx,
): void {
  const d = defaultText(s);
  if (d === null) {
    if (s.required === true) {
      const what = 'attr' in s.xml ? `attribute '${s.xml.attr}'` : `<${s.xml.elem}>`;
      fail(path, `missing ${what}: required in <${parentSpec.xml.elem}>`, parent?.line, ctx);
    }
    return; // optional: property stays absent
  }
  try {
    out[key] = s.parse(d, ctx);
  } catch (e) {
    // only computed defaults can fail (e.g. a host name with characters an id may not have)
    if (e instanceof ValueError) fail(path, `the default (${s.defaultDoc ?? d}) is not valid: ${e.message}; set it explicitly`, undefined, ctx);
    throw e;
  }
}

function buildAcl(s: AclSpec, el: RawElement | undefined, path: string, ctx: Ctx): Record<AclType, string[]> {
  if (el === undefined) {
    return Object.fromEntries(ACL_TYPES.map((t) => [t, [...s.default[t]]])) as Record<AclType, string[]>;
  }
  const out = Object.fromEntries(ACL_TYPES.map((t) => [t, [] as string[]])) as Record<AclType, string[]>;
  noText(el, path, ctx);
  for (const a of Object.keys(el.attrs)) fail(`${path}@${a}`, `unknown attribute '${a}' on <${el.name}>`, el.line, ctx);
  const seen = new Map<string, number>();
  for (const acl of el.children) {
    const ap = `${path}.${acl.name}`;
    if (acl.name !== 'acl') unknownElement(acl, path, ['acl'], acl.name === 'filter' ? { filter: 'packet filters are not supported' } : undefined, ctx);
    noText(acl, ap, ctx);
    for (const a of Object.keys(acl.attrs)) if (a !== 'type') fail(`${ap}@${a}`, `unknown attribute '${a}' on <acl>; expected: type`, acl.line, ctx);
    const type = acl.attrs['type']?.trim();
    if (type === undefined) fail(`${ap}@type`, `missing attribute 'type'; expected one of: ${ACL_TYPES.join(', ')}`, acl.line, ctx);
    if (!(ACL_TYPES as readonly string[]).includes(type)) fail(`${ap}@type`, `expected one of ${ACL_TYPES.map((t) => `'${t}'`).join(', ')}, got '${type}'`, acl.line, ctx);
    const tp = `${ap}[@type='${type}']`;
    const prev = seen.get(type);
    if (prev !== undefined) fail(tp, `repeated <acl type='${type}'> (first at line ${prev})`, acl.line, ctx);
    seen.set(type, acl.line);
    const list = out[type as AclType];
    for (const u of acl.children) {
      if (u.name !== 'user') unknownElement(u, tp, ['user'], undefined, ctx);
      const name = leafText(u, `${tp}.user`, ctx);
      if (name === '') fail(`${tp}.user`, 'expected a user name, got nothing', u.line, ctx);
      if (!list.includes(name)) list.push(name);
    }
  }
  return out;
}

function deepFreeze<T>(o: T): T {
  if (o !== null && typeof o === 'object' && !Object.isFrozen(o)) {
    for (const v of Object.values(o)) deepFreeze(v);
    Object.freeze(o);
  }
  return o;
}

export interface ConfigOverrides {
  /** `--workers N` from the command line */
  workers?: number;
}

function applyOverrides(cfg: ClusterConfig, overrides: ConfigOverrides | undefined, ctx: Ctx): void {
  if (overrides?.workers !== undefined) {
    const spec = schema.children.workers;
    try {
      cfg.workers = spec.parse(String(overrides.workers), ctx);
    } catch (e) {
      if (e instanceof ValueError) throw new ConfigError('cluster.workers', e.message, undefined, '--workers');
      throw e;
    }
  }
}

/**
 * Validates configuration text. `baseDir` is where relative paths resolve; `sourceName` labels
 * errors (normally the file name).
 */
export function parseConfig(xml: string, baseDir: string, sourceName: string, overrides?: ConfigOverrides): ClusterConfig {
  const ctx: Ctx = { baseDir: resolve(baseDir), source: sourceName };
  const root = parseTree(xml, sourceName);
  const rootName = schema.xml.elem;
  if (root.name !== rootName) fail(kDocument, `the root element must be <${rootName}>, got <${root.name}>`, root.line, ctx);
  const cfg = buildGroup(schema as GroupSpec<Record<string, Spec>>, root, rootName, ctx) as unknown as ClusterConfig;
  applyOverrides(cfg, overrides, ctx);
  for (const rule of crossChecks) {
    const r = rule.check(cfg);
    if (r === null) continue;
    const [path, msg] = typeof r === 'string' ? [rule.path, r] : [r.path, r.message];
    fail(path, msg, lineOf(root, path), ctx);
  }
  return deepFreeze(cfg);
}

/**
 * Line of the element at an XML path (`cluster.a.b`, `cluster.peers.peer[2].port`: 1-based
 * index among same-named siblings), or of its nearest present ancestor.
 */
function lineOf(root: RawElement, path: string): number | undefined {
  const parts = path.split('.').slice(1);
  let el = root;
  for (const p of parts) {
    const m = /^([^[@]+)(?:\[(\d+)\])?/.exec(p);
    if (m === null) break;
    const name = m[1]!;
    const nth = m[2] !== undefined ? Number(m[2]) : 1;
    const c = el.children.filter((x) => x.name === name)[nth - 1];
    if (c === undefined) break;
    el = c;
  }
  return el.line;
}

function readText(path: string, what: string, errPath: string): string {
  try {
    return readFileSync(path, 'utf8');
  } catch (e) {
    const err = e as NodeJS.ErrnoException;
    throw new ConfigError(errPath, `cannot read ${what}: ${err.code ?? err.message}`, undefined, path, { cause: e });
  }
}

/** Reads and validates the configuration file. Relative paths in it resolve against its directory. */
export function loadConfig(path: string, overrides?: ConfigOverrides): ClusterConfig {
  const xml = readText(path, 'the configuration file', kDocument);
  return parseConfig(xml, dirname(resolve(path)), path, overrides);
}

/** All defaults, as if the file were `<cluster/>` in `baseDir` (tests, tools). */
export function defaultConfig(baseDir = process.cwd(), overrides?: ConfigOverrides): ClusterConfig {
  return parseConfig(`<${schema.xml.elem}/>`, baseDir, '(defaults)', overrides);
}

// ---------------------------------------------------------------------------------------------
// router-users.xml

/**
 * Validates users-file text: `<users><user><name>N</name><secret>S</secret></user>…</users>`
 * (jabberd2 `router/user.c`). Secrets are never quoted in errors.
 */
export function parseUsers(xml: string, sourceName: string): Map<string, string> {
  const ctx: Ctx = { baseDir: '.', source: sourceName };
  const root = parseTree(xml, sourceName);
  if (root.name !== 'users') fail(kDocument, `the root element must be <users>, got <${root.name}>`, root.line, ctx);
  noText(root, 'users', ctx);
  for (const a of Object.keys(root.attrs)) fail(`users@${a}`, `unknown attribute '${a}' on <users>`, root.line, ctx);
  const users = new Map<string, string>();
  const firstLine = new Map<string, number>();
  let i = 0;
  for (const u of root.children) {
    i++;
    const up = `users.user[${i}]`;
    if (u.name !== 'user') unknownElement(u, 'users', ['user'], undefined, ctx);
    noText(u, up, ctx);
    for (const a of Object.keys(u.attrs)) fail(`${up}@${a}`, `unknown attribute '${a}' on <user>`, u.line, ctx);
    for (const c of u.children) if (c.name !== 'name' && c.name !== 'secret') unknownElement(c, up, ['name', 'secret'], undefined, ctx);
    const byName = indexChildren(u, up, ctx);
    const nameEl = byName.get('name');
    const secretEl = byName.get('secret');
    if (nameEl === undefined) fail(`${up}.name`, 'missing <name>', u.line, ctx);
    if (secretEl === undefined) fail(`${up}.secret`, 'missing <secret>', u.line, ctx);
    const name = leafText(nameEl, `${up}.name`, ctx);
    const secret = leafText(secretEl, `${up}.secret`, ctx);
    if (name === '') fail(`${up}.name`, 'expected a user name, got nothing', nameEl.line, ctx);
    if (/[\u0000-\u001f\u007f]/.test(name)) fail(`${up}.name`, `control characters are not allowed, got ${JSON.stringify(name)}`, nameEl.line, ctx);
    if (secret === '') fail(`${up}.secret`, `expected a secret for user '${name}', got nothing`, secretEl.line, ctx);
    const prev = firstLine.get(name);
    if (prev !== undefined) fail(`${up}.name`, `user '${name}' is listed twice (first at line ${prev})`, nameEl.line, ctx);
    firstLine.set(name, nameEl.line);
    users.set(name, secret);
  }
  return users;
}

/** Reads and validates a router-users.xml-format file; errors name the file and the element. */
export function loadUsers(path: string): Map<string, string> {
  return parseUsers(readText(path, 'the users file', 'users'), path);
}
