// (worker) Entry of a framing worker thread, loaded by piscina.
//
// Plain .mjs on purpose: on Node 20 a worker thread inherits neither `--import tsx` nor the hooks
// bin/jabberd2-cluster.js registered on the main thread, so it cannot load .ts by itself.
// Registering tsx's ESM hooks here, then importing the TypeScript module, works on Node 20 and
// later (test/fixtures/routing-table-reader.mjs does the same).
import { register } from 'tsx/esm/api';

register();
const mod = await import('./worker-main.ts');

export default mod.default;
