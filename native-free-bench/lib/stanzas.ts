/**
 * The routes the macro-benchmarks send: fixed-length ASCII templates with two patchable fields,
 * a 4-digit user number and a 16-digit send stamp (nanoseconds of `performance.now()` in the
 * sending process) right before the constant tail `</body></message></route>`, so that a
 * receiver finds the stamp from the end of the route even when a node rewrote its start tag.
 * Shapes follow the sm↔router captures in ../shared/fixtures/jabberd2/sm-router.log (356 and 377 B;
 * perf-probe measured with 250–400 B stanzas).
 */

const NS_COMPONENT = 'http://jabberd.jabberstudio.org/ns/component/1.0';
const NS_SESSION = 'http://jabberd.jabberstudio.org/ns/session/1.0';

export const kStampDigits = 16;
export const kUserDigits = 4;
export const kTail = '</body></message></route>';
export const kRouteEnd = Buffer.from('</route>');

export interface Template {
  readonly name: string;
  /** the route with user 0000 and stamp 0…0 */
  readonly bytes: Buffer;
  readonly userOffsets: readonly number[];
  readonly stampOffset: number;
}

function template(name: string, text: string): Template {
  if (Buffer.byteLength(text) !== text.length) throw new Error(`template ${name} must be ASCII`);
  const userOffsets: number[] = [];
  let s = text;
  for (let i = s.indexOf('{U}'); i >= 0; i = s.indexOf('{U}')) {
    userOffsets.push(i);
    s = s.slice(0, i) + '0'.repeat(kUserDigits) + s.slice(i + 3);
  }
  const stampOffset = s.indexOf('{T}');
  if (stampOffset < 0 || !s.endsWith(kTail) || stampOffset + 3 !== s.length - kTail.length) throw new Error(`template ${name}: the stamp must come right before ${kTail}`);
  s = s.slice(0, stampOffset) + '0'.repeat(kStampDigits) + s.slice(stampOffset + 3);
  return { name, bytes: Buffer.from(s, 'latin1'), userOffsets, stampOffset };
}

/** c2s (through the router) → sm: a chat message to a user of the clustered domain. */
export function routerToSm(): Template {
  return template(
    'router→sm',
    `<route xmlns='${NS_COMPONENT}' to='example.test' from='c2s'><message xmlns='jabber:client' xmlns:sc='${NS_SESSION}' type='chat' to='u{U}@example.test/res' from='alice@example.test/lab' id='b{U}' sc:c2s='11'><body>Hello, how are you doing today? t={T}</body></message></route>`,
  );
}

/** sm → c2s (through the router): delivery to a user's session; `c2s` is the c2s name or alias. */
export function smToRouter(c2s = 'c2s'): Template {
  return template(
    'sm→router',
    `<route xmlns='${NS_COMPONENT}' from='sm' to='${c2s}'><message xmlns:sm='${NS_SESSION}' xmlns='jabber:client' sm:sm='1daefdde8baf887dc6708a98df6f90d291d4caba' sm:c2s='11' from='alice@example.test/lab' to='u{U}@example.test/res' type='chat' id='b{U}'><body>Fine, thanks! t={T}</body></message></route>`,
  );
}

/** The sm's reply that starts a session (teaches the node where user {U} lives). */
export function sessionStarted(user: number, c2s: string): string {
  const u = String(user).padStart(kUserDigits, '0');
  return `<route xmlns='${NS_COMPONENT}' from='sm' to='${c2s}'><sc:session xmlns:sc='${NS_SESSION}' sc:sm='sm${u}' id='s${u}' target='u${u}@example.test/res' action='started' sc:c2s='11'></sc:session></route>`;
}

function putDigits(buf: Buffer, off: number, width: number, value: number): void {
  let v = Math.floor(value);
  for (let i = off + width - 1; i >= off; i--) {
    buf[i] = 0x30 + (v % 10);
    v = Math.floor(v / 10);
  }
}

/** `n` routes back to back, users `firstUser…` (mod users), all stamped `stampNs`. */
export function batch(t: Template, n: number, firstUser: number, users: number, stampNs: number): Buffer {
  const len = t.bytes.length;
  const out = Buffer.allocUnsafe(n * len);
  for (let k = 0; k < n; k++) {
    const o = k * len;
    t.bytes.copy(out, o);
    const u = (firstUser + k) % users;
    for (const uo of t.userOffsets) putDigits(out, o + uo, kUserDigits, u);
    putDigits(out, o + t.stampOffset, kStampDigits, stampNs);
  }
  return out;
}

export function nowNs(): number {
  return Math.round(performance.now() * 1e6);
}

/** The stamp of the route whose `</route>` ends at `end` in `buf`. */
export function readStamp(buf: Uint8Array, end: number): number {
  const off = end - kTail.length - kStampDigits;
  let v = 0;
  for (let i = off; i < off + kStampDigits; i++) v = v * 10 + (buf[i]! - 0x30);
  return v;
}
