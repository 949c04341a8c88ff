/**
 * The load generator's connections. Each one does its protocol handshake with the real framer
 * (src/xml/stream-framer.ts: the same code the node runs), then switches to raw mode, where
 * received bytes are only counted (or scanned for `</route>` and the send stamp), so that the
 * generator stays far cheaper per stanza than what it measures.
 *
 * - `Endpoint.acceptRouter`: the router's side of jabberd2's component protocol, for a node that
 *   connects to us as a component: stream header, DIGEST-MD5 (`DigestServer`), restart, bind
 *   replies (every bind is accepted and recorded).
 * - `Endpoint.connectComponent`: a component (an sm or a c2s) connecting to a node or to the real
 *   jabberd2 router: stream, DIGEST-MD5, then the binds it is given, each awaited.
 * - `Endpoint.connectRaw` / `acceptRaw`: plain sockets (byte relay, direct path).
 */
import { connect, createServer, type Server, type Socket } from 'node:net';
import { randomBytes } from 'node:crypto';
import { StreamFramer } from '../../src/xml/stream-framer.ts';
import { DigestServer, digestClientResponse } from '../../src/protocol/sasl-digest-md5.ts';
import { CLIENT_STREAM_HEADER, bindElement, saslAuth, saslElement } from '../../src/protocol/component.ts';
import { NS_COMPONENT, NS_SASL, NS_STREAM } from '../../src/protocol/ns.ts';
import { attr, text, type XmlElement } from '../../src/xml/node.ts';
import { kRouteEnd, kTail, kStampDigits, nowNs, readStamp } from './stanzas.ts';

const EMPTY = Buffer.alloc(0);
const kCarry = 64;

/**
 * What arrives on one connection in raw mode. Count mode (the default) only adds up bytes; scan
 * mode finds every `</route>`, counts it, learns the route length, and records the latency of
 * routes stamped at or after `recordFromNs`.
 */
/**
 * A growable log of latencies in a Float64Array: at several hundred thousand samples per second
 * a JS array's growth and the scavenges copying it stalled the generator by tens of ms, which
 * showed up as the measured process's p99.
 */
export class LatencyLog {
  private buf = new Float64Array(1 << 16);
  length = 0;

  push(v: number): void {
    if (this.length === this.buf.length) {
      const bigger = new Float64Array(this.buf.length * 2);
      bigger.set(this.buf);
      this.buf = bigger;
    }
    this.buf[this.length++] = v;
  }

  last(): number | undefined {
    return this.length > 0 ? this.buf[this.length - 1] : undefined;
  }

  values(): Float64Array {
    return this.buf.subarray(0, this.length);
  }

  clear(): void {
    this.length = 0;
  }
}

export class Sink {
  bytes = 0;
  scanning = false;
  stanzas = 0;
  /** bytes between the last two `</route>` ends seen in scan mode */
  lastLen = 0;
  recordFromNs = Number.POSITIVE_INFINITY;
  /** one-way latencies of the routes received since `recordFromNs` (off the JS heap: no GC work) */
  latenciesUs = new LatencyLog();
  /** called after every chunk */
  onChunk: (() => void) | null = null;
  private carry: Buffer = EMPTY;
  private lastEndAbs = -1;

  push(chunk: Buffer): void {
    const base = this.bytes;
    this.bytes += chunk.length;
    if (this.scanning) this.scan(chunk, base);
    const f = this.onChunk;
    if (f !== null) f();
  }

  /** Enter scan mode (forgets any partial route from count mode). */
  startScan(): void {
    this.scanning = true;
    this.carry = EMPTY;
    this.lastEndAbs = -1;
  }

  stopScan(): void {
    this.scanning = false;
    this.carry = EMPTY;
  }

  private scan(chunk: Buffer, base: number): void {
    const now = nowNs();
    let data = chunk;
    let dataBase = base;
    if (this.carry.length > 0) {
      data = Buffer.concat([this.carry, chunk]);
      dataBase = base - this.carry.length;
    }
    let from = 0;
    for (;;) {
      const i = data.indexOf(kRouteEnd, from);
      if (i < 0) break;
      const end = i + kRouteEnd.length;
      this.stanzas++;
      const abs = dataBase + end;
      if (this.lastEndAbs >= 0) this.lastLen = abs - this.lastEndAbs;
      this.lastEndAbs = abs;
      if (end >= kTail.length + kStampDigits) {
        const st = readStamp(data, end);
        if (st >= this.recordFromNs) this.latenciesUs.push((now - st) / 1000);
      }
      from = end;
    }
    // the carry holds only bytes after the last `</route>`: enough for a split `</route>` and
    // the stamp before it, never a route counted twice
    const keep = Math.max(from, data.length - kCarry);
    this.carry = keep < data.length ? Buffer.from(data.subarray(keep)) : EMPTY;
  }
}

interface Got {
  el: XmlElement;
  raw: string;
}

export class Endpoint {
  readonly sink = new Sink();
  /** names bound by the peer (router side), in order */
  readonly binds: string[] = [];
  private framer: StreamFramer | null = null;
  private inbox: Got[] = [];
  private opens = 0;
  private waiters: (() => void)[] = [];
  private failure: Error | null = null;
  private readonly onRaw = (d: Buffer): void => this.sink.push(d);
  private readonly onFramed = (d: Buffer): void => {
    try {
      this.framer?.write(d);
    } catch (err) {
      this.fail(err as Error);
    }
  };
  closed = false;

  private constructor(readonly socket: Socket, readonly label: string) {
    socket.setNoDelay(true);
    socket.on('error', (err) => this.fail(err));
    socket.on('close', () => {
      this.closed = true;
      this.fail(new Error(`${label}: connection closed`));
    });
  }

  private fail(err: Error): void {
    if (this.failure === null) this.failure = err;
    this.wake();
  }

  private wake(): void {
    const w = this.waiters;
    this.waiters = [];
    for (const f of w) f();
  }

  /** Resolves when cond() holds (re-checked on every event). */
  until(cond: () => boolean, what: string, timeoutMs = 10_000): Promise<void> {
    return new Promise((resolve, reject) => {
      const timer = setTimeout(() => reject(new Error(`${this.label}: timed out after ${timeoutMs} ms waiting for ${what}`)), timeoutMs);
      const check = (): void => {
        if (cond()) {
          clearTimeout(timer);
          resolve();
        } else if (this.failure !== null && this.framer !== null) {
          clearTimeout(timer);
          reject(new Error(`${this.label}: ${this.failure.message} while waiting for ${what}`));
        } else this.waiters.push(check);
      };
      check();
    });
  }

  private async take(pred: (el: XmlElement) => boolean, what: string): Promise<Got> {
    let got: Got | undefined;
    await this.until(() => {
      const i = this.inbox.findIndex((g) => pred(g.el));
      if (i < 0) return false;
      got = this.inbox.splice(i, 1)[0];
      return true;
    }, what);
    return got!;
  }

  private framed(onStanza: (el: XmlElement, raw: string) => void): void {
    this.framer = new StreamFramer(
      {
        onStreamOpen: () => {
          this.opens++;
          this.wake();
        },
        onStanza: (el, raw) => {
          onStanza(el, raw);
          this.wake();
        },
        onStreamClose: () => this.fail(new Error(`${this.label}: stream closed by the peer`)),
        onError: (f) => this.fail(new Error(`${this.label}: ${f.condition}: ${f.message}`)),
      },
      { maxStanzaBytes: 16 << 20, maxDepth: 128 },
    );
    this.socket.on('data', this.onFramed);
  }

  /** Stop parsing: from now on received bytes only reach the sink. */
  goRaw(): void {
    if (this.framer !== null) {
      this.socket.off('data', this.onFramed);
      this.framer = null;
      this.inbox = [];
    }
    if (this.socket.listenerCount('data') === 0) this.socket.on('data', this.onRaw);
  }

  write(data: Buffer | string): void {
    this.socket.write(data);
  }

  close(): void {
    this.socket.destroy();
  }

  // ---- factories ---------------------------------------------------------------------------

  static connectRaw(port: number, label = 'raw client'): Promise<Endpoint> {
    return new Promise((resolve, reject) => {
      const s = connect({ host: '127.0.0.1', port });
      s.once('error', reject);
      s.once('connect', () => {
        s.off('error', reject);
        const e = new Endpoint(s, label);
        e.goRaw();
        resolve(e);
      });
    });
  }

  /** The next connection on `server`, raw. */
  static acceptRaw(server: Server, label = 'raw server'): Promise<Endpoint> {
    return new Promise((resolve) => {
      server.once('connection', (s: Socket) => {
        const e = new Endpoint(s, label);
        e.goRaw();
        resolve(e);
      });
    });
  }

  /** A component logging in to a router (jabberd2's or a node's sm listener), then binding. */
  static async connectComponent(port: number, user: string, pass: string, binds: readonly { name: string; multi?: string }[], label = `component ${user}`): Promise<Endpoint> {
    const s = await new Promise<Socket>((resolve, reject) => {
      const sock = connect({ host: '127.0.0.1', port });
      sock.once('error', reject);
      sock.once('connect', () => {
        sock.off('error', reject);
        resolve(sock);
      });
    });
    const e = new Endpoint(s, label);
    e.framed((el, raw) => {
      e.inbox.push({ el, raw });
      if (el.uri === NS_SASL && el.local === 'success') e.framer!.reset();
    });
    e.write(CLIENT_STREAM_HEADER);
    await e.take((el) => el.local === 'features', 'stream features');
    e.write(saslAuth('DIGEST-MD5'));
    const ch = await e.take((el) => el.uri === NS_SASL && el.local === 'challenge', 'SASL challenge');
    const r = digestClientResponse({ challenge: Buffer.from(text(ch.el), 'base64').toString(), user, pass, digestUri: 'jabberd-router/bench' });
    e.write(saslElement('response', Buffer.from(r.response).toString('base64')));
    const res = await e.take((el) => el.uri === NS_SASL && (el.local === 'success' || el.local === 'failure'), 'SASL result');
    if (res.el.local === 'failure') throw new Error(`${label}: authentication failed: ${res.raw}`);
    const opens = e.opens;
    e.write(CLIENT_STREAM_HEADER);
    await e.until(() => e.opens > opens, 'post-auth stream header');
    for (const b of binds) {
      e.write(bindElement(b.name, b.multi !== undefined ? { multi: b.multi } : {}));
      const rep = await e.take((el) => el.uri === NS_COMPONENT && el.local === 'bind', `reply to the bind of '${b.name}'`);
      const err = attr(rep.el, 'error');
      if (err !== undefined) throw new Error(`${label}: bind of '${b.name}' refused with error ${err}`);
    }
    return e;
  }

  /**
   * The next connection on `server`, answered as jabberd2's router answers a component:
   * resolves once it has authenticated; binds are accepted and recorded until goRaw().
   */
  static acceptRouter(server: Server, users: ReadonlyMap<string, string>, label = 'router side'): Promise<Endpoint> {
    return new Promise((resolve, reject) => {
      server.once('connection', (s: Socket) => {
        const e = new Endpoint(s, label);
        let sasl: DigestServer | null = null;
        let restarting = false;
        const header = (): string => `<?xml version='1.0'?><stream:stream xmlns:stream='${NS_STREAM}' version='1.0' id='${randomBytes(20).toString('hex')}'>`;
        e.framed((el) => {
          if (el.uri === NS_SASL && el.local === 'auth') {
            sasl = new DigestServer((u) => users.get(u));
            e.write(`<challenge xmlns='${NS_SASL}'>${Buffer.from(sasl.challenge()).toString('base64')}</challenge>`);
          } else if (el.uri === NS_SASL && el.local === 'response' && sasl !== null) {
            const r = sasl.verify(Buffer.from(text(el), 'base64').toString());
            sasl = null;
            if (!r.ok) {
              e.write(`<failure xmlns='${NS_SASL}'><not-authorized/></failure>`);
              reject(new Error(`${label}: SASL failed: ${r.reason}`));
              return;
            }
            e.write(`<success xmlns='${NS_SASL}'>${Buffer.from(`rspauth=${r.rspauth}`).toString('base64')}</success>`);
            restarting = true;
            e.framer!.reset();
          } else if (el.uri === NS_COMPONENT && (el.local === 'bind' || el.local === 'unbind')) {
            const multi = attr(el, 'multi');
            if (el.local === 'bind') e.binds.push(attr(el, 'name') ?? '');
            e.write(`<${el.local} xmlns='${NS_COMPONENT}'${multi !== undefined ? ` multi='${multi}'` : ''}></${el.local}>`);
          }
        });
        // stream opens: first one gets features with DIGEST-MD5, the post-auth one empty features
        const check = (): void => {
          if (e.opens === 1 && !restarting) {
            e.write(header() + `<stream:features xmlns:stream='${NS_STREAM}'><mechanisms xmlns='${NS_SASL}'><mechanism>DIGEST-MD5</mechanism></mechanisms></stream:features>`);
            e.until(() => e.opens === 2, 'post-auth stream header', 10_000).then(() => {
              e.write(header() + `<stream:features xmlns:stream='${NS_STREAM}'></stream:features>`);
              resolve(e);
            }, reject);
          }
        };
        e.until(() => e.opens >= 1, 'stream header', 10_000).then(check, reject);
      });
    });
  }
}

/** A TCP server on 127.0.0.1, port 0. */
export function listen(): Promise<{ server: Server; port: number }> {
  return new Promise((resolve, reject) => {
    const server = createServer();
    server.once('error', reject);
    server.listen(0, '127.0.0.1', () => {
      const a = server.address();
      resolve({ server, port: typeof a === 'object' && a ? a.port : 0 });
    });
  });
}
