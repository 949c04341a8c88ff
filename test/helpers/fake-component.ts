/**
 * A scripted jabberd2 component over TCP (what an sm, c2s or any component looks like to a
 * router): stream, SASL DIGEST-MD5, then send(xml) / expect(predicate). For unit and
 * integration tests of our own protocol code; real jabberd2 daemons are used end to end.
 */
import { connect, type Socket } from 'node:net';
import { StreamFramer } from '../../src/xml/stream-framer.ts';
import { CLIENT_STREAM_HEADER, saslAuth, saslElement } from '../../src/protocol/component.ts';
import { digestClientResponse } from '../../src/protocol/sasl-digest-md5.ts';
import { NS_SASL } from '../../src/protocol/ns.ts';
import { text, type XmlElement } from '../../src/xml/node.ts';
import { EventWaits } from './wait.ts';

export interface Received {
  el: XmlElement;
  raw: string;
}

export class FakeComponent {
  readonly socket: Socket;
  readonly inbox: Received[] = [];
  readonly errors: string[] = [];
  streamOpens = 0;
  streamClosed = false;
  closed = false;
  private readonly waits = new EventWaits(() => `inbox: ${this.inbox.map((x) => x.raw).join(' | ').slice(-2000)}`);
  private framer: StreamFramer;

  private constructor(socket: Socket) {
    this.socket = socket;
    this.framer = new StreamFramer(
      {
        onStreamOpen: () => { this.streamOpens++; this.wake(); },
        onStanza: (el, raw) => {
          this.inbox.push({ el, raw });
          if (el.uri === NS_SASL && el.local === 'success') this.framer.reset();
          this.wake();
        },
        onStreamClose: () => { this.streamClosed = true; this.wake(); },
        onError: (f) => { this.errors.push(`${f.condition}: ${f.message}`); this.wake(); },
      },
      { maxStanzaBytes: 16 * 1024 * 1024, maxDepth: 100 },
    );
    socket.on('data', (d) => this.framer.write(d));
    socket.on('close', () => { this.closed = true; this.wake(); });
    socket.on('error', () => {});
  }

  static open(port: number, host = '127.0.0.1'): Promise<FakeComponent> {
    return new Promise((resolve, reject) => {
      const s = connect({ port, host });
      s.once('connect', () => resolve(new FakeComponent(s)));
      s.once('error', reject);
    });
  }

  /** Open a stream and authenticate; resolves after the post-auth stream header. */
  static async login(port: number, user = 'jabberd', pass = 'secret'): Promise<FakeComponent> {
    const c = await FakeComponent.open(port);
    await c.authenticate(user, pass);
    return c;
  }

  async authenticate(user: string, pass: string): Promise<void> {
    this.send(CLIENT_STREAM_HEADER);
    await this.expect((e) => e.local === 'features', 'stream features');
    this.send(saslAuth('DIGEST-MD5'));
    const ch = await this.expect((e) => e.uri === NS_SASL && e.local === 'challenge', 'SASL challenge');
    const r = digestClientResponse({ challenge: Buffer.from(text(ch.el), 'base64').toString(), user, pass, digestUri: 'jabberd-router/test' });
    this.send(saslElement('response', Buffer.from(r.response).toString('base64')));
    const res = await this.expect((e) => e.uri === NS_SASL && (e.local === 'success' || e.local === 'failure'), 'SASL result');
    if (res.el.local === 'failure') throw new Error(`authentication failed: ${res.raw}`);
    const opens = this.streamOpens;
    this.send(CLIENT_STREAM_HEADER);
    await this.until(() => this.streamOpens > opens, 'post-auth stream header');
  }

  send(xml: string | Uint8Array): void {
    this.socket.write(xml);
  }

  private wake(): void {
    this.waits.wake();
  }

  /** Wait until cond() holds, re-checked on every event. */
  until(cond: () => boolean, what: string, timeoutMs = 5000): Promise<void> {
    return this.waits.until(cond, what, timeoutMs);
  }

  /** Take (remove) the first received element matching pred, waiting for it if needed. */
  async expect(pred: (el: XmlElement, raw: string) => boolean, what: string, timeoutMs = 5000): Promise<Received> {
    let found: Received | undefined;
    await this.until(() => {
      const i = this.inbox.findIndex((x) => pred(x.el, x.raw));
      if (i < 0) return false;
      found = this.inbox.splice(i, 1)[0];
      return true;
    }, what, timeoutMs);
    return found!;
  }

  /** Resolves when the peer has closed the connection. */
  closedSoon(timeoutMs = 5000): Promise<void> {
    return this.until(() => this.closed, 'connection close', timeoutMs);
  }

  close(): void {
    this.socket.destroy();
  }
}
