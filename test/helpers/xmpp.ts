/**
 * Real XMPP clients for the end-to-end tests, built on xmpp.js (@xmpp/client 0.14).
 *
 * - register(): XEP-0077 in-band registration on its own connection, done with @xmpp/client: the
 *   SASL step's credentials callback (which runs when the stream features arrive, before any auth)
 *   checks that `http://jabber.org/features/iq-register` was offered, sends the register iq,
 *   and then aborts the stream before authenticating. jabberd2 2.7.0 never answers a bind after a
 *   registration on the same stream, hence the separate connection.
 * - login(): SASL PLAIN over plain TCP to 127.0.0.1:port, resource binding, no reconnect. The
 *   returned session keeps an inbox of every stanza received, so waitFor() also matches stanzas
 *   that arrived before the call.
 *
 * Every wait is bounded and fails with a message that names what was awaited.
 */
import { client, xml, type Client } from '@xmpp/client';
import type { Element } from '@xmpp/xml';

export { xml };
export type { Element };

export const NS = {
  register: 'jabber:iq:register',
  registerFeature: 'http://jabber.org/features/iq-register',
  roster: 'jabber:iq:roster',
  version: 'jabber:iq:version',
  discoInfo: 'http://jabber.org/protocol/disco#info',
  delay: 'urn:xmpp:delay',
  legacyDelay: 'jabber:x:delay',
  stanzas: 'urn:ietf:params:xml:ns:xmpp-stanzas',
  bind: 'urn:ietf:params:xml:ns:xmpp-bind',
} as const;

const DEFAULT_TIMEOUT_MS = 10000;

/** Version reported by the test client to jabber:iq:version queries. */
export const CLIENT_VERSION = { name: 'jabberd2-cluster-test', version: '1.0' } as const;

export interface ConnectOptions {
  /** bound on the whole registration / login; default 10000 */
  timeoutMs?: number;
  /** host to connect to; default 127.0.0.1 */
  host?: string;
}

/** Runs `p` with a deadline; on timeout calls `onTimeout` and rejects with `what` in the message. */
async function withTimeout<T>(p: Promise<T>, ms: number, what: string, onTimeout?: () => void): Promise<T> {
  let timer: NodeJS.Timeout | undefined;
  const timeout = new Promise<never>((_, rej) => {
    timer = setTimeout(() => {
      onTimeout?.();
      rej(new Error(`timed out after ${ms} ms: ${what}`));
    }, ms);
  });
  try {
    return await Promise.race([p, timeout]);
  } finally {
    clearTimeout(timer);
  }
}

/** Closes an xmpp.js client, bounded; falls back to destroying the socket. */
async function closeClient(c: Client, ms = 3000): Promise<void> {
  c.reconnect.stop();
  if (c.status === 'offline') return;
  try {
    await withTimeout(c.stop(), ms, 'closing the XMPP stream');
  } catch {
    try {
      c.socket?.destroy();
    } catch {
      /* ignore */
    }
  }
}

function errorText(err: unknown): string {
  if (err instanceof Error) {
    const cond = (err as Error & { condition?: string }).condition;
    return cond ? `${cond}${err.message && err.message !== cond ? ` (${err.message})` : ''}` : err.message;
  }
  return String(err);
}

/** Stanza error condition of an error stanza (e.g. 'item-not-found'), or undefined. */
export function errorCondition(stanza: Element): string | undefined {
  const err = stanza.getChild('error');
  if (!err) return undefined;
  const cond = err.getChildElements().find((c) => c.getNS() === NS.stanzas && c.name !== 'text');
  return cond?.name;
}

class RegistrationDone extends Error {
  constructor() {
    super('in-band registration done; closing the stream before SASL');
  }
}

/**
 * XEP-0077 in-band registration of user@domain on a fresh connection to 127.0.0.1:port.
 * Resolves when the server answered `result`; rejects with the error condition otherwise.
 */
export async function register(port: number, domain: string, user: string, pass: string, opts: ConnectOptions = {}): Promise<void> {
  let attempts = 0;
  return retryFdReuseRace(async () => {
    try {
      attempts++;
      await registerOnce(port, domain, user, pass, opts);
    } catch (err) {
      // the first attempt was cut off by the race after c2s had created the account
      if (attempts > 1 && /failed: conflict/.test((err as Error).message)) return;
      throw err;
    }
  });
}

/**
 * jabberd2 2.7.0's c2s finds a client by its file descriptor number. When a client disconnects
 * and a new one gets the same fd before the sm's late `ended` for the old session arrives, c2s
 * takes that reply for the new client, answers it with a route the router bounces, and closes
 * the NEW client with `internal-server-error` before it has sent anything. Seen with plain
 * jabberd2 timing too whenever tests reconnect at once; a real client simply reconnects, and so
 * do these helpers — once, and only for that error on a connection that had not got further.
 */
async function retryFdReuseRace<T>(attempt: () => Promise<T>): Promise<T> {
  try {
    return await attempt();
  } catch (err) {
    if (!/internal-server-error/.test(String((err as Error).message))) throw err;
    await new Promise((r) => setTimeout(r, 50));
    return attempt();
  }
}

async function registerOnce(port: number, domain: string, user: string, pass: string, opts: ConnectOptions = {}): Promise<void> {
  const timeoutMs = opts.timeoutMs ?? DEFAULT_TIMEOUT_MS;
  const what = `in-band registration of ${user}@${domain} on port ${port}`;
  let features: Element | undefined;
  let outcome: { ok: true } | { ok: false; error: string } | undefined;
  const c = client({
    service: `xmpp://${opts.host ?? '127.0.0.1'}:${port}`,
    domain,
    timeout: Math.min(timeoutMs, 5000),
    credentials: async () => {
      // runs from the SASL stream-features handler; let the features element reach our listener
      await Promise.resolve();
      if (!features?.getChild('register', NS.registerFeature)) {
        outcome = { ok: false, error: `server did not offer ${NS.registerFeature}; features: ${features?.toString() ?? '(none)'}` };
        throw new RegistrationDone();
      }
      try {
        const iq = xml(
          'iq',
          { type: 'set', id: `reg-${Math.random().toString(36).slice(2)}` },
          xml('query', { xmlns: NS.register }, xml('username', {}, user), xml('password', {}, pass)),
        );
        await c.iqCaller.request(iq, timeoutMs);
        outcome = { ok: true };
      } catch (err) {
        outcome = { ok: false, error: errorText(err) };
      }
      throw new RegistrationDone();
    },
  });
  c.reconnect.stop();
  const errors: unknown[] = [];
  c.on('error', (err: unknown) => {
    if (!(err instanceof RegistrationDone)) errors.push(err);
  });
  c.on('nonza', (el: Element) => {
    if (el.is('features', 'http://etherx.jabber.org/streams')) features = el;
  });
  try {
    await withTimeout(
      c.start().then(
        () => {
          throw new Error('unexpectedly authenticated');
        },
        (err: unknown) => {
          if (!(err instanceof RegistrationDone)) throw err;
        },
      ),
      timeoutMs,
      what,
      () => c.socket?.destroy(),
    );
  } catch (err) {
    await closeClient(c);
    throw new Error(`${what} failed: ${errorText(err)}${errors.length ? `; client errors: ${errors.map(errorText).join('; ')}` : ''}`);
  }
  await closeClient(c);
  if (!outcome) throw new Error(`${what}: no outcome`);
  if (!outcome.ok) throw new Error(`${what} failed: ${outcome.error}`);
}

export type StanzaPredicate = (stanza: Element) => boolean;

/** An online client session. */
export interface XmppSession {
  /** full JID as bound by the server */
  readonly jid: string;
  readonly bare: string;
  readonly resource: string;
  readonly client: Client;
  /** every stanza received, in arrival order (consumed ones included) */
  readonly received: readonly Element[];
  /** true once the connection has gone away */
  readonly closed: boolean;
  /** stream-level errors reported by the client (e.g. a `conflict` stream error), as text */
  readonly errors: readonly string[];
  send(stanza: Element): Promise<void>;
  /**
   * Sends an iq (an id is added when missing) and resolves with the response iq (result or
   * error; it does not throw on type='error').
   */
  iq(stanza: Element, timeoutMs?: number, label?: string): Promise<Element>;
  /**
   * Resolves with the first not-yet-consumed received stanza matching `predicate`, including
   * stanzas received before the call, and consumes it. Rejects after timeoutMs, or when the
   * connection closes, naming `label`.
   */
  waitFor(predicate: StanzaPredicate, timeoutMs: number, label: string): Promise<Element>;
  /** Not-yet-consumed stanzas. */
  pending(): Element[];
  /** Drops all not-yet-consumed stanzas. */
  clearInbox(): void;
  /** Closes the stream (bounded); safe to call twice. */
  stop(): Promise<void>;
}

interface Waiter {
  predicate: StanzaPredicate;
  resolve: (el: Element) => void;
  reject: (err: Error) => void;
}

function summary(els: readonly Element[], max = 12): string {
  if (els.length === 0) return '(none)';
  const shown = els.slice(-max).map((e) => {
    const s = e.toString();
    return s.length > 400 ? `${s.slice(0, 400)}…` : s;
  });
  return (els.length > max ? `(${els.length - max} earlier omitted)\n` : '') + shown.join('\n');
}

/**
 * Logs in user@domain/resource over plain TCP with SASL PLAIN and binds the resource.
 * Does not send initial presence. Answers jabber:iq:version (CLIENT_VERSION), XMPP ping and
 * roster pushes; other iq get/set get service-unavailable (xmpp.js default).
 */
export async function login(port: number, domain: string, user: string, pass: string, resource: string, opts: ConnectOptions = {}): Promise<XmppSession> {
  return retryFdReuseRace(() => loginOnce(port, domain, user, pass, resource, opts));
}

async function loginOnce(port: number, domain: string, user: string, pass: string, resource: string, opts: ConnectOptions = {}): Promise<XmppSession> {
  const timeoutMs = opts.timeoutMs ?? DEFAULT_TIMEOUT_MS;
  const who = `${user}@${domain}/${resource}`;
  const c = client({
    service: `xmpp://${opts.host ?? '127.0.0.1'}:${port}`,
    domain,
    resource,
    timeout: Math.min(timeoutMs, 5000),
    credentials: async (authenticate, mechanisms) => {
      if (!mechanisms.includes('PLAIN')) throw new Error(`SASL PLAIN not offered (offered: ${mechanisms.join(', ') || 'none'})`);
      await authenticate({ username: user, password: pass }, 'PLAIN');
    },
  });
  c.reconnect.stop();

  const received: Element[] = [];
  const inbox: Element[] = [];
  const waiters = new Set<Waiter>();
  const errors: unknown[] = [];
  let closed = false;
  let online = false;

  c.on('error', (err: unknown) => {
    errors.push(err);
  });
  c.on('stanza', (el: Element) => {
    // the bind result belongs to login itself
    if (!online && el.is('iq') && el.getChild('bind', NS.bind)) return;
    received.push(el);
    for (const w of waiters) {
      if (safeMatch(w.predicate, el)) {
        waiters.delete(w);
        w.resolve(el);
        return;
      }
    }
    inbox.push(el);
  });
  const onGone = (): void => {
    if (closed) return;
    closed = true;
    for (const w of waiters) w.reject(new Error('connection closed'));
    waiters.clear();
  };
  c.on('disconnect', onGone);
  c.on('offline', onGone);

  c.iqCallee.get(NS.version, 'query', () => xml('query', { xmlns: NS.version }, xml('name', {}, CLIENT_VERSION.name), xml('version', {}, CLIENT_VERSION.version)));
  c.iqCallee.set(NS.roster, 'query', () => ({}));

  try {
    await withTimeout(c.start(), timeoutMs, `login of ${who} on port ${port}`, () => c.socket?.destroy());
  } catch (err) {
    await closeClient(c);
    throw new Error(`login of ${who} on port ${port} failed: ${errorText(err)}${errors.length ? `; client errors: ${errors.map(errorText).join('; ')}` : ''}`);
  }
  online = true;
  const full = c.jid?.toString() ?? who;
  const bare = full.split('/')[0]!;

  let idSeq = 0;
  const session: XmppSession = {
    jid: full,
    bare,
    resource: full.includes('/') ? full.slice(full.indexOf('/') + 1) : resource,
    client: c,
    received,
    get closed() {
      return closed;
    },
    get errors() {
      return errors.map(errorText);
    },
    async send(stanza) {
      if (closed) throw new Error(`${full}: cannot send, connection closed: ${stanza.toString()}`);
      await c.send(stanza);
    },
    async iq(stanza, ms = timeoutMs, label) {
      if (!stanza.is('iq')) throw new Error('iq(): not an iq');
      stanza.attrs.id ??= `t${++idSeq}-${Math.random().toString(36).slice(2, 8)}`;
      const id = stanza.attrs.id;
      const desc = label ?? `response to iq ${stanza.toString()}`;
      const p = session.waitFor((el) => el.is('iq') && el.attrs.id === id && (el.attrs.type === 'result' || el.attrs.type === 'error'), ms, desc);
      await session.send(stanza);
      return p;
    },
    waitFor(predicate, ms, label) {
      const idx = inbox.findIndex((el) => safeMatch(predicate, el));
      if (idx >= 0) return Promise.resolve(inbox.splice(idx, 1)[0]!);
      if (closed) return Promise.reject(new Error(`${full}: connection closed before ${label}\nunconsumed stanzas:\n${summary(inbox)}`));
      return new Promise<Element>((resolve, reject) => {
        const w: Waiter = {
          predicate,
          resolve: (el) => {
            clearTimeout(timer);
            resolve(el);
          },
          reject: (err) => {
            clearTimeout(timer);
            reject(new Error(`${full}: ${err.message} while waiting for ${label}\nunconsumed stanzas:\n${summary(inbox)}`));
          },
        };
        const timer = setTimeout(() => {
          waiters.delete(w);
          const errs = errors.length ? `\nclient errors: ${errors.map(errorText).join('; ')}` : '';
          reject(new Error(`${full}: timed out after ${ms} ms waiting for ${label}\nunconsumed stanzas:\n${summary(inbox)}${errs}`));
        }, ms);
        waiters.add(w);
      });
    },
    pending() {
      return [...inbox];
    },
    clearInbox() {
      inbox.length = 0;
    },
    async stop() {
      await closeClient(c);
      onGone();
    },
  };
  return session;
}

function safeMatch(p: StanzaPredicate, el: Element): boolean {
  try {
    return p(el);
  } catch {
    return false;
  }
}
