/**
 * Losing a machine costs only that machine's sessions: after node 1 (its jabberd2 and its
 * cluster node) dies, node 2 ends its clients whose sessions lived on node 1's sm, and every
 * contact resource on node 2 that had presence from a lost session gets exactly one
 * unavailable presence for it. Messages to the lost users are stored offline.
 */
import assert from 'node:assert/strict';
import { after, before, test } from 'node:test';
import { startCluster, type TestCluster } from '../helpers/cluster.ts';
import { contacts, PASS } from '../helpers/contacts.ts';
import { login, xml } from '../helpers/xmpp.ts';

let c: TestCluster;

before(async () => {
  c = await startCluster({ nodes: 2 });
});
after(async () => {
  await c?.stop();
});

test('a dead node: its users are ended elsewhere and their contacts get exactly one unavailable per lost session', { timeout: 90000 }, async () => {
  const [n1, n2] = c.members;
  // alice: a1 on node 1 (her home), a2 on node 2 (hosted by node 1's sm); bob on node 2
  const k = await contacts(c, 'f');
  const { alice, a2, b } = k;
  try {
    b.clearInbox();

    // node 1 dies: its jabberd2 and its cluster node, without a goodbye
    const t0 = Date.now();
    await Promise.all([n1!.j.kill('c2s'), n1!.j.kill('sm'), n1!.j.kill('router'), n1!.node.crash()]);

    // alice/a2's client on node 2 is ended (its session lived in node 1's sm)
    const deadline = Date.now() + 5000;
    while (!a2.closed && Date.now() < deadline) await new Promise((r) => setTimeout(r, 10));
    assert.ok(a2.closed, 'the client whose session lived on the dead node is ended');
    // bob gets one unavailable for each of alice's lost sessions
    const un = k.unavailableFrom;
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
    await k.stop();
  }
});
