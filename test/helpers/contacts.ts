/**
 * The cast of the failure tests on a 2-node cluster: alice with one resource on each node
 * (a1 on node 1, her home; a2 on node 2, hosted by node 1's sm) and bob on node 2, subscribed
 * to each other, every resource available and seen by bob.
 */
import type { TestCluster } from './cluster.ts';
import { login, register, xml, NS, type Element, type XmppSession } from './xmpp.ts';

export const PASS = 'pw-1234';

export interface Contacts {
  alice: string;
  bob: string;
  a1: XmppSession;
  a2: XmppSession;
  b: XmppSession;
  /** matches an unavailable presence from alice's resource r */
  unavailableFrom(r: 'a1' | 'a2'): (p: Element) => boolean;
  /** wait until both of alice's clients are closed (bounded); true if they are */
  aliceClosed(ms?: number): Promise<boolean>;
  stop(): Promise<void>;
}

export async function subscribe(a: XmppSession, b: XmppSession): Promise<void> {
  await a.send(xml('presence', { to: b.bare, type: 'subscribe' }));
  await b.waitFor((p) => p.is('presence') && p.attrs.type === 'subscribe' && p.attrs.from === a.bare, 5000, `${b.bare} gets subscribe`);
  await b.send(xml('presence', { to: a.bare, type: 'subscribed' }));
  await a.waitFor((p) => p.is('presence') && p.attrs.type === 'subscribed', 5000, `${a.bare} gets subscribed`);
}

export async function contacts(c: TestCluster, prefix: string): Promise<Contacts> {
  const t = Date.now().toString(36);
  const [n1, n2] = c.members;
  const alice = `${prefix}a${t}`;
  const bob = `${prefix}b${t}`;
  await register(n1!.j.c2sPort, c.domain, alice, PASS);
  await register(n2!.j.c2sPort, c.domain, bob, PASS);
  const a1 = await login(n1!.j.c2sPort, c.domain, alice, PASS, 'a1');
  const a2 = await login(n2!.j.c2sPort, c.domain, alice, PASS, 'a2');
  const b = await login(n2!.j.c2sPort, c.domain, bob, PASS, 'b');
  const stop = async (): Promise<void> => {
    await Promise.all([a1.stop(), a2.stop(), b.stop()]);
  };
  try {
    for (const s of [a1, a2, b]) await s.iq(xml('iq', { type: 'get' }, xml('query', { xmlns: NS.roster })));
    // subscriptions first (each side available), then alice's resources (re)broadcast presence
    for (const s of [a1, b]) await s.send(xml('presence'));
    await subscribe(a1, b);
    await subscribe(b, a1);
    for (const s of [a1, a2]) await s.send(xml('presence', {}, xml('status', {}, 'here')));
    for (const r of ['a1', 'a2']) {
      await b.waitFor((p) => p.is('presence') && !p.attrs.type && p.attrs.from === `${alice}@${c.domain}/${r}` && p.getChildText('status') === 'here', 5000, `bob sees alice/${r}`);
    }
  } catch (err) {
    await stop();
    throw err;
  }
  return {
    alice,
    bob,
    a1,
    a2,
    b,
    unavailableFrom: (r) => (p) => p.is('presence') && p.attrs.type === 'unavailable' && p.attrs.from === `${alice}@${c.domain}/${r}`,
    async aliceClosed(ms = 5000) {
      const deadline = Date.now() + ms;
      while (!(a1.closed && a2.closed) && Date.now() < deadline) await new Promise((r) => setTimeout(r, 10));
      return a1.closed && a2.closed;
    },
    stop,
  };
}
