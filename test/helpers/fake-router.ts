/**
 * A scripted jabberd2 router (the router's side of the component protocol over raw TCP), so that
 * tests can make the router misbehave toward our router link: stream header with an id,
 * features offering DIGEST-MD5, a challenge and verification with DigestServer, `<success/>` with
 * rspauth, stream restart with empty features, then `<bind>`/`<unbind>` echoes (name removed),
 * and everything else recorded. Per-connection policies decide SASL failures and bind errors;
 * `send()` writes anything (malformed XML included) to a connection.
 */
import type { Server, Socket } from 'node:net';
import { listenLoopback } from './net.ts';
import { randomBytes } from 'node:crypto';
import { StreamFramer } from '../../src/xml/stream-framer.ts';
import { DigestServer } from '../../src/protocol/sasl-digest-md5.ts';
import { NS_COMPONENT, NS_SASL, NS_STREAM } from '../../src/protocol/ns.ts';
import { attr, text } from '../../src/xml/node.ts';
import type { Received } from './fake-component.ts';
import { EventWaits } from './wait.ts';

export interface FakeRouterConn {
  /** 1-based, in order of arrival */
  readonly n: number;
  readonly socket: Socket;
  /** elements received after authentication */
  readonly inbox: Received[];
  /** every element received, before and after authentication */
  readonly all: Received[];
  /** names bound on this connection, in request order, with their `multi` (or '') */
  readonly binds: { name: string; multi: string; error: string | null }[];
  authenticated: boolean;
  saslFailures: number;
  closed: boolean;
  readonly openedAt: number;
  closedAt: number;
  send(xml: string): void;
  close(): void;
}

export interface FakeRouterPolicy {
  /** answer this SASL attempt with <failure/>? (default: only for a wrong password) */
  saslFail?: (conn: FakeRouterConn) => boolean;
  /** error code for a bind request, or null to accept it (default: accept) */
  bindError?: (conn: FakeRouterConn, name: string) => string | null;
}

const SASL_FAILURE = `<failure xmlns='${NS_SASL}'><not-authorized/><text>Error authenticating user</text></failure>`;

export class FakeRouter {
  readonly conns: FakeRouterConn[] = [];
  policy: FakeRouterPolicy = {};
  port = 0;
  private server: Server | null = null;
  private readonly waits = new EventWaits(() => `connections: ${this.describe()}`);

  private constructor(private readonly users: ReadonlyMap<string, string>) {}

  static async start(users: Record<string, string>): Promise<FakeRouter> {
    const r = new FakeRouter(new Map(Object.entries(users)));
    const { server, port } = await listenLoopback((sock) => r.accept(sock));
    r.server = server;
    r.port = port;
    return r;
  }

  /** The most recent connection. */
  get last(): FakeRouterConn | undefined {
    return this.conns[this.conns.length - 1];
  }

  private wake(): void {
    this.waits.wake();
  }

  /** Wait until cond() holds, re-checked on every event. */
  until(cond: () => boolean, what: string, timeoutMs = 5000): Promise<void> {
    return this.waits.until(cond, `${what} (fake router)`, timeoutMs);
  }

  describe(): string {
    return this.conns
      .map((c) => `#${c.n}${c.authenticated ? ' authed' : ''}${c.closed ? ' closed' : ''} binds=[${c.binds.map((b) => `${b.name}${b.error ? `:${b.error}` : ''}`).join(',')}] in=${c.all.map((x) => x.el.local).join(',')}`)
      .join(' | ');
  }

  private accept(socket: Socket): void {
    const self = this;
    let sasl: DigestServer | null = null;
    let restarting = false;
    const conn: FakeRouterConn = {
      n: this.conns.length + 1,
      socket,
      inbox: [],
      all: [],
      binds: [],
      authenticated: false,
      saslFailures: 0,
      closed: false,
      openedAt: Date.now(),
      closedAt: 0,
      send: (xml) => {
        if (!socket.destroyed) socket.write(xml);
      },
      close: () => socket.destroy(),
    };
    this.conns.push(conn);
    const header = (): string =>
      `<?xml version='1.0'?><stream:stream xmlns:stream='${NS_STREAM}' version='1.0' id='${randomBytes(20).toString('hex')}'>`;
    const framer = new StreamFramer(
      {
        onStreamOpen: () => {
          if (!restarting) {
            conn.send(header() + `<stream:features xmlns:stream='${NS_STREAM}'><mechanisms xmlns='${NS_SASL}'><mechanism>DIGEST-MD5</mechanism></mechanisms></stream:features>`);
          } else {
            conn.authenticated = true;
            conn.send(header() + `<stream:features xmlns:stream='${NS_STREAM}'></stream:features>`);
          }
          self.wake();
        },
        onStanza: (el, raw) => {
          conn.all.push({ el, raw });
          if (!conn.authenticated) {
            if (el.uri === NS_SASL && el.local === 'auth') {
              sasl = new DigestServer((u) => self.users.get(u));
              conn.send(`<challenge xmlns='${NS_SASL}'>${Buffer.from(sasl.challenge()).toString('base64')}</challenge>`);
            } else if (el.uri === NS_SASL && el.local === 'response' && sasl) {
              const r = sasl.verify(Buffer.from(text(el), 'base64').toString());
              sasl = null;
              if (!r.ok || self.policy.saslFail?.(conn)) {
                conn.saslFailures++;
                conn.send(SASL_FAILURE);
              } else {
                conn.send(`<success xmlns='${NS_SASL}'>${Buffer.from(`rspauth=${r.rspauth}`).toString('base64')}</success>`);
                restarting = true;
                framer.reset();
              }
            }
            self.wake();
            return;
          }
          conn.inbox.push({ el, raw });
          if (el.uri === NS_COMPONENT && (el.local === 'bind' || el.local === 'unbind')) {
            const name = attr(el, 'name') ?? '';
            const multi = attr(el, 'multi');
            const error = el.local === 'bind' ? (self.policy.bindError?.(conn, name) ?? null) : null;
            if (el.local === 'bind') conn.binds.push({ name, multi: multi ?? '', error });
            conn.send(`<${el.local} xmlns='${NS_COMPONENT}'${multi !== undefined ? ` multi='${multi}'` : ''}${error ? ` error='${error}'` : ''}></${el.local}>`);
          }
          self.wake();
        },
        onStreamClose: () => {
          conn.send('</stream:stream>');
          socket.end();
          self.wake();
        },
        onError: () => {
          socket.destroy();
          self.wake();
        },
      },
      { maxStanzaBytes: 1 << 20, maxDepth: 64 },
    );
    socket.on('data', (d) => {
      try {
        framer.write(d);
      } catch {
        socket.destroy();
      }
    });
    socket.on('error', () => {});
    socket.on('close', () => {
      conn.closed = true;
      conn.closedAt = Date.now();
      self.wake();
    });
  }

  async stop(): Promise<void> {
    for (const c of this.conns) c.close();
    const s = this.server;
    this.server = null;
    if (s) await new Promise<void>((r) => s.close(() => r()));
  }
}
