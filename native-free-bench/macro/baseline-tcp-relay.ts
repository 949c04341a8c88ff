/**
 * Macro (c), first baseline: a byte relay, the limit for anything that forwards over TCP. A child
 * process accepts the "sm" connection and pipes it both ways to the "router" (`a.pipe(b)`), with
 * no parsing at all; the same routes as (a) flow both ways. Also the direct path (the two
 * generator ends connected to each other, no process in between): the latency floor that the
 * "added latency" of the node is computed against, with one route in flight and at paced rates
 * (the generator's own p99 when it sends in ~1 ms bursts).
 *
 * The generator, not the relay, may be the bottleneck here (it writes and counts ~1 GB/s); the
 * relay's own CPU share is recorded, and `capacityPerSec` = routes/s ÷ relay cores is its
 * CPU-bound limit, the figure the "≥ 10 % of the byte relay" target is computed against.
 */
import '../guard.ts';
import { checkNativeFree } from '../guard.ts';
import { isMain, standalone, type BenchContext, type SectionResult } from '../lib/context.ts';
import { Child } from '../lib/children.ts';
import { Endpoint, listen } from '../lib/endpoints.ts';
import { flow, paced, pingPong } from '../lib/loadgen.ts';
import { Pinning, measure, params } from '../lib/scenario.ts';
import { procCpuSeconds } from '../lib/procfs.ts';
import { routerToSm, smToRouter } from '../lib/stanzas.ts';

async function direct(ctx: BenchContext): Promise<Record<string, unknown>> {
  const pinning = new Pinning(ctx, 0);
  const { server, port } = await listen();
  const accepted = Endpoint.acceptRaw(server, 'router side');
  const sm = await Endpoint.connectRaw(port, 'sm side');
  const r = await accepted;
  try {
    const p = params(ctx.quick);
    ctx.progress(`direct path: latency, one route in flight (${p.pings} routes)`);
    const flows = [flow('router→sm', r, sm, routerToSm()), flow('sm→router', sm, r, smToRouter())];
    const lat = await pingPong(flows, p.pings, p.pingWarmup);
    ctx.progress(`direct path: p50 ${lat.p50Us} µs, p99 ${lat.p99Us} µs`);
    // the generator's own floor under paced load (same ~1 ms bursts as the half-peak runs)
    const paced_: Record<string, unknown>[] = [];
    for (const rate of ctx.quick ? [10_000] : [5_000, 10_000, 20_000, 50_000, 100_000, 200_000]) {
      const x = await paced(flows, rate, ctx.quick ? 50 : 200, ctx.quick ? 200 : 1000, () => 0);
      paced_.push({ rate, achievedPerSec: x.achievedPerSec, p50Us: x.p50Us, p99Us: x.p99Us, genCores: x.genCores, foreignCores: x.foreignCores });
    }
    ctx.progress(`direct path, paced: ${paced_.map((x) => `${String(x['rate'])}/s p99 ${String(x['p99Us'])} µs`).join(', ')}`);
    return { pinned: pinning.pinned, latency1: lat, paced: paced_ };
  } finally {
    r.close();
    sm.close();
    server.close();
    pinning.release();
  }
}

async function relay(ctx: BenchContext): Promise<Record<string, unknown>> {
  const pinning = new Pinning(ctx, 1);
  const { server, port } = await listen();
  const accepted = Endpoint.acceptRaw(server, 'router side');
  let child: Child | null = null;
  const eps: Endpoint[] = [];
  try {
    ctx.progress(`byte relay: starting (${pinning.describe()})`);
    child = await Child.spawn({ kind: 'relay', upstreamPort: port }, pinning.cpuFor(0), 'relay');
    const sm = await Endpoint.connectRaw(Number(child.ready['port']), 'sm side');
    eps.push(sm);
    const r = await accepted;
    eps.push(r);
    const c = child;
    const m = await measure(ctx, 'byte relay', [flow('router→sm', r, sm, routerToSm()), flow('sm→router', sm, r, smToRouter())], { now: () => procCpuSeconds(c.pid), exact: () => c.cpuSeconds() }, false, pinning, true);
    const capacityPerSec = m.peak.targetCores > 0 ? m.peak.stanzasPerSec / Math.min(1, m.peak.targetCores) : m.peak.stanzasPerSec;
    return { pinned: pinning.pinned, placement: pinning.describe(), guard: child.ready['guard'], ...m, capacityPerSec };
  } finally {
    for (const e of eps) e.close();
    await child?.stop();
    server.close();
    pinning.release();
  }
}

export async function run(ctx: BenchContext): Promise<SectionResult> {
  const guard = await checkNativeFree();
  return { guard, direct: await direct(ctx), relay: await relay(ctx) };
}

if (isMain(import.meta.url)) await standalone('macro (c) byte relay', run);
