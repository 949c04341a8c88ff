/**
 * Bounded condition waits for tests (never a bare sleep): poll a predicate until it holds, or
 * fail naming what was awaited, with optional diagnostics. And a cursor over a growing log file,
 * so a test can wait for a line written after a given point.
 */
import { readFileSync } from 'node:fs';

/** Resolves once cond() is true (checked every intervalMs); rejects after timeoutMs naming `what`. */
export async function waitUntil(
  cond: () => boolean | Promise<boolean>,
  what: string,
  timeoutMs = 10000,
  diag?: () => string,
  intervalMs = 20,
): Promise<void> {
  const deadline = Date.now() + timeoutMs;
  for (;;) {
    if (await cond()) return;
    if (Date.now() >= deadline) {
      throw new Error(`timed out after ${timeoutMs} ms waiting for ${what}${diag ? `\n${diag()}` : ''}`);
    }
    await new Promise((r) => setTimeout(r, intervalMs));
  }
}

/** A log file read from a mark onwards. */
export class LogCursor {
  private offset: number;

  constructor(private readonly read: () => string) {
    this.offset = read().length;
  }

  static file(path: string): LogCursor {
    return new LogCursor(() => {
      try {
        return readFileSync(path, 'utf8');
      } catch {
        return '';
      }
    });
  }

  /** Everything written since the mark. */
  text(): string {
    return this.read().slice(this.offset);
  }

  /** Move the mark to the end of the file. */
  mark(): void {
    this.offset = this.read().length;
  }

  /** Number of lines since the mark that contain `s`. */
  count(s: string): number {
    return this.text().split('\n').filter((l) => l.includes(s)).length;
  }

  has(s: string): boolean {
    return this.text().includes(s);
  }

  /** Waits until a line containing `s` has been written since the mark. */
  waitFor(s: string, what: string, timeoutMs = 10000): Promise<void> {
    return waitUntil(() => this.has(s), `${what} (log line containing '${s}')`, timeoutMs, () => `log since mark:\n${this.text().split('\n').slice(-30).join('\n')}`);
  }
}

/**
 * Waits that are re-checked on every event of a scripted peer (no polling): the peer calls
 * `wake()` whenever something arrives, `until()` resolves as soon as its condition holds.
 */
export class EventWaits {
  private waiters: (() => void)[] = [];

  constructor(private readonly diag: () => string) {}

  wake(): void {
    const w = this.waiters;
    this.waiters = [];
    for (const f of w) f();
  }

  until(cond: () => boolean, what: string, timeoutMs = 5000): Promise<void> {
    return new Promise((resolve, reject) => {
      const timer = setTimeout(() => reject(new Error(`timed out after ${timeoutMs} ms waiting for ${what}; ${this.diag()}`)), timeoutMs);
      const check = (): void => {
        if (cond()) {
          clearTimeout(timer);
          resolve();
        } else this.waiters.push(check);
      };
      check();
    });
  }
}
