/**
 * The configuration schema: the single source of every option, its XML path, type, bounds,
 * default, reload behaviour and documentation. `load.ts` validates against it,
 * `scripts/gen-config-doc.ts` renders `docs/reference/config.md` from it, and
 * `test/unit/config/doc-drift.test.ts` checks that the doc and `config/cluster.xml` still match it.
 *
 * The file format mirrors jabberd2's own (router.xml, sm.xml): one root element, one element per
 * option, text values. Pure, except that the `<peers><tls>` parsers read the PEM files they name
 * (to check them at load time); main thread (read once at start-up).
 */
import { X509Certificate, createPrivateKey, type KeyObject } from 'node:crypto';
import { readFileSync } from 'node:fs';
import { isIP } from 'node:net';
import { availableParallelism, hostname } from 'node:os';
import { isAbsolute, resolve } from 'node:path';
import type { LogLevelName } from '../log.ts';
import { parseJid } from '../protocol/jid.ts';
import { certNames, showCertNames } from '../cluster/peer-tls.ts';

// ---------------------------------------------------------------------------------------------
// The validated configuration (deep-frozen at run time)

export const ACL_TYPES = ['all', 'bind', 'default-route', 'log'] as const;
export type AclType = (typeof ACL_TYPES)[number];

export const LOG_TYPES = ['stderr', 'file'] as const;
export type LogType = (typeof LOG_TYPES)[number];

export const LOG_LEVELS = ['error', 'warn', 'notice', 'info', 'debug'] as const satisfies readonly LogLevelName[];

export interface ClusterConfig {
  /** node name, unique in the cluster */
  id: string;
  /** our component link to the local jabberd2 router */
  router: {
    ip: string;
    port: number;
    user: string;
    pass: string;
    /** reconnect backoff with jitter, forever */
    retry: { initMs: number; maxMs: number };
    /** whitespace keepalive on an idle link, seconds; 0 = off */
    keepaliveSec: number;
  };
  /** where the local sm connects to us (we play the router toward it) */
  local: {
    ip: string;
    port: number;
    /** absolute path of a router-users.xml-format file */
    users: string;
    acl: Record<AclType, string[]>;
    maxConnections: number;
  };
  /** peer links to the other nodes; absent on a single node (no peer listener) */
  peers?: {
    /** shared by every node; proven by HMAC challenge-response, never sent; never logged */
    secret: string;
    /** where the other nodes connect to us */
    listen: { ip: string; port: number };
    /** the other nodes: we dial each one, and accept only these */
    peers: { name: string; host: string; port: number }[];
    /** redial backoff with jitter, forever */
    retry: { initMs: number; maxMs: number };
    /** PING interval on a peer link */
    heartbeatMs: number;
    /** largest frame payload accepted from a peer */
    maxFrameBytes: number;
    /**
     * mutual TLS on every peer link; absent: plain TCP. Absolute paths of PEM files, checked at
     * load time (they exist and parse); the peer manager reads them when it starts.
     */
    tls?: {
      /** this node's certificate (then any intermediates); it must name this node's id */
      cert: string;
      /** its private key, unencrypted */
      key: string;
      /** the CA certificate(s) peer certificates must chain to */
      ca: string;
    };
  };
  /** the clustered domains, lower-cased; empty = every domain the local sm binds */
  domains: string[];
  limits: {
    maxStanzaBytes: number;
    maxDepth: number;
    /** per-link outbound queue cap */
    queueBytes: number;
    authTimeoutSec: number;
  };
  log: {
    type: LogType;
    /** absolute path; present when set in the file (required when type is 'file') */
    file?: string;
    level: LogLevelName;
  };
  /** worker threads; 0 = everything inline on the main thread */
  workers: number;
}

// ---------------------------------------------------------------------------------------------
// Schema node types

/** Thrown by a value parser; the loader adds the path, the line and the file. */
export class ValueError extends Error {}

export interface ParseContext {
  /** directory relative paths resolve against (the config file's directory) */
  baseDir: string;
}

export interface LeafSpec<T> {
  kind: 'leaf';
  /** where the value lives: the text of a child element, or an attribute of the parent element */
  xml: { elem: string } | { attr: string };
  /** type as shown in the docs and in error messages, e.g. `an integer 1..65535` */
  type: string;
  /** text (already trimmed) → value; throws ValueError with the part after "path: " */
  parse: (raw: string, ctx: ParseContext) => T;
  /**
   * Default, as the text one would write in the file (so it goes through `parse` like any
   * value), or a function computing that text at load time, or null for an optional value.
   */
  default: string | (() => string) | null;
  /** how the docs show a computed or absent default */
  defaultDoc?: string;
  doc: string;
  /** true when SIGHUP applies a change without a restart */
  reload: boolean;
  /** the value is a secret: never echoed in error messages */
  secret?: boolean;
  /** no default: the property is absent from ClusterConfig when the file does not set it */
  optional?: boolean;
  /** no default: the element must be present whenever its enclosing element is */
  required?: boolean;
}

/** A list of values: `<elem><item>v</item><item>v</item>…</elem>`; items are unique. */
export interface ListSpec<T> {
  kind: 'list';
  xml: { elem: string; item: string };
  /** type of one item, as shown in the docs and in error messages */
  type: string;
  /** one item's text (already trimmed) → value; throws ValueError */
  parse: (raw: string, ctx: ParseContext) => T;
  /** default items, as text (each goes through `parse`) */
  default: readonly string[];
  defaultDoc?: string;
  doc: string;
  reload: boolean;
}

export interface AclSpec {
  kind: 'acl';
  /** `<aci><acl type='T'><user>name</user>…</acl>…</aci>` */
  xml: { elem: string };
  default: Record<AclType, readonly string[]>;
  doc: string;
  types: Record<AclType, string>;
  reload: boolean;
}

export type Spec = LeafSpec<unknown> | AclSpec | ListSpec<unknown> | GroupSpec<Record<string, Spec>>;

export interface GroupSpec<C extends Record<string, Spec>> {
  kind: 'group';
  xml: { elem: string };
  doc: string;
  children: C;
  /**
   * Element names operators may carry over from jabberd2's own files, or that we renamed or
   * removed, mapped to what to do instead. Unknown-element errors quote the hint.
   */
  hints?: Record<string, string>;
  /** the element may be absent: the property is then absent from ClusterConfig */
  optional?: boolean;
  /** the element may repeat: the property is an array, one entry per element (possibly none) */
  repeated?: boolean;
}

// ---------------------------------------------------------------------------------------------
// Value types

function leaf<T>(s: Omit<LeafSpec<T>, 'kind'>): LeafSpec<T> {
  return { kind: 'leaf', ...s };
}

function optionalLeaf<T>(s: Omit<LeafSpec<T>, 'kind' | 'default' | 'optional'>): LeafSpec<T> & { optional: true } {
  return { kind: 'leaf', ...s, default: null, optional: true };
}

function requiredLeaf<T>(s: Omit<LeafSpec<T>, 'kind' | 'default' | 'required'>): LeafSpec<T> {
  return { kind: 'leaf', ...s, default: null, required: true };
}

function group<C extends Record<string, Spec>>(s: Omit<GroupSpec<C>, 'kind' | 'optional' | 'repeated'>): GroupSpec<C> {
  return { kind: 'group', ...s };
}

function optionalGroup<C extends Record<string, Spec>>(s: Omit<GroupSpec<C>, 'kind' | 'optional' | 'repeated'>): GroupSpec<C> & { optional: true } {
  return { kind: 'group', ...s, optional: true };
}

function repeatedGroup<C extends Record<string, Spec>>(s: Omit<GroupSpec<C>, 'kind' | 'optional' | 'repeated'>): GroupSpec<C> & { repeated: true } {
  return { kind: 'group', ...s, repeated: true };
}

function list<T>(s: Omit<ListSpec<T>, 'kind'>): ListSpec<T> {
  return { kind: 'list', ...s };
}

const show = (raw: string): string => `'${raw.length > 80 ? raw.slice(0, 80) + '…' : raw}'`;

function int(min: number, max: number): Pick<LeafSpec<number>, 'type' | 'parse'> {
  const type = `an integer ${min}..${max}`;
  return {
    type,
    parse: (raw) => {
      const n = /^[0-9]{1,15}$/.test(raw) ? Number(raw) : NaN;
      if (!(n >= min && n <= max)) throw new ValueError(`expected ${type}, got ${show(raw)}`);
      return n;
    },
  };
}

function oneOf<const V extends string>(values: readonly V[]): Pick<LeafSpec<V>, 'type' | 'parse'> {
  const type = 'one of ' + values.map((v) => `'${v}'`).join(', ');
  return {
    type,
    parse: (raw) => {
      if (!(values as readonly string[]).includes(raw)) throw new ValueError(`expected ${type}, got ${show(raw)}`);
      return raw as V;
    },
  };
}

const ipAddress: Pick<LeafSpec<string>, 'type' | 'parse'> = {
  type: 'an IPv4 or IPv6 address',
  parse: (raw) => {
    if (isIP(raw) === 0) throw new ValueError(`expected an IPv4 or IPv6 address, got ${show(raw)}`);
    return raw;
  },
};

function nonEmpty(secret = false): Pick<LeafSpec<string>, 'type' | 'parse'> {
  return {
    type: 'a non-empty string',
    parse: (raw) => {
      if (raw === '') throw new ValueError('expected a non-empty string, got nothing');
      // secrets are never echoed, not even in part
      if (/[\u0000-\u001f\u007f]/.test(raw)) throw new ValueError(secret ? 'control characters are not allowed' : `control characters are not allowed, got ${show(raw)}`);
      return raw;
    },
  };
}

const nodeName: Pick<LeafSpec<string>, 'type' | 'parse'> = {
  type: '1..255 characters from A-Z a-z 0-9 . _ -',
  parse: (raw) => {
    if (!/^[A-Za-z0-9._-]{1,255}$/.test(raw)) throw new ValueError(`expected 1..255 characters from A-Z a-z 0-9 . _ -, got ${show(raw)}`);
    return raw;
  },
};

const kHostLabel = '[A-Za-z0-9](?:[A-Za-z0-9-]{0,61}[A-Za-z0-9])?';
/** RFC 1123 host name: dot-separated labels, optional final dot */
const kHostName = new RegExp(`^${kHostLabel}(?:\\.${kHostLabel})*\\.?$`);

const hostName: Pick<LeafSpec<string>, 'type' | 'parse'> = {
  type: 'a host name, or an IPv4 or IPv6 address',
  parse: (raw) => {
    if (isIP(raw) !== 0) return raw;
    // all digits and dots is a (bad) IPv4 address, not a name
    if (raw.length <= 253 && !/^[0-9.]+$/.test(raw) && kHostName.test(raw)) return raw;
    throw new ValueError(`expected a host name, or an IPv4 or IPv6 address, got ${show(raw)}`);
  },
};

/** A shared secret: never echoed, not even its length. */
function sharedSecret(min: number): Pick<LeafSpec<string>, 'type' | 'parse'> {
  return {
    type: `a string of at least ${min} characters`,
    parse: (raw) => {
      if (/[\u0000-\u001f\u007f]/.test(raw)) throw new ValueError('control characters are not allowed');
      if ([...raw].length < min) throw new ValueError(`expected at least ${min} characters (the value is not shown)`);
      return raw;
    },
  };
}

/** An XMPP domain (RFC 7622 domainpart, as jid.ts checks it), lower-cased. */
const domainName: Pick<ListSpec<string>, 'type' | 'parse'> = {
  type: 'a domain name (compared in lower case)',
  parse: (raw) => {
    const j = /[@/]/.test(raw) ? null : parseJid(raw);
    if (j === null || j.node !== '' || j.resource !== '') throw new ValueError(`expected a domain name, got ${show(raw)}`);
    return j.domain;
  },
};

const filePath: Pick<LeafSpec<string>, 'type' | 'parse'> = {
  type: 'a file path (relative: to the directory of this file)',
  parse: (raw, ctx) => {
    if (raw === '') throw new ValueError('expected a file path, got nothing');
    if (raw.includes('\u0000')) throw new ValueError('a path cannot contain NUL');
    return isAbsolute(raw) ? raw : resolve(ctx.baseDir, raw);
  },
};

// PEM files (<peers><tls>): read and parsed at load time, so that a typo or a wrong file fails
// `--check-config` and start-up with the element and the file named, not every later connection.

const kPemBlock = /-----BEGIN ([A-Z0-9 ]+)-----\r?\n[\s\S]*?-----END \1-----/g;

function pemBlocks(text: string): { label: string; pem: string }[] {
  return [...text.matchAll(kPemBlock)].map((m) => ({ label: m[1]!, pem: m[0] }));
}

function readPem(path: string): string {
  try {
    return readFileSync(path, 'utf8');
  } catch (e) {
    const err = e as NodeJS.ErrnoException;
    throw new ValueError(`cannot read '${path}': ${err.code ?? err.message}`);
  }
}

/** Every certificate of a PEM file, in file order (at least one); throws ValueError naming the file. */
export function readPemCertificates(path: string): X509Certificate[] {
  const blocks = pemBlocks(readPem(path)).filter((b) => b.label === 'CERTIFICATE' || b.label === 'TRUSTED CERTIFICATE');
  if (blocks.length === 0) throw new ValueError(`'${path}' holds no PEM certificate (-----BEGIN CERTIFICATE-----)`);
  return blocks.map((b, i) => {
    try {
      return new X509Certificate(b.pem);
    } catch (e) {
      throw new ValueError(`'${path}': certificate ${i + 1} does not parse: ${(e as Error).message}`);
    }
  });
}

/** The private key of a PEM file (exactly one, unencrypted); throws ValueError naming the file. */
export function readPemPrivateKey(path: string): KeyObject {
  const text = readPem(path);
  const keys = pemBlocks(text).filter((b) => b.label.endsWith('PRIVATE KEY'));
  if (keys.length === 0) throw new ValueError(`'${path}' holds no PEM private key (-----BEGIN PRIVATE KEY-----)`);
  if (keys.length > 1) throw new ValueError(`'${path}' holds ${keys.length} private keys; expected one`);
  const k = keys[0]!;
  if (k.label === 'ENCRYPTED PRIVATE KEY' || /^Proc-Type: 4,ENCRYPTED$/m.test(k.pem)) {
    throw new ValueError(`'${path}': the private key is encrypted, which is not supported: store it unencrypted, readable by the service user only`);
  }
  try {
    return createPrivateKey(k.pem);
  } catch (e) {
    // never quote the key; OpenSSL's messages do not either
    throw new ValueError(`'${path}': the private key does not parse: ${(e as Error).message}`);
  }
}

const pemCertFile: Pick<LeafSpec<string>, 'type' | 'parse'> = {
  type: 'a PEM certificate file path (relative: to the directory of this file)',
  parse: (raw, ctx) => {
    const path = filePath.parse(raw, ctx);
    const [leafCert] = readPemCertificates(path);
    const now = Date.now();
    if (Date.parse(leafCert!.validTo) < now) throw new ValueError(`the certificate in '${path}' expired on ${leafCert!.validTo}`);
    if (Date.parse(leafCert!.validFrom) > now) throw new ValueError(`the certificate in '${path}' is not valid before ${leafCert!.validFrom}`);
    return path;
  },
};

const pemKeyFile: Pick<LeafSpec<string>, 'type' | 'parse'> = {
  type: 'a PEM private key file path (relative: to the directory of this file)',
  parse: (raw, ctx) => {
    const path = filePath.parse(raw, ctx);
    readPemPrivateKey(path);
    return path;
  },
};

const pemCaFile: Pick<LeafSpec<string>, 'type' | 'parse'> = {
  type: 'a PEM file path of one or more CA certificates (relative: to the directory of this file)',
  parse: (raw, ctx) => {
    const path = filePath.parse(raw, ctx);
    readPemCertificates(path);
    return path;
  },
};

const MiB = 1024 * 1024;

/**
 * Default worker count: one per core beyond the one main uses, at most 8 (the design's default).
 * The perf probe (../shared/docs/perf-probe.md §6) shows parse throughput scaling about linearly
 * until the main thread saturates at around 6–8 workers; more only add memory.
 */
export function defaultWorkers(): number {
  return Math.min(8, Math.max(0, availableParallelism() - 1));
}

// ---------------------------------------------------------------------------------------------
// The schema

export const schema = group({
  xml: { elem: 'cluster' },
  doc: 'Root element of the cluster component configuration.',
  hints: {
    pidfile: 'not supported: run under a service manager (systemd) instead',
    check: 'use <router><keepalive> (seconds) instead',
    io: 'use <local><max_connections> and <limits> instead',
  },
  children: {
    id: leaf({
      xml: { elem: 'id' },
      ...nodeName,
      default: () => hostname(),
      defaultDoc: "the machine's host name (`os.hostname()`)",
      doc: 'Name of this node. Must be unique among the nodes of the cluster; peers and logs identify the node by it.',
      reload: false,
    }),
    router: group({
      xml: { elem: 'router' },
      doc: "Our component link to the local jabberd2 router (the same settings as the `<router>` section of jabberd2's sm.xml).",
      hints: {
        pemfile: 'not supported: the link to the local router is plain TCP on loopback',
        non_default: 'not applicable: this component never takes the default route',
      },
      children: {
        ip: leaf({ xml: { elem: 'ip' }, ...ipAddress, default: '127.0.0.1', doc: 'IP address of the router.', reload: false }),
        port: leaf({ xml: { elem: 'port' }, ...int(1, 65535), default: '5347', doc: "Port of the router (router.xml's `<local><port>`).", reload: false }),
        user: leaf({
          xml: { elem: 'user' },
          ...nonEmpty(),
          default: 'jabberd',
          doc: "User name to authenticate as (SASL DIGEST-MD5). It must be in the router's router-users.xml and, to bind the domain and its own names, in its `all` or `bind` ACL.",
          reload: false,
        }),
        pass: leaf({
          xml: { elem: 'pass' },
          ...nonEmpty(true),
          default: 'secret',
          doc: 'Password for that user. Never logged.',
          reload: false,
          secret: true,
        }),
        retry: group({
          xml: { elem: 'retry' },
          doc: 'Reconnection to the router: the delay starts at `init_ms`, doubles after each failed attempt up to `max_ms`, with random jitter; attempts go on forever.',
          hints: {
            init: 'use <init_ms> (milliseconds) instead; this component retries forever',
            lost: 'not applicable: this component retries forever; see <init_ms> and <max_ms>',
            sleep: 'use <init_ms> and <max_ms> (milliseconds) instead',
          },
          children: {
            initMs: leaf({ xml: { elem: 'init_ms' }, ...int(1, 3_600_000), default: '250', doc: 'First reconnection delay, in milliseconds.', reload: false }),
            maxMs: leaf({ xml: { elem: 'max_ms' }, ...int(1, 3_600_000), default: '5000', doc: 'Largest reconnection delay, in milliseconds. Must be at least `init_ms`.', reload: false }),
          },
        }),
        keepaliveSec: leaf({
          xml: { elem: 'keepalive' },
          ...int(0, 86_400),
          default: '60',
          doc: 'Send a single whitespace character on the router link after this many idle seconds, so that a dead peer is noticed. 0 disables it.',
          reload: false,
        }),
      },
    }),
    local: group({
      xml: { elem: 'local' },
      doc: "Where the local session manager connects to us: toward the sm this component IS the router, so point sm.xml's `<router><ip>`/`<port>` here.",
      hints: {
        secret: 'not supported: XEP-0114 components must connect to the jabberd2 router itself',
        pemfile: 'not supported: the sm link is plain TCP on loopback',
      },
      children: {
        ip: leaf({ xml: { elem: 'ip' }, ...ipAddress, default: '127.0.0.1', doc: 'IP address to listen on for the session manager. Keep it on loopback.', reload: false }),
        port: leaf({
          xml: { elem: 'port' },
          ...int(1, 65535),
          default: '5348',
          doc: "Port to listen on for the session manager (put it in sm.xml's `<router><port>`). Must differ from `router.port` when both use the same IP.",
          reload: false,
        }),
        users: leaf({
          xml: { elem: 'users' },
          ...filePath,
          default: 'router-users.xml',
          doc: 'File of the users allowed to connect here, in router-users.xml format (`<users><user><name/><secret/></user></users>`); the sm authenticates with its `<router><user>`/`<pass>`. Relative paths resolve against the directory of this file. Its contents are re-read on SIGHUP; changing the path needs a restart.',
          reload: true,
        }),
        acl: {
          kind: 'acl',
          xml: { elem: 'aci' },
          default: { all: ['jabberd'], bind: [], 'default-route': [], log: [] },
          doc: "Access control, in router.xml's format: `<aci><acl type='T'><user>name</user>…</acl>…</aci>`. A user in `all` may do everything; otherwise the list for the action applies. Writing `<aci>` replaces the whole default: types not listed are empty.",
          types: {
            all: 'users allowed every restricted action below',
            bind: 'users allowed to bind names other than their user name',
            'default-route': 'users allowed to bind a name as the default route',
            log: 'users allowed to receive a copy of every routed packet',
          },
          reload: false,
        } satisfies AclSpec,
        maxConnections: leaf({
          xml: { elem: 'max_connections' },
          ...int(1, 65535),
          default: '64',
          doc: 'Largest number of simultaneous connections on the local port (authenticated or not); further ones are closed at once.',
          reload: false,
        }),
      },
    }),
    peers: optionalGroup({
      xml: { elem: 'peers' },
      doc: 'Peer links to the other nodes of the cluster. Optional: without `<peers>` the node runs alone and opens no peer port. Every node lists every other node as a `<peer>`, and all share one `<secret>`. Peer links are authenticated by the secret; they are plain TCP by default (keep them on a trusted network or a VPN), and mutual TLS with `<tls>`.',
      hints: {
        pemfile: 'use <tls> with <cert>, <key> and <ca> (mutual TLS) instead',
      },
      children: {
        secret: requiredLeaf({
          xml: { elem: 'secret' },
          ...sharedSecret(16),
          defaultDoc: 'none: required in `<peers>`',
          doc: 'Cluster secret, identical on every node, at least 16 characters (use a long random string). When a link opens, each node proves to the other that it knows it (HMAC-SHA256 over fresh nonces); it never crosses the network. Never logged.',
          reload: false,
          secret: true,
        }),
        listen: group({
          xml: { elem: 'listen' },
          doc: 'Where the other nodes connect to this one.',
          children: {
            ip: leaf({
              xml: { elem: 'ip' },
              ...ipAddress,
              default: '127.0.0.1',
              doc: "IP address to listen on for peers. The default, loopback, only suits several nodes on one machine: set this node's address on the cluster network (or 0.0.0.0).",
              reload: false,
            }),
            port: leaf({ xml: { elem: 'port' }, ...int(1, 65535), default: '5350', doc: 'Port to listen on for peers. Must differ from `local.port` and `router.port`.', reload: false }),
          },
        }),
        peers: repeatedGroup({
          xml: { elem: 'peer' },
          doc: 'Another node of the cluster; repeat `<peer>` once per other node (at least one). This node dials every peer, keeps redialling it while it is unreachable, and accepts peer connections only from the nodes listed here.',
          children: {
            name: requiredLeaf({
              xml: { elem: 'name' },
              ...nodeName,
              defaultDoc: 'none: required in `<peer>`',
              doc: "The peer's `<id>`: it must introduce itself with this name. Unique among the peers and different from this node's own id.",
              reload: false,
            }),
            host: requiredLeaf({
              xml: { elem: 'host' },
              ...hostName,
              defaultDoc: 'none: required in `<peer>`',
              doc: 'Host name or IP address to dial the peer at.',
              reload: false,
            }),
            port: leaf({ xml: { elem: 'port' }, ...int(1, 65535), default: '5350', doc: "The peer's `<peers><listen><port>`.", reload: false }),
          },
        }),
        retry: group({
          xml: { elem: 'retry' },
          doc: 'Redialling a peer: the delay starts at `init_ms`, doubles after each failed attempt up to `max_ms`, with random jitter; attempts go on forever.',
          children: {
            initMs: leaf({ xml: { elem: 'init_ms' }, ...int(1, 3_600_000), default: '250', doc: 'First redial delay, in milliseconds.', reload: false }),
            maxMs: leaf({ xml: { elem: 'max_ms' }, ...int(1, 3_600_000), default: '5000', doc: 'Largest redial delay, in milliseconds. Must be at least `init_ms`.', reload: false }),
          },
        }),
        heartbeatMs: leaf({
          xml: { elem: 'heartbeat_ms' },
          ...int(10, 600_000),
          default: '800',
          doc: 'Interval of the PING heartbeats on an established peer link, in milliseconds. A peer from which nothing (stanza, update or PONG) has arrived for 2.5 intervals is taken as gone and its link is closed: with the default, a hung or unreachable node is detected within 2.0 to 2.8 s (a killed process at once, by its closed connections).',
          reload: false,
        }),
        maxFrameBytes: leaf({
          xml: { elem: 'max_frame_bytes' },
          ...int(65_536, 1024 * MiB),
          default: String(4 * MiB),
          defaultDoc: '4194304 (4 MiB)',
          doc: 'Largest message accepted from a peer, in bytes; a larger one closes the link. A stanza travels in one message, so this must exceed `limits.max_stanza_bytes` by at least 1024.',
          reload: false,
        }),
        tls: optionalGroup({
          xml: { elem: 'tls' },
          doc: "Mutual TLS on every peer link. Optional: without `<tls>` peer links are plain TCP. With it, every node must have it (a node without it cannot talk to one with it): the listener requires a client certificate, both ends verify the other's certificate against `<ca>` (TLS 1.2 or later), and the certificate must name the peer: its subject CN or one of its DNS subject alternative names must be exactly the peer's node name (`<peer><name>`, the peer's `<id>`; case-sensitive, no wildcards). A dialling node checks this for the peer it dialled, an accepting node for the name the peer authenticated with. The cluster-secret handshake still runs inside TLS. The three files are checked when the configuration is loaded and read when the node starts: a renewed certificate needs a restart. A TLS failure (unknown CA, wrong name, expired certificate, handshake error) is logged once per attempt and the peer is redialled with the usual backoff.",
          children: {
            cert: requiredLeaf({
              xml: { elem: 'cert' },
              ...pemCertFile,
              defaultDoc: 'none: required in `<tls>`',
              doc: "This node's certificate in PEM, followed by any intermediate CA certificates. Its subject CN or a DNS subject alternative name must be this node's `<id>`; for `openssl`, give it `extendedKeyUsage = serverAuth, clientAuth` (it serves both ends of a link). Relative paths resolve against the directory of this file.",
              reload: false,
            }),
            key: requiredLeaf({
              xml: { elem: 'key' },
              ...pemKeyFile,
              defaultDoc: 'none: required in `<tls>`',
              doc: 'The private key of `<cert>`, in PEM, unencrypted: make the file readable by the service user only. Relative paths resolve against the directory of this file.',
              reload: false,
            }),
            ca: requiredLeaf({
              xml: { elem: 'ca' },
              ...pemCaFile,
              defaultDoc: 'none: required in `<tls>`',
              doc: "The CA certificate(s), in PEM, that the other nodes' certificates must chain to; usually one private CA for the cluster. Only these are trusted (not the system's CAs). Relative paths resolve against the directory of this file.",
              reload: false,
            }),
          },
        }),
      },
    }),
    domains: list({
      xml: { elem: 'domains', item: 'domain' },
      ...domainName,
      default: [],
      defaultDoc: 'none: every domain the local session manager binds',
      doc: 'The domains served by the cluster, one `<domain>` each. Without it, the cluster serves every domain the local session manager binds. Each domain may be listed once.',
      reload: false,
    }),
    limits: group({
      xml: { elem: 'limits' },
      doc: 'Resource limits applied to every link (router, session manager and peers).',
      children: {
        maxStanzaBytes: leaf({
          xml: { elem: 'max_stanza_bytes' },
          ...int(1024, 256 * MiB),
          default: String(2 * MiB),
          defaultDoc: '2097152 (2 MiB)',
          doc: 'Largest top-level element (a `<route>` with its stanza), in bytes of UTF-8. Larger ones close the link with a stream error. 2 MiB leaves room for vCards with photos and large rosters wrapped in a route.',
          reload: false,
        }),
        maxDepth: leaf({
          xml: { elem: 'max_depth' },
          ...int(8, 1024),
          default: '64',
          doc: 'Deepest element nesting accepted inside a top-level element; deeper input closes the link with a stream error.',
          reload: false,
        }),
        queueBytes: leaf({
          xml: { elem: 'queue_bytes' },
          ...int(65_536, 4096 * MiB),
          default: String(16 * MiB),
          defaultDoc: '16777216 (16 MiB)',
          doc: 'Cap on the bytes waiting to be written to one link. Past it the source is throttled, then the link is closed as a slow consumer. Must be at least `max_stanza_bytes`.',
          reload: false,
        }),
        authTimeoutSec: leaf({
          xml: { elem: 'auth_timeout' },
          ...int(1, 3600),
          default: '10',
          doc: 'Seconds a new connection has to open its stream and authenticate before it is closed.',
          reload: false,
        }),
      },
    }),
    log: group({
      xml: { elem: 'log' },
      doc: "Logging, like jabberd2's `<log type='…'>`.",
      hints: {
        ident: "syslog is not supported: use <log type='stderr'> (journald) or type='file'",
        facility: "syslog is not supported: use <log type='stderr'> (journald) or type='file'",
        debug: "use <level>debug</level> instead",
      },
      children: {
        type: leaf({ xml: { attr: 'type' }, ...oneOf(LOG_TYPES), default: 'stderr', doc: 'Where log lines go: standard error, or the file named by `<file>`.', reload: false }),
        file: optionalLeaf({
          xml: { elem: 'file' },
          ...filePath,
          defaultDoc: 'none (required when `type` is `file`)',
          doc: 'Log file, appended to. Relative paths resolve against the directory of this file.',
          reload: false,
        }),
        level: leaf({ xml: { elem: 'level' }, ...oneOf(LOG_LEVELS), default: 'notice', doc: 'Most verbose level written.', reload: false }),
      },
    }),
    workers: leaf({
      xml: { elem: 'workers' },
      ...int(0, 256),
      default: () => String(defaultWorkers()),
      defaultDoc: 'number of CPUs − 1, at most 8 (`os.availableParallelism()`); 0 on a single CPU',
      doc: 'Worker threads that frame the XML of authenticated links (the byte scan of the hot path). 0 runs everything inline on the main thread: the most CPU-efficient and lowest-latency mode, enough while the node has CPU to spare (one core forwards some 400 k routes/s on the reference machine). Workers help when the main thread is saturated and cores are idle; `npm run bench -- --workers 0,1,2,4` measures it on your host (docs/performance.md, "Choosing a worker count"). The command-line option `--workers N` overrides it.',
      reload: false,
    }),
  },
});

// ---------------------------------------------------------------------------------------------
// Cross-field rules (run after every value is parsed; path is the element to blame)

export interface CrossCheck {
  /** the element to blame (a pattern such as `cluster.peers.peer[i].name` when `check` names it) */
  path: string;
  /** returns an error message (for `path`, or for the exact element it names), or null when the rule holds */
  check: (c: ClusterConfig) => string | { path: string; message: string } | null;
}

/** Room left around a stanza in a peer message (the STANZA envelope takes 7 bytes today). */
const kStanzaFrameMargin = 1024;

const isWildcard = (ip: string): boolean => ip === '0.0.0.0' || ip === '::';
/** Two listening addresses clash when equal or when either is a wildcard. */
const overlaps = (a: string, b: string): boolean => a === b || isWildcard(a) || isWildcard(b);

export const crossChecks: readonly CrossCheck[] = [
  {
    path: 'cluster.router.retry.max_ms',
    check: (c) => (c.router.retry.maxMs < c.router.retry.initMs ? `must be at least init_ms (${c.router.retry.initMs}), got ${c.router.retry.maxMs}` : null),
  },
  {
    path: 'cluster.local.port',
    check: (c) =>
      c.local.port === c.router.port && (c.local.ip === c.router.ip || c.local.ip === '0.0.0.0' || c.local.ip === '::')
        ? `must differ from cluster.router.port (${c.router.port}): we would connect to ourselves`
        : null,
  },
  {
    path: 'cluster.limits.queue_bytes',
    check: (c) => (c.limits.queueBytes < c.limits.maxStanzaBytes ? `must be at least max_stanza_bytes (${c.limits.maxStanzaBytes}), got ${c.limits.queueBytes}` : null),
  },
  {
    path: 'cluster.log.file',
    check: (c) => (c.log.type === 'file' && c.log.file === undefined ? "required when <log type='file'>" : null),
  },
  {
    path: 'cluster.peers',
    check: (c) => (c.peers !== undefined && c.peers.peers.length === 0 ? 'lists no <peer>: add one <peer> per other node, or remove <peers> to run a single node' : null),
  },
  {
    path: 'cluster.peers.peer[i].name',
    check: (c) => {
      const peers = c.peers?.peers ?? [];
      const first = new Map<string, number>();
      for (const [i, p] of peers.entries()) {
        const at = `cluster.peers.peer[${i + 1}].name`;
        if (p.name === c.id) return { path: at, message: `must differ from this node's id ('${c.id}'): a node does not peer with itself` };
        const prev = first.get(p.name);
        if (prev !== undefined) return { path: at, message: `peer '${p.name}' is listed twice (first as peer[${prev + 1}])` };
        first.set(p.name, i);
      }
      return null;
    },
  },
  {
    path: 'cluster.peers.peer[i].port',
    check: (c) => {
      const first = new Map<string, string>();
      for (const [i, p] of (c.peers?.peers ?? []).entries()) {
        const addr = `${p.host.toLowerCase()}:${p.port}`;
        const prev = first.get(addr);
        if (prev !== undefined) return { path: `cluster.peers.peer[${i + 1}].port`, message: `peer '${p.name}' has the same host and port as peer '${prev}' (${p.host}:${p.port})` };
        first.set(addr, p.name);
      }
      return null;
    },
  },
  {
    path: 'cluster.peers.listen.port',
    check: (c) => {
      if (c.peers === undefined) return null;
      const l = c.peers.listen;
      if (l.port === c.local.port && overlaps(l.ip, c.local.ip)) return `must differ from cluster.local.port (${c.local.port}): both would listen on it`;
      if (l.port === c.router.port && overlaps(l.ip, c.router.ip)) return `must differ from cluster.router.port (${c.router.port}): the router listens on it`;
      return null;
    },
  },
  {
    path: 'cluster.peers.retry.max_ms',
    check: (c) => (c.peers !== undefined && c.peers.retry.maxMs < c.peers.retry.initMs ? `must be at least init_ms (${c.peers.retry.initMs}), got ${c.peers.retry.maxMs}` : null),
  },
  {
    path: 'cluster.peers.tls.key',
    check: (c) => {
      const tls = c.peers?.tls;
      if (tls === undefined) return null;
      try {
        const cert = readPemCertificates(tls.cert)[0]!;
        if (!cert.checkPrivateKey(readPemPrivateKey(tls.key))) return `the key in '${tls.key}' does not match the certificate in <cert> ('${tls.cert}')`;
      } catch (e) {
        // a file changed since it was parsed: report it here rather than crash
        if (e instanceof ValueError) return e.message;
        throw e;
      }
      return null;
    },
  },
  {
    path: 'cluster.peers.tls.cert',
    check: (c) => {
      const tls = c.peers?.tls;
      if (tls === undefined) return null;
      try {
        const names = certNames(readPemCertificates(tls.cert)[0]!.toLegacyObject());
        if (!names.includes(c.id)) {
          return `the certificate in '${tls.cert}' is for ${showCertNames(names)}, not this node's id '${c.id}': peers refuse a certificate unless its subject CN or a DNS subject alternative name is the node's id`;
        }
      } catch (e) {
        if (e instanceof ValueError) return e.message;
        throw e;
      }
      return null;
    },
  },
  {
    path: 'cluster.peers.max_frame_bytes',
    check: (c) =>
      c.peers !== undefined && c.peers.maxFrameBytes < c.limits.maxStanzaBytes + kStanzaFrameMargin
        ? `must be at least max_stanza_bytes + ${kStanzaFrameMargin} (${c.limits.maxStanzaBytes + kStanzaFrameMargin}) so that the largest stanza fits in one message, got ${c.peers.maxFrameBytes}`
        : null,
  },
];

// ---------------------------------------------------------------------------------------------
// Type-level link between the schema and ClusterConfig: `tsc` fails if they drift.

type OptionalKeys<C> = { [K in keyof C]: C[K] extends { optional: true } ? K : never }[keyof C];
type InferGroup<C> = { [K in Exclude<keyof C, OptionalKeys<C>>]: Infer<C[K]> } & { [K in OptionalKeys<C>]?: Infer<C[K]> };
export type Infer<S> = S extends LeafSpec<infer T>
  ? T
  : S extends AclSpec
    ? Record<AclType, string[]>
    : S extends ListSpec<infer T>
      ? T[]
      : S extends GroupSpec<infer C>
        ? S extends { repeated: true }
          ? InferGroup<C>[]
          : InferGroup<C>
        : never;
type MutuallyAssignable<A, B> = [A] extends [B] ? ([B] extends [A] ? true : false) : false;
type Assert<T extends true> = T;
/** Compile-time check only. */
export type SchemaMatchesClusterConfig = Assert<MutuallyAssignable<Infer<typeof schema>, ClusterConfig>>;

// ---------------------------------------------------------------------------------------------
// Walking the schema (loader, doc generator, drift test)

export interface OptionInfo {
  /** XML path as used in errors and docs: `cluster.router.port`, `cluster.log@type`, `cluster.local.aci` */
  path: string;
  /** property path in ClusterConfig: `router.port`, `log.type`, `local.acl` */
  key: string;
  spec: LeafSpec<unknown> | AclSpec | ListSpec<unknown>;
  /** docs of the enclosing groups, outermost first (root excluded) */
  groups: { path: string; doc: string }[];
}

/** Every option of the schema in document order. */
export function listOptions(): OptionInfo[] {
  const out: OptionInfo[] = [];
  const walk = (g: GroupSpec<Record<string, Spec>>, path: string, key: string, groups: { path: string; doc: string }[]): void => {
    for (const [k, s] of Object.entries(g.children)) {
      const kp = key === '' ? k : `${key}.${k}`;
      if (s.kind === 'group') {
        const p = `${path}.${s.xml.elem}`;
        walk(s, p, kp, [...groups, { path: p, doc: s.doc }]);
      } else {
        const p = 'attr' in s.xml ? `${path}@${s.xml.attr}` : `${path}.${s.xml.elem}`;
        out.push({ path: p, key: kp, spec: s, groups });
      }
    }
  };
  walk(schema as GroupSpec<Record<string, Spec>>, schema.xml.elem, '', []);
  return out;
}

/** The default of a leaf as text (computed ones evaluated now), or null when it has none. */
export function defaultText(spec: LeafSpec<unknown>): string | null {
  return typeof spec.default === 'function' ? spec.default() : spec.default;
}
