/**
 * (main) One jabberd2-cluster node: owns the router link, the sm listener and the switchboard,
 * and wires them together. The process entry (main.ts) builds it from the config.
 */
import { RouterLink, type RouterLinkConfig } from './links/router-link.ts';
import { ComponentServer } from './links/component-server.ts';
import { Switchboard, type AclType } from './core/switchboard.ts';
import { CloseReason } from './net/close-reason.ts';
import { ClusterRouter } from './cluster/cluster-router.ts';
import { PeerManager, type PeerConfig } from './cluster/peer-manager.ts';
import { MsgType } from './wire/messages.ts';
import { FlowControl } from './net/flow-control.ts';
import { WorkerPool } from './workers/pool.ts';

/** how long a destination may hold every source paused before it is closed as a slow consumer */
export const STALL_MS = 5000;
import type { Logger } from './log.ts';

export interface NodeOptions {
  id: string;
  router: RouterLinkConfig;
  local: {
    ip: string;
    port: number;
    maxConnections: number;
    /** credentials of components allowed on the sm listener (router-users.xml) */
    users: ReadonlyMap<string, string>;
    acl: Readonly<Record<AclType, readonly string[]>>;
  };
  limits: { maxStanzaBytes: number; maxDepth: number; queueBytes: number; authTimeoutSec: number };
  /** clustered domains (empty: learned from the local sm's binds) */
  domains?: readonly string[];
  /** peer links; absent: a single node */
  peers?: Omit<PeerConfig, 'self' | 'incarnation' | 'maxStanzaBytes' | 'maxDepth' | 'queueBytes' | 'authTimeoutMs'>;
  /**
   * Worker threads that frame and parse the input of authenticated links (the router link and
   * the sm connections), each link pinned to one; 0 or absent: everything on the main thread.
   */
  workers?: number;
}

export class ClusterNode {
  readonly router: RouterLink;
  readonly server: ComponentServer;
  readonly switchboard: Switchboard;
  readonly cluster: ClusterRouter | null = null;
  readonly flow: FlowControl;
  readonly peers: PeerManager | null = null;
  /** framing workers (null: workers = 0, everything inline) */
  readonly pool: WorkerPool | null = null;
  /** this process's life: peers drop entries of an earlier life on sight */
  readonly incarnation = Date.now();
  private smPort = 0;
  /** sm-listener credentials; replaced by reloadUsers() (SIGHUP) */
  private users: ReadonlyMap<string, string>;
  private upWaiters: (() => void)[] = [];
  private stopped = false;
  readonly startedAt = Date.now();

  constructor(readonly opts: NodeOptions, private readonly log: Logger) {
    this.users = opts.local.users;
    const limits = { maxStanzaBytes: opts.limits.maxStanzaBytes, maxDepth: opts.limits.maxDepth, queueBytes: opts.limits.queueBytes };
    // pause the sources when a destination holds more than an eighth of its queue cap (≤ 1 MiB)
    this.flow = new FlowControl(Math.min(1 << 20, Math.floor(opts.limits.queueBytes / 8)), STALL_MS, log.child('flow'));
    if ((opts.workers ?? 0) > 0) this.pool = new WorkerPool({ size: opts.workers! }, log.child('workers'));
    this.router = new RouterLink(opts.router, limits, log.child('router-link'), {
      onUp: () => {
        const w = this.upWaiters;
        this.upWaiters = [];
        for (const f of w) f();
      },
      onDown: () => this.log.warn('router link down: holding routes for the router until it is back; new sm connections are refused meanwhile'),
      onRoute: (st) => this.switchboard.onRouterRoute(st),
      onAdvertisement: (name, available) => this.switchboard.onRouterAdvertisement(name, available),
      onBindLost: (name, code) => this.log.error(`lost name '${name}' after the router came back (error ${code}); its component keeps its local bind but the router will not send us its traffic`),
    }, this.pool);
    this.switchboard = new Switchboard(this.router, opts.local.acl, log.child('switch'));
    if (opts.peers) {
      const self = opts.id;
      const peers = new PeerManager(
        { ...opts.peers, self, incarnation: this.incarnation, maxStanzaBytes: opts.limits.maxStanzaBytes, maxDepth: opts.limits.maxDepth, queueBytes: opts.limits.queueBytes, authTimeoutMs: opts.limits.authTimeoutSec * 1000 },
        {
          onUp: (node) => cluster.onPeerUp(node),
          onDown: (node) => cluster.onPeerDown(node),
          onStanza: (node, st) => cluster.fromPeer(node, st),
          onSnapshot: (node, m) => cluster.onSnapshot(node, m.incarnation, m.seq, m.sessions, m.names),
          onDelta: (node, m) => cluster.onDelta(node, m.incarnation, m.seq, m.ops),
          onResync: (node) => cluster.onResyncRequest(node),
        },
        log.child('peers'),
        this.flow,
      );
      const cluster = new ClusterRouter(self, this.incarnation, opts.domains ?? [], this.switchboard, this.router, {
        isUp: (n) => peers.isUp(n),
        upNodes: () => peers.upNodes(),
        sendStanza: (n, raw) => peers.send(n, { type: MsgType.STANZA, bytes: typeof raw === 'string' ? Buffer.from(raw, 'utf8') : raw }),
        sendSnapshot: (n, snap) => peers.sendSnapshot(n, snap),
        broadcastDelta: (incarnation, seq, ops) => peers.broadcast({ type: MsgType.DELTA, origin: self, incarnation, seq, ops }),
        requestResync: (n) => void peers.send(n, { type: MsgType.RESYNC, origin: self }),
      }, log.child('cluster'));
      this.switchboard.attachCluster(cluster);
      this.cluster = cluster;
      this.peers = peers;
    }
    this.server = new ComponentServer(
      { ip: opts.local.ip, port: opts.local.port, maxConnections: opts.local.maxConnections, authTimeoutSec: opts.limits.authTimeoutSec },
      limits,
      log.child('sm-listener'),
      {
        accepting: () => this.router.ready && !this.stopped,
        lookupPass: (u) => this.users.get(u),
        onReady: (c) => this.switchboard.onComponentReady(c),
        onElement: (c, st) => this.switchboard.onComponentElement(c, st),
        onGone: (c, reason, detail) => this.switchboard.onComponentGone(c, reason, detail),
      },
      this.flow,
      this.pool,
    );
    this.router.attachFlow(this.flow);
  }

  /** Replace the sm-listener credentials (new connections use them; existing ones stay). */
  reloadUsers(users: ReadonlyMap<string, string>): void {
    this.users = users;
  }

  /** Start the router link and the sm listener; resolves with the listener's port. */
  async start(): Promise<number> {
    this.log.notice(`node '${this.opts.id}' starting: router ${this.opts.router.ip}:${this.opts.router.port}`);
    this.router.start();
    this.smPort = await this.server.listen();
    if (this.peers) await this.peers.start();
    return this.smPort;
  }

  get listenPort(): number {
    return this.smPort;
  }

  /** Resolves once the router link is authenticated (at once if it is). */
  routerUp(): Promise<void> {
    if (this.router.ready) return Promise.resolve();
    return new Promise((r) => this.upWaiters.push(r));
  }

  /**
   * Graceful stop: refuse new sm connections; in a cluster, end every session this node takes
   * part in properly (its sm tells the contacts, c2s closes the clients; messages that arrive
   * meanwhile are stored offline by the sm) and wait for that, bounded by `drainMs`; then say
   * goodbye to the peers, close the sm links and leave the router (which unbinds our names).
   */
  async stop(drainMs = 5000): Promise<void> {
    if (this.stopped) return;
    this.stopped = true;
    this.log.notice('node stopping');
    if (this.cluster) {
      const left = await this.cluster.drain(drainMs);
      if (left > 0) this.log.warn(`stopping with ${left} session(s) not ended after ${drainMs} ms`);
    }
    // peers first: after our goodbye they route to their own sms; what they sent before it is
    // still delivered to our sm, which is connected until the peers are gone
    await this.peers?.stop();
    await this.server.close(CloseReason.Shutdown, 'node stopping');
    await this.router.stop();
    await this.pool?.close();
    this.log.notice('node stopped');
  }

  /**
   * Fault injection for tests: vanish the way a killed process does (every socket dropped, no
   * goodbye, no unbinds). The object is unusable afterwards.
   */
  async crash(): Promise<void> {
    this.stopped = true;
    this.peers?.abort();
    this.server.abort();
    this.router.abort();
    void this.pool?.close();
  }

  status(): Record<string, unknown> {
    return {
      id: this.opts.id,
      uptimeSec: Math.round((Date.now() - this.startedAt) / 1000),
      router: { up: this.router.ready, connects: this.router.connects, routesIn: this.router.routesIn, routesOut: this.router.routesOut },
      smListener: { port: this.smPort, connections: this.server.connectionCount },
      names: this.switchboard.names(),
      advertised: this.switchboard.availableUpstream(),
      stats: { ...this.switchboard.stats },
      flow: { paused: this.flow.paused, pauses: this.flow.pauses, slowConsumersClosed: this.flow.stallsClosed },
      ...(this.pool ? { workers: this.pool.status() } : {}),
      ...(this.cluster && this.peers
        ? {
            cluster: {
              incarnation: this.incarnation,
              peerPort: this.peers.listenPort,
              peersUp: this.peers.upNodes(),
              domains: this.cluster.clusteredDomains(),
              proxied: this.cluster.proxiedNames(),
              sessions: this.cluster.table.allSessions(),
              stats: { ...this.cluster.stats },
            },
          }
        : {}),
    };
  }
}
