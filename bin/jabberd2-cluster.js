#!/usr/bin/env node
// Entry point installed as `jabberd2-cluster`. The sources are TypeScript run through tsx:
// register tsx's ESM hooks on this thread, then load the real entry (src/main.ts), which reads
// process.argv itself.
// Note (Node 20): these hooks do not reach worker threads, and neither does `--import tsx`.
// A worker's entry must be a .js/.mjs file that calls register() itself before importing .ts.
import { register } from 'tsx/esm/api';

register();
await import('../src/main.ts');
