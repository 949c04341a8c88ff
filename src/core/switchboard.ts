/**
 * (main) The node's routing core for the pass-through case: the local name table (names bound
 * by components on our sm listener), jabberd2's bind rules and ACLs, advertisements, and the
 * decision for every route: to a local component, or up to the jabberd2 router. Mirrors
 * jabberd2's router/router.c; deviations are listed in docs/protocol/component.md.
 */
import {
  ROUTE_ERRORS, THROTTLE, advertisement, bindReply, unbindReply, type BindFlags,
} from '../protocol/component.ts';
import { NS_COMPONENT } from '../protocol/ns.ts';
import { domainOf, parseJid } from '../protocol/jid.ts';
import { selectIndex } from '../routing/select.ts';
import { attr, firstChild, type XmlElement } from '../xml/node.ts';
import { withAttr, type Raw, type Stanza } from '../xml/stanza.ts';
import type { ComponentConn } from '../links/component-server.ts';
import type { CloseReason } from '../net/close-reason.ts';
import type { Logger } from '../log.ts';
import type { ClusterRouter } from '../cluster/cluster-router.ts';

export type AclType = 'all' | 'bind' | 'default-route' | 'log';

/** What the switchboard needs of the upstream router link. */
export interface Upstream {
  readonly ready: boolean;
  bind(name: string, flags: BindFlags): Promise<string | null>;
  unbind(name: string): Promise<string | null>;
  /** false when it cannot be sent or queued */
  send(xml: Raw): boolean;
}

interface LocalRoute {
  name: string;
  multi: boolean;
  comps: ComponentConn[];
  /** resolves when the upstream bind is answered: null = bound */
  upstream: Promise<string | null>;
  bound: boolean;
}

interface CompState {
  /** names this component has been told are available */
  seen: Set<string>;
  /**
   * names whose bind this component has been answered with success: it hears advertisements only
   * once it has one, as with jabberd2 (the sm drops whatever arrives before its first bind reply)
   */
  bound: Set<string>;
  throttled: boolean;
  held: Raw[];
  /** serialises a component's binds and unbinds so replies keep request order */
  chain: Promise<void>;
}

export interface SwitchboardStats {
  routesFromComponents: number;
  routesFromRouter: number;
  localDeliveries: number;
  upstreamSends: number;
  bounces: number;
  dropped: number;
}

export class Switchboard {
  private readonly routes = new Map<string, LocalRoute>();
  private readonly state = new Map<ComponentConn, CompState>();
  private readonly comps = new Set<ComponentConn>();
  private defaultRoute: { name: string; comp: ComponentConn } | null = null;
  private readonly logSinks = new Set<ComponentConn>();
  /** names the router advertised to us as available (never our own) */
  private readonly upstreamAvail = new Set<string>();
  readonly stats: SwitchboardStats = {
    routesFromComponents: 0, routesFromRouter: 0, localDeliveries: 0, upstreamSends: 0, bounces: 0, dropped: 0,
  };

  private cluster: ClusterRouter | null = null;

  constructor(
    private readonly upstream: Upstream,
    private readonly acl: Readonly<Record<AclType, readonly string[]>>,
    private readonly log: Logger,
  ) {}

  /** Route between nodes through this cluster router (absent: a single node). */
  attachCluster(cluster: ClusterRouter): void {
    this.cluster = cluster;
  }

  /**
   * Deliver `out` (the stanza `st`, possibly rewritten) to the local component bound to `name`;
   * false when there is none.
   */
  deliverLocalName(name: string, st: Stanza, out: Raw = st.raw): boolean {
    const route = this.routes.get(name);
    if (!route || !route.bound || route.comps.length === 0) return false;
    this.deliverLocal(route, st, out);
    return true;
  }

  /**
   * Tell every local component that has bound something that `name` went away (the sm then
   * ends the sessions whose c2s had that name).
   */
  withdrawName(name: string): void {
    for (const o of this.comps) if (this.hasBound(o)) o.send(advertisement(name, false));
  }

  hasLocalName(name: string): boolean {
    return this.routes.get(name)?.bound === true;
  }

  upstreamHas(name: string): boolean {
    return this.upstreamAvail.has(name);
  }

  /** Names bound locally, with their binders (for status output). */
  names(): { name: string; components: string[]; multi: boolean; bound: boolean }[] {
    return [...this.routes.values()].map((r) => ({ name: r.name, components: r.comps.map((c) => c.user), multi: r.multi, bound: r.bound }));
  }

  availableUpstream(): string[] {
    return [...this.upstreamAvail];
  }

  private allowed(user: string, type: AclType): boolean {
    return this.acl.all.includes(user) || (this.acl[type]?.includes(user) ?? false);
  }

  // ---- component side -------------------------------------------------------------------

  onComponentReady(c: ComponentConn): void {
    this.comps.add(c);
    this.state.set(c, { seen: new Set(), bound: new Set(), throttled: false, held: [], chain: Promise.resolve() });
  }

  onComponentElement(c: ComponentConn, st: Stanza): void {
    const tag = st.tag;
    if (tag.uri === NS_COMPONENT && tag.local === 'route') {
      this.stats.routesFromComponents++;
      if (this.state.has(c)) this.routeFromComponent(c, st);
      return;
    }
    const el = st.el;
    if (el.uri !== NS_COMPONENT) {
      // jabberd2's router drops top-level elements outside the component namespace
      this.log.info(`${c.label}: dropped <${el.name}> (namespace '${el.uri}' is not the component namespace)`);
      this.stats.dropped++;
      return;
    }
    const cs = this.state.get(c);
    if (!cs) return;
    switch (el.local) {
      case 'bind':
        cs.chain = cs.chain.then(() => this.bind(c, el)).catch((err) => this.log.error(`bind: ${err}`));
        return;
      case 'unbind':
        cs.chain = cs.chain.then(() => this.unbind(c, el)).catch((err) => this.log.error(`unbind: ${err}`));
        return;
      case 'throttle':
        cs.throttled = !cs.throttled;
        c.send(THROTTLE);
        if (!cs.throttled) {
          const held = cs.held;
          cs.held = [];
          for (const x of held) c.send(x);
        }
        return;
      default:
        this.log.info(`${c.label}: dropped unknown element <${el.name}>`);
        this.stats.dropped++;
    }
  }

  onComponentGone(c: ComponentConn, reason: CloseReason, detail: string): void {
    this.comps.delete(c);
    this.state.delete(c);
    this.logSinks.delete(c);
    if (this.defaultRoute?.comp === c) this.defaultRoute = null;
    const hadDomain = this.cluster !== null && [...c.names].some((n) => this.cluster!.isClustered(n));
    for (const name of c.names) this.removeBinder(name, c);
    c.names.clear();
    if (hadDomain) this.cluster!.onLocalSmGone();
    this.log.notice(`${c.label} gone (${reason}: ${detail})`);
  }

  private async bind(c: ComponentConn, el: XmlElement): Promise<void> {
    // queued behind an earlier bind of a component that has gone since: nothing to do
    if (c.closed || !this.comps.has(c)) return;
    const flags: BindFlags = {
      multi: attr(el, 'multi'),
      default: firstChild(el, 'default', NS_COMPONENT) !== undefined,
      log: firstChild(el, 'log', NS_COMPONENT) !== undefined,
    };
    const reply = (code?: string): void => c.send(bindReply(flags, code));
    const j = parseJid(attr(el, 'name'));
    if (j === null) {
      this.log.warn(`${c.label}: bind without a valid name (${attr(el, 'name') ?? 'missing'}): 400`);
      return reply('400');
    }
    const name = j.domain;
    if (name !== c.user && !this.allowed(c.user, 'bind')) {
      this.log.warn(`${c.label}: bind of '${name}' refused: user '${c.user}' may only bind its own name (403)`);
      return reply('403');
    }
    const existing = this.routes.get(name);
    if (existing && flags.multi === undefined) {
      this.log.warn(`${c.label}: bind of '${name}' refused: already bound (409)`);
      return reply('409');
    }
    if (flags.default) {
      if (!this.allowed(c.user, 'default-route')) {
        this.log.warn(`${c.label}: default route bind of '${name}' refused by ACL (403)`);
        return reply('403');
      }
      if (this.defaultRoute) {
        this.log.warn(`${c.label}: default route bind of '${name}' refused: '${this.defaultRoute.name}' is the default route (409)`);
        return reply('409');
      }
    }
    if (flags.log && !this.allowed(c.user, 'log')) {
      this.log.warn(`${c.label}: log sink bind of '${name}' refused by ACL (403)`);
      return reply('403');
    }
    if (existing && existing.comps.includes(c)) {
      // a multi bind of a name this component holds already: answered as jabberd2 answers it,
      // but without a second entry (jabberd2 lists the component twice and removes it once when
      // it goes: the name would stay bound to a connection that is gone)
      if (flags.default) this.defaultRoute = { name, comp: c };
      if (flags.log) this.logSinks.add(c);
      this.log.info(`${c.label} bound '${name}' again (it holds it already)`);
      return reply();
    }
    let route = existing;
    if (!route) {
      route = { name, multi: flags.multi !== undefined, comps: [], upstream: this.upstream.bind(name, flags), bound: false };
      this.routes.set(name, route);
    }
    route.comps.push(c);
    c.names.add(name);
    if (flags.default) this.defaultRoute = { name, comp: c };
    if (flags.log) this.logSinks.add(c);
    const code = await route.upstream;
    if (c.closed || !this.comps.has(c)) return; // removeBinder has cleaned up
    if (code !== null) {
      this.log.error(`${c.label}: the jabberd2 router refused our bind of '${name}': error ${code}, ${ROUTE_ERRORS[code] ?? 'unknown'}; refusing the component's bind`);
      const idx = route.comps.indexOf(c);
      if (idx >= 0) route.comps.splice(idx, 1);
      c.names.delete(name);
      if (route.comps.length === 0 && this.routes.get(name) === route) this.routes.delete(name);
      if (this.defaultRoute?.comp === c && this.defaultRoute.name === name) this.defaultRoute = null;
      if (flags.log) this.logSinks.delete(c);
      return reply(code);
    }
    route.bound = true;
    this.state.get(c)?.bound.add(name);
    reply();
    if (route.comps.length === 1) this.cluster?.onLocalName(name, flags.multi !== undefined, true);
    this.log.notice(`${c.label} bound '${name}'${flags.multi !== undefined ? ' (multi)' : ''}`);
    // as jabberd2: advertise the name to everyone else, then tell the binder what exists
    for (const o of this.comps) if (o !== c && this.hasBound(o) && !o.names.has(name)) this.advertise(o, name, true);
    for (const n of this.visibleNames()) if (!c.names.has(n)) this.advertise(c, n, true);
  }

  private async unbind(c: ComponentConn, el: XmlElement): Promise<void> {
    if (c.closed || !this.comps.has(c)) return;
    const j = parseJid(attr(el, 'name'));
    if (j === null) return void c.send(unbindReply('400'));
    const name = j.domain;
    if (!c.names.has(name)) {
      this.log.info(`${c.label}: unbind of '${name}' which it has not bound (404)`);
      return void c.send(unbindReply('404'));
    }
    c.names.delete(name);
    this.state.get(c)?.bound.delete(name);
    if (this.defaultRoute?.comp === c && this.defaultRoute.name === name) this.defaultRoute = null;
    this.logSinks.delete(c);
    this.removeBinder(name, c);
    c.send(unbindReply());
  }

  private removeBinder(name: string, c: ComponentConn): void {
    const route = this.routes.get(name);
    if (!route) return;
    const idx = route.comps.indexOf(c);
    if (idx < 0) return;
    // as jabberd2's _route_remove: the last binder moves into the freed slot
    route.comps[idx] = route.comps[route.comps.length - 1]!;
    route.comps.pop();
    if (route.comps.length > 0) return;
    this.routes.delete(name);
    this.cluster?.onLocalName(name, route.multi, false);
    void this.upstream.unbind(name).then((code) => {
      if (code !== null && code !== 'stopped') this.log.warn(`router refused our unbind of '${name}': error ${code}`);
    });
    this.log.notice(`'${name}' unbound (its last component left)`);
    for (const o of this.comps) if (this.hasBound(o)) this.advertise(o, name, false);
  }

  /** Has the component been told of a successful bind (so that it hears advertisements)? */
  private hasBound(c: ComponentConn): boolean {
    return (this.state.get(c)?.bound.size ?? 0) > 0;
  }

  private visibleNames(): Set<string> {
    const s = new Set(this.upstreamAvail);
    for (const [n, r] of this.routes) if (r.bound) s.add(n);
    return s;
  }

  /**
   * Tell a component a name came or went. The first time a component hears of a name it is
   * first told the name is unavailable: a restarted sm then ends sessions it still holds for a
   * c2s that dropped its clients while we were apart (../shared/docs/jabberd2-protocol.md §12).
   */
  private advertise(c: ComponentConn, name: string, available: boolean): void {
    const st = this.state.get(c);
    if (!st) return;
    if (available) {
      if (!st.seen.has(name)) {
        st.seen.add(name);
        c.send(advertisement(name, false));
      }
      c.send(advertisement(name, true));
    } else if (st.seen.has(name)) {
      c.send(advertisement(name, false));
    }
  }

  // ---- routing -------------------------------------------------------------------------

  private routeFromComponent(c: ComponentConn, st: Stanza): void {
    const tag = st.tag;
    const error = attr(tag, 'error');
    if (error !== undefined) {
      // as jabberd2 ("trying to avoid loops"): a route carrying an error is never passed on
      this.log.debug(`${c.label}: dropped a route carrying error='${error}'`);
      this.stats.dropped++;
      return;
    }
    const type = attr(tag, 'type');
    const from = domainOf(attr(tag, 'from'));
    if (type === 'broadcast') {
      if (from === null) return this.bounce(c, st, '400');
      if (!c.names.has(from)) return this.bounce(c, st, '401');
      for (const o of this.comps) if (o !== c) this.deliverTo(o, st.raw);
      this.sendUp(c, st);
      return;
    }
    if (type !== undefined) {
      this.log.info(`${c.label}: dropped a route of unknown type '${type}'`);
      this.stats.dropped++;
      return;
    }
    const to = domainOf(attr(tag, 'to'));
    if (to === null || from === null) {
      this.log.info(`${c.label}: route with a missing or invalid to/from (400)`);
      return this.bounce(c, st, '400');
    }
    if (!c.names.has(from)) {
      this.log.info(`${c.label}: route from '${from}', a name it has not bound (401)`);
      return this.bounce(c, st, '401');
    }
    if (this.cluster?.fromLocal(st, to)) return;
    const route = this.routes.get(to);
    if (route && route.bound && route.comps.length > 0) {
      this.copyToLogSinks(c, st);
      this.deliverLocal(route, st, st.raw);
      return;
    }
    this.sendUp(c, st);
  }

  private sendUp(c: ComponentConn, st: Stanza): void {
    if (this.upstream.send(st.raw)) {
      this.stats.upstreamSends++;
      return;
    }
    this.log.warn(`${c.label}: the router link cannot take more (down with a full queue); bouncing a route with 503`);
    this.bounce(c, st, '503');
  }

  onRouterRoute(st: Stanza): void {
    this.stats.routesFromRouter++;
    const tag = st.tag;
    const type = attr(tag, 'type');
    if (type === 'log') {
      for (const s of this.logSinks) this.deliverTo(s, st.raw);
      return;
    }
    if (type === 'broadcast') {
      for (const o of this.comps) this.deliverTo(o, st.raw);
      return;
    }
    const error = attr(tag, 'error');
    if (error !== undefined) {
      // a bounce of something a local component sent: back to the binder of its `from`
      if (this.cluster?.bounceFromRouter(st)) return;
      const from = domainOf(attr(tag, 'from'));
      const route = from !== null ? this.routes.get(from) : undefined;
      if (route && route.comps.length > 0) return this.deliverLocal(route, st, st.raw);
      this.log.info(`dropped a bounce (error='${error}') for '${from}', which no local component holds`);
      this.stats.dropped++;
      return;
    }
    const to = domainOf(attr(tag, 'to'));
    if (to !== null && this.cluster) {
      this.cluster.observeToSm(st);
      if (this.cluster.fromRouter(st, to)) return;
    }
    const route = to !== null ? this.routes.get(to) : undefined;
    if (route && route.comps.length > 0) return this.deliverLocal(route, st, st.raw);
    if (this.defaultRoute) return this.deliverTo(this.defaultRoute.comp, st.raw);
    // the router only sends us names we bound: this is a race with an unbind
    this.log.info(`dropped a route to '${to}' from the router: no local component holds it any more`);
    this.stats.dropped++;
  }

  onRouterAdvertisement(name: string, available: boolean): void {
    if (this.routes.has(name)) return; // one of our own names, bound by another component too
    if (available) {
      if (this.upstreamAvail.has(name)) return; // the router sends one copy per name we bound
      this.upstreamAvail.add(name);
    } else {
      if (!this.upstreamAvail.delete(name)) return;
    }
    this.log.info(`router: '${name}' is ${available ? 'available' : 'unavailable'}`);
    this.cluster?.onRouterName(name, available);
    for (const o of this.comps) if (this.hasBound(o)) this.advertise(o, name, available);
  }

  private deliverLocal(route: LocalRoute, st: Stanza, out: Raw): void {
    let target = route.comps[0]!;
    if (route.comps.length > 1) {
      const inner = st.inner;
      const key = route.multi && inner ? (attr(inner, 'to') ?? attr(inner, 'target')) : st.attr('to');
      target = route.comps[selectIndex(key, route.comps.length)]!;
    }
    this.stats.localDeliveries++;
    this.deliverTo(target, out);
  }

  private deliverTo(c: ComponentConn, xml: Raw): void {
    const st = this.state.get(c);
    if (!st) return;
    if (st.throttled) st.held.push(xml);
    else c.send(xml);
  }

  private copyToLogSinks(sender: ComponentConn, st: Stanza): void {
    if (this.logSinks.size === 0) return;
    const copy = withAttr(st, 'type', 'log');
    for (const s of this.logSinks) if (s !== sender) this.deliverTo(s, copy);
  }

  /** jabberd2's bounce: the unchanged route with error='NNN', back to the sender. */
  private bounce(c: ComponentConn, st: Stanza, code: string): void {
    this.stats.bounces++;
    c.send(withAttr(st, 'error', code));
  }
}
