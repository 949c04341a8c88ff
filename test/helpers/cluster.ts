/**
 * A local cluster for tests: N real jabberd2 instances (router, sm, c2s) on loopback sharing
 * one SQLite database, each with an in-process jabberd2-cluster node in front of its sm, the
 * nodes linked to each other. `stop()` stops everything, also after a failure.
 */
import { join } from 'node:path';
import { mkdtempSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { Jabberd2, freePorts, ensureJabberd2Db, type Jabberd2Options } from '../../src/local/jabberd2.ts';
import { nodeOptionsFor } from '../../src/local/node-options.ts';
import { ClusterNode, type NodeOptions } from '../../src/daemon.ts';
import { createLogger, fileSink } from '../../src/log.ts';
import { testWorkers } from './node.ts';

export const TEST_SECRET = 'a-test-cluster-secret-0123456789';

export interface ClusterMember {
  name: string;
  j: Jabberd2;
  node: ClusterNode;
  opts: NodeOptions;
  logFile: string;
}

export interface TestCluster {
  members: ClusterMember[];
  dbPath: string;
  domain: string;
  /** wait until every node sees every other node */
  meshed(timeoutMs?: number): Promise<void>;
  /** stop and start member i's node (jabberd2 keeps running) */
  restartNode(i: number): Promise<void>;
  stop(): Promise<void>;
}

export interface ClusterOptions {
  nodes?: number;
  domain?: string;
  /** per-member jabberd2 options */
  jabberd2?: (i: number) => Partial<Jabberd2Options>;
  /** per-member node option changes */
  tweak?: (i: number, o: NodeOptions) => void;
  /** wait for the full mesh before returning (default true) */
  waitMesh?: boolean;
  /** the nodes' peer listen ports (default: free ports) */
  peerPorts?: number[];
}

export async function startCluster(o: ClusterOptions = {}): Promise<TestCluster> {
  const n = o.nodes ?? 2;
  const domain = o.domain ?? 'example.test';
  const base = mkdtempSync(join(tmpdir(), 'jc-cluster-'));
  const dbPath = join(base, 'shared.db');
  ensureJabberd2Db(dbPath);
  const peerPorts = o.peerPorts ?? (await freePorts(n));
  const names = Array.from({ length: n }, (_, i) => `n${i + 1}`);
  const members: ClusterMember[] = [];
  const cluster: TestCluster = {
    members,
    dbPath,
    domain,
    async meshed(timeoutMs = 10000) {
      const until = Date.now() + timeoutMs;
      for (;;) {
        const ok = members.every((m) => m.node.peers!.upNodes().length === n - 1
          && members.every((o) => o === m || m.node.cluster!.proxiedNames().includes(`sm--${o.name}`)));
        if (ok) return;
        if (Date.now() > until) {
          throw new Error(`cluster not meshed after ${timeoutMs} ms: ${members.map((m) => `${m.name}: [${m.node.peers!.upNodes().join(',')}]`).join('; ')}`);
        }
        await new Promise((r) => setTimeout(r, 20));
      }
    },
    async restartNode(i) {
      const m = members[i]!;
      await m.node.stop();
      m.node = new ClusterNode(m.opts, createLogger('debug', fileSink(m.logFile), m.name));
      await m.node.start();
      await m.node.routerUp();
    },
    async stop() {
      await Promise.all(members.map((m) => m.node.stop().catch(() => {})));
      await Promise.all(members.map((m) => m.j.cleanup().catch(() => {})));
      if (!process.env.KEEP_JABBERD2_DIR) rmSync(base, { recursive: true, force: true });
    },
  };
  try {
    for (let i = 0; i < n; i++) {
      const [smRouterPort] = await freePorts(1);
      const j = await Jabberd2.create({ domain, dbPath, smRouterPort, ...(o.jabberd2?.(i) ?? {}) });
      const opts = nodeOptionsFor(j, names[i]!);
      opts.workers = testWorkers();
      opts.domains = [domain];
      opts.peers = {
        secret: TEST_SECRET,
        listen: { ip: '127.0.0.1', port: peerPorts[i]! },
        peers: names.flatMap((nm, k) => (k === i ? [] : [{ name: nm, host: '127.0.0.1', port: peerPorts[k]! }])),
        retry: { initMs: 50, maxMs: 500 },
        heartbeatMs: 500,
        maxFrameBytes: 4 << 20,
      };
      o.tweak?.(i, opts);
      const logFile = join(j.dir, 'cluster-node.log');
      const node = new ClusterNode(opts, createLogger('debug', fileSink(logFile), names[i]!));
      members.push({ name: names[i]!, j, node, opts, logFile });
      await j.start('router');
      await node.start();
      await node.routerUp();
      await j.start('sm');
      await j.start('c2s');
    }
    if (o.waitMesh !== false) await cluster.meshed();
  } catch (err) {
    await cluster.stop();
    throw err;
  }
  return cluster;
}
