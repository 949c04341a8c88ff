import { after, test } from 'node:test';
import assert from 'node:assert/strict';
import { mkdtempSync, rmSync, writeFileSync, mkdirSync, readFileSync } from 'node:fs';
import { createPrivateKey } from 'node:crypto';
import { hostname, tmpdir } from 'node:os';
import { join } from 'node:path';
import { fileURLToPath } from 'node:url';
import { ConfigError, defaultConfig, loadConfig, loadUsers, parseConfig, parseUsers } from '../../../src/config/load.ts';
import { defaultWorkers, type ClusterConfig } from '../../../src/config/schema.ts';
import { TestPki, opensslMissing, type TlsFiles } from '../../helpers/tls.ts';

const kSample = fileURLToPath(new URL('../../../config/cluster.xml', import.meta.url));
const kSampleUsers = fileURLToPath(new URL('../../../config/router-users.xml', import.meta.url));
const base = '/etc/jabberd2';

function parse(xml: string): ClusterConfig {
  return parseConfig(xml, base, 'test.xml');
}

/** Asserts a ConfigError with this path whose message matches. */
function rejects(xml: string, path: string, message: RegExp): ConfigError {
  try {
    parse(xml);
  } catch (e) {
    assert.ok(e instanceof ConfigError, `not a ConfigError: ${String(e)}`);
    assert.equal(e.path, path, e.message);
    assert.match(e.message, message);
    assert.ok(e.message.startsWith(path + ': '), e.message);
    return e;
  }
  assert.fail(`accepted: ${xml}`);
}

function tmp(t: { after: (fn: () => void) => void }): string {
  const d = mkdtempSync(join(tmpdir(), 'jc-config-'));
  t.after(() => rmSync(d, { recursive: true, force: true }));
  return d;
}

test('defaults: every option', () => {
  const c = parse('<cluster/>');
  assert.deepEqual(c, {
    id: hostname(),
    router: { ip: '127.0.0.1', port: 5347, user: 'jabberd', pass: 'secret', retry: { initMs: 250, maxMs: 5000 }, keepaliveSec: 60 },
    local: {
      ip: '127.0.0.1',
      port: 5348,
      users: '/etc/jabberd2/router-users.xml',
      acl: { all: ['jabberd'], bind: [], 'default-route': [], log: [] },
      maxConnections: 64,
    },
    domains: [],
    limits: { maxStanzaBytes: 2 * 1024 * 1024, maxDepth: 64, queueBytes: 16 * 1024 * 1024, authTimeoutSec: 10 },
    log: { type: 'stderr', level: 'notice' },
    workers: defaultWorkers(),
  });
  assert.ok(!('file' in c.log));
  assert.ok(!('peers' in c)); // a single node: no peer listener
  assert.deepEqual(defaultConfig(base), c);
  assert.ok(defaultWorkers() >= 0 && defaultWorkers() <= 8);
});

test('result is deep-frozen', () => {
  const c = parse('<cluster/>');
  assert.ok(Object.isFrozen(c) && Object.isFrozen(c.router.retry) && Object.isFrozen(c.local.acl.all));
  assert.throws(() => {
    (c.router as { port: number }).port = 1;
  }, TypeError);
  assert.throws(() => c.local.acl.all.push('x'), TypeError);
});

test('every value type is parsed; whitespace trimmed; comments and CDATA allowed', () => {
  const c = parse(`<?xml version='1.0'?>
<!-- a comment -->
<cluster>
  <id> node-1.example_a </id>
  <router><ip>::1</ip><port>15347</port><user>cl</user><pass><![CDATA[p<w>&d]]></pass>
    <retry><init_ms>10</init_ms><max_ms>10</max_ms></retry><keepalive>0</keepalive></router>
  <local><ip>0.0.0.0</ip><port>15348</port><users>../users.xml</users><max_connections>2</max_connections>
    <aci><acl type='bind'><user>sm</user><user>sm</user><!-- dup dropped --></acl><acl type='log'/></aci></local>
  <limits><max_stanza_bytes>1024</max_stanza_bytes><max_depth>8</max_depth><queue_bytes>65536</queue_bytes><auth_timeout>1</auth_timeout></limits>
  <log type=' file '><file>log/c.log</file><level>debug</level></log>
  <workers>0</workers>
</cluster>`);
  assert.equal(c.id, 'node-1.example_a');
  assert.deepEqual(c.router, { ip: '::1', port: 15347, user: 'cl', pass: 'p<w>&d', retry: { initMs: 10, maxMs: 10 }, keepaliveSec: 0 });
  assert.equal(c.local.users, '/etc/users.xml');
  assert.deepEqual(c.local.acl, { all: [], bind: ['sm'], 'default-route': [], log: [] });
  assert.deepEqual(c.limits, { maxStanzaBytes: 1024, maxDepth: 8, queueBytes: 65536, authTimeoutSec: 1 });
  assert.deepEqual(c.log, { type: 'file', file: '/etc/jabberd2/log/c.log', level: 'debug' });
  assert.equal(c.workers, 0);
  assert.equal(parse('<cluster><local><users>/abs/u.xml</users></local></cluster>').local.users, '/abs/u.xml');
});

test('type errors name the exact path and line', () => {
  const cases: [string, string, RegExp][] = [
    ['<cluster>\n<router>\n\n\n\n\n\n\n\n\n\n  <port>abc</port>\n</router></cluster>', 'cluster.router.port', /^cluster\.router\.port: expected an integer 1\.\.65535, got 'abc' \(line 12 of test\.xml\)$/],
    ['<cluster><router><port>0</port></router></cluster>', 'cluster.router.port', /got '0'/],
    ['<cluster><router><port>65536</port></router></cluster>', 'cluster.router.port', /got '65536'/],
    ['<cluster><router><port>-1</port></router></cluster>', 'cluster.router.port', /got '-1'/],
    ['<cluster><router><port>1e3</port></router></cluster>', 'cluster.router.port', /got '1e3'/],
    ['<cluster><router><port></port></router></cluster>', 'cluster.router.port', /got ''/],
    ['<cluster><router><ip>localhost</ip></router></cluster>', 'cluster.router.ip', /IPv4 or IPv6 address, got 'localhost'/],
    ['<cluster><router><user/></router></cluster>', 'cluster.router.user', /non-empty string/],
    ['<cluster><router><pass>  </pass></router></cluster>', 'cluster.router.pass', /non-empty string/],
    ['<cluster><router><retry><init_ms>x</init_ms></retry></router></cluster>', 'cluster.router.retry.init_ms', /integer 1\.\.3600000/],
    ['<cluster><router><retry><max_ms>0</max_ms></retry></router></cluster>', 'cluster.router.retry.max_ms', /integer/],
    ['<cluster><router><keepalive>-5</keepalive></router></cluster>', 'cluster.router.keepalive', /integer 0\.\.86400/],
    ['<cluster><local><ip>1.2.3</ip></local></cluster>', 'cluster.local.ip', /address/],
    ['<cluster><local><port>x</port></local></cluster>', 'cluster.local.port', /integer/],
    ['<cluster><local><users></users></local></cluster>', 'cluster.local.users', /file path/],
    ['<cluster><local><max_connections>0</max_connections></local></cluster>', 'cluster.local.max_connections', /integer 1\.\.65535/],
    ['<cluster><limits><max_stanza_bytes>10</max_stanza_bytes></limits></cluster>', 'cluster.limits.max_stanza_bytes', /integer 1024\.\./],
    ['<cluster><limits><max_depth>2</max_depth></limits></cluster>', 'cluster.limits.max_depth', /integer 8\.\.1024/],
    ['<cluster><limits><queue_bytes>1k</queue_bytes></limits></cluster>', 'cluster.limits.queue_bytes', /got '1k'/],
    ['<cluster><limits><auth_timeout>0</auth_timeout></limits></cluster>', 'cluster.limits.auth_timeout', /integer 1\.\.3600/],
    ["<cluster><log type='syslog'/></cluster>", 'cluster.log@type', /one of 'stderr', 'file', got 'syslog'/],
    ['<cluster><log><level>trace</level></log></cluster>', 'cluster.log.level', /one of 'error', 'warn', 'notice', 'info', 'debug', got 'trace'/],
    ['<cluster><log><file/></log></cluster>', 'cluster.log.file', /file path/],
    ['<cluster><workers>257</workers></cluster>', 'cluster.workers', /integer 0\.\.256, got '257'/],
    ['<cluster><id>a b</id></cluster>', 'cluster.id', /got 'a b'/],
    ['<cluster><id></id></cluster>', 'cluster.id', /got ''/],
  ];
  for (const [xml, path, re] of cases) rejects(xml, path, re);
});

test('secrets are never echoed', () => {
  const e = rejects('<cluster><router><pass>sec\tret</pass></router></cluster>', 'cluster.router.pass', /control characters/);
  assert.ok(!e.message.includes('sec'));
});

test('ACL errors', () => {
  rejects("<cluster><local><aci><acl type='admin'/></aci></local></cluster>", 'cluster.local.aci.acl@type', /expected one of 'all', 'bind', 'default-route', 'log', got 'admin'/);
  rejects('<cluster><local><aci><acl/></aci></local></cluster>', 'cluster.local.aci.acl@type', /missing attribute 'type'/);
  rejects("<cluster><local><aci><acl type='all'/><acl type='all'/></aci></local></cluster>", "cluster.local.aci.acl[@type='all']", /repeated <acl type='all'>/);
  rejects("<cluster><local><aci><acl type='all'><name>x</name></acl></aci></local></cluster>", "cluster.local.aci.acl[@type='all'].name", /unknown element <name>; expected one of: user/);
  rejects("<cluster><local><aci><acl type='all'><user/></acl></aci></local></cluster>", "cluster.local.aci.acl[@type='all'].user", /expected a user name/);
  rejects("<cluster><local><aci><acl type='all' x='1'/></aci></local></cluster>", 'cluster.local.aci.acl@x', /unknown attribute 'x'/);
  rejects('<cluster><local><aci><filter>f.xml</filter></aci></local></cluster>', 'cluster.local.aci.filter', /packet filters are not supported/);
  rejects('<cluster><local><aci>text</aci></local></cluster>', 'cluster.local.aci', /unexpected text "text"/);
});

test('unknown elements and attributes are rejected, naming them (with jabberd2 hints)', () => {
  rejects('<cluster>\n<router><prot>1</prot></router></cluster>', 'cluster.router.prot', /unknown element <prot>; expected one of: ip, port, user, pass, retry, keepalive \(line 2 of test\.xml\)/);
  rejects('<cluster><bogus/></cluster>', 'cluster.bogus', /unknown element <bogus>; expected one of: id, router, local, peers, domains, limits, log, workers/);
  rejects('<cluster><router><retry><init>3</init></retry></router></cluster>', 'cluster.router.retry.init', /use <init_ms> \(milliseconds\) instead/);
  rejects('<cluster><pidfile>/run/x.pid</pidfile></cluster>', 'cluster.pidfile', /not supported/);
  rejects("<cluster><log><ident>x</ident></log></cluster>", 'cluster.log.ident', /syslog is not supported/);
  rejects("<cluster><router port='1'/></cluster>", 'cluster.router@port', /unknown attribute 'port'/);
  rejects("<cluster><log kind='file'/></cluster>", 'cluster.log@kind', /unknown attribute 'kind' on <log>; expected: type/);
  rejects("<cluster><router><port unit='x'>1</port></router></cluster>", 'cluster.router.port@unit', /unknown attribute/);
  rejects('<cluster><router><port><value>1</value></port></router></cluster>', 'cluster.router.port.value', /holds a value, not elements/);
  rejects('<cluster><router>5347</router></cluster>', 'cluster.router', /unexpected text "5347"/);
  rejects("<cluster xmlns='urn:x'/>", 'cluster@xmlns', /unknown attribute/);
});

test('repeated single-valued elements are rejected', () => {
  rejects('<cluster>\n<router>\n<port>1</port>\n<port>2</port></router></cluster>', 'cluster.router.port', /repeated element <port> \(first at line 3\) \(line 4 of test\.xml\)/);
  rejects('<cluster><router/><router/></cluster>', 'cluster.router', /repeated element <router>/);
  rejects('<cluster><local><aci/><aci/></local></cluster>', 'cluster.local.aci', /repeated element <aci>/);
});

test('cross-field rules', () => {
  rejects('<cluster><router><retry><init_ms>600</init_ms><max_ms>500</max_ms></retry></router></cluster>', 'cluster.router.retry.max_ms', /must be at least init_ms \(600\), got 500/);
  rejects('<cluster><local><port>5347</port></local></cluster>', 'cluster.local.port', /must differ from cluster.router.port/);
  rejects('<cluster><local><ip>0.0.0.0</ip><port>5347</port></local></cluster>', 'cluster.local.port', /must differ/);
  assert.equal(parse('<cluster><local><ip>127.0.0.2</ip><port>5347</port></local></cluster>').local.port, 5347);
  rejects('<cluster><limits><max_stanza_bytes>100000</max_stanza_bytes><queue_bytes>65536</queue_bytes></limits></cluster>', 'cluster.limits.queue_bytes', /at least max_stanza_bytes/);
  rejects("<cluster>\n<log type='file'/></cluster>", 'cluster.log.file', /required when <log type='file'> \(line 2 of test\.xml\)/);
});

test('document-level errors: syntax, DOCTYPE/entities, root, PI', () => {
  rejects('<cluster><router></cluster>', 'cluster', /malformed XML: unexpected close tag/);
  rejects('<cluster><router><port>1</port>', 'cluster.router', /malformed XML/);
  rejects('', '(document)', /malformed XML|no root/);
  rejects('<!DOCTYPE cluster [<!ENTITY x "y">]><cluster><id>&x;</id></cluster>', '(document)', /DOCTYPE/);
  rejects('<cluster><id>&x;</id></cluster>', 'cluster.id', /malformed XML: undefined entity/);
  rejects('<router/>', '(document)', /root element must be <cluster>, got <router>/);
  rejects('<cluster><?pi x?></cluster>', 'cluster', /processing instruction/);
  // predefined entities and character references are fine
  assert.equal(parse('<cluster><router><pass>a&amp;b&#x41;</pass></router></cluster>').router.pass, 'a&bA');
});

test('overrides: --workers', () => {
  assert.equal(parseConfig('<cluster><workers>3</workers></cluster>', base, 't', { workers: 0 }).workers, 0);
  assert.throws(
    () => parseConfig('<cluster/>', base, 't', { workers: 1000 }),
    (e: unknown) => e instanceof ConfigError && e.path === 'cluster.workers' && /integer 0\.\.256, got '1000' \(--workers\)/.test(e.message),
  );
  assert.throws(() => parseConfig('<cluster/>', base, 't', { workers: 1.5 }), ConfigError);
});

test('loadConfig: relative paths resolve against the config file directory; missing file', (t) => {
  const d = tmp(t);
  mkdirSync(join(d, 'etc'));
  writeFileSync(join(d, 'etc', 'c.xml'), "<cluster><local><users>sub/u.xml</users></local><log type='file'><file>../var/c.log</file></log></cluster>");
  const c = loadConfig(join(d, 'etc', 'c.xml'));
  assert.equal(c.local.users, join(d, 'etc', 'sub', 'u.xml'));
  assert.equal(c.log.file, join(d, 'var', 'c.log'));
  // default users path too
  writeFileSync(join(d, 'etc', 'd.xml'), '<cluster/>');
  assert.equal(loadConfig(join(d, 'etc', 'd.xml')).local.users, join(d, 'etc', 'router-users.xml'));
  // errors name the file
  writeFileSync(join(d, 'etc', 'bad.xml'), '<cluster><workers>x</workers></cluster>');
  assert.throws(() => loadConfig(join(d, 'etc', 'bad.xml')), (e: unknown) => e instanceof ConfigError && e.message.includes(`(line 1 of ${join(d, 'etc', 'bad.xml')})`));
  assert.throws(() => loadConfig(join(d, 'nope.xml')), (e: unknown) => e instanceof ConfigError && /cannot read the configuration file: ENOENT/.test(e.message) && e.message.includes('nope.xml'));
});

test('the sample config and users file load', () => {
  const c = loadConfig(kSample);
  assert.equal(c.local.users, kSampleUsers);
  assert.deepEqual(loadUsers(c.local.users), new Map([['jabberd', 'secret']]));
});

test('users file: valid', () => {
  const u = parseUsers('<users>\n <user><name> sm </name><secret>s1</secret></user><user><secret>s2</secret><name>c2s</name></user><!-- c --></users>', 'u.xml');
  assert.deepEqual(u, new Map([['sm', 's1'], ['c2s', 's2']]));
  assert.equal(parseUsers('<users/>', 'u.xml').size, 0);
});

test('users file: errors name the file and the element, never the secret', (t) => {
  const bad: [string, string, RegExp][] = [
    ['<userz/>', '(document)', /root element must be <users>, got <userz>/],
    ['<users><user><name>a</name></user></users>', 'users.user[1].secret', /missing <secret>/],
    ['<users><user><secret>topsecret</secret></user></users>', 'users.user[1].name', /missing <name>/],
    ['<users><user><name></name><secret>topsecret</secret></user></users>', 'users.user[1].name', /expected a user name/],
    ['<users><user><name>a</name><secret> </secret></user></users>', 'users.user[1].secret', /expected a secret for user 'a'/],
    ['<users><user><name>a</name><secret>topsecret</secret></user>\n<user><name>a</name><secret>topsecret2</secret></user></users>', 'users.user[2].name', /user 'a' is listed twice \(first at line 1\) \(line 2 of /],
    ['<users><user><name>a</name><name>b</name><secret>topsecret</secret></user></users>', 'users.user[1].name', /repeated element <name>/],
    ['<users><user><name>a</name><secret>topsecret</secret><pass>x</pass></user></users>', 'users.user[1].pass', /unknown element <pass>; expected one of: name, secret/],
    ['<users><admin/></users>', 'users.admin', /unknown element <admin>; expected one of: user/],
    ['<users><user id="1"><name>a</name><secret>topsecret</secret></user></users>', 'users.user[1]@id', /unknown attribute/],
    ['<users><user><name>a</name><secret>topsecret</secret></user>', 'users', /malformed XML/],
  ];
  const d = tmp(t);
  const f = join(d, 'router-users.xml');
  for (const [xml, path, re] of bad) {
    writeFileSync(f, xml);
    assert.throws(
      () => loadUsers(f),
      (e: unknown) => {
        assert.ok(e instanceof ConfigError, String(e));
        assert.equal(e.path, path, e.message);
        assert.match(e.message, re);
        assert.ok(e.message.includes(f), `file not named: ${e.message}`);
        assert.ok(!e.message.includes('topsecret'), e.message);
        return true;
      },
    );
  }
  assert.throws(() => loadUsers(join(d, 'missing.xml')), (e: unknown) => e instanceof ConfigError && /cannot read the users file: ENOENT/.test(e.message) && e.message.includes('missing.xml'));
});

// ---------------------------------------------------------------------------------------------
// <peers> and <domains>

const kSecret = '0123456789abcdef';
/** A valid <peers> section around `inner` (a secret is added unless `inner` has one). */
const peers = (inner: string, id = 'node1'): string =>
  `<cluster><id>${id}</id><peers>${inner.includes('<secret>') ? '' : `<secret>${kSecret}</secret>`}${inner}</peers></cluster>`;
const peer = (name: string, host = '10.0.0.2', port?: number): string => `<peer><name>${name}</name><host>${host}</host>${port !== undefined ? `<port>${port}</port>` : ''}</peer>`;

test('peers: every option parsed; defaults inside a present <peers>; deep-frozen', () => {
  const c = parse(peers(` ${peer('node2')}\n${peer('node3', 'node3.example', 6000)}${peer('node4', '::1', 5351)} `));
  assert.deepEqual(c.peers, {
    secret: kSecret,
    listen: { ip: '127.0.0.1', port: 5350 },
    peers: [
      { name: 'node2', host: '10.0.0.2', port: 5350 },
      { name: 'node3', host: 'node3.example', port: 6000 },
      { name: 'node4', host: '::1', port: 5351 },
    ],
    retry: { initMs: 250, maxMs: 5000 },
    heartbeatMs: 800,
    maxFrameBytes: 4 * 1024 * 1024,
  });
  assert.ok(Object.isFrozen(c.peers!.peers) && Object.isFrozen(c.peers!.peers[0]));
  assert.throws(() => c.peers!.peers.push({ name: 'x', host: 'x', port: 1 }), TypeError);

  const full = parse(`<cluster><id>a</id><peers>
    <secret><![CDATA[ <long & secret> passphrase ]]></secret>
    <listen><ip>0.0.0.0</ip><port>6350</port></listen>
    <peer><port>7000</port><host>B.Example.</host><name>b</name></peer>
    <retry><init_ms>10</init_ms><max_ms>20</max_ms></retry>
    <heartbeat_ms>10</heartbeat_ms>
    <max_frame_bytes>3146752</max_frame_bytes>
  </peers></cluster>`);
  assert.deepEqual(full.peers, {
    secret: '<long & secret> passphrase',
    listen: { ip: '0.0.0.0', port: 6350 },
    peers: [{ name: 'b', host: 'B.Example.', port: 7000 }],
    retry: { initMs: 10, maxMs: 20 },
    heartbeatMs: 10,
    maxFrameBytes: 3 * 1024 * 1024 + 1024,
  });
});

test('peers: errors name the exact element, counting repeated ones from 1', () => {
  const cases: [string, string, RegExp][] = [
    ['<cluster><peers><peer><name>n2</name><host>h</host></peer></peers></cluster>', 'cluster.peers.secret', /^cluster\.peers\.secret: missing <secret>: required in <peers> \(line 1 of test\.xml\)$/],
    [peers(`${peer('node2')}\n<peer><name>node3</name><host>h3</host>\n<port>0</port></peer>`), 'cluster.peers.peer[2].port', /^cluster\.peers\.peer\[2\]\.port: expected an integer 1\.\.65535, got '0' \(line 3 of test\.xml\)$/],
    [peers(`${peer('node2')}${peer('node3')}\n<peer><host>h</host></peer>`), 'cluster.peers.peer[3].name', /^cluster\.peers\.peer\[3\]\.name: missing <name>: required in <peer> \(line 2 of/],
    [peers('<peer><name>node2</name></peer>'), 'cluster.peers.peer[1].host', /missing <host>: required in <peer>/],
    [peers(peer('node 2')), 'cluster.peers.peer[1].name', /expected 1\.\.255 characters from A-Z a-z 0-9 \. _ -, got 'node 2'/],
    [peers(peer('node2', 'bad_host')), 'cluster.peers.peer[1].host', /expected a host name, or an IPv4 or IPv6 address, got 'bad_host'/],
    [peers(peer('node2', '10.0.0.256')), 'cluster.peers.peer[1].host', /got '10\.0\.0\.256'/],
    [peers(peer('node2', '[::1]')), 'cluster.peers.peer[1].host', /got '\[::1\]'/],
    [peers(peer('node2', 'a..b')), 'cluster.peers.peer[1].host', /got 'a\.\.b'/],
    [peers(peer('node2', '-a.b')), 'cluster.peers.peer[1].host', /got '-a\.b'/],
    [peers(peer('node2', 'x'.repeat(254))), 'cluster.peers.peer[1].host', /host name/],
    [peers(`${peer('node2')}\n${peer('node3', 'h3')}\n${peer('node2', 'h4')}`), 'cluster.peers.peer[3].name', /^cluster\.peers\.peer\[3\]\.name: peer 'node2' is listed twice \(first as peer\[1\]\) \(line 3 of test\.xml\)$/],
    [peers(`${peer('node2')}${peer('node1', 'h')}`), 'cluster.peers.peer[2].name', /must differ from this node's id \('node1'\): a node does not peer with itself/],
    [peers(`${peer('node2', 'H.example', 6000)}${peer('node3', 'h.example', 6000)}`), 'cluster.peers.peer[2].port', /peer 'node3' has the same host and port as peer 'node2' \(h\.example:6000\)/],
    [peers(''), 'cluster.peers', /^cluster\.peers: lists no <peer>: add one <peer> per other node, or remove <peers> to run a single node/],
    [peers(`<listen><port>5348</port></listen>${peer('node2')}`), 'cluster.peers.listen.port', /must differ from cluster\.local\.port \(5348\): both would listen on it/],
    [peers(`<listen><ip>0.0.0.0</ip><port>5347</port></listen>${peer('node2')}`), 'cluster.peers.listen.port', /must differ from cluster\.router\.port \(5347\): the router listens on it/],
    [peers(`<listen><ip>10.1.1.1</ip></listen>`), 'cluster.peers', /lists no <peer>/],
    [peers(`<listen><ip>localhost</ip></listen>${peer('node2')}`), 'cluster.peers.listen.ip', /IPv4 or IPv6 address, got 'localhost'/],
    [peers(`${peer('node2')}<retry><init_ms>600</init_ms><max_ms>500</max_ms></retry>`), 'cluster.peers.retry.max_ms', /must be at least init_ms \(600\), got 500/],
    [peers(`${peer('node2')}<heartbeat_ms>5</heartbeat_ms>`), 'cluster.peers.heartbeat_ms', /expected an integer 10\.\.600000, got '5'/],
    [peers(`${peer('node2')}<max_frame_bytes>1000</max_frame_bytes>`), 'cluster.peers.max_frame_bytes', /integer 65536\.\./],
    [peers(`${peer('node2')}<max_frame_bytes>2097152</max_frame_bytes>`), 'cluster.peers.max_frame_bytes', /must be at least max_stanza_bytes \+ 1024 \(2098176\) so that the largest stanza fits in one message, got 2097152/],
    [peers(`<peer><name>node2</name><host>h</host><user>x</user></peer>`), 'cluster.peers.peer[1].user', /unknown element <user>; expected one of: name, host, port/],
    [peers(`<peer><name>node2</name><name>node3</name><host>h</host></peer>`), 'cluster.peers.peer[1].name', /repeated element <name>/],
    [peers(`<peer name='x'><name>node2</name><host>h</host></peer>`), 'cluster.peers.peer[1]@name', /unknown attribute 'name' on <peer>/],
    [peers(`<secret>${kSecret}</secret><secret>${kSecret}</secret>${peer('node2')}`), 'cluster.peers.secret', /repeated element <secret>/],
    [`<cluster><peers><secret>${kSecret}</secret>${peer('node2')}</peers><peers/></cluster>`, 'cluster.peers', /repeated element <peers>/],
    [peers(`${peer('node2')}<pemfile>x.pem</pemfile>`), 'cluster.peers.pemfile', /unknown element <pemfile>: use <tls> with <cert>, <key> and <ca> \(mutual TLS\) instead/],
    [`<cluster>${peer('node2')}</cluster>`, 'cluster.peer', /unknown element <peer>; expected one of: /],
  ];
  for (const [xml, path, re] of cases) rejects(xml, path, re);
  // fine: listening elsewhere on the same port as the sm listener; the limit just large enough
  assert.equal(parse(peers(`<listen><ip>10.0.0.1</ip><port>5348</port></listen>${peer('node2')}`)).peers?.listen.port, 5348);
  assert.equal(parse(peers(`${peer('node2')}<max_frame_bytes>2098176</max_frame_bytes>`)).peers?.maxFrameBytes, 2098176);
  assert.equal(parse(peers(`${peer('node2')}<max_frame_bytes>1049600</max_frame_bytes>`).replace('</cluster>', '<limits><max_stanza_bytes>1048576</max_stanza_bytes></limits></cluster>')).peers?.maxFrameBytes, 1049600);
});

test('peers: the secret is never echoed, not even its length', () => {
  const short = 'cluster.peers.secret: expected at least 16 characters (the value is not shown) (line 1 of test.xml)';
  const control = 'cluster.peers.secret: control characters are not allowed (line 1 of test.xml)';
  for (const [bad, message] of [['short-secret', short], ['', short], ['sixteen chars\tx!', control]] as const) {
    const e = rejects(peers(`<secret>${bad}</secret>${peer('node2')}`), 'cluster.peers.secret', /./);
    assert.equal(e.message, message);
  }
  // 16 characters, counted as characters (not UTF-16 units or bytes)
  assert.equal(parse(peers(`<secret>ééééééééééééééé🎉</secret>${peer('node2')}`)).peers?.secret, 'ééééééééééééééé🎉');
  rejects(peers(`<secret>🎉🎉🎉🎉🎉🎉🎉🎉</secret>${peer('node2')}`), 'cluster.peers.secret', /at least 16 characters/);
});

test('domains: a list, lower-cased, each once', () => {
  assert.deepEqual(parse('<cluster><domains>\n <domain> Example.TEST </domain><domain>b.example.</domain><!-- c --><domain>xn--bcher-kva.example</domain></domains></cluster>').domains, [
    'example.test',
    'b.example',
    'xn--bcher-kva.example',
  ]);
  assert.deepEqual(parse('<cluster><domains/></cluster>').domains, []);
  assert.ok(Object.isFrozen(parse('<cluster><domains><domain>a</domain></domains></cluster>').domains));
  const cases: [string, string, RegExp][] = [
    ['<cluster><domains><domain>a.example</domain><domain>user@a.example</domain></domains></cluster>', 'cluster.domains.domain[2]', /expected a domain name, got 'user@a\.example'/],
    ['<cluster><domains><domain>a.example/res</domain></domains></cluster>', 'cluster.domains.domain[1]', /expected a domain name/],
    ['<cluster><domains><domain>a b</domain></domains></cluster>', 'cluster.domains.domain[1]', /expected a domain name, got 'a b'/],
    ['<cluster><domains><domain/></domains></cluster>', 'cluster.domains.domain[1]', /expected a domain name, got ''/],
    ['<cluster><domains>\n<domain>a.example</domain>\n<domain>A.EXAMPLE</domain></domains></cluster>', 'cluster.domains.domain[2]', /^cluster\.domains\.domain\[2\]: 'a\.example' is listed twice \(first at line 2\) \(line 3 of test\.xml\)$/],
    ['<cluster><domains><name>a</name></domains></cluster>', 'cluster.domains.name', /unknown element <name>; expected one of: domain/],
    ['<cluster><domains>a.example</domains></cluster>', 'cluster.domains', /unexpected text "a\.example"/],
    ["<cluster><domains type='x'/></cluster>", 'cluster.domains@type', /unknown attribute 'type'/],
    ['<cluster><domains><domain><x/></domain></domains></cluster>', 'cluster.domains.domain[1].x', /holds a value, not elements/],
    ['<cluster><domains/><domains/></cluster>', 'cluster.domains', /repeated element <domains>/],
  ];
  for (const [xml, path, re] of cases) rejects(xml, path, re);
});

// ---------------------------------------------------------------------------------------------
// <peers><tls>

const tlsSkip = opensslMissing() ?? false;
let pkiCache: { pki: TestPki; node1: TlsFiles; node2: TlsFiles; bundle: string } | null = null;
/** A throwaway PKI (openssl CLI), made on first use. */
function testPki(): NonNullable<typeof pkiCache> {
  if (pkiCache === null) {
    const pki = new TestPki();
    const ca = pki.ca('ca');
    const other = pki.ca('other');
    const bundle = join(pki.dir, 'bundle.pem');
    writeFileSync(bundle, readFileSync(ca, 'utf8') + readFileSync(other, 'utf8'));
    pkiCache = { pki, node1: pki.node('node1', 'ca', 'node1'), node2: pki.node('node2', 'ca', 'other-name', { dns: ['node2'] }), bundle };
  }
  return pkiCache;
}
after(() => pkiCache?.pki.rm());

const tlsXml = (t: Partial<TlsFiles>, id = 'node1'): string =>
  peers(`${peer('node2')}<tls>${t.cert !== undefined ? `<cert>${t.cert}</cert>` : ''}${t.key !== undefined ? `<key>${t.key}</key>` : ''}${t.ca !== undefined ? `<ca>${t.ca}</ca>` : ''}</tls>`, id);

test('peers.tls: three PEM files, relative paths resolved against the config directory; absent: plain TCP', { skip: tlsSkip }, () => {
  const { pki, node1, node2, bundle } = testPki();
  assert.deepEqual(parse(tlsXml(node1)).peers?.tls, node1);
  // relative to the directory of the configuration file; a CA bundle; a certificate named by a DNS SAN only
  const c = parseConfig(tlsXml({ cert: ' node2.pem ', key: './node2.key', ca: 'bundle.pem' }, 'node2').replace(peer('node2'), peer('node1')), pki.dir, 'test.xml');
  assert.deepEqual(c.peers?.tls, { cert: node2.cert, key: node2.key, ca: bundle });
  assert.ok(Object.isFrozen(c.peers!.tls));
  assert.ok(!('tls' in parse(peers(peer('node2'))).peers!));
});

test('peers.tls: every file required, and must exist and parse as PEM; errors name the element and the file', { skip: tlsSkip }, (t) => {
  const { pki, node1, node2 } = testPki();
  const d = tmp(t);
  const file = (name: string, text: string): string => {
    writeFileSync(join(d, name), text);
    return join(d, name);
  };
  const keyPem = readFileSync(node1.key, 'utf8');
  const keyBody = keyPem.split('\n')[1]!;
  const garbage = file('garbage.pem', 'not a PEM file\n');
  const badCert = file('bad-cert.pem', '-----BEGIN CERTIFICATE-----\nTm90IGEgY2VydGlmaWNhdGU=\n-----END CERTIFICATE-----\n');
  const badKey = file('bad-key.pem', '-----BEGIN PRIVATE KEY-----\nTm90IGEga2V5\n-----END PRIVATE KEY-----\n');
  const encrypted = file('enc.key', createPrivateKey(keyPem).export({ format: 'pem', type: 'pkcs8', cipher: 'aes-256-cbc', passphrase: 'pass' }) as string);
  const twoKeys = file('two.key', keyPem + readFileSync(node2.key, 'utf8'));
  const missing = join(d, 'missing.pem');
  const q = (p: string): string => p.replace(/[.*+?^${}()|[\]\\]/g, '\\$&');
  const cases: [string, string, RegExp][] = [
    [peers(`${peer('node2')}<tls/>`), 'cluster.peers.tls.cert', /^cluster\.peers\.tls\.cert: missing <cert>: required in <tls> \(line 1 of test\.xml\)$/],
    [tlsXml({ cert: node1.cert, ca: node1.ca }), 'cluster.peers.tls.key', /missing <key>: required in <tls>/],
    [tlsXml({ cert: node1.cert, key: node1.key }), 'cluster.peers.tls.ca', /missing <ca>: required in <tls>/],
    [tlsXml({ ...node1, cert: missing }), 'cluster.peers.tls.cert', new RegExp(`^cluster\\.peers\\.tls\\.cert: cannot read '${q(missing)}': ENOENT \\(line 1 of test\\.xml\\)$`)],
    [tlsXml({ ...node1, key: missing }), 'cluster.peers.tls.key', new RegExp(`cannot read '${q(missing)}': ENOENT`)],
    [tlsXml({ ...node1, ca: d }), 'cluster.peers.tls.ca', new RegExp(`cannot read '${q(d)}': EISDIR`)],
    [tlsXml({ ...node1, cert: garbage }), 'cluster.peers.tls.cert', new RegExp(`'${q(garbage)}' holds no PEM certificate`)],
    [tlsXml({ ...node1, cert: node1.key }), 'cluster.peers.tls.cert', new RegExp(`'${q(node1.key)}' holds no PEM certificate`)],
    [tlsXml({ ...node1, cert: badCert }), 'cluster.peers.tls.cert', new RegExp(`'${q(badCert)}': certificate 1 does not parse`)],
    [tlsXml({ ...node1, ca: garbage }), 'cluster.peers.tls.ca', new RegExp(`'${q(garbage)}' holds no PEM certificate`)],
    [tlsXml({ ...node1, key: node1.cert }), 'cluster.peers.tls.key', new RegExp(`'${q(node1.cert)}' holds no PEM private key`)],
    [tlsXml({ ...node1, key: badKey }), 'cluster.peers.tls.key', new RegExp(`'${q(badKey)}': the private key does not parse`)],
    [tlsXml({ ...node1, key: encrypted }), 'cluster.peers.tls.key', new RegExp(`'${q(encrypted)}': the private key is encrypted, which is not supported`)],
    [tlsXml({ ...node1, key: twoKeys }), 'cluster.peers.tls.key', /holds 2 private keys; expected one/],
    // cross-checks: the key belongs to the certificate; the certificate names this node
    [tlsXml({ ...node1, key: node2.key }), 'cluster.peers.tls.key', new RegExp(`the key in '${q(node2.key)}' does not match the certificate in <cert> \\('${q(node1.cert)}'\\)`)],
    [tlsXml(node2, 'node1').replace(peer('node2'), peer('node3')), 'cluster.peers.tls.cert', new RegExp(`the certificate in '${q(node2.cert)}' is for 'other-name', 'node2', not this node's id 'node1'`)],
    // structure
    [peers(`${peer('node2')}<tls><cert>${node1.cert}</cert><key>${node1.key}</key><ca>${node1.ca}</ca><password>x</password></tls>`), 'cluster.peers.tls.password', /unknown element <password>; expected one of: cert, key, ca/],
    [peers(`${peer('node2')}<tls><cert>${node1.cert}</cert><cert>${node1.cert}</cert></tls>`), 'cluster.peers.tls.cert', /repeated element <cert>/],
    [peers(`${peer('node2')}<tls><cert></cert></tls>`), 'cluster.peers.tls.cert', /expected a file path, got nothing/],
    [peers(`${peer('node2')}<tls>x</tls>`), 'cluster.peers.tls', /unexpected text "x" in <tls>/],
    [peers(`${peer('node2')}<tls/><tls/>`), 'cluster.peers.tls', /repeated element <tls>/],
    [`<cluster><tls/></cluster>`, 'cluster.tls', /unknown element <tls>/],
  ];
  for (const [xml, path, re] of cases) {
    const e = rejects(xml, path, re);
    assert.ok(!e.message.includes(keyBody), `key material in: ${e.message}`);
  }
  assert.ok(pki.dir !== d);
});

test("peers.tls: the sample's commented-out <tls> block is valid once its files exist", { skip: tlsSkip }, () => {
  const { node1 } = testPki();
  const block = /^[ \t]*<tls>[\s\S]*?<\/tls>/m.exec(readFileSync(kSample, 'utf8'))?.[0];
  assert.ok(block !== undefined, 'no <tls> block in config/cluster.xml');
  const real = block.replace(/<(cert|key|ca)>[^<]*<\/\1>/g, (_m, el: 'cert' | 'key' | 'ca') => `<${el}>${node1[el]}</${el}>`);
  assert.deepEqual(parse(peers(`${peer('node2')}${real}`)).peers?.tls, node1);
});
