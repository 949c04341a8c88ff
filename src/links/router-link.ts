/**
 * (main) Our link to the local jabberd2 router, as an ordinary component client: stream,
 * SASL DIGEST-MD5, binds of every name the node serves, advertisements, routes, keepalive,
 * reconnect with backoff that re-binds everything and replays what was queued while down.
 */
import { connect, type Socket } from 'node:net';
import { hostname } from 'node:os';
import { XmlLink, type LinkLimits } from '../net/xml-link.ts';
import { CloseReason } from '../net/close-reason.ts';
import {
  CLIENT_STREAM_HEADER, ROUTE_ERRORS, THROTTLE, bindElement, saslAuth, saslElement, unbindElement, type BindFlags,
} from '../protocol/component.ts';
import { NS_COMPONENT, NS_SASL, NS_STREAM } from '../protocol/ns.ts';
import { digestClientResponse } from '../protocol/sasl-digest-md5.ts';
import { attr, text, type XmlElement } from '../xml/node.ts';
import type { Raw, Stanza } from '../xml/stanza.ts';
import type { Logger } from '../log.ts';
import type { ClusterConfig } from '../config/schema.ts';
import type { FlowControl, FlowSource } from '../net/flow-control.ts';
import type { WorkerPool } from '../workers/pool.ts';

/** The `<router>` section of the config. */
export type RouterLinkConfig = ClusterConfig['router'];

export interface RouterLinkHandler {
  /** authenticated; every wanted name has been sent for (re)binding */
  onUp(): void;
  onDown(): void;
  onRoute(st: Stanza): void;
  onAdvertisement(name: string, available: boolean): void;
  /** a name we held could not be bound again after a reconnect */
  onBindLost(name: string, code: string): void;
}

type Pending = { kind: 'bind' | 'unbind'; name: string; done: (code: string | null) => void; replay: boolean };
type State = 'idle' | 'connecting' | 'auth' | 'restarting' | 'ready' | 'stopped';

export class RouterLink implements FlowSource {
  private flow: FlowControl | null = null;
  /** we asked the router to hold our traffic (`<throttle/>` is a toggle) */
  private throttled = false;
  private wantPause = false;
  private state: State = 'idle';
  private link: XmlLink | null = null;
  private pending: Pending[] = [];
  /** names we want bound upstream, with their flags */
  private readonly wanted = new Map<string, BindFlags>();
  /** callers of bind() waiting for the link to come up */
  private readonly waiters = new Map<string, ((code: string | null) => void)[]>();
  private queue: Raw[] = [];
  private queueBytes = 0;
  private attempt = 0;
  private retryTimer: NodeJS.Timeout | null = null;
  private keepaliveTimer: NodeJS.Timeout | null = null;
  private expectedRspauth = '';
  /** counters */
  routesOut = 0;
  routesIn = 0;
  connects = 0;

  constructor(
    private readonly cfg: RouterLinkConfig,
    private readonly limits: LinkLimits,
    private readonly log: Logger,
    private readonly handler: RouterLinkHandler,
    /** framing workers (null: everything inline) */
    private readonly pool: WorkerPool | null = null,
  ) {}

  /** Join the node's flow control: throttled as a source, watched as a destination. */
  attachFlow(flow: FlowControl): void {
    this.flow = flow;
    flow.addSource(this);
  }

  pause(): void {
    this.wantPause = true;
    if (this.state === 'ready' && this.link && !this.throttled) {
      this.throttled = true;
      this.link.send(THROTTLE);
    }
  }

  resume(): void {
    this.wantPause = false;
    if (this.state === 'ready' && this.link && this.throttled) {
      this.throttled = false;
      this.link.send(THROTTLE);
    }
  }

  get ready(): boolean {
    return this.state === 'ready';
  }

  start(): void {
    if (this.state !== 'idle') return;
    this.connect();
    if (this.cfg.keepaliveSec > 0) {
      const ms = this.cfg.keepaliveSec * 1000;
      this.keepaliveTimer = setInterval(() => {
        const l = this.link;
        if (l && this.state === 'ready' && Date.now() - l.lastActivity >= ms) l.send(' ');
      }, Math.min(ms, 5000));
      this.keepaliveTimer.unref();
    }
  }

  /** Close the link for good (no reconnect). */
  async stop(): Promise<void> {
    this.state = 'stopped';
    if (this.retryTimer) clearTimeout(this.retryTimer);
    if (this.keepaliveTimer) clearInterval(this.keepaliveTimer);
    const l = this.link;
    this.link = null;
    if (l && !l.closed) {
      const closed = new Promise<void>((r) => l.socket.once('close', () => r()));
      l.send('</stream:stream>');
      l.end(CloseReason.Shutdown, 'node stopping');
      await Promise.race([closed, new Promise((r) => setTimeout(r, 1000))]);
    }
    this.failPending('stopped');
  }

  /** Fault injection: drop the link at once, no goodbye, no reconnect. */
  abort(): void {
    this.state = 'stopped';
    if (this.retryTimer) clearTimeout(this.retryTimer);
    if (this.keepaliveTimer) clearInterval(this.keepaliveTimer);
    this.link?.socket.destroy();
    this.link = null;
  }

  /** Bind a name upstream. Resolves with null on success or the router's error code. */
  bind(name: string, flags: BindFlags): Promise<string | null> {
    this.wanted.set(name, flags);
    return new Promise((resolve) => {
      if (this.state === 'ready') this.request('bind', name, resolve, flags);
      else {
        const w = this.waiters.get(name) ?? [];
        w.push(resolve);
        this.waiters.set(name, w);
      }
    });
  }

  /** Unbind a name upstream. Resolves with null on success or the router's error code. */
  unbind(name: string): Promise<string | null> {
    this.wanted.delete(name);
    for (const w of this.waiters.get(name) ?? []) w('unbound');
    this.waiters.delete(name);
    return new Promise((resolve) => {
      if (this.state === 'ready') this.request('unbind', name, resolve);
      else resolve(null); // not connected: nothing is bound
    });
  }

  isWanted(name: string): boolean {
    return this.wanted.has(name);
  }

  /** Send a route (or any top-level element). Queued, bounded, while the link is down. */
  send(xml: Raw): boolean {
    if (this.state === 'ready' && this.link) {
      this.routesOut++;
      this.link.send(xml);
      return true;
    }
    if (this.state === 'stopped') return false;
    if (this.queueBytes + xml.length > this.limits.queueBytes) return false;
    this.queue.push(xml);
    this.queueBytes += xml.length;
    return true;
  }

  private request(kind: 'bind' | 'unbind', name: string, done: (code: string | null) => void, flags?: BindFlags, replay = false): void {
    this.pending.push({ kind, name, done, replay });
    this.link!.send(kind === 'bind' ? bindElement(name, flags) : unbindElement(name));
  }

  private connect(): void {
    if (this.state === 'stopped') return;
    this.state = 'connecting';
    const sock: Socket = connect({ host: this.cfg.ip, port: this.cfg.port });
    const label = `router ${this.cfg.ip}:${this.cfg.port}`;
    const link = new XmlLink(sock, this.limits, this.log, {
      onStreamOpen: (root) => this.onStreamOpen(root),
      onStanza: (st) => this.onStanza(st),
      onStreamClose: () => link.end(CloseReason.PeerClosed, 'router closed the stream'),
      onClosed: (reason, detail) => this.onClosed(link, reason, detail),
    }, label);
    if (this.flow) link.attachFlow(this.flow, false);
    this.link = link;
    sock.once('connect', () => {
      this.log.info(`connected to ${label}`);
      link.send(CLIENT_STREAM_HEADER);
    });
  }

  private onStreamOpen(root: XmlElement): void {
    if (this.state === 'connecting') this.state = 'auth';
    else if (this.state === 'restarting') {
      this.state = 'ready';
      // authenticated: from the end of this header on, a worker frames the input (if any)
      this.link?.offload(this.pool);
      this.attempt = 0;
      this.connects++;
      this.log.notice(`authenticated to the router as ${this.cfg.user}; binding ${this.wanted.size} name(s)`);
      for (const [name, flags] of this.wanted) {
        this.request('bind', name, (code) => this.onRebind(name, code), flags, true);
      }
      const q = this.queue;
      this.queue = [];
      this.queueBytes = 0;
      for (const x of q) this.send(x);
      // a new connection starts unthrottled at the router
      this.throttled = false;
      if (this.wantPause) this.pause();
      this.handler.onUp();
    }
    void root;
  }

  private onRebind(name: string, code: string | null): void {
    const w = this.waiters.get(name);
    this.waiters.delete(name);
    if (code !== null) {
      this.log.error(`router refused bind of '${name}': error ${code}, ${ROUTE_ERRORS[code] ?? 'unknown error'}`);
      if (!w) {
        this.wanted.delete(name);
        this.handler.onBindLost(name, code);
      } else this.wanted.delete(name);
    } else this.log.info(`bound '${name}' on the router`);
    for (const f of w ?? []) f(code);
  }

  private onStanza(st: Stanza): void {
    const link = this.link!;
    if (this.state === 'ready') {
      const tag = st.tag;
      if (tag.uri === NS_COMPONENT && tag.local === 'route') {
        this.routesIn++;
        this.handler.onRoute(st);
        return;
      }
    }
    const el = st.el;
    const raw = st.text;
    if (this.state === 'auth') {
      if (el.uri === NS_STREAM && el.local === 'features') {
        const mechs = el.children.flatMap((c) => (typeof c !== 'string' && c.local === 'mechanisms' ? c.children : []));
        const names = mechs.map((m) => (typeof m === 'string' ? '' : text(m)));
        if (!names.includes('DIGEST-MD5')) {
          this.log.error(`router does not offer SASL DIGEST-MD5 (offers: ${names.join(', ') || 'nothing'})`);
          link.end(CloseReason.AuthFailed, 'no DIGEST-MD5');
          return;
        }
        link.send(saslAuth('DIGEST-MD5'));
        return;
      }
      if (el.uri === NS_SASL && el.local === 'challenge') {
        const challenge = Buffer.from(text(el), 'base64').toString('utf8');
        if (challenge.startsWith('rspauth=')) {
          link.send(saslElement('response', ''));
          return;
        }
        let r: ReturnType<typeof digestClientResponse>;
        try {
          r = digestClientResponse({ challenge, user: this.cfg.user, pass: this.cfg.pass, digestUri: `jabberd-router/${hostname()}` });
        } catch (err) {
          this.log.error(`router sent a SASL challenge we cannot answer: ${(err as Error).message}`);
          link.end(CloseReason.AuthFailed, 'unusable SASL challenge');
          return;
        }
        this.expectedRspauth = r.expectedRspauth;
        link.send(saslElement('response', Buffer.from(r.response, 'utf8').toString('base64')));
        return;
      }
      if (el.uri === NS_SASL && el.local === 'success') {
        const got = Buffer.from(text(el), 'base64').toString('utf8');
        if (got && got !== `rspauth=${this.expectedRspauth}`) {
          this.log.warn('router sent an unexpected rspauth in <success/>; continuing (jabberd2 components do not check it)');
        }
        this.state = 'restarting';
        link.framer.reset();
        link.send(CLIENT_STREAM_HEADER);
        return;
      }
      if (el.uri === NS_SASL && el.local === 'failure') {
        this.log.error(`router refused our credentials (user '${this.cfg.user}'): ${raw.replace(/<[^>]*>/g, ' ').trim() || 'failure'}`);
        link.end(CloseReason.AuthFailed, 'SASL failure');
        return;
      }
      this.log.debug(`router link: ignoring pre-auth element <${el.name}>`);
      return;
    }
    if (this.state !== 'ready') return;
    if (el.uri !== NS_COMPONENT) {
      if (!(el.uri === NS_STREAM && el.local === 'features')) this.log.debug(`router link: ignoring <${el.name}> in ${el.uri || 'no namespace'}`);
      if (el.uri === NS_STREAM && el.local === 'error') this.log.error(`router sent a stream error: ${raw}`);
      return;
    }
    switch (el.local) {
      case 'presence': {
        const from = attr(el, 'from');
        if (from) this.handler.onAdvertisement(from, attr(el, 'type') !== 'unavailable');
        return;
      }
      case 'bind':
      case 'unbind': {
        const p = this.pending.shift();
        if (!p || p.kind !== el.local) {
          this.log.warn(`router link: unexpected <${el.local}> reply (${raw})`);
          if (p) this.pending.unshift(p);
          return;
        }
        p.done(attr(el, 'error') ?? null);
        return;
      }
      case 'throttle':
        return;
      default:
        this.log.debug(`router link: ignoring unknown element <${el.name}>`);
    }
  }

  private failPending(code: string): void {
    const p = this.pending;
    this.pending = [];
    for (const x of p) x.done(code);
  }

  private onClosed(link: XmlLink, reason: CloseReason, detail: string): void {
    if (this.link !== link && this.link !== null) return;
    const wasReady = this.state === 'ready';
    this.link = null;
    // outstanding requests die with the connection; wanted binds are replayed on reconnect
    const p = this.pending;
    this.pending = [];
    for (const x of p) {
      if (x.kind === 'bind' && this.wanted.has(x.name)) {
        // a caller's bind is answered after the reconnect; our own replays are simply redone
        if (!x.replay) this.waiters.set(x.name, [...(this.waiters.get(x.name) ?? []), x.done]);
      } else x.done(null);
    }
    if (this.state === 'stopped') return;
    this.state = 'idle';
    const delay = this.backoff();
    this.log.warn(`router link closed (${reason}: ${detail}); reconnecting in ${delay} ms`);
    if (wasReady) this.handler.onDown();
    this.retryTimer = setTimeout(() => {
      this.retryTimer = null;
      this.connect();
    }, delay);
  }

  private backoff(): number {
    const base = Math.min(this.cfg.retry.maxMs, this.cfg.retry.initMs * 2 ** this.attempt);
    this.attempt = Math.min(this.attempt + 1, 30);
    return Math.round(base / 2 + Math.random() * (base / 2));
  }
}
