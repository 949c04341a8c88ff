// Entry of the worker threads of handoff.bench.ts (raw worker_threads and SharedArrayBuffer ring
// channels; the piscina channel uses the product's own src/workers/worker-entry.mjs).
//
// Plain .mjs on purpose, like src/workers/worker-entry.mjs: on Node 20 a worker thread does not
// inherit the tsx loader of the main thread, so it registers tsx's ESM hooks, then imports the
// TypeScript module.
import { register } from 'tsx/esm/api';

register();
const { startWorker } = await import('./handoff-worker.ts');
await startWorker();
