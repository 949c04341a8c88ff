/**
 * NodeOptions for a jabberd2-cluster node in front of a locally started jabberd2 (tests, the
 * local cluster command): the router link uses the c2s/s2s credentials, the sm listener is
 * where the sm's <router><port> points and accepts the sm's credentials.
 */
import type { NodeOptions } from '../daemon.ts';
import type { Jabberd2 } from './jabberd2.ts';

export function nodeOptionsFor(j: Jabberd2, id: string, overrides: Partial<NodeOptions['limits']> = {}): NodeOptions {
  return {
    id,
    router: { ip: '127.0.0.1', port: j.routerPort, user: j.routerUser, pass: j.routerPass, retry: { initMs: 100, maxMs: 1000 }, keepaliveSec: 60 },
    local: {
      ip: '127.0.0.1',
      port: j.smRouterPort,
      maxConnections: 16,
      users: new Map([[j.smRouterUser, j.smRouterPass]]),
      acl: { all: [j.smRouterUser], bind: [], 'default-route': [], log: [] },
    },
    limits: { maxStanzaBytes: 1 << 20, maxDepth: 64, queueBytes: 16 << 20, authTimeoutSec: 10, ...overrides },
  };
}
