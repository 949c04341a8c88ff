/**
 * (child process) One measured process for the macro-benchmarks, driven over the IPC channel by
 * lib/children.ts. argv[2] is a JSON spec:
 *
 * - `{kind:'node', id, routerPort, smPort, workers, domains?, peers?}`: a jabberd2-cluster node
 *   (src/daemon.ts ClusterNode), its router link pointed at the load generator's router side.
 *   `workers` is the worker-thread count: today the node runs everything on the main thread, so
 *   the node's framing worker count (0 = inline on the main thread).
 * - `{kind:'relay', upstreamPort}`: the byte relay baseline: every accepted connection is piped
 *   both ways to a new connection to upstreamPort (`a.pipe(b); b.pipe(a)`), nothing else.
 *
 * Replies: `ready` (ports, and the native-free guard report: msgpackr in pure JS, no addon
 * loaded), then `reply` to `cpu` (process.cpuUsage(): user and system µs over all threads),
 * `probe` (node counters) and `stop`.
 */
import '../guard.ts';
import { connect, createServer, type Socket } from 'node:net';
import { checkNativeFree } from '../guard.ts';
import { ClusterNode, type NodeOptions } from '../../src/daemon.ts';
import { createLogger, stderrSink } from '../../src/log.ts';
import { kBenchPass, kBenchUser, kClusterSecret, type ChildSpec, type NodeChildSpec } from '../lib/children.ts';


type Req = { cmd: string; id: number };

function send(m: Record<string, unknown>): void {
  process.send?.(m);
}

/** null when `n` workers can be used, else why not. */
function applyWorkers(opts: NodeOptions, n: number): string | null {
  opts.workers = n;
  return null;
}

function nodeOptions(s: NodeChildSpec): NodeOptions {
  const o: NodeOptions = {
    id: s.id,
    router: { ip: '127.0.0.1', port: s.routerPort, user: kBenchUser, pass: kBenchPass, retry: { initMs: 50, maxMs: 500 }, keepaliveSec: 0 },
    local: {
      ip: '127.0.0.1',
      port: s.smPort,
      maxConnections: 16,
      users: new Map([[kBenchUser, kBenchPass]]),
      acl: { all: [kBenchUser], bind: [], 'default-route': [], log: [] },
    },
    // the defaults of config/schema.ts
    limits: { maxStanzaBytes: 2 << 20, maxDepth: 64, queueBytes: 16 << 20, authTimeoutSec: 10 },
  };
  if (s.domains) o.domains = s.domains;
  if (s.peers) {
    o.peers = {
      secret: kClusterSecret,
      listen: { ip: '127.0.0.1', port: s.peers.listenPort },
      peers: s.peers.peers.map((p) => ({ name: p.name, host: '127.0.0.1', port: p.port })),
      retry: { initMs: 50, maxMs: 500 },
      heartbeatMs: 2000,
      maxFrameBytes: 4 << 20,
    };
  }
  return o;
}

async function runNode(s: NodeChildSpec): Promise<void> {
  const opts = nodeOptions(s);
  const why = applyWorkers(opts, s.workers);
  if (why !== null) {
    send({ type: 'unsupported', reason: why });
    process.exit(0);
  }
  const node = new ClusterNode(opts, createLogger('warn', stderrSink, s.id));
  const smPort = await node.start();
  await node.routerUp();
  const guard = await checkNativeFree();
  send({ type: 'ready', smPort, peerPort: node.peers?.listenPort ?? 0, guard, pid: process.pid });
  process.on('message', (m: Req) => {
    switch (m.cmd) {
      case 'cpu': {
        const u = process.cpuUsage();
        const mem = process.memoryUsage();
        send({ type: 'reply', id: m.id, user: u.user, system: u.system, rss: mem.rss, heapUsed: mem.heapUsed });
        return;
      }
      case 'probe':
        send({
          type: 'reply',
          id: m.id,
          routerUp: node.router.ready,
          routesIn: node.router.routesIn,
          routesOut: node.router.routesOut,
          stats: { ...node.switchboard.stats },
          peersUp: node.peers?.upNodes() ?? [],
          proxied: node.cluster?.proxiedNames() ?? [],
          sessions: node.cluster?.table.sessionCount() ?? 0,
          cluster: node.cluster ? { ...node.cluster.stats } : null,
        });
        return;
      case 'stop':
        void node.stop().finally(() => {
          send({ type: 'reply', id: m.id });
          setTimeout(() => process.exit(0), 50);
        });
        return;
    }
  });
}

async function runRelay(upstreamPort: number): Promise<void> {
  const server = createServer((a: Socket) => {
    const b = connect({ host: '127.0.0.1', port: upstreamPort });
    a.setNoDelay(true);
    b.setNoDelay(true);
    a.pipe(b);
    b.pipe(a);
    const kill = (): void => {
      a.destroy();
      b.destroy();
    };
    a.on('error', kill);
    b.on('error', kill);
    a.on('close', kill);
    b.on('close', kill);
  });
  const port = await new Promise<number>((resolve) => {
    server.listen(0, '127.0.0.1', () => {
      const ad = server.address();
      resolve(typeof ad === 'object' && ad ? ad.port : 0);
    });
  });
  const guard = await checkNativeFree();
  send({ type: 'ready', port, guard, pid: process.pid });
  process.on('message', (m: Req) => {
    if (m.cmd === 'cpu') {
      const u = process.cpuUsage();
      send({ type: 'reply', id: m.id, user: u.user, system: u.system });
    } else if (m.cmd === 'probe') send({ type: 'reply', id: m.id });
    else if (m.cmd === 'stop') {
      send({ type: 'reply', id: m.id });
      setTimeout(() => process.exit(0), 50);
    }
  });
}

const spec = JSON.parse(process.argv[2] ?? '{}') as ChildSpec;
process.on('disconnect', () => process.exit(0));
try {
  if (spec.kind === 'node') await runNode(spec);
  else if (spec.kind === 'relay') await runRelay(spec.upstreamPort);
  else throw new Error(`unknown spec ${process.argv[2]}`);
} catch (err) {
  send({ type: 'error', message: (err as Error).stack ?? String(err) });
  setTimeout(() => process.exit(1), 50);
}
