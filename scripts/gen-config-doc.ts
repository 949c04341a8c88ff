/**
 * Renders docs/reference/config.md from src/config/schema.ts, and lists the options a sample
 * configuration mentions, for test/unit/config/doc-drift.test.ts.
 *
 *   npx tsx scripts/gen-config-doc.ts           rewrite docs/reference/config.md
 *   npx tsx scripts/gen-config-doc.ts --check   exit 1 if it is out of date
 */
import { readFileSync, writeFileSync } from 'node:fs';
import { fileURLToPath, pathToFileURL } from 'node:url';
import { SaxesParser } from 'saxes';
import { ACL_TYPES, listOptions, schema, type GroupSpec, type LeafSpec, type ListSpec, type Spec } from '../src/config/schema.ts';

export const kDocPath = fileURLToPath(new URL('../docs/reference/config.md', import.meta.url));
export const kSamplePath = fileURLToPath(new URL('../config/cluster.xml', import.meta.url));

function code(s: string): string {
  return '`' + s + '`';
}

function cell(s: string): string {
  return s.replace(/\|/g, '\\|').replace(/\n/g, ' ');
}

function defaultOf(spec: LeafSpec<unknown> | ListSpec<unknown>): string {
  if (spec.defaultDoc !== undefined) return spec.defaultDoc;
  if (spec.kind === 'list') return spec.default.length === 0 ? 'none' : spec.default.map(code).join(', ');
  if (typeof spec.default !== 'string') throw new Error('computed or absent default without defaultDoc');
  return code(spec.default);
}

function typeOf(spec: LeafSpec<unknown> | ListSpec<unknown>): string {
  return spec.kind === 'list' ? `a list: one \`<${spec.xml.item}>\` per item, each ${spec.type}` : spec.type;
}

function xmlSnippet(path: string, spec: LeafSpec<unknown> | ListSpec<unknown>): string {
  const parts = path.split('.');
  if (spec.kind === 'list') return `<${spec.xml.elem}><${spec.xml.item}>…</${spec.xml.item}></${spec.xml.elem}>`;
  if (path.includes('@')) {
    const [elemPath, attr] = path.split('@') as [string, string];
    const el = elemPath.split('.').at(-1)!;
    return `<${el} ${attr}='${typeof spec.default === 'string' ? spec.default : '…'}'>`;
  }
  const el = parts.at(-1)!;
  return `<${el}>${typeof spec.default === 'string' ? spec.default : '…'}</${el}>`;
}

/** The Markdown reference, fully determined by the schema. */
export function renderConfigDoc(): string {
  const out: string[] = [];
  const opts = listOptions();
  out.push(
    '# Configuration reference',
    '',
    '<!-- Generated from src/config/schema.ts by scripts/gen-config-doc.ts. Do not edit by hand:',
    '     run `npx tsx scripts/gen-config-doc.ts`; test/unit/config/doc-drift.test.ts fails when this file is stale. -->',
    '',
    "The configuration is an XML file in the style of jabberd2's own (`router.xml`, `sm.xml`): one root",
    `element \`<${schema.xml.elem}>\`, one element per option, values as element text. The annotated sample`,
    '`config/cluster.xml` shows every option with its default. Pass the file with `-c FILE`; without it,',
    '`/etc/jabberd2/cluster.xml` is used if it exists. `jabberd2-cluster --check-config -c FILE` validates',
    'the file and its users file, prints a summary and exits without opening any port.',
    '',
    'Rules:',
    '',
    '- Every option is optional; a missing option takes its default. `<cluster/>` is a valid file. Some',
    '  sections are optional as a whole (`<peers>`); inside one that is present, a few options are required.',
    '- Unknown elements and attributes are refused, naming them; so is an element given twice, except the',
    '  repeatable ones (`<peer>`, list items such as `<domain>`). Errors about them count from 1: `peer[2]`.',
    '- Leading and trailing whitespace is removed from every value.',
    '- A DOCTYPE (and so any entity definition) is refused.',
    '- Relative paths resolve against the directory of the configuration file.',
    '- Errors name the exact option and line, e.g.',
    "  `cluster.router.port: expected an integer 1..65535, got 'abc' (line 12 of cluster.xml)`.",
    '- Only the options marked *yes* under SIGHUP take effect on a reload; the others need a restart.',
    '',
    '## Summary',
    '',
    '| Option | Type | Default | SIGHUP |',
    '|---|---|---|---|',
  );
  for (const o of opts) {
    const spec = o.spec;
    if (spec.kind === 'acl') {
      const d = ACL_TYPES.map((t) => `${t}: ${spec.default[t].length === 0 ? 'none' : spec.default[t].join(', ')}`).join('; ');
      out.push(`| [${code(o.path)}](#${anchor(o.path)}) | access lists | ${cell(d)} | ${spec.reload ? 'yes' : 'no'} |`);
    } else {
      out.push(`| [${code(o.path)}](#${anchor(o.path)}) | ${cell(typeOf(spec))} | ${cell(defaultOf(spec))} | ${spec.reload ? 'yes' : 'no'} |`);
    }
  }
  out.push('');

  // one section per group, options in document order
  const walk = (g: GroupSpec<Record<string, Spec>>, path: string): void => {
    out.push(`## ${code(path)}`, '', g.doc, '');
    const sub: [GroupSpec<Record<string, Spec>>, string][] = [];
    for (const s of Object.values(g.children)) {
      if (s.kind === 'group') {
        sub.push([s, `${path}.${s.xml.elem}`]);
        continue;
      }
      const x: { elem: string } | { attr: string } = s.xml;
      const p = 'attr' in x ? `${path}@${x.attr}` : `${path}.${x.elem}`;
      out.push(`### ${code(p)}`, '', `<a id="${anchor(p)}"></a>`, '');
      if (s.kind === 'acl') {
        out.push(
          s.doc,
          '',
          '| `type` | Users listed may… | Default |',
          '|---|---|---|',
          ...ACL_TYPES.map((t) => `| ${code(t)} | ${cell(s.types[t])} | ${s.default[t].length === 0 ? 'none' : s.default[t].map(code).join(', ')} |`),
          '',
          '```xml',
          `<${s.xml.elem}>`,
          ...ACL_TYPES.filter((t) => s.default[t].length > 0).flatMap((t) => [`  <acl type='${t}'>`, ...s.default[t].map((u) => `    <user>${u}</user>`), '  </acl>']),
          `</${s.xml.elem}>`,
          '```',
          '',
          `- SIGHUP: ${s.reload ? 'yes' : 'no (restart)'}`,
          '',
        );
        continue;
      }
      out.push(
        s.doc,
        '',
        `- Type: ${typeOf(s)}`,
        `- Default: ${defaultOf(s)}`,
        `- SIGHUP: ${s.reload ? 'yes' : 'no (restart)'}`,
        ...(s.kind === 'leaf' && s.secret === true ? ['- Secret: never logged nor echoed in error messages'] : []),
        `- Example: ${code(xmlSnippet(p, s))}`,
        '',
      );
    }
    for (const [sg, sp] of sub) walk(sg, sp);
  };
  walk(schema as GroupSpec<Record<string, Spec>>, schema.xml.elem);

  out.push(
    '## The users file',
    '',
    '`local.users` names a file in jabberd2\'s `router-users.xml` format. Its users are the ones allowed to',
    "authenticate (SASL DIGEST-MD5, realm `jabberd-router`) on the local port; the session manager uses its",
    "sm.xml `<router><user>` and `<router><pass>`. Secrets are stored in plain text, as in jabberd2: make the file",
    'readable by the service user only. Each name may appear once; unknown elements are refused.',
    '',
    '```xml',
    '<users>',
    '  <user>',
    '    <name>jabberd</name>',
    '    <secret>secret</secret>',
    '  </user>',
    '</users>',
    '```',
    '',
    '## Elements from jabberd2 files that are not accepted',
    '',
    '| Element | Instead |',
    '|---|---|',
  );
  const hintRows = (g: GroupSpec<Record<string, Spec>>, path: string): void => {
    for (const [name, hint] of Object.entries(g.hints ?? {})) out.push(`| ${code(`${path}.${name}`)} | ${cell(hint.replace(/(?:<[^<>]+>)+/g, (m) => code(m)))} |`);
    for (const s of Object.values(g.children)) if (s.kind === 'group') hintRows(s, `${path}.${s.xml.elem}`);
  };
  hintRows(schema as GroupSpec<Record<string, Spec>>, schema.xml.elem);
  out.push('');
  return out.join('\n');
}

function anchor(path: string): string {
  return 'opt-' + path.replace(/[^A-Za-z0-9]+/g, '-').replace(/-+$/, '');
}

/**
 * Option paths the schema defines, in the form sampleOptionPaths() reports: leaves as
 * `cluster.router.port` / `cluster.log@type`, access lists as `cluster.local.aci.acl[all]`.
 */
export function schemaOptionPaths(): string[] {
  const out: string[] = [];
  for (const o of listOptions()) {
    if (o.spec.kind === 'acl') for (const t of ACL_TYPES) out.push(`${o.path}.acl[${t}]`);
    else out.push(o.path);
  }
  return out;
}

/**
 * Option paths a sample configuration mentions, including those in commented-out blocks
 * (a comment whose content starts with `<` and parses as XML is read as configuration).
 */
export function sampleOptionPaths(xml: string): string[] {
  const found = new Set<string>();
  const groupNames = new Set<string>();
  const collectGroups = (g: GroupSpec<Record<string, Spec>>, path: string): void => {
    groupNames.add(path);
    for (const s of Object.values(g.children)) if (s.kind === 'group') collectGroups(s, `${path}.${s.xml.elem}`);
  };
  collectGroups(schema as GroupSpec<Record<string, Spec>>, schema.xml.elem);
  const aclPaths = new Set(listOptions().filter((o) => o.spec.kind === 'acl').map((o) => o.path));
  // items of a list (`<domains><domain>`) belong to the list option
  const listPaths = new Set(listOptions().filter((o) => o.spec.kind === 'list').map((o) => o.path));

  // throws if `text` is not well-formed; `into` is only filled on success
  const scan = (text: string, prefix: string[], into: Set<string>): void => {
    const local = new Set<string>();
    const p = new SaxesParser<{ xmlns: false; fragment: boolean }>({ xmlns: false, fragment: prefix.length > 0 });
    const stack: string[] = [...prefix];
    p.on('opentag', (t) => {
      stack.push(t.name);
      const path = stack.join('.');
      for (const a of Object.keys(t.attributes)) if (groupNames.has(path)) local.add(`${path}@${a}`);
      const parent = stack.slice(0, -1).join('.');
      if (t.name === 'acl' && aclPaths.has(parent)) local.add(`${parent}.acl[${String(t.attributes['type'])}]`);
      else if (!groupNames.has(path) && !aclPaths.has(path) && !listPaths.has(parent) && !(stack.length >= 2 && aclPaths.has(stack.slice(0, -2).join('.')))) local.add(path);
    });
    p.on('closetag', () => {
      stack.pop();
    });
    p.on('comment', (c) => {
      if (!c.trim().startsWith('<')) return;
      try {
        scan(c, [...stack], local);
      } catch {
        // prose that happens to start with '<': not configuration
      }
    });
    p.write(text).close();
    for (const x of local) into.add(x);
  };
  scan(xml, [], found);
  return [...found];
}

if (process.argv[1] !== undefined && import.meta.url === pathToFileURL(process.argv[1]).href) {
  const doc = renderConfigDoc();
  if (process.argv.includes('--check')) {
    let current = '';
    try {
      current = readFileSync(kDocPath, 'utf8');
    } catch {
      // missing: stale
    }
    if (current !== doc) {
      process.stderr.write(`${kDocPath} is out of date: run npx tsx scripts/gen-config-doc.ts\n`);
      process.exit(1);
    }
  } else {
    writeFileSync(kDocPath, doc);
    process.stdout.write(`wrote ${kDocPath}\n`);
  }
}
