/**
 * Envelope extraction: what the switchboard and the cluster router read of every route (the
 * route's to/from/type/error, the first child's to/from/target and the routing key, domains
 * parsed as src/core/switchboard.ts and src/cluster/cluster-router.ts parse them), on small,
 * session-control, large (a 200-item roster) and deep (nesting depth 40) routes:
 * - "extract from bytes": a Stanza made from the route's bytes, as the hot path gets it from the
 *   ByteFramer: the two start tags are read, nothing else;
 * - "hot path: frame + extract": the whole per-route cost of the hot path (src/xml/hot-framer.ts:
 *   ByteFramer, Stanza, envelope), 64 KiB chunks;
 * - "saxes: frame + extract": the same with the StreamFramer, which builds the whole element tree
 *   (what every route cost before the hot path, and what stanzas before authentication cost).
 *
 *   npx tsx native-free-bench/micro/xml/envelope.bench.ts [--quick]
 */
import '../../guard.ts';
import { checkNativeFree } from '../../guard.ts';
import { isMain, standalone, type BenchContext, type SectionResult } from '../../lib/context.ts';
import { runMicro, type MicroTask } from '../../lib/micro.ts';
import { StreamFramer, type FramerHandler } from '../../../src/xml/stream-framer.ts';
import { HotFramer } from '../../../src/xml/hot-framer.ts';
import { Stanza } from '../../../src/xml/stanza.ts';
import { attr, element, type XmlElement } from '../../../src/xml/node.ts';
import { streamStartTag } from '../../../src/workers/handover.ts';
import { domainOf } from '../../../src/protocol/jid.ts';
import { routingKey } from '../../../src/cluster/cluster-router.ts';

const NS_COMPONENT = 'http://jabberd.jabberstudio.org/ns/component/1.0';
const NS_SESSION = 'http://jabberd.jabberstudio.org/ns/session/1.0';
const HEADER = Buffer.from(`<?xml version='1.0'?><stream:stream xmlns:stream='http://etherx.jabber.org/streams' version='1.0' id='x'>`);
const ROOT = element('stream:stream', { 'xmlns:stream': 'http://etherx.jabber.org/streams', version: '1.0', id: 'x' });
const CTX = { scope: ROOT.scope, header: streamStartTag(ROOT) };

export const shapes: Record<string, string> = {
  small: `<route xmlns='${NS_COMPONENT}' to='example.test' from='c2s'><message xmlns='jabber:client' type='chat' to='bob@example.test/res' from='alice@example.test/lab' id='m1'><body>Hello, how are you doing today?</body></message></route>`,
  session: `<route xmlns='${NS_COMPONENT}' to='example.test' from='c2s'><sc:session xmlns:sc='${NS_SESSION}' sc:c2s='11' action='start' target='alice@example.test/lab' id='8f7f0ec410f1bcf5ce68b33c9f7c057ef66122b3'></sc:session></route>`,
  large: `<route xmlns='${NS_COMPONENT}' from='sm' to='c2s'><iq xmlns='jabber:client' type='result' to='alice@example.test/lab' id='r1'><query xmlns='jabber:iq:roster'>${Array.from({ length: 200 }, (_, i) => `<item jid='contact${i}@example.org' name='Contact ${i}' subscription='both'><group>Friends</group></item>`).join('')}</query></iq></route>`,
  deep: `<route xmlns='${NS_COMPONENT}' to='example.test' from='c2s'><message xmlns='jabber:client' to='bob@example.test' from='alice@example.test/lab' id='d1'>${'<x xmlns=\'urn:example:nest\'>'.repeat(40)}payload${'</x>'.repeat(40)}</message></route>`,
};

let sink = 0;

/** Everything the routing decision reads of one route. */
export function envelope(st: Stanza): void {
  const el = st.tag;
  const type = attr(el, 'type');
  const error = attr(el, 'error');
  const to = domainOf(attr(el, 'to'));
  const from = domainOf(attr(el, 'from'));
  const inner = st.inner;
  if (inner !== undefined) {
    const ito = attr(inner, 'to');
    const ifrom = attr(inner, 'from');
    const target = attr(inner, 'target');
    const key = routingKey(st);
    sink += (ito?.length ?? 0) + (ifrom?.length ?? 0) + (target?.length ?? 0) + (key?.length ?? 0);
  }
  sink += (type?.length ?? 0) + (error?.length ?? 0) + (to?.length ?? 0) + (from?.length ?? 0);
}

class Collect implements FramerHandler {
  onStreamOpen(): void {}
  onStanza(el: XmlElement, raw: string): void {
    envelope(Stanza.fromElement(el, raw));
  }
  onStreamClose(): void {}
  onError(f: Error): void {
    throw f;
  }
}

const kLimits = { maxStanzaBytes: 2 << 20, maxDepth: 64 };

export async function run(ctx: BenchContext): Promise<SectionResult> {
  const guard = await checkNativeFree();
  const tasks: MicroTask[] = [];
  const sizes: Record<string, number> = {};
  for (const [name, xml] of Object.entries(shapes)) {
    const raw = Buffer.from(xml);
    sizes[name] = raw.length;
    const reps = 1000;
    tasks.push({ name: `extract from bytes, ${name} route (${raw.length} B)`, ops: reps, fn: () => { for (let i = 0; i < reps; i++) envelope(Stanza.fromBytes(raw, CTX)); } });
  }
  for (const [name, xml] of Object.entries(shapes)) {
    const bytes = Buffer.byteLength(xml);
    const n = Math.max(8, Math.floor((ctx.quick ? 16_384 : 262_144) / bytes));
    const data = Buffer.from(xml.repeat(n));
    const parts: Buffer[] = [];
    for (let o = 0; o < data.length; o += 65536) parts.push(data.subarray(o, o + 65536));
    tasks.push({
      name: `hot path: frame + extract, ${name} route (${bytes} B)`,
      ops: n,
      bytes,
      fn: () => {
        const f = new HotFramer(ROOT.name, CTX, kLimits, { onStanza: envelope, onStreamClose: () => {}, onError: (e) => { throw e; } });
        for (const p of parts) f.write(p);
        if (f.fellBack) throw new Error('the hot path fell back to saxes');
      },
    });
    tasks.push({
      name: `saxes: frame + extract, ${name} route (${bytes} B)`,
      ops: n,
      bytes,
      fn: () => {
        const f = new StreamFramer(new Collect(), kLimits);
        f.write(HEADER);
        for (const p of parts) f.write(p);
      },
    });
  }
  ctx.progress(`envelope: ${tasks.length} tasks`);
  const rows = await runMicro(tasks, ctx.quick);
  if (sink === 0.5) console.log(sink);
  return { guard, unit: 'per route', routeBytes: sizes, rows };
}

if (isMain(import.meta.url)) await standalone('micro envelope', run);
