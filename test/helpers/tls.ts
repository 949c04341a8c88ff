/**
 * Throwaway PKI for tests: CAs and node certificates made with the `openssl` CLI in a temporary
 * directory (EC P-256, valid two days). `rm()` deletes it all.
 */
import { execFileSync, spawnSync } from 'node:child_process';
import { mkdtempSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { randomBytes } from 'node:crypto';

/** Why the PKI cannot be made (no `openssl`), or null when it can. */
export function opensslMissing(): string | null {
  const r = spawnSync('openssl', ['version'], { encoding: 'utf8' });
  return r.status === 0 ? null : `openssl CLI not available (${r.error?.message ?? r.stderr.trim()}): apt-get install -y openssl`;
}

export interface TlsFiles {
  cert: string;
  key: string;
  ca: string;
}

const kConf = `[req]
distinguished_name = dn
prompt = no
[dn]
CN = unused
[v3_ca]
basicConstraints = critical,CA:TRUE
keyUsage = critical,keyCertSign,cRLSign
subjectKeyIdentifier = hash
`;

export class TestPki {
  readonly dir = mkdtempSync(join(tmpdir(), 'jc-pki-'));
  private readonly conf = join(this.dir, 'openssl.cnf');

  constructor() {
    writeFileSync(this.conf, kConf);
  }

  private openssl(args: string[]): void {
    execFileSync('openssl', args, { cwd: this.dir, stdio: ['ignore', 'ignore', 'pipe'] });
  }

  /** A self-signed CA `<name>.ca.pem` (key `<name>.ca.key`); returns the certificate's path. */
  ca(name: string): string {
    const cert = join(this.dir, `${name}.ca.pem`);
    this.openssl([
      'req', '-x509', '-config', this.conf, '-extensions', 'v3_ca', '-newkey', 'ec', '-pkeyopt', 'ec_paramgen_curve:P-256', '-nodes',
      '-keyout', join(this.dir, `${name}.ca.key`), '-out', cert, '-days', '2', '-subj', `/CN=${name}`,
    ]);
    return cert;
  }

  /**
   * A node certificate `<file>.pem` + `<file>.key` signed by CA `ca` (made by `ca()`), with
   * subject CN `cn` and the DNS names `dns` (default: [cn]; [] for none); `caFile` is the CA
   * file the node trusts (default: the signing CA).
   */
  node(file: string, ca: string, cn: string, opts: { dns?: string[]; caFile?: string } = {}): TlsFiles {
    const key = join(this.dir, `${file}.key`);
    const csr = join(this.dir, `${file}.csr`);
    const cert = join(this.dir, `${file}.pem`);
    const ext = join(this.dir, `${file}.ext`);
    const dns = opts.dns ?? [cn];
    writeFileSync(ext, [
      '[v3_node]',
      'basicConstraints = CA:FALSE',
      'keyUsage = critical,digitalSignature',
      'extendedKeyUsage = serverAuth,clientAuth',
      'authorityKeyIdentifier = keyid',
      ...(dns.length > 0 ? [`subjectAltName = ${dns.map((d) => `DNS:${d}`).join(',')}`] : []),
      '',
    ].join('\n'));
    this.openssl(['req', '-new', '-config', this.conf, '-newkey', 'ec', '-pkeyopt', 'ec_paramgen_curve:P-256', '-nodes', '-keyout', key, '-out', csr, '-subj', `/CN=${cn}`]);
    this.openssl([
      'x509', '-req', '-in', csr, '-CA', join(this.dir, `${ca}.ca.pem`), '-CAkey', join(this.dir, `${ca}.ca.key`),
      '-set_serial', `0x${randomBytes(8).toString('hex')}`, '-days', '2', '-extfile', ext, '-extensions', 'v3_node', '-out', cert,
    ]);
    return { cert, key, ca: opts.caFile ?? join(this.dir, `${ca}.ca.pem`) };
  }

  rm(): void {
    rmSync(this.dir, { recursive: true, force: true });
  }
}
