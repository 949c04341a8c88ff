/**
 * Runs real jabberd2 daemons (Debian's jabberd2 2.7.0: router, sm, c2s, s2s) from generated
 * configs, on 127.0.0.1 only. Used by the end-to-end tests and by the product's "bring up a local
 * cluster" command.
 *
 * Everything an instance writes lives in its work dir: configs, router-users.xml, logs
 * (`<daemon>.log` written by the daemon, `<daemon>.out` its stdout/stderr), pid files and, by
 * default, the SQLite database. The daemons do not fork; each is a direct child of this process.
 * Their pids are tracked in a module-level set and SIGKILLed when this process exits, so a crashed
 * test never leaves daemons behind.
 *
 * Environment overrides: JABBERD2_SBIN (dir of the jabberd2-* binaries, default /usr/sbin),
 * JABBERD2_LIBDIR (modules dir, default autodetected /usr/lib/<triplet>/jabberd2),
 * JABBERD2_SCHEMA (SQLite schema, .sql or .sql.gz), KEEP_JABBERD2_DIR (cleanup() keeps the dir).
 */
import { type ChildProcess, execFileSync, spawn } from 'node:child_process';
import { closeSync, existsSync, linkSync, mkdirSync, mkdtempSync, openSync, readFileSync, readdirSync, rmSync, statSync, unlinkSync, writeFileSync } from 'node:fs';
import { createServer, connect as netConnect } from 'node:net';
import { tmpdir } from 'node:os';
import { join, resolve } from 'node:path';
import { gunzipSync } from 'node:zlib';

export type Jabberd2Daemon = 'router' | 'sm' | 'c2s' | 's2s';
const DAEMONS: readonly Jabberd2Daemon[] = ['router', 'sm', 'c2s', 's2s'];

export interface Jabberd2Options {
  /** work dir; default: a fresh mkdtemp under os.tmpdir() */
  dir?: string;
  /** served domain; default 'example.test' */
  domain?: string;
  /** sm <id> (its router bind name); default 'sm' */
  smId?: string;
  /** c2s <id>; default 'c2s' */
  c2sId?: string;
  /** s2s <id>; default 's2s' */
  s2sId?: string;
  /** default: free loopback ports */
  routerPort?: number;
  c2sPort?: number;
  s2sPort?: number;
  /** where the sm's <router><port> points; default routerPort (a cluster node listens there) */
  smRouterPort?: number;
  /** credentials the sm uses toward smRouterPort; default jabberd/secret */
  smRouterUser?: string;
  smRouterPass?: string;
  /** credentials c2s and s2s use toward the router; default jabberd/secret */
  routerUser?: string;
  routerPass?: string;
  /** router-users.xml entries; default { jabberd: 'secret' } */
  routerUsers?: Record<string, string>;
  /** router ACL 'all' (may bind any name, default route, log); default ['jabberd'] */
  aclAll?: string[];
  /** router <local><secret>: enables XEP-0114 legacy components; default unset (disabled) */
  legacySecret?: string;
  /** SQLite file; default <dir>/jabberd2.db, created from the Debian schema if missing */
  dbPath?: string;
  /** also configure s2s (default false) */
  s2s?: boolean;
  /** more domains served by this sm (<local><id>) and c2s (<local><id>) */
  extraDomains?: string[];
  /** sm <user><auto-create/>; default false (stock: users are created by c2s registration) */
  autoCreate?: boolean;
}

export interface StartOptions {
  /** bound on the readiness wait; default 15000 */
  timeoutMs?: number;
  /** wait until ready (default true); with false, call waitReady() later */
  wait?: boolean;
}

/** A daemon child: tracked until it exits. */
interface Proc {
  child: ChildProcess;
  pid: number;
  /** log size when it was spawned: readiness markers are looked for after this offset */
  logOffset: number;
  exited: boolean;
  exitCode: number | null;
  exitSignal: NodeJS.Signals | null;
  exitPromise: Promise<void>;
}

// ---------------------------------------------------------------------------------------------
// process-wide safety net

const livePids = new Set<number>();
let safetyNetInstalled = false;

function killLeftovers(): void {
  for (const pid of livePids) {
    try {
      process.kill(pid, 'SIGKILL');
    } catch {
      /* already gone */
    }
  }
  livePids.clear();
}

function installSafetyNet(): void {
  if (safetyNetInstalled) return;
  safetyNetInstalled = true;
  process.on('exit', killLeftovers);
  for (const sig of ['SIGINT', 'SIGTERM', 'SIGHUP'] as const) {
    const onSignal = (): void => {
      killLeftovers();
      // keep the default behaviour (die of the signal) unless someone else handles it
      if (process.listenerCount(sig) === 1) {
        process.removeListener(sig, onSignal);
        process.kill(process.pid, sig);
      }
    };
    process.on(sig, onSignal);
  }
}

// ---------------------------------------------------------------------------------------------
// helpers

function env(name: string): string | undefined {
  const v = process.env[name];
  return v !== undefined && v !== '' ? v : undefined;
}

const SBIN = env('JABBERD2_SBIN') ?? '/usr/sbin';
const SCHEMA = env('JABBERD2_SCHEMA') ?? '/usr/share/doc/jabberd2/db-setup.sqlite.gz';

let libDirCache: string | undefined;
/** jabberd2 modules dir (storage_sqlite.so, authreg_sqlite.so, mod_*.so). */
export function jabberd2LibDir(): string {
  if (libDirCache !== undefined) return libDirCache;
  const fromEnv = env('JABBERD2_LIBDIR');
  if (fromEnv !== undefined) return (libDirCache = fromEnv);
  const candidates: string[] = [];
  try {
    for (const e of readdirSync('/usr/lib')) candidates.push(join('/usr/lib', e, 'jabberd2'));
  } catch {
    /* ignore */
  }
  candidates.push('/usr/lib/jabberd2', '/usr/local/lib/jabberd2');
  for (const c of candidates) if (existsSync(join(c, 'mod_session.so'))) return (libDirCache = c);
  return (libDirCache = '/usr/lib/x86_64-linux-gnu/jabberd2');
}

function xmlText(s: string): string {
  return s.replace(/&/g, '&amp;').replace(/</g, '&lt;').replace(/>/g, '&gt;');
}

const sleep = (ms: number): Promise<void> => new Promise((r) => setTimeout(r, ms));

/** Ports handed out by this process, so two allocations never collide before use. */
const handedOut = new Set<number>();

/** Free loopback TCP ports (bind port 0, read, close); distinct within this process. */
export async function freePorts(n: number): Promise<number[]> {
  const servers: ReturnType<typeof createServer>[] = [];
  const ports: number[] = [];
  try {
    for (let tries = 0; ports.length < n && tries < n + 50; tries++) {
      const srv = createServer();
      servers.push(srv);
      await new Promise<void>((res, rej) => {
        srv.once('error', rej);
        srv.listen(0, '127.0.0.1', () => res());
      });
      const addr = srv.address();
      const port = typeof addr === 'object' && addr !== null ? addr.port : 0;
      if (port > 0 && !handedOut.has(port)) {
        handedOut.add(port);
        ports.push(port);
      }
    }
  } finally {
    await Promise.all(servers.map((s) => new Promise<void>((r) => s.close(() => r()))));
  }
  if (ports.length < n) throw new Error(`freePorts: could only find ${ports.length} of ${n} ports`);
  return ports;
}

/** True when something accepts TCP connections on 127.0.0.1:port (bounded). */
export function portAccepts(port: number, timeoutMs = 500): Promise<boolean> {
  return new Promise((res) => {
    const sock = netConnect({ host: '127.0.0.1', port });
    const done = (ok: boolean): void => {
      clearTimeout(timer);
      sock.removeAllListeners();
      sock.on('error', () => {});
      sock.destroy();
      res(ok);
    };
    const timer = setTimeout(() => done(false), timeoutMs);
    sock.once('connect', () => done(true));
    sock.once('error', () => done(false));
  });
}

/**
 * Creates an SQLite database from the jabberd2 schema at `path` unless it exists.
 * Safe against concurrent creators: built under a temp name, then hard-linked into place.
 */
export function ensureJabberd2Db(path: string): boolean {
  if (existsSync(path)) return false;
  const raw = readFileSync(SCHEMA);
  const sql = SCHEMA.endsWith('.gz') ? gunzipSync(raw).toString('utf8') : raw.toString('utf8');
  const tmp = `${path}.tmp-${process.pid}-${Math.random().toString(36).slice(2)}`;
  try {
    execFileSync('sqlite3', [tmp], { input: sql, stdio: ['pipe', 'ignore', 'pipe'], timeout: 20000 });
    try {
      linkSync(tmp, path);
    } catch (e) {
      if ((e as NodeJS.ErrnoException).code !== 'EEXIST') throw e;
      return false;
    }
    return true;
  } finally {
    for (const f of [tmp, `${tmp}-wal`, `${tmp}-shm`, `${tmp}-journal`]) {
      try {
        unlinkSync(f);
      } catch {
        /* ignore */
      }
    }
  }
}

function tail(text: string, lines: number): string {
  const all = text.split('\n');
  if (all.length && all[all.length - 1] === '') all.pop();
  return all.slice(-lines).join('\n');
}

// ---------------------------------------------------------------------------------------------

const READY_MARKER: Record<Jabberd2Daemon, string> = {
  router: 'listening for incoming connections',
  sm: 'sm ready for sessions',
  c2s: 'ready for connections',
  s2s: 'ready for connections',
};

const STOP_GRACE_MS = 10000;
const KILL_WAIT_MS = 5000;
const RETRY = '<retry><init>-1</init><lost>-1</lost><sleep>1</sleep></retry>';

export class Jabberd2 {
  readonly dir: string;
  readonly domain: string;
  readonly extraDomains: readonly string[];
  readonly smId: string;
  readonly c2sId: string;
  readonly s2sId: string;
  readonly routerPort: number;
  readonly c2sPort: number;
  /** 0 unless s2s was configured */
  readonly s2sPort: number;
  readonly smRouterPort: number;
  readonly smRouterUser: string;
  readonly smRouterPass: string;
  readonly dbPath: string;
  /** credentials c2s/s2s use toward the router */
  readonly routerUser: string;
  readonly routerPass: string;
  readonly routerUsers: Readonly<Record<string, string>>;
  /** path of router-users.xml (the cluster node reads the same format) */
  readonly usersFile: string;
  readonly s2sEnabled: boolean;

  readonly #ownsDir: boolean;
  readonly #createdFiles = new Set<string>();
  readonly #procs = new Map<Jabberd2Daemon, Proc>();
  #cleanedUp = false;

  private constructor(init: {
    dir: string; ownsDir: boolean; domain: string; extraDomains: string[]; smId: string; c2sId: string; s2sId: string;
    routerPort: number; c2sPort: number; s2sPort: number; smRouterPort: number; smRouterUser: string; smRouterPass: string;
    routerUser: string; routerPass: string; routerUsers: Record<string, string>; dbPath: string; s2s: boolean;
  }) {
    this.dir = init.dir;
    this.#ownsDir = init.ownsDir;
    this.domain = init.domain;
    this.extraDomains = init.extraDomains;
    this.smId = init.smId;
    this.c2sId = init.c2sId;
    this.s2sId = init.s2sId;
    this.routerPort = init.routerPort;
    this.c2sPort = init.c2sPort;
    this.s2sPort = init.s2sPort;
    this.smRouterPort = init.smRouterPort;
    this.smRouterUser = init.smRouterUser;
    this.smRouterPass = init.smRouterPass;
    this.routerUser = init.routerUser;
    this.routerPass = init.routerPass;
    this.routerUsers = init.routerUsers;
    this.dbPath = init.dbPath;
    this.s2sEnabled = init.s2s;
    this.usersFile = join(init.dir, 'router-users.xml');
  }

  /** Writes configs and (if missing) the database. Starts nothing. */
  static async create(opts: Jabberd2Options = {}): Promise<Jabberd2> {
    const ownsDir = opts.dir === undefined;
    const dir = resolve(opts.dir ?? mkdtempSync(join(tmpdir(), 'jabberd2-')));
    mkdirSync(dir, { recursive: true });
    const want = (opts.routerPort === undefined ? 1 : 0) + (opts.c2sPort === undefined ? 1 : 0) + (opts.s2s && opts.s2sPort === undefined ? 1 : 0);
    const free = want > 0 ? await freePorts(want) : [];
    const routerPort = opts.routerPort ?? free.shift()!;
    const c2sPort = opts.c2sPort ?? free.shift()!;
    const s2sPort = opts.s2s ? (opts.s2sPort ?? free.shift()!) : 0;
    const j = new Jabberd2({
      dir,
      ownsDir,
      domain: opts.domain ?? 'example.test',
      extraDomains: [...(opts.extraDomains ?? [])],
      smId: opts.smId ?? 'sm',
      c2sId: opts.c2sId ?? 'c2s',
      s2sId: opts.s2sId ?? 's2s',
      routerPort,
      c2sPort,
      s2sPort,
      smRouterPort: opts.smRouterPort ?? routerPort,
      smRouterUser: opts.smRouterUser ?? 'jabberd',
      smRouterPass: opts.smRouterPass ?? 'secret',
      routerUser: opts.routerUser ?? 'jabberd',
      routerPass: opts.routerPass ?? 'secret',
      routerUsers: { ...(opts.routerUsers ?? { jabberd: 'secret' }) },
      dbPath: resolve(opts.dbPath ?? join(dir, 'jabberd2.db')),
      s2s: opts.s2s ?? false,
    });
    try {
      j.#writeConfigs(opts);
      if (ensureJabberd2Db(j.dbPath) && !ownsDir && opts.dbPath === undefined) {
        j.#createdFiles.add(j.dbPath);
        j.#createdFiles.add(`${j.dbPath}-wal`);
        j.#createdFiles.add(`${j.dbPath}-shm`);
      }
    } catch (err) {
      await j.cleanup();
      throw new Error(`jabberd2: preparing ${dir} (database ${j.dbPath}) failed: ${err instanceof Error ? err.message : String(err)}`);
    }
    return j;
  }

  /** All domains served (domain first). */
  get domains(): string[] {
    return [this.domain, ...this.extraDomains];
  }

  configPath(d: Jabberd2Daemon): string {
    return join(this.dir, `${d}.xml`);
  }
  logPath(d: Jabberd2Daemon): string {
    return join(this.dir, `${d}.log`);
  }
  /** the daemon's stdout/stderr (early errors before its log is open land here) */
  outPath(d: Jabberd2Daemon): string {
    return join(this.dir, `${d}.out`);
  }

  #write(name: string, content: string): void {
    const p = join(this.dir, name);
    writeFileSync(p, content);
    this.#createdFiles.add(p);
  }

  #writeConfigs(opts: Jabberd2Options): void {
    const lib = jabberd2LibDir();
    const dir = this.dir;
    const t = xmlText;

    this.#write(
      'router-users.xml',
      `<users>\n${Object.entries(this.routerUsers)
        .map(([n, s]) => `  <user><name>${t(n)}</name><secret>${t(s)}</secret></user>\n`)
        .join('')}</users>\n`,
    );
    this.#write('router-filter.xml', '<filter>\n</filter>\n');

    const aclAll = opts.aclAll ?? ['jabberd'];
    this.#write(
      'router.xml',
      `<router>
  <id>router</id>
  <pidfile>${t(join(dir, 'router.pid'))}</pidfile>
  <log type='file'><ident>jabberd/router</ident><file>${t(this.logPath('router'))}</file></log>
  <local>
    <ip>127.0.0.1</ip>
    <port>${this.routerPort}</port>
    <users>${t(this.usersFile)}</users>
${opts.legacySecret !== undefined ? `    <secret>${t(opts.legacySecret)}</secret>\n` : ''}  </local>
  <check><interval>1</interval><keepalive>0</keepalive></check>
  <io>
    <max_fds>1024</max_fds>
    <limits><bytes>0</bytes><connects>0</connects></limits>
    <access><order>allow,deny</order></access>
  </io>
  <aliases></aliases>
  <aci>
    <acl type='all'>${aclAll.map((u) => `<user>${t(u)}</user>`).join('')}</acl>
    <filter>${t(join(dir, 'router-filter.xml'))}</filter>
  </aci>
</router>
`,
    );

    /** the <router> section of a component's config (sm, c2s, s2s) */
    const routerBlock = (port: number, user: string, pass: string): string => `<router>
    <ip>127.0.0.1</ip>
    <port>${port}</port>
    <user>${t(user)}</user>
    <pass>${t(pass)}</pass>
    ${RETRY}
  </router>`;
    const chain = (id: string, mods: string[]): string =>
      `    <chain id='${id}'>${mods.map((m) => `<module>${m}</module>`).join('')}</chain>\n`;
    this.#write(
      'sm.xml',
      `<sm>
  <id>${t(this.smId)}</id>
  <pidfile>${t(join(dir, 'sm.pid'))}</pidfile>
${routerBlock(this.smRouterPort, this.smRouterUser, this.smRouterPass)}
  <log type='file'><ident>jabberd/sm</ident><file>${t(this.logPath('sm'))}</file></log>
  <local>
${this.domains.map((d) => `    <id>${t(d)}</id>\n`).join('')}  </local>
  <storage>
    <path>${t(lib)}</path>
    <driver>sqlite</driver>
    <sqlite>
      <dbname>${t(this.dbPath)}</dbname>
      <sql>PRAGMA synchronous = NORMAL;</sql>
      <busy-timeout>10000</busy-timeout>
    </sqlite>
  </storage>
  <aci><acl type='all'><jid>admin@${t(this.domain)}</jid></acl></aci>
  <modules>
    <path>${t(lib)}</path>
${chain('sess-start', ['status'])}${chain('sess-end', ['status', 'iq-last'])}${chain('in-sess', [
        'validate', 'status', 'privacy', 'roster', 'vacation', 'iq-vcard', 'iq-ping', 'iq-private', 'disco', 'amp', 'offline', 'announce', 'presence', 'deliver',
      ])}${chain('out-sess', [])}${chain('in-router', ['session', 'validate', 'presence', 'privacy'])}${chain('out-router', ['privacy'])}${chain('pkt-sm', [
        'iq-last', 'iq-ping', 'iq-time', 'iq-version', 'amp', 'disco', 'announce', 'help', 'echo', 'status', 'presence',
      ])}${chain('pkt-user', ['roster', 'presence', 'disco', 'iq-vcard', 'amp', 'deliver', 'vacation', 'offline', 'iq-last'])}${chain('pkt-router', [
        'session', 'disco',
      ])}${chain('user-load', ['active', 'roster', 'roster-publish', 'privacy', 'vacation'])}${chain('user-unload', [])}${chain('user-create', [
        'active', 'template-roster',
      ])}${chain('user-delete', [
        'active', 'announce', 'offline', 'privacy', 'roster', 'vacation', 'status', 'iq-last', 'iq-private', 'iq-vcard',
      ])}${chain('disco-extend', ['iq-version', 'help'])}  </modules>
  <discovery>
    <identity><category>server</category><type>im</type><name>Jabber IM server</name></identity>
    <agents/>
    <items></items>
  </discovery>
  <user>
${opts.autoCreate ? '    <auto-create/>\n' : ''}    <template></template>
  </user>
  <amp></amp>
  <offline></offline>
  <roster></roster>
  <status></status>
</sm>
`,
    );

    this.#write(
      'c2s.xml',
      `<c2s>
  <id>${t(this.c2sId)}</id>
  <pidfile>${t(join(dir, 'c2s.pid'))}</pidfile>
${routerBlock(this.routerPort, this.routerUser, this.routerPass)}
  <log type='file'><ident>jabberd/c2s</ident><file>${t(this.logPath('c2s'))}</file></log>
  <local>
${this.domains.map((d) => `    <id register-enable='true'>${t(d)}</id>\n`).join('')}    <ip>127.0.0.1</ip>
    <port>${this.c2sPort}</port>
  </local>
  <io>
    <max_fds>1024</max_fds>
    <limits><bytes>0</bytes><stanzas>0</stanzas><connects>0</connects><stanzasize>65535</stanzasize></limits>
    <access><order>allow,deny</order></access>
    <check><interval>0</interval><idle>0</idle><keepalive>0</keepalive></check>
  </io>
  <stats></stats>
  <pbx></pbx>
  <stream_redirect></stream_redirect>
  <authreg>
    <path>${t(lib)}</path>
    <module>sqlite</module>
    <mechanisms>
      <traditional><plain/><digest/></traditional>
      <sasl><plain/><digest-md5/></sasl>
    </mechanisms>
    <ssl-mechanisms>
      <traditional><plain/></traditional>
      <sasl><plain/><external/></sasl>
    </ssl-mechanisms>
    <sqlite>
      <dbname>${t(this.dbPath)}</dbname>
      <sql>PRAGMA synchronous = NORMAL;</sql>
      <busy-timeout>10000</busy-timeout>
      <password_type><plaintext/></password_type>
    </sqlite>
  </authreg>
</c2s>
`,
    );

    if (this.s2sEnabled) {
      this.#write(
        's2s.xml',
        `<s2s>
  <id>${t(this.s2sId)}</id>
  <pidfile>${t(join(dir, 's2s.pid'))}</pidfile>
${routerBlock(this.routerPort, this.routerUser, this.routerPass)}
  <log type='file'><ident>jabberd/s2s</ident><file>${t(this.logPath('s2s'))}</file></log>
  <local>
    <ip>127.0.0.1</ip>
    <port>${this.s2sPort}</port>
  </local>
  <io><max_fds>1024</max_fds><limits><stanzasize>65535</stanzasize></limits></io>
  <check><interval>60</interval><queue>60</queue><retry>300</retry><idle>86400</idle><keepalive>0</keepalive><dnscache>300</dnscache></check>
  <stats></stats>
  <lookup>
    <srv>xmpp-server</srv><srv>jabber</srv>
    <min-ttl>30</min-ttl><max-ttl>86400</max-ttl><etc-hosts-ttl>86400</etc-hosts-ttl><bad-host-timeout>3600</bad-host-timeout>
  </lookup>
  <out-conn-reuse/>
  <security></security>
</s2s>
`,
      );
    }
  }

  // -------------------------------------------------------------------------------------------
  // processes

  /** Starts a daemon; by default resolves when it is ready, rejects with its log tail on exit/timeout. */
  async start(d: Jabberd2Daemon, opts: StartOptions = {}): Promise<void> {
    if (this.#cleanedUp) throw new Error(`jabberd2 ${d}: instance in ${this.dir} was cleaned up`);
    if (!DAEMONS.includes(d)) throw new Error(`unknown jabberd2 daemon '${String(d)}'`);
    if (d === 's2s' && !this.s2sEnabled) throw new Error('jabberd2 s2s: not configured (create with { s2s: true })');
    if (this.isRunning(d)) throw new Error(`jabberd2 ${d} is already running (pid ${this.pid(d)})`);
    installSafetyNet();

    const logPath = this.logPath(d);
    let logOffset = 0;
    try {
      logOffset = statSync(logPath).size;
    } catch {
      /* no log yet */
    }
    this.#createdFiles.add(logPath);
    this.#createdFiles.add(this.outPath(d));
    this.#createdFiles.add(join(this.dir, `${d}.pid`));
    const outFd = openSync(this.outPath(d), 'a');
    let child: ChildProcess;
    try {
      child = spawn(join(SBIN, `jabberd2-${d}`), ['-c', this.configPath(d)], {
        cwd: this.dir,
        stdio: ['ignore', outFd, outFd],
      });
    } finally {
      closeSync(outFd);
    }
    const pid = child.pid;
    if (pid === undefined) {
      const err = await new Promise<Error>((r) => child.once('error', r));
      throw new Error(`jabberd2 ${d}: spawn failed: ${err.message}`);
    }
    child.unref();
    livePids.add(pid);
    const proc: Proc = {
      child,
      pid,
      logOffset,
      exited: false,
      exitCode: null,
      exitSignal: null,
      exitPromise: Promise.resolve(),
    };
    proc.exitPromise = new Promise<void>((res) => {
      child.once('exit', (code, signal) => {
        proc.exited = true;
        proc.exitCode = code;
        proc.exitSignal = signal;
        livePids.delete(pid);
        res();
      });
    });
    child.on('error', () => {
      /* reported through exit */
    });
    this.#procs.set(d, proc);
    if (opts.wait === false) return;
    await this.waitReady(d, opts);
  }

  /** Waits until a started daemon is ready (see start()). */
  async waitReady(d: Jabberd2Daemon, opts: { timeoutMs?: number } = {}): Promise<void> {
    const proc = this.#procs.get(d);
    if (!proc) throw new Error(`jabberd2 ${d}: not started`);
    const timeoutMs = opts.timeoutMs ?? 15000;
    const deadline = Date.now() + timeoutMs;
    const port = d === 'router' ? this.routerPort : d === 'c2s' ? this.c2sPort : d === 's2s' ? this.s2sPort : 0;
    let logReady = false;
    for (;;) {
      if (proc.exited) {
        throw new Error(
          `jabberd2 ${d} exited before it was ready (code ${proc.exitCode}, signal ${proc.exitSignal})\n${this.#diagnostics(d)}`,
        );
      }
      if (!logReady) logReady = this.#logSince(d, proc.logOffset).includes(READY_MARKER[d]);
      if (logReady && (port === 0 || (await portAccepts(port, 300)))) {
        if (!proc.exited) return;
        continue;
      }
      if (Date.now() >= deadline) {
        const diag = this.#diagnostics(d);
        await this.kill(d, 'SIGKILL').catch(() => {});
        throw new Error(`jabberd2 ${d} not ready after ${timeoutMs} ms (waiting for log '${READY_MARKER[d]}'${port ? ` and port ${port}` : ''}); killed it\n${diag}`);
      }
      await sleep(25);
    }
  }

  #logSince(d: Jabberd2Daemon, offset: number): string {
    try {
      const buf = readFileSync(this.logPath(d));
      return buf.subarray(Math.min(offset, buf.length)).toString('utf8');
    } catch {
      return '';
    }
  }

  #diagnostics(d: Jabberd2Daemon): string {
    let out = '';
    try {
      out = readFileSync(this.outPath(d), 'utf8');
    } catch {
      /* none */
    }
    const log = this.logOf(d);
    return `--- ${this.logPath(d)} (tail) ---\n${tail(log, 40) || '(empty)'}${out.trim() ? `\n--- ${this.outPath(d)} (tail) ---\n${tail(out, 20)}` : ''}`;
  }

  /** SIGTERM by pid (plus SIGCONT in case it was stopped), SIGKILL after a grace period; waits for exit. */
  async stop(d: Jabberd2Daemon, opts: { graceMs?: number } = {}): Promise<void> {
    const proc = this.#procs.get(d);
    if (!proc || proc.exited) return;
    this.#signal(proc, 'SIGTERM');
    this.#signal(proc, 'SIGCONT');
    if (await this.#waitExit(proc, opts.graceMs ?? STOP_GRACE_MS)) return;
    this.#signal(proc, 'SIGKILL');
    if (!(await this.#waitExit(proc, KILL_WAIT_MS))) throw new Error(`jabberd2 ${d} (pid ${proc.pid}) did not exit after SIGKILL`);
  }

  /**
   * Sends a signal. For SIGKILL/SIGTERM/SIGINT/SIGQUIT waits (bounded) for the exit; other signals
   * (SIGSTOP, SIGCONT, SIGHUP...) resolve once delivered.
   */
  async kill(d: Jabberd2Daemon, signal: NodeJS.Signals = 'SIGKILL'): Promise<void> {
    const proc = this.#procs.get(d);
    if (!proc || proc.exited) return;
    this.#signal(proc, signal);
    if (!['SIGKILL', 'SIGTERM', 'SIGINT', 'SIGQUIT'].includes(signal)) return;
    if (signal !== 'SIGKILL') this.#signal(proc, 'SIGCONT');
    const wait = signal === 'SIGKILL' ? KILL_WAIT_MS : STOP_GRACE_MS;
    if (!(await this.#waitExit(proc, wait))) throw new Error(`jabberd2 ${d} (pid ${proc.pid}) did not exit within ${wait} ms of ${signal}`);
  }

  #signal(proc: Proc, sig: NodeJS.Signals): void {
    if (proc.exited) return;
    try {
      process.kill(proc.pid, sig);
    } catch {
      /* gone already */
    }
  }

  async #waitExit(proc: Proc, ms: number): Promise<boolean> {
    if (proc.exited) return true;
    let timer: NodeJS.Timeout | undefined;
    const timedOut = new Promise<boolean>((r) => {
      timer = setTimeout(() => r(false), ms);
    });
    try {
      return await Promise.race([proc.exitPromise.then(() => true), timedOut]);
    } finally {
      clearTimeout(timer);
    }
  }

  isRunning(d: Jabberd2Daemon): boolean {
    const p = this.#procs.get(d);
    return p !== undefined && !p.exited;
  }

  pid(d: Jabberd2Daemon): number | undefined {
    const p = this.#procs.get(d);
    return p !== undefined && !p.exited ? p.pid : undefined;
  }

  /** The daemon's log file contents ('' if none yet). */
  logOf(d: Jabberd2Daemon): string {
    try {
      return readFileSync(this.logPath(d), 'utf8');
    } catch {
      return '';
    }
  }

  /** Stops everything this instance started (components first, router last). Safe to call twice. */
  async stopAll(): Promise<void> {
    const errors: unknown[] = [];
    const stopSome = async (ds: Jabberd2Daemon[]): Promise<void> => {
      const rs = await Promise.allSettled(ds.map((d) => this.stop(d)));
      for (const r of rs) if (r.status === 'rejected') errors.push(r.reason);
    };
    await stopSome(['c2s', 's2s', 'sm']);
    await stopSome(['router']);
    if (errors.length) throw errors[0];
  }

  /**
   * stopAll, then removes the work dir (or, for a caller-supplied dir, the files this instance
   * wrote there), unless env KEEP_JABBERD2_DIR is set. Safe to call twice.
   */
  async cleanup(): Promise<void> {
    await this.stopAll();
    if (this.#cleanedUp) return;
    this.#cleanedUp = true;
    if (env('KEEP_JABBERD2_DIR') !== undefined) return;
    if (this.#ownsDir) {
      rmSync(this.dir, { recursive: true, force: true });
      return;
    }
    for (const f of this.#createdFiles) rmSync(f, { force: true });
    try {
      if (readdirSync(this.dir).length === 0) rmSync(this.dir, { recursive: true, force: true });
    } catch {
      /* ignore */
    }
  }
}
