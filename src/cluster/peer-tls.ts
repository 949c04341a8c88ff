/**
 * Mutual TLS on peer links (`<peers><tls>`): which node a certificate names, and TLS failures
 * in words. Pure; shared by `peer-manager.ts` (at connect time) and `config/schema.ts` (at
 * load time, to check that this node's own certificate names it).
 *
 * A certificate names a node when its subject CN, or one of its DNS subject alternative names,
 * is exactly the node's name (case-sensitive, no wildcards).
 */
import type { PeerCertificate } from 'node:tls';

/** The names a certificate is for: subject CN(s), then DNS SANs; unique, in that order. */
export function certNames(cert: Pick<PeerCertificate, 'subject' | 'subjectaltname'> | null | undefined): string[] {
  const out: string[] = [];
  if (!cert) return out;
  // `subject` is absent on an empty certificate object; CN is an array when repeated
  const cn = (cert.subject as Record<string, string | string[] | undefined> | undefined)?.['CN'];
  for (const n of cn === undefined ? [] : Array.isArray(cn) ? cn : [cn]) if (!out.includes(n)) out.push(n);
  // "DNS:a, DNS:b, IP Address:1.2.3.4"; Node quotes values holding ',' or '"' (which a node
  // name never holds), so a quoted entry never equals a node name
  for (const e of (cert.subjectaltname ?? '').split(', ')) {
    if (!e.startsWith('DNS:')) continue;
    const n = e.slice(4);
    if (n !== '' && !out.includes(n)) out.push(n);
  }
  return out;
}

/** True when the certificate names `node` (subject CN or DNS SAN, exact). */
export function certNamesNode(cert: Pick<PeerCertificate, 'subject' | 'subjectaltname'> | null | undefined, node: string): boolean {
  return certNames(cert).includes(node);
}

/** The names of a certificate for a log line: `'a'`, `'a', 'b'`, or `no name`. */
export function showCertNames(names: readonly string[]): string {
  if (names.length === 0) return 'no name (no subject CN, no DNS name)';
  const shown = names.slice(0, 4).map((n) => `'${n.replace(/[\u0000-\u001f\u007f-\u009f]/g, '?').slice(0, 64)}'`);
  return shown.join(', ') + (names.length > 4 ? ', …' : '');
}

/** OpenSSL verification codes (`authorizationError`, `err.code`) in words. */
const kVerifyCodes: Record<string, string> = {
  UNABLE_TO_VERIFY_LEAF_SIGNATURE: 'certificate not signed by a CA in <peers><tls><ca>',
  UNABLE_TO_GET_ISSUER_CERT: 'certificate not signed by a CA in <peers><tls><ca>',
  UNABLE_TO_GET_ISSUER_CERT_LOCALLY: 'certificate not signed by a CA in <peers><tls><ca>',
  SELF_SIGNED_CERT_IN_CHAIN: 'certificate chain ends in a CA that is not in <peers><tls><ca>',
  DEPTH_ZERO_SELF_SIGNED_CERT: 'self-signed certificate not in <peers><tls><ca>',
  CERT_SIGNATURE_FAILURE: 'certificate signature does not verify',
  CERT_HAS_EXPIRED: 'certificate has expired',
  CERT_NOT_YET_VALID: 'certificate is not yet valid',
  CERT_REVOKED: 'certificate revoked',
  INVALID_CA: 'an issuer in the chain is not a CA',
  INVALID_PURPOSE: 'certificate not usable for this purpose (check its extendedKeyUsage: serverAuth and clientAuth)',
  CERT_UNTRUSTED: 'certificate not trusted',
  CERT_REJECTED: 'certificate rejected',
};

/** A verification code in words, with the code: `certificate has expired (CERT_HAS_EXPIRED)`. */
export function describeVerifyCode(code: string): string {
  const words = kVerifyCodes[code];
  return words === undefined ? code : `${words} (${code})`;
}

/** A TLS-level error in words (OpenSSL's own message, without its file:line noise). */
export function describeTlsError(err: Error & { code?: string; reason?: string }): string {
  if (typeof err.code === 'string' && kVerifyCodes[err.code] !== undefined) return describeVerifyCode(err.code);
  if (err.code === 'ECONNRESET') return 'the peer closed the connection during the TLS handshake (did it refuse our certificate? see its log)';
  if (err.code === 'ERR_TLS_HANDSHAKE_TIMEOUT') return 'TLS handshake timed out';
  if (err.code === 'ERR_SSL_WRONG_VERSION_NUMBER' || err.code === 'ERR_SSL_PACKET_LENGTH_TOO_LONG' || err.code === 'ERR_SSL_HTTP_REQUEST') {
    return `the peer does not speak TLS (${err.code}): is <peers><tls> set on every node?`;
  }
  // OpenSSL: "80…:error:0A000412:SSL routines:ssl3_read_bytes:sslv3 alert bad certificate:../deps/…"
  const reason = typeof err.reason === 'string' && err.reason !== '' ? err.reason : err.message.replace(/^[0-9A-F]+:error:[0-9A-F]+:[^:]*:[^:]*:([^:]*):.*$/s, '$1');
  return typeof err.code === 'string' && !reason.includes(err.code) ? `${reason} (${err.code})` : reason;
}
