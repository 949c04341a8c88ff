/**
 * The benchmark suite runs (native-free-bench/run.ts --quick): exit 0, and the results JSON has
 * every section, end to end (d) included (all three setups measured, no error bounces). Figures
 * are never asserted: timings depend on the machine and its load.
 */
import assert from 'node:assert/strict';
import { spawnSync } from 'node:child_process';
import { mkdtempSync, readFileSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join, resolve } from 'node:path';
import { test } from 'node:test';
import { fileURLToPath } from 'node:url';

const root = resolve(fileURLToPath(new URL('.', import.meta.url)), '../..');

test('npx tsx native-free-bench/run.ts --quick runs every section', { timeout: 300_000 }, () => {
  const out = mkdtempSync(join(tmpdir(), 'jc-bench-test-'));
  try {
    const r = spawnSync('npx', ['tsx', 'native-free-bench/run.ts', '--quick', '--out', out, '--label', 'ci'], { cwd: root, encoding: 'utf8', timeout: 280_000 });
    assert.equal(r.status, 0, `exit ${r.status ?? r.signal}\n--- stdout\n${r.stdout}\n--- stderr (tail)\n${(r.stderr ?? '').slice(-4000)}`);
    const j = JSON.parse(readFileSync(join(out, 'ci.json'), 'utf8')) as Record<string, any>;
    assert.ok(readFileSync(join(out, 'ci.svg'), 'utf8').startsWith('<svg'), 'SVG chart written');
    assert.equal(j.quick, true);
    assert.deepEqual(j.errors, []);
    assert.equal(j.guard.msgpackrNativeAcceleration, false);
    assert.deepEqual(j.guard.nativeAddons, []);
    const s = j.sections;
    for (const k of ['framer', 'envelope', 'codec', 'sharedTable', 'clusterTable']) {
      assert.ok(Array.isArray(s.micro[k]?.rows) && s.micro[k].rows.length > 0, `micro.${k} has rows`);
      assert.equal(s.micro[k].guard.msgpackrNativeAcceleration, false, `micro.${k} ran without native acceleration`);
    }
    for (const k of ['singleNode', 'twoNodes']) {
      assert.ok(Array.isArray(s.macro[k]) && s.macro[k].length > 0, `macro.${k}`);
      const w0 = s.macro[k].find((x: { workers: number }) => x.workers === 0);
      assert.ok(w0?.peak && w0?.latency1, `macro.${k} workers=0 has peak and latency`);
      assert.ok(w0.peak.stanzasPerSec > 0, `macro.${k} forwarded routes`);
    }
    assert.ok(s.macro.singleNode[0].halfPeak, 'half-peak latency measured');
    for (const k of ['byteRelay', 'directPath', 'jabberd2Router']) assert.ok(s.macro.baselines[k]?.latency1, `baseline ${k}`);
    assert.ok(s.macro.baselines.byteRelay.peak && s.macro.baselines.jabberd2Router.peak, 'baselines have peaks');
    const e2e = s.macro.endToEnd;
    assert.equal(e2e.status, 'measured', `endToEnd: ${e2e.status}`);
    for (const r of [e2e.plain, e2e.node?.[0], e2e.cluster?.[0]]) {
      assert.ok(r?.latency1 && r.saturation, `endToEnd ${r?.label ?? '(missing setup)'} has latency and saturation`);
      assert.ok(r.saturation.msgsPerSec > 0 && r.saturation.cpuSecPerMillion > 0, `endToEnd ${r.label} delivered messages`);
      assert.equal(r.bounces, 0, `endToEnd ${r.label}: no error bounces`);
    }
    assert.ok(e2e.cluster[0].nodeCounters.n1.cluster.toPeers > 0, 'endToEnd cluster: messages crossed the peer link');
    assert.ok(s.routeTable.memory && s.routeTable.lookups && s.routeTable.resync?.defaultSettings, 'route table');
    assert.ok(Array.isArray(j.targets) && j.targets.length >= 11, 'targets reported');
    assert.equal(j.targets.filter((t: { name: string }) => t.name.startsWith('end to end')).length, 4, 'end-to-end overhead targets');
    for (const t of j.targets) assert.ok(['MET', 'MISSED', 'N/A'].includes(t.status), `target ${t.name}: ${t.status}`);
    assert.match(r.stdout, /Targets \(reported, never asserted\)/);
  } finally {
    rmSync(out, { recursive: true, force: true });
  }
});
