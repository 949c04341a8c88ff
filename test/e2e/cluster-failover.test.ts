/**
 * Losing a machine costs only that machine's sessions: after node 1 (its jabberd2 and its
 * cluster node) dies, node 2 ends its clients whose sessions lived on node 1's sm, and every
 * contact resource on node 2 that had presence from a lost session gets exactly one
 * unavailable presence for it. Messages to the lost users are stored offline.
 */
import assert from 'node:assert/strict';
import { after, before, test } from 'node:test';
import { startCluster, type TestCluster } from '../helpers/cluster.ts';
import { login, register, xml, NS, type XmppSession, type Element } from '../helpers/xmpp.ts';

const PASS = 'pw-1234';
let c: TestCluster;

before(async () => {
  c = await startCluster({ nodes: 2 });
});
after(async () => {
  await c?.stop();
});

async function subscribe(a: XmppSession, b: XmppSession): Promise<void> {
  await a.send(xml('presence', { to: b.bare, type: 'subscribe' }));
  await b.waitFor((p) => p.is('presence') && p.attrs.type === 'subscribe' && p.attrs.from === a.bare, 5000, `${b.bare} gets subscribe from ${a.bare}`);
  await b.send(xml('presence', { to: a.bare, type: 'subscribed' }));
  await a.waitFor((p) => p.is('presence') && p.attrs.type === 'subscribed', 5000, `${a.bare} gets subscribed`);
}

test('a dead node: its users are ended elsewhere and their contacts get exactly one unavailable per lost session', { timeout: 90000 }, async () => {
  const t = Date.now().toString(36);
  const [n1, n2] = c.members;
  const alice = `al${t}`;
  const bob = `bo${t}`;
  await register(n1!.j.c2sPort, c.domain, alice, PASS);
  await register(n2!.j.c2sPort, c.domain, bob, PASS);
  const a1 = await login(n1!.j.c2sPort, c.domain, alice, PASS, 'a1'); // home: node 1
  const a2 = await login(n2!.j.c2sPort, c.domain, alice, PASS, 'a2'); // client on node 2, session in node 1's sm
  const b = await login(n2!.j.c2sPort, c.domain, bob, PASS, 'b'); // home: node 2
  try {
    for (const s of [a1, a2, b]) await s.iq(xml('iq', { type: 'get' }, xml('query', { xmlns: NS.roster })));
    // subscriptions first (each side available), then alice's resources (re)broadcast presence
    for (const s of [a1, b]) await s.send(xml('presence'));
    await subscribe(a1, b);
    await subscribe(b, a1);
    for (const s of [a1, a2]) await s.send(xml('presence', {}, xml('status', {}, 'here')));
    for (const r of ['a1', 'a2']) {
      await b.waitFor((p) => p.is('presence') && !p.attrs.type && p.attrs.from === `${alice}@${c.domain}/${r}` && p.getChildText('status') === 'here', 5000, `bob sees alice/${r} available`);
    }
    b.clearInbox();

    // node 1 dies: its jabberd2 and its cluster node, without a goodbye
    const t0 = Date.now();
    await Promise.all([n1!.j.kill('c2s'), n1!.j.kill('sm'), n1!.j.kill('router'), n1!.node.crash()]);

    // alice/a2's client on node 2 is ended (its session lived in node 1's sm)
    const deadline = Date.now() + 5000;
    while (!a2.closed && Date.now() < deadline) await new Promise((r) => setTimeout(r, 10));
    assert.ok(a2.closed, 'the client whose session lived on the dead node is ended');
    // bob gets one unavailable for each of alice's lost sessions
    const un = (r: string) => (p: Element) => p.is('presence') && p.attrs.type === 'unavailable' && p.attrs.from === `${alice}@${c.domain}/${r}`;
    await b.waitFor(un('a1'), 5000, 'unavailable from alice/a1');
    await b.waitFor(un('a2'), 5000, 'unavailable from alice/a2');
    const took = Date.now() - t0;
    // a marker: bob's own server iq after everything node 2 did about the loss
    await b.iq(xml('iq', { type: 'get', to: c.domain }, xml('query', { xmlns: 'jabber:iq:version' })));
    const dup = b.received.filter((p) => un('a1')(p) || un('a2')(p)).length;
    assert.equal(dup, 2, `exactly one unavailable per lost session (got ${dup})`);
    process.stdout.write(`# figure: dead node handled on the survivor in ${took} ms (detection + cleanup)\n`);
    assert.equal(n2!.node.cluster!.table.sessionsOf(`${alice}@${c.domain}`).length, 0, 'the lost sessions are purged');

    // messages to the lost user are stored offline, and delivered when she logs in on node 2
    await b.send(xml('message', { to: `${alice}@${c.domain}`, type: 'chat' }, xml('body', {}, 'while you were away')));
    await b.iq(xml('iq', { type: 'get', to: c.domain }, xml('query', { xmlns: 'jabber:iq:version' })));
    const back = await login(n2!.j.c2sPort, c.domain, alice, PASS, 'again');
    try {
      await back.send(xml('presence'));
      const m = await back.waitFor((e) => e.is('message') && e.getChildText('body') === 'while you were away', 5000, 'offline message after the loss');
      assert.ok(m.getChild('delay', 'urn:xmpp:delay'));
    } finally {
      await back.stop();
    }
  } finally {
    await Promise.all([a1.stop(), a2.stop(), b.stop()]);
  }
});
