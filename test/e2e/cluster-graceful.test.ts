/**
 * Graceful stop of a node (what SIGTERM does): its sessions are ended properly (contacts get
 * exactly one unavailable each, clients are closed), and a message stream sent to one of its
 * users meanwhile loses nothing: every message is delivered live or stored offline.
 */
import assert from 'node:assert/strict';
import { after, before, test } from 'node:test';
import { startCluster, type TestCluster } from '../helpers/cluster.ts';
import { contacts, PASS } from '../helpers/contacts.ts';
import { login, xml, type XmppSession } from '../helpers/xmpp.ts';

let c: TestCluster;

before(async () => {
  c = await startCluster({ nodes: 2 });
});
after(async () => {
  await c?.stop();
});

test('graceful stop: sessions ended properly, 0 messages lost', { timeout: 90000 }, async () => {
  const [n1, n2] = c.members;
  const k = await contacts(c, 'g');
  const { alice, a1, a2, b } = k;
  const N = 60;
  // a bare-JID message goes to every resource of top priority (a1 and a2 here), as on one
  // server: a duplicate is the same message twice at one session, or live and again offline
  const got = new Set<string>();
  let duplicates = 0;
  const counted = new Set<XmppSession>();
  const collect = (s: XmppSession, offline = false): void => {
    if (counted.has(s)) return;
    counted.add(s);
    const here = new Set<string>();
    for (const m of s.received) {
      const id = m.is('message') ? m.attrs.id : undefined;
      if (!id?.startsWith('audit-')) continue;
      if (here.has(id) || (offline && got.has(id))) duplicates++;
      here.add(id);
    }
    for (const id of here) got.add(id);
  };
  try {
    // a message stream from bob to alice's bare JID: a third before, a third while node 1
    // stops, a third after it is gone
    const send = (i: number): Promise<void> => b.send(xml('message', { to: `${alice}@${c.domain}`, type: 'chat', id: `audit-${i}` }, xml('body', {}, `m${i}`)));
    for (let i = 0; i < N / 3; i++) await send(i);
    await a1.waitFor((m) => m.is('message') && m.attrs.id === `audit-${N / 3 - 1}`, 5000, 'first third delivered live');
    const t0 = Date.now();
    const stopping = n1!.node.stop();
    for (let i = N / 3; i < (2 * N) / 3; i++) await send(i);
    await stopping;
    const drainMs = Date.now() - t0;
    for (let i = (2 * N) / 3; i < N; i++) await send(i);
    // both of alice's clients are closed (one on each node)
    const deadline = Date.now() + 5000;
    while (!(a1.closed && a2.closed) && Date.now() < deadline) await new Promise((r) => setTimeout(r, 10));
    assert.ok(a1.closed && a2.closed, `alice's clients closed (a1 ${a1.closed}, a2 ${a2.closed})`);
    const un = k.unavailableFrom;
    await b.waitFor(un('a1'), 5000, 'unavailable from alice/a1');
    await b.waitFor(un('a2'), 5000, 'unavailable from alice/a2');
    await b.iq(xml('iq', { type: 'get', to: c.domain }, xml('query', { xmlns: 'jabber:iq:version' })));
    assert.equal(b.received.filter((p) => un('a1')(p) || un('a2')(p)).length, 2, 'exactly one unavailable per session');
    collect(a1);
    collect(a2);
    const live = got.size;
    // alice comes back on node 2: everything not delivered live was stored offline
    const back = await login(n2!.j.c2sPort, c.domain, alice, PASS, 'back');
    try {
      await back.send(xml('presence'));
      await back.iq(xml('iq', { type: 'get', to: c.domain }, xml('query', { xmlns: 'jabber:iq:version' })));
      const until = Date.now() + 5000;
      const count = (): number => back.received.filter((m) => m.is('message') && m.attrs.id?.startsWith('audit-')).length;
      while (got.size + count() < N && Date.now() < until) await new Promise((r) => setTimeout(r, 20));
      collect(back, true);
      const missing = Array.from({ length: N }, (_, i) => `audit-${i}`).filter((id) => !got.has(id));
      process.stdout.write(`# figure: graceful stop drained in ${drainMs} ms; ${live} messages live, ${got.size - live} from offline storage, ${missing.length} lost, ${duplicates} duplicated\n`);
      assert.deepEqual(missing, [], 'no message lost');
      assert.equal(duplicates, 0, 'no message duplicated');
    } finally {
      await back.stop();
    }
  } finally {
    await k.stop();
  }
});
