/**
 * Peer codec (src/wire/codec.ts, msgpackr in pure JS: native acceleration disabled and checked)
 * encode/decode of the messages that carry traffic and state between nodes: STANZA (the hot
 * path, hand-written fast paths both ways), DELTA (session changes: one op, a batch of 64) and
 * SNAPSHOT (1000 sessions and a few names). Figures are per message; for DELTA and SNAPSHOT also
 * per session in the row name's unit.
 *
 *   npx tsx native-free-bench/micro/wire/codec.bench.ts [--quick]
 */
import '../../guard.ts';
import { checkNativeFree } from '../../guard.ts';
import { isMain, standalone, type BenchContext, type SectionResult } from '../../lib/context.ts';
import { runMicro, type MicroTask } from '../../lib/micro.ts';
import { decode, encode } from '../../../src/wire/codec.ts';
import { kFrameHeaderBytes } from '../../../src/wire/frame.ts';
import { MsgType, type NameEntry, type Op, type PeerMessage, type SessionEntry } from '../../../src/wire/messages.ts';

export function sessionEntry(i: number): SessionEntry {
  const n = String(i).padStart(7, '0');
  return {
    jid: `user${n}@example.test/res${i % 10}`,
    home: 'n2',
    c2sNode: i % 3 === 0 ? 'n1' : 'n2',
    c2s: 'c2s',
    sm: `${n}0123456789abcdef0123456789abcdef0`,
    prio: i % 5,
    avail: true,
    since: 1_764_000_000_000 + i,
    c2sId: String(i % 100_000),
  };
}

const NS_COMPONENT = 'http://jabberd.jabberstudio.org/ns/component/1.0';

function stanzaOf(bytes: number): Uint8Array {
  const head = `<route xmlns='${NS_COMPONENT}' to='example.test' from='c2s'><message xmlns='jabber:client' type='chat' to='bob@example.test/res' from='alice@example.test/lab' id='m1'><body>`;
  const tail = '</body></message></route>';
  return Buffer.from(head + 'x'.repeat(Math.max(0, bytes - head.length - tail.length)) + tail);
}

export async function run(ctx: BenchContext): Promise<SectionResult> {
  const guard = await checkNativeFree();
  const names: NameEntry[] = [{ name: 'sm', kind: 'sm' }, { name: 'example.test', kind: 'domain' }, { name: 'muc.example.test', kind: 'component' }];
  const delta = (n: number): PeerMessage => ({
    type: MsgType.DELTA, origin: 'n2', incarnation: 1_764_000_000_000, seq: 42,
    ops: Array.from({ length: n }, (_, i): Op => ({ op: 'sess+', s: sessionEntry(i) })),
  });
  const messages: [string, PeerMessage, number][] = [
    ['STANZA 320 B', { type: MsgType.STANZA, bytes: stanzaOf(320) }, 1],
    ['STANZA 4 KiB', { type: MsgType.STANZA, bytes: stanzaOf(4096) }, 1],
    ['DELTA 1 sess+', delta(1), 1],
    ['DELTA 64 sess+', delta(64), 64],
    ['SNAPSHOT 1000 sessions', { type: MsgType.SNAPSHOT, origin: 'n2', incarnation: 1_764_000_000_000, seq: 7, sessions: Array.from({ length: 1000 }, (_, i) => sessionEntry(i)), names }, 1000],
  ];
  const tasks: MicroTask[] = [];
  const sizes: Record<string, number> = {};
  for (const [name, msg, entries] of messages) {
    const frame = Buffer.from(encode(msg));
    const payload = frame.subarray(kFrameHeaderBytes);
    sizes[name] = frame.length;
    const reps = entries >= 1000 ? 1 : entries >= 64 ? 16 : 256;
    tasks.push({ name: `encode ${name} (${frame.length} B)`, ops: reps, bytes: frame.length, fn: () => { for (let i = 0; i < reps; i++) encode(msg); } });
    tasks.push({ name: `decode ${name} (${frame.length} B)`, ops: reps, bytes: frame.length, fn: () => { for (let i = 0; i < reps; i++) decode(payload); } });
  }
  ctx.progress(`codec: ${tasks.length} tasks`);
  const rows = await runMicro(tasks, ctx.quick);
  return { guard, unit: 'per message', frameBytes: sizes, rows };
}

if (isMain(import.meta.url)) await standalone('micro codec', run);
