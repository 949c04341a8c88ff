/**
 * Command line: argument parsing, usage text and `--check-config`. No side effects beyond
 * reading files; main.ts decides what to print and the exit code. Main thread.
 */
import { existsSync } from 'node:fs';
import { loadConfig, loadUsers, type ConfigOverrides } from './config/load.ts';

/**
 * Used when no `-c` is given, if it exists (jabberd2 keeps router.xml, sm.xml… there). When it
 * does not exist we refuse to guess (a config/cluster.xml relative to the working directory
 * would depend on where the service was started) and ask for `-c`.
 */
export const DEFAULT_CONFIG_PATH = '/etc/jabberd2/cluster.xml';

export interface CliOptions {
  configPath: string;
  checkOnly: boolean;
  version: boolean;
  /** `--workers N`: overrides `<workers>` (range checked by the config loader) */
  workers?: number;
  help: boolean;
}

/** A command-line mistake; main.ts prints the message and the usage, and exits with 2. */
export class UsageError extends Error {
  override name = 'UsageError';
}

export interface CliEnvironment {
  /** file-existence test for the default config path (tests inject it) */
  exists?: (path: string) => boolean;
  defaultConfigPath?: string;
}

export function usage(): string {
  return [
    'usage: jabberd2-cluster [-c FILE] [--workers N] [--check-config]',
    '       jabberd2-cluster --version | --help',
    '',
    '  -c, --config FILE   configuration file',
    `                      (default: ${DEFAULT_CONFIG_PATH}, if it exists)`,
    '  --check-config      validate the configuration and its users file, print a summary, exit',
    '                      (0: valid, 1: invalid); opens no port',
    '  --workers N         worker threads (0 = none); overrides <workers>',
    '  --version           print the version and exit',
    '  -h, --help          print this help and exit',
  ].join('\n');
}

/**
 * Parses `process.argv.slice(2)`. Accepts `--config FILE`, `--config=FILE`, `-c FILE`, `-cFILE`
 * and `--workers N` / `--workers=N`. Throws UsageError on an unknown option, a missing or bad
 * value, a repeated option, a positional argument, or when no config file is given and the
 * default one does not exist (not for --help / --version, which need none).
 */
export function parseCli(argv: readonly string[], env: CliEnvironment = {}): CliOptions {
  const exists = env.exists ?? existsSync;
  const defaultPath = env.defaultConfigPath ?? DEFAULT_CONFIG_PATH;
  let configPath: string | undefined;
  let workers: number | undefined;
  let checkOnly = false;
  let version = false;
  let help = false;
  const seen = new Set<string>();
  const once = (name: string): void => {
    if (seen.has(name)) throw new UsageError(`${name} given more than once`);
    seen.add(name);
  };

  for (let i = 0; i < argv.length; i++) {
    const arg = argv[i]!;
    // the value of an option: "--opt=value", "-cvalue" or the next argument
    const value = (name: string, inline: string | undefined): string => {
      if (inline !== undefined) {
        if (inline === '') throw new UsageError(`${name} needs a value`);
        return inline;
      }
      const next = argv[i + 1];
      if (next === undefined || (next.startsWith('-') && next !== '-')) throw new UsageError(`${name} needs a value`);
      i++;
      return next;
    };
    const eq = arg.startsWith('--') ? arg.indexOf('=') : -1;
    const name = eq > 0 ? arg.slice(0, eq) : arg;
    const inline = eq > 0 ? arg.slice(eq + 1) : undefined;

    if (name === '-c' || name === '--config') {
      once('--config');
      configPath = value(name, inline);
    } else if (arg.startsWith('-c') && !arg.startsWith('--')) {
      once('--config');
      configPath = value('-c', arg.slice(2));
    } else if (name === '--workers') {
      once('--workers');
      const v = value(name, inline);
      if (!/^[0-9]{1,6}$/.test(v)) throw new UsageError(`--workers expects a non-negative integer, got '${v}'`);
      workers = Number(v);
    } else if (name === '--check-config' || name === '--version' || name === '--help' || name === '-h') {
      if (inline !== undefined) throw new UsageError(`${name} takes no value`);
      const canonical = name === '-h' ? '--help' : name;
      once(canonical);
      if (canonical === '--check-config') checkOnly = true;
      else if (canonical === '--version') version = true;
      else help = true;
    } else if (arg.startsWith('-') && arg !== '-') {
      throw new UsageError(`unknown option '${name}'`);
    } else {
      throw new UsageError(`unexpected argument '${arg}'`);
    }
  }

  if (configPath === undefined) {
    if (exists(defaultPath) || help || version) configPath = defaultPath;
    else throw new UsageError(`no configuration file: ${defaultPath} does not exist; pass -c FILE (a commented sample is config/cluster.xml)`);
  }
  const out: CliOptions = { configPath, checkOnly, version, help };
  if (workers !== undefined) out.workers = workers;
  return out;
}

function plural(n: number, word: string): string {
  return `${n} ${word}${n === 1 ? '' : 's'}`;
}

/**
 * `--check-config`: loads the configuration and its users file (throws ConfigError when either
 * is invalid) and returns a one-line summary, plus warnings for likely mistakes. Never
 * includes a secret. Opens no socket.
 */
export async function checkConfig(path: string, overrides?: ConfigOverrides): Promise<string> {
  const cfg = loadConfig(path, overrides);
  const users = loadUsers(cfg.local.users);
  const warnings: string[] = [];
  if (users.size === 0) warnings.push(`${cfg.local.users} lists no user: the session manager cannot authenticate`);
  const aclUsers = new Set(Object.values(cfg.local.acl).flat());
  for (const u of aclUsers) if (!users.has(u)) warnings.push(`ACL user '${u}' is not in ${cfg.local.users}`);
  const log = cfg.log.type === 'file' ? `to ${cfg.log.file}` : 'to stderr';
  const summary =
    `${path}: OK: node '${cfg.id}'; router ${cfg.router.ip}:${cfg.router.port} as '${cfg.router.user}'; ` +
    `sm listener ${cfg.local.ip}:${cfg.local.port} (max ${cfg.local.maxConnections}); ` +
    `${plural(users.size, 'user')} in ${cfg.local.users}; ` +
    `${plural(cfg.workers, 'worker')}; log ${cfg.log.level} ${log}`;
  return warnings.length === 0 ? summary : [summary, ...warnings.map((w) => `warning: ${w}`)].join('\n');
}
