/**
 * Macro (c), second baseline: the real jabberd2 router (Debian's jabberd2-router, started by
 * src/local/jabberd2.ts) forwarding the same routes as (a) between two components: one bound to
 * `c2s` (plays the router side of (a): c2s/s2s traffic to the sm), one bound to `sm` and
 * `example.test` multi='to' (the sm). Its CPU is read from /proc/<pid>/stat (utime + stime, all
 * threads, 10 ms resolution). It is what a node must beat: the node does the router's job for
 * the sm (plus cluster routing), so "node ≥ 2× router routes/s, ≤ its CPU per route".
 */
import '../guard.ts';
import { checkNativeFree } from '../guard.ts';
import { isMain, standalone, type BenchContext, type SectionResult } from '../lib/context.ts';
import { Endpoint } from '../lib/endpoints.ts';
import { flow } from '../lib/loadgen.ts';
import { procCpuSeconds, pin } from '../lib/procfs.ts';
import { Pinning, measure } from '../lib/scenario.ts';
import { routerToSm, smToRouter } from '../lib/stanzas.ts';
import { Jabberd2 } from '../../src/local/jabberd2.ts';
import { execFileSync } from 'node:child_process';

function routerVersion(): string {
  try {
    return execFileSync('dpkg-query', ['-W', '-f', '${Version}', 'jabberd2'], { encoding: 'utf8' }).trim();
  } catch {
    return 'unknown';
  }
}

export async function run(ctx: BenchContext): Promise<SectionResult> {
  const guard = await checkNativeFree();
  const pinning = new Pinning(ctx, 1);
  let j: Jabberd2 | null = null;
  const eps: Endpoint[] = [];
  try {
    j = await Jabberd2.create({ domain: 'example.test' });
    await j.start('router');
    const pid = j.pid('router')!;
    const cpu = pinning.cpuFor(0);
    const pinnedRouter = cpu !== null && pin(pid, [cpu]);
    ctx.progress(`jabberd2-router ${routerVersion()}: pid ${pid} (${pinnedRouter ? pinning.describe() : 'not pinned'})`);
    const c2s = await Endpoint.connectComponent(j.routerPort, j.routerUser, j.routerPass, [{ name: 'c2s' }], 'c2s side');
    eps.push(c2s);
    const sm = await Endpoint.connectComponent(j.routerPort, j.routerUser, j.routerPass, [{ name: 'sm' }, { name: 'example.test', multi: 'to' }], 'sm side');
    eps.push(sm);
    c2s.goRaw();
    sm.goRaw();
    const flows = [flow('router→sm', c2s, sm, routerToSm()), flow('sm→router', sm, c2s, smToRouter('c2s'))];
    const m = await measure(ctx, 'jabberd2-router', flows, { now: () => procCpuSeconds(pid), exact: async () => procCpuSeconds(pid) }, true, pinnedRouter ? pinning : null);
    if (!j.isRunning('router')) throw new Error('jabberd2-router died during the benchmark');
    return { guard, version: routerVersion(), pinned: pinnedRouter, placement: pinnedRouter ? pinning.describe() : 'not pinned', cpuSource: '/proc/<pid>/stat utime+stime', ...m };
  } finally {
    for (const e of eps) e.close();
    await j?.cleanup();
    pinning.release();
  }
}

if (isMain(import.meta.url)) await standalone('macro (c) jabberd2-router', run);
