/**
 * (main) Peer links between nodes: one TCP link per pair of nodes, dialled to every configured
 * peer with backoff for ever and accepted from them; a mutual challenge-response on the
 * cluster secret; msgpackr frames; stanzas as their original bytes. When both nodes dial each
 * other at once, the link dialled by the node with the smaller name survives (every node
 * computes the same answer).
 */
import { createServer, connect, type Server, type Socket } from 'node:net';
import { FrameDecoder } from '../wire/frame.ts';
import { encode, decode } from '../wire/codec.ts';
import { MsgType, type PeerMessage, type SessionEntry, type NameEntry, type Op } from '../wire/messages.ts';
import { PeerHandshake } from '../wire/handshake.ts';
import { StreamFramer } from '../xml/stream-framer.ts';
import { NS_STREAM } from '../protocol/ns.ts';
import type { XmlElement } from '../xml/node.ts';
import type { Logger } from '../log.ts';

export interface PeerConfig {
  self: string;
  incarnation: number;
  secret: string;
  listen: { ip: string; port: number };
  peers: readonly { name: string; host: string; port: number }[];
  retry: { initMs: number; maxMs: number };
  heartbeatMs: number;
  maxFrameBytes: number;
  maxStanzaBytes: number;
  maxDepth: number;
  /** outbound bytes buffered per link beyond which the link is closed */
  queueBytes: number;
  /** a link must complete its handshake within this time */
  authTimeoutMs: number;
}

export interface PeerEvents {
  onUp(node: string, incarnation: number): void;
  onDown(node: string, reason: string): void;
  onStanza(node: string, el: XmlElement, raw: string): void;
  onSnapshot(node: string, m: { origin: string; incarnation: number; seq: number; sessions: SessionEntry[]; names: NameEntry[] }): void;
  onDelta(node: string, m: { origin: string; incarnation: number; seq: number; ops: Op[] }): void;
  onResync(node: string): void;
}

const STREAM_OPEN = `<stream:stream xmlns:stream='${NS_STREAM}'>`;

class PeerConn {
  peer = '';
  peerIncarnation = 0;
  up = false;
  closed = false;
  lastHeard = Date.now();
  private readonly decoder: FrameDecoder;
  private readonly hs: PeerHandshake;
  private framer: StreamFramer | null = null;
  private out: Buffer[] = [];
  private scheduled = false;

  constructor(
    readonly socket: Socket,
    readonly dialled: string | null,
    private readonly mgr: PeerManager,
    private readonly cfg: PeerConfig,
    private readonly log: Logger,
  ) {
    socket.setNoDelay(true);
    this.hs = new PeerHandshake({
      self: cfg.self,
      incarnation: cfg.incarnation,
      secret: cfg.secret,
      ...(dialled !== null ? { expectPeer: dialled } : {}),
      allowedPeers: new Set(cfg.peers.map((p) => p.name)),
      version: 1,
    });
    this.decoder = new FrameDecoder(cfg.maxFrameBytes, (p) => this.onFrame(p), (msg) => this.close(`bad frame: ${msg}`));
    socket.on('data', (d: Buffer) => {
      this.lastHeard = Date.now();
      try {
        this.decoder.push(d);
      } catch (err) {
        this.close(`error handling input: ${(err as Error).message}`);
      }
    });
    socket.on('error', (err) => this.close(`socket error: ${err.message}`));
    socket.on('close', () => this.close('connection closed'));
    const t = setTimeout(() => {
      if (!this.up) this.close(`no handshake within ${cfg.authTimeoutMs} ms`);
    }, cfg.authTimeoutMs);
    t.unref();
    for (const m of this.hs.start()) this.send(m);
  }

  get label(): string {
    return this.peer ? `peer '${this.peer}'` : `peer link ${this.socket.remoteAddress}:${this.socket.remotePort}`;
  }

  private onFrame(payload: Uint8Array): void {
    let msg: PeerMessage;
    try {
      msg = decode(payload);
    } catch (err) {
      this.close(`undecodable message: ${(err as Error).message}`);
      return;
    }
    if (!this.up) {
      const r = this.hs.receive(msg);
      for (const m of r.send) this.send(m);
      if (r.fail) {
        this.log.warn(`${this.label} refused: ${r.fail}`);
        this.flush();
        this.close(`handshake failed: ${r.fail}`);
        return;
      }
      if (r.done) {
        this.peer = r.done.peer;
        this.peerIncarnation = r.done.peerIncarnation;
        this.up = true;
        this.framer = new StreamFramer({
          onStreamOpen: () => {},
          onStanza: (el, raw) => this.mgr.events.onStanza(this.peer, el, raw),
          onStreamClose: () => this.close('stanza stream closed'),
          onError: (f) => this.close(`malformed stanza from peer: ${f.condition}: ${f.message}`),
        }, { maxStanzaBytes: this.cfg.maxStanzaBytes, maxDepth: this.cfg.maxDepth });
        this.framer.write(Buffer.from(STREAM_OPEN));
        this.mgr.linkUp(this);
      }
      return;
    }
    switch (msg.type) {
      case MsgType.STANZA:
        this.framer!.write(msg.bytes);
        return;
      case MsgType.SNAPSHOT:
        if (msg.origin !== this.peer) return this.close(`snapshot for '${msg.origin}', which is not the peer`);
        this.mgr.events.onSnapshot(this.peer, msg);
        return;
      case MsgType.DELTA:
        if (msg.origin !== this.peer) return this.close(`delta for '${msg.origin}', which is not the peer`);
        this.mgr.events.onDelta(this.peer, msg);
        return;
      case MsgType.RESYNC:
        this.mgr.events.onResync(this.peer);
        return;
      case MsgType.PING:
        this.send({ type: MsgType.PONG, t: msg.t });
        return;
      case MsgType.PONG:
        return;
      case MsgType.BYE:
        this.log.notice(`${this.label} said goodbye: ${msg.reason}`);
        this.close(`peer said goodbye: ${msg.reason}`);
        return;
      default:
        this.log.info(`${this.label}: ignoring message type ${msg.type} after the handshake`);
    }
  }

  send(m: PeerMessage): void {
    if (this.closed) return;
    const b = encode(m);
    this.out.push(b);
    if (!this.scheduled) {
      this.scheduled = true;
      queueMicrotask(() => this.flush());
    }
    if (this.socket.writableLength > this.cfg.queueBytes) this.close(`more than ${this.cfg.queueBytes} bytes queued (slow peer)`);
  }

  flush(): void {
    this.scheduled = false;
    if (this.closed || this.out.length === 0) return;
    const bufs = this.out;
    this.out = [];
    this.socket.write(bufs.length === 1 ? bufs[0]! : Buffer.concat(bufs));
  }

  close(reason: string, graceful = false): void {
    if (this.closed) return;
    this.flush();
    this.closed = true;
    if (graceful) {
      this.socket.end();
      setTimeout(() => this.socket.destroy(), 1000).unref();
    } else this.socket.destroy();
    this.mgr.linkClosed(this, reason);
  }
}

export class PeerManager {
  private server: Server | null = null;
  private readonly links = new Map<string, PeerConn>();
  private readonly conns = new Set<PeerConn>();
  private readonly attempts = new Map<string, number>();
  private readonly timers = new Map<string, NodeJS.Timeout>();
  private heartbeat: NodeJS.Timeout | null = null;
  private stopped = false;
  listenPort = 0;

  constructor(private readonly cfg: PeerConfig, readonly events: PeerEvents, private readonly log: Logger) {}

  async start(): Promise<number> {
    this.listenPort = await new Promise<number>((resolve, reject) => {
      const server = createServer((s) => {
        if (this.stopped) return void s.destroy();
        this.conns.add(new PeerConn(s, null, this, this.cfg, this.log));
      });
      server.once('error', reject);
      server.listen(this.cfg.listen.port, this.cfg.listen.ip, () => {
        server.off('error', reject);
        server.on('error', (err) => this.log.error(`peer listener: ${err.message}`));
        const a = server.address();
        resolve(typeof a === 'object' && a ? a.port : this.cfg.listen.port);
      });
      this.server = server;
    });
    this.log.notice(`listening for peers on ${this.cfg.listen.ip}:${this.listenPort}; peers: ${this.cfg.peers.map((p) => `${p.name}@${p.host}:${p.port}`).join(', ') || 'none'}`);
    for (const p of this.cfg.peers) this.dial(p.name);
    this.heartbeat = setInterval(() => this.tick(), this.cfg.heartbeatMs);
    this.heartbeat.unref();
    return this.listenPort;
  }

  private tick(): void {
    const now = Date.now();
    for (const c of this.links.values()) {
      if (now - c.lastHeard > 3 * this.cfg.heartbeatMs) c.close(`no traffic for ${now - c.lastHeard} ms`);
      else c.send({ type: MsgType.PING, t: now });
    }
  }

  private dial(name: string): void {
    if (this.stopped || this.links.has(name) || this.timers.has(name)) return;
    const p = this.cfg.peers.find((x) => x.name === name);
    if (!p) return;
    const s = connect({ host: p.host, port: p.port });
    const c = new PeerConn(s, name, this, this.cfg, this.log);
    this.conns.add(c);
  }

  private redial(name: string): void {
    if (this.stopped || this.links.has(name) || this.timers.has(name)) return;
    if (!this.cfg.peers.some((x) => x.name === name)) return;
    const n = this.attempts.get(name) ?? 0;
    this.attempts.set(name, Math.min(n + 1, 30));
    const base = Math.min(this.cfg.retry.maxMs, this.cfg.retry.initMs * 2 ** n);
    const delay = Math.round(base / 2 + Math.random() * (base / 2));
    this.timers.set(name, setTimeout(() => {
      this.timers.delete(name);
      this.dial(name);
    }, delay));
  }

  /** (PeerConn) the handshake completed. */
  linkUp(c: PeerConn): void {
    const old = this.links.get(c.peer);
    if (old && !old.closed) {
      // both dialled: keep the link dialled by the smaller node name
      const dialler = (x: PeerConn): string => (x.dialled !== null ? this.cfg.self : x.peer);
      const keepNew = dialler(c) <= dialler(old);
      const loser = keepNew ? old : c;
      this.log.info(`duplicate link with '${c.peer}': keeping the one dialled by '${dialler(keepNew ? c : old)}'`);
      if (!keepNew) {
        loser.close('duplicate link');
        return;
      }
      this.links.set(c.peer, c);
      old.close('duplicate link');
      // what went out on the closed link may be lost: start the exchange again on this one
      this.events.onUp(c.peer, c.peerIncarnation);
      return;
    }
    this.links.set(c.peer, c);
    this.attempts.delete(c.peer);
    const t = this.timers.get(c.peer);
    if (t) {
      clearTimeout(t);
      this.timers.delete(c.peer);
    }
    this.log.notice(`peer '${c.peer}' up (incarnation ${c.peerIncarnation}, ${c.dialled !== null ? 'dialled' : 'accepted'})`);
    this.events.onUp(c.peer, c.peerIncarnation);
  }

  /** (PeerConn) a connection closed, up or not. */
  linkClosed(c: PeerConn, reason: string): void {
    this.conns.delete(c);
    if (c.up && this.links.get(c.peer) === c) {
      this.links.delete(c.peer);
      this.log.warn(`peer '${c.peer}' down: ${reason}`);
      this.events.onDown(c.peer, reason);
    } else if (!c.up) {
      this.log.info(`${c.label}: ${reason}`);
    }
    if (c.dialled !== null) this.redial(c.dialled);
    else if (c.peer) this.redial(c.peer);
  }

  isUp(node: string): boolean {
    return this.links.has(node);
  }

  upNodes(): string[] {
    return [...this.links.keys()];
  }

  send(node: string, m: PeerMessage): boolean {
    const c = this.links.get(node);
    if (!c) return false;
    c.send(m);
    return true;
  }

  broadcast(m: PeerMessage): void {
    for (const c of this.links.values()) c.send(m);
  }

  /** Fault injection: drop every link at once, no goodbye (as if the process died). */
  abort(): void {
    this.stopped = true;
    if (this.heartbeat) clearInterval(this.heartbeat);
    for (const t of this.timers.values()) clearTimeout(t);
    this.timers.clear();
    for (const c of [...this.conns]) c.socket.destroy();
    this.server?.close();
    this.server = null;
  }

  async stop(): Promise<void> {
    this.stopped = true;
    if (this.heartbeat) clearInterval(this.heartbeat);
    for (const t of this.timers.values()) clearTimeout(t);
    this.timers.clear();
    for (const c of this.links.values()) c.send({ type: MsgType.BYE, reason: 'node stopping' });
    for (const c of [...this.conns]) c.close('node stopping', true);
    const s = this.server;
    this.server = null;
    if (s) await new Promise<void>((r) => s.close(() => r()));
  }
}
