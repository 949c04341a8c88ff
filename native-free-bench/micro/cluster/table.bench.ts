/**
 * ClusterTable (src/cluster/table.ts): the routing decision's lookup and the cost of learning
 * sessions, on a table holding 100k sessions of another node (one per user):
 * - homeOf(bare): string hash + SharedArrayBuffer probe + node name; hits in random order over all
 *   users, hits in a hot set of 1k, misses;
 * - routingKey(route) + homeOf: the cluster router's whole lookup for a parsed route;
 * - applyDelta: a DELTA of 64 sess+ ops then one of 64 sess- ops (insert + delete), per op;
 * - sessionsOf: a user's sessions, built from the packed store (one SessionEntry per call);
 * - applySnapshot: another node's 10k sessions replacing its previous 10k, per session.
 * The SharedTable itself (hash, probe, atomics, vs a Map) has its own bench:
 * micro/routing/shared-table.bench.ts.
 *
 *   npx tsx native-free-bench/micro/cluster/table.bench.ts [--quick]
 */
import '../../guard.ts';
import { checkNativeFree } from '../../guard.ts';
import { isMain, standalone, type BenchContext, type SectionResult } from '../../lib/context.ts';
import { runMicro, type MicroTask } from '../../lib/micro.ts';
import { quietEvents } from '../../lib/table-events.ts';
import { ClusterTable, bareJid } from '../../../src/cluster/table.ts';
import { routingKey } from '../../../src/cluster/cluster-router.ts';
import { capacityPow2For } from '../../../src/routing/shared-table.ts';
import { element } from '../../../src/xml/node.ts';
import { Stanza } from '../../../src/xml/stanza.ts';
import type { Op } from '../../../src/wire/messages.ts';
import { sessionEntry } from '../wire/codec.bench.ts';

const events = quietEvents(() => {});

export async function run(ctx: BenchContext): Promise<SectionResult> {
  const guard = await checkNativeFree();
  const N = ctx.quick ? 10_000 : 100_000;
  const t = new ClusterTable('n1', 1, events, capacityPow2For(N + 1024));
  const sessions = Array.from({ length: N }, (_, i) => sessionEntry(i));
  t.applySnapshot('n2', 2, 0, sessions, [{ name: 'sm', kind: 'sm' }]);
  const bare = sessions.map((s) => Buffer.from(bareJid(s.jid)).toString());
  const miss = sessions.map((_, i) => Buffer.from(`nobody${i}@example.test`).toString());
  const order = Uint32Array.from({ length: N }, (_, i) => i);
  for (let i = N - 1; i > 0; i--) {
    const k = (Math.random() * (i + 1)) | 0;
    [order[i], order[k]] = [order[k]!, order[i]!];
  }
  const routes = Array.from({ length: 1024 }, (_, i) => element('route', { xmlns: 'http://jabberd.jabberstudio.org/ns/component/1.0', to: 'example.test', from: 'c2s' }, [
    element('message', { xmlns: 'jabber:client', to: `${bare[order[i]!]!}/res`, from: 'alice@example.test/lab', type: 'chat' }),
  ])).map((el) => Stanza.fromElement(el, ''));
  const B = 1024;
  let cur = 0;
  let sink = 0;
  const next = (len: number): number => {
    const c = cur;
    cur = c + 2 * B > len ? 0 : c + B;
    return c;
  };
  const extra = Array.from({ length: 64 }, (_, i) => sessionEntry(N + i));
  const other = Array.from({ length: 10_000 }, (_, i) => ({ ...sessionEntry(N + 100 + i), home: 'n3' }));
  let seq = 0;
  const tasks: MicroTask[] = [
    { name: `homeOf hit, random over ${N.toLocaleString('en')} users`, ops: B, fn: () => { const c = next(N); for (let k = 0; k < B; k++) if (t.homeOf(bare[order[c + k]!]!) !== undefined) sink++; } },
    { name: 'homeOf hit, hot 1k users', ops: B, fn: () => { for (let k = 0; k < B; k++) if (t.homeOf(bare[order[k]!]!) !== undefined) sink++; } },
    { name: 'homeOf miss', ops: B, fn: () => { const c = next(N); for (let k = 0; k < B; k++) if (t.homeOf(miss[c + k]!) === undefined) sink++; } },
    { name: 'routingKey(route) + homeOf', ops: B, fn: () => { for (let k = 0; k < B; k++) { const key = routingKey(routes[k]!); if (key !== null && t.homeOf(key) !== undefined) sink++; } } },
    {
      name: 'applyDelta 64 sess+ then 64 sess-, per op',
      ops: 128,
      fn: () => {
        const add: Op[] = extra.map((s) => ({ op: 'sess+', s }));
        const del: Op[] = extra.map((s) => ({ op: 'sess-', jid: s.jid }));
        if (!t.applyDelta('n2', 2, ++seq, add) || !t.applyDelta('n2', 2, ++seq, del)) throw new Error('delta refused');
      },
    },
    { name: `sessionsOf, random over ${N.toLocaleString('en')} users`, ops: B, fn: () => { const c = next(N); for (let k = 0; k < B; k++) sink += t.sessionsOf(bare[order[c + k]!]!).length; } },
    { name: 'applySnapshot 10k sessions replacing 10k, per session', ops: other.length, fn: () => t.applySnapshot('n3', 3, 0, other, []) },
  ];
  ctx.progress(`cluster table: ${tasks.length} tasks over ${N.toLocaleString('en')} sessions`);
  const rows = await runMicro(tasks, ctx.quick);
  if (sink === 0.5) console.log(sink);
  return { guard, sessions: N, unit: 'per lookup / per op', rows };
}

if (isMain(import.meta.url)) await standalone('micro cluster table', run);
