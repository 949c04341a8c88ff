/**
 * (main) The cluster routing table: every session in the cluster (full JID → home node, c2s
 * node, sm session id, priority, availability), a bare-JID index giving each user's home node,
 * and the names (sm ids, clustered domains, router components) each node serves.
 *
 * Each node writes only its own entries (sessions hosted by its sm, names it serves) and
 * replicates them: a snapshot when a peer link comes up, deltas after, with per-origin
 * sequence numbers so that a gap is detected (the receiver asks for a resync). The bare-JID →
 * home index is mirrored in a SharedArrayBuffer table (main is its only writer) that worker
 * threads read.
 */
import { SharedTable } from '../routing/shared-table.ts';
import type { NameEntry, Op, SessionEntry } from '../wire/messages.ts';

export type { NameEntry, Op, SessionEntry };

interface Origin {
  incarnation: number;
  seq: number;
  sessions: Map<string, SessionEntry>;
  names: Map<string, NameEntry>;
}

export interface TableEvents {
  /** a remote node's name appeared or went away (to bind or unbind it upstream) */
  onRemoteName(origin: string, n: NameEntry, present: boolean): void;
  /** a peer announced a session hosted by another node: refused (a node writes only its own entries) */
  onForeignEntry(origin: string, s: SessionEntry): void;
  /** the shared index is full: the user's home cannot be recorded (routing falls back to the local sm) */
  onIndexFull(bare: string, err: Error): void;
}

function sessionKey(s: SessionEntry): string {
  return `${s.home}\u0000${s.jid}`;
}

export function bareJid(full: string): string {
  const i = full.indexOf('/');
  return i < 0 ? full : full.slice(0, i);
}

export class ClusterTable {
  private readonly origins = new Map<string, Origin>();
  /**
   * bare JID → (home, full JID) → entry, over all origins. Keyed by home too: after a healed
   * split the same full JID can exist on two nodes until it is resolved.
   */
  private readonly byBare = new Map<string, Map<string, SessionEntry>>();
  /** own sessions by sm session id (sc:sm) */
  private readonly bySm = new Map<string, SessionEntry>();
  /** node name → index stored in the shared table (stable for the life of the process) */
  private readonly nodeIndex = new Map<string, number>();
  readonly nodes: string[] = [];
  readonly shared: SharedTable;
  private pendingOps: Op[] = [];

  /** capacityPow2: log2 of the shared index's slots (2^21 = 32 MiB, up to ~1.57 M users with sessions) */
  constructor(readonly self: string, readonly incarnation: number, private readonly events: TableEvents, capacityPow2 = 21) {
    this.shared = SharedTable.create(capacityPow2);
    this.origins.set(self, { incarnation, seq: 0, sessions: new Map(), names: new Map() });
    this.indexOf(self);
  }

  private indexOf(node: string): number {
    let i = this.nodeIndex.get(node);
    if (i === undefined) {
      i = this.nodes.length;
      this.nodes.push(node);
      this.nodeIndex.set(node, i);
    }
    return i;
  }

  private get own(): Origin {
    return this.origins.get(this.self)!;
  }

  // ---- queries ---------------------------------------------------------------------------

  /** The node hosting the user's sessions (its home sm), or undefined if none anywhere. */
  homeOf(bare: string): string | undefined {
    const v = this.shared.get(bare);
    return v === undefined ? undefined : this.nodes[v];
  }

  sessionsOf(bare: string): SessionEntry[] {
    return [...(this.byBare.get(bare)?.values() ?? [])];
  }

  session(full: string): SessionEntry | undefined {
    for (const s of this.byBare.get(bareJid(full))?.values() ?? []) if (s.jid === full) return s;
    return undefined;
  }

  ownSessionBySm(sm: string): SessionEntry | undefined {
    return this.bySm.get(sm);
  }

  /** Own sessions whose client connection is on `node`'s c2s. */
  ownSessionsVia(node: string): SessionEntry[] {
    return [...this.own.sessions.values()].filter((s) => s.c2sNode === node);
  }

  namesOf(origin: string): NameEntry[] {
    return [...(this.origins.get(origin)?.names.values() ?? [])];
  }

  /** Which remote node serves this name (component or sm id), if any. */
  remoteNameOwner(name: string): string | undefined {
    for (const [o, org] of this.origins) if (o !== this.self && org.names.has(name)) return o;
    return undefined;
  }

  knownOrigins(): string[] {
    return [...this.origins.keys()];
  }

  sessionCount(origin?: string): number {
    if (origin !== undefined) return this.origins.get(origin)?.sessions.size ?? 0;
    let n = 0;
    for (const o of this.origins.values()) n += o.sessions.size;
    return n;
  }

  allSessions(): SessionEntry[] {
    const out: SessionEntry[] = [];
    for (const o of this.origins.values()) out.push(...o.sessions.values());
    return out;
  }

  // ---- own changes (they become deltas) ----------------------------------------------------

  addOwnSession(s: SessionEntry): void {
    const old = this.own.sessions.get(s.jid);
    if (old) this.bySm.delete(old.sm);
    this.own.sessions.set(s.jid, s);
    this.bySm.set(s.sm, s);
    this.indexSession(s);
    this.pendingOps.push({ op: 'sess+', s });
  }

  /** lost: the session died with the sm, which told nobody */
  removeOwnSession(jid: string, lost = false): SessionEntry | undefined {
    const s = this.own.sessions.get(jid);
    if (!s) return undefined;
    this.own.sessions.delete(jid);
    this.bySm.delete(s.sm);
    this.unindexSession(s);
    this.pendingOps.push(lost ? { op: 'sess-', jid, lost } : { op: 'sess-', jid });
    return s;
  }

  /** Drop every own session (the local sm went away). */
  clearOwnSessions(): SessionEntry[] {
    const all = [...this.own.sessions.values()];
    for (const s of all) this.removeOwnSession(s.jid, true);
    return all;
  }

  addOwnName(n: NameEntry): void {
    const old = this.own.names.get(n.name);
    if (old && old.kind === n.kind) return;
    this.own.names.set(n.name, n);
    this.pendingOps.push({ op: 'name+', n });
  }

  removeOwnName(name: string): void {
    if (!this.own.names.delete(name)) return;
    this.pendingOps.push({ op: 'name-', name });
  }

  ownNames(): NameEntry[] {
    return [...this.own.names.values()];
  }

  /** Take the ops accumulated since the last call, stamped with the next sequence number. */
  takeDelta(): { seq: number; ops: Op[] } | null {
    if (this.pendingOps.length === 0) return null;
    const ops = this.pendingOps;
    this.pendingOps = [];
    this.own.seq++;
    return { seq: this.own.seq, ops };
  }

  snapshot(): { origin: string; incarnation: number; seq: number; sessions: SessionEntry[]; names: NameEntry[] } {
    const o = this.own;
    return { origin: this.self, incarnation: o.incarnation, seq: o.seq, sessions: [...o.sessions.values()], names: [...o.names.values()] };
  }

  // ---- remote changes --------------------------------------------------------------------

  /** Replace everything known of `origin` with a snapshot. */
  applySnapshot(origin: string, incarnation: number, seq: number, sessions: SessionEntry[], names: NameEntry[]): void {
    if (origin === this.self) return;
    const old = this.origins.get(origin);
    const fresh: Origin = { incarnation, seq, sessions: new Map(), names: new Map() };
    if (old) for (const s of old.sessions.values()) this.unindexSession(s);
    this.origins.set(origin, fresh);
    this.indexOf(origin);
    for (const s of sessions) {
      if (s.home !== origin) {
        this.events.onForeignEntry(origin, s);
        continue;
      }
      fresh.sessions.set(s.jid, s);
      this.indexSession(s);
    }
    const oldNames = old?.names ?? new Map<string, NameEntry>();
    for (const n of names) fresh.names.set(n.name, n);
    for (const [k, n] of oldNames) if (!fresh.names.has(k)) this.events.onRemoteName(origin, n, false);
    for (const [k, n] of fresh.names) {
      const was = oldNames.get(k);
      if (was && was.kind !== n.kind) this.events.onRemoteName(origin, was, false); // the old kind goes first
      if (!was || was.kind !== n.kind) this.events.onRemoteName(origin, n, true);
    }
  }

  /**
   * Apply a delta. Returns false when it cannot be applied (unknown origin, other
   * incarnation, or a sequence gap): the caller then asks the origin for a snapshot.
   */
  applyDelta(origin: string, incarnation: number, seq: number, ops: Op[]): boolean {
    const o = this.origins.get(origin);
    if (!o || o.incarnation !== incarnation) return false;
    if (seq <= o.seq) return true; // already seen (a snapshot overtook it)
    if (seq !== o.seq + 1) return false;
    o.seq = seq;
    for (const op of ops) {
      switch (op.op) {
        case 'sess+': {
          if (op.s.home !== origin) {
            this.events.onForeignEntry(origin, op.s);
            break;
          }
          const old = o.sessions.get(op.s.jid);
          if (old) this.unindexSession(old);
          o.sessions.set(op.s.jid, op.s);
          this.indexSession(op.s);
          break;
        }
        case 'sess-': {
          const old = o.sessions.get(op.jid);
          if (old) {
            o.sessions.delete(op.jid);
            this.unindexSession(old);
          }
          break;
        }
        case 'name+': {
          const was = o.names.get(op.n.name);
          o.names.set(op.n.name, op.n);
          if (was && was.kind !== op.n.kind) this.events.onRemoteName(origin, was, false); // the old kind goes first
          if (!was || was.kind !== op.n.kind) this.events.onRemoteName(origin, op.n, true);
          break;
        }
        case 'name-': {
          const was = o.names.get(op.name);
          if (was) {
            o.names.delete(op.name);
            this.events.onRemoteName(origin, was, false);
          }
          break;
        }
      }
    }
    return true;
  }

  /** Forget everything of a node (its link is gone for good, or it said goodbye). */
  dropOrigin(origin: string): SessionEntry[] {
    if (origin === this.self) return [];
    const o = this.origins.get(origin);
    if (!o) return [];
    this.origins.delete(origin);
    const lost = [...o.sessions.values()];
    for (const s of lost) this.unindexSession(s);
    for (const n of o.names.values()) this.events.onRemoteName(origin, n, false);
    return lost;
  }

  originState(origin: string): { incarnation: number; seq: number } | undefined {
    const o = this.origins.get(origin);
    return o ? { incarnation: o.incarnation, seq: o.seq } : undefined;
  }

  // ---- indexes ---------------------------------------------------------------------------

  private indexSession(s: SessionEntry): void {
    const bare = bareJid(s.jid);
    let m = this.byBare.get(bare);
    if (!m) this.byBare.set(bare, (m = new Map()));
    m.set(sessionKey(s), s);
    this.refreshHome(bare, m);
  }

  private unindexSession(s: SessionEntry): void {
    const bare = bareJid(s.jid);
    const m = this.byBare.get(bare);
    if (!m || m.get(sessionKey(s)) !== s) return;
    m.delete(sessionKey(s));
    if (m.size === 0) {
      this.byBare.delete(bare);
      this.shared.delete(bare);
    } else this.refreshHome(bare, m);
  }

  /** The home is the node of the user's oldest session (deterministic on every node). */
  private refreshHome(bare: string, m: Map<string, SessionEntry>): void {
    let best: SessionEntry | undefined;
    for (const s of m.values()) {
      if (!best || s.since < best.since || (s.since === best.since && s.home < best.home)) best = s;
    }
    if (!best) return;
    try {
      this.shared.set(bare, this.indexOf(best.home));
    } catch (err) {
      this.events.onIndexFull(bare, err as Error);
    }
  }
}
