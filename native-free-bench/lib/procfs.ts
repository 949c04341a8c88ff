/**
 * CPU accounting and pinning from /proc and taskset (Linux). Everything degrades to "not
 * available" elsewhere; callers record what they could measure.
 */
import { execFileSync } from 'node:child_process';
import { existsSync, readFileSync } from 'node:fs';

let tck = 0;
/** Clock ticks per second of /proc times (`getconf CLK_TCK`, almost always 100). */
export function clkTck(): number {
  if (tck === 0) {
    try {
      tck = Number(execFileSync('getconf', ['CLK_TCK'], { encoding: 'utf8' }).trim()) || 100;
    } catch {
      tck = 100;
    }
  }
  return tck;
}

/** utime + stime of a process, all its threads, in seconds (10 ms resolution); NaN if unreadable. */
export function procCpuSeconds(pid: number): number {
  try {
    const s = readFileSync(`/proc/${pid}/stat`, 'utf8');
    // fields after "pid (comm) ": the comm may contain spaces, so split after the last ')'
    const f = s.slice(s.lastIndexOf(')') + 2).split(' ');
    return (Number(f[11]) + Number(f[12])) / clkTck();
  } catch {
    return Number.NaN;
  }
}

/**
 * CPU time of the whole machine, seconds summed over CPUs (from /proc/stat): `proc` is time in
 * processes (user, nice, system), which is what per-process times add up to; `irq` is interrupt
 * and softirq time (much of loopback TCP runs there and is charged to no process); `steal` is
 * time the hypervisor gave to another guest.
 */
export function systemCpu(): { proc: number; irq: number; steal: number; total: number } {
  try {
    const line = readFileSync('/proc/stat', 'utf8').split('\n', 1)[0]!;
    const v = line.trim().split(/\s+/).slice(1, 9).map(Number);
    const [user, nice, system, idle, iowait, irq, softirq, steal] = v as [number, number, number, number, number, number, number, number];
    const t = clkTck();
    return { proc: (user + nice + system) / t, irq: (irq + softirq) / t, steal: steal / t, total: (user + nice + system + idle + iowait + irq + softirq + steal) / t };
  } catch {
    return { proc: Number.NaN, irq: Number.NaN, steal: Number.NaN, total: Number.NaN };
  }
}

let tasksetPath: string | null | undefined;
export function taskset(): string | null {
  if (tasksetPath === undefined) {
    tasksetPath = ['/usr/bin/taskset', '/bin/taskset', '/usr/sbin/taskset'].find((p) => existsSync(p)) ?? null;
  }
  return tasksetPath;
}

/** CPUs this process may run on (its affinity list), or [] when unknown. */
export function allowedCpus(pid = process.pid): number[] {
  const t = taskset();
  if (t === null) return [];
  try {
    const out = execFileSync(t, ['-c', '-p', String(pid)], { encoding: 'utf8' });
    const list = out.slice(out.lastIndexOf(':') + 1).trim();
    const cpus: number[] = [];
    for (const part of list.split(',')) {
      const [a, b] = part.split('-').map(Number) as [number, number | undefined];
      for (let c = a; c <= (b ?? a); c++) cpus.push(c);
    }
    return cpus;
  } catch {
    return [];
  }
}

/** Pins every thread of `pid` to `cpus`; false if it could not. */
export function pin(pid: number, cpus: readonly number[]): boolean {
  const t = taskset();
  if (t === null || cpus.length === 0) return false;
  try {
    execFileSync(t, ['-a', '-c', '-p', cpus.join(','), String(pid)], { stdio: 'ignore' });
    return true;
  } catch {
    return false;
  }
}

/**
 * How to place a load generator (this process) and `targets` measured processes: the generator
 * on the first allowed CPU, each target on a CPU of its own. null when there are not enough
 * CPUs (or no taskset): then nothing is pinned.
 */
export function cpuPlan(targets: number): { gen: number; targets: number[]; all: number[] } | null {
  const all = allowedCpus();
  if (all.length < targets + 1) return null;
  return { gen: all[0]!, targets: all.slice(1, 1 + targets), all };
}
