/**
 * Macro (a) and (b): jabberd2-cluster nodes in child processes between load generators.
 *
 * (a) one node: the generator plays jabberd2's router (the node connects to it as a component:
 *     header, DIGEST-MD5, bind replies) and the sm (it logs in to the node's sm listener and binds
 *     `sm` and `example.test` multi='to', as jabberd2's sm does). Two flows at once: router→sm
 *     (chat messages to users of example.test, delivered to the sm) and sm→router (deliveries to
 *     the c2s, sent up). Latency with one route in flight, peak, latency at half of peak.
 * (b) two nodes linked by a peer link (NodeOptions.peers), domain example.test clustered: users
 *     u0000… have their home (sessions started by sm 2) on node 2, so router 1 → node 1 → peer →
 *     node 2 → sm 2, and sm 2 → node 2 → peer → node 1 → router 1 (to `c2s--n1`).
 *
 * Each is run for every worker count in ctx.workers (today only 0 exists; other values are
 * recorded as skipped with the node's reason). CPU is that of the node process(es):
 * process.cpuUsage() in the child, all threads.
 */
import '../guard.ts';
import { checkNativeFree } from '../guard.ts';
import { isMain, standalone, type BenchContext, type SectionResult } from '../lib/context.ts';
import { Child, kBenchPass, kBenchUser } from '../lib/children.ts';
import { Endpoint, listen } from '../lib/endpoints.ts';
import { flow } from '../lib/loadgen.ts';
import { Pinning, measure } from '../lib/scenario.ts';
import { procCpuSeconds } from '../lib/procfs.ts';
import { routerToSm, sessionStarted, smToRouter } from '../lib/stanzas.ts';
import { freePorts } from '../../src/local/jabberd2.ts';

const users = new Map([[kBenchUser, kBenchPass]]);
const SM_BINDS = [{ name: 'sm' }, { name: 'example.test', multi: 'to' }];
const kUsers = 1024;

async function single(ctx: BenchContext, workers: number): Promise<Record<string, unknown>> {
  const label = `(a) node, workers=${workers}`;
  const pinning = new Pinning(ctx, 1);
  const { server, port } = await listen();
  const routerSide = Endpoint.acceptRouter(server, users, 'router side');
  let node: Child | null = null;
  const eps: Endpoint[] = [];
  try {
    ctx.progress(`${label}: starting the node (${pinning.describe()})`);
    node = await Child.spawn({ kind: 'node', id: 'n1', routerPort: port, smPort: 0, workers }, pinning.cpuFor(0), 'node n1');
    if (node.unsupported !== null) {
      routerSide.catch(() => {});
      ctx.progress(`${label}: skipped: ${node.unsupported}`);
      return { workers, skipped: node.unsupported };
    }
    const r = await routerSide;
    eps.push(r);
    const sm = await Endpoint.connectComponent(Number(node.ready['smPort']), kBenchUser, kBenchPass, SM_BINDS, 'sm side');
    eps.push(sm);
    await r.until(() => r.binds.includes('sm') && r.binds.includes('example.test'), 'the node binding sm and example.test');
    r.goRaw();
    sm.goRaw();
    const n = node;
    const flows = [flow('router→sm', r, sm, routerToSm(), kUsers), flow('sm→router', sm, r, smToRouter('c2s'), kUsers)];
    const m = await measure(ctx, label, flows, { now: () => procCpuSeconds(n.pid), exact: () => n.cpuSeconds() }, true, pinning);
    const probe = await node.probe();
    return { workers, pinned: pinning.pinned, placement: pinning.describe(), guard: node.ready['guard'], ...m, nodeCounters: { routesIn: probe['routesIn'], routesOut: probe['routesOut'], stats: probe['stats'] } };
  } finally {
    for (const e of eps) e.close();
    await node?.stop();
    server.close();
    pinning.release();
  }
}

async function pair(ctx: BenchContext, workers: number): Promise<Record<string, unknown>> {
  const label = `(b) two nodes, workers=${workers}`;
  const pinning = new Pinning(ctx, 2);
  const [p1, p2] = (await freePorts(2)) as [number, number];
  const l1 = await listen();
  const l2 = await listen();
  const rs1 = Endpoint.acceptRouter(l1.server, users, 'router 1 side');
  const rs2 = Endpoint.acceptRouter(l2.server, users, 'router 2 side');
  const nodes: Child[] = [];
  const eps: Endpoint[] = [];
  try {
    ctx.progress(`${label}: starting two nodes (${pinning.describe()})`);
    const spec = (id: string, routerPort: number, listenPort: number, peer: string, peerPort: number) => ({
      kind: 'node' as const, id, routerPort, smPort: 0, workers, domains: ['example.test'], peers: { listenPort, peers: [{ name: peer, port: peerPort }] },
    });
    const [n1, n2] = await Promise.all([
      Child.spawn(spec('n1', l1.port, p1, 'n2', p2), pinning.cpuFor(0), 'node n1'),
      Child.spawn(spec('n2', l2.port, p2, 'n1', p1), pinning.cpuFor(1), 'node n2'),
    ]);
    nodes.push(n1, n2);
    if (n1.unsupported !== null) {
      rs1.catch(() => {});
      rs2.catch(() => {});
      ctx.progress(`${label}: skipped: ${n1.unsupported}`);
      return { workers, skipped: n1.unsupported };
    }
    const r1 = await rs1;
    const r2 = await rs2;
    eps.push(r1, r2);
    const sm2 = await Endpoint.connectComponent(Number(n2.ready['smPort']), kBenchUser, kBenchPass, SM_BINDS, 'sm 2 side');
    eps.push(sm2);
    // meshed: node 1 binds node 2's sm alias on router 1
    await r1.until(() => r1.binds.includes('sm--n2'), "node 1 binding 'sm--n2' (peer link up)", 15_000);
    // users' homes on node 2: sm 2 starts one session per user; node 1 learns them by DELTA
    ctx.progress(`${label}: starting ${kUsers} sessions on node 2`);
    let batch = '';
    for (let u = 0; u < kUsers; u++) batch += sessionStarted(u, 'c2s--n1');
    sm2.write(batch);
    const until = performance.now() + 15_000;
    for (;;) {
      const p = await n1.probe();
      if (Number(p['sessions']) >= kUsers) break;
      if (performance.now() > until) throw new Error(`node 1 knows ${String(p['sessions'])} of ${kUsers} sessions after 15 s`);
      await new Promise((r) => setTimeout(r, 20));
    }
    // the 'started' routes went up to router 1 (in framed mode there): now raw
    r1.goRaw();
    sm2.goRaw();
    const flows = [flow('router1→sm2', r1, sm2, routerToSm(), kUsers), flow('sm2→router1', sm2, r1, smToRouter('c2s--n1'), kUsers)];
    const m = await measure(ctx, label, flows, { now: () => procCpuSeconds(n1.pid) + procCpuSeconds(n2.pid), exact: async () => (await n1.cpuSeconds()) + (await n2.cpuSeconds()) }, false);
    const [q1, q2] = [await n1.probe(), await n2.probe()];
    return { workers, pinned: pinning.pinned, placement: pinning.describe(), guard: [n1.ready['guard'], n2.ready['guard']], ...m, nodeCounters: { n1: q1['cluster'], n2: q2['cluster'] } };
  } finally {
    for (const e of eps) e.close();
    await Promise.all(nodes.map((n) => n.stop()));
    l1.server.close();
    l2.server.close();
    pinning.release();
  }
}

export async function run(ctx: BenchContext): Promise<SectionResult> {
  const guard = await checkNativeFree();
  const singleNode: Record<string, unknown>[] = [];
  const twoNodes: Record<string, unknown>[] = [];
  for (const w of ctx.workers) singleNode.push(await single(ctx, w));
  for (const w of ctx.workers) twoNodes.push(await pair(ctx, w));
  return { guard, singleNode, twoNodes };
}

if (isMain(import.meta.url)) await standalone('macro (a)(b)', run);
