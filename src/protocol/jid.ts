/**
 * Minimal JID handling for routing keys: split, validate lengths and characters, lower-case the
 * domain. Not a full stringprep; jabberd2 has already normalised what it sends us, and anything
 * we cannot parse is answered the way jabberd2's router answers an invalid JID (error 400).
 */
export interface Jid {
  node: string;
  domain: string;
  resource: string;
}

// characters never valid in a domain or node (RFC 6122 prohibited ASCII plus controls and space)
const BAD_DOMAIN = /[\s\x00-\x1f\x7f@/"&'<>:]/;
const BAD_NODE = /[\s\x00-\x1f\x7f@/"&'<>:]/;

export function parseJid(s: string | undefined): Jid | null {
  if (s === undefined || s.length === 0 || s.length > 3071) return null;
  let rest = s;
  let resource = '';
  const slash = rest.indexOf('/');
  if (slash >= 0) {
    resource = rest.slice(slash + 1);
    rest = rest.slice(0, slash);
    if (resource.length === 0 || resource.length > 1023) return null;
  }
  let node = '';
  const at = rest.indexOf('@');
  if (at >= 0) {
    node = rest.slice(0, at);
    rest = rest.slice(at + 1);
    if (node.length === 0 || node.length > 1023 || BAD_NODE.test(node)) return null;
  }
  let domain = rest.toLowerCase();
  if (domain.endsWith('.')) domain = domain.slice(0, -1);
  if (domain.length === 0 || domain.length > 1023 || BAD_DOMAIN.test(domain)) return null;
  return { node, domain, resource };
}

/**
 * Route addresses are a handful of component names (`sm`, `c2s`, the domain) seen on every
 * route: their domains are remembered (bounded; cleared when full).
 */
const domains = new Map<string, string | null>();
const kDomainsMax = 4096;

/** The lower-cased domain of a JID string, or null when it is not a valid JID. */
export function domainOf(s: string | undefined): string | null {
  if (s === undefined) return null;
  let d = domains.get(s);
  if (d === undefined) {
    d = parseJid(s)?.domain ?? null;
    if (domains.size >= kDomainsMax) domains.clear();
    domains.set(s, d);
  }
  return d;
}

/** The bare JID (node@domain or domain), or null when invalid. */
export function bareOf(s: string | undefined): string | null {
  const j = parseJid(s);
  if (j === null) return null;
  return j.node ? `${j.node}@${j.domain}` : j.domain;
}

export function formatJid(j: Jid): string {
  return (j.node ? j.node + '@' : '') + j.domain + (j.resource ? '/' + j.resource : '');
}
