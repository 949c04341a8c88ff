/**
 * SASL DIGEST-MD5 (RFC 2831) exactly as jabberd2's router uses it on the component port:
 * realm `jabberd-router`, `qop=auth` only (no security layer), `algorithm=md5-sess`,
 * `charset=utf-8`, a single challenge/response round with `rspauth` carried in `<success/>`.
 * See ../shared/docs/jabberd2-protocol.md §1.3 and §12.
 *
 * Pure (no sockets, timers or logger); any thread. Texts here are the *decoded* SASL payloads;
 * base64 is the caller's business.
 *
 * Strings are hashed as their UTF-8 bytes, as sent (`charset=utf-8`). RFC 2831 §2.1.2.1's
 * conversion to ISO 8859-1 is not applied; user names and secrets on the router port are ASCII
 * in practice (router-users.xml), where both are identical.
 */
import { createHash, randomBytes, timingSafeEqual } from 'node:crypto';
import { hostname } from 'node:os';

/** The realm (and SASL service name) jabberd2 hard-codes (`router/main.c:220-223`). */
export const DIGEST_REALM = 'jabberd-router';

/** RFC 2831 §2.1.2: a digest-response longer than this is malformed. */
export const kMaxResponseLength = 4096;
/** RFC 2831 §2.1.1: a digest-challenge is shorter than this. */
export const kMaxChallengeLength = 2048;

// ---------------------------------------------------------------------------------------------
// Directive lists (RFC 2831 §7.1 "#rule" with RFC 2616 tokens and quoted-strings)

const kTokenChar = /[!#$%&'*+\-.^_`|~0-9A-Za-z]/;

function isLws(c: string): boolean {
  return c === ' ' || c === '\t' || c === '\r' || c === '\n';
}

/**
 * Parses `key=value, key="quoted, value"` lists. Keys are lower-cased (directive names are
 * case-insensitive); values are returned unquoted and unescaped. Empty list elements
 * (`a=1,,b=2`) and linear whitespace around separators are allowed. Throws on malformed input
 * and on a repeated directive, except `realm`, which a challenge may repeat (the first one is
 * kept; jabberd2 only ever sends one).
 */
export function parseDigestChallenge(s: string): Record<string, string> {
  return parseDirectives(s, true);
}

function parseDirectives(s: string, allowRepeatedRealm: boolean): Record<string, string> {
  const out: Record<string, string> = Object.create(null) as Record<string, string>;
  const n = s.length;
  let i = 0;
  const fail = (what: string): never => {
    throw new Error(`malformed DIGEST-MD5 directives: ${what} at offset ${i}`);
  };
  for (;;) {
    while (i < n && (isLws(s[i]!) || s[i] === ',')) i++;
    if (i >= n) break;
    const k0 = i;
    while (i < n && kTokenChar.test(s[i]!)) i++;
    if (i === k0) fail(`expected a directive name, got ${JSON.stringify(s[i])}`);
    const key = s.slice(k0, i).toLowerCase();
    while (i < n && isLws(s[i]!)) i++;
    if (s[i] !== '=') fail(`expected '=' after ${JSON.stringify(key)}`);
    i++;
    while (i < n && isLws(s[i]!)) i++;
    let value = '';
    if (s[i] === '"') {
      i++;
      let closed = false;
      while (i < n) {
        const c = s[i]!;
        if (c === '"') {
          closed = true;
          i++;
          break;
        }
        if (c === '\\') {
          if (i + 1 >= n) break;
          value += s[i + 1];
          i += 2;
          continue;
        }
        value += c;
        i++;
      }
      if (!closed) fail(`unterminated quoted value for ${JSON.stringify(key)}`);
    } else {
      const v0 = i;
      while (i < n && s[i] !== ',' && s[i] !== '"' && !isLws(s[i]!)) {
        if (s.charCodeAt(i) < 0x20 || s.charCodeAt(i) === 0x7f) fail('control character');
        i++;
      }
      value = s.slice(v0, i);
      if (value === '') fail(`empty value for ${JSON.stringify(key)}`);
    }
    while (i < n && isLws(s[i]!)) i++;
    if (i < n && s[i] !== ',') fail(`expected ',' after the value of ${JSON.stringify(key)}`);
    if (key in out) {
      if (!(allowRepeatedRealm && key === 'realm')) fail(`repeated directive ${JSON.stringify(key)}`);
    } else {
      out[key] = value;
    }
  }
  return out;
}

/** `"value"` with RFC 2616 quoted-pair escaping. */
function quote(v: string): string {
  return '"' + v.replace(/[\\"]/g, (c) => '\\' + c) + '"';
}

// ---------------------------------------------------------------------------------------------
// RFC 2831 §2.1.2.1 response-value, md5-sess

function md5(data: string | Buffer): Buffer {
  return createHash('md5').update(data).digest();
}

function md5hex(data: string | Buffer): string {
  return createHash('md5').update(data).digest('hex');
}

interface DigestInputs {
  user: string;
  realm: string;
  pass: string;
  nonce: string;
  cnonce: string;
  nc: string;
  qop: string;
  digestUri: string;
  authzid: string | undefined;
}

/**
 * HEX(H(A1)) for md5-sess: A1 = { H(user:realm:pass) ":" nonce ":" cnonce [":" authzid] }.
 */
function ha1(p: DigestInputs): string {
  const inner = md5(`${p.user}:${p.realm}:${p.pass}`);
  const tail = `:${p.nonce}:${p.cnonce}` + (p.authzid !== undefined ? `:${p.authzid}` : '');
  return md5hex(Buffer.concat([inner, Buffer.from(tail, 'utf8')]));
}

/** HEX(KD(HEX(H(A1)), nonce:nc:cnonce:qop:HEX(H(A2)))) where A2 = prefix ":" digest-uri. */
function responseValue(p: DigestInputs, a2prefix: 'AUTHENTICATE' | ''): string {
  const ha2 = md5hex(`${a2prefix}:${p.digestUri}`);
  return md5hex(`${ha1(p)}:${p.nonce}:${p.nc}:${p.cnonce}:${p.qop}:${ha2}`);
}

function sameHex(a: string, b: string): boolean {
  const x = Buffer.from(a.toLowerCase(), 'latin1');
  const y = Buffer.from(b.toLowerCase(), 'latin1');
  return x.length === y.length && timingSafeEqual(x, y);
}

const kHex32 = /^[0-9a-fA-F]{32}$/;

// ---------------------------------------------------------------------------------------------
// Client (our link to the local jabberd2 router)

export interface DigestClientOptions {
  /** the decoded `<challenge/>` text */
  challenge: string;
  user: string;
  pass: string;
  /** client nonce; default 16 random bytes in base64, like jabberd2's components */
  cnonce?: string;
  /** default `jabberd-router/<os.hostname()>`; the router does not check the host part */
  digestUri?: string;
}

export interface DigestClientResult {
  /** decoded `<response/>` text; base64 it for the wire */
  response: string;
  /** the `rspauth` value a genuine router puts in `<success/>` */
  expectedRspauth: string;
}

/**
 * Answers a router challenge. Throws if the challenge is malformed or asks for something
 * jabberd2 never offers (no nonce, no `auth` qop, an algorithm other than md5-sess, a charset
 * other than utf-8, or an `rspauth` instead of a challenge).
 */
export function digestClientResponse(o: DigestClientOptions): DigestClientResult {
  if (o.challenge.length > kMaxChallengeLength) throw new Error('DIGEST-MD5 challenge too long');
  const c = parseDigestChallenge(o.challenge);
  if (c['rspauth'] !== undefined) throw new Error('DIGEST-MD5: got rspauth where a challenge was expected');
  const nonce = c['nonce'];
  if (nonce === undefined || nonce === '') throw new Error('DIGEST-MD5 challenge has no nonce');
  if (c['algorithm'] !== 'md5-sess') throw new Error(`DIGEST-MD5 challenge: algorithm must be md5-sess, got ${JSON.stringify(c['algorithm'] ?? null)}`);
  if (c['charset'] !== undefined && c['charset'].toLowerCase() !== 'utf-8') throw new Error(`DIGEST-MD5 challenge: unsupported charset ${JSON.stringify(c['charset'])}`);
  // qop-options is a quoted comma list; absent means "auth" (RFC 2831 §2.1.1)
  const qops = c['qop'] === undefined ? ['auth'] : c['qop'].split(',').map((q) => q.trim());
  if (!qops.includes('auth')) throw new Error(`DIGEST-MD5 challenge: qop "auth" not offered (${JSON.stringify(c['qop'])})`);
  const p: DigestInputs = {
    user: o.user,
    // no realm in the challenge: omit it from the response and hash with '' (RFC 2831 §2.1.2)
    realm: c['realm'] ?? '',
    pass: o.pass,
    nonce,
    cnonce: o.cnonce ?? randomBytes(16).toString('base64'),
    nc: '00000001',
    qop: 'auth',
    digestUri: o.digestUri ?? `${DIGEST_REALM}/${hostname()}`,
    authzid: undefined,
  };
  // same directive order and spacing as jabberd2's own components (fixture sm-router.log)
  const parts = [`username=${quote(p.user)}`];
  if (c['realm'] !== undefined) parts.push(`realm=${quote(p.realm)}`);
  parts.push(
    `nonce=${quote(p.nonce)}`,
    `cnonce=${quote(p.cnonce)}`,
    `nc=${p.nc}`,
    `qop=${p.qop}`,
    `digest-uri=${quote(p.digestUri)}`,
    `response=${responseValue(p, 'AUTHENTICATE')}`,
    'charset=utf-8',
  );
  return { response: parts.join(', '), expectedRspauth: responseValue(p, '') };
}

/**
 * Checks the decoded `<success/>` payload (`rspauth=<hex>`) against the expected value,
 * in constant time. jabberd2's components do not check it; we can, and log a mismatch.
 */
export function checkRspauth(successText: string, expectedRspauth: string): boolean {
  let d: Record<string, string>;
  try {
    d = parseDirectives(successText, false);
  } catch {
    return false;
  }
  const got = d['rspauth'];
  return got !== undefined && kHex32.test(got) && sameHex(got, expectedRspauth);
}

// ---------------------------------------------------------------------------------------------
// Server (the sm authenticates to us: toward the sm we are the router)

export type DigestVerifyResult =
  | { ok: true; user: string; rspauth: string }
  | { ok: false; reason: string };

export interface DigestServerOptions {
  /** default `jabberd-router` */
  realm?: string;
  /** nonce for the first challenge (tests); default 16 random bytes in base64 */
  nonce?: string;
}

function describeUser(u: string): string {
  return JSON.stringify(u.length > 64 ? u.slice(0, 64) + '…' : u);
}

/**
 * One SASL exchange on one connection. `challenge()` issues a nonce; `verify()` consumes it,
 * whatever the outcome (one attempt per nonce), so a replayed response always fails. Unknown
 * users are verified against a throw-away secret so that they cost the same as a wrong
 * password; the caller must answer both with the same `<failure><not-authorized/>`. `reason`
 * is for our own log only; it never contains a secret.
 *
 * The digest-uri is required but its value is not checked, like jabberd2 (the sm sends
 * `jabberd-router/<its hostname>`). An authzid, if sent, enters A1 as RFC 2831 requires and is
 * otherwise ignored: the identity is the username (jabberd2 `sx/sasl.c:197-215`).
 */
export class DigestServer {
  readonly realm: string;
  readonly #lookupPass: (user: string) => string | undefined;
  #firstNonce: string | null;
  #nonce: string | null = null;

  constructor(lookupPass: (user: string) => string | undefined, opts: DigestServerOptions = {}) {
    this.#lookupPass = lookupPass;
    this.realm = opts.realm ?? DIGEST_REALM;
    this.#firstNonce = opts.nonce ?? null;
  }

  /** Issues a fresh nonce and returns the decoded `<challenge/>` text. Invalidates any earlier nonce. */
  challenge(): string {
    const nonce = this.#firstNonce ?? randomBytes(16).toString('base64');
    this.#firstNonce = null;
    this.#nonce = nonce;
    // byte-for-byte the layout jabberd2's router sends (fixture sm-router.log)
    return `realm=${quote(this.realm)}, nonce=${quote(nonce)}, qop="auth", charset=utf-8, algorithm=md5-sess`;
  }

  /** Verifies the decoded `<response/>` text against the outstanding nonce, consuming it. */
  verify(responseText: string): DigestVerifyResult {
    const issued = this.#nonce;
    this.#nonce = null;
    if (issued === null) return { ok: false, reason: 'no outstanding challenge (nonce already used or never issued)' };
    if (responseText.length > kMaxResponseLength) return { ok: false, reason: `response longer than ${kMaxResponseLength} characters` };
    let d: Record<string, string>;
    try {
      d = parseDirectives(responseText, false);
    } catch (e) {
      return { ok: false, reason: (e as Error).message };
    }
    for (const k of ['username', 'realm', 'nonce', 'cnonce', 'nc', 'qop', 'digest-uri', 'response'] as const) {
      if (d[k] === undefined) return { ok: false, reason: `missing directive ${k}` };
    }
    const user = d['username']!;
    if (user === '') return { ok: false, reason: 'empty username' };
    if (d['realm'] !== this.realm) return { ok: false, reason: `wrong realm ${JSON.stringify(d['realm'])}` };
    if (d['nonce'] !== issued) return { ok: false, reason: 'nonce does not match the one issued' };
    if (d['cnonce'] === '') return { ok: false, reason: 'empty cnonce' };
    if (d['nc'] !== '00000001') return { ok: false, reason: `nc must be 00000001, got ${JSON.stringify(d['nc'])}` };
    if (d['qop'] !== 'auth') return { ok: false, reason: `qop must be auth, got ${JSON.stringify(d['qop'])}` };
    if (d['charset'] !== undefined && d['charset'].toLowerCase() !== 'utf-8') return { ok: false, reason: `unsupported charset ${JSON.stringify(d['charset'])}` };
    if (d['digest-uri'] === '') return { ok: false, reason: 'empty digest-uri' };
    const given = d['response']!;
    if (!kHex32.test(given)) return { ok: false, reason: 'response is not 32 hex digits' };

    const known = this.#lookupPass(user);
    const p: DigestInputs = {
      user,
      realm: this.realm,
      // unknown user: burn the same work against a secret nobody knows
      pass: known ?? randomBytes(18).toString('base64'),
      nonce: issued,
      cnonce: d['cnonce']!,
      nc: '00000001',
      qop: 'auth',
      digestUri: d['digest-uri']!,
      authzid: d['authzid'],
    };
    const expected = responseValue(p, 'AUTHENTICATE');
    const match = sameHex(given, expected);
    if (known === undefined) return { ok: false, reason: `unknown user ${describeUser(user)}` };
    if (!match) return { ok: false, reason: `wrong password for user ${describeUser(user)}` };
    return { ok: true, user, rspauth: responseValue(p, '') };
  }
}
