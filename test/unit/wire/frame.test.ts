import { test } from 'node:test';
import assert from 'node:assert/strict';
import { FrameDecoder, encodeFrame, kFrameHeaderBytes } from '../../../src/wire/frame.ts';
import { byByte, feeders, prng, splitAt, utf8 } from '../../helpers/split.ts';

interface Run {
  frames: Uint8Array[];
  errors: string[];
  decoder: FrameDecoder;
}

function run(chunks: Iterable<Uint8Array>, max = 1 << 20, onFrame?: (p: Uint8Array, d: FrameDecoder) => void): Run {
  const frames: Uint8Array[] = [];
  const errors: string[] = [];
  const decoder: FrameDecoder = new FrameDecoder(
    max,
    (p) => {
      frames.push(p);
      onFrame?.(p, decoder);
    },
    (m) => errors.push(m),
  );
  for (const c of chunks) decoder.push(c);
  return { frames, errors, decoder };
}

const hex = (b: Uint8Array): string => Buffer.from(b.buffer, b.byteOffset, b.byteLength).toString('hex');

/** Payloads of assorted sizes (empty, tiny, around the 4-byte prefix, > 64 KiB), seeded. */
function payloads(seed: number): Uint8Array[] {
  const rnd = prng(seed);
  const sizes = [0, 1, 2, 3, 4, 5, 7, 255, 256, 1000, 70_000, 0, 13];
  return sizes.map((n) => {
    const b = new Uint8Array(n);
    for (let i = 0; i < n; i++) b[i] = Math.floor(rnd() * 256);
    return b;
  });
}

function concat(frames: Uint8Array[]): Uint8Array {
  return Buffer.concat(frames.map((p) => encodeFrame(p)));
}

test('encodeFrame: u32 big-endian length, then the payload', () => {
  assert.equal(hex(encodeFrame(utf8('abc'))), '00000003616263');
  assert.equal(hex(encodeFrame(new Uint8Array(0))), '00000000');
  const big = encodeFrame(new Uint8Array(0x012345));
  assert.equal(hex(big.subarray(0, 4)), '00012345');
  assert.equal(big.length, kFrameHeaderBytes + 0x012345);
});

test('every feeder yields the same payloads, in order, byte-exact', async (t) => {
  const input = payloads(7);
  const stream = concat(input);
  for (const f of feeders(96)) {
    await t.test(f.name, () => {
      const { frames, errors, decoder } = run(f.split(stream));
      assert.deepEqual(errors, []);
      assert.equal(frames.length, input.length);
      for (let i = 0; i < input.length; i++) assert.equal(hex(frames[i]!), hex(input[i]!), `frame ${i}`);
      assert.equal(decoder.bufferedBytes, 0);
    });
  }
});

test('a chunk ending inside the length prefix, at every cut point', () => {
  const input = [utf8('hello'), utf8(''), utf8('world!')];
  const stream = concat(input);
  for (let a = 1; a < stream.length; a++) {
    for (let b = a + 1; b < stream.length; b++) {
      const { frames, errors } = run(splitAt(stream, [a, b]));
      assert.deepEqual(errors, []);
      assert.deepEqual(
        frames.map((p) => Buffer.from(p).toString()),
        ['hello', '', 'world!'],
        `cuts ${a},${b}`,
      );
    }
  }
});

test('zero copy: a payload inside one chunk is a view of it; a spanning one is assembled', () => {
  // a stream with an ArrayBuffer of its own (Buffer.concat may use the shared pool)
  const stream = Uint8Array.from(concat([utf8('first'), utf8('second')]));
  const isView = (p: Uint8Array): boolean => p.buffer === stream.buffer;
  const whole = run([stream]);
  assert.ok(whole.frames.every(isView));
  assert.equal(whole.frames[0]!.byteOffset, 4);
  // cut inside the second payload: the first stays a view, the second is copied out
  const cut = run(splitAt(stream, [4 + 5 + 4 + 2]));
  assert.ok(isView(cut.frames[0]!));
  assert.ok(!isView(cut.frames[1]!));
  assert.equal(Buffer.from(cut.frames[1]!).toString(), 'second');
  // the assembled payload is not disturbed by later input
  const held = cut.frames[1]!;
  run(byByte(concat([utf8('xxxxxxxxxxxxxxxx')])));
  assert.equal(Buffer.from(held).toString(), 'second');
});

test('oversize: refused from its length prefix alone, once; earlier frames delivered; later input ignored', () => {
  const ok = encodeFrame(utf8('0123456789'));
  const big = encodeFrame(utf8('0123456789A'));
  for (const chunks of [[Buffer.concat([ok, big, ok])], byByte(Buffer.concat([ok, big, ok]))]) {
    const r = run(chunks, 10);
    assert.deepEqual(r.frames.map((p) => Buffer.from(p).toString()), ['0123456789']);
    assert.deepEqual(r.errors, ['frame of 11 bytes exceeds the limit of 10 bytes']);
    assert.ok(r.decoder.stopped);
    r.decoder.push(ok);
    assert.equal(r.frames.length, 1);
    assert.equal(r.errors.length, 1);
  }
  // only the 4 prefix bytes of a huge frame: refused before its body arrives, no allocation
  const r = run([Uint8Array.of(0xff, 0xff, 0xff, 0xff)], 4 * 1024 * 1024);
  assert.deepEqual(r.errors, ['frame of 4294967295 bytes exceeds the limit of 4194304 bytes']);
  assert.equal(r.decoder.bufferedBytes, 0);
  // exactly the limit is fine; 0 is fine with a limit of 0
  assert.equal(run([ok], 10).frames.length, 1);
  assert.equal(run([encodeFrame(new Uint8Array(0))], 0).frames.length, 1);
});

test('stop() from onFrame halts delivery in the middle of a chunk', () => {
  const stream = concat([utf8('a'), utf8('b'), utf8('c')]);
  const r = run([stream], 100, (p, d) => {
    if (Buffer.from(p).toString() === 'b') d.stop();
  });
  assert.deepEqual(r.frames.map((p) => Buffer.from(p).toString()), ['a', 'b']);
  assert.deepEqual(r.errors, []);
  r.decoder.push(stream);
  assert.equal(r.frames.length, 2);
});

test('a throwing handler stops the decoder; push() from a handler is refused', () => {
  const stream = concat([utf8('a'), utf8('b'), utf8('c')]);
  const seen: string[] = [];
  const d = new FrameDecoder(
    100,
    (p) => {
      seen.push(Buffer.from(p).toString());
      if (seen.length === 2) throw new Error('handler failed');
    },
    () => assert.fail('no error expected'),
  );
  assert.throws(() => d.push(stream), /handler failed/);
  assert.ok(d.stopped);
  d.push(stream);
  assert.deepEqual(seen, ['a', 'b']);

  let inner: unknown;
  const d2: FrameDecoder = new FrameDecoder(
    100,
    () => {
      try {
        d2.push(stream);
      } catch (e) {
        inner = e;
      }
    },
    () => {},
  );
  d2.push(encodeFrame(utf8('x')));
  assert.match(String(inner), /called from inside a handler/);
});

test('bufferedBytes counts a partial frame', () => {
  const stream = encodeFrame(utf8('abcdef'));
  const r = run([stream.subarray(0, 2)]);
  assert.equal(r.decoder.bufferedBytes, 2);
  r.decoder.push(stream.subarray(2, 7));
  assert.equal(r.decoder.bufferedBytes, 7);
  r.decoder.push(stream.subarray(7));
  assert.equal(r.decoder.bufferedBytes, 0);
  assert.equal(r.frames.length, 1);
});

test('constructor rejects a bad limit', () => {
  for (const bad of [-1, 1.5, NaN, 2 ** 32]) assert.throws(() => new FrameDecoder(bad, () => {}, () => {}), TypeError);
});
