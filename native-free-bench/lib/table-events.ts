/** TableEvents for benchmark-built ClusterTables: every event ignored, except a full index. */
import type { TableEvents } from '../../src/cluster/table.ts';

export function quietEvents(onIndexFull: (bare: string, err: Error) => void = (bare, err) => { throw new Error(`index full at ${bare}: ${err.message}`); }): TableEvents {
  // a Proxy, so that events added to TableEvents later need no change here
  return new Proxy({} as TableEvents, { get: (_t, k) => (k === 'onIndexFull' ? onIndexFull : () => {}) });
}
