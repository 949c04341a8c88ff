/**
 * StreamFramer (src/xml/stream-framer.ts) throughput: a stream of routes fed in chunks of 1 B
 * (worst case: every byte a separate socket read), 16 B, 256 B, 4 KiB and 64 KiB, with ASCII
 * text and with multi-byte UTF-8 text (Cyrillic, CJK, emoji: characters split across chunks).
 * One long-lived framer per task (a connection lives long); each call feeds it N more routes;
 * figures are per route.
 *
 * Reference rows: saxes alone (the parser the framer is built on, `xmlns: true`, one long-lived
 * parser, 64 KiB strings) with 6 event handlers and with the framer's 10. Registering a 7th
 * handler through saxes' `on()` turns the parser object into a V8 dictionary-mode object (checked
 * with %HasFastProperties), which makes every property access in saxes' inner loop a hash lookup:
 * the gap between the two rows is that cost (docs/performance.md).
 *
 *   npx tsx native-free-bench/micro/xml/stream-framer.bench.ts [--quick]
 */
import '../../guard.ts';
import { checkNativeFree } from '../../guard.ts';
import { isMain, standalone, type BenchContext, type SectionResult } from '../../lib/context.ts';
import { runMicro, type MicroTask } from '../../lib/micro.ts';
import { StreamFramer, type FramerHandler } from '../../../src/xml/stream-framer.ts';
import { SaxesParser } from 'saxes';

const HEADER = Buffer.from(`<?xml version='1.0'?><stream:stream xmlns:stream='http://etherx.jabber.org/streams' version='1.0' id='x'>`);
const NS_COMPONENT = 'http://jabberd.jabberstudio.org/ns/component/1.0';

function route(i: number, body: string): string {
  return `<route xmlns='${NS_COMPONENT}' to='example.test' from='c2s'><message xmlns='jabber:client' type='chat' to='user${i % 1000}@example.test/res' from='alice@example.test/lab' id='m${i}'><body>${body}</body></message></route>`;
}

export const kAsciiBody = 'Hello, how are you doing today? Fine, thanks; and you? See you at 5.';
// same number of characters as the ASCII body; ~2.3× the bytes
export const kMultiByteBody = 'Привет, как дела сегодня? 今日は元気ですか、また明日ね 🙂🙂 Ça va, très bien! Добре дякую';

export function corpus(n: number, body: string): Buffer {
  let s = '';
  for (let i = 0; i < n; i++) s += route(i, body);
  return Buffer.from(s, 'utf8');
}

function chunks(b: Buffer, size: number): Buffer[] {
  const out: Buffer[] = [];
  for (let o = 0; o < b.length; o += size) out.push(b.subarray(o, Math.min(b.length, o + size)));
  return out;
}

class Count implements FramerHandler {
  stanzas = 0;
  onStreamOpen(): void {}
  onStanza(): void {
    this.stanzas++;
  }
  onStreamClose(): void {}
  onError(f: Error): void {
    throw f;
  }
}

const kLimits = { maxStanzaBytes: 2 << 20, maxDepth: 64 };

export async function run(ctx: BenchContext): Promise<SectionResult> {
  const guard = await checkNativeFree();
  // stanzas per call, so that a call stays around a few ms whatever the chunk size
  const sizes: [number, number][] = [[1, 16], [16, 64], [256, 256], [4096, 512], [65536, 1024]];
  // saxes alone first, in a process where no framer has run yet: once saxes' code has run on
  // dictionary-mode parsers, V8's inline caches in it stay slow for every parser
  const refRows = [];
  const kEvents = ['opentag', 'closetag', 'text', 'error', 'doctype', 'comment', 'processinginstruction', 'xmldecl', 'cdata', 'opentagstart'] as const;
  for (const handlers of [6, kEvents.length]) {
    // one at a time: the 10-handler parser must not run before the 6-handler one is measured
    const n = ctx.quick ? 16 : 1024;
    const data = corpus(n, kAsciiBody).toString('utf8');
    const parts: string[] = [];
    for (let o = 0; o < data.length; o += 65536) parts.push(data.slice(o, o + 65536));
    const p = new SaxesParser({ xmlns: true, forceXMLVersion: true, defaultXMLVersion: '1.0' });
    for (const e of kEvents.slice(0, handlers)) (p.on as (e: string, h: () => void) => void)(e, () => {});
    p.write(HEADER.toString());
    ctx.progress(`framer: reference, saxes alone with ${handlers} handlers`);
    refRows.push(...(await runMicro([{
      name: `reference: saxes alone (xmlns), ${handlers} handlers, 64 KiB`,
      ops: n,
      bytes: Buffer.byteLength(data) / n,
      fn: () => {
        for (const c of parts) p.write(c);
      },
    }], ctx.quick)));
  }
  const tasks: MicroTask[] = [];
  for (const [text, body] of [['ascii', kAsciiBody], ['multi-byte', kMultiByteBody]] as const) {
    for (const [size, n] of sizes) {
      const data = corpus(ctx.quick ? Math.min(n, 16) : n, body);
      const parts = chunks(data, size);
      const count = ctx.quick ? Math.min(n, 16) : n;
      const h = new Count();
      const f = new StreamFramer(h, kLimits);
      f.write(HEADER);
      tasks.push({
        name: `${text} route ~${Math.round(data.length / count)} B, chunks of ${size >= 1024 ? `${size / 1024} KiB` : `${size} B`}`,
        ops: count,
        bytes: data.length / count,
        fn: () => {
          const before = h.stanzas;
          for (const p of parts) f.write(p);
          if (h.stanzas - before !== count) throw new Error(`framed ${h.stanzas - before} of ${count}`);
        },
      });
    }
  }
  ctx.progress(`framer: ${tasks.length} framer tasks`);
  const rows = [...(await runMicro(tasks, ctx.quick)), ...refRows];
  return { guard, unit: 'per route', rows };
}

if (isMain(import.meta.url)) await standalone('micro framer', run);
