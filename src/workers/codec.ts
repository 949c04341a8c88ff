/**
 * (main + worker, pure) The events of one task in a form that crosses threads cheaply: ONE
 * byte array holding the stanzas the ByteFramer found, back to back (the hot path: main slices
 * them and reads only what routing needs), ONE string holding every string of the batch back to
 * back, and ONE Int32Array of codes, counts and lengths. For stanzas framed by the StreamFramer
 * (after a fallback, or for a link attached without its root) the element tree crosses too: Structured clone copies these two flat objects at memcpy speed, where a tree
 * of XmlElement objects costs several µs per stanza to rebuild on the receiving side (measured:
 * about 6 µs per 350-byte route against about 1 µs for this, decode included; see
 * docs/internals/worker-channel.md). Main rebuilds the elements with the framer's own rules
 * (deriveScope, prefix → URI, `__proto__` as an own attribute), so they are deep-equal to what
 * inline framing gives, scope objects shared with the parent included; strings come back as
 * slices of the batch string.
 *
 * nums layout, per event: a kind code, then
 * - kBytes: the stanza's length in `bytes` (its bytes are the next piece of `bytes`)
 * - kStanza: str(raw), element
 * - kOpen: element (the root; its scope becomes the parent scope of the stanzas after it)
 * - kClose: –
 * - kError: str(condition), str(message)
 * - kFault: str(message)
 * - kLost: –
 * element = str(name), attribute count, (str(name), str(value))×count, child count, then per
 * child: kText str(text) | kChild element.
 * str(s) = the length of s; s itself is the next piece of `text`.
 */
import { deriveScope, type XmlElement, type XmlNode } from '../xml/node.ts';
import type { StreamErrorCondition } from '../xml/stream-framer.ts';
import type { FrameEvent } from './messages.ts';

export const kStanza = 1;
export const kOpen = 2;
export const kClose = 3;
export const kError = 4;
export const kFault = 5;
export const kLost = 6;
export const kBytes = 7;
const kText = 0;
const kChild = 1;

export interface EncodedEvents {
  text: string;
  nums: Int32Array;
  bytes: Uint8Array;
}

const NO_BYTES = new Uint8Array(0);

type Scope = Readonly<Record<string, string>>;

/** (worker) Accumulates events; take() returns them encoded and starts afresh. Reusable. */
export class EventWriter {
  private parts: string[] = [];
  private nums = new Int32Array(4096);
  private n = 0;
  private out = Buffer.allocUnsafe(64 << 10);
  private nb = 0;

  private num(x: number): void {
    if (this.n === this.nums.length) {
      const bigger = new Int32Array(this.nums.length * 2);
      bigger.set(this.nums);
      this.nums = bigger;
    }
    this.nums[this.n++] = x;
  }

  private str(s: string): void {
    this.parts.push(s);
    this.num(s.length);
  }

  private element(el: XmlElement): void {
    this.str(el.name);
    const at = this.n;
    this.num(0);
    let count = 0;
    const attrs = el.attrs;
    for (const k in attrs) {
      this.str(k);
      this.str(attrs[k]!);
      count++;
    }
    this.nums[at] = count;
    const kids = el.children;
    this.num(kids.length);
    for (let i = 0; i < kids.length; i++) {
      const c = kids[i]!;
      if (typeof c === 'string') {
        this.num(kText);
        this.str(c);
      } else {
        this.num(kChild);
        this.element(c);
      }
    }
  }

  /** a stanza as its bytes (copied: the caller may reuse its buffer) */
  bytes(raw: Uint8Array): void {
    this.num(kBytes);
    this.num(raw.length);
    if (this.nb + raw.length > this.out.length) {
      const bigger = Buffer.allocUnsafe(Math.max(this.out.length * 2, this.nb + raw.length));
      this.out.copy(bigger, 0, 0, this.nb);
      this.out = bigger;
    }
    this.out.set(raw, this.nb);
    this.nb += raw.length;
  }

  stanza(el: XmlElement, raw: string): void {
    this.num(kStanza);
    this.str(raw);
    this.element(el);
  }

  open(root: XmlElement): void {
    this.num(kOpen);
    this.element(root);
  }

  close(): void {
    this.num(kClose);
  }

  error(condition: string, message: string): void {
    this.num(kError);
    this.str(condition);
    this.str(message);
  }

  fault(message: string): void {
    this.num(kFault);
    this.str(message);
  }

  lost(): void {
    this.num(kLost);
  }

  get empty(): boolean {
    return this.n === 0;
  }

  take(): EncodedEvents {
    const out: EncodedEvents = {
      text: this.parts.length === 0 ? '' : this.parts.join(''),
      nums: this.nums.slice(0, this.n),
      bytes: this.nb === 0 ? NO_BYTES : Uint8Array.prototype.slice.call(this.out, 0, this.nb),
    };
    this.parts = [];
    this.n = 0;
    this.nb = 0;
    return out;
  }

  /** Drops what was written since the last take(). */
  discard(): void {
    this.parts = [];
    this.n = 0;
    this.nb = 0;
  }
}

/** (main) Reads one EncodedEvents. */
class Reader {
  i = 0;
  private p = 0;
  private b = 0;
  constructor(private readonly text: string, readonly nums: Int32Array, private readonly bytes: Uint8Array) {}

  /** the next stanza's bytes: a view of the batch's byte array, no copy */
  slice(): Buffer {
    const len = this.nums[this.i++]!;
    const out = Buffer.from(this.bytes.buffer, this.bytes.byteOffset + this.b, len);
    this.b += len;
    return out;
  }

  num(): number {
    return this.nums[this.i++]!;
  }

  str(): string {
    const len = this.nums[this.i++]!;
    const s = this.text.slice(this.p, this.p + len);
    this.p += len;
    return s;
  }

  element(parentScope: Scope | undefined): XmlElement {
    const name = this.str();
    const nAttrs = this.num();
    const attrs: Record<string, string> = {};
    for (let k = 0; k < nAttrs; k++) {
      const key = this.str();
      const v = this.str();
      // as the framer does: `__proto__` is an ordinary own attribute
      if (key === '__proto__') Object.defineProperty(attrs, key, { value: v, enumerable: true, writable: true, configurable: true });
      else attrs[key] = v;
    }
    const scope = deriveScope(attrs, parentScope);
    const colon = name.indexOf(':');
    const prefix = colon < 0 ? '' : name.slice(0, colon);
    const nKids = this.num();
    const children: XmlNode[] = new Array(nKids);
    for (let k = 0; k < nKids; k++) children[k] = this.num() === kText ? this.str() : this.element(scope);
    return {
      name,
      local: colon < 0 ? name : name.slice(colon + 1),
      uri: Object.hasOwn(scope, prefix) ? scope[prefix]! : '',
      attrs,
      scope,
      children,
    };
  }
}

/**
 * (main) Rebuilds the events of one task. `rootScope` is the scope of the stream root the
 * stanzas belong to (undefined before a root was seen); the scope in effect after the batch is
 * returned (changed by an `open` event).
 */
export function decodeEvents(m: EncodedEvents, rootScope: Scope | undefined): { events: FrameEvent[]; rootScope: Scope | undefined } {
  const r = new Reader(m.text, m.nums, m.bytes ?? NO_BYTES);
  const events: FrameEvent[] = [];
  let scope = rootScope;
  const end = m.nums.length;
  while (r.i < end) {
    const kind = r.num();
    switch (kind) {
      case kBytes:
        events.push({ t: 'bytes', bytes: r.slice() });
        break;
      case kStanza: {
        const raw = r.str();
        events.push({ t: 'stanza', el: r.element(scope), raw });
        break;
      }
      case kOpen: {
        const root = r.element(undefined);
        scope = root.scope;
        events.push({ t: 'open', root });
        break;
      }
      case kClose:
        events.push({ t: 'close' });
        break;
      case kError: {
        const condition = r.str() as StreamErrorCondition;
        events.push({ t: 'error', condition, message: r.str() });
        break;
      }
      case kFault:
        events.push({ t: 'fault', message: r.str() });
        break;
      case kLost:
        events.push({ t: 'lost' });
        break;
      default:
        throw new Error(`corrupt event batch: code ${kind} at ${r.i - 1}`);
    }
  }
  return { events, rootScope: scope };
}
