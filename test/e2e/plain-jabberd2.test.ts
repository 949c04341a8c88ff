/**
 * Plain jabberd2 (router, sm, c2s; the sm connects to the router itself) running the reference
 * scenarios. This is the baseline the clustered runs are compared with.
 */
import assert from 'node:assert/strict';
import { after, before, test } from 'node:test';
import { Jabberd2 } from '../../src/local/jabberd2.ts';
import { runReferenceScenarios } from '../helpers/scenarios.ts';

let j: Jabberd2 | undefined;

before(async () => {
  j = await Jabberd2.create({ domain: 'example.test' });
  await j.start('router');
  await j.start('sm');
  await j.start('c2s');
});

after(async () => {
  await j?.cleanup();
});

test('reference scenarios pass on plain jabberd2', { timeout: 60000 }, async () => {
  assert.ok(j);
  const inst = j;
  const obs = await runReferenceScenarios({ portOf: () => inst.c2sPort, domain: inst.domain });
  assert.ok(obs.length > 30, `too few observations: ${obs.length}`);
  // the daemons survived the run
  for (const d of ['router', 'sm', 'c2s'] as const) assert.ok(inst.isRunning(d), `${d} died:\n${inst.logOf(d)}`);
});

test('reference scenarios are deterministic after normalization', { timeout: 60000 }, async () => {
  assert.ok(j);
  const inst = j;
  const t = { portOf: () => inst.c2sPort, domain: inst.domain };
  const first = await runReferenceScenarios(t);
  const second = await runReferenceScenarios(t);
  assert.deepEqual(second, first);
});
