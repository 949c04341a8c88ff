/** A handle on V8's garbage collector, with or without --expose-gc. */
import { setFlagsFromString } from 'node:v8';
import { runInNewContext } from 'node:vm';

let cached: (() => void) | null = null;

export function gcFn(): () => void {
  if (cached !== null) return cached;
  const g = (globalThis as { gc?: () => void }).gc;
  if (typeof g === 'function') cached = g;
  else {
    setFlagsFromString('--expose-gc');
    cached = runInNewContext('gc') as () => void;
  }
  return cached;
}

/** heapUsed after two full collections. */
export function heapAfterGc(): number {
  const gc = gcFn();
  gc();
  gc();
  return process.memoryUsage().heapUsed;
}
