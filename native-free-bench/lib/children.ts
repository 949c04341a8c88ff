/**
 * Measured processes: a jabberd2-cluster node or a byte relay in a child process of its own
 * (macro/node-process.ts), so that its CPU time is its own. Optionally pinned to one CPU with
 * taskset. Talks to the child over the Node IPC channel: `cpu` (process.cpuUsage(), all
 * threads), `probe` (node counters), `stop`.
 */
import { spawn, type ChildProcess } from 'node:child_process';
import { fileURLToPath } from 'node:url';
import { dirname, join, resolve } from 'node:path';
import { benchEnv } from '../guard.ts';
import { taskset } from './procfs.ts';

/** credentials the node and the load generator share (sm listener, router side) */
export const kBenchUser = 'bench';
export const kBenchPass = 'bench-secret';
export const kClusterSecret = 'bench-cluster-secret-0123456789abcdef';

export const kRepoRoot = resolve(dirname(fileURLToPath(import.meta.url)), '../..');
const kNodeProcess = join(kRepoRoot, 'native-free-bench/macro/node-process.ts');

export interface NodeChildSpec {
  kind: 'node';
  id: string;
  routerPort: number;
  /** sm listener port (0: any) */
  smPort: number;
  workers: number;
  domains?: string[];
  peers?: { listenPort: number; peers: { name: string; port: number }[] };
}

export interface RelayChildSpec {
  kind: 'relay';
  upstreamPort: number;
}

export type ChildSpec = NodeChildSpec | RelayChildSpec;

type Msg = { type: string; id?: number; [k: string]: unknown };

export class Child {
  private nextId = 1;
  private readonly pending = new Map<number, { resolve: (m: Msg) => void; reject: (e: Error) => void }>();
  private exited = false;
  ready: Msg = { type: 'none' };
  unsupported: string | null = null;

  private constructor(readonly proc: ChildProcess, readonly label: string, readonly cpu: number | null) {
    proc.on('message', (m: Msg) => {
      if (m.type === 'reply' && m.id !== undefined) {
        const p = this.pending.get(m.id);
        this.pending.delete(m.id);
        p?.resolve(m);
      }
    });
    proc.on('exit', (code, sig) => {
      this.exited = true;
      for (const p of this.pending.values()) p.reject(new Error(`${label} exited (${code ?? sig}) with a request pending`));
      this.pending.clear();
    });
  }

  get pid(): number {
    return this.proc.pid!;
  }

  /** Starts the child (on `cpu` when given) and waits for it to be ready. */
  static spawn(spec: ChildSpec, cpu: number | null, label: string, timeoutMs = 30_000): Promise<Child> {
    // BENCH_CPU_PROF=<dir>: V8 CPU profiles of the measured processes (for docs/performance.md);
    // BENCH_NODE_FLAGS: more Node/V8 flags for them (e.g. --trace-gc, --max-semi-space-size=64)
    const prof = process.env['BENCH_CPU_PROF'];
    const flags = (process.env['BENCH_NODE_FLAGS'] ?? '').split(' ').filter((f) => f !== '');
    const args = ['--expose-gc', ...flags, ...(prof ? ['--cpu-prof', `--cpu-prof-dir=${prof}`] : []), '--import', 'tsx', kNodeProcess, JSON.stringify(spec)];
    const ts = taskset();
    const proc = cpu !== null && ts !== null
      ? spawn(ts, ['-c', String(cpu), process.execPath, ...args], { cwd: kRepoRoot, env: benchEnv(), stdio: ['ignore', 2, 2, 'ipc'] })
      : spawn(process.execPath, args, { cwd: kRepoRoot, env: benchEnv(), stdio: ['ignore', 2, 2, 'ipc'] });
    const c = new Child(proc, label, cpu !== null && ts !== null ? cpu : null);
    return new Promise((resolve, reject) => {
      const timer = setTimeout(() => {
        proc.kill('SIGKILL');
        reject(new Error(`${label}: not ready after ${timeoutMs} ms`));
      }, timeoutMs);
      const onMsg = (m: Msg): void => {
        if (m.type === 'ready' || m.type === 'unsupported' || m.type === 'error') {
          clearTimeout(timer);
          proc.off('message', onMsg);
          proc.off('exit', onExit);
          if (m.type === 'error') {
            proc.kill('SIGKILL');
            reject(new Error(`${label}: ${String(m['message'])}`));
            return;
          }
          if (m.type === 'unsupported') c.unsupported = String(m['reason']);
          c.ready = m;
          resolve(c);
        }
      };
      const onExit = (code: number | null, sig: string | null): void => {
        clearTimeout(timer);
        reject(new Error(`${label} exited before it was ready (${code ?? sig})`));
      };
      proc.on('message', onMsg);
      proc.once('exit', onExit);
    });
  }

  request(cmd: string, timeoutMs = 10_000): Promise<Msg> {
    if (this.exited) return Promise.reject(new Error(`${this.label} has exited`));
    const id = this.nextId++;
    return new Promise((resolve, reject) => {
      const timer = setTimeout(() => {
        this.pending.delete(id);
        reject(new Error(`${this.label}: no reply to '${cmd}' within ${timeoutMs} ms`));
      }, timeoutMs);
      this.pending.set(id, {
        resolve: (m) => {
          clearTimeout(timer);
          resolve(m);
        },
        reject: (e) => {
          clearTimeout(timer);
          reject(e);
        },
      });
      this.proc.send({ cmd, id });
    });
  }

  /** CPU seconds used by the child so far (process.cpuUsage(): user + system, all threads). */
  async cpuSeconds(): Promise<number> {
    const m = await this.request('cpu');
    return (Number(m['user']) + Number(m['system'])) / 1e6;
  }

  async probe(): Promise<Msg> {
    return this.request('probe');
  }

  async stop(): Promise<void> {
    if (this.exited) return;
    const gone = new Promise<void>((r) => this.proc.once('exit', () => r()));
    try {
      await this.request('stop', 5000);
    } catch {
      /* exiting anyway */
    }
    const t = setTimeout(() => this.proc.kill('SIGKILL'), 5000);
    await gone;
    clearTimeout(t);
  }
}
