/**
 * `bash scripts/up.sh [options]`: a local cluster of N real jabberd2 nodes on 127.0.0.1.
 *
 * Every node is Debian's jabberd2 router, sm and c2s (generated configs, one shared SQLite
 * database, one domain) with a jabberd2-cluster daemon in front of the sm, run as a real child
 * process (`node bin/jabberd2-cluster.js -c <node dir>/cluster.xml`). The nodes are named n1..nN
 * and meshed with <peers> (a random cluster secret per run, never printed). Start order per node:
 * router, our daemon (until it logs `ready:` and has authenticated to the router), sm (its
 * <router><port> is our <local><port>), c2s; then every daemon must see every other node. Stop
 * order (SIGINT/SIGTERM): c2s, sm, our daemons, routers, each by pid; then the run dir is removed
 * (unless --keep).
 *
 * Two processes: the one started from the command line (the "front") re-runs this file as a
 * detached "supervisor" (its own session and process group) that starts, owns and stops all the
 * daemons. So a Ctrl-C at the terminal, which signals the whole foreground process group, reaches
 * the front only (which asks the supervisor to stop, over the IPC channel) and never the
 * daemons themselves: they are stopped one kind after the other, in order. The supervisor also
 * stops everything when the front goes away; if the supervisor dies, the front kills its
 * process group (all daemons) and removes the run dir.
 */
import { type ChildProcess, spawn } from 'node:child_process';
import { randomBytes } from 'node:crypto';
import { closeSync, existsSync, mkdtempSync, openSync, readSync, rmSync, statSync, writeFileSync, fstatSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { dirname, join, resolve } from 'node:path';
import { fileURLToPath } from 'node:url';
import { Jabberd2, ensureJabberd2Db, freePorts } from '../src/local/jabberd2.ts';

const ROOT = resolve(dirname(fileURLToPath(import.meta.url)), '..');
const SELF = fileURLToPath(import.meta.url);
const DAEMON_BIN = join(ROOT, 'bin', 'jabberd2-cluster.js');
/** set in the supervisor's environment (together with an IPC channel) */
const SUPERVISOR_ENV = 'JABBERD2_CLUSTER_LOCAL_SUPERVISOR';
const PROG = 'local-cluster';

// ---------------------------------------------------------------------------------------------
// command line

interface Args {
  nodes: number;
  domain: string;
  json: boolean;
  /** seconds; 0 = off */
  statusInterval: number;
  keep: boolean;
  /** bound, in seconds, on each start-up wait */
  timeout: number;
  help: boolean;
}

class UsageError extends Error {}

function usage(): string {
  return [
    'usage: bash scripts/up.sh [options]        (or: npx tsx scripts/local-cluster.ts [options])',
    '',
    'Brings up a local jabberd2 cluster on 127.0.0.1: N nodes named n1..nN, each a real jabberd2',
    'router, c2s and sm (one shared SQLite database, one domain) with a jabberd2-cluster daemon in',
    'front of the sm, the daemons meshed with each other. Prints how to connect, then runs until',
    'SIGINT (Ctrl-C) or SIGTERM, and stops everything (c2s, sm, cluster daemons, routers).',
    '',
    '  --nodes N             number of nodes, 1..9 (default 3)',
    '  --domain D            the XMPP domain served by every node (default example.test)',
    '  --json                print one JSON object on stdout once the cluster is meshed:',
    '                        {domain, nodes:[{name, c2sPort, routerPort, peerPort, smListenerPort,',
    '                        pids:{router, sm, c2s, node}, logDir}], state:"meshed", pid, runDir};',
    '                        `pid` is the process to signal; peerPort is null with --nodes 1;',
    '                        all human text goes to stderr',
    '  --status-interval S   re-print the cluster state every S seconds (default: off);',
    '                        SIGUSR1 re-prints it at any time',
    '  --timeout S           bound on each start-up wait, in seconds (default 30)',
    '  --keep                keep the run dir (configs, logs, database) after stopping',
    '  -h, --help            print this help and exit',
    '',
    'Exit status: 0 after a requested stop; 1 when start-up failed (the failing daemon\'s log tail',
    'is printed and everything started is stopped); 2 on a usage error; 128+signal when start-up',
    'was interrupted by that signal.',
  ].join('\n');
}

const DOMAIN_RE = /^(?=.{1,253}$)[a-z0-9](?:[a-z0-9-]{0,61}[a-z0-9])?(?:\.[a-z0-9](?:[a-z0-9-]{0,61}[a-z0-9])?)*$/;

function parseArgs(argv: readonly string[]): Args {
  const a: Args = { nodes: 3, domain: 'example.test', json: false, statusInterval: 0, keep: false, timeout: 30, help: false };
  const seen = new Set<string>();
  for (let i = 0; i < argv.length; i++) {
    const arg = argv[i]!;
    const eq = arg.startsWith('--') ? arg.indexOf('=') : -1;
    const name = eq > 0 ? arg.slice(0, eq) : arg;
    const inline = eq > 0 ? arg.slice(eq + 1) : undefined;
    const canonical = name === '-h' ? '--help' : name;
    if (seen.has(canonical)) throw new UsageError(`${canonical} given more than once`);
    seen.add(canonical);
    const value = (): string => {
      if (inline !== undefined) return inline;
      const next = argv[i + 1];
      if (next === undefined || next.startsWith('-')) throw new UsageError(`${name} needs a value`);
      i++;
      return next;
    };
    const flag = (): true => {
      if (inline !== undefined) throw new UsageError(`${name} takes no value`);
      return true;
    };
    const int = (v: string, min: number, max: number): number => {
      if (!/^[0-9]{1,6}$/.test(v) || Number(v) < min || Number(v) > max) throw new UsageError(`${name} expects an integer ${min}..${max}, got '${v}'`);
      return Number(v);
    };
    switch (canonical) {
      case '--nodes':
        a.nodes = int(value(), 1, 9);
        break;
      case '--domain': {
        const d = value().toLowerCase();
        if (!DOMAIN_RE.test(d)) throw new UsageError(`--domain expects a domain name (letters, digits, '-', '.'), got '${d}'`);
        a.domain = d;
        break;
      }
      case '--json':
        a.json = flag();
        break;
      case '--status-interval':
        a.statusInterval = int(value(), 1, 86400);
        break;
      case '--timeout':
        a.timeout = int(value(), 1, 600);
        break;
      case '--keep':
        a.keep = flag();
        break;
      case '--help':
        a.help = flag();
        break;
      default:
        throw new UsageError(arg.startsWith('-') ? `unknown option '${name}'` : `unexpected argument '${arg}'`);
    }
  }
  return a;
}

// ---------------------------------------------------------------------------------------------
// small helpers

const sleep = (ms: number): Promise<void> => new Promise((r) => setTimeout(r, ms));

function fileSize(path: string): number {
  try {
    return statSync(path).size;
  } catch {
    return 0;
  }
}

/** The file's contents from byte `offset` on ('' if it does not exist). */
function readFrom(path: string, offset: number): string {
  let fd: number;
  try {
    fd = openSync(path, 'r');
  } catch {
    return '';
  }
  try {
    const size = fstatSync(fd).size;
    if (size <= offset) return '';
    const buf = Buffer.alloc(size - offset);
    const n = readSync(fd, buf, 0, buf.length, offset);
    return buf.subarray(0, n).toString('utf8');
  } finally {
    closeSync(fd);
  }
}

function tail(text: string, lines: number): string {
  const all = text.split('\n');
  if (all.length && all[all.length - 1] === '') all.pop();
  return all.slice(-lines).join('\n');
}

function fileTail(path: string, lines = 30): string {
  const t = tail(readFrom(path, 0), lines);
  return `--- ${path} (last ${lines} lines) ---\n${t || '(empty)'}`;
}

function xmlText(s: string): string {
  return s.replace(/&/g, '&amp;').replace(/</g, '&lt;').replace(/>/g, '&gt;');
}

/** A random secret: 32 random bytes, 43 characters of base64url. */
function secret(): string {
  return randomBytes(32).toString('base64url');
}

const SIGNAL_NUMBER: Record<string, number> = { SIGHUP: 1, SIGINT: 2, SIGTERM: 15 };

// ---------------------------------------------------------------------------------------------
// messages between the front and the supervisor (IPC)

type ToSupervisor = { cmd: 'stop'; signal: string } | { cmd: 'status' };
type ToFront = { type: 'hello' } | { type: 'state'; runDir: string; pids: number[]; keep: boolean };

// ---------------------------------------------------------------------------------------------
// the front: what the user started

async function front(argv: readonly string[]): Promise<void> {
  const loader = import.meta.resolve('tsx');
  const child = spawn(process.execPath, ['--import', loader, SELF, ...argv], {
    cwd: ROOT,
    detached: true,
    stdio: ['ignore', 'inherit', 'inherit', 'ipc'],
    env: { ...process.env, [SUPERVISOR_ENV]: '1' },
  });
  let ready = false;
  const queued: ToSupervisor[] = [];
  let known: { runDir: string; pids: number[]; keep: boolean } | undefined;
  const send = (m: ToSupervisor): void => {
    if (!ready) {
      queued.push(m);
      return;
    }
    if (child.connected) child.send(m, () => {});
  };
  child.on('message', (m: ToFront) => {
    if (m.type === 'hello') {
      ready = true;
      for (const q of queued.splice(0)) send(q);
    } else if (m.type === 'state') {
      known = { runDir: m.runDir, pids: m.pids, keep: m.keep };
    }
  });
  for (const sig of ['SIGINT', 'SIGTERM', 'SIGHUP'] as const) process.on(sig, () => send({ cmd: 'stop', signal: sig }));
  process.on('SIGUSR1', () => send({ cmd: 'status' }));
  child.on('error', (err) => {
    process.stderr.write(`${PROG}: cannot start the supervisor: ${err.message}\n`);
    process.exit(1);
  });
  child.on('exit', (code, signal) => {
    if (signal !== null) {
      // the supervisor was killed: nothing stops the daemons but us
      process.stderr.write(`${PROG}: the supervisor (pid ${child.pid}) died of ${signal}; killing its daemons\n`);
      try {
        process.kill(-child.pid!, 'SIGKILL');
      } catch {
        /* group gone */
      }
      for (const pid of known?.pids ?? []) {
        try {
          process.kill(pid, 'SIGKILL');
        } catch {
          /* gone */
        }
      }
      if (known && !known.keep) rmSync(known.runDir, { recursive: true, force: true });
      process.exit(1);
    }
    process.exit(code ?? 1);
  });
}

// ---------------------------------------------------------------------------------------------
// the supervisor

interface Member {
  name: string;
  j: Jabberd2;
  dir: string;
  peerPort: number;
  smListenerPort: number;
  configFile: string;
  logFile: string;
  child?: ChildProcess;
  exited?: { code: number | null; signal: NodeJS.Signals | null };
  exitPromise?: Promise<void>;
  /** log offset when the daemon was spawned */
  logStart: number;
  /** daemons already reported as gone */
  reported: Set<string>;
}

interface NodeStatus {
  id?: string;
  uptimeSec?: number;
  router?: { up?: boolean };
  smListener?: { port?: number; connections?: number };
  names?: unknown;
  cluster?: { peersUp?: string[]; proxied?: string[]; sessions?: unknown[]; domains?: string[] };
}

class Interrupted extends Error {
  constructor(readonly signal: string) {
    super(`start-up interrupted by ${signal}`);
  }
}

class StartupError extends Error {}

const JABBERD2_DAEMONS = ['router', 'sm', 'c2s'] as const;
const NODE_STOP_GRACE_MS = 10000;
const NODE_KILL_WAIT_MS = 5000;
const STATUS_WAIT_MS = 3000;

class Supervisor {
  readonly members: Member[] = [];
  runDir = '';
  private stopSignal: string | null = null;
  private stopping: Promise<void> | null = null;
  private running = false;
  private monitor: NodeJS.Timeout | undefined;
  private statusTimer: NodeJS.Timeout | undefined;
  private statusBusy = false;
  private readonly startedAt = Date.now();
  /** a line of human text: stdout, or stderr with --json (stdout then carries the JSON only) */
  private readonly say: (s: string) => void;

  constructor(private readonly args: Args) {
    this.say = args.json ? (s) => process.stderr.write(s + '\n') : (s) => process.stdout.write(s + '\n');
  }

  private toFront(m: ToFront): void {
    if (process.send && process.connected) process.send(m, () => {});
  }

  private reportState(): void {
    const pids: number[] = [];
    for (const m of this.members) {
      for (const d of JABBERD2_DAEMONS) {
        const p = m.j.pid(d);
        if (p !== undefined) pids.push(p);
      }
      if (m.child?.pid !== undefined && !m.exited) pids.push(m.child.pid);
    }
    this.toFront({ type: 'state', runDir: this.runDir, pids, keep: this.args.keep });
  }

  /** SIGINT/SIGTERM/SIGHUP, or the front asking, or the front gone (`why` says so). */
  requestStop(signal: string, why: string = signal): void {
    if (this.stopSignal !== null) return;
    this.stopSignal = signal;
    if (this.running) {
      process.stderr.write(`${PROG}: ${why}: stopping the cluster\n`);
      void this.shutdown(0);
    } else {
      process.stderr.write(`${PROG}: ${why} during start-up: stopping what was started\n`);
    }
  }

  private checkInterrupted(): void {
    if (this.stopSignal !== null) throw new Interrupted(this.stopSignal);
  }

  /** Polls `cond` every `everyMs` until it returns a value, for at most `ms`. */
  private async waitFor<T>(what: string, ms: number, everyMs: number, cond: () => T | undefined | Promise<T | undefined>): Promise<T> {
    const deadline = Date.now() + ms;
    for (;;) {
      this.checkInterrupted();
      const v = await cond();
      if (v !== undefined) return v;
      if (Date.now() >= deadline) throw new StartupError(`timed out after ${ms} ms waiting for ${what}`);
      await sleep(everyMs);
    }
  }

  // ------------------------------------------------------------------ start-up

  async start(): Promise<void> {
    const a = this.args;
    const timeoutMs = a.timeout * 1000;
    this.runDir = mkdtempSync(join(tmpdir(), 'jabberd2-cluster-'));
    const dbPath = join(this.runDir, 'jabberd2.db');
    ensureJabberd2Db(dbPath);
    const names = Array.from({ length: a.nodes }, (_, i) => `n${i + 1}`);
    const peerPorts = await freePorts(a.nodes);
    const smPorts = await freePorts(a.nodes);
    const clusterSecret = secret();
    const c2sPass = secret(); // router user 'jabberd' (c2s)
    const nodePass = secret(); // router user 'cluster' (our daemons)
    const smPass = secret(); // user 'sm' on our daemons' sm listeners
    const stepT0 = Date.now();

    for (let i = 0; i < a.nodes; i++) {
      const name = names[i]!;
      const dir = join(this.runDir, name);
      const j = await Jabberd2.create({
        dir,
        domain: a.domain,
        dbPath,
        smRouterPort: smPorts[i]!,
        smRouterUser: 'sm',
        smRouterPass: smPass,
        routerUser: 'jabberd',
        routerPass: c2sPass,
        routerUsers: { jabberd: c2sPass, cluster: nodePass },
        aclAll: ['jabberd', 'cluster'],
      });
      const m: Member = {
        name,
        j,
        dir,
        peerPort: peerPorts[i]!,
        smListenerPort: smPorts[i]!,
        configFile: join(dir, 'cluster.xml'),
        logFile: join(dir, 'jabberd2-cluster.log'),
        logStart: 0,
        reported: new Set(),
      };
      this.members.push(m);
      const peers = names
        .map((nm, k) => (k === i ? '' : `    <peer><name>${nm}</name><host>127.0.0.1</host><port>${peerPorts[k]}</port></peer>\n`))
        .join('');
      writeFileSync(join(dir, 'cluster-users.xml'), `<users>\n  <user><name>sm</name><secret>${xmlText(smPass)}</secret></user>\n</users>\n`, { mode: 0o600 });
      writeFileSync(
        m.configFile,
        `<!-- generated by scripts/local-cluster.ts for node ${name} of a local cluster -->
<cluster>
  <id>${name}</id>
  <router>
    <ip>127.0.0.1</ip>
    <port>${j.routerPort}</port>
    <user>cluster</user>
    <pass>${xmlText(nodePass)}</pass>
    <retry><init_ms>100</init_ms><max_ms>1000</max_ms></retry>
  </router>
  <local>
    <ip>127.0.0.1</ip>
    <port>${m.smListenerPort}</port>
    <users>cluster-users.xml</users>
    <aci><acl type='all'><user>sm</user></acl></aci>
  </local>
${a.nodes > 1 ? `  <peers>
    <secret>${xmlText(clusterSecret)}</secret>
    <listen><ip>127.0.0.1</ip><port>${m.peerPort}</port></listen>
${peers}    <retry><init_ms>100</init_ms><max_ms>1000</max_ms></retry>
  </peers>
` : ''}  <domains><domain>${xmlText(a.domain)}</domain></domains>
  <log type='stderr'><level>notice</level></log>
</cluster>
`,
        { mode: 0o600 },
      );
    }
    this.checkInterrupted();

    // the phases run on all nodes at once; each node still gets router, daemon, sm, c2s in order
    const phase = async (what: string, f: (m: Member) => Promise<void>): Promise<void> => {
      this.checkInterrupted();
      const rs = await Promise.allSettled(this.members.map(f));
      this.reportState();
      const failed = rs.flatMap((r) => (r.status === 'rejected' ? [r.reason as unknown] : []));
      const interrupted = failed.find((e) => e instanceof Interrupted);
      if (interrupted) throw interrupted;
      if (failed.length > 0) {
        throw new StartupError(`${what} failed:\n${failed.map((e) => (e instanceof Error ? e.message : String(e))).join('\n\n')}`);
      }
    };

    const before = new Map((['SIGINT', 'SIGTERM', 'SIGHUP'] as const).map((s) => [s, new Set(process.listeners(s))]));
    await phase('starting the jabberd2 routers', (m) => m.j.start('router', { timeoutMs }).catch((e: Error) => {
      throw new Error(`node ${m.name}: ${e.message}`);
    }));
    // src/local/jabberd2.ts SIGKILLs its daemons on SIGINT/SIGTERM/SIGHUP (a safety net for
    // tests); here they are stopped in order instead. Its 'exit' safety net stays.
    for (const [sig, had] of before) for (const l of process.listeners(sig)) if (!had.has(l)) process.removeListener(sig, l as () => void);

    await phase('starting the jabberd2-cluster daemons', (m) => this.startDaemon(m, timeoutMs));
    await phase('starting the jabberd2 session managers', (m) => m.j.start('sm', { timeoutMs }).catch((e: Error) => {
      throw new Error(`node ${m.name}: ${e.message}`);
    }));
    await phase('starting jabberd2 c2s', (m) => m.j.start('c2s', { timeoutMs }).catch((e: Error) => {
      throw new Error(`node ${m.name}: ${e.message}`);
    }));
    await this.waitMeshed(timeoutMs);
    this.running = true;
    this.reportState();
    this.print(Date.now() - stepT0);
    this.monitor = setInterval(() => this.watch(), 1000);
    if (a.statusInterval > 0) this.statusTimer = setInterval(() => void this.printStatus(), a.statusInterval * 1000);
  }

  private async startDaemon(m: Member, timeoutMs: number): Promise<void> {
    m.logStart = fileSize(m.logFile);
    const fd = openSync(m.logFile, 'a', 0o600);
    let child: ChildProcess;
    try {
      child = spawn(process.execPath, [DAEMON_BIN, '-c', m.configFile], { cwd: m.dir, stdio: ['ignore', fd, fd] });
    } finally {
      closeSync(fd);
    }
    m.child = child;
    m.exitPromise = new Promise<void>((res) => {
      child.once('exit', (code, signal) => {
        m.exited = { code, signal };
        res();
      });
    });
    child.on('error', (err) => {
      if (!m.exited) m.exited = { code: null, signal: null };
      process.stderr.write(`${PROG}: node ${m.name}: cannot run the daemon: ${err.message}\n`);
    });
    const what = `node ${m.name}: the jabberd2-cluster daemon (pid ${child.pid}) to log 'ready:' and authenticate to the router`;
    try {
      await this.waitFor(what, timeoutMs, 50, () => {
        if (m.exited) throw new StartupError(`node ${m.name}: the jabberd2-cluster daemon exited during start-up (code ${m.exited.code}, signal ${m.exited.signal})`);
        const log = readFrom(m.logFile, m.logStart);
        return log.includes('] ready: ') && log.includes('authenticated to the router') ? true : undefined;
      });
    } catch (e) {
      if (e instanceof Interrupted) throw e;
      throw new Error(`${(e as Error).message}\n${fileTail(m.logFile, 40)}`);
    }
  }

  /** Asks a daemon for its state (SIGUSR1) and parses the `status:` line it logs. */
  private async daemonStatus(m: Member, ms = STATUS_WAIT_MS): Promise<NodeStatus | undefined> {
    const pid = m.child?.pid;
    if (pid === undefined || m.exited) return undefined;
    const offset = fileSize(m.logFile);
    try {
      process.kill(pid, 'SIGUSR1');
    } catch {
      return undefined;
    }
    const deadline = Date.now() + ms;
    for (;;) {
      const text = readFrom(m.logFile, offset);
      for (const line of text.split('\n')) {
        const at = line.indexOf('] status: ');
        if (at < 0) continue;
        try {
          return JSON.parse(line.slice(at + '] status: '.length)) as NodeStatus;
        } catch {
          /* a partial line: read again */
        }
      }
      if (Date.now() >= deadline || m.exited) return undefined;
      await sleep(25);
    }
  }

  /** Peers the daemon's log says are up (`peer 'X' up` / `peer 'X' down`). */
  private peersUpInLog(m: Member): Set<string> {
    const up = new Set<string>();
    for (const match of readFrom(m.logFile, m.logStart).matchAll(/\] peer '([^']+)' (up|down)\b/g)) {
      if (match[2] === 'up') up.add(match[1]!);
      else up.delete(match[1]!);
    }
    return up;
  }

  /**
   * Every daemon logged `peer 'X' up` for every other node, and its state confirms it: the peer
   * links are up and the other nodes' sm aliases (`sm--<node>`) are bound on its router.
   */
  private async waitMeshed(timeoutMs: number): Promise<void> {
    if (this.members.length < 2) return;
    const others = (m: Member): string[] => this.members.filter((o) => o !== m).map((o) => o.name);
    let last = '';
    try {
      await this.waitFor('the nodes to see each other (mesh)', timeoutMs, 100, async () => {
        for (const m of this.members) {
          if (m.exited) throw new StartupError(`node ${m.name}: the jabberd2-cluster daemon exited (code ${m.exited.code}, signal ${m.exited.signal})\n${fileTail(m.logFile, 40)}`);
          const up = this.peersUpInLog(m);
          const missing = others(m).filter((o) => !up.has(o));
          if (missing.length) {
            last = `${m.name} has not logged peer(s) ${missing.join(', ')} up`;
            return undefined;
          }
        }
        const states = await Promise.all(this.members.map((m) => this.daemonStatus(m)));
        for (const [i, m] of this.members.entries()) {
          const st = states[i];
          const peersUp = st?.cluster?.peersUp ?? [];
          const proxied = st?.cluster?.proxied ?? [];
          const missing = others(m).filter((o) => !peersUp.includes(o) || !proxied.includes(`sm--${o}`));
          if (!st || missing.length) {
            last = st ? `${m.name}: peers up [${peersUp.join(', ')}], proxied [${proxied.join(', ')}]` : `${m.name}: no status answer`;
            await sleep(200);
            return undefined;
          }
        }
        return true;
      });
    } catch (e) {
      if (e instanceof StartupError) {
        throw new StartupError(`${e.message} (${last})\n${this.members.map((m) => fileTail(m.logFile, 15)).join('\n')}`);
      }
      throw e;
    }
  }

  // ------------------------------------------------------------------ output

  private info(): Record<string, unknown> {
    return {
      domain: this.args.domain,
      nodes: this.members.map((m) => ({
        name: m.name,
        c2sPort: m.j.c2sPort,
        routerPort: m.j.routerPort,
        peerPort: this.members.length > 1 ? m.peerPort : null,
        smListenerPort: m.smListenerPort,
        pids: { router: m.j.pid('router') ?? null, sm: m.j.pid('sm') ?? null, c2s: m.j.pid('c2s') ?? null, node: m.child?.pid ?? null },
        logDir: m.dir,
      })),
      state: 'meshed',
      pid: process.ppid,
      runDir: this.runDir,
    };
  }

  private print(tookMs: number): void {
    const a = this.args;
    const frontPid = process.ppid;
    if (a.json) process.stdout.write(JSON.stringify(this.info()) + '\n');
    const rows = [
      ['node', 'client (c2s)', 'router', 'peer', 'sm listener', 'pids: router', 'node', 'sm', 'c2s', 'logs'],
      ...this.members.map((m) => [
        m.name,
        String(m.j.c2sPort),
        String(m.j.routerPort),
        this.members.length > 1 ? String(m.peerPort) : '-',
        String(m.smListenerPort),
        String(m.j.pid('router') ?? '-'),
        String(m.child?.pid ?? '-'),
        String(m.j.pid('sm') ?? '-'),
        String(m.j.pid('c2s') ?? '-'),
        m.dir,
      ]),
    ];
    const widths = rows[0]!.map((_, c) => Math.max(...rows.map((r) => r[c]!.length)));
    const table = rows.map((r) => '  ' + r.map((cell, c) => (c === r.length - 1 ? cell : cell.padEnd(widths[c]!))).join('  ')).join('\n');
    const first = this.members[0]!;
    const n = this.members.length;
    this.say(
      [
        '',
        `jabberd2 cluster up: ${n} node${n === 1 ? '' : 's'} serving '${a.domain}' on 127.0.0.1 (${n > 1 ? 'meshed' : 'single node'} in ${(tookMs / 1000).toFixed(1)} s)`,
        '',
        table,
        '',
        `  run dir ${this.runDir}${a.keep ? ' (kept after stopping: --keep)' : ' (removed when stopped)'}`,
        `  logs per node: router.log, sm.log, c2s.log (jabberd2), jabberd2-cluster.log (our daemon)`,
        '',
        'Connect with any XMPP client, to any node (all serve the same domain and the same accounts):',
        `  server/host 127.0.0.1, port = the node's client port (e.g. ${first.j.c2sPort} for ${first.name})`,
        `  plain TCP without TLS (turn encryption off), SASL PLAIN (password sent in clear: loopback only)`,
        `  accounts: in-band registration (XEP-0077) is enabled: let the client create e.g. alice@${a.domain}`,
        `  example, once alice and bob are registered: Debian's sendxmpp sends bob a message through ${first.name}:`,
        `    echo hello | sendxmpp -u alice -p PASSWORD -j 127.0.0.1:${first.j.c2sPort} -o ${a.domain} bob@${a.domain}`,
        '',
        `Stop: Ctrl-C, or kill -INT ${frontPid}. Cluster state: kill -USR1 ${frontPid}${a.statusInterval > 0 ? ` (also printed every ${a.statusInterval} s)` : ''}.`,
      ].join('\n'),
    );
  }

  /** Re-prints the cluster state (SIGUSR1, --status-interval), from each daemon's own status. */
  async printStatus(): Promise<void> {
    if (!this.running || this.stopping || this.statusBusy) return;
    this.statusBusy = true;
    try {
      const states = await Promise.all(this.members.map((m) => this.daemonStatus(m)));
      const up = Math.round((Date.now() - this.startedAt) / 1000);
      const lines = [`${new Date().toISOString()} cluster '${this.args.domain}', ${this.members.length} node(s), up ${up} s:`];
      let healthy = true;
      for (const [i, m] of this.members.entries()) {
        const st = states[i];
        const procs = [...JABBERD2_DAEMONS.map((d) => `${d} ${m.j.isRunning(d) ? m.j.pid(d) : 'DOWN'}`), `node ${m.child?.pid !== undefined && !m.exited ? m.child.pid : 'DOWN'}`];
        if (procs.some((p) => p.endsWith('DOWN'))) healthy = false;
        if (!st) {
          healthy = false;
          lines.push(`  ${m.name}: no status answer from the jabberd2-cluster daemon; pids: ${procs.join(', ')}`);
          continue;
        }
        const others = this.members.filter((o) => o !== m).map((o) => o.name);
        const peersUp = [...(st.cluster?.peersUp ?? [])].sort();
        if (!st.router?.up || others.some((o) => !peersUp.includes(o)) || (st.smListener?.connections ?? 0) < 1) healthy = false;
        lines.push(
          `  ${m.name}: router link ${st.router?.up ? 'up' : 'DOWN'}; sm connections ${st.smListener?.connections ?? 0}; ` +
            (others.length ? `peers up [${peersUp.join(', ')}] of [${others.join(', ')}]; ` : '') +
            (st.cluster ? `sessions in the cluster table ${Array.isArray(st.cluster.sessions) ? st.cluster.sessions.length : '?'}; ` : '') +
            `client port ${m.j.c2sPort}; pids: ${procs.join(', ')}`,
        );
      }
      lines.push(`  state: ${healthy ? (this.members.length > 1 ? 'meshed' : 'up') : 'DEGRADED'}`);
      this.say(lines.join('\n'));
    } finally {
      this.statusBusy = false;
    }
  }

  /** Once a second: reports a daemon that went away on its own (once each). */
  private watch(): void {
    if (!this.running || this.stopping) return;
    for (const m of this.members) {
      for (const d of JABBERD2_DAEMONS) {
        if (!m.j.isRunning(d) && !m.reported.has(d)) {
          m.reported.add(d);
          process.stderr.write(`${PROG}: node ${m.name}: jabberd2 ${d} exited on its own\n${fileTail(m.j.logPath(d), 20)}\n`);
        }
      }
      if (m.exited && !m.reported.has('node')) {
        m.reported.add('node');
        process.stderr.write(`${PROG}: node ${m.name}: the jabberd2-cluster daemon exited on its own (code ${m.exited.code}, signal ${m.exited.signal})\n${fileTail(m.logFile, 20)}\n`);
      }
    }
  }

  // ------------------------------------------------------------------ stopping

  private async stopDaemon(m: Member): Promise<void> {
    const child = m.child;
    if (!child || child.pid === undefined || m.exited) return;
    const waitExit = async (ms: number): Promise<boolean> => {
      if (m.exited) return true;
      let t: NodeJS.Timeout | undefined;
      const r = await Promise.race([m.exitPromise!.then(() => true), new Promise<boolean>((res) => (t = setTimeout(() => res(false), ms)))]);
      clearTimeout(t);
      return r;
    };
    try {
      process.kill(child.pid, 'SIGTERM');
    } catch {
      /* gone */
    }
    if (await waitExit(NODE_STOP_GRACE_MS)) return;
    try {
      process.kill(child.pid, 'SIGKILL');
    } catch {
      /* gone */
    }
    if (!(await waitExit(NODE_KILL_WAIT_MS))) throw new Error(`node ${m.name}: the jabberd2-cluster daemon (pid ${child.pid}) did not exit after SIGKILL`);
  }

  /** Stops everything started, in order: c2s, sm, our daemons, routers; removes the run dir. */
  stopAll(): Promise<void> {
    this.stopping ??= (async () => {
      clearInterval(this.monitor);
      clearInterval(this.statusTimer);
      const errors: string[] = [];
      const step = async (f: (m: Member) => Promise<void>): Promise<void> => {
        const rs = await Promise.allSettled(this.members.map(f));
        for (const r of rs) if (r.status === 'rejected') errors.push(r.reason instanceof Error ? r.reason.message : String(r.reason));
      };
      await step((m) => m.j.stop('c2s'));
      await step((m) => m.j.stop('sm'));
      await step((m) => this.stopDaemon(m));
      await step((m) => m.j.stop('router'));
      for (const e of errors) process.stderr.write(`${PROG}: while stopping: ${e}\n`);
      this.reportState();
      if (this.runDir !== '' && !this.args.keep) rmSync(this.runDir, { recursive: true, force: true });
      else if (this.runDir !== '') process.stderr.write(`${PROG}: run dir kept: ${this.runDir}\n`);
    })();
    return this.stopping;
  }

  async shutdown(code: number): Promise<never> {
    await this.stopAll();
    if (code === 0) process.stderr.write(`${PROG}: stopped\n`);
    process.exit(code);
  }
}

async function supervise(args: Args): Promise<void> {
  const sup = new Supervisor(args);
  for (const sig of ['SIGINT', 'SIGTERM', 'SIGHUP'] as const) process.on(sig, () => sup.requestStop(sig));
  process.on('SIGUSR1', () => void sup.printStatus());
  process.on('message', (m: ToSupervisor) => {
    if (m.cmd === 'stop') sup.requestStop(m.signal);
    else if (m.cmd === 'status') void sup.printStatus();
  });
  // the front went away (killed): nobody can stop us any more, so stop now
  process.on('disconnect', () => sup.requestStop('SIGHUP', `the controlling process (pid ${process.ppid}) went away`));
  if (process.send) process.send({ type: 'hello' } satisfies ToFront, () => {});
  try {
    await sup.start();
  } catch (err) {
    if (err instanceof Interrupted) {
      await sup.stopAll();
      process.stderr.write(`${PROG}: ${err.message}; stopped\n`);
      process.exit(128 + (SIGNAL_NUMBER[err.signal] ?? 1));
    }
    process.stderr.write(`${PROG}: start-up failed: ${err instanceof Error ? err.message : String(err)}\n`);
    process.stderr.write(`${PROG}: stopping everything that was started\n`);
    await sup.stopAll();
    process.exit(1);
  }
}

// ---------------------------------------------------------------------------------------------

const argv = process.argv.slice(2);
let args: Args;
try {
  args = parseArgs(argv);
} catch (err) {
  if (!(err instanceof UsageError)) throw err;
  process.stderr.write(`${PROG}: ${err.message}\n${usage()}\n`);
  process.exit(2);
}
if (args.help) {
  process.stdout.write(usage() + '\n');
  process.exit(0);
}
if (!existsSync(DAEMON_BIN)) {
  process.stderr.write(`${PROG}: ${DAEMON_BIN} not found\n`);
  process.exit(1);
}
if (process.env[SUPERVISOR_ENV] === '1' && process.send) await supervise(args);
else await front(argv);
