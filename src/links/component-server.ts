/**
 * (main) The listener the local sm connects to, playing jabberd2's router: stream header and
 * features, SASL DIGEST-MD5 with credentials from a router-users.xml file, stream restart, then
 * component-protocol elements handed to the switchboard. One bad connection never harms others.
 */
import { createServer, type Server, type Socket } from 'node:net';
import { XmlLink, type LinkLimits } from '../net/xml-link.ts';
import { CloseReason } from '../net/close-reason.ts';
import {
  FEATURES_DIGEST_MD5, FEATURES_EMPTY, newStreamId, saslElement, saslFailure, serverStreamHeader,
} from '../protocol/component.ts';
import { NS_COMPONENT_ACCEPT, NS_SASL } from '../protocol/ns.ts';
import { DigestServer } from '../protocol/sasl-digest-md5.ts';
import { attr, text, type XmlElement } from '../xml/node.ts';
import type { Raw, Stanza } from '../xml/stanza.ts';
import type { Logger } from '../log.ts';
import type { FlowControl } from '../net/flow-control.ts';
import type { WorkerPool } from '../workers/pool.ts';

export interface ComponentServerConfig {
  ip: string;
  port: number;
  maxConnections: number;
  authTimeoutSec: number;
  /** maximum SASL attempts on one stream before it is closed */
  maxAuthAttempts?: number;
}

/** What the switchboard sees of one authenticated component connection. */
export interface ComponentConn {
  readonly id: number;
  readonly user: string;
  readonly label: string;
  readonly names: Set<string>;
  send(xml: Raw): void;
  close(reason: CloseReason, detail: string): void;
  readonly closed: boolean;
}

export interface ComponentServerHandler {
  /** may the server accept a new connection now? (false while the router link is down) */
  accepting(): boolean;
  lookupPass(user: string): string | undefined;
  onReady(c: ComponentConn): void;
  onElement(c: ComponentConn, st: Stanza): void;
  onGone(c: ComponentConn, reason: CloseReason, detail: string): void;
}

type ConnState = 'header' | 'auth' | 'restart' | 'ready';

let nextId = 1;

class Conn implements ComponentConn {
  readonly id = nextId++;
  user = '';
  state: ConnState = 'header';
  readonly names = new Set<string>();
  readonly link: XmlLink;
  private sasl: DigestServer | null = null;
  private attempts = 0;
  private authTimer: NodeJS.Timeout;

  constructor(
    socket: Socket,
    limits: LinkLimits,
    private readonly cfg: ComponentServerConfig,
    private readonly log: Logger,
    private readonly handler: ComponentServerHandler,
    private readonly onClose: (c: Conn) => void,
    flow: FlowControl | null,
    private readonly pool: WorkerPool | null,
  ) {
    this.link = new XmlLink(socket, limits, log, {
      onStreamOpen: (root) => this.onStreamOpen(root),
      onStanza: (st) => this.onStanza(st),
      onStreamClose: () => this.link.end(CloseReason.PeerClosed, 'component closed its stream'),
      onClosed: (reason, detail) => {
        clearTimeout(this.authTimer);
        this.log.info(`${this.label} closed: ${reason}: ${detail}`);
        this.onClose(this);
        if (this.state === 'ready') this.handler.onGone(this, reason, detail);
      },
    }, this.labelText(socket));
    // a stream error before we have answered the header (bad header, timeout) opens our stream first
    this.link.errorPreamble = serverStreamHeader(newStreamId());
    if (flow) this.link.attachFlow(flow);
    this.authTimer = setTimeout(() => {
      if (this.state !== 'ready') {
        this.log.warn(`${this.label}: not authenticated within ${cfg.authTimeoutSec} s; closing`);
        this.link.fail('connection-timeout', CloseReason.AuthTimeout, 'authentication timeout');
      }
    }, cfg.authTimeoutSec * 1000);
    this.authTimer.unref();
  }

  private labelText(socket: Socket): string {
    return `component #${this.id} (${socket.remoteAddress}:${socket.remotePort})`;
  }

  get label(): string {
    return this.user ? `component #${this.id} '${this.user}'` : this.link.label;
  }
  get closed(): boolean {
    return this.link.closed;
  }
  send(xml: Raw): void {
    this.link.send(xml);
  }
  close(reason: CloseReason, detail: string): void {
    this.link.end(reason, detail);
  }

  private onStreamOpen(root: XmlElement): void {
    this.link.errorPreamble = ''; // both branches below send our header first
    if (root.scope[''] === NS_COMPONENT_ACCEPT) {
      // XEP-0114 components attach to the jabberd2 router, not to us
      this.link.send(serverStreamHeader(newStreamId()));
      this.link.fail('invalid-namespace', CloseReason.ProtocolError, 'XEP-0114 stream on the sm listener',
        'this port speaks the jabberd2 component protocol; connect XEP-0114 components to the jabberd2 router');
      return;
    }
    const to = attr(root, 'to');
    this.link.send(serverStreamHeader(newStreamId(), to));
    if (this.state === 'header') {
      this.state = 'auth';
      this.link.send(FEATURES_DIGEST_MD5);
    } else if (this.state === 'restart') {
      this.state = 'ready';
      clearTimeout(this.authTimer);
      // authenticated: from the end of this header on, a worker frames the input (if any)
      this.link.offload(this.pool);
      this.link.send(FEATURES_EMPTY);
      this.log.notice(`${this.label} authenticated`);
      this.handler.onReady(this);
    }
  }

  private onStanza(st: Stanza): void {
    if (this.state === 'ready') {
      this.handler.onElement(this, st);
      return;
    }
    const el = st.el;
    if (this.state !== 'auth' || el.uri !== NS_SASL) {
      // jabberd2's router drops everything a component sends before authenticating
      this.log.info(`${this.label}: dropped <${el.name}> sent before authentication`);
      return;
    }
    if (el.local === 'auth') {
      const mech = attr(el, 'mechanism');
      if (mech !== 'DIGEST-MD5') {
        this.link.send(saslFailure('invalid-mechanism'));
        this.log.warn(`${this.label}: asked for SASL mechanism '${mech ?? ''}', only DIGEST-MD5 is offered`);
        return;
      }
      this.sasl = new DigestServer((u) => this.handler.lookupPass(u));
      this.link.send(saslElement('challenge', Buffer.from(this.sasl.challenge(), 'utf8').toString('base64')));
      return;
    }
    if (el.local === 'response' && this.sasl) {
      const r = this.sasl.verify(Buffer.from(text(el), 'base64').toString('utf8'));
      this.sasl = null;
      if (r.ok) {
        this.user = r.user;
        this.state = 'restart';
        this.link.send(saslElement('success', Buffer.from(`rspauth=${r.rspauth}`, 'utf8').toString('base64')));
        this.link.flush();
        this.link.framer.reset();
        // a fault in the new header is answered after a header of ours, as at the start
        this.link.errorPreamble = serverStreamHeader(newStreamId());
        return;
      }
      this.attempts++;
      this.log.warn(`${this.label}: authentication failed (${r.reason})`);
      this.link.send(saslFailure('not-authorized', 'Error authenticating user'));
      if (this.attempts >= (this.cfg.maxAuthAttempts ?? 3)) {
        this.link.fail('not-authorized', CloseReason.AuthFailed, `${this.attempts} failed authentication attempts`);
      }
      return;
    }
    if (el.local === 'abort') {
      this.sasl = null;
      this.link.send(saslFailure('aborted'));
      return;
    }
    this.log.info(`${this.label}: dropped SASL <${el.local}> out of sequence`);
  }
}

export class ComponentServer {
  private server: Server | null = null;
  private readonly conns = new Set<Conn>();

  constructor(
    private readonly cfg: ComponentServerConfig,
    private readonly limits: LinkLimits,
    private readonly log: Logger,
    private readonly handler: ComponentServerHandler,
    private readonly flow: FlowControl | null = null,
    /** framing workers (null: everything inline) */
    private readonly pool: WorkerPool | null = null,
  ) {}

  get connectionCount(): number {
    return this.conns.size;
  }

  listen(): Promise<number> {
    return new Promise((resolve, reject) => {
      const server = createServer((socket) => this.onConnection(socket));
      server.once('error', reject);
      server.listen(this.cfg.port, this.cfg.ip, () => {
        server.off('error', reject);
        server.on('error', (err) => this.log.error(`component listener: ${err.message}`));
        const addr = server.address();
        const port = typeof addr === 'object' && addr ? addr.port : this.cfg.port;
        this.log.notice(`listening for the sm on ${this.cfg.ip}:${port}`);
        resolve(port);
      });
      this.server = server;
    });
  }

  private onConnection(socket: Socket): void {
    const who = `${socket.remoteAddress}:${socket.remotePort}`;
    if (!this.handler.accepting()) {
      this.log.info(`refusing component connection from ${who}: the router link is not up yet`);
      socket.destroy();
      return;
    }
    if (this.conns.size >= this.cfg.maxConnections) {
      this.log.warn(`refusing component connection from ${who}: ${this.cfg.maxConnections} connections already`);
      socket.destroy();
      return;
    }
    const c = new Conn(socket, this.limits, this.cfg, this.log, this.handler, (x) => this.conns.delete(x), this.flow, this.pool);
    this.conns.add(c);
  }

  /** Close every connection with a reason; stop listening. */
  async close(reason: CloseReason, detail: string): Promise<void> {
    const server = this.server;
    this.server = null;
    const closing = server ? new Promise<void>((r) => server.close(() => r())) : Promise.resolve();
    for (const c of [...this.conns]) {
      c.link.send('</stream:stream>');
      c.link.end(reason, detail);
    }
    await Promise.race([closing, new Promise((r) => setTimeout(r, 1000))]);
  }

  /** Fault injection: drop every connection and the listener at once (as if the process died). */
  abort(): void {
    for (const c of [...this.conns]) c.link.socket.destroy();
    this.server?.close();
    this.server = null;
  }
}
