/**
 * The README's main command as a child process: `npx tsx scripts/local-cluster.ts --nodes N
 * --json`, with its JSON, and a cleanup that leaves no process and no run dir behind.
 *
 * The child runs in its own process group. Signals go to the script's own process (the JSON's
 * `pid`): `npx` does not pass a signal sent to its pid on to the script.
 */
import { type ChildProcess, spawn } from 'node:child_process';
import { rmSync } from 'node:fs';
import { dirname, resolve } from 'node:path';
import { fileURLToPath } from 'node:url';

const ROOT = resolve(dirname(fileURLToPath(import.meta.url)), '../..');

export interface NodeInfo {
  name: string;
  c2sPort: number;
  routerPort: number;
  peerPort: number;
  smListenerPort: number;
  pids: { router: number; sm: number; c2s: number; node: number };
  logDir: string;
}

export interface ClusterInfo {
  domain: string;
  nodes: NodeInfo[];
  state: string;
  pid: number;
  runDir: string;
}

export function alive(pid: number): boolean {
  try {
    process.kill(pid, 0);
    return true;
  } catch (e) {
    return (e as NodeJS.ErrnoException).code === 'EPERM';
  }
}

export function allPids(i: ClusterInfo): number[] {
  return [i.pid, ...i.nodes.flatMap((n) => [n.pids.router, n.pids.sm, n.pids.c2s, n.pids.node])];
}

export function exited(c: ChildProcess, ms: number): Promise<{ code: number | null; signal: NodeJS.Signals | null } | undefined> {
  if (c.exitCode !== null || c.signalCode !== null) return Promise.resolve({ code: c.exitCode, signal: c.signalCode });
  return new Promise((res) => {
    const timer = setTimeout(() => res(undefined), ms);
    c.once('exit', (code, signal) => {
      clearTimeout(timer);
      res({ code, signal });
    });
  });
}

export async function until(cond: () => boolean, ms: number, step = 100): Promise<boolean> {
  const deadline = Date.now() + ms;
  while (!cond()) {
    if (Date.now() >= deadline) return false;
    await new Promise((r) => setTimeout(r, step));
  }
  return true;
}

export class LocalClusterProcess {
  stdout = '';
  stderr = '';
  info: ClusterInfo | undefined;
  private constructor(readonly child: ChildProcess) {}

  /** Starts the command; resolves once it printed its JSON (bounded). */
  static start(nodes: number, timeoutMs = 120000): Promise<LocalClusterProcess> {
    const c = spawn('npx', ['tsx', 'scripts/local-cluster.ts', '--nodes', String(nodes), '--json'], {
      cwd: ROOT,
      detached: true,
      stdio: ['ignore', 'pipe', 'pipe'],
    });
    const lc = new LocalClusterProcess(c);
    c.stderr!.setEncoding('utf8').on('data', (d: string) => (lc.stderr += d));
    return new Promise((resolve, reject) => {
      const fail = (msg: string): void => reject(Object.assign(new Error(`${msg}\nstdout:\n${lc.stdout}\nstderr:\n${lc.stderr}`), { lc }));
      const timer = setTimeout(() => fail(`no JSON on stdout after ${timeoutMs} ms`), timeoutMs);
      c.stdout!.setEncoding('utf8').on('data', (d: string) => {
        lc.stdout += d;
        const nl = lc.stdout.indexOf('\n');
        if (nl < 0 || lc.info) return;
        clearTimeout(timer);
        try {
          lc.info = JSON.parse(lc.stdout.slice(0, nl)) as ClusterInfo;
          resolve(lc);
        } catch (e) {
          fail(`stdout is not JSON: ${(e as Error).message}`);
        }
      });
      c.once('exit', (code, signal) => {
        clearTimeout(timer);
        if (!lc.info) fail(`exited before printing its JSON (code ${code}, signal ${signal})`);
      });
    });
  }

  /** An orderly stop if possible, then kill whatever is left and remove the run dir. */
  async cleanup(): Promise<void> {
    const c = this.child;
    if (c.exitCode === null && c.signalCode === null) {
      if (this.info) {
        try {
          process.kill(this.info.pid, 'SIGINT');
        } catch {
          /* gone */
        }
        await exited(c, 20000);
      }
      try {
        process.kill(-c.pid!, 'SIGKILL');
      } catch {
        /* gone */
      }
      await exited(c, 5000);
    }
    const i = this.info;
    if (!i) return;
    // the daemons live in the script's own process group: make sure none survives
    for (const p of allPids(i)) {
      try {
        process.kill(p, 'SIGCONT');
      } catch {
        /* gone */
      }
    }
    await until(() => allPids(i).every((p) => !alive(p)), 15000);
    for (const p of allPids(i)) {
      try {
        process.kill(p, 'SIGKILL');
      } catch {
        /* gone */
      }
    }
    if (i.runDir.includes('jabberd2-cluster-')) rmSync(i.runDir, { recursive: true, force: true });
  }
}
