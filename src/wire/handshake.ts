/**
 * Peer link handshake: a pure state machine (no socket, timer or logger; the only side effect is
 * drawing a random nonce). The link calls `start()` on connect, writes what it returns, then
 * feeds every decoded message to `receive()` and writes its `send` until `done` or `fail`.
 * The handshake deadline is the link's business (`limits.auth_timeout`).
 *
 * Symmetric: the dialling and the accepting side run the same steps.
 *
 *     A: HELLO(nA)                 B: HELLO(nB)          both, at once, on connect
 *     A: AUTH(proof_A)             B: AUTH(proof_B)      each on receiving the other's HELLO
 *     A: AUTH_OK                   B: AUTH_OK            each on verifying the other's proof
 *     done                         done                  each on receiving the other's AUTH_OK
 *
 * A peer sends nothing but these before its AUTH_OK, so everything after it belongs to the link.
 * A side that refuses the other sends AUTH_FAIL{reason} (and fails); the link then closes.
 *
 * Proof (mutual challenge-response; the secret never crosses the wire):
 *
 *     proof = HMAC-SHA256(secret, "jc-peer-auth-v1" ‖ peerNonce ‖ ownNonce
 *                                 ‖ u16be(len) ownNode ‖ u16be(len) peerNode)
 *
 * computed by the prover over the nonce the verifier sent (peerNonce) and its own. Node names
 * are UTF-8, length-prefixed so that ('ab','c') and ('a','bc') differ; the label and the 32-byte
 * nonces have fixed lengths.
 * - Replay: each side's proof covers the nonce the other side drew for THIS connection, so
 *   messages recorded from an earlier session fail.
 * - Reflection: the prover's own name comes first, so a proof sent back to its author (or a
 *   HELLO echoed with our nonce) fails; a peer claiming our own name is refused outright.
 * - Proofs are compared with `crypto.timingSafeEqual`.
 * Limits: this authenticates the two nodes when the link opens; it neither encrypts nor protects
 * the integrity of what follows on plain TCP, and a man in the middle can relay a handshake.
 * Peer links belong on a trusted network (or a VPN / TLS tunnel).
 *
 * No failure reason ever includes the secret; strings from the peer (its name, its AUTH_FAIL
 * reason) are stripped of control characters and shortened before they are quoted.
 */
import { createHmac, randomBytes, timingSafeEqual } from 'node:crypto';
import { MsgType, kMinProtocolVersion, kMsgTypeName, kNonceBytes, kProtocolVersion, type HelloMsg, type PeerMessage } from './messages.ts';

export interface HandshakeOptions {
  /** our node name (config `id`) */
  self: string;
  /** ms timestamp of our process start */
  incarnation: number;
  /** the cluster secret (config `peers.secret`) */
  secret: string;
  /** set when we dialled a configured peer: its name, which the HELLO must carry */
  expectPeer?: string;
  /** names of the nodes we accept as peers (config `peers.peer[*].name`) */
  allowedPeers: ReadonlySet<string>;
  /** newest protocol version we speak */
  version: typeof kProtocolVersion;
  /** optional features we announce in HELLO.caps (default: none) */
  caps?: readonly string[];
}

export interface HandshakeDone {
  peer: string;
  peerIncarnation: number;
  caps: string[];
  /** protocol version both ends use: the highest they share */
  version: number;
}

export interface HandshakeStep {
  /** messages to write, in order (also when failing: an AUTH_FAIL telling the peer why) */
  send: PeerMessage[];
  /** set once, when the peer is authenticated and has authenticated us */
  done?: HandshakeDone;
  /** set once, when the handshake failed: the reason, for our log; close after writing `send` */
  fail?: string;
}

/** Domain-separation label of proof version 1. */
export const kAuthLabel = 'jc-peer-auth-v1';
/** Length of a proof (HMAC-SHA256). */
export const kProofBytes = 32;

/**
 * HMAC-SHA256(secret, label ‖ peerNonce ‖ ownNonce ‖ u16be(len) ownNode ‖ u16be(len) peerNode):
 * the proof that `ownNode`, knowing the secret, answers `peerNonce` on this connection.
 */
export function authProof(secret: string | Uint8Array, peerNonce: Uint8Array, ownNonce: Uint8Array, ownNode: string, peerNode: string): Buffer {
  const own = Buffer.from(ownNode, 'utf8');
  const peer = Buffer.from(peerNode, 'utf8');
  if (own.length > 0xffff || peer.length > 0xffff) throw new RangeError('node name too long');
  const lens = Buffer.allocUnsafe(4);
  lens.writeUInt16BE(own.length, 0);
  lens.writeUInt16BE(peer.length, 2);
  return createHmac('sha256', secret)
    .update(kAuthLabel)
    .update(peerNonce)
    .update(ownNonce)
    .update(lens.subarray(0, 2))
    .update(own)
    .update(lens.subarray(2, 4))
    .update(peer)
    .digest();
}

/** A peer-supplied string, safe to quote in a log line. */
function clean(s: string, max = 120): string {
  const t = s.replace(/[\u0000-\u001f\u007f-\u009f]/g, '?');
  return t.length > max ? t.slice(0, max) + '…' : t;
}

type State = 'new' | 'await-hello' | 'await-auth' | 'await-ok' | 'done' | 'failed';

const kExpected: Record<'await-hello' | 'await-auth' | 'await-ok', 'HELLO' | 'AUTH' | 'AUTH_OK'> = {
  'await-hello': 'HELLO',
  'await-auth': 'AUTH',
  'await-ok': 'AUTH_OK',
};

export class PeerHandshake {
  readonly #self: string;
  readonly #incarnation: number;
  /** the secret as HMAC key; private, never copied into a message or a reason */
  readonly #key: Buffer;
  readonly #expectPeer: string | undefined;
  readonly #allowed: ReadonlySet<string>;
  readonly #version: number;
  readonly #caps: string[];
  readonly #nonce: Buffer = randomBytes(kNonceBytes);
  #state: State = 'new';
  #peer: HelloMsg | null = null;
  #agreed = 0;

  constructor(opts: HandshakeOptions) {
    if (opts.secret.length === 0) throw new TypeError('PeerHandshake: the cluster secret is empty');
    if (opts.version !== kProtocolVersion) throw new TypeError(`PeerHandshake: version must be ${kProtocolVersion}`);
    this.#self = opts.self;
    this.#incarnation = opts.incarnation;
    this.#key = Buffer.from(opts.secret, 'utf8');
    this.#expectPeer = opts.expectPeer;
    this.#allowed = opts.allowedPeers;
    this.#version = opts.version;
    this.#caps = [...(opts.caps ?? [])];
  }

  /** 'new' → 'await-hello' → 'await-auth' → 'await-ok' → 'done', or 'failed' from any step. */
  get state(): State {
    return this.#state;
  }

  /** The peer's name once its HELLO was accepted, else the name we dialled, else null. */
  get peer(): string | null {
    return this.#peer?.node ?? this.#expectPeer ?? null;
  }

  /** Our HELLO: write it as soon as the connection is up. */
  start(): PeerMessage[] {
    if (this.#state !== 'new') throw new Error('PeerHandshake.start() called twice');
    this.#state = 'await-hello';
    return [
      {
        type: MsgType.HELLO,
        version: this.#version,
        minVersion: kMinProtocolVersion,
        node: this.#self,
        incarnation: this.#incarnation,
        caps: [...this.#caps],
        nonce: this.#nonce,
      },
    ];
  }

  receive(msg: PeerMessage): HandshakeStep {
    const state = this.#state;
    if (state === 'new') throw new Error('PeerHandshake.receive() before start()');
    if (state === 'done' || state === 'failed') throw new Error(`PeerHandshake.receive() after the handshake ${state === 'done' ? 'completed' : 'failed'}`);
    if (msg.type === MsgType.AUTH_FAIL) return this.#fail(`${this.#who()} refused the handshake: ${clean(msg.reason)}`, null);
    if (msg.type === MsgType.BYE) return this.#fail(`${this.#who()} closed the link during the handshake: ${clean(msg.reason)}`, null);
    const expected = kExpected[state];
    if (msg.type !== MsgType[expected]) {
      const why = `protocol error: expected ${expected}, got ${kMsgTypeName[msg.type]}`;
      return this.#fail(`${this.#who()}: ${why}`, why);
    }
    switch (msg.type) {
      case MsgType.HELLO:
        return this.#onHello(msg);
      case MsgType.AUTH:
        return this.#onAuth(msg.proof);
      case MsgType.AUTH_OK: {
        // the peer verified our proof, and we verified its one before sending our AUTH_OK
        const p = this.#peer!;
        this.#state = 'done';
        return { send: [], done: { peer: p.node, peerIncarnation: p.incarnation, caps: [...p.caps], version: this.#agreed } };
      }
      default:
        throw new Error('unreachable');
    }
  }

  #who(): string {
    const p = this.peer;
    return p === null ? 'the peer' : `peer '${clean(p, 64)}'`;
  }

  /** `tell`: the AUTH_FAIL reason for the peer (null: send nothing, the peer already gave up). */
  #fail(reason: string, tell: string | null): HandshakeStep {
    this.#state = 'failed';
    return { send: tell === null ? [] : [{ type: MsgType.AUTH_FAIL, reason: tell }], fail: reason };
  }

  #onHello(h: HelloMsg): HandshakeStep {
    const name = `'${clean(h.node, 64)}'`;
    const refuse = (why: string): HandshakeStep => this.#fail(why, why);
    if (h.node === this.#self) return refuse(`connected to ourselves: the peer's name ${name} is this node's id (does a <peer> point at this node?)`);
    if (this.#expectPeer !== undefined && h.node !== this.#expectPeer) {
      return refuse(`dialled peer '${this.#expectPeer}' but it introduced itself as ${name}: check the host and port of <peer> '${this.#expectPeer}'`);
    }
    if (!this.#allowed.has(h.node)) return refuse(`unknown peer ${name}: not in the <peers> list of node '${this.#self}'`);
    const lo = Math.max(kMinProtocolVersion, h.minVersion);
    const hi = Math.min(this.#version, h.version);
    if (h.minVersion > h.version || lo > hi) {
      return refuse(`peer protocol version mismatch: peer ${name} speaks ${h.minVersion}..${h.version}, node '${this.#self}' speaks ${kMinProtocolVersion}..${this.#version}`);
    }
    if (h.nonce.length !== kNonceBytes) return refuse(`protocol error: HELLO nonce of ${h.nonce.length} bytes, expected ${kNonceBytes}`);
    if (timingSafeEqual(h.nonce, this.#nonce)) return refuse(`peer ${name} sent back our own nonce: reflected connection?`);
    this.#peer = h;
    this.#agreed = hi;
    this.#state = 'await-auth';
    return { send: [{ type: MsgType.AUTH, proof: authProof(this.#key, h.nonce, this.#nonce, this.#self, h.node) }] };
  }

  #onAuth(proof: Uint8Array): HandshakeStep {
    const peer = this.#peer!;
    // what the peer computes as prover: its peerNonce is ours, its ownNode is itself
    const expected = authProof(this.#key, this.#nonce, peer.nonce, peer.node, this.#self);
    // length first (not secret), then a constant-time comparison
    const ok = proof.length === kProofBytes && timingSafeEqual(proof, expected);
    if (!ok) return this.#fail(`${this.#who()} failed authentication: wrong cluster secret?`, 'authentication failed: wrong cluster secret?');
    this.#state = 'await-ok';
    return { send: [{ type: MsgType.AUTH_OK }] };
  }
}
