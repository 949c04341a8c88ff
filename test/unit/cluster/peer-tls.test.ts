/**
 * Peer-link TLS helpers (which node a certificate names, failures in words) and the peer
 * manager's start-up checks of its TLS files. Certificates come from the openssl CLI.
 */
import { after, test } from 'node:test';
import assert from 'node:assert/strict';
import { X509Certificate } from 'node:crypto';
import { readFileSync } from 'node:fs';
import { join } from 'node:path';
import { certNames, certNamesNode, describeTlsError, describeVerifyCode, showCertNames } from '../../../src/cluster/peer-tls.ts';
import { PeerManager, type PeerConfig, type PeerEvents } from '../../../src/cluster/peer-manager.ts';
import { createLogger } from '../../../src/log.ts';
import { TestPki, opensslMissing } from '../../helpers/tls.ts';

const skip = opensslMissing() ?? false;
let pki: TestPki | null = null;
after(() => pki?.rm());
function thePki(): TestPki {
  if (pki === null) {
    pki = new TestPki();
    pki.ca('ca');
  }
  return pki;
}
const legacy = (file: string): ReturnType<X509Certificate['toLegacyObject']> => new X509Certificate(readFileSync(file)).toLegacyObject();

test('certNames: subject CN, then DNS subject alternative names; exact match only', { skip }, () => {
  const p = thePki();
  const both = legacy(p.node('both', 'ca', 'n1', { dns: ['n1', 'n1.example', 'N2'] }).cert);
  assert.deepEqual(certNames(both), ['n1', 'n1.example', 'N2']);
  assert.ok(certNamesNode(both, 'n1') && certNamesNode(both, 'n1.example') && certNamesNode(both, 'N2'));
  assert.ok(!certNamesNode(both, 'n2') && !certNamesNode(both, 'N1') && !certNamesNode(both, 'n'));
  const cnOnly = legacy(p.node('cn', 'ca', 'n3', { dns: [] }).cert);
  assert.deepEqual(certNames(cnOnly), ['n3']);
  const sanOnly = legacy(p.node('san', 'ca', 'something else', { dns: ['n4'] }).cert);
  assert.deepEqual(certNames(sanOnly), ['something else', 'n4']);
  assert.ok(certNamesNode(sanOnly, 'n4'));
  assert.deepEqual(certNames(null), []);
  assert.deepEqual(certNames({} as never), []);
  // a quoted SAN (Node quotes values holding ', ') never yields a bare name
  assert.deepEqual(certNames({ subject: {} as never, subjectaltname: 'DNS:"x, DNS:n1", IP Address:127.0.0.1' }), ['"x', 'n1"']);
});

test('showCertNames, describeVerifyCode, describeTlsError', () => {
  assert.equal(showCertNames(['a']), "'a'");
  assert.equal(showCertNames(['a', 'b']), "'a', 'b'");
  assert.equal(showCertNames(['a', 'b', 'c', 'd', 'e']), "'a', 'b', 'c', 'd', …");
  assert.match(showCertNames([]), /^no name/);
  assert.equal(showCertNames(['a\nb']), "'a?b'");
  assert.equal(describeVerifyCode('CERT_HAS_EXPIRED'), 'certificate has expired (CERT_HAS_EXPIRED)');
  assert.equal(describeVerifyCode('SOMETHING_NEW'), 'SOMETHING_NEW');
  const e = (message: string, code?: string): Error => Object.assign(new Error(message), code !== undefined ? { code } : {});
  assert.equal(describeTlsError(e('unable to verify the first certificate', 'UNABLE_TO_VERIFY_LEAF_SIGNATURE')), 'certificate not signed by a CA in <peers><tls><ca> (UNABLE_TO_VERIFY_LEAF_SIGNATURE)');
  assert.match(describeTlsError(e('socket hang up', 'ECONNRESET')), /closed the connection during the TLS handshake/);
  assert.match(describeTlsError(e('x', 'ERR_SSL_WRONG_VERSION_NUMBER')), /does not speak TLS .*<peers><tls> set on every node/);
  assert.equal(
    describeTlsError(e('80AC5E39E77F0000:error:0A000418:SSL routines:ssl3_read_bytes:tlsv1 alert unknown ca:../deps/openssl/openssl/ssl/record/rec_layer_s3.c:1605:SSL alert number 48\n', 'ERR_SSL_TLSV1_ALERT_UNKNOWN_CA')),
    'tlsv1 alert unknown ca (ERR_SSL_TLSV1_ALERT_UNKNOWN_CA)',
  );
  assert.equal(describeTlsError(e("peer 'n2' presented a certificate for 'n3'")), "peer 'n2' presented a certificate for 'n3'");
});

test('PeerManager.start fails, naming the file, when a TLS file cannot be read or used', { skip }, async () => {
  const p = thePki();
  const n1 = p.node('pm-n1', 'ca', 'n1');
  const n2 = p.node('pm-n2', 'ca', 'n2');
  const cfg = (tls: PeerConfig['tls']): PeerConfig => ({
    self: 'n1',
    incarnation: 1,
    secret: 'a-test-cluster-secret-0123456789',
    listen: { ip: '127.0.0.1', port: 0 },
    peers: [],
    retry: { initMs: 10, maxMs: 100 },
    heartbeatMs: 1000,
    maxFrameBytes: 1 << 20,
    maxStanzaBytes: 1 << 16,
    maxDepth: 64,
    queueBytes: 1 << 20,
    authTimeoutMs: 1000,
    ...(tls ? { tls } : {}),
  });
  const events = {} as PeerEvents;
  const log = createLogger('error', { write: () => {} });
  const missing = join(p.dir, 'missing.pem');
  await assert.rejects(new PeerManager(cfg({ ...n1, key: missing }), events, log).start(), new RegExp(`^Error: peer TLS: cannot read the key file '${missing.replace(/[.]/g, '\\.')}': ENOENT$`));
  await assert.rejects(new PeerManager(cfg({ ...n1, key: n2.key }), events, log).start(), /^Error: peer TLS: cannot use certificate '.*pm-n1\.pem', key '.*pm-n2\.key' and CA '.*ca\.ca\.pem': /);
  const ok = new PeerManager(cfg(n1), events, log);
  assert.ok((await ok.start()) > 0);
  await ok.stop();
});
