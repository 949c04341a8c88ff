/**
 * The reference scenarios: what a correct jabberd2 deployment does for two users, whatever the
 * topology (plain jabberd2, or a cluster with alice and bob on different nodes).
 *
 * runReferenceScenarios() asserts every expected behaviour as it goes (a broken system fails with
 * a message naming the step and what was awaited) and returns normalized observations, so a caller
 * can deepEqual two runs. Synchronisation is by awaited conditions only, never by sleeping.
 *
 * Normalization: stanzas become canonical XML strings (attributes sorted, `id` dropped, namespace
 * declarations only where they change), the run's username prefix is removed (`alice`, `bob`),
 * the served domain becomes `{domain}`, delay stamps become `STAMP` (after checking they parse),
 * the server's jabber:iq:version <os> and the disco#info software-info os/os_version values
 * become `OS`, roster `ver` is dropped and disco#info children are sorted.
 *
 * Each awaited stanza must have arrived after the start of the current step, so a stale stanza
 * from an earlier step (say, an old available presence) can never satisfy a later wait.
 */
import assert from 'node:assert/strict';
import { type Element, type XmppSession, errorCondition, login, NS, register, xml } from './xmpp.ts';

export interface Observation {
  /** scenario step, e.g. 'subscribe:alice->bob' */
  step: string;
  /** whose point of view: 'alice', 'bob' or 'server' */
  who: string;
  /** canonical stanza, or a short fact such as 'registered' */
  what: string;
}

export interface ScenarioTopology {
  /** c2s port the logical user ('alice' | 'bob') connects to */
  portOf(user: string): number;
  /** served domain */
  domain: string;
  /**
   * username prefix; default: a fresh unique one per run (so runs can share a database).
   * Must be lowercase (jabberd2 nodepreps usernames).
   */
  prefix?: string;
  /** per-wait bound; default 5000 ms */
  waitMs?: number;
}

const USERS = ['alice', 'bob'] as const;
type User = (typeof USERS)[number];
const PASSWORD = 'pw-secret';
const RES: Record<User, string> = { alice: 'home', bob: 'work' };
const UNKNOWN_DOMAIN = 'unknown.test';

// ---------------------------------------------------------------------------------------------
// normalization

interface NormCtx {
  domain: string;
  prefix: string;
}

function normJid(j: string, ctx: NormCtx): string {
  let local = '';
  let rest = j;
  const at = j.indexOf('@');
  const slash = j.indexOf('/');
  if (at >= 0 && (slash < 0 || at < slash)) {
    local = j.slice(0, at);
    rest = j.slice(at + 1);
  }
  const s2 = rest.indexOf('/');
  let domain = s2 >= 0 ? rest.slice(0, s2) : rest;
  const resource = s2 >= 0 ? rest.slice(s2) : '';
  if (ctx.prefix && local.startsWith(ctx.prefix)) local = local.slice(ctx.prefix.length);
  if (domain === ctx.domain) domain = '{domain}';
  return (local ? `${local}@` : '') + domain + resource;
}

function escText(s: string): string {
  return s.replace(/&/g, '&amp;').replace(/</g, '&lt;').replace(/>/g, '&gt;');
}
function escAttr(s: string): string {
  return escText(s).replace(/'/g, '&apos;');
}

const JID_ATTRS = new Set(['from', 'to', 'jid']);

/** Canonical, volatile-free XML text of a stanza. */
export function canonical(el: Element, ctx: NormCtx, parentNs = 'jabber:client'): string {
  const ns = el.attrs.xmlns ?? parentNs;
  const attrs: [string, string][] = [];
  for (const [k, v] of Object.entries(el.attrs)) {
    if (v === undefined || k === 'id') continue;
    if (k === 'xmlns') {
      if (v !== parentNs) attrs.push([k, v]);
      continue;
    }
    let value = v;
    if (JID_ATTRS.has(k)) value = normJid(v, ctx);
    else if (k === 'stamp') {
      assert.ok(isStamp(v), `unparseable delay stamp '${v}' in ${el.toString()}`);
      value = 'STAMP';
    } else if (k === 'ver' && ns === NS.roster) continue;
    attrs.push([k, value]);
  }
  attrs.sort((x, y) => (x[0] < y[0] ? -1 : x[0] > y[0] ? 1 : 0));
  let children: string[] = [];
  for (const c of el.children) {
    if (typeof c === 'string') {
      const text = c.trim();
      if (text) children.push(escText(text));
    } else if (ns === NS.version && c.name === 'os') {
      children.push(`<os>OS</os>`);
    } else if (ns === 'jabber:x:data' && el.name === 'field' && c.name === 'value' && (el.attrs.var === 'os' || el.attrs.var === 'os_version')) {
      children.push(`<value>OS</value>`);
    } else {
      children.push(canonical(c, ctx, ns));
    }
  }
  if (ns === NS.discoInfo && el.name === 'query') children = children.sort();
  const a = attrs.map(([k, v]) => ` ${k}='${escAttr(v)}'`).join('');
  return children.length ? `<${el.name}${a}>${children.join('')}</${el.name}>` : `<${el.name}${a}/>`;
}

function isStamp(v: string): boolean {
  // XEP-0082 (urn:xmpp:delay) or legacy jabber:x:delay CCYYMMDDThh:mm:ss
  return /^\d{4}-\d{2}-\d{2}T\d{2}:\d{2}:\d{2}(\.\d+)?(Z|[+-]\d{2}:\d{2})$/.test(v) || /^\d{8}T\d{2}:\d{2}:\d{2}$/.test(v);
}

// ---------------------------------------------------------------------------------------------
// stanza predicates

const bareOf = (j: string | undefined): string => (j ?? '').split('/')[0]!;

function isPresence(el: Element, from: string, type: string | undefined): boolean {
  if (!el.is('presence')) return false;
  if (type === undefined ? el.attrs.type !== undefined : el.attrs.type !== type) return false;
  return from.includes('/') ? el.attrs.from === from : bareOf(el.attrs.from) === from;
}

function rosterPushItem(el: Element): Element | undefined {
  if (!el.is('iq') || el.attrs.type !== 'set') return undefined;
  return el.getChild('query', NS.roster)?.getChild('item');
}

// ---------------------------------------------------------------------------------------------

export async function runReferenceScenarios(t: ScenarioTopology): Promise<Observation[]> {
  const prefix = t.prefix ?? `r${Date.now().toString(36)}${Math.random().toString(36).slice(2, 6)}-`;
  const domain = t.domain;
  const waitMs = t.waitMs ?? 5000;
  const ctx: NormCtx = { domain, prefix };
  const jidOf = (u: User): string => `${prefix}${u}@${domain}`;
  const fullOf = (u: User): string => `${jidOf(u)}/${RES[u]}`;
  const obs: Observation[] = [];
  const sessions: XmppSession[] = [];
  let step = 'setup';
  /** per session: index in `received` where the current step started */
  const marks = new Map<XmppSession, number>();
  const begin = (name: string): void => {
    step = name;
    for (const s of sessions) marks.set(s, s.received.length);
  };

  const note = (who: string, what: string): void => {
    obs.push({ step, who, what });
  };
  const record = (who: string, el: Element): Element => {
    note(who, canonical(el, ctx));
    return el;
  };
  /** waits for a stanza at `who`, records it */
  const expect = async (s: XmppSession, who: User, label: string, pred: (el: Element) => boolean): Promise<Element> => {
    const mark = marks.get(s) ?? 0;
    const el = await s.waitFor((e) => s.received.indexOf(e) >= mark && pred(e), waitMs, `[${step}] ${label}`);
    return record(who, el);
  };
  const iq = async (s: XmppSession, who: User, stanza: Element, label: string): Promise<Element> => {
    const res = await s.iq(stanza, waitMs, `[${step}] ${label}`);
    return record(who, res);
  };
  const doLogin = async (u: User): Promise<XmppSession> => {
    const s = await login(t.portOf(u), domain, `${prefix}${u}`, PASSWORD, RES[u], { timeoutMs: Math.max(waitMs, 10000) });
    sessions.push(s);
    assert.equal(s.jid, fullOf(u), `[${step}] ${u} bound an unexpected JID`);
    note(u, `bound ${normJid(s.jid, ctx)}`);
    return s;
  };
  const expectRosterPush = (s: XmppSession, who: User, contact: User, subscription: string, ask?: string): Promise<Element> =>
    expect(s, who, `roster push for ${contact} subscription='${subscription}'${ask ? ` ask='${ask}'` : ''}`, (el) => {
      const item = rosterPushItem(el);
      return (
        item !== undefined &&
        item.attrs.jid === jidOf(contact) &&
        item.attrs.subscription === subscription &&
        (item.attrs.ask ?? undefined) === ask
      );
    });

  try {
    // 1. in-band registration, each on its own connection
    begin('register');
    for (const u of USERS) {
      await register(t.portOf(u), domain, `${prefix}${u}`, PASSWORD, { timeoutMs: Math.max(waitMs, 10000) });
      note(u, 'registered');
    }

    // 2. login
    begin('login');
    const alice = await doLogin('alice');
    let bob = await doLogin('bob');

    // 3. roster fetch: empty
    begin('roster:initial');
    for (const [u, s] of [['alice', alice], ['bob', bob]] as const) {
      const res = await iq(s, u, xml('iq', { type: 'get' }, xml('query', { xmlns: NS.roster })), 'roster result');
      assert.equal(res.attrs.type, 'result', `[${step}] ${u}: roster get failed: ${res.toString()}`);
      assert.equal(res.getChild('query', NS.roster)?.getChildren('item').length ?? 0, 0, `[${step}] ${u}: roster not empty: ${res.toString()}`);
    }

    // 4. initial presence (no contacts yet)
    begin('presence:initial');
    await alice.send(xml('presence'));
    await bob.send(xml('presence'));

    // 5. alice subscribes to bob, bob approves
    begin('subscribe:alice->bob');
    await alice.send(xml('presence', { to: jidOf('bob'), type: 'subscribe' }));
    await expectRosterPush(alice, 'alice', 'bob', 'none', 'subscribe');
    await expect(bob, 'bob', 'subscribe request from alice', (el) => isPresence(el, jidOf('alice'), 'subscribe'));
    await bob.send(xml('presence', { to: jidOf('alice'), type: 'subscribed' }));
    await expectRosterPush(bob, 'bob', 'alice', 'from');
    await expectRosterPush(alice, 'alice', 'bob', 'to');
    await expect(alice, 'alice', 'subscribed from bob', (el) => isPresence(el, jidOf('bob'), 'subscribed'));
    await expect(alice, 'alice', "bob's available presence", (el) => isPresence(el, fullOf('bob'), undefined));

    // 6. bob subscribes to alice, alice approves
    begin('subscribe:bob->alice');
    await bob.send(xml('presence', { to: jidOf('alice'), type: 'subscribe' }));
    await expectRosterPush(bob, 'bob', 'alice', 'from', 'subscribe');
    await expect(alice, 'alice', 'subscribe request from bob', (el) => isPresence(el, jidOf('bob'), 'subscribe'));
    await alice.send(xml('presence', { to: jidOf('bob'), type: 'subscribed' }));
    await expectRosterPush(alice, 'alice', 'bob', 'both');
    await expectRosterPush(bob, 'bob', 'alice', 'both');
    await expect(bob, 'bob', 'subscribed from alice', (el) => isPresence(el, jidOf('alice'), 'subscribed'));
    await expect(bob, 'bob', "alice's available presence", (el) => isPresence(el, fullOf('alice'), undefined));

    begin('roster:after-subscription');
    for (const [u, s, contact] of [['alice', alice, 'bob'], ['bob', bob, 'alice']] as const) {
      const res = await iq(s, u, xml('iq', { type: 'get' }, xml('query', { xmlns: NS.roster })), 'roster result');
      const items = res.getChild('query', NS.roster)?.getChildren('item') ?? [];
      assert.equal(items.length, 1, `[${step}] ${u}: expected one roster item: ${res.toString()}`);
      assert.equal(items[0]!.attrs.jid, jidOf(contact), `[${step}] ${u}: wrong roster item: ${res.toString()}`);
      assert.equal(items[0]!.attrs.subscription, 'both', `[${step}] ${u}: expected subscription both: ${res.toString()}`);
    }

    // 7. messages
    const expectMessage = (s: XmppSession, who: User, from: User, body: string): Promise<Element> =>
      expect(s, who, `message '${body}' from ${from}`, (el) => el.is('message') && el.attrs.from === fullOf(from) && el.getChildText('body') === body);

    begin('message:alice->bob(bare)');
    await alice.send(xml('message', { to: jidOf('bob'), type: 'chat' }, xml('body', {}, 'hello bob (bare)')));
    await expectMessage(bob, 'bob', 'alice', 'hello bob (bare)');

    begin('message:alice->bob(full)');
    await alice.send(xml('message', { to: fullOf('bob'), type: 'chat' }, xml('body', {}, 'hello bob (full)')));
    await expectMessage(bob, 'bob', 'alice', 'hello bob (full)');

    begin('message:bob->alice');
    await bob.send(xml('message', { to: jidOf('alice'), type: 'chat' }, xml('body', {}, 'hello alice')));
    await expectMessage(alice, 'alice', 'bob', 'hello alice');

    // 8. iqs
    begin('iq:version(bob full jid)');
    {
      const res = await iq(alice, 'alice', xml('iq', { type: 'get', to: fullOf('bob') }, xml('query', { xmlns: NS.version })), "bob's client version");
      assert.equal(res.attrs.type, 'result', `[${step}] expected result: ${res.toString()}`);
      assert.equal(res.attrs.from, fullOf('bob'), `[${step}] wrong from: ${res.toString()}`);
      assert.ok(res.getChild('query', NS.version)?.getChildText('name'), `[${step}] no <name>: ${res.toString()}`);
      await expect(bob, 'bob', 'version query from alice', (el) => el.is('iq') && el.attrs.type === 'get' && el.attrs.from === fullOf('alice') && !!el.getChild('query', NS.version));
    }

    begin('iq:version(server)');
    {
      const res = await iq(alice, 'alice', xml('iq', { type: 'get', to: domain }, xml('query', { xmlns: NS.version })), 'server version');
      assert.equal(res.attrs.type, 'result', `[${step}] expected result: ${res.toString()}`);
      assert.equal(res.attrs.from, domain, `[${step}] wrong from: ${res.toString()}`);
      assert.ok(res.getChild('query', NS.version)?.getChildText('name'), `[${step}] no <name>: ${res.toString()}`);
    }

    begin('iq:disco#info(server)');
    {
      const res = await iq(alice, 'alice', xml('iq', { type: 'get', to: domain }, xml('query', { xmlns: NS.discoInfo })), 'server disco#info');
      assert.equal(res.attrs.type, 'result', `[${step}] expected result: ${res.toString()}`);
      const q = res.getChild('query', NS.discoInfo);
      assert.ok(q?.getChildren('identity').some((i) => i.attrs.category === 'server'), `[${step}] no server identity: ${res.toString()}`);
      assert.ok(q?.getChildren('feature').some((f) => f.attrs.var === NS.discoInfo), `[${step}] disco#info feature missing: ${res.toString()}`);
    }

    // 9. offline message
    begin('offline:bob-logs-out');
    await bob.stop();
    await expect(alice, 'alice', "bob's unavailable presence", (el) => isPresence(el, fullOf('bob'), 'unavailable'));

    begin('offline:alice-sends');
    await alice.send(xml('message', { to: jidOf('bob'), type: 'chat' }, xml('body', {}, 'while you were away')));
    // barrier: the sm handles alice's stanzas in order, and jabber:iq:version to the server goes
    // through the router like the message; once answered, the message has been stored offline.
    {
      const res = await iq(alice, 'alice', xml('iq', { type: 'get', to: domain }, xml('query', { xmlns: NS.version })), 'server version (barrier)');
      assert.equal(res.attrs.type, 'result', `[${step}] barrier iq failed: ${res.toString()}`);
    }
    assert.equal(
      alice.pending().filter((el) => el.is('message') && el.attrs.type === 'error').length,
      0,
      `[${step}] the offline message bounced: ${alice.pending().map(String).join('\n')}`,
    );

    begin('offline:bob-returns');
    bob = await doLogin('bob');
    await bob.send(xml('presence'));
    {
      const msg = await expect(bob, 'bob', 'the offline message with a delay stamp', (el) => el.is('message') && el.getChildText('body') === 'while you were away');
      assert.equal(msg.attrs.from, fullOf('alice'), `[${step}] offline message from: ${msg.toString()}`);
      const delay = msg.getChild('delay', NS.delay);
      assert.ok(delay, `[${step}] offline message has no urn:xmpp:delay: ${msg.toString()}`);
      assert.ok(delay.attrs.stamp && isStamp(delay.attrs.stamp), `[${step}] bad delay stamp: ${msg.toString()}`);
    }
    await expect(alice, 'alice', "bob's available presence", (el) => isPresence(el, fullOf('bob'), undefined));
    await expect(bob, 'bob', "alice's available presence", (el) => isPresence(el, fullOf('alice'), undefined));

    // 10. unknown domain: the router bounces with 404, the sm turns it into item-not-found
    begin('unknown-domain:message');
    {
      const to = `nobody@${UNKNOWN_DOMAIN}`;
      await alice.send(xml('message', { to, type: 'chat' }, xml('body', {}, 'anyone there?')));
      const err = await expect(alice, 'alice', `message error from ${to}`, (el) => el.is('message') && el.attrs.type === 'error' && el.attrs.from === to);
      assert.equal(errorCondition(err), 'item-not-found', `[${step}] expected item-not-found: ${err.toString()}`);
    }
    begin('unknown-domain:iq');
    {
      const res = await iq(alice, 'alice', xml('iq', { type: 'get', to: UNKNOWN_DOMAIN }, xml('query', { xmlns: NS.version })), `iq error from ${UNKNOWN_DOMAIN}`);
      assert.equal(res.attrs.type, 'error', `[${step}] expected an error: ${res.toString()}`);
      assert.equal(errorCondition(res), 'item-not-found', `[${step}] expected item-not-found: ${res.toString()}`);
    }

    // 11. logout with an explicit unavailable presence
    begin('logout:alice');
    for (const [u, s] of [['alice', alice], ['bob', bob]] as const) {
      const stray = s.pending().filter((el) => el.is('message'));
      assert.equal(stray.length, 0, `[${step}] ${u} received unexpected (duplicate?) messages:\n${stray.map(String).join('\n')}`);
    }
    await alice.send(xml('presence', { type: 'unavailable' }));
    await expect(bob, 'bob', "alice's unavailable presence", (el) => isPresence(el, fullOf('alice'), 'unavailable'));
    await alice.stop();

    begin('logout:bob');
    await bob.stop();
    note('bob', 'logged out');
  } catch (err) {
    if (err instanceof Error && !err.message.includes(`[${step}]`)) err.message = `[${step}] ${err.message}`;
    throw err;
  } finally {
    await Promise.allSettled(sessions.map((s) => s.stop()));
  }
  return obs;
}

/** One line per observation, for logs and readable diffs. */
export function formatObservations(obs: readonly Observation[]): string {
  return obs.map((o) => `${o.step.padEnd(28)} ${o.who.padEnd(6)} ${o.what}`).join('\n');
}
