import { test } from 'node:test';
import assert from 'node:assert/strict';
import { createHash } from 'node:crypto';
import { readFileSync } from 'node:fs';
import { fixturePath } from '../../helpers/captures.ts';
import {
  DIGEST_REALM,
  DigestServer,
  checkRspauth,
  digestClientResponse,
  parseDigestChallenge,
} from '../../../src/protocol/sasl-digest-md5.ts';

// Verbatim base64 payloads from ../shared/fixtures/jabberd2/sm-router.log (a real jabberd2 2.7.0
// router authenticating a stock sm as jabberd/secret).
const kChallengeB64 =
  'cmVhbG09ImphYmJlcmQtcm91dGVyIiwgbm9uY2U9IkN4T21saXgxY3BQRkhHN081bWhNYnc9PSIsIHFvcD0iYXV0aCIsIGNoYXJzZXQ9dXRmLTgsIGFsZ29yaXRobT1tZDUtc2Vzcw==';
const kResponseB64 =
  'dXNlcm5hbWU9ImphYmJlcmQiLCByZWFsbT0iamFiYmVyZC1yb3V0ZXIiLCBub25jZT0iQ3hPbWxpeDFjcFBGSEc3TzVtaE1idz09IiwgY25vbmNlPSJldnlQQkI2UlRBMEVtMzBLQ0dYOEpnPT0iLCBuYz0wMDAwMDAwMSwgcW9wPWF1dGgsIGRpZ2VzdC11cmk9ImphYmJlcmQtcm91dGVyL3ZtIiwgcmVzcG9uc2U9MDVkYTI4OTNmMzYzZjNjZjE2OTFmMWNiZDk5YzcwZGQsIGNoYXJzZXQ9dXRmLTg=';
const kSuccessB64 = 'cnNwYXV0aD0yNmJmODgwNjJjNDZkMzNkM2U2NGYwNjY3OGUyOTA4Ng==';

const dec = (b: string): string => Buffer.from(b, 'base64').toString('utf8');
const challengeText = dec(kChallengeB64);
const responseText = dec(kResponseB64);
const successText = dec(kSuccessB64);
const captured = parseDigestChallenge(responseText);
const capturedRspauth = parseDigestChallenge(successText)['rspauth']!;
const users = (u: string): string | undefined => (u === 'jabberd' ? 'secret' : undefined);

test('fixture payloads are the ones in the capture', () => {
  const log = readFileSync(fixturePath('sm-router.log'), 'utf8');
  for (const b of [kChallengeB64, kResponseB64, kSuccessB64]) assert.ok(log.includes(`>${b}</`), b.slice(0, 20));
});

test('parseDigestChallenge: the captured challenge', () => {
  assert.deepEqual({ ...parseDigestChallenge(challengeText) }, {
    realm: 'jabberd-router',
    nonce: 'CxOmlix1cpPFHG7O5mhMbw==',
    qop: 'auth',
    charset: 'utf-8',
    algorithm: 'md5-sess',
  });
});

test('parseDigestChallenge: quoting, commas in quotes, escapes, whitespace, empty elements, case', () => {
  const d = parseDigestChallenge(' ,Realm = "a, b" ,,\tqop="auth,auth-int" , nonce="x\\"y\\\\z",\r\n stale=true,');
  assert.deepEqual({ ...d }, { realm: 'a, b', qop: 'auth,auth-int', nonce: 'x"y\\z', stale: 'true' });
  assert.deepEqual({ ...parseDigestChallenge('') }, {});
  assert.deepEqual({ ...parseDigestChallenge('realm="a",realm="b",nonce=n') }, { realm: 'a', nonce: 'n' });
});

test('parseDigestChallenge: malformed input throws', () => {
  for (const bad of [
    'realm', // no '='
    'realm=', // empty token value
    '=x',
    'nonce="abc', // unterminated
    'nonce="abc\\', // dangling escape
    'nonce="a" qop=auth', // missing comma
    'nonce=a b',
    'nonce=a"b"',
    'nonce=1, nonce=2', // repeated
    'na me=1',
    'nonce=\x01',
  ]) {
    assert.throws(() => parseDigestChallenge(bad), /malformed DIGEST-MD5/, bad);
  }
});

test('client reproduces the captured response and rspauth exactly', () => {
  const r = digestClientResponse({
    challenge: challengeText,
    user: 'jabberd',
    pass: 'secret',
    cnonce: captured['cnonce']!,
    digestUri: captured['digest-uri']!,
  });
  assert.equal(parseDigestChallenge(r.response)['response'], '05da2893f363f3cf1691f1cbd99c70dd');
  assert.equal(parseDigestChallenge(r.response)['response'], captured['response']);
  assert.equal(r.expectedRspauth, capturedRspauth);
  assert.equal(r.expectedRspauth, '26bf88062c46d33d3e64f06678e29086');
  // same bytes as jabberd2's own component sent
  assert.equal(r.response, responseText);
  assert.ok(checkRspauth(successText, r.expectedRspauth));
});

test('client defaults: random cnonce, digest-uri jabberd-router/<host>', () => {
  const a = parseDigestChallenge(digestClientResponse({ challenge: challengeText, user: 'jabberd', pass: 'secret' }).response);
  const b = parseDigestChallenge(digestClientResponse({ challenge: challengeText, user: 'jabberd', pass: 'secret' }).response);
  assert.notEqual(a['cnonce'], b['cnonce']);
  assert.equal(a['cnonce']!.length, 24);
  assert.match(a['digest-uri']!, /^jabberd-router\/.+/);
  assert.equal(a['nc'], '00000001');
  assert.equal(a['qop'], 'auth');
});

test('client quotes user names with quotes and backslashes', () => {
  const r = digestClientResponse({ challenge: challengeText, user: 'a"b\\c', pass: 'p', cnonce: 'c' });
  assert.equal(parseDigestChallenge(r.response)['username'], 'a"b\\c');
  const s = new DigestServer((u) => (u === 'a"b\\c' ? 'p' : undefined), { nonce: 'CxOmlix1cpPFHG7O5mhMbw==' });
  s.challenge();
  assert.equal(s.verify(r.response).ok, true);
});

test('client rejects challenges jabberd2 never sends', () => {
  const base = { user: 'u', pass: 'p' };
  assert.throws(() => digestClientResponse({ ...base, challenge: 'realm="r", qop="auth", algorithm=md5-sess' }), /no nonce/);
  assert.throws(() => digestClientResponse({ ...base, challenge: 'nonce="n", qop="auth"' }), /md5-sess/);
  assert.throws(() => digestClientResponse({ ...base, challenge: 'nonce="n", qop="auth-conf", algorithm=md5-sess' }), /qop/);
  assert.throws(() => digestClientResponse({ ...base, challenge: 'nonce="n", charset=latin1, algorithm=md5-sess' }), /charset/);
  assert.throws(() => digestClientResponse({ ...base, challenge: successText }), /rspauth/);
  assert.throws(() => digestClientResponse({ ...base, challenge: 'nonce="n' }), /malformed/);
  assert.throws(() => digestClientResponse({ ...base, challenge: 'x="' + 'a'.repeat(3000) + '"' }), /too long/);
  // no realm offered: none sent, '' hashed
  const r = digestClientResponse({ ...base, challenge: 'nonce="n", qop="auth,auth-int", algorithm=md5-sess' });
  assert.equal(parseDigestChallenge(r.response)['realm'], undefined);
});

test('checkRspauth', () => {
  assert.equal(checkRspauth(successText, capturedRspauth.toUpperCase()), true);
  assert.equal(checkRspauth('rspauth=00000000000000000000000000000000', capturedRspauth), false);
  assert.equal(checkRspauth('', capturedRspauth), false);
  assert.equal(checkRspauth('rspauth="x', capturedRspauth), false);
  assert.equal(checkRspauth('rspauth=abc', 'abc'), false);
});

test('server: challenge text has the captured layout', () => {
  const s = new DigestServer(users, { nonce: 'CxOmlix1cpPFHG7O5mhMbw==' });
  assert.equal(s.challenge(), challengeText);
  const t = new DigestServer(users);
  const c1 = parseDigestChallenge(t.challenge());
  const c2 = parseDigestChallenge(t.challenge());
  assert.equal(c1['realm'], DIGEST_REALM);
  assert.notEqual(c1['nonce'], c2['nonce']);
});

test('server accepts the captured response and produces the captured rspauth', () => {
  const s = new DigestServer(users, { nonce: 'CxOmlix1cpPFHG7O5mhMbw==' });
  s.challenge();
  const r = s.verify(responseText);
  assert.deepEqual(r, { ok: true, user: 'jabberd', rspauth: '26bf88062c46d33d3e64f06678e29086' });
});

test('server round trip with our client, any digest-uri host', () => {
  const s = new DigestServer(users);
  const c = digestClientResponse({ challenge: s.challenge(), user: 'jabberd', pass: 'secret', digestUri: 'jabberd-router/some.other.host' });
  const r = s.verify(c.response);
  assert.ok(r.ok);
  assert.equal(r.rspauth, c.expectedRspauth);
});

test('server: authzid enters A1 (RFC 2831) and the identity stays the username', () => {
  // independent md5-sess computation with an authzid
  const h = (d: string | Buffer): Buffer => createHash('md5').update(d).digest();
  const hx = (d: string | Buffer): string => createHash('md5').update(d).digest('hex');
  const a1 = Buffer.concat([h('jabberd:jabberd-router:secret'), Buffer.from(':n:c:other')]);
  const resp = hx(`${hx(a1)}:n:00000001:c:auth:${hx('AUTHENTICATE:jabberd-router/h')}`);
  const text = `username="jabberd",realm="jabberd-router",nonce="n",cnonce="c",nc=00000001,qop=auth,digest-uri="jabberd-router/h",authzid="other",response=${resp}`;
  const s = new DigestServer(users, { nonce: 'n' });
  s.challenge();
  const r = s.verify(text);
  assert.ok(r.ok);
  assert.equal(r.user, 'jabberd');
  assert.equal(r.rspauth, hx(`${hx(a1)}:n:00000001:c:auth:${hx(':jabberd-router/h')}`));
  // the same response without the authzid in A1 does not match
  const t = new DigestServer(users, { nonce: 'n' });
  t.challenge();
  assert.equal(t.verify(text.replace(',authzid="other"', '')).ok, false);
});

function fresh(nonce = 'CxOmlix1cpPFHG7O5mhMbw=='): DigestServer {
  const s = new DigestServer(users, { nonce });
  s.challenge();
  return s;
}

function withDirective(key: string, value: string | null): string {
  const d = { ...captured };
  if (value === null) delete d[key];
  else d[key] = value;
  return Object.entries(d).map(([k, v]) => `${k}="${v}"`).join(',');
}

test('server: wrong password and unknown user fail alike (reason for the log only)', () => {
  const wrong = new DigestServer(() => 'not-secret', { nonce: 'CxOmlix1cpPFHG7O5mhMbw==' });
  wrong.challenge();
  const r1 = wrong.verify(responseText);
  assert.equal(r1.ok, false);
  assert.ok(!r1.ok && /wrong password for user "jabberd"/.test(r1.reason));
  assert.ok(!r1.ok && !r1.reason.includes('not-secret') && !r1.reason.includes('secret'));
  const unknown = new DigestServer(() => undefined, { nonce: 'CxOmlix1cpPFHG7O5mhMbw==' });
  unknown.challenge();
  const r2 = unknown.verify(responseText);
  assert.ok(!r2.ok && /unknown user "jabberd"/.test(r2.reason));
});

test('server: wrong realm', () => {
  const r = fresh().verify(withDirective('realm', 'other'));
  assert.ok(!r.ok && /realm/.test(r.reason));
});

test('server: replayed nonce / response is refused', () => {
  const s = fresh();
  assert.equal(s.verify(responseText).ok, true);
  const again = s.verify(responseText);
  assert.ok(!again.ok && /no outstanding challenge/.test(again.reason));
  // a new challenge has a new nonce: the old response no longer matches
  s.challenge();
  const replay = s.verify(responseText);
  assert.ok(!replay.ok && /nonce/.test(replay.reason));
  // verify before any challenge
  const t = new DigestServer(users);
  assert.equal(t.verify(responseText).ok, false);
});

test('server: one attempt per nonce even after a failure', () => {
  const s = fresh();
  assert.equal(s.verify(withDirective('response', '0'.repeat(32))).ok, false);
  assert.equal(s.verify(responseText).ok, false);
});

test('server: bad nc, qop, charset, response format', () => {
  const cases: [string, string, RegExp][] = [
    ['nc', '00000002', /nc must be/],
    ['qop', 'auth-int', /qop must be auth/],
    ['charset', 'iso-8859-1', /charset/],
    ['response', 'xyz', /32 hex/],
    ['nonce', 'other', /nonce does not match/],
    ['username', '', /empty username/],
    ['cnonce', '', /empty cnonce/],
    ['digest-uri', '', /empty digest-uri/],
  ];
  for (const [k, v, re] of cases) {
    const r = fresh().verify(withDirective(k, v));
    assert.ok(!r.ok && re.test(r.reason), `${k}=${v}: ${JSON.stringify(r)}`);
  }
});

test('server: missing fields', () => {
  for (const k of ['username', 'realm', 'nonce', 'cnonce', 'nc', 'qop', 'digest-uri', 'response']) {
    const r = fresh().verify(withDirective(k, null));
    assert.ok(!r.ok && r.reason === `missing directive ${k}`, `${k}: ${JSON.stringify(r)}`);
  }
});

test('server: malformed input', () => {
  for (const bad of ['', 'garbage', 'username="jabberd', 'username=a, username=b', '\u0000', 'x'.repeat(5000)]) {
    const r = fresh().verify(bad);
    assert.equal(r.ok, false, JSON.stringify(bad.slice(0, 20)));
  }
  // the response digits are case-insensitive (RFC 2831 LHEX is lower case, be lenient)
  const r = fresh().verify(withDirective('response', captured['response']!.toUpperCase()));
  assert.equal(r.ok, true);
});
