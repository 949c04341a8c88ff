/**
 * A scripted jabberd2 router for fuzzing the node's router link (and as a quiet upstream for
 * the peer fuzz): the router side of the component protocol (stream header with an id and
 * DIGEST-MD5 features, challenge, verification with DigestServer, `<success/>` with rspauth,
 * stream restart with empty features), `<bind>`/`<unbind>` echoed as jabberd2 does, everything
 * else handed to `onElement` and not stored (so that long runs keep a flat heap).
 *
 * `script`, when set, may replace what the router sends at each handshake stage of a
 * connection: `header` (stream header + features), `challenge`, `success`, `restart` (the
 * post-auth header + empty features). The replacement decides whether the router then expects
 * the node to restart its stream (`restart: true`).
 *
 * For each connection it keeps the tail of what the node sent, whether the node's output parsed,
 * and the condition of a stream error the node sent.
 */
import type { Server, Socket } from 'node:net';
import { listenLoopback } from './net.ts';
import { EventWaits } from './wait.ts';
import { randomBytes } from 'node:crypto';
import { StreamFramer } from '../../src/xml/stream-framer.ts';
import { DigestServer } from '../../src/protocol/sasl-digest-md5.ts';
import { NS_COMPONENT, NS_SASL, NS_STREAM } from '../../src/protocol/ns.ts';
import { attr, text, type XmlElement } from '../../src/xml/node.ts';

export type HandshakeStage = 'header' | 'challenge' | 'success' | 'restart';

export interface Replacement {
  send: string | Uint8Array;
  /** the node is expected to restart its stream after this (default: false) */
  restart?: boolean;
  /** the connection counts as authenticated after this (default: false) */
  authenticated?: boolean;
}

export interface FuzzRouterConn {
  readonly n: number;
  readonly socket: Socket;
  authenticated: boolean;
  closed: boolean;
  /** we (the router) closed it */
  closedByUs: boolean;
  readonly openedAt: number;
  closedAt: number;
  readonly binds: { name: string; multi: string }[];
  /** last bytes the node sent */
  tail: string;
  /** our parse error on the node's output, if any */
  parseError: string | null;
  /** condition of a stream error the node sent us */
  streamError: string | null;
  /** the node sent </stream:stream> */
  streamClosed: boolean;
  /** handshake stages this connection went through, with what was done */
  stages: string[];
  send(x: string | Uint8Array): void;
  close(): void;
}

export class FuzzRouter {
  readonly conns: FuzzRouterConn[] = [];
  total = 0;
  port = 0;
  script: ((conn: FuzzRouterConn, stage: HandshakeStage, valid: string) => Replacement | null) | null = null;
  onElement: ((conn: FuzzRouterConn, el: XmlElement, raw: string) => void) | null = null;
  /** error code for a bind (null: accept) */
  bindError: ((conn: FuzzRouterConn, name: string) => string | null) | null = null;
  private server: Server | null = null;
  private readonly waits = new EventWaits(() => '');

  private constructor(private readonly users: ReadonlyMap<string, string>) {}

  static async start(users: Record<string, string>): Promise<FuzzRouter> {
    const r = new FuzzRouter(new Map(Object.entries(users)));
    const { server, port } = await listenLoopback((sock) => r.accept(sock));
    r.server = server;
    r.port = port;
    return r;
  }

  get last(): FuzzRouterConn | undefined {
    return this.conns[this.conns.length - 1];
  }

  /** The current connection if it is authenticated, open and has `binds` binds. */
  upWith(binds: number): FuzzRouterConn | undefined {
    const c = this.last;
    return c && c.authenticated && !c.closed && c.binds.length >= binds ? c : undefined;
  }

  private wake(): void {
    this.waits.wake();
  }

  /** Resolves true once cond() holds (re-checked on every event), false after timeoutMs. */
  until(cond: () => boolean, timeoutMs: number): Promise<boolean> {
    return this.waits.until(cond, 'a fuzz router condition', timeoutMs).then(() => true, () => cond());
  }

  private accept(socket: Socket): void {
    socket.setNoDelay(true);
    const self = this;
    let sasl: DigestServer | null = null;
    let restarting = false;
    const conn: FuzzRouterConn = {
      n: ++this.total,
      socket,
      authenticated: false,
      closed: false,
      closedByUs: false,
      openedAt: Date.now(),
      closedAt: 0,
      binds: [],
      tail: '',
      parseError: null,
      streamError: null,
      streamClosed: false,
      stages: [],
      send: (x) => {
        if (!socket.destroyed) socket.write(x);
      },
      close: () => {
        if (conn.closed) return;
        conn.closedByUs = true;
        socket.destroy();
      },
    };
    this.conns.push(conn);
    if (this.conns.length > 50) this.conns.shift();
    const stage = (s: HandshakeStage, valid: string, after: () => void): void => {
      const rep = self.script?.(conn, s, valid) ?? null;
      if (rep === null) {
        conn.stages.push(s);
        conn.send(valid);
        after();
        return;
      }
      conn.stages.push(`${s} (fuzzed)`);
      conn.send(rep.send);
      if (rep.restart) {
        restarting = true;
        framer.reset();
      }
      if (rep.authenticated) conn.authenticated = true;
    };
    const header = (): string =>
      `<?xml version='1.0'?><stream:stream xmlns:stream='${NS_STREAM}' version='1.0' id='${randomBytes(20).toString('hex')}'>`;
    const framer: StreamFramer = new StreamFramer(
      {
        onStreamOpen: () => {
          if (!restarting) {
            stage('header', header() + `<stream:features xmlns:stream='${NS_STREAM}'><mechanisms xmlns='${NS_SASL}'><mechanism>DIGEST-MD5</mechanism></mechanisms></stream:features>`, () => {});
          } else {
            restarting = false;
            stage('restart', header() + `<stream:features xmlns:stream='${NS_STREAM}'></stream:features>`, () => {
              conn.authenticated = true;
            });
          }
          self.wake();
        },
        onStanza: (el, raw) => {
          if (el.uri === NS_STREAM && el.local === 'error') {
            const cond = el.children.find((k): k is XmlElement => typeof k !== 'string' && k.local !== 'text');
            conn.streamError = cond?.local ?? 'unknown';
          }
          if (!conn.authenticated) {
            if (el.uri === NS_SASL && el.local === 'auth') {
              sasl = new DigestServer((u) => self.users.get(u));
              stage('challenge', `<challenge xmlns='${NS_SASL}'>${Buffer.from(sasl.challenge()).toString('base64')}</challenge>`, () => {});
            } else if (el.uri === NS_SASL && el.local === 'response' && sasl) {
              const r = sasl.verify(Buffer.from(text(el), 'base64').toString());
              sasl = null;
              if (!r.ok) {
                conn.stages.push(`sasl failure: ${r.reason}`);
                conn.send(`<failure xmlns='${NS_SASL}'><not-authorized/><text>Error authenticating user</text></failure>`);
              } else {
                stage('success', `<success xmlns='${NS_SASL}'>${Buffer.from(`rspauth=${r.rspauth}`).toString('base64')}</success>`, () => {
                  restarting = true;
                  framer.reset();
                });
              }
            }
            self.wake();
            return;
          }
          if (el.uri === NS_COMPONENT && (el.local === 'bind' || el.local === 'unbind')) {
            const name = attr(el, 'name') ?? '';
            const multi = attr(el, 'multi');
            const error = el.local === 'bind' ? (self.bindError?.(conn, name) ?? null) : null;
            if (el.local === 'bind') conn.binds.push({ name, multi: multi ?? '' });
            conn.send(`<${el.local} xmlns='${NS_COMPONENT}'${multi !== undefined ? ` multi='${multi}'` : ''}${error ? ` error='${error}'` : ''}></${el.local}>`);
          }
          self.onElement?.(conn, el, raw);
          self.wake();
        },
        onStreamClose: () => {
          conn.streamClosed = true;
          self.wake();
        },
        onError: (f) => {
          conn.parseError = `${f.condition}: ${f.message}`;
          self.wake();
        },
      },
      { maxStanzaBytes: 1 << 22, maxDepth: 200 },
    );
    socket.on('data', (d: Buffer) => {
      conn.tail = (conn.tail + d.toString('utf8')).slice(-4096);
      try {
        framer.write(d);
      } catch (e) {
        conn.parseError = `handler: ${(e as Error).message}`;
      }
    });
    socket.on('end', () => socket.end());
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
