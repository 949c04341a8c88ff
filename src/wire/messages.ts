/**
 * Peer protocol (node ↔ node), version 2: message types and shapes. Pure; shared.
 *
 * Every message is one frame (`frame.ts`) whose payload is ONE MessagePack array:
 *
 *     [type, field1, field2, …]
 *
 * Fields are positional, in the order listed below. Nested entries (sessions, names, ops) are
 * arrays too. Why arrays, not maps or msgpackr records:
 * - maps repeat every key in every entry: a SNAPSHOT of 100k sessions would carry 800k key
 *   strings; positional arrays are about the size of msgpackr records (perf-probe §6: 57 B as a
 *   map, 34 B as a record for a typical session update);
 * - records (`useRecords`) need both ends to hold the same structure table: shared state that a
 *   restarted node, or a node of another version, does not have;
 * - arrays are plain MessagePack, readable by any decoder, with no state between messages.
 * Forward compatibility: a later version may only APPEND fields (to a message or an entry);
 * decoders ignore trailing elements they do not know. A field is never removed, reordered or
 * re-typed; a change of meaning takes a new protocol version (HELLO negotiates it) or a new
 * message type.
 *
 * Version 2 re-types one field: SNAPSHOT.sessions is a `bin` of packed sessions (PackedSessions
 * below) instead of an array of Session arrays. A link runs at the highest version both ends
 * speak (HELLO); a node sends packed sessions only on version-2 links, and accepts both forms
 * on any link (the MessagePack type tells them apart).
 *
 * | type | name      | fields after the type                                                   |
 * |------|-----------|-------------------------------------------------------------------------|
 * | 1    | HELLO     | version, minVersion, node, incarnation, caps: str[], nonce: bin(32)      |
 * | 2    | AUTH      | proof: bin                                                              |
 * | 3    | AUTH_OK   | –                                                                       |
 * | 4    | AUTH_FAIL | reason: str                                                             |
 * | 5    | SNAPSHOT  | origin, incarnation, seq, sessions, names: Name[], more?                |
 * |      |           |   sessions: bin of PackedSessions (version 2) or Session[] (version 1)  |
 * | 6    | DELTA     | origin, incarnation, seq, ops: Op[]                                     |
 * | 7    | RESYNC    | origin                                                                  |
 * | 8    | STANZA    | bytes: bin (the UTF-8 of one whole `<route>` element, never a str)       |
 * | 9    | PING      | t: number                                                               |
 * | 10   | PONG      | t: number (echoes the PING's)                                           |
 * | 11   | BYE       | reason: str                                                             |
 *
 *     Session = [jid, home, c2sNode, c2s, sm, prio, avail, since, c2sId]
 *     Name    = [name, kind]          kind: 'sm' | 'domain' | 'component'
 *     Op      = [1, Session]  sess+   session added or changed (keyed by jid)
 *             | [2, jid, lost?] sess- session removed (lost: it died with its sm)
 *             | [3, Name]     name+   name bound
 *             | [4, name]     name-   name unbound
 *
 *     PackedSessions (SNAPSHOT.sessions, version 2): little-endian base-128 varints (uN below,
 *     at most 8 bytes each) and UTF-8 strings (str = uN length, then the bytes):
 *       uN count, uN nStrings, str × nStrings        a part's table of node and c2s names
 *       count × record:
 *         u8 flags        1: avail; 2: sm is hex (its bytes follow); 4: c2sId is a number (uN)
 *         i8 prio
 *         uN home, uN c2sNode, uN c2s                 indexes into the table (non-empty strings)
 *         uN since
 *         c2sId           uN when flag 4, else str (non-empty)
 *         sm              flag 2: uN n, then n bytes (the id is their 2n lowercase hex digits);
 *                         else str (non-empty)
 *         jid             str (non-empty)
 *       nothing after the last record
 *
 * The golden-bytes tests (test/unit/wire/codec.test.ts) pin this layout.
 */

/** Peer protocol version of this build (HELLO.version). 2: packed SNAPSHOT sessions. */
export const kProtocolVersion = 2;
/** Oldest peer protocol version this build still speaks (HELLO.minVersion). */
export const kMinProtocolVersion = 1;

/** First protocol version whose SNAPSHOT carries packed sessions (a bin) rather than Session arrays. */
export const kPackedSnapshotVersion = 2;

/** Length of HELLO.nonce, bytes. */
export const kNonceBytes = 32;

/**
 * Message type codes: element 0 of every message.
 * Exchanged between nodes: never renumber, never reuse a retired code; append only.
 */
export const MsgType = {
  HELLO: 1,
  AUTH: 2,
  AUTH_OK: 3,
  AUTH_FAIL: 4,
  SNAPSHOT: 5,
  DELTA: 6,
  RESYNC: 7,
  STANZA: 8,
  PING: 9,
  PONG: 10,
  BYE: 11,
} as const;
export type MsgType = (typeof MsgType)[keyof typeof MsgType];

/** Name of a message type, for logs and error messages. */
export const kMsgTypeName: Readonly<Record<MsgType, keyof typeof MsgType>> = Object.freeze(
  Object.fromEntries(Object.entries(MsgType).map(([k, v]) => [v, k])) as Record<MsgType, keyof typeof MsgType>,
);

/**
 * Op codes: element 0 of every DELTA op.
 * Exchanged between nodes: never renumber, never reuse a retired code; append only.
 */
export const OpCode = {
  SESS_ADD: 1,
  SESS_DEL: 2,
  NAME_ADD: 3,
  NAME_DEL: 4,
} as const;
export type OpCode = (typeof OpCode)[keyof typeof OpCode];

export const NAME_KINDS = ['sm', 'domain', 'component'] as const;
export type NameKind = (typeof NAME_KINDS)[number];

/** One client session of the cluster, as announced by the node hosting it. */
export interface SessionEntry {
  /** full JID, node@domain/resource */
  jid: string;
  /** node hosting the session in its sm */
  home: string;
  /** node whose c2s holds the client connection */
  c2sNode: string;
  /** c2s component name on c2sNode */
  c2s: string;
  /** sm session id (jabberd2 `sc:sm`) */
  sm: string;
  /** presence priority, -128..127 (RFC 6121 §4.7.2.3) */
  prio: number;
  /** true while the session has sent available presence */
  avail: boolean;
  /** when the session started, ms since the epoch */
  since: number;
  /** the c2s's id of the client connection (jabberd2 `sc:c2s`) */
  c2sId: string;
}

/** A name bound by a node toward its router: its sm, a domain, a component. */
export interface NameEntry {
  name: string;
  kind: NameKind;
}

export type Op =
  | { op: 'sess+'; s: SessionEntry }
  /** lost: the session died with its sm (no unavailable was sent for it) */
  | { op: 'sess-'; jid: string; lost?: boolean }
  | { op: 'name+'; n: NameEntry }
  | { op: 'name-'; name: string };

/** First message both ends send on a new link. */
export interface HelloMsg {
  type: typeof MsgType.HELLO;
  /** newest protocol version the sender speaks */
  version: number;
  /** oldest protocol version the sender speaks */
  minVersion: number;
  /** sender's node name (its config `id`) */
  node: string;
  /** ms timestamp of the sender's process start, so that a restarted node is recognised */
  incarnation: number;
  /** optional features, by name */
  caps: string[];
  /** 32 fresh random bytes: the challenge the receiver's AUTH must answer */
  nonce: Uint8Array;
}

/** HMAC-SHA256 answer to the receiver's nonce (see handshake.ts). */
export interface AuthMsg {
  type: typeof MsgType.AUTH;
  proof: Uint8Array;
}

export interface AuthOkMsg {
  type: typeof MsgType.AUTH_OK;
}

export interface AuthFailMsg {
  type: typeof MsgType.AUTH_FAIL;
  reason: string;
}

/** The origin node's whole state: replaces everything previously learnt from it. */
export interface SnapshotMsg {
  type: typeof MsgType.SNAPSHOT;
  /** node whose state this is */
  origin: string;
  /** origin's incarnation: a new one discards all state of the previous one */
  incarnation: number;
  /** sequence number of the last change included; the next DELTA has seq + 1 */
  seq: number;
  /** on the wire: packed (version 2) or Session arrays (version 1); decoded: always entries */
  sessions: SessionEntry[];
  names: NameEntry[];
  /**
   * true: more SNAPSHOT parts of the same snapshot follow (a large table does not fit in one
   * frame); the receiver applies the parts together when the last one (more absent) arrives
   */
  more?: boolean;
}

/** Changes to the origin node's state, in order; seq is that of the last op. */
export interface DeltaMsg {
  type: typeof MsgType.DELTA;
  origin: string;
  incarnation: number;
  seq: number;
  ops: Op[];
}

/** Asks for a fresh SNAPSHOT of `origin` (after a gap in seq). */
export interface ResyncMsg {
  type: typeof MsgType.RESYNC;
  origin: string;
}

/** A whole `<route …>` element, as the UTF-8 bytes received: never decoded nor re-encoded. */
export interface StanzaMsg {
  type: typeof MsgType.STANZA;
  bytes: Uint8Array;
}

export interface PingMsg {
  type: typeof MsgType.PING;
  t: number;
}

export interface PongMsg {
  type: typeof MsgType.PONG;
  t: number;
}

/** Orderly close, with the reason for the other end's log. */
export interface ByeMsg {
  type: typeof MsgType.BYE;
  reason: string;
}

export type PeerMessage =
  | HelloMsg
  | AuthMsg
  | AuthOkMsg
  | AuthFailMsg
  | SnapshotMsg
  | DeltaMsg
  | ResyncMsg
  | StanzaMsg
  | PingMsg
  | PongMsg
  | ByeMsg;
