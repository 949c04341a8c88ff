/**
 * ByteFramer (src/xml/byte-framer.ts) against StreamFramer (src/xml/stream-framer.ts) on the same
 * inputs and chunkings: what finding and checking stanza boundaries in bytes saves over saxes.
 *
 * Inputs: the macro-benchmarks' ASCII routes (lib/stanzas.ts: router→sm 356 B, sm→router 377 B;
 * two nesting levels, ~6 attributes, prefixed session attributes), a route with multi-byte UTF-8
 * text (stream-framer.bench.ts' body: Cyrillic, CJK, emoji, split across chunks), and a large
 * route (a 200-item roster result, ~20 KiB). Chunks of 16 B, 256 B, 4 KiB and 64 KiB (and 1 B for
 * the ByteFramer alone: every byte a socket read). One long-lived framer per task (a connection
 * lives long); each call feeds it N more routes and checks they all came out (the ByteFramer must
 * never fall back here); figures are per route. StreamFramer's figure includes building the
 * element tree it reports: that is what it costs the hot path today.
 *
 *   npx tsx native-free-bench/micro/xml/byte-framer.bench.ts [--quick]
 */
import '../../guard.ts';
import { checkNativeFree } from '../../guard.ts';
import { isMain, standalone, type BenchContext, type SectionResult } from '../../lib/context.ts';
import { runMicro, type MicroRow, type MicroTask } from '../../lib/micro.ts';
import { batch, nowNs, routerToSm, smToRouter } from '../../lib/stanzas.ts';
import { ByteFramer, type ByteFramerSink } from '../../../src/xml/byte-framer.ts';
import { StreamFramer, type FramerHandler } from '../../../src/xml/stream-framer.ts';
import type { XmlElement } from '../../../src/xml/node.ts';
import { corpus as utf8Corpus, kMultiByteBody } from './stream-framer.bench.ts';

const HEADER = Buffer.from(`<?xml version='1.0'?><stream:stream xmlns:stream='http://etherx.jabber.org/streams' version='1.0' id='x'>`);
const NS_COMPONENT = 'http://jabberd.jabberstudio.org/ns/component/1.0';
const kLimits = { maxStanzaBytes: 2 << 20, maxDepth: 64 };

function roster(n: number): Buffer {
  const one = `<route xmlns='${NS_COMPONENT}' from='sm' to='c2s'><iq xmlns='jabber:client' type='result' to='alice@example.test/lab' id='r1'><query xmlns='jabber:iq:roster'>${Array.from({ length: 200 }, (_, i) => `<item jid='contact${i}@example.org' name='Contact ${i}' subscription='both'><group>Friends</group></item>`).join('')}</query></iq></route>`;
  return Buffer.from(one.repeat(n));
}

function chunks(b: Buffer, size: number): Buffer[] {
  const out: Buffer[] = [];
  for (let o = 0; o < b.length; o += size) out.push(b.subarray(o, Math.min(b.length, o + size)));
  return out;
}

const sizeName = (size: number): string => (size >= 1024 ? `${size / 1024} KiB` : `${size} B`);

class CountStanzas implements FramerHandler {
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

class CountBytes implements ByteFramerSink {
  stanzas = 0;
  bytes = 0;
  stanza(raw: Buffer): void {
    this.stanzas++;
    this.bytes += raw.length;
  }
  close(): void {
    throw new Error('unexpected close');
  }
  fallback(rest: Buffer): void {
    throw new Error(`unexpected fallback at ${JSON.stringify(rest.subarray(0, 60).toString())}`);
  }
}

/** The stream root as the StreamFramer reports it for HEADER. */
function root(): XmlElement {
  let r: XmlElement | undefined;
  const h: FramerHandler = { onStreamOpen: (el) => (r = el), onStanza: () => {}, onStreamClose: () => {}, onError: (f) => { throw f; } };
  new StreamFramer(h, kLimits).write(HEADER);
  return r!;
}

interface Input {
  name: string;
  /** routes per call, by chunk size (a call stays around a few ms) */
  data: (n: number) => Buffer;
  perCall: (size: number) => number;
  sizes: number[];
  /** chunk sizes the StreamFramer is measured with too */
  saxSizes: number[];
}

export async function run(ctx: BenchContext): Promise<SectionResult> {
  const guard = await checkNativeFree();
  const rootEl = root();
  const stamp = nowNs();
  const inputs: Input[] = [
    { name: 'ascii route router→sm', data: (n) => batch(routerToSm(), n, 0, 1000, stamp), perCall: (s) => (s === 1 ? 64 : 1024), sizes: [1, 16, 256, 4096, 65536], saxSizes: [16, 256, 4096, 65536] },
    { name: 'ascii route sm→router', data: (n) => batch(smToRouter(), n, 0, 1000, stamp), perCall: () => 1024, sizes: [256, 65536], saxSizes: [256, 65536] },
    { name: 'utf-8 route', data: (n) => utf8Corpus(n, kMultiByteBody), perCall: (s) => (s === 1 ? 64 : 1024), sizes: [1, 16, 256, 4096, 65536], saxSizes: [16, 256, 4096, 65536] },
    { name: 'large route (200-item roster)', data: (n) => roster(n), perCall: () => 16, sizes: [256, 4096, 65536], saxSizes: [256, 65536] },
  ];
  const tasks: MicroTask[] = [];
  /** [input, chunk size, index of the ByteFramer task, index of the StreamFramer task or -1] */
  const pairs: [string, number, number, number][] = [];
  for (const input of inputs) {
    for (const size of input.sizes) {
      const count = ctx.quick ? Math.min(input.perCall(size), 8) : input.perCall(size);
      const data = input.data(count);
      const parts = chunks(data, size);
      const per = Math.round(data.length / count);
      const label = `${input.name} ~${per} B, chunks of ${sizeName(size)}`;
      const sink = new CountBytes();
      const bf = new ByteFramer({ name: rootEl.name, scope: rootEl.scope }, kLimits);
      const bi = tasks.length;
      tasks.push({
        name: `ByteFramer: ${label}`,
        ops: count,
        bytes: per,
        fn: () => {
          const before = sink.stanzas;
          for (const p of parts) bf.write(p, sink);
          if (sink.stanzas - before !== count) throw new Error(`framed ${sink.stanzas - before} of ${count}`);
        },
      });
      let si = -1;
      if (input.saxSizes.includes(size)) {
        const h = new CountStanzas();
        const f = new StreamFramer(h, kLimits);
        f.write(HEADER);
        si = tasks.length;
        tasks.push({
          name: `StreamFramer: ${label}`,
          ops: count,
          bytes: per,
          fn: () => {
            const before = h.stanzas;
            for (const p of parts) f.write(p);
            if (h.stanzas - before !== count) throw new Error(`framed ${h.stanzas - before} of ${count}`);
          },
        });
      }
      pairs.push([input.name, size, bi, si]);
    }
  }
  ctx.progress(`byteFramer: ${tasks.length} tasks`);
  const rows: MicroRow[] = await runMicro(tasks, ctx.quick);
  // ByteFramer against StreamFramer, same input and chunking
  const speedup = pairs
    .filter(([, , , si]) => si >= 0)
    .map(([input, size, bi, si]) => ({
      input,
      chunk: sizeName(size),
      byteFramerNs: rows[bi]!.nsPerOp,
      streamFramerNs: rows[si]!.nsPerOp,
      ratio: Math.round((rows[si]!.nsPerOp / rows[bi]!.nsPerOp) * 10) / 10,
    }));
  return { guard, unit: 'per route', rows, speedup };
}

if (isMain(import.meta.url)) await standalone('micro byteFramer', run);
