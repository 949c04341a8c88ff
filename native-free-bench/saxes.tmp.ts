import { SaxesParser } from 'saxes';
import { corpus, kAsciiBody } from './micro/xml/stream-framer.bench.ts';
const str = corpus(1024, kAsciiBody).toString();
const chunks: string[] = []; for (let o = 0; o < str.length; o += 65536) chunks.push(str.slice(o, o + 65536));
function run(name: string, opts: any, handlers: (p: any) => void, split: boolean) {
  const times: number[] = [];
  for (let rep = 0; rep < 20; rep++) {
    const t = performance.now();
    const p = new SaxesParser(opts);
    handlers(p);
    p.write('<stream:stream xmlns:stream="http://etherx.jabber.org/streams">');
    if (split) for (const c of chunks) p.write(c); else p.write(str);
    times.push((performance.now() - t) * 1e3 / 1024);
  }
  times.sort((a, b) => a - b);
  console.log(name.padEnd(60), times[10]!.toFixed(2), 'µs/route');
}
const base = { xmlns: true, forceXMLVersion: true, defaultXMLVersion: '1.0' };
run('xmlns, closetag only, one string', base, (p) => p.on('closetag', () => {}), false);
run('xmlns, closetag only, 64K chunks', base, (p) => p.on('closetag', () => {}), true);
run('xmlns, opentag+closetag+text', base, (p) => { p.on('opentag', () => {}); p.on('closetag', () => {}); p.on('text', () => {}); }, true);
run('xmlns, + error/doctype/comment/pi/cdata/opentagstart handlers', base, (p) => { for (const e of ['opentag','closetag','text','error','doctype','comment','processinginstruction','xmldecl','cdata','opentagstart']) p.on(e, () => {}); }, true);
run('no xmlns, all handlers', { ...base, xmlns: false }, (p) => { for (const e of ['opentag','closetag','text','error','doctype','comment','processinginstruction','xmldecl','cdata','opentagstart']) p.on(e, () => {}); }, true);
