/**
 * (main) Which local users currently hold available presence from which remote sessions: the
 * presence that reached our sm from other nodes. When a node dies, its sm can no longer send
 * the unavailable presence its users' contacts are owed; each node then sends exactly one per
 * (lost session, local recipient) pair it recorded, so every contact resource hears of every
 * lost session once, and no node duplicates another's work.
 */
export class PresenceLedger {
  /** remote full JID → recipients (as addressed: bare or full JIDs) holding its available presence */
  private readonly held = new Map<string, Set<string>>();

  /** An available (true) or unavailable (false) presence from `from` reached `to` here. */
  record(from: string, to: string, available: boolean): void {
    let s = this.held.get(from);
    if (available) {
      if (!s) this.held.set(from, (s = new Set()));
      s.add(to);
    } else if (s) {
      s.delete(to);
      if (s.size === 0) this.held.delete(from);
    }
  }

  /** The session ended normally: its sm tells the contacts itself. */
  forget(from: string): void {
    this.held.delete(from);
  }

  /** Sessions lost with their node: the (from, to) pairs owed an unavailable; forgotten after. */
  lost(fulls: readonly string[]): [from: string, to: string][] {
    const out: [string, string][] = [];
    for (const f of fulls) {
      const s = this.held.get(f);
      if (!s) continue;
      for (const to of s) out.push([f, to]);
      this.held.delete(f);
    }
    return out;
  }

  get size(): number {
    return this.held.size;
  }
}
