/**
 * The sm listener's hot path, over real loopback sockets (no jabberd2): the hand-over right after
 * the post-SASL stream header (stanzas in the same TCP segment as that header included), to a
 * worker or inline; in-order delivery; the fall-back to saxes for the rest of a stream when a
 * stanza uses markup the byte framer leaves to it; stream errors after it; and a worker crash
 * closing exactly the connections pinned to it with `worker-crashed`, the others unharmed, new
 * connections served.
 */
import { test } from 'node:test';
import assert from 'node:assert/strict';
import { ComponentServer, type ComponentConn } from '../../../src/links/component-server.ts';
import { WorkerPool } from '../../../src/workers/pool.ts';
import { memoryLogger } from '../../../src/log.ts';
import { CLIENT_STREAM_HEADER, saslAuth, saslElement } from '../../../src/protocol/component.ts';
import { digestClientResponse } from '../../../src/protocol/sasl-digest-md5.ts';
import { NS_COMPONENT, NS_SASL } from '../../../src/protocol/ns.ts';
import { text } from '../../../src/xml/node.ts';
import { FakeComponent } from '../../helpers/fake-component.ts';
import { streamErrorCondition } from '../../helpers/component-wire.ts';
import { waitUntil } from '../../helpers/wait.ts';

const route = (i: number, who: string): string => `<route xmlns='${NS_COMPONENT}' to='x' from='${who}'><message xmlns='jabber:client' id='${i}'><body>\u20ac${i}</body></message></route>`;

interface Setup {
  server: ComponentServer;
  pool: WorkerPool | null;
  port: number;
  log: ReturnType<typeof memoryLogger>;
  /** raw of every element received, per connection user-visible label */
  got: Map<number, string[]>;
  ready: ComponentConn[];
  gone: { id: number; reason: string; detail: string }[];
  stop(): Promise<void>;
}

async function setup(workers: number): Promise<Setup> {
  const log = memoryLogger();
  const pool = workers > 0 ? new WorkerPool({ size: workers }, log.child('workers')) : null;
  const got = new Map<number, string[]>();
  const ready: ComponentConn[] = [];
  const gone: Setup['gone'] = [];
  const server = new ComponentServer(
    { ip: '127.0.0.1', port: 0, maxConnections: 16, authTimeoutSec: 10 },
    { maxStanzaBytes: 1 << 16, maxDepth: 32, queueBytes: 1 << 22 },
    log.child('sm-listener'),
    {
      accepting: () => true,
      lookupPass: (u) => (u === 'jabberd' ? 'secret' : undefined),
      onReady: (c) => ready.push(c),
      onElement: (c, st) => {
        const l = got.get(c.id) ?? [];
        l.push(st.text);
        got.set(c.id, l);
      },
      onGone: (c, reason, detail) => gone.push({ id: c.id, reason, detail }),
    },
    null,
    pool,
  );
  const port = await server.listen();
  return {
    server, pool, port, log, got, ready, gone,
    async stop() {
      await server.close('shutdown', 'test over');
      await pool?.close();
    },
  };
}

/** SASL by hand, then the post-auth header and `after` in ONE write */
async function loginWith(port: number, after: string): Promise<FakeComponent> {
  const c = await FakeComponent.open(port);
  c.send(CLIENT_STREAM_HEADER);
  await c.expect((e) => e.local === 'features', 'features');
  c.send(saslAuth('DIGEST-MD5'));
  const ch = await c.expect((e) => e.uri === NS_SASL && e.local === 'challenge', 'challenge');
  const r = digestClientResponse({ challenge: Buffer.from(text(ch.el), 'base64').toString(), user: 'jabberd', pass: 'secret', digestUri: 'jabberd-router/test' });
  c.send(saslElement('response', Buffer.from(r.response).toString('base64')));
  await c.expect((e) => e.uri === NS_SASL && e.local === 'success', 'success');
  const opens = c.streamOpens;
  c.send(CLIENT_STREAM_HEADER + after);
  await c.until(() => c.streamOpens > opens, 'post-auth header');
  return c;
}

test('hand-over at the post-auth header: stanzas in the same segment, split stanzas, order kept', { timeout: 30000 }, async () => {
  const s = await setup(2);
  const comps: FakeComponent[] = [];
  try {
    const first = route(0, 'a');
    // the header, one stanza and half of the next in one write: the tail handed to the worker
    const c = await loginWith(s.port, first + route(1, 'a').slice(0, 40));
    comps.push(c);
    await waitUntil(() => s.ready.length === 1, 'ready');
    const id = s.ready[0]!.id;
    const rest = route(1, 'a').slice(40) + Array.from({ length: 300 }, (_, i) => route(i + 2, 'a')).join('');
    const bytes = Buffer.from(rest);
    for (let i = 0; i < bytes.length; i += 97) c.send(bytes.subarray(i, i + 97));
    await waitUntil(() => (s.got.get(id)?.length ?? 0) === 302, '302 routes', 10000, () => `${s.got.get(id)?.length}`);
    assert.deepEqual(s.got.get(id), Array.from({ length: 302 }, (_, i) => route(i, 'a')));
    const st = s.pool!.status();
    assert.equal(st.reduce((a, w) => a + w.links, 0), 1, 'the connection is pinned to a worker');
    assert.equal(st.reduce((a, w) => a + w.stanzas, 0), 302, 'every stanza was framed by the worker');
  } finally {
    for (const c of comps) c.close();
    await s.stop();
  }
});

test('a worker crash closes its connections with worker-crashed; the others and new ones are fine', { timeout: 30000 }, async () => {
  const s = await setup(2);
  const comps: FakeComponent[] = [];
  try {
    for (let i = 0; i < 3; i++) comps.push(await loginWith(s.port, ''));
    await waitUntil(() => s.ready.length === 3, 'three ready');
    // round robin in order of authentication: 0 → worker 0, 1 → worker 1, 2 → worker 0
    assert.deepEqual(s.pool!.status().map((w) => w.links), [2, 1]);
    for (const [i, c] of comps.entries()) c.send(route(0, `c${i}`));
    await waitUntil(() => s.ready.every((r) => s.got.get(r.id)?.length === 1), 'one route each');

    await s.pool!.terminateWorker(0);
    const [a, b, c] = comps as [FakeComponent, FakeComponent, FakeComponent];
    await a.closedSoon();
    await c.closedSoon();
    assert.equal(streamErrorCondition(a.inbox), 'internal-server-error');
    assert.equal(streamErrorCondition(c.inbox), 'internal-server-error');
    await waitUntil(() => s.gone.length === 2, 'two gone');
    assert.deepEqual(s.gone.map((g) => [g.id, g.reason]).sort(), [[s.ready[0]!.id, 'worker-crashed'], [s.ready[2]!.id, 'worker-crashed']]);
    assert.ok(s.log.lines.some((l) => /closed: worker-crashed: internal-server-error: framing worker 0 failed/.test(l)), s.log.lines.join('\n'));

    // the connection on worker 1 carries on, both ways
    b.send(route(1, 'c1'));
    await waitUntil(() => s.got.get(s.ready[1]!.id)?.length === 2, 'b still served');
    s.ready[1]!.send(route(7, 'node'));
    await b.expect((_e, raw) => raw === route(7, 'node'), 'a route to b');
    assert.equal(b.closed, false);

    // new connections are served (worker 0 was replaced)
    await waitUntil(() => s.pool!.status()[0]!.up, 'worker 0 replaced');
    const d = await loginWith(s.port, route(0, 'd'));
    const e = await loginWith(s.port, route(0, 'e'));
    comps.push(d, e);
    await waitUntil(() => s.ready.length === 5 && s.ready.slice(3).every((r) => s.got.get(r.id)?.length === 1), 'new connections framed', 10000, () => JSON.stringify([s.ready.length, s.ready.map((r) => s.got.get(r.id)), s.pool!.status(), s.log.lines.slice(-8)]));
    assert.deepEqual(s.pool!.status().map((w) => [w.links, w.crashes]), [[1, 1], [2, 0]]);
  } finally {
    for (const c of comps) c.close();
    await s.stop();
  }
});

for (const workers of [0, 1]) {
  test(`hot path (workers=${workers}): a CDATA section hands the rest of the stream to saxes; order kept; a later error is a stream error`, { timeout: 30000 }, async () => {
    const s = await setup(workers);
    const comps: FakeComponent[] = [];
    try {
      const c = await loginWith(s.port, route(0, 'a'));
      comps.push(c);
      await waitUntil(() => s.ready.length === 1, 'ready');
      const id = s.ready[0]!.id;
      const cdata = `<route xmlns='${NS_COMPONENT}' to='x' from='a'><message xmlns='jabber:client' id='cdata'><body><![CDATA[<b> & </b>]]></body></message></route>`;
      const after = Array.from({ length: 50 }, (_, i) => route(i + 1, 'a')).join('');
      const bytes = Buffer.from(cdata + after);
      for (let i = 0; i < bytes.length; i += 61) c.send(bytes.subarray(i, i + 61));
      await waitUntil(() => (s.got.get(id)?.length ?? 0) === 52, '52 routes', 10000, () => `${s.got.get(id)?.length}`);
      assert.deepEqual(s.got.get(id), [route(0, 'a'), cdata, ...Array.from({ length: 50 }, (_, i) => route(i + 1, 'a'))]);
      // still a well-formedness check after the fall-back
      c.send(`<route xmlns='${NS_COMPONENT}' to='x' from='a'><m></n></route>`);
      await c.closedSoon();
      assert.equal(streamErrorCondition(c.inbox), 'not-well-formed');
      await waitUntil(() => s.gone.length === 1, 'gone');
      assert.equal(s.gone[0]!.reason, 'parse-error');
    } finally {
      for (const c of comps) c.close();
      await s.stop();
    }
  });

  test(`hot path (workers=${workers}): a malformed stanza gets the same stream error as from saxes, nothing after it is delivered`, { timeout: 30000 }, async () => {
    const s = await setup(workers);
    const comps: FakeComponent[] = [];
    try {
      const c = await loginWith(s.port, '');
      comps.push(c);
      await waitUntil(() => s.ready.length === 1, 'ready');
      const id = s.ready[0]!.id;
      c.send(route(0, 'a') + `<route xmlns='${NS_COMPONENT}' to='x' from='a' to='y'/>` + route(1, 'a'));
      await c.closedSoon();
      assert.equal(streamErrorCondition(c.inbox), 'not-well-formed');
      assert.deepEqual(s.got.get(id), [route(0, 'a')]);
    } finally {
      for (const c of comps) c.close();
      await s.stop();
    }
  });
}
