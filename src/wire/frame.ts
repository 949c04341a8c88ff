/**
 * Peer-link framing: every message is a frame `[u32 big-endian payload length][payload]`.
 *
 * Pure and push-driven (style §9.3): no socket, timer or logger. `FrameDecoder.push()` takes
 * chunks as they come off the socket, cut anywhere, and calls `onFrame` once per complete payload.
 *
 * Zero copy where possible: a payload lying wholly inside one chunk is passed as a `subarray`
 * view of that chunk; only a payload that spans chunks is assembled into a buffer of its own
 * (allocated once, at its final size, when its header has arrived). Views alias the caller's
 * chunk, so the caller must not reuse a chunk's memory while a payload view of it is alive (Node's
 * `net.Socket` hands out a fresh Buffer per 'data' event unless `onread` is used).
 *
 * A frame larger than `maxFrameBytes` is refused as soon as its header is read, before any of its
 * bytes are buffered: `onError` is called once and the decoder stops (everything pushed later is
 * ignored): the link must be closed, since the stream can no longer be resynchronised.
 */

/** Bytes of the length prefix. */
export const kFrameHeaderBytes = 4;

/** Largest payload the u32 length prefix can describe. */
export const kMaxFramePayload = 0xffff_ffff;

/** `[u32 BE length][payload]` in one new Buffer (one copy of `payload`). */
export function encodeFrame(payload: Uint8Array): Buffer {
  const n = payload.length;
  if (n > kMaxFramePayload) throw new RangeError(`frame payload of ${n} bytes exceeds the u32 length prefix`);
  const out = Buffer.allocUnsafe(kFrameHeaderBytes + n);
  out.writeUInt32BE(n, 0);
  out.set(payload, kFrameHeaderBytes);
  return out;
}

function readU32(b: Uint8Array, o: number): number {
  // `* 0x1000000` rather than `<< 24`: a shift would turn lengths >= 2^31 negative
  return b[o]! * 0x1000000 + ((b[o + 1]! << 16) | (b[o + 2]! << 8) | b[o + 3]!);
}

export class FrameDecoder {
  readonly #max: number;
  readonly #onFrame: (payload: Uint8Array) => void;
  readonly #onError: (msg: string) => void;
  /** a partial length prefix (only used when a chunk ends inside one) */
  readonly #head = new Uint8Array(kFrameHeaderBytes);
  #headFill = 0;
  /** the payload being assembled across chunks, or null */
  #body: Uint8Array | null = null;
  #bodyFill = 0;
  #stopped = false;
  #pushing = false;

  /**
   * @param maxFrameBytes largest accepted payload, in bytes (the length prefix excluded)
   * @param onFrame called with each complete payload, in order
   * @param onError called once with a human-readable reason when the input is refused
   */
  constructor(maxFrameBytes: number, onFrame: (payload: Uint8Array) => void, onError: (msg: string) => void) {
    if (!Number.isInteger(maxFrameBytes) || maxFrameBytes < 0 || maxFrameBytes > kMaxFramePayload) {
      throw new TypeError(`maxFrameBytes must be an integer 0..${kMaxFramePayload}, got ${String(maxFrameBytes)}`);
    }
    this.#max = maxFrameBytes;
    this.#onFrame = onFrame;
    this.#onError = onError;
  }

  /** True after an error or `stop()`: further input is ignored. */
  get stopped(): boolean {
    return this.#stopped;
  }

  /** Bytes held for an incomplete frame (prefix included). */
  get bufferedBytes(): number {
    return this.#body !== null ? kFrameHeaderBytes + this.#bodyFill : this.#headFill;
  }

  /** Stops delivery, also in the middle of a `push()` (e.g. from `onFrame` when the link closes). */
  stop(): void {
    this.#stopped = true;
    this.#body = null;
  }

  /**
   * Feeds the next chunk. Handlers run synchronously inside; they may call `stop()` but not
   * `push()`. A handler that throws stops the decoder (the rest of the chunk is lost, so the
   * stream cannot be followed any more) and the exception propagates to the caller.
   */
  push(chunk: Uint8Array): void {
    if (this.#pushing) throw new Error('FrameDecoder.push() called from inside a handler');
    this.#pushing = true;
    let ok = false;
    try {
      this.#push(chunk);
      ok = true;
    } finally {
      this.#pushing = false;
      if (!ok) this.stop();
    }
  }

  #push(chunk: Uint8Array): void {
    const n = chunk.length;
    let off = 0;
    while (off < n && !this.#stopped) {
      // 1. finish a payload that spans chunks
      const body = this.#body;
      if (body !== null) {
        const take = Math.min(body.length - this.#bodyFill, n - off);
        body.set(chunk.subarray(off, off + take), this.#bodyFill);
        this.#bodyFill += take;
        off += take;
        if (this.#bodyFill === body.length) {
          this.#body = null;
          this.#bodyFill = 0;
          this.#onFrame(body);
        }
        continue;
      }
      // 2. read a length prefix: straight from the chunk when it holds all of it
      let len: number;
      if (this.#headFill === 0 && n - off >= kFrameHeaderBytes) {
        len = readU32(chunk, off);
        off += kFrameHeaderBytes;
      } else {
        const take = Math.min(kFrameHeaderBytes - this.#headFill, n - off);
        this.#head.set(chunk.subarray(off, off + take), this.#headFill);
        this.#headFill += take;
        off += take;
        if (this.#headFill < kFrameHeaderBytes) return;
        this.#headFill = 0;
        len = readU32(this.#head, 0);
      }
      if (len > this.#max) {
        this.#stopped = true;
        this.#onError(`frame of ${len} bytes exceeds the limit of ${this.#max} bytes`);
        return;
      }
      // 3. the payload: a view when the chunk holds all of it, else start assembling
      if (n - off >= len) {
        const payload = chunk.subarray(off, off + len);
        off += len;
        this.#onFrame(payload);
      } else {
        // allocUnsafe: every byte is overwritten before the payload is delivered
        const b = Buffer.allocUnsafe(len);
        b.set(chunk.subarray(off), 0);
        this.#bodyFill = n - off;
        off = n;
        this.#body = b;
      }
    }
  }
}
