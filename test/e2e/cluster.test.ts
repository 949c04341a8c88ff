/**
 * Several jabberd2 nodes serving one domain through jabberd2-cluster: the reference scenarios
 * with the users on different nodes must give exactly what a single plain jabberd2 gives, and
 * the multi-node specifics (resources on two nodes, conflicts, components) behave as on one
 * server.
 */
import assert from 'node:assert/strict';
import { readFileSync } from 'node:fs';
import { after, before, describe, test } from 'node:test';
import { Jabberd2 } from '../../src/local/jabberd2.ts';
import { runReferenceScenarios, formatObservations, type Observation } from '../helpers/scenarios.ts';
import { startCluster, type TestCluster } from '../helpers/cluster.ts';
import { login, register, xml, NS, errorCondition } from '../helpers/xmpp.ts';

const PASS = 'pw-1234';
let reference: Observation[] = [];

before(async () => {
  const plain = await Jabberd2.create({ domain: 'example.test' });
  try {
    await plain.start('router');
    await plain.start('sm');
    await plain.start('c2s');
    reference = await runReferenceScenarios({ portOf: () => plain.c2sPort, domain: plain.domain });
  } finally {
    await plain.cleanup();
  }
});

describe('2-node cluster', () => {
  let c: TestCluster;
  before(async () => {
    c = await startCluster({ nodes: 2 });
  });
  after(async () => {
    await c?.stop();
  });

  test('reference scenarios with alice on node 1 and bob on node 2 match plain jabberd2', { timeout: 90000 }, async () => {
    const port = { alice: c.members[0]!.j.c2sPort, bob: c.members[1]!.j.c2sPort } as Record<string, number>;
    const obs = await runReferenceScenarios({ portOf: (u) => port[u]!, domain: c.domain });
    assert.deepEqual(obs, reference, `clustered:\n${formatObservations(obs)}`);
    const toPeers = c.members.map((m) => m.node.cluster!.stats.toPeers);
    assert.ok(toPeers.every((x) => x > 5), `stanzas crossed between nodes: ${toPeers}`);
  });

  test('reference scenarios with alice on node 2 and bob on node 1 (the other way round)', { timeout: 90000 }, async () => {
    const port = { alice: c.members[1]!.j.c2sPort, bob: c.members[0]!.j.c2sPort } as Record<string, number>;
    const obs = await runReferenceScenarios({ portOf: (u) => port[u]!, domain: c.domain });
    assert.deepEqual(obs, reference);
  });

  test('a user with resources on two nodes: one home sm, bare messages, roster pushes and presence reach both', { timeout: 60000 }, async () => {
    const u = `multi${Date.now().toString(36)}`;
    const friend = `${u}f`;
    await register(c.members[0]!.j.c2sPort, c.domain, u, PASS);
    await register(c.members[1]!.j.c2sPort, c.domain, friend, PASS);
    const r1 = await login(c.members[0]!.j.c2sPort, c.domain, u, PASS, 'r1');
    const r2 = await login(c.members[1]!.j.c2sPort, c.domain, u, PASS, 'r2');
    const f = await login(c.members[1]!.j.c2sPort, c.domain, friend, PASS, 'f');
    try {
      const bare = `${u}@${c.domain}`;
      // both sessions are hosted by node 1's sm (the first login's node)
      const sessions = c.members[1]!.node.cluster!.table.sessionsOf(bare);
      assert.deepEqual(sessions.map((s) => [s.jid, s.home, s.c2sNode]).sort(), [
        [`${bare}/r1`, 'n1', 'n1'],
        [`${bare}/r2`, 'n1', 'n2'],
      ]);
      // roster pushes go to sessions that fetched the roster (as on one jabberd2)
      for (const s of [r1, r2]) assert.equal((await s.iq(xml('iq', { type: 'get' }, xml('query', { xmlns: NS.roster })))).attrs.type, 'result');
      await r1.send(xml('presence', {}, xml('priority', {}, '5')));
      await r2.send(xml('presence', {}, xml('priority', {}, '1')));
      // each resource sees the other's presence
      await r1.waitFor((p) => p.is('presence') && p.attrs.from === `${bare}/r2`, 5000, 'r1 sees r2 presence');
      await r2.waitFor((p) => p.is('presence') && p.attrs.from === `${bare}/r1`, 5000, 'r2 sees r1 presence');
      // a roster change made on r2 is pushed to r1 (on the other node) and r2
      const rid = 'roster1';
      const res = await r2.iq(xml('iq', { type: 'set', id: rid }, xml('query', { xmlns: NS.roster }, xml('item', { jid: `${friend}@${c.domain}`, name: 'Friend' }))));
      assert.equal(res.attrs.type, 'result');
      for (const s of [r1, r2]) {
        await s.waitFor((el) => el.is('iq') && el.attrs.type === 'set' && el.getChild('query', NS.roster)?.getChild('item')?.attrs.name === 'Friend', 5000, `roster push at ${s.resource}`);
      }
      // a bare-JID message goes where one jabberd2 sends it: the highest-priority resource only
      await f.send(xml('message', { to: bare, type: 'chat', id: 'b1' }, xml('body', {}, 'to the bare JID')));
      await r1.waitFor((m) => m.is('message') && m.getChildText('body') === 'to the bare JID', 5000, 'bare message at r1 (priority 5)');
      // full-JID messages reach each resource; this one also marks the end of what r2 can get
      await f.send(xml('message', { to: `${bare}/r2`, type: 'chat' }, xml('body', {}, 'to r2')));
      await r2.waitFor((m) => m.is('message') && m.getChildText('body') === 'to r2', 5000, 'full JID message at r2');
      assert.ok(!r2.received.some((m) => m.is('message') && m.getChildText('body') === 'to the bare JID'), 'r2 (priority 1) must not get the bare message');
    } finally {
      await Promise.all([r1.stop(), r2.stop(), f.stop()]);
    }
  });

  test('a presence priority outside -128..127 is recorded clamped and the peer links stay up', { timeout: 60000 }, async () => {
    const u = `prio${Date.now().toString(36)}`;
    await register(c.members[0]!.j.c2sPort, c.domain, u, PASS);
    const s = await login(c.members[0]!.j.c2sPort, c.domain, u, PASS, 'p');
    try {
      const bare = `${u}@${c.domain}`;
      const logBefore = c.members.map((m) => readFileSync(m.logFile, 'utf8').length);
      await s.send(xml('presence', {}, xml('priority', {}, '300')));
      const deadline = Date.now() + 5000;
      const prioAt2 = (): number | undefined => c.members[1]!.node.cluster!.table.sessionsOf(bare)[0]?.prio;
      while (prioAt2() !== 127 && Date.now() < deadline) await new Promise((r) => setTimeout(r, 20));
      assert.equal(prioAt2(), 127, 'node 2 learns the clamped priority');
      await new Promise((r) => setTimeout(r, 300));
      for (const [i, m] of c.members.entries()) {
        const after = readFileSync(m.logFile, 'utf8').slice(logBefore[i]);
        assert.doesNotMatch(after, /peer '\w+' down|closing link|link to .* closed/i, `${m.name} kept its peer link:\n${after}`);
        assert.deepEqual(m.node.peers!.upNodes().length, 1);
      }
    } finally {
      await s.stop();
    }
  });

  test('the same full JID logging in on the other node replaces the first session (conflict)', { timeout: 60000 }, async () => {
    const u = `conf${Date.now().toString(36)}`;
    await register(c.members[0]!.j.c2sPort, c.domain, u, PASS);
    const first = await login(c.members[0]!.j.c2sPort, c.domain, u, PASS, 'same');
    const second = await login(c.members[1]!.j.c2sPort, c.domain, u, PASS, 'same');
    try {
      // c2s sends <stream:error><conflict/></stream:error> and closes the stream
      const deadline = Date.now() + 5000;
      while (!first.closed && Date.now() < deadline) await new Promise((r) => setTimeout(r, 20));
      assert.ok(first.closed, 'the first session must be closed');
      assert.ok(first.errors.some((e) => /conflict/.test(e)), `the first session must be told <conflict/>; errors: ${first.errors.join('; ')}`);
      assert.ok(!second.closed, 'the second session stays');
      // the second session works: an iq to the server is answered
      const v = await second.iq(xml('iq', { type: 'get', to: c.domain }, xml('query', { xmlns: 'jabber:iq:version' })));
      assert.equal(v.attrs.type, 'result');
    } finally {
      await Promise.all([first.stop(), second.stop()]);
    }
  });

  test('a message to a user with no session anywhere is stored once and delivered on login on any node', { timeout: 60000 }, async () => {
    const a = `off${Date.now().toString(36)}`;
    const b = `${a}b`;
    await register(c.members[0]!.j.c2sPort, c.domain, a, PASS);
    await register(c.members[0]!.j.c2sPort, c.domain, b, PASS);
    const sa = await login(c.members[0]!.j.c2sPort, c.domain, a, PASS, 'x');
    await sa.send(xml('message', { to: `${b}@${c.domain}`, type: 'chat' }, xml('body', {}, 'stored')));
    // make sure the sm handled it: a server iq after it is answered in order
    await sa.iq(xml('iq', { type: 'get', to: c.domain }, xml('query', { xmlns: 'jabber:iq:version' })));
    await sa.stop();
    const sb = await login(c.members[1]!.j.c2sPort, c.domain, b, PASS, 'y');
    try {
      await sb.send(xml('presence'));
      const m = await sb.waitFor((el) => el.is('message') && el.getChildText('body') === 'stored', 5000, 'offline message on node 2');
      assert.ok(m.getChild('delay', 'urn:xmpp:delay'), 'delay stamp');
      // the offline queue is flushed while the sm handles the presence; a server iq after it
      // is answered after the flush
      await sb.iq(xml('iq', { type: 'get', to: c.domain }, xml('query', { xmlns: 'jabber:iq:version' })));
      assert.equal(sb.received.filter((e) => e.is('message') && e.getChildText('body') === 'stored').length, 1, 'delivered exactly once');
    } finally {
      await sb.stop();
    }
  });
});

describe('3-node cluster', () => {
  let c: TestCluster;
  before(async () => {
    c = await startCluster({ nodes: 3, jabberd2: (i) => (i === 0 ? { legacySecret: 'component-secret', extraDomains: ['solo.test'] } : {}) });
  });
  after(async () => {
    await c?.stop();
  });

  test('reference scenarios with alice on node 1 and bob on node 3 match plain jabberd2', { timeout: 90000 }, async () => {
    const port = { alice: c.members[0]!.j.c2sPort, bob: c.members[2]!.j.c2sPort } as Record<string, number>;
    const obs = await runReferenceScenarios({ portOf: (u) => port[u]!, domain: c.domain });
    assert.deepEqual(obs, reference);
  });

  test('an XEP-0114 component on node 1 is reached by a user on node 3 and answers back', { timeout: 60000 }, async () => {
    const { component } = await import('@xmpp/component');
    const comp = component({ service: `xmpp://127.0.0.1:${c.members[0]!.j.routerPort}`, domain: 'echo.example.test', password: 'component-secret' });
    comp.on('error', () => {});
    // XEP-0114 streams carry no version: with version='1.0' jabberd2's router sends stream
    // features first, which xmpp.js takes for the handshake reply
    const header = comp.headerElement.bind(comp);
    comp.headerElement = () => {
      const el = header();
      delete el.attrs.version;
      return el;
    };
    comp.on('stanza', (st) => {
      if (st.is('message')) void comp.send(xml('message', { to: st.attrs.from, from: st.attrs.to, type: 'chat' }, xml('body', {}, `echo: ${st.getChildText('body')}`)));
    });
    await comp.start();
    try {
      // node 3 learns of the component and binds it on its own router
      const deadline = Date.now() + 10000;
      while (!c.members[2]!.node.cluster!.proxiedNames().includes('echo.example.test')) {
        if (Date.now() > deadline) throw new Error('node 3 never bound echo.example.test for node 1');
        await new Promise((r) => setTimeout(r, 20));
      }
      const u = `comp${Date.now().toString(36)}`;
      await register(c.members[2]!.j.c2sPort, c.domain, u, PASS);
      const s = await login(c.members[2]!.j.c2sPort, c.domain, u, PASS, 'c');
      try {
        await s.send(xml('message', { to: 'echo.example.test', type: 'chat' }, xml('body', {}, 'ping')));
        const m = await s.waitFor((el) => el.is('message') && el.attrs.from === 'echo.example.test', 5000, 'echo from the component');
        assert.equal(m.getChildText('body'), 'echo: ping');
      } finally {
        await s.stop();
      }
    } finally {
      await comp.stop();
    }
    // withdrawn when it goes away
    const deadline = Date.now() + 10000;
    while (c.members[2]!.node.cluster!.proxiedNames().includes('echo.example.test')) {
      if (Date.now() > deadline) throw new Error('node 3 kept echo.example.test after the component left');
      await new Promise((r) => setTimeout(r, 20));
    }
  });

  test('an unclustered domain served by node 1 only keeps working there and is reachable from node 2', { timeout: 60000 }, async () => {
    const u = `solo${Date.now().toString(36)}`;
    await register(c.members[0]!.j.c2sPort, 'solo.test', u, PASS);
    await register(c.members[1]!.j.c2sPort, c.domain, u, PASS);
    const s = await login(c.members[0]!.j.c2sPort, 'solo.test', u, PASS, 's');
    const a = await login(c.members[1]!.j.c2sPort, c.domain, u, PASS, 'a');
    try {
      assert.ok(!c.members[0]!.node.cluster!.isClustered('solo.test'));
      // node 2 reaches solo.test through node 1, like any component of node 1's
      assert.ok(c.members[1]!.node.cluster!.proxiedNames().includes('solo.test'));
      // server iq of the unclustered domain answered on node 1
      const v = await s.iq(xml('iq', { type: 'get', to: 'solo.test' }, xml('query', { xmlns: 'jabber:iq:version' })));
      assert.equal(v.attrs.type, 'result');
      await a.send(xml('message', { to: `${u}@solo.test/s`, type: 'chat' }, xml('body', {}, 'to solo')));
      await s.waitFor((m) => m.is('message') && m.getChildText('body') === 'to solo', 5000, 'message from node 2 to solo.test');
      await s.send(xml('message', { to: `${u}@${c.domain}/a`, type: 'chat' }, xml('body', {}, 'from solo')));
      await a.waitFor((m) => m.is('message') && m.getChildText('body') === 'from solo', 5000, 'message from solo.test to node 2');
    } finally {
      await Promise.all([s.stop(), a.stop()]);
    }
  });

  test('an unknown domain is bounced as item-not-found from every node', { timeout: 30000 }, async () => {
    const u = `unk${Date.now().toString(36)}`;
    await register(c.members[1]!.j.c2sPort, c.domain, u, PASS);
    const s = await login(c.members[1]!.j.c2sPort, c.domain, u, PASS, 'u');
    try {
      const r = await s.iq(xml('iq', { type: 'get', to: 'nowhere.invalid' }, xml('query', { xmlns: 'jabber:iq:version' })));
      assert.equal(r.attrs.type, 'error');
      assert.equal(errorCondition(r), 'item-not-found');
    } finally {
      await s.stop();
    }
  });
});

describe('peer authentication', () => {
  test('a peer with a wrong secret is refused with a clear log line and never joins', { timeout: 60000 }, async () => {
    const c = await startCluster({
      nodes: 2,
      waitMesh: false,
      tweak: (i, o) => {
        if (i === 1) o.peers!.secret = 'a-different-secret-0123456789xyz';
      },
    });
    try {
      const { readFileSync } = await import('node:fs');
      const deadline = Date.now() + 10000;
      const logs = (): string => c.members.map((m) => readFileSync(m.logFile, 'utf8')).join('\n');
      while (!/failed authentication/.test(logs())) {
        if (Date.now() > deadline) throw new Error(`no authentication failure logged:\n${logs().slice(-3000)}`);
        await new Promise((r) => setTimeout(r, 20));
      }
      assert.deepEqual(c.members.map((m) => m.node.peers!.upNodes()), [[], []]);
      // the secret itself is never logged
      assert.ok(!logs().includes('a-different-secret') && !logs().includes('a-test-cluster-secret'), 'a secret appeared in a log');
    } finally {
      await c.stop();
    }
  });
});
