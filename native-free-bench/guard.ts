/**
 * No native addons anywhere in the benchmark: import this module FIRST (before anything that
 * loads msgpackr) in every benchmark entry point.
 *
 * - On import it sets MSGPACKR_NATIVE_ACCELERATION_DISABLED=true, which msgpackr reads once, when
 *   its Node entry loads (node_modules/msgpackr/node-index.js). ESM evaluates imports in order
 *   and this module imports nothing that loads msgpackr, so importing it first is enough.
 * - `benchEnv()` is the environment for every sub-process (node children, sections).
 * - `checkNativeFree()` proves it: msgpackr's `isNativeAccelerationEnabled` must be false, and no
 *   `.node` shared object (a native addon) may be loaded in this process
 *   (`process.report.getReport().sharedObjects`, the list of every mapped shared library).
 *   It throws otherwise: figures measured with an addon would not be the figures of this product.
 */
import { cpus, release, totalmem } from 'node:os';

process.env['MSGPACKR_NATIVE_ACCELERATION_DISABLED'] = 'true';

export interface GuardReport {
  msgpackrNativeAcceleration: boolean;
  nativeAddons: string[];
  pid: number;
}

/** The environment for benchmark sub-processes. */
export function benchEnv(extra: Record<string, string> = {}): NodeJS.ProcessEnv {
  return { ...process.env, MSGPACKR_NATIVE_ACCELERATION_DISABLED: 'true', ...extra };
}

/** Loaded native addons (paths of `.node` shared objects). */
export function loadedAddons(): string[] {
  const report = process.report.getReport() as unknown as { sharedObjects?: string[] };
  return (report.sharedObjects ?? []).filter((p) => p.endsWith('.node'));
}

/** Asserts that msgpackr runs in pure JS and that no native addon is loaded. */
export async function checkNativeFree(): Promise<GuardReport> {
  const m = await import('msgpackr');
  const r: GuardReport = { msgpackrNativeAcceleration: m.isNativeAccelerationEnabled, nativeAddons: loadedAddons(), pid: process.pid };
  if (r.msgpackrNativeAcceleration !== false) {
    throw new Error('msgpackr native acceleration is enabled: MSGPACKR_NATIVE_ACCELERATION_DISABLED was not set before msgpackr loaded (import native-free-bench/guard.ts first)');
  }
  if (r.nativeAddons.length > 0) throw new Error(`native addons are loaded: ${r.nativeAddons.join(', ')}`);
  return r;
}

/** What the results record about the machine and the runtime. */
export function machineInfo(): Record<string, unknown> {
  const c = cpus();
  return {
    node: process.version,
    arch: process.arch,
    platform: process.platform,
    cpuModel: c[0]?.model ?? 'unknown',
    cpus: c.length,
    memGiB: Math.round(totalmem() / 2 ** 30),
    kernel: release(),
    msgpackrNativeAccelerationDisabledEnv: process.env['MSGPACKR_NATIVE_ACCELERATION_DISABLED'],
  };
}
