/**
 * One jabberd2 with a jabberd2-cluster node in front of its sm and no peers: every reference
 * scenario must give exactly the observations plain jabberd2 gives.
 */
import assert from 'node:assert/strict';
import { after, before, test } from 'node:test';
import { Jabberd2 } from '../../src/local/jabberd2.ts';
import { runReferenceScenarios, formatObservations, type Observation } from '../helpers/scenarios.ts';
import { startJabberd2WithNode, type NodeSetup } from '../helpers/node.ts';

let plain: Jabberd2 | undefined;
let withNode: NodeSetup | undefined;

before(async () => {
  plain = await Jabberd2.create({ domain: 'example.test' });
  await plain.start('router');
  await plain.start('sm');
  await plain.start('c2s');
  withNode = await startJabberd2WithNode({ domain: 'example.test' });
});

after(async () => {
  await plain?.cleanup();
  await withNode?.stop();
});

test('reference scenarios give the same observations with and without the node', { timeout: 90000 }, async () => {
  const p = plain!;
  const w = withNode!;
  const reference: Observation[] = await runReferenceScenarios({ portOf: () => p.c2sPort, domain: p.domain });
  const clustered: Observation[] = await runReferenceScenarios({ portOf: () => w.j.c2sPort, domain: w.j.domain });
  assert.ok(reference.length > 30);
  assert.deepEqual(clustered, reference, `with node:\n${formatObservations(clustered)}`);
  const st = w.node.status() as { stats: { localDeliveries: number; upstreamSends: number }; names: { name: string }[] };
  // the traffic really went through the node: intra-domain routes were delivered locally
  assert.ok(st.stats.localDeliveries > 20, `local deliveries: ${st.stats.localDeliveries}`);
  assert.ok(st.stats.upstreamSends > 20, `upstream sends: ${st.stats.upstreamSends}`);
  assert.deepEqual(st.names.map((n) => n.name).sort(), ['example.test', 'sm']);
  for (const d of ['router', 'sm', 'c2s'] as const) assert.ok(w.j.isRunning(d), `${d} died`);
});
