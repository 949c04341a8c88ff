/**
 * (main) Peer links between nodes: one TCP link per pair of nodes, dialled to every configured
 * peer with backoff for ever and accepted from them; a mutual challenge-response on the
 * cluster secret; msgpackr frames; stanzas as their original bytes. When both nodes dial each
 * other at once, the link dialled by the node with the smaller name survives (every node
 * computes the same answer).
 *
 * With `tls` (config `<peers><tls>`), every link is mutual TLS (1.2 or later) under the same
 * handshake: the listener requires a client certificate chaining to `ca`; the dialler verifies
 * the server's against `ca` and that it names the peer it dialled (subject CN or DNS SAN equal to
 * the node name, `peer-tls.ts`); the acceptor checks that the client certificate names the peer
 * once the cluster-secret proof has identified it, before answering AUTH_OK. A TLS failure
 * closes that one connection, is logged once (warn) and is retried with the usual backoff.
 */
import { readFileSync } from 'node:fs';
import { createServer, connect, type Server, type Socket } from 'node:net';
import {
  connect as tlsConnect,
  createSecureContext,
  createServer as createTlsServer,
  type PeerCertificate,
  type SecureContext,
  type TLSSocket,
} from 'node:tls';
import { certNames, certNamesNode, describeTlsError, describeVerifyCode, showCertNames } from './peer-tls.ts';
import { FrameDecoder, kFrameHeaderBytes } from '../wire/frame.ts';
import { encode, decode } from '../wire/codec.ts';
import { MsgType, kMinProtocolVersion, kProtocolVersion, type PeerMessage, type SessionEntry, type NameEntry, type Op } from '../wire/messages.ts';
import { PeerHandshake } from '../wire/handshake.ts';
import { HotFramer } from '../xml/hot-framer.ts';
import { streamStartTag } from '../workers/handover.ts';
import { element } from '../xml/node.ts';
import type { Stanza } from '../xml/stanza.ts';
import { NS_STREAM } from '../protocol/ns.ts';
import type { Logger } from '../log.ts';
import type { FlowControl } from '../net/flow-control.ts';

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
  /**
   * mutual TLS on every link; absent: plain TCP. Paths of PEM files (config `<peers><tls>`),
   * read by start(): this node's certificate (and intermediates), its unencrypted key, and the
   * CA certificate(s) peers' certificates must chain to.
   */
  tls?: { cert: string; key: string; ca: string };
}

/** TLS material read from the configured files at start. */
interface TlsMaterial {
  cert: Buffer;
  key: Buffer;
  ca: Buffer;
  /** for dialling (built once) */
  client: SecureContext;
}

const kMinTls = 'TLSv1.2';

export interface PeerEvents {
  onUp(node: string, incarnation: number): void;
  onDown(node: string, reason: string): void;
  onStanza(node: string, st: Stanza): void;
  onSnapshot(node: string, m: { origin: string; incarnation: number; seq: number; sessions: SessionEntry[]; names: NameEntry[] }): void;
  onDelta(node: string, m: { origin: string; incarnation: number; seq: number; ops: Op[] }): void;
  onResync(node: string): void;
}

/** the stanzas of a peer link are framed as the content of this root */
const STREAM_ROOT = element('stream:stream', { 'xmlns:stream': NS_STREAM });
const STREAM_CTX = { scope: STREAM_ROOT.scope, header: streamStartTag(STREAM_ROOT) };

/** Largest snapshot a peer may send us, in sessions (a bound on what we buffer). */
const kMaxSnapshotSessions = 20_000_000;

/**
 * Sessions per SNAPSHOT part: ~60 B each packed (version 2), ~100 B as arrays (version 1), so a
 * part stays far below max_frame_bytes (a part that would not fit is halved until it does).
 */
export const kSnapshotPartSessions = 10_000;

/** Socket bytes above which the next snapshot part waits for 'drain'. */
const kSnapshotLowWater = 1 << 20;

type Snapshot = { origin: string; incarnation: number; seq: number; sessions: SessionEntry[]; names: NameEntry[] };

/**
 * The frames of a snapshot, encoded one part at a time as they are taken: parts of
 * kSnapshotPartSessions (the names in the first), `more` on all but the last; a part whose
 * payload would exceed `maxPayload` is halved until it fits.
 */
function* snapshotFrames(snap: Snapshot, version: number, maxPayload: number): Generator<Buffer, void, undefined> {
  const all = snap.sessions;
  let at = 0;
  do {
    let n = Math.min(kSnapshotPartSessions, all.length - at);
    for (;;) {
      const more = at + n < all.length;
      const part: PeerMessage = {
        type: MsgType.SNAPSHOT,
        origin: snap.origin,
        incarnation: snap.incarnation,
        seq: snap.seq,
        sessions: all.slice(at, at + n),
        names: at === 0 ? snap.names : [],
        ...(more ? { more } : {}),
      };
      const frame = encode(part, version);
      if (frame.length - kFrameHeaderBytes <= maxPayload || n <= 1) {
        at += n;
        yield frame;
        break;
      }
      n = Math.ceil(n / 2);
    }
  } while (at < all.length);
}

class PeerConn {
  /** the parts of a snapshot received so far */
  private snapshotParts: Snapshot | null = null;
  /** snapshots waiting to be paced onto the link, in order */
  private snapshotQueue: Iterator<Buffer, void, undefined>[] = [];
  private pacing = false;
  peer = '';
  peerIncarnation = 0;
  /** protocol version of the link (from the handshake): the SNAPSHOT layout we send */
  version = kMinProtocolVersion;
  up = false;
  closed = false;
  lastHeard = Date.now();
  /** closing reasons worth a warning (TLS failures) rather than an info line */
  warnOnClose = false;
  private readonly decoder: FrameDecoder;
  private readonly hs: PeerHandshake;
  private framer: HotFramer | null = null;
  private out: Buffer[] = [];
  private scheduled = false;
  /** TCP connected (accepted sockets are) */
  private connected: boolean;
  /** TLS established, or plain TCP */
  private secured: boolean;
  /** anything received from the peer */
  private heard = false;
  /** remote address:port, kept for log lines after the socket is gone */
  private addr = '';

  /**
   * `tls`: the socket is a TLSSocket (accepted ones arrive secured; dialled ones are not yet,
   * and the handshake starts at 'secureConnect').
   */
  constructor(
    readonly socket: Socket,
    readonly dialled: string | null,
    private readonly mgr: PeerManager,
    private readonly cfg: PeerConfig,
    private readonly log: Logger,
    private readonly tls = false,
  ) {
    socket.setNoDelay(true);
    this.connected = dialled === null;
    this.secured = !tls || dialled === null;
    if (this.connected) this.addr = `${socket.remoteAddress}:${socket.remotePort}`;
    this.hs = new PeerHandshake({
      self: cfg.self,
      incarnation: cfg.incarnation,
      secret: cfg.secret,
      ...(dialled !== null ? { expectPeer: dialled } : {}),
      allowedPeers: new Set(cfg.peers.map((p) => p.name)),
      version: kProtocolVersion,
    });
    this.decoder = new FrameDecoder(cfg.maxFrameBytes, (p) => this.onFrame(p), (msg) => this.close(`bad frame: ${msg}`));
    socket.on('data', (d: Buffer) => {
      this.lastHeard = Date.now();
      this.heard = true;
      try {
        this.decoder.push(d);
      } catch (err) {
        this.close(`error handling input: ${(err as Error).message}`);
      }
    });
    // TLS 1.3: a peer refusing our certificate (or its name) just closes, right after the
    // handshake ended on our side, before it says anything
    const refusedAfterTls = (): boolean => this.tls && this.secured && !this.heard && !this.up;
    const kRefused = 'closed by the peer right after the TLS handshake, before its HELLO (did it refuse our certificate? see its log)';
    socket.on('error', (err) => {
      if (this.tls && this.connected && !this.secured) this.tlsFailed(`TLS handshake failed: ${describeTlsError(err)}`);
      else if (refusedAfterTls()) this.tlsFailed(`${kRefused}: ${err.message}`);
      else this.close(`socket error: ${err.message}`);
    });
    socket.on('close', () => {
      if (refusedAfterTls()) this.tlsFailed(kRefused);
      else this.close('connection closed');
    });
    const t = setTimeout(() => {
      if (!this.up) {
        if (this.tls && this.connected && !this.secured) this.tlsFailed(`no TLS handshake within ${cfg.authTimeoutMs} ms`);
        else this.close(`no handshake within ${cfg.authTimeoutMs} ms`);
      }
    }, cfg.authTimeoutMs);
    t.unref();
    if (dialled !== null) socket.once('connect', () => (this.connected = true));
    if (this.secured) this.begin();
    else {
      socket.once('secureConnect', () => {
        this.secured = true;
        this.begin();
      });
    }
  }

  /** The transport is ready: send our HELLO. */
  private begin(): void {
    if (this.closed) return;
    for (const m of this.hs.start()) this.send(m);
  }

  private tlsFailed(reason: string): void {
    this.warnOnClose = true;
    this.close(reason);
  }

  get label(): string {
    if (this.peer) return `peer '${this.peer}'`;
    if (this.dialled !== null) {
      const p = this.cfg.peers.find((x) => x.name === this.dialled);
      return `peer '${this.dialled}' (${p ? `${p.host}:${p.port}` : 'dialled'})`;
    }
    return `peer link ${this.addr}`;
  }

  /**
   * (accepting side, TLS) The peer proved it is `name`: its client certificate must name it
   * too. Returns the mismatch, or null.
   */
  private certMismatch(name: string): string | null {
    const cert = (this.socket as TLSSocket).getPeerCertificate();
    if (certNamesNode(cert, name)) return null;
    return showCertNames(certNames(cert));
  }

  private onFrame(payload: Uint8Array): void {
    // frames that arrived in the same read as the one that closed the link are not acted on
    // (after our own graceful close they are: the peer sent them before it read our BYE)
    if (!this.acceptInput) return;
    let msg: PeerMessage;
    try {
      msg = decode(payload);
    } catch (err) {
      this.close(`undecodable message: ${(err as Error).message}`);
      return;
    }
    if (!this.up) {
      const before = this.hs.state;
      const r = this.hs.receive(msg);
      if (this.tls && this.dialled === null && before === 'await-auth' && this.hs.state === 'await-ok') {
        // the proof identified the peer: before answering AUTH_OK, its certificate must name it
        const peer = this.hs.peer!;
        const other = this.certMismatch(peer);
        if (other !== null) {
          this.send({ type: MsgType.AUTH_FAIL, reason: `your TLS certificate is for ${other}, not '${peer}'` });
          this.tlsFailed(`peer '${peer}' presented a certificate for ${other}; refused`);
          return;
        }
      }
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
        this.version = r.done.version;
        this.up = true;
        this.framer = new HotFramer(STREAM_ROOT.name, STREAM_CTX, { maxStanzaBytes: this.cfg.maxStanzaBytes, maxDepth: this.cfg.maxDepth }, {
          onStanza: (st) => {
            if (this.acceptInput) this.mgr.events.onStanza(this.peer, st);
          },
          onStreamClose: () => this.close('stanza stream closed'),
          onError: (f) => this.close(`malformed stanza from peer: ${f.condition}: ${f.message}`),
        });
        this.mgr.linkUp(this);
        if (this.mgr.flow && !this.closed) {
          this.mgr.flow.addSource(this);
          this.socket.on('drain', () => {
            if (this.congested) {
              this.congested = false;
              this.mgr.flow?.congestion(this, false, this.label, () => {});
            }
          });
        }
      }
      return;
    }
    switch (msg.type) {
      case MsgType.STANZA:
        this.framer!.write(Buffer.isBuffer(msg.bytes) ? msg.bytes : Buffer.from(msg.bytes.buffer, msg.bytes.byteOffset, msg.bytes.byteLength));
        return;
      case MsgType.SNAPSHOT: {
        if (msg.origin !== this.peer) return this.close(`snapshot for '${msg.origin}', which is not the peer`);
        // a large snapshot comes in parts: apply them together
        let p = this.snapshotParts;
        if (p && (p.incarnation !== msg.incarnation || p.seq !== msg.seq)) return this.close('snapshot parts of different snapshots mixed');
        if (!p) p = { origin: msg.origin, incarnation: msg.incarnation, seq: msg.seq, sessions: msg.sessions, names: msg.names };
        else {
          if (p.sessions.length + msg.sessions.length > kMaxSnapshotSessions) return this.close(`snapshot of more than ${kMaxSnapshotSessions} sessions`);
          for (const s of msg.sessions) p.sessions.push(s);
          for (const n of msg.names) p.names.push(n);
        }
        if (msg.more) {
          this.snapshotParts = p;
          return;
        }
        this.snapshotParts = null;
        this.mgr.events.onSnapshot(this.peer, p);
        return;
      }
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

  /**
   * While a snapshot is being paced onto the link, everything else waits behind it in `held`,
   * so the peer gets the snapshot before the deltas and stanzas that follow it.
   */
  private held: Buffer[] | null = null;
  /** false once the link was closed for a fault: nothing more it sent is acted on */
  private acceptInput = true;
  private heldBytes = 0;

  send(m: PeerMessage): void {
    if (this.closed) return;
    const b = encode(m, this.version);
    if (this.held) {
      this.held.push(b);
      this.heldBytes += b.length;
      if (this.heldBytes > this.cfg.queueBytes) this.close(`more than ${this.cfg.queueBytes} bytes held behind a snapshot (slow peer)`);
      return;
    }
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
    const flow = this.mgr.flow;
    if (flow && this.up && !this.congested && this.socket.writableLength > flow.highWater) {
      this.congested = true;
      flow.congestion(this, true, this.label, () => this.close(`queued data not taken for ${flow.stallMs} ms (slow peer)`));
    }
  }

  /**
   * Send a snapshot in parts (snapshotFrames), each encoded and written when the socket has taken
   * the previous ones (a large table would otherwise sit in memory at once, and count as a slow
   * peer). Snapshots asked for meanwhile follow in order; everything else sent meanwhile waits
   * in `held` until they are all out.
   */
  sendSnapshot(snap: Snapshot): void {
    this.snapshotQueue.push(snapshotFrames(snap, this.version, this.cfg.maxFrameBytes));
    if (this.pacing) return;
    void this.pace().then(
      (ok) => {
        if (!ok) this.log.info(`snapshot to ${this.label} cut short: the link closed`);
      },
      (err: unknown) => this.close(`cannot send a snapshot: ${(err as Error).message}`),
    );
  }

  private async pace(): Promise<boolean> {
    this.pacing = true;
    this.flush();
    this.held ??= [];
    try {
      for (let frames = this.snapshotQueue.shift(); frames; frames = this.snapshotQueue.shift()) {
        for (let f = frames.next(); !f.done; f = frames.next()) {
          if (this.closed) return false;
          this.socket.write(f.value);
          if (this.socket.writableLength > kSnapshotLowWater) {
            await new Promise<void>((r) => {
              const done = (): void => {
                this.socket.off('drain', done);
                this.socket.off('close', done);
                r();
              };
              this.socket.on('drain', done);
              this.socket.on('close', done);
            });
          }
        }
      }
      return !this.closed;
    } finally {
      this.pacing = false;
      this.snapshotQueue = [];
      const held = this.held ?? [];
      this.held = null;
      this.heldBytes = 0;
      if (!this.closed && held.length) {
        this.out.push(...held);
        this.flush();
      }
    }
  }

  /** flow control: congested as a destination; paused as a source */
  congested = false;
  pause(): void {
    this.socket.pause();
  }
  resume(): void {
    if (!this.closed) this.socket.resume();
  }

  close(reason: string, graceful = false): void {
    if (this.closed) return;
    this.flush();
    this.closed = true;
    if (!graceful) {
      this.acceptInput = false;
      this.decoder.stop();
    }
    if (this.mgr.flow) {
      this.mgr.flow.release(this);
      this.mgr.flow.removeSource(this);
    }
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
  private tls: TlsMaterial | null = null;
  listenPort = 0;

  constructor(private readonly cfg: PeerConfig, readonly events: PeerEvents, private readonly log: Logger, readonly flow: FlowControl | null = null) {}

  /** Reads the TLS files; throws an Error naming the file. */
  private loadTls(t: NonNullable<PeerConfig['tls']>): TlsMaterial {
    const read = (path: string, what: string): Buffer => {
      try {
        return readFileSync(path);
      } catch (e) {
        const err = e as NodeJS.ErrnoException;
        throw new Error(`peer TLS: cannot read the ${what} file '${path}': ${err.code ?? err.message}`, { cause: e });
      }
    };
    const cert = read(t.cert, 'certificate');
    const key = read(t.key, 'key');
    const ca = read(t.ca, 'CA');
    let client: SecureContext;
    try {
      client = createSecureContext({ cert, key, ca, minVersion: kMinTls });
    } catch (e) {
      throw new Error(`peer TLS: cannot use certificate '${t.cert}', key '${t.key}' and CA '${t.ca}': ${(e as Error).message}`, { cause: e });
    }
    return { cert, key, ca, client };
  }

  /** (dialling, TLS) `checkServerIdentity`: the certificate must name the peer we dialled. */
  private checkPeerCert(name: string, cert: PeerCertificate): Error | undefined {
    if (certNamesNode(cert, name)) return undefined;
    return new Error(`peer '${name}' presented a certificate for ${showCertNames(certNames(cert))}`);
  }

  async start(): Promise<number> {
    const tls = this.cfg.tls ? this.loadTls(this.cfg.tls) : null;
    this.tls = tls;
    this.listenPort = await new Promise<number>((resolve, reject) => {
      const onConn = (s: Socket): void => {
        if (this.stopped) return void s.destroy();
        this.conns.add(new PeerConn(s, null, this, this.cfg, this.log, tls !== null));
      };
      let server: Server;
      if (tls === null) server = createServer(onConn);
      else {
        server = createTlsServer(
          { cert: tls.cert, key: tls.key, ca: tls.ca, requestCert: true, rejectUnauthorized: true, minVersion: kMinTls, handshakeTimeout: this.cfg.authTimeoutMs },
          onConn,
        );
        // the line below names the address even after the socket is gone: read it now
        server.on('connection', (raw: Socket) => void raw.remoteAddress);
        server.on('tlsClientError', (err, s) => {
          if (this.stopped) return;
          const raw = (s as unknown as { _parent?: Socket })._parent;
          const from = raw?.remoteAddress !== undefined ? `${raw.remoteAddress}:${raw.remotePort}` : 'an unknown address';
          // a certificate failing verification (rejectUnauthorized) surfaces as a hang-up with the code on the socket
          const why = s.authorizationError ? `client certificate refused: ${describeVerifyCode(String(s.authorizationError))}` : describeTlsError(err);
          this.log.warn(`peer link from ${from}: TLS handshake failed: ${why}`);
        });
      }
      server.once('error', reject);
      server.listen(this.cfg.listen.port, this.cfg.listen.ip, () => {
        server.off('error', reject);
        server.on('error', (err) => this.log.error(`peer listener: ${err.message}`));
        const a = server.address();
        resolve(typeof a === 'object' && a ? a.port : this.cfg.listen.port);
      });
      this.server = server;
    });
    this.log.notice(`listening for peers on ${this.cfg.listen.ip}:${this.listenPort} (${tls ? 'mutual TLS' : 'plain TCP'}); peers: ${this.cfg.peers.map((p) => `${p.name}@${p.host}:${p.port}`).join(', ') || 'none'}`);
    for (const p of this.cfg.peers) this.dial(p.name);
    this.heartbeat = setInterval(() => this.tick(), this.cfg.heartbeatMs);
    this.heartbeat.unref();
    return this.listenPort;
  }

  private lastTick = Date.now();

  private tick(): void {
    const now = Date.now();
    const gap = now - this.lastTick;
    this.lastTick = now;
    if (gap > 1.5 * this.cfg.heartbeatMs) {
      // this process did not run for a while (stopped, swapped, starved): what the peers sent
      // meanwhile is still unread in the sockets, so silence proves nothing; judge next round
      this.log.info(`heartbeat tick ${gap} ms apart: not judging peers this round`);
      for (const c of this.links.values()) c.lastHeard = now;
      return;
    }
    for (const c of this.links.values()) {
      if (now - c.lastHeard > 2.5 * this.cfg.heartbeatMs) c.close(`no traffic for ${now - c.lastHeard} ms`);
      else c.send({ type: MsgType.PING, t: now });
    }
  }

  private dial(name: string): void {
    if (this.stopped || this.links.has(name) || this.timers.has(name)) return;
    const p = this.cfg.peers.find((x) => x.name === name);
    if (!p) return;
    const tls = this.tls;
    const s = tls
      ? tlsConnect({
          host: p.host,
          port: p.port,
          secureContext: tls.client,
          minVersion: kMinTls,
          rejectUnauthorized: true,
          checkServerIdentity: (_host, cert) => this.checkPeerCert(name, cert),
        })
      : connect({ host: p.host, port: p.port });
    const c = new PeerConn(s, name, this, this.cfg, this.log, tls !== null);
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
      if (c.warnOnClose) this.log.warn(`${c.label}: ${reason}`);
      else this.log.info(`${c.label}: ${reason}`);
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

  /** Send a snapshot of our table, in parts (paced: PeerConn.sendSnapshot), so that any size fits in frames. */
  sendSnapshot(node: string, snap: Snapshot): boolean {
    const c = this.links.get(node);
    if (!c) return false;
    c.sendSnapshot(snap);
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
    // half-close: what a peer sent before it read our BYE is still read and handled
    const gone = [...this.conns].map((c) => new Promise<void>((r) => {
      if (c.socket.destroyed) return r();
      c.socket.once('close', () => r());
    }));
    for (const c of [...this.conns]) c.close('node stopping', true);
    const s = this.server;
    this.server = null;
    if (s) s.close();
    await Promise.race([Promise.all(gone), new Promise((r) => setTimeout(r, 1500))]);
  }
}
