/**
 * (main) Cluster routing: which node gets each route, the address rewriting that lets a stock
 * c2s and sm on different machines talk to each other, and learning where sessions live from
 * the session protocol passing through. See docs/architecture.md ("cross-node stanza path").
 *
 * Names: a node-local name `n` of node N (an sm id such as `sm`, a c2s id such as `c2s`) is
 * written `n--N` when another node must refer to it (an "alias"). Every node binds on its own
 * router the aliases of the peers' sm ids, so a local c2s can talk to a remote sm, and it
 * rewrites the route `from` of a start it forwards to `c2s--<self>`, so the remote sm
 * addresses that session's traffic to an alias that comes back here.
 *
 * Users: all sessions of one bare JID live in one sm (its "home"), as jabberd2's own multi-sm
 * clustering requires: the sm keeps per-user state in memory. A user's first session is hosted
 * by the sm of the node where the user logs in; later logins anywhere are forwarded there.
 * Stanzas to a user of a clustered domain go to the home node; with no session anywhere, to
 * the local sm (offline storage is shared).
 */
import { NS_CLIENT, NS_COMPONENT, NS_SESSION } from '../protocol/ns.ts';
import { PresenceLedger } from './presence-ledger.ts';
import { domainOf, parseJid } from '../protocol/jid.ts';
import { rewriteAttrs } from '../protocol/route.ts';
import { attr, attrNS, element, escapeAttr, firstChild, text } from '../xml/node.ts';
import { Stanza, type Raw } from '../xml/stanza.ts';
import { ClusterTable, type NameEntry, type Op, type SessionEntry } from './table.ts';
import type { BindFlags } from '../protocol/component.ts';
import type { Logger } from '../log.ts';

export const ALIAS_SEP = '--';

export function aliasOf(name: string, node: string): string {
  return `${name}${ALIAS_SEP}${node}`;
}

/** What the cluster router needs of the local side (the switchboard). */
export interface LocalSide {
  /** deliver `out` (default: the stanza's own bytes) to the local component bound to `name`; false when there is none */
  deliverLocalName(name: string, st: Stanza, out?: Raw): boolean;
  /** is `name` bound by a local component? */
  hasLocalName(name: string): boolean;
  /** has the router advertised `name` (bound by some other component there)? */
  upstreamHas(name: string): boolean;
  /** tell the local components that `name` is gone */
  withdrawName(name: string): void;
}

export interface ClusterUpstream {
  readonly ready: boolean;
  bind(name: string, flags: BindFlags): Promise<string | null>;
  unbind(name: string): Promise<string | null>;
  send(xml: Raw): boolean;
}

/** What the cluster router needs of the peer links. */
export interface PeerPort {
  isUp(node: string): boolean;
  upNodes(): string[];
  sendStanza(node: string, raw: Raw): boolean;
  sendSnapshot(node: string, snap: ReturnType<ClusterTable['snapshot']>): void;
  broadcastDelta(incarnation: number, seq: number, ops: Op[]): void;
  requestResync(node: string): void;
}

export interface ClusterStats {
  toPeers: number;
  fromPeers: number;
  rewritten: number;
  sessionsLearned: number;
  sessionsEnded: number;
  droppedFromPeers: number;
}

export class ClusterRouter {
  readonly table: ClusterTable;
  /** clustered domains: configured, or learned from the local sm's multi binds */
  private readonly domains = new Set<string>();
  private readonly configuredDomains: boolean;
  /** names we bound on our router for peers: name → origin node */
  private readonly proxied = new Map<string, string>();
  /** the subset of `proxied` the router has confirmed */
  private readonly proxiedBound = new Set<string>();
  private deltaScheduled = false;
  readonly ledger = new PresenceLedger();
  readonly stats: ClusterStats = { toPeers: 0, fromPeers: 0, rewritten: 0, sessionsLearned: 0, sessionsEnded: 0, droppedFromPeers: 0 };

  constructor(
    readonly self: string,
    readonly incarnation: number,
    domains: readonly string[],
    private readonly local: LocalSide,
    private readonly upstream: ClusterUpstream,
    private readonly peers: PeerPort,
    private readonly log: Logger,
  ) {
    for (const d of domains) this.domains.add(d.toLowerCase());
    this.configuredDomains = domains.length > 0;
    this.table = new ClusterTable(self, incarnation, {
      onRemoteName: (origin, n, present) => this.onRemoteName(origin, n, present),
      onForeignEntry: (origin, e) => this.log.warn(`node '${origin}' announced ${e.jid} as hosted by node '${e.home}': refused (a node announces only its own sessions)`),
      onIndexFull: (bare, err) => this.log.error(`cannot record the home of ${bare}: ${err.message}`),
    });
  }

  isClustered(domain: string): boolean {
    return this.domains.has(domain);
  }

  /** Names bound on our router on behalf of peers (and confirmed by it). */
  proxiedNames(): string[] {
    return [...this.proxiedBound];
  }

  clusteredDomains(): string[] {
    return [...this.domains];
  }

  /** `n--N` for a known node N → {name, node}; otherwise null. */
  parseAlias(name: string): { name: string; node: string } | null {
    const i = name.lastIndexOf(ALIAS_SEP);
    if (i <= 0) return null;
    const node = name.slice(i + ALIAS_SEP.length);
    if (node !== this.self && !this.table.knownOrigins().includes(node)) return null;
    return { name: name.slice(0, i), node };
  }

  // ---- names -------------------------------------------------------------------------------

  /** A local component bound (or lost) a name. */
  onLocalName(name: string, multi: boolean, present: boolean): void {
    if (present) {
      if (!this.configuredDomains && multi && name.includes('.')) this.domains.add(name);
      // a clustered domain; another dotted name (an unclustered domain of the local sm) is
      // offered to the cluster like a router component; a plain id (`sm`) is node-local
      this.table.addOwnName({ name, kind: this.domains.has(name) ? 'domain' : name.includes('.') ? 'component' : 'sm' });
    } else {
      this.table.removeOwnName(name);
    }
    this.scheduleDelta();
  }

  /** The router advertised a name: components with a dotted name are offered to the cluster. */
  onRouterName(name: string, available: boolean): void {
    if (!name.includes('.') || this.domains.has(name) || this.parseAlias(name) || this.proxied.has(name)) return;
    if (available) this.table.addOwnName({ name, kind: 'component' });
    else this.table.removeOwnName(name);
    this.scheduleDelta();
  }

  private onRemoteName(origin: string, n: NameEntry, present: boolean): void {
    let upstreamName: string;
    if (n.kind === 'sm') upstreamName = aliasOf(n.name, origin);
    else if (n.kind === 'component') {
      if (present && (this.local.hasLocalName(n.name) || this.local.upstreamHas(n.name))) return; // ours wins
      upstreamName = n.name;
    } else {
      if (present && !this.domains.has(n.name)) {
        this.log.warn(`node '${origin}' serves domain '${n.name}', which is not clustered here`);
      }
      return;
    }
    if (present) {
      if (this.proxied.has(upstreamName)) return;
      this.proxied.set(upstreamName, origin);
      void this.upstream.bind(upstreamName, {}).then((code) => {
        if (code === null) {
          if (this.proxied.get(upstreamName) === origin) this.proxiedBound.add(upstreamName);
          this.log.info(`bound '${upstreamName}' on the router for node '${origin}'`);
        }
        else if (code !== 'unbound') {
          this.log.warn(`could not bind '${upstreamName}' for node '${origin}' on the router: error ${code}`);
          if (this.proxied.get(upstreamName) === origin) this.proxied.delete(upstreamName);
        }
      });
    } else if (this.proxied.get(upstreamName) === origin) {
      this.proxied.delete(upstreamName);
      this.proxiedBound.delete(upstreamName);
      void this.upstream.unbind(upstreamName);
    }
  }

  // ---- routing -----------------------------------------------------------------------------

  /** A route from a local component (validated by the switchboard). true = handled here. */
  fromLocal(st: Stanza, to: string): boolean {
    this.learnFromSm(st);
    return this.dispatch(st, to);
  }

  /** A unicast route from our router. true = handled here. */
  fromRouter(st: Stanza, to: string): boolean {
    if (this.draining && this.refuseStart(st)) return true;
    return this.dispatch(st, to);
  }

  /**
   * While draining, a client's session start is answered as the sm answers a start it cannot
   * serve (`sc:failed='1'`); c2s then tells the client, which can log in on another node.
   */
  private refuseStart(st: Stanza): boolean {
    const inner = st.inner;
    if (!inner || inner.uri !== NS_SESSION || attr(inner, 'action') !== 'start') return false;
    const from = st.attr('from');
    const to = st.attr('to');
    if (!from || !to) return false;
    const attrs = Object.entries(inner.attrs)
      .filter(([k]) => k !== 'action' && !k.startsWith('xmlns'))
      .map(([k, v]) => ` ${k}='${escapeAttr(v)}'`).join('');
    const p = inner.name.includes(':') ? inner.name.slice(0, inner.name.indexOf(':')) : 'sc';
    const reply = `<route xmlns='${NS_COMPONENT}' from='${escapeAttr(to)}' to='${escapeAttr(from)}'>` +
      `<${p}:session xmlns:${p}='${NS_SESSION}'${attrs} action='started' ${p}:failed='1'/></route>`;
    this.upstream.send(reply);
    this.log.info(`refused a session start for ${attr(inner, 'target') ?? '?'}: node draining`);
    return true;
  }

  /** A bounce (route with error) from our router; true = handled. */
  bounceFromRouter(st: Stanza): boolean {
    const from = domainOf(st.attr('from'));
    if (from === null) return false;
    const a = this.parseAlias(from);
    if (!a || a.node === this.self) return false;
    // we sent it up on behalf of a peer: the bounce goes back there
    return this.toPeer(a.node, st.raw);
  }

  /** A route from a peer node. */
  fromPeer(origin: string, st: Stanza): void {
    this.stats.fromPeers++;
    const el = st.tag;
    if (el.uri !== NS_COMPONENT || el.local !== 'route' || attr(el, 'type') !== undefined) {
      // peers carry unicast routes only
      this.stats.droppedFromPeers++;
      this.log.warn(`node '${origin}' sent <${el.name}> in '${el.uri}' as a stanza; only unicast component routes travel between nodes: dropped`);
      return;
    }
    let to = domainOf(attr(el, 'to'));
    if (to === null) {
      this.log.warn(`route from node '${origin}' without a valid 'to'; dropped`);
      return;
    }
    const changes: Record<string, string> = {};
    const a = this.parseAlias(to);
    if (a) {
      if (a.node !== this.self) {
        this.stats.droppedFromPeers++;
        this.log.warn(`route from node '${origin}' for '${to}', which belongs to node '${a.node}': dropped (loop guard)`);
        return;
      }
      to = a.name;
      changes.to = a.name;
    }
    const error = attr(el, 'error') !== undefined;
    // a bare name from the origin is the origin's own (its sm, its c2s): refer to it by alias
    const from = domainOf(attr(el, 'from'));
    if (from !== null && !from.includes('.') && !this.parseAlias(from)) changes.from = aliasOf(from, origin);
    if (error && from !== null) {
      // a bounce coming home: deliver to the binder of its `from`
      const fa = this.parseAlias(from);
      const fromName = fa && fa.node === this.self ? fa.name : from;
      if (fa && fa.node === this.self) {
        const out = rewriteAttrs(st, { ...changes, from: fa.name });
        if (this.local.deliverLocalName(fromName, st, out)) return;
      }
      this.log.info(`bounce from node '${origin}' for '${from}' not deliverable here; dropped`);
      return;
    }
    this.observeToSm(st);
    this.observePresence(st);
    const changed = changes.to !== undefined || changes.from !== undefined;
    const out = changed ? rewriteAttrs(st, changes) : st.raw;
    if (changed) this.stats.rewritten++;
    if (this.local.deliverLocalName(to, st, out)) return;
    // a name on our router (a c2s, a component): up it goes; never to another peer
    if (!this.upstream.send(out)) this.log.warn(`router link cannot take a route from node '${origin}' to '${to}'; dropped`);
  }

  /**
   * The decision for a route from the local side or the router: true when it went to a peer,
   * false to let the switchboard handle it locally (local component or upstream).
   */
  private dispatch(st: Stanza, to: string): boolean {
    const a = this.parseAlias(to);
    if (a) {
      if (a.node === this.self) return false; // cannot normally happen: nobody else binds our aliases
      return this.toPeer(a.node, st.raw);
    }
    if (this.isClustered(to)) {
      const key = routingKey(st);
      if (key === null) return false; // to the server itself: the local sm answers
      const home = this.table.homeOf(key);
      if (home === undefined || home === this.self) return false;
      if (!this.peers.isUp(home)) {
        this.log.info(`home node '${home}' of ${key} is not reachable; the local sm handles the route`);
        return false;
      }
      return this.toPeer(home, st.raw);
    }
    if (this.local.hasLocalName(to)) return false;
    const owner = this.proxied.get(to) ?? (this.local.upstreamHas(to) ? undefined : this.table.remoteNameOwner(to));
    if (owner !== undefined && owner !== this.self) return this.toPeer(owner, st.raw);
    return false;
  }

  private toPeer(node: string, raw: Raw): boolean {
    this.flushDelta(); // the peer learns our sessions before the stanzas that follow from them
    if (!this.peers.sendStanza(node, raw)) return false;
    this.stats.toPeers++;
    return true;
  }

  // ---- learning sessions -------------------------------------------------------------------

  /** Watch the local sm's session control replies and the clients' session presence. */
  private learnFromSm(st: Stanza): void {
    const inner = st.inner;
    if (!inner || inner.uri !== NS_SESSION || inner.local !== 'session') return;
    const action = attr(inner, 'action');
    const sm = attrNS(inner, NS_SESSION, 'sm');
    if (action === 'started') {
      const target = parseJid(attr(inner, 'target'));
      const to = domainOf(st.attr('to'));
      if (!target || !sm || to === null || !target.resource) return;
      const a = this.parseAlias(to);
      const c2sId = attrNS(inner, NS_SESSION, 'c2s');
      if (c2sId === undefined) return;
      const s: SessionEntry = {
        c2sId,
        jid: `${target.node}@${target.domain}/${target.resource}`,
        home: this.self,
        c2sNode: a ? a.node : this.self,
        c2s: a ? a.name : to,
        sm,
        prio: 0,
        avail: false,
        since: Date.now(),
      };
      this.table.addOwnSession(s);
      this.stats.sessionsLearned++;
      this.scheduleDelta();
    } else if ((action === 'ended' || action === 'replaced') && sm) {
      const s = this.table.ownSessionBySm(sm);
      if (s) {
        this.table.removeOwnSession(s.jid);
        this.stats.sessionsEnded++;
        this.scheduleDelta();
      }
    }
  }

  /** A client's presence on its way to the local sm: priority and availability of the session. */
  observeToSm(st: Stanza): void {
    const inner = st.inner;
    if (!inner || inner.local !== 'presence' || inner.uri !== NS_CLIENT || attr(inner, 'to') !== undefined) return;
    const sm = attrNS(inner, NS_SESSION, 'sm');
    if (!sm) return;
    const s = this.table.ownSessionBySm(sm);
    if (!s) return;
    const type = attr(inner, 'type');
    if (type !== undefined && type !== 'unavailable') return;
    // the priority is the one thing routing reads beyond the start tags: the tree is built here only
    const full = firstChild(st.el);
    const p = full ? firstChild(full, 'priority') : undefined;
    // RFC 6121 §4.7.2.3: -128..127; a client may send more, the table (and its wire form) holds that range
    const prio = p ? Math.max(-128, Math.min(127, Number.parseInt(text(p), 10) || 0)) : 0;
    const avail = type !== 'unavailable';
    if (s.prio === prio && s.avail === avail) return;
    this.table.addOwnSession({ ...s, prio, avail });
    this.scheduleDelta();
  }

  /** Presence from a remote session reaching our sm: kept in the ledger. */
  private observePresence(st: Stanza): void {
    const inner = st.inner;
    if (!inner || inner.local !== 'presence' || inner.uri !== NS_CLIENT) return;
    const from = attr(inner, 'from');
    const to = attr(inner, 'to');
    if (!from || !to || !from.includes('/')) return;
    const type = attr(inner, 'type');
    if (type === undefined) this.ledger.record(from, to, true);
    else if (type === 'unavailable') this.ledger.record(from, to, false);
  }

  /** While draining, sessions are neither started nor homed here. */
  private draining = false;

  /**
   * Graceful stop: ask the sms to end every session this node takes part in, as its c2s would
   * (`end`), and wait until the table shows none left (or `ms` passed). Returns how many are left.
   * - sessions in our sm: our sm ends them, tells their contacts, and sends `ended` to their
   *   c2s (here or on a peer), which closes the client;
   * - sessions in a peer's sm whose client is on our c2s: that sm does the same.
   */
  async drain(ms: number): Promise<number> {
    this.draining = true;
    const smName = this.table.ownNames().find((n) => n.kind === 'sm')?.name;
    const involved = (): SessionEntry[] => this.table.allSessions().filter((s) => s.home === this.self || s.c2sNode === this.self);
    for (const s of involved()) {
      const end = (from: string, to: string): string =>
        `<route xmlns='${NS_COMPONENT}' from='${escapeAttr(from)}' to='${escapeAttr(to)}'>` +
        `<sc:session xmlns:sc='${NS_SESSION}' action='end' sc:c2s='${escapeAttr(s.c2sId)}' sc:sm='${escapeAttr(s.sm)}'/></route>`;
      if (s.home === this.self) {
        if (!smName) continue;
        const from = s.c2sNode === this.self ? s.c2s : aliasOf(s.c2s, s.c2sNode);
        const raw = end(from, smName);
        this.local.deliverLocalName(smName, Stanza.fromElement(element('route', { xmlns: NS_COMPONENT, from, to: smName }), raw));
      } else {
        // to the home's sm through the peer; it sees `from` as our c2s
        this.toPeer(s.home, end(s.c2s, aliasOf('sm', s.home)));
      }
    }
    const until = Date.now() + ms;
    while (involved().length > 0 && Date.now() < until) await new Promise((r) => setTimeout(r, 20));
    this.flushDelta();
    return involved().length;
  }

  /**
   * The local sm went away (killed, or its link lost): its sessions died without telling
   * anyone. Their clients are ended wherever their c2s is, and the peers are told the sessions
   * were lost, so their presence ledgers send the unavailable presence the sm can no longer send.
   */
  onLocalSmGone(): void {
    const lost = this.table.clearOwnSessions();
    if (lost.length === 0) return;
    for (const s of lost) this.endClient(s);
    this.log.notice(`local sm gone: ${lost.length} session(s) lost; their clients were ended`);
    this.flushDelta();
  }

  /** Tell the c2s holding the client of a lost session that it ended (c2s closes the client). */
  private endClient(s: SessionEntry): boolean {
    const domain = s.jid.slice(s.jid.indexOf('@') + 1, s.jid.indexOf('/'));
    const to = s.c2sNode === this.self ? s.c2s : aliasOf(s.c2s, s.c2sNode);
    const route = `<route xmlns='${NS_COMPONENT}' from='${escapeAttr(domain)}' to='${escapeAttr(to)}'>` +
      `<sc:session xmlns:sc='${NS_SESSION}' action='ended' sc:c2s='${escapeAttr(s.c2sId)}' sc:sm='${escapeAttr(s.sm)}' target='${escapeAttr(s.jid)}'/></route>`;
    return s.c2sNode === this.self ? this.upstream.send(route) : this.toPeer(s.c2sNode, route);
  }

  /** One unavailable presence to each local recipient that held presence from a lost session. */
  private sendLostPresence(jids: readonly string[]): number {
    const unavailable = this.ledger.lost(jids);
    for (const [from, to] of unavailable) {
      const d = domainOf(to);
      if (d === null) continue;
      const route = `<route xmlns='${NS_COMPONENT}' from='${escapeAttr(d)}' to='${escapeAttr(d)}'>` +
        `<presence xmlns='${NS_CLIENT}' type='unavailable' from='${escapeAttr(from)}' to='${escapeAttr(to)}'/></route>`;
      const el = element('route', { xmlns: NS_COMPONENT, from: d, to: d }, [
        element('presence', { xmlns: NS_CLIENT, type: 'unavailable', from, to }),
      ]);
      if (!this.local.deliverLocalName(d, Stanza.fromElement(el, route))) this.upstream.send(route);
    }
    return unavailable.length;
  }


  // ---- replication -------------------------------------------------------------------------

  private scheduleDelta(): void {
    if (this.deltaScheduled) return;
    this.deltaScheduled = true;
    queueMicrotask(() => this.flushDelta());
  }

  flushDelta(): void {
    this.deltaScheduled = false;
    const d = this.table.takeDelta();
    if (d) this.peers.broadcastDelta(this.incarnation, d.seq, d.ops);
  }

  onPeerUp(node: string): void {
    this.flushDelta();
    this.peers.sendSnapshot(node, this.table.snapshot());
  }

  /**
   * A peer is gone: its sessions and names are forgotten, and everything that depended on them
   * here is cleaned up the way one jabberd2 would if that machine's processes had died:
   * - clients of our c2s whose sessions lived in its sm get `ended` (c2s closes their streams;
   *   they log in again, now at home here);
   * - sessions in our sm whose client was on its c2s are ended by our sm (it is told that c2s
   *   went away), which tells their contacts;
   * - local users that had presence from its sessions get one unavailable each (the presence
   *   ledger), since its sm cannot send them any more.
   */
  onPeerDown(node: string): void {
    const lost = this.table.dropOrigin(node);
    let ended = 0;
    for (const s of lost) if (s.c2sNode === this.self && this.endClient(s)) ended++;
    // sessions of our sm whose client connection was on the lost node
    const c2sNames = new Set<string>();
    for (const s of this.table.ownSessionsVia(node)) c2sNames.add(s.c2s);
    for (const n of c2sNames) this.local.withdrawName(aliasOf(n, node));
    const sent = this.sendLostPresence(lost.map((s) => s.jid));
    this.log.notice(`node '${node}' unreachable: forgot its ${lost.length} session(s) and its names; ended ${ended} client session(s) here, ` +
      `told the sm that ${c2sNames.size} c2s of it went away, sent ${sent} unavailable presence(s) to local contacts`);
  }


  onSnapshot(origin: string, incarnation: number, seq: number, sessions: SessionEntry[], names: NameEntry[]): void {
    this.table.applySnapshot(origin, incarnation, seq, sessions, names);
    this.reconcile(sessions.map((s) => s.jid));
  }

  /**
   * After a merge (a healed split, or two first logins of one user racing on two nodes) the
   * table may show what one server never has; every node applies the same rules to its own
   * sessions, so exactly one side acts:
   * 1. the same full JID on two nodes: the newer session wins (ties: the smaller node name);
   *    the older one is ended with `<conflict/>`, as a second login on one server does;
   * 2. one user's sessions in two sms: the user's home is the node of the oldest session;
   *    sessions in any other sm are ended (the clients log in again and land at home).
   */
  private reconcile(touched: readonly string[]): void {
    const bares = new Set(touched.map((j) => j.slice(0, j.indexOf('/'))));
    for (const bare of bares) {
      // only our own sessions can be ended here: users without one (nearly all, after a
      // snapshot) cost a lookup, not the decoding of their remote sessions
      if (this.table.ownSessionsOf(bare).length === 0) continue;
      const all = this.table.sessionsOf(bare);
      const newer = (o: SessionEntry, x: SessionEntry): boolean => o.since > x.since || (o.since === x.since && o.home < x.home);
      // rule 1 decides first; the home is then the oldest of the sessions that survive it
      const alive = all.filter((x) => !all.some((o) => o !== x && o.jid === x.jid && newer(o, x)));
      const home = alive.reduce<SessionEntry | undefined>((h, x) => (!h || newer(h, x) ? x : h), undefined)?.home;
      for (const own of all) {
        if (own.home !== this.self) continue;
        if (!alive.includes(own)) {
          this.log.notice(`${own.jid} is also logged in on another node (newer): ending ours with a conflict`);
          this.endOwnSession(own, 'replaced');
        } else if (home !== undefined && home !== this.self) {
          this.log.notice(`${own.jid}: the user's home is node '${home}': ending the session hosted here`);
          this.endOwnSession(own, 'ended');
        }
      }
    }
  }

  /** End a session of our sm: the c2s closes the client (with a conflict for `replaced`), the sm ends it properly. */
  private endOwnSession(s: SessionEntry, action: 'replaced' | 'ended'): void {
    const domain = s.jid.slice(s.jid.indexOf('@') + 1, s.jid.indexOf('/'));
    const ctl = (a: string): string =>
      `<sc:session xmlns:sc='${NS_SESSION}' action='${a}' sc:c2s='${escapeAttr(s.c2sId)}' sc:sm='${escapeAttr(s.sm)}' target='${escapeAttr(s.jid)}'/>`;
    const toC2s = `<route xmlns='${NS_COMPONENT}' from='${escapeAttr(domain)}' to='${escapeAttr(s.c2sNode === this.self ? s.c2s : aliasOf(s.c2s, s.c2sNode))}'>${ctl(action)}</route>`;
    if (s.c2sNode === this.self) this.upstream.send(toC2s);
    else this.toPeer(s.c2sNode, toC2s);
    const smName = this.table.ownNames().find((n) => n.kind === 'sm')?.name;
    if (smName) {
      const from = s.c2sNode === this.self ? s.c2s : aliasOf(s.c2s, s.c2sNode);
      const end = `<route xmlns='${NS_COMPONENT}' from='${escapeAttr(from)}' to='${escapeAttr(smName)}'>${ctl('end')}</route>`;
      this.local.deliverLocalName(smName, Stanza.fromElement(element('route', { xmlns: NS_COMPONENT, from, to: smName }), end));
    }
    // gone from the cluster's view now; the sm's `ended` finds nothing left to remove
    this.table.removeOwnSession(s.jid);
    this.scheduleDelta();
  }

  onDelta(origin: string, incarnation: number, seq: number, ops: Op[]): void {
    const lostJids: string[] = [];
    for (const op of ops) {
      if (op.op !== 'sess-') continue;
      if (op.lost) lostJids.push(op.jid);
      else this.ledger.forget(op.jid);
    }
    if (lostJids.length) {
      const n = this.sendLostPresence(lostJids);
      this.log.notice(`node '${origin}' lost ${lostJids.length} session(s) with its sm; sent ${n} unavailable presence(s) to local contacts`);
    }
    if (!this.table.applyDelta(origin, incarnation, seq, ops)) {
      this.log.info(`gap in updates from node '${origin}' (seq ${seq}); asking for a snapshot`);
      this.peers.requestResync(origin);
      return;
    }
    const added = ops.flatMap((op) => (op.op === 'sess+' ? [op.s.jid] : []));
    if (added.length) this.reconcile(added);
  }

  onResyncRequest(node: string): void {
    this.flushDelta();
    this.peers.sendSnapshot(node, this.table.snapshot());
  }
}

/** The bare JID a route is about: session control `target`, else the inner `to` (with a node). */
export function routingKey(st: Stanza): string | null {
  const inner = st.inner;
  if (!inner) return null;
  const key = inner.uri === NS_SESSION ? attr(inner, 'target') : attr(inner, 'to');
  const j = parseJid(key);
  if (!j || !j.node) return null;
  return `${j.node}@${j.domain}`;
}
