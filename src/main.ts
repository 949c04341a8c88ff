/**
 * Process entry: argv → config → ClusterNode.start(); signal handlers; no logic of its own.
 */
import { readFileSync } from 'node:fs';
import { parseCli, checkConfig, usage } from './cli.ts';
import { loadConfig, loadUsers, ConfigError } from './config/load.ts';
import { createLogger, fileSink, stderrSink } from './log.ts';
import { ClusterNode } from './daemon.ts';

function version(): string {
  const pkg = JSON.parse(readFileSync(new URL('../package.json', import.meta.url), 'utf8')) as { version: string };
  return pkg.version;
}

async function main(argv: string[]): Promise<number> {
  let cli;
  try {
    cli = parseCli(argv);
  } catch (err) {
    process.stderr.write(`jabberd2-cluster: ${(err as Error).message}\n${usage()}\n`);
    return 2;
  }
  if (cli.help) {
    process.stdout.write(usage() + '\n');
    return 0;
  }
  if (cli.version) {
    process.stdout.write(`jabberd2-cluster ${version()}\n`);
    return 0;
  }
  if (cli.checkOnly) {
    try {
      process.stdout.write((await checkConfig(cli.configPath, cli.workers !== undefined ? { workers: cli.workers } : undefined)) + '\n');
      return 0;
    } catch (err) {
      process.stderr.write(`jabberd2-cluster: ${(err as Error).message}\n`);
      return 1;
    }
  }
  let cfg;
  let users;
  try {
    cfg = loadConfig(cli.configPath, cli.workers !== undefined ? { workers: cli.workers } : undefined);
    users = loadUsers(cfg.local.users);
  } catch (err) {
    const msg = err instanceof ConfigError ? err.message : `cannot load config: ${(err as Error).message}`;
    process.stderr.write(`jabberd2-cluster: ${msg}\n`);
    return 1;
  }
  const log = createLogger(cfg.log.level, cfg.log.type === 'file' && cfg.log.file ? fileSink(cfg.log.file) : stderrSink, 'node');
  const node = new ClusterNode(
    {
      id: cfg.id,
      router: cfg.router,
      local: { ip: cfg.local.ip, port: cfg.local.port, maxConnections: cfg.local.maxConnections, users, acl: cfg.local.acl },
      limits: cfg.limits,
      domains: cfg.domains,
      ...(cfg.peers ? { peers: cfg.peers } : {}),
      workers: cfg.workers,
    },
    log,
  );
  let stopping = false;
  const stop = (sig: string): void => {
    if (stopping) return;
    stopping = true;
    log.notice(`${sig} received`);
    node.stop().then(() => process.exit(0), (err) => {
      log.error(`error while stopping: ${err}`);
      process.exit(1);
    });
  };
  process.on('SIGTERM', () => stop('SIGTERM'));
  process.on('SIGINT', () => stop('SIGINT'));
  process.on('SIGUSR1', () => log.notice(`status: ${JSON.stringify(node.status())}`));
  process.on('SIGHUP', () => {
    // the one reloadable setting: the sm listener's users file (as jabberd2's router does)
    try {
      const fresh = loadUsers(cfg.local.users);
      node.reloadUsers(fresh);
      log.notice(`SIGHUP: reloaded ${fresh.size} user(s) from ${cfg.local.users}`);
    } catch (err) {
      log.error(`SIGHUP: kept the old users: ${(err as Error).message}`);
    }
  });
  process.on('uncaughtException', (err) => {
    // a bug must be loud; links are isolated, so log and keep serving the others
    log.error(`uncaught exception: ${err.stack ?? err}`);
  });
  try {
    const port = await node.start();
    const peers = cfg.peers ? `; peers on ${cfg.peers.listen.ip}:${node.peers!.listenPort} (${cfg.peers.peers.map((p) => p.name).join(', ')})` : '; no peers (single node)';
    log.notice(`ready: sm listener on ${cfg.local.ip}:${port}${peers}; workers=${cfg.workers}`);
  } catch (err) {
    log.error(`cannot start: ${(err as Error).message}`);
    return 1;
  }
  return -1; // keep running
}

main(process.argv.slice(2)).then((code) => {
  if (code >= 0) process.exit(code);
});
