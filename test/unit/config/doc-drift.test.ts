import { test } from 'node:test';
import assert from 'node:assert/strict';
import { readFileSync } from 'node:fs';
import { dirname } from 'node:path';
import { kDocPath, kSamplePath, renderConfigDoc, sampleOptionPaths, schemaOptionPaths } from '../../../scripts/gen-config-doc.ts';
import { defaultConfig, parseConfig } from '../../../src/config/load.ts';
import { listOptions } from '../../../src/config/schema.ts';

const sample = readFileSync(kSamplePath, 'utf8');

test('docs/reference/config.md is up to date with the schema (npx tsx scripts/gen-config-doc.ts)', () => {
  assert.equal(readFileSync(kDocPath, 'utf8'), renderConfigDoc());
});

test('every option of the schema is documented', () => {
  const doc = renderConfigDoc();
  for (const o of listOptions()) {
    assert.ok(doc.includes(`### \`${o.path}\``), o.path);
    assert.ok(o.spec.doc.length > 10, `${o.path} has no doc string`);
    if (o.spec.kind === 'leaf' && typeof o.spec.default !== 'string') assert.ok(o.spec.defaultDoc, `${o.path}: computed default without defaultDoc`);
  }
});

test('config/cluster.xml mentions exactly the options of the schema', () => {
  const inSample = new Set(sampleOptionPaths(sample));
  const inSchema = new Set(schemaOptionPaths());
  assert.deepEqual([...inSchema].filter((p) => !inSample.has(p)), [], 'options missing from config/cluster.xml');
  assert.deepEqual([...inSample].filter((p) => !inSchema.has(p)), [], 'options in config/cluster.xml unknown to the schema');
});

test('config/cluster.xml sets every active option to its default', () => {
  assert.deepEqual(parseConfig(sample, dirname(kSamplePath), kSamplePath), defaultConfig(dirname(kSamplePath)));
});

test('options written in commented-out blocks are valid', () => {
  // uncomment every block that holds configuration and load the result
  const uncommented = sample.replace(/<!--([\s\S]*?)-->/g, (m, body: string) => (body.trim().startsWith('<') ? body : m));
  // <peers><tls> names PEM files that must exist: load.test.ts loads that block with real ones
  const c = parseConfig(uncommented.replace(/^[ \t]*<tls>[\s\S]*?<\/tls>/m, ''), dirname(kSamplePath), kSamplePath);
  assert.equal(c.id, 'node1');
  assert.equal(c.workers, 3);
  assert.deepEqual(c.local.acl, { all: ['jabberd'], bind: ['sm'], 'default-route': ['s2s'], log: ['msglog'] });
  assert.equal(c.log.file, '/var/log/jabberd2/cluster.log');
  assert.deepEqual(c.domains, ['example.test']);
  assert.deepEqual(
    c.peers?.peers.map((p) => p.name),
    ['node2', 'node3'],
  );
  assert.deepEqual(c.peers?.listen, { ip: '0.0.0.0', port: 5350 });
});

test('sampleOptionPaths: list items belong to their list, repeated groups to their fields', () => {
  const xml = '<cluster><domains><domain>a</domain><domain>b</domain></domains><peers><peer><name>x</name></peer><peer><port>1</port></peer></peers></cluster>';
  assert.deepEqual(sampleOptionPaths(xml).sort(), ['cluster.domains', 'cluster.peers.peer.name', 'cluster.peers.peer.port']);
});

test('sampleOptionPaths ignores prose comments and sees commented blocks', () => {
  const xml = `<cluster><!-- <router><port> is prose --><!--
    <router><port>1</port></router> --><log type='file'><!-- <file>x</file> --></log></cluster>`;
  assert.deepEqual(sampleOptionPaths(xml).sort(), ['cluster.log.file', 'cluster.log@type', 'cluster.router.port']);
});
