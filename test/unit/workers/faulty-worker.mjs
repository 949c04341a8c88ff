// Worker entry for test/unit/workers/pool.test.ts: the real framing worker, except that a task
// whose input contains "BOOM" throws (a rejected task) and one containing "EXIT" kills the thread.
import { register } from 'tsx/esm/api';

register();
const { frameTask } = await import('../../../src/workers/worker-main.ts');
const dec = new TextDecoder();

export default function handle(task) {
  for (const c of task.chunks) {
    const s = dec.decode(c);
    if (s.includes('BOOM')) throw new Error('boom requested by the test');
    if (s.includes('EXIT')) process.exit(3);
  }
  return frameTask(task);
}
