/**
 * kill -9 of one node's sm (jabberd2-sm) in a 2-node cluster: the sessions it hosted are lost;
 * their clients are ended on every node, their contacts elsewhere get exactly one unavailable
 * per lost session, and when the sm is back the node binds again and users log in as before.
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

test('kill -9 of a node\'s sm: clients ended everywhere, one unavailable per lost session, recovery', { timeout: 90000 }, async () => {
  const [n1] = c.members;
  const k = await contacts(c, 's');
  const { alice, b } = k;
  try {
    const t0 = Date.now();
    await n1!.j.kill('sm');
    assert.ok(await k.aliceClosed(), `alice's clients ended (a1 ${k.a1.closed}, a2 ${k.a2.closed})`);
    await b.waitFor(k.unavailableFrom('a1'), 5000, 'unavailable from alice/a1');
    await b.waitFor(k.unavailableFrom('a2'), 5000, 'unavailable from alice/a2');
    const took = Date.now() - t0;
    await b.iq(xml('iq', { type: 'get', to: c.domain }, xml('query', { xmlns: 'jabber:iq:version' })));
    assert.equal(b.received.filter((p) => k.unavailableFrom('a1')(p) || k.unavailableFrom('a2')(p)).length, 2, 'exactly one unavailable per lost session');
    process.stdout.write(`# figure: sm killed: clients ended and contacts told in ${took} ms\n`);
    // the sm comes back; the node binds again; alice logs in on node 1 again
    await n1!.j.start('sm');
    const again = await login(n1!.j.c2sPort, c.domain, alice, PASS, 'again');
    try {
      await again.send(xml('presence'));
      await b.waitFor((p) => p.is('presence') && !p.attrs.type && p.attrs.from === `${alice}@${c.domain}/again`, 5000, 'bob sees alice again');
    } finally {
      await again.stop();
    }
  } finally {
    await k.stop();
  }
});
