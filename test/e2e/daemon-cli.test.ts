/**
 * The daemon as operators run it: `bin/jabberd2-cluster.js -c FILE` in front of a real jabberd2
 * router; `--check-config`; a config error naming the element; SIGHUP re-reads the users file;
 * SIGTERM stops it cleanly.
 */
import assert from 'node:assert/strict';
import { spawn, spawnSync, type ChildProcess } from 'node:child_process';
import { writeFileSync } from 'node:fs';
import { join } from 'node:path';
import { after, before, test } from 'node:test';
import { Jabberd2, freePorts } from '../../src/local/jabberd2.ts';
import { FakeComponent } from '../helpers/fake-component.ts';

const BIN = new URL('../../bin/jabberd2-cluster.js', import.meta.url).pathname;
let j: Jabberd2;
let child: ChildProcess | undefined;
let cfgPath = '';
let usersPath = '';
let port = 0;
let stderr = '';

function users(entries: Record<string, string>): string {
  return `<users>${Object.entries(entries).map(([n, s]) => `<user><name>${n}</name><secret>${s}</secret></user>`).join('')}</users>`;
}

before(async () => {
  j = await Jabberd2.create();
  await j.start('router');
  [port] = (await freePorts(1)) as [number];
  usersPath = join(j.dir, 'node-users.xml');
  writeFileSync(usersPath, users({ jabberd: 'secret' }));
  cfgPath = join(j.dir, 'cluster.xml');
  writeFileSync(cfgPath, `<cluster><id>cli1</id>
  <router><ip>127.0.0.1</ip><port>${j.routerPort}</port><user>${j.routerUser}</user><pass>${j.routerPass}</pass></router>
  <local><ip>127.0.0.1</ip><port>${port}</port><users>${usersPath}</users></local>
  <workers>0</workers></cluster>`);
});
after(async () => {
  child?.kill('SIGKILL');
  await j?.cleanup();
});

test('--check-config accepts the file; a bad value is refused naming its element', () => {
  const ok = spawnSync(process.execPath, [BIN, '-c', cfgPath, '--check-config'], { encoding: 'utf8' });
  assert.equal(ok.status, 0, ok.stderr);
  assert.match(ok.stdout, /OK: node 'cli1'/);
  const bad = join(j.dir, 'bad.xml');
  writeFileSync(bad, `<cluster><router><port>http</port></router></cluster>`);
  const r = spawnSync(process.execPath, [BIN, '-c', bad, '--check-config'], { encoding: 'utf8' });
  assert.equal(r.status, 1);
  assert.match(r.stderr, /cluster\.router\.port: /);
});

test('runs, reloads its users on SIGHUP, stops on SIGTERM', { timeout: 60000 }, async () => {
  child = spawn(process.execPath, [BIN, '-c', cfgPath], { stdio: ['ignore', 'ignore', 'pipe'] });
  child.stderr!.on('data', (d) => (stderr += d));
  const wait = async (re: RegExp, what: string): Promise<void> => {
    const t0 = Date.now();
    while (!re.test(stderr)) {
      if (Date.now() - t0 > 15000) throw new Error(`timed out waiting for ${what}:\n${stderr}`);
      await new Promise((r) => setTimeout(r, 20));
    }
  };
  await wait(/ready: sm listener/, 'the daemon to be ready');
  await wait(/authenticated to the router/, 'the router link');
  await assert.rejects(FakeComponent.login(port, 'newcomer', 'pw-n'), /authentication failed/);
  writeFileSync(usersPath, users({ jabberd: 'secret', newcomer: 'pw-n' }));
  child.kill('SIGHUP');
  await wait(/SIGHUP: reloaded 2 user/, 'the reload');
  const c = await FakeComponent.login(port, 'newcomer', 'pw-n');
  c.close();
  assert.ok(!stderr.includes('pw-n') && !stderr.includes(j.routerPass), 'no secret in the log');
  const exited = new Promise<number | null>((r) => child!.once('exit', (code) => r(code)));
  child.kill('SIGTERM');
  assert.equal(await exited, 0);
  child = undefined;
});
