/**
 * kill -9 of one node's sm (jabberd2-sm) in a 2-node cluster: the sessions it hosted are lost;
 * their clients are ended on every node, their contacts elsewhere get exactly one unavailable
 * per lost session, and when the sm is back the node binds again and users log in as before.
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
  await b.waitFor((p) => p.is('presence') && p.attrs.type === 'subscribe' && p.attrs.from === a.bare, 5000, `${b.bare} gets subscribe`);
  await b.send(xml('presence', { to: a.bare, type: 'subscribed' }));
  await a.waitFor((p) => p.is('presence') && p.attrs.type === 'subscribed', 5000, `${a.bare} gets subscribed`);
}

test('kill -9 of a node\'s sm: clients ended everywhere, one unavailable per lost session, recovery', { timeout: 90000 }, async () => {
  const t = Date.now().toString(36);
  const [n1, n2] = c.members;
  const alice = `sa${t}`;
  const bob = `sb${t}`;
  await register(n1!.j.c2sPort, c.domain, alice, PASS);
  await register(n2!.j.c2sPort, c.domain, bob, PASS);
  const a1 = await login(n1!.j.c2sPort, c.domain, alice, PASS, 'a1');
  const a2 = await login(n2!.j.c2sPort, c.domain, alice, PASS, 'a2');
  const b = await login(n2!.j.c2sPort, c.domain, bob, PASS, 'b');
  try {
    for (const s of [a1, a2, b]) await s.iq(xml('iq', { type: 'get' }, xml('query', { xmlns: NS.roster })));
    for (const s of [a1, b]) await s.send(xml('presence'));
    await subscribe(a1, b);
    await subscribe(b, a1);
    for (const s of [a1, a2]) await s.send(xml('presence', {}, xml('status', {}, 'here')));
    for (const r of ['a1', 'a2']) {
      await b.waitFor((p) => p.is('presence') && !p.attrs.type && p.attrs.from === `${alice}@${c.domain}/${r}` && p.getChildText('status') === 'here', 5000, `bob sees alice/${r}`);
    }
    const t0 = Date.now();
    await n1!.j.kill('sm');
    const deadline = Date.now() + 5000;
    while (!(a1.closed && a2.closed) && Date.now() < deadline) await new Promise((r) => setTimeout(r, 10));
    assert.ok(a1.closed && a2.closed, `alice's clients ended (a1 ${a1.closed}, a2 ${a2.closed})`);
    const un = (r: string) => (p: Element) => p.is('presence') && p.attrs.type === 'unavailable' && p.attrs.from === `${alice}@${c.domain}/${r}`;
    await b.waitFor(un('a1'), 5000, 'unavailable from alice/a1');
    await b.waitFor(un('a2'), 5000, 'unavailable from alice/a2');
    const took = Date.now() - t0;
    await b.iq(xml('iq', { type: 'get', to: c.domain }, xml('query', { xmlns: 'jabber:iq:version' })));
    assert.equal(b.received.filter((p) => un('a1')(p) || un('a2')(p)).length, 2, 'exactly one unavailable per lost session');
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
    await Promise.all([a1.stop(), a2.stop(), b.stop()]);
  }
});
