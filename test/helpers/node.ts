/**
 * Starts real jabberd2 (router, c2s) with a jabberd2-cluster node in front of its sm, the node
 * running in this process so tests can look at its state. Everything is stopped by `stop()`.
 */
import { join } from 'node:path';
import { Jabberd2, freePorts, type Jabberd2Options } from '../../src/local/jabberd2.ts';
import { nodeOptionsFor } from '../../src/local/node-options.ts';
import { ClusterNode, type NodeOptions } from '../../src/daemon.ts';
import { createLogger, fileSink } from '../../src/log.ts';

/**
 * Framing workers for the nodes tests start: JC_TEST_WORKERS (default 0, everything inline);
 * scripts/run-tests.sh runs the node and cluster e2e files a second time with 2.
 */
export function testWorkers(): number {
  const v = process.env.JC_TEST_WORKERS;
  if (v === undefined || v === '') return 0;
  if (!/^[0-9]+$/.test(v)) throw new Error(`JC_TEST_WORKERS must be a non-negative integer, got '${v}'`);
  return Number(v);
}

export interface NodeSetup {
  j: Jabberd2;
  node: ClusterNode;
  logFile: string;
  opts: NodeOptions;
  /** start a fresh ClusterNode with the same options (after node.stop()) */
  restartNode(): Promise<void>;
  stop(): Promise<void>;
}

export async function startJabberd2WithNode(
  jopts: Jabberd2Options = {},
  tweak: (o: NodeOptions) => void = () => {},
): Promise<NodeSetup> {
  const [smRouterPort] = await freePorts(1);
  const j = await Jabberd2.create({ ...jopts, smRouterPort });
  const logFile = join(j.dir, 'cluster-node.log');
  const opts = nodeOptionsFor(j, 'node1');
  opts.workers = testWorkers();
  tweak(opts);
  const mk = (): ClusterNode => new ClusterNode(opts, createLogger('debug', fileSink(logFile), 'node'));
  const setup: NodeSetup = {
    j,
    node: mk(),
    logFile,
    opts,
    async restartNode() {
      setup.node = mk();
      await setup.node.start();
      await setup.node.routerUp();
    },
    async stop() {
      await setup.node.stop().catch(() => {});
      await j.cleanup();
    },
  };
  try {
    await j.start('router');
    await setup.node.start();
    await setup.node.routerUp();
    await j.start('sm');
    await j.start('c2s');
  } catch (err) {
    await setup.stop();
    throw err;
  }
  return setup;
}
