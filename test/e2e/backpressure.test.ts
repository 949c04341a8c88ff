/**
 * Backpressure and memory bounds: a component that stops reading (a slow consumer) makes the
 * node pause its sources instead of buffering without bound; if it catches up, everything is
 * delivered in order; if it stays stuck, it is closed as a slow consumer with a logged reason
 * and everyone else carries on. The node's memory stays flat meanwhile.
 */
import assert from 'node:assert/strict';
import { after, before, test } from 'node:test';
import { FakeComponent } from '../helpers/fake-component.ts';
import { NS_COMPONENT, barrier, loginBound, routerWithNode, type RouterWithNode } from '../helpers/component-wire.ts';

let w: RouterWithNode;
const opened: FakeComponent[] = [];

before(async () => {
  // small queues so the test is quick: pause above 256 KiB, close above 2 MiB
  w = await routerWithNode({ limits: { queueBytes: 2 << 20 } });
});
after(async () => {
  for (const c of opened) c.close();
  await w?.stop();
});

const body = 'x'.repeat(200);
const route = (i: number): string =>
  `<route xmlns='${NS_COMPONENT}' from='fast.test' to='slow.test'><message xmlns='jabber:client' to='u@slow.test' id='m${i}'><body>${body}</body></message></route>`;

/** Write as fast as the socket takes it, for at most `ms` or `n` routes; resolves with how many were written. */
async function flood(c: FakeComponent, n: number, ms: number): Promise<number> {
  const until = Date.now() + ms;
  let i = 0;
  while (i < n && Date.now() < until) {
    if (!c.socket.write(route(i++))) {
      await Promise.race([new Promise((r) => c.socket.once('drain', r)), new Promise((r) => setTimeout(r, 50))]);
    }
  }
  return i;
}

test('a slow consumer that catches up gets every route, in order; the node pauses its sources meanwhile', { timeout: 60000 }, async () => {
  const slow = await loginBound(w.port, 'slow.test');
  const fast = await loginBound(w.port, 'fast.test');
  opened.push(slow, fast);
  const seen: number[] = [];
  slow.socket.pause(); // stops reading: the node's queue toward it fills
  const heap0 = process.memoryUsage().heapUsed;
  const sent = await flood(fast, 40000, 1500);
  const st = w.node.status() as { flow: { paused: boolean; pauses: number } };
  assert.ok(st.flow.pauses >= 1, 'the node paused its sources');
  const heap1 = process.memoryUsage().heapUsed;
  // catch up
  slow.socket.on('data', () => {});
  slow.socket.resume();
  await slow.until(() => {
    for (const x of slow.inbox.splice(0)) {
      const id = /id='m(\d+)'/.exec(x.raw)?.[1];
      if (id !== undefined) seen.push(Number(id));
    }
    return seen.length >= sent;
  }, `all ${sent} routes at the slow consumer`, 30000);
  assert.deepEqual(seen, Array.from({ length: sent }, (_, i) => i), 'every route, in order');
  process.stdout.write(`# figure: ${sent} routes (${Math.round((sent * route(0).length) / 1024)} KiB) pushed at a stopped consumer; node heap grew ${Math.round((heap1 - heap0) / 1024)} KiB while paused; all delivered in order after it resumed\n`);
  await barrier(fast, 'fast.test');
  slow.close();
  fast.close();
});

test('a consumer that stays stuck is closed as a slow consumer and the others carry on', { timeout: 60000 }, async () => {
  const stuck = await loginBound(w.port, 'slow.test');
  const fast = await loginBound(w.port, 'fast.test');
  const other = await loginBound(w.port, 'other.test');
  opened.push(stuck, fast, other);
  stuck.socket.pause();
  const t0 = Date.now();
  void flood(fast, 200000, 12000);
  // (a paused client socket never sees the close: watch the node's log)
  const closedLine = (): boolean => w.lines.some((l) => /closing it as a slow consumer/.test(l));
  while (!closedLine()) {
    if (Date.now() - t0 > 15000) throw new Error(`stuck consumer not closed:\n${w.lines.slice(-20).join('\n')}`);
    await new Promise((r) => setTimeout(r, 20));
  }
  const took = Date.now() - t0;
  assert.ok(w.lines.some((l) => /slow-consumer/.test(l)), 'the close is logged with its reason');
  // everyone else carries on
  await barrier(other, 'other.test', 10000);
  process.stdout.write(`# figure: stuck consumer closed after ${took} ms; the other components unharmed\n`);
});
