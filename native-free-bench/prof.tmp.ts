import { StreamFramer } from '../src/xml/stream-framer.ts';
import { corpus, kAsciiBody } from './micro/xml/stream-framer.bench.ts';
const data = corpus(1024, kAsciiBody);
const HEADER = Buffer.from(`<?xml version='1.0'?><stream:stream xmlns:stream='http://etherx.jabber.org/streams' version='1.0' id='x'>`);
let n = 0;
const t = performance.now();
for (let rep = 0; rep < 300; rep++) {
  const f = new StreamFramer({ onStreamOpen() {}, onStanza() { n++; }, onStreamClose() {}, onError(e) { throw e; } }, { maxStanzaBytes: 2 << 20, maxDepth: 64 });
  f.write(HEADER);
  for (let o = 0; o < data.length; o += 65536) f.write(data.subarray(o, o + 65536));
}
console.log(((performance.now() - t) * 1e3 / n).toFixed(2), 'µs per route');
