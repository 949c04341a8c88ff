/**
 * A minimal, fast XMPP client over node:net for the end-to-end benchmark (macro/end-to-end.ts).
 * No XML library anywhere: the handshake matches strings in what the server sent, the hot path
 * only writes prebuilt `<message>` stanzas and scans what arrives for `</message>`.
 *
 * - `registerUser()`: XEP-0077 in-band registration on a connection of its own (stream header,
 *   `jabber:iq:register` set, `</stream:stream>`): jabberd2 2.7.0 never answers a bind on a stream
 *   that registered. Like test/helpers/xmpp.ts it retries once on `internal-server-error` (c2s's
 *   fd-reuse race: a late `ended` for a closed client taken for a new one on the same fd), and
 *   then takes `conflict` as "the first attempt created the account".
 * - `RawXmppClient.login()`: stream header, SASL PLAIN, stream restart, resource bind, session;
 *   then the hot path: `write()` bytes as they are, and every received `<message>` that carries
 *   a stamp (`kStampMark` + 16 digits of `nowNs()`) is counted; its one-way latency is recorded
 *   while `recordFromNs` ≤ its stamp. `<message type='error'>` is counted apart (a bounce still
 *   carries the body, it must never count as a delivery).
 *
 * Every wait is bounded and names what it waited for; a stream error or a closed socket fails it.
 */
import { connect, type Socket } from 'node:net';
import { nowNs } from './stanzas.ts';

export const kStampMark = 'stamp=';
const kStampDigits = 16;
const kMarkBuf = Buffer.from(kStampMark);
const kMsgEnd = Buffer.from('</message>');
const kMsgStart = Buffer.from('<message');
const kErrorSingle = Buffer.from("type='error'");
const kErrorDouble = Buffer.from('type="error"');
const EMPTY = Buffer.alloc(0);
/** a carry longer than this holds no message worth keeping (other stanzas only) */
const kMaxCarry = 256 * 1024;

export interface ClientTarget {
  port: number;
  domain: string;
  host?: string;
  /** bound on each handshake step and on connecting; default 10000 */
  timeoutMs?: number;
}

function xmlEsc(s: string): string {
  return s.replace(/&/g, '&amp;').replace(/</g, '&lt;').replace(/>/g, '&gt;').replace(/'/g, '&apos;');
}

function streamHeader(domain: string): string {
  return `<?xml version='1.0'?><stream:stream xmlns='jabber:client' xmlns:stream='http://etherx.jabber.org/streams' to='${xmlEsc(domain)}' version='1.0'>`;
}

function connectSocket(t: ClientTarget): Promise<Socket> {
  const ms = t.timeoutMs ?? 10_000;
  return new Promise((resolve, reject) => {
    const s = connect({ host: t.host ?? '127.0.0.1', port: t.port });
    const timer = setTimeout(() => {
      s.destroy();
      reject(new Error(`connecting to ${t.host ?? '127.0.0.1'}:${t.port}: timed out after ${ms} ms`));
    }, ms);
    s.once('error', (err) => {
      clearTimeout(timer);
      reject(err);
    });
    s.once('connect', () => {
      clearTimeout(timer);
      s.removeAllListeners('error');
      s.setNoDelay(true);
      resolve(s);
    });
  });
}

/**
 * The handshake side of a connection: what the server sent, as text, and bounded waits for a
 * pattern in it. Matched text is consumed (everything up to the end of the match).
 */
class Handshake {
  private text = '';
  private failure: string | null = null;
  private wake: (() => void) | null = null;
  private readonly onData = (d: Buffer): void => {
    this.text += d.toString('utf8');
    const se = this.text.indexOf('<stream:error');
    if (se >= 0 && this.failure === null) this.failure = `stream error: ${this.text.slice(se, se + 400)}`;
    this.wake?.();
  };
  private readonly onClose = (): void => {
    if (this.failure === null) this.failure = `connection closed by the server${this.text ? ` (last received: ${this.text.slice(-300)})` : ''}`;
    this.wake?.();
  };
  private readonly onError = (err: Error): void => {
    if (this.failure === null) this.failure = `socket error: ${err.message}`;
    this.wake?.();
  };

  constructor(readonly sock: Socket, readonly who: string, readonly timeoutMs: number) {
    sock.on('data', this.onData);
    sock.on('close', this.onClose);
    sock.on('error', this.onError);
  }

  /** Resolves with the first match of `re` in what was received (waiting for it), and consumes up to its end. */
  expect(re: RegExp, what: string): Promise<RegExpExecArray> {
    return new Promise((resolve, reject) => {
      const timer = setTimeout(() => {
        this.wake = null;
        reject(new Error(`${this.who}: timed out after ${this.timeoutMs} ms waiting for ${what} (received: ${this.text.slice(-300) || 'nothing'})`));
      }, this.timeoutMs);
      const check = (): void => {
        const m = re.exec(this.text);
        if (m !== null) {
          clearTimeout(timer);
          this.wake = null;
          this.text = this.text.slice(m.index + m[0].length);
          resolve(m);
        } else if (this.failure !== null) {
          clearTimeout(timer);
          this.wake = null;
          reject(new Error(`${this.who}: ${this.failure} while waiting for ${what}`));
        } else this.wake = check;
      };
      check();
    });
  }

  send(s: string): void {
    this.sock.write(s);
  }

  /** Stops listening; returns what was received but not consumed. */
  detach(): string {
    this.sock.off('data', this.onData);
    this.sock.off('close', this.onClose);
    this.sock.off('error', this.onError);
    const rest = this.text;
    this.text = '';
    return rest;
  }
}

/** The complete stream features element (both `<stream:features>…</stream:features>` and `<stream:features/>`). */
const FEATURES = /<stream:features(?:\s[^>]*)?(?:\/>|>[\s\S]*?<\/stream:features>)/;

function iqReply(id: string): RegExp {
  return new RegExp(`<iq\\b(?=[^>]*\\bid=['"]${id}['"])[^>]*?(?:/>|>[\\s\\S]*?</iq>)`);
}

function errorConditionOf(stanza: string): string {
  const m = /<([a-z-]+)\s+xmlns=['"]urn:ietf:params:xml:ns:xmpp-stanzas['"]/.exec(stanza);
  return m?.[1] ?? stanza.slice(0, 300);
}

/** Closes the stream and the socket (bounded: waits up to `ms` for the server to close). */
function closeStream(sock: Socket, ms = 1000): Promise<void> {
  if (sock.destroyed) return Promise.resolve();
  return new Promise((resolve) => {
    const done = (): void => {
      clearTimeout(timer);
      sock.destroy();
      resolve();
    };
    const timer = setTimeout(done, ms);
    sock.once('close', done);
    sock.on('error', () => {});
    try {
      sock.end('</stream:stream>');
    } catch {
      done();
    }
  });
}

/** One in-band registration attempt (no retry). */
async function registerOnce(t: ClientTarget, user: string, pass: string): Promise<void> {
  const who = `registration of ${user}@${t.domain} on port ${t.port}`;
  const sock = await connectSocket(t);
  const h = new Handshake(sock, who, t.timeoutMs ?? 10_000);
  try {
    h.send(streamHeader(t.domain));
    const f = await h.expect(FEATURES, 'stream features');
    if (!f[0].includes('http://jabber.org/features/iq-register')) throw new Error(`${who}: the server did not offer in-band registration; features: ${f[0]}`);
    h.send(`<iq type='set' id='reg1'><query xmlns='jabber:iq:register'><username>${xmlEsc(user)}</username><password>${xmlEsc(pass)}</password></query></iq>`);
    const r = await h.expect(iqReply('reg1'), 'the registration result');
    if (!/\btype=['"]result['"]/.test(r[0])) throw new Error(`${who} failed: ${errorConditionOf(r[0])}`);
  } finally {
    h.detach();
    await closeStream(sock);
  }
}

/**
 * XEP-0077 in-band registration on a connection of its own; retried once (after 50 ms) on
 * `internal-server-error`, after which `conflict` means the first attempt had created the account.
 */
export async function registerUser(t: ClientTarget, user: string, pass: string): Promise<void> {
  try {
    await registerOnce(t, user, pass);
  } catch (err) {
    if (!/internal-server-error/.test((err as Error).message)) throw err;
    await new Promise((r) => setTimeout(r, 50));
    try {
      await registerOnce(t, user, pass);
    } catch (err2) {
      if (/conflict/.test((err2 as Error).message)) return;
      throw err2;
    }
  }
}

export class RawXmppClient {
  /** messages received (stamped, not errors) */
  received = 0;
  /** `<message type='error'>` received */
  errors = 0;
  bytes = 0;
  /** latencies (µs) of messages stamped at or after this are recorded */
  recordFromNs = Number.POSITIVE_INFINITY;
  latenciesUs: number[] = [];
  /** called after every received chunk in which a message was counted */
  onMessages: (() => void) | null = null;
  /** the first error-bounce seen (for the report) */
  firstError: string | null = null;
  closed = false;
  private carry: Buffer = EMPTY;

  private constructor(readonly sock: Socket, readonly jid: string) {
    sock.on('data', (d: Buffer) => this.push(d));
    sock.on('error', () => {});
    sock.on('close', () => {
      this.closed = true;
      this.onMessages?.();
    });
  }

  /** Logs in with SASL PLAIN, binds `resource`, starts the session; retried once on internal-server-error. */
  static async login(t: ClientTarget, user: string, pass: string, resource: string): Promise<RawXmppClient> {
    try {
      return await RawXmppClient.loginOnce(t, user, pass, resource);
    } catch (err) {
      if (!/internal-server-error/.test((err as Error).message)) throw err;
      await new Promise((r) => setTimeout(r, 50));
      return RawXmppClient.loginOnce(t, user, pass, resource);
    }
  }

  private static async loginOnce(t: ClientTarget, user: string, pass: string, resource: string): Promise<RawXmppClient> {
    const who = `login of ${user}@${t.domain}/${resource} on port ${t.port}`;
    const sock = await connectSocket(t);
    const h = new Handshake(sock, who, t.timeoutMs ?? 10_000);
    try {
      h.send(streamHeader(t.domain));
      const f1 = await h.expect(FEATURES, 'stream features');
      if (!/<mechanism>PLAIN<\/mechanism>/.test(f1[0])) throw new Error(`${who}: SASL PLAIN not offered; features: ${f1[0]}`);
      const cred = Buffer.from(`\0${user}\0${pass}`, 'utf8').toString('base64');
      h.send(`<auth xmlns='urn:ietf:params:xml:ns:xmpp-sasl' mechanism='PLAIN'>${cred}</auth>`);
      const a = await h.expect(/<success\b[^>]*?(?:\/>|>[\s\S]*?<\/success>)|<failure\b[^>]*?(?:\/>|>[\s\S]*?<\/failure>)/, 'the SASL result');
      if (a[0].startsWith('<failure')) throw new Error(`${who}: authentication failed: ${a[0]}`);
      h.send(streamHeader(t.domain));
      const f2 = await h.expect(FEATURES, 'stream features after SASL');
      if (!f2[0].includes('urn:ietf:params:xml:ns:xmpp-bind')) throw new Error(`${who}: no resource binding offered; features: ${f2[0]}`);
      h.send(`<iq type='set' id='bind1'><bind xmlns='urn:ietf:params:xml:ns:xmpp-bind'><resource>${xmlEsc(resource)}</resource></bind></iq>`);
      const b = await h.expect(iqReply('bind1'), 'the bind result');
      if (!/\btype=['"]result['"]/.test(b[0])) throw new Error(`${who}: bind failed: ${errorConditionOf(b[0])}`);
      const jid = /<jid>([^<]+)<\/jid>/.exec(b[0])?.[1] ?? `${user}@${t.domain}/${resource}`;
      if (f2[0].includes('urn:ietf:params:xml:ns:xmpp-session')) {
        h.send(`<iq type='set' id='sess1'><session xmlns='urn:ietf:params:xml:ns:xmpp-session'/></iq>`);
        const s = await h.expect(iqReply('sess1'), 'the session result');
        if (!/\btype=['"]result['"]/.test(s[0])) throw new Error(`${who}: session failed: ${errorConditionOf(s[0])}`);
      }
      const rest = h.detach();
      const c = new RawXmppClient(sock, jid);
      if (rest.length > 0) c.push(Buffer.from(rest, 'utf8'));
      return c;
    } catch (err) {
      h.detach();
      sock.destroy();
      throw err;
    }
  }

  /** The hot path: counts `</message>`s; reads the stamp of each; error bounces apart. */
  private push(chunk: Buffer): void {
    this.bytes += chunk.length;
    const now = nowNs();
    const data = this.carry.length > 0 ? Buffer.concat([this.carry, chunk]) : chunk;
    let from = 0;
    let counted = false;
    for (;;) {
      const i = data.indexOf(kMsgEnd, from);
      if (i < 0) break;
      const start = data.lastIndexOf(kMsgStart, i);
      const s = start >= from ? start : from;
      const tagEnd = data.indexOf(0x3e /* > */, s);
      const startTag = data.subarray(s, tagEnd >= 0 && tagEnd < i ? tagEnd : i);
      if (startTag.indexOf(kErrorSingle) >= 0 || startTag.indexOf(kErrorDouble) >= 0) {
        this.errors++;
        this.firstError ??= data.subarray(s, i + kMsgEnd.length).toString('utf8').slice(0, 600);
      } else {
        const m = data.indexOf(kMarkBuf, s);
        if (m >= 0 && m < i) {
          this.received++;
          counted = true;
          const d = m + kMarkBuf.length;
          let v = 0;
          for (let k = d; k < d + kStampDigits; k++) v = v * 10 + (data[k]! - 0x30);
          if (v >= this.recordFromNs) this.latenciesUs.push((now - v) / 1000);
        }
      }
      from = i + kMsgEnd.length;
    }
    // keep what follows the last complete message (a message split over chunks)
    if (from >= data.length) this.carry = EMPTY;
    else {
      const rest = data.length - from;
      this.carry = rest > kMaxCarry ? EMPTY : Buffer.from(data.subarray(from));
    }
    if (counted) this.onMessages?.();
  }

  write(b: Buffer | string): void {
    this.sock.write(b);
  }

  /** Ends the stream (bounded) and destroys the socket. */
  close(ms = 1000): Promise<void> {
    this.onMessages = null;
    return closeStream(this.sock, ms);
  }
}

/**
 * Prebuilt chat messages from one sender to one receiver (full JID), each with a 16-digit stamp
 * at a fixed offset: `batch(n, stampNs)` returns n of them back to back in a fresh buffer (a
 * buffer handed to socket.write may still be queued, so it is never patched again).
 */
export class MessageTemplate {
  readonly bytes: Buffer;
  readonly stampOffset: number;

  constructor(to: string, body = 'Hello, how are you doing today? Fine, thanks; and you?') {
    const text = `<message to='${xmlEsc(to)}' type='chat' id='b1'><body>${xmlEsc(body)} ${kStampMark}${'0'.repeat(kStampDigits)}</body></message>`;
    this.bytes = Buffer.from(text, 'utf8');
    this.stampOffset = this.bytes.indexOf(kMarkBuf) + kMarkBuf.length;
  }

  batch(n: number, stampNs: number): Buffer {
    const len = this.bytes.length;
    const out = Buffer.allocUnsafe(n * len);
    // the stamp digits, once
    const digits = Buffer.allocUnsafe(kStampDigits);
    let v = Math.floor(stampNs);
    for (let i = kStampDigits - 1; i >= 0; i--) {
      digits[i] = 0x30 + (v % 10);
      v = Math.floor(v / 10);
    }
    for (let k = 0; k < n; k++) {
      const o = k * len;
      this.bytes.copy(out, o);
      digits.copy(out, o + this.stampOffset);
    }
    return out;
  }
}
