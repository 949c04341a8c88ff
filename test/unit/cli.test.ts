import { test } from 'node:test';
import assert from 'node:assert/strict';
import { execFile } from 'node:child_process';
import { chmodSync, copyFileSync, mkdirSync, mkdtempSync, readFileSync, rmSync, statSync, symlinkSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { fileURLToPath } from 'node:url';
import { promisify } from 'node:util';
import { DEFAULT_CONFIG_PATH, UsageError, checkConfig, parseCli, usage } from '../../src/cli.ts';
import { ConfigError } from '../../src/config/load.ts';

const kRoot = fileURLToPath(new URL('../../', import.meta.url));
const kSample = join(kRoot, 'config', 'cluster.xml');
const none = { exists: () => false };
const present = { exists: (p: string) => p === DEFAULT_CONFIG_PATH };

function tmp(t: { after: (fn: () => void) => void }): string {
  const d = mkdtempSync(join(tmpdir(), 'jc-cli-'));
  t.after(() => rmSync(d, { recursive: true, force: true }));
  return d;
}

test('parseCli: option forms', () => {
  const base = { checkOnly: false, version: false, help: false };
  assert.deepEqual(parseCli(['-c', 'a.xml'], none), { ...base, configPath: 'a.xml' });
  assert.deepEqual(parseCli(['-ca.xml'], none), { ...base, configPath: 'a.xml' });
  assert.deepEqual(parseCli(['--config', 'a.xml'], none), { ...base, configPath: 'a.xml' });
  assert.deepEqual(parseCli(['--config=a=b.xml'], none), { ...base, configPath: 'a=b.xml' });
  assert.deepEqual(parseCli(['--check-config', '-c', 'a.xml'], none), { ...base, configPath: 'a.xml', checkOnly: true });
  assert.deepEqual(parseCli(['-c', 'a.xml', '--workers', '0'], none), { ...base, configPath: 'a.xml', workers: 0 });
  assert.deepEqual(parseCli(['--workers=12', '-c', 'a.xml'], none), { ...base, configPath: 'a.xml', workers: 12 });
  assert.ok(!('workers' in parseCli(['-c', 'a.xml'], none)));
});

test('parseCli: default config path', () => {
  assert.equal(parseCli([], present).configPath, DEFAULT_CONFIG_PATH);
  assert.equal(parseCli(['--check-config'], present).configPath, DEFAULT_CONFIG_PATH);
  assert.equal(parseCli([], { exists: (p) => p === '/x/c.xml', defaultConfigPath: '/x/c.xml' }).configPath, '/x/c.xml');
  assert.throws(() => parseCli([], none), (e: unknown) => e instanceof UsageError && /\/etc\/jabberd2\/cluster\.xml does not exist; pass -c FILE/.test(e.message));
  assert.throws(() => parseCli(['--check-config'], none), UsageError);
  // --help and --version need no config file
  assert.deepEqual(parseCli(['--help'], none), { configPath: DEFAULT_CONFIG_PATH, checkOnly: false, version: false, help: true });
  assert.equal(parseCli(['-h'], none).help, true);
  assert.equal(parseCli(['--version'], none).version, true);
});

test('parseCli: usage errors', () => {
  const cases: [string[], RegExp][] = [
    [['-c'], /-c needs a value/],
    [['--config'], /--config needs a value/],
    [['--config='], /--config needs a value/],
    [['-c', '--check-config'], /-c needs a value/],
    [['--workers'], /--workers needs a value/],
    [['-c', 'a', '--workers', 'two'], /--workers expects a non-negative integer, got 'two'/],
    [['-c', 'a', '--workers', '-1'], /--workers needs a value/],
    [['-c', 'a', '--workers=1.5'], /non-negative integer, got '1.5'/],
    [['-c', 'a', '-c', 'b'], /--config given more than once/],
    [['-c', 'a', '--config=b'], /--config given more than once/],
    [['-c', 'a', '--workers=1', '--workers=2'], /--workers given more than once/],
    [['--check-config', '--check-config', '-c', 'a'], /--check-config given more than once/],
    [['-c', 'a', '--check-config=yes'], /--check-config takes no value/],
    [['-c', 'a', '--verbose'], /unknown option '--verbose'/],
    [['-c', 'a', '--log-level=debug'], /unknown option '--log-level'/],
    [['-x'], /unknown option '-x'/],
    [['-c', 'a', 'extra'], /unexpected argument 'extra'/],
  ];
  for (const [argv, re] of cases) assert.throws(() => parseCli(argv, none), (e: unknown) => e instanceof UsageError && re.test(e.message), argv.join(' '));
});

test('usage mentions every option', () => {
  const u = usage();
  for (const o of ['-c, --config FILE', '--check-config', '--workers N', '--version', '-h, --help', DEFAULT_CONFIG_PATH]) assert.ok(u.includes(o), o);
});

test('checkConfig: the sample', async () => {
  const s = await checkConfig(kSample, { workers: 2 });
  assert.match(s, /^.*cluster\.xml: OK: node '[^']+'; router 127\.0\.0\.1:5347 as 'jabberd'; sm listener 127\.0\.0\.1:5348 \(max 64\); 1 user in .*router-users\.xml; 2 workers; log notice to stderr$/);
  assert.ok(!s.includes('secret'));
});

test('checkConfig: errors and warnings', async (t) => {
  const d = tmp(t);
  writeFileSync(join(d, 'c.xml'), "<cluster><local><users>u.xml</users><aci><acl type='all'><user>jabberd</user><user>ghost</user></acl></aci></local></cluster>");
  // users file missing
  await assert.rejects(checkConfig(join(d, 'c.xml')), (e: unknown) => e instanceof ConfigError && /cannot read the users file/.test(e.message));
  writeFileSync(join(d, 'u.xml'), '<users><user><name>jabberd</name><secret>s3cr3t</secret></user></users>');
  const s = await checkConfig(join(d, 'c.xml'));
  assert.match(s, /\nwarning: ACL user 'ghost' is not in .*u\.xml$/);
  assert.ok(!s.includes('s3cr3t'));
  writeFileSync(join(d, 'u.xml'), '<users/>');
  assert.match(await checkConfig(join(d, 'c.xml')), /warning: .*lists no user/);
  // invalid config
  writeFileSync(join(d, 'bad.xml'), '<cluster><local><port>x</port></local></cluster>');
  await assert.rejects(checkConfig(join(d, 'bad.xml')), (e: unknown) => e instanceof ConfigError && e.path === 'cluster.local.port');
  await assert.rejects(checkConfig(kSample, { workers: 999 }), (e: unknown) => e instanceof ConfigError && e.path === 'cluster.workers');
});

test('bin/jabberd2-cluster.js: executable ESM shim that registers tsx and runs src/main.ts', async (t) => {
  const bin = join(kRoot, 'bin', 'jabberd2-cluster.js');
  const text = readFileSync(bin, 'utf8');
  assert.ok(text.startsWith('#!/usr/bin/env node\n'));
  assert.ok(statSync(bin).mode & 0o111, 'not executable');
  assert.equal(JSON.parse(readFileSync(join(kRoot, 'package.json'), 'utf8')).bin['jabberd2-cluster'], 'bin/jabberd2-cluster.js');
  // run a copy next to a stub src/main.ts (TypeScript syntax, reads argv) to prove the wiring
  const d = tmp(t);
  mkdirSync(join(d, 'bin'));
  mkdirSync(join(d, 'src'));
  copyFileSync(bin, join(d, 'bin', 'jabberd2-cluster.js'));
  chmodSync(join(d, 'bin', 'jabberd2-cluster.js'), 0o755);
  writeFileSync(join(d, 'package.json'), '{"type":"module"}');
  symlinkSync(join(kRoot, 'node_modules'), join(d, 'node_modules'));
  writeFileSync(join(d, 'src', 'main.ts'), "const args: string[] = process.argv.slice(2);\nconsole.log('stub main', JSON.stringify(args));\n");
  const { stdout } = await promisify(execFile)(join(d, 'bin', 'jabberd2-cluster.js'), ['--check-config', '-c', 'x.xml'], { cwd: d });
  assert.equal(stdout.trim(), 'stub main ["--check-config","-c","x.xml"]');
});
