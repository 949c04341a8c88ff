/**
 * (main) Backpressure across links. When a destination cannot keep up (its socket holds more
 * than the high-water mark of unsent bytes), every source of traffic is paused: the jabberd2
 * router is sent `<throttle/>` (it then queues for us), peer links and sm links stop being read
 * (TCP pushes back). When every congested destination has drained, the sources resume.
 *
 * A stall must not last: a destination still congested after `stallMs` is closed as a slow
 * consumer (with a logged reason) and everything resumes, so one slow link cannot stop the
 * others for long. A destination whose queue passes the hard cap (`limits/queue_bytes`) is
 * closed at once by its link.
 */
import type { Logger } from '../log.ts';

export interface FlowSource {
  pause(): void;
  resume(): void;
}

interface Congestion {
  since: number;
  timer: NodeJS.Timeout;
}

export class FlowControl {
  private readonly sources = new Set<FlowSource>();
  private readonly congested = new Map<object, Congestion>();
  pauses = 0;
  stallsClosed = 0;

  constructor(readonly highWater: number, readonly stallMs: number, private readonly log: Logger) {}

  get paused(): boolean {
    return this.congested.size > 0;
  }

  addSource(s: FlowSource): void {
    this.sources.add(s);
    if (this.paused) s.pause();
  }

  removeSource(s: FlowSource): void {
    this.sources.delete(s);
  }

  /** A destination became congested (on) or drained (off); `close` ends it if the stall lasts. */
  congestion(dest: object, on: boolean, label: string, close: () => void): void {
    if (on) {
      if (this.congested.has(dest)) return;
      const wasPaused = this.paused;
      const timer = setTimeout(() => {
        if (!this.congested.has(dest)) return;
        this.stallsClosed++;
        this.log.warn(`${label} has not taken its queued data for ${this.stallMs} ms: closing it as a slow consumer`);
        this.release(dest);
        close();
      }, this.stallMs);
      timer.unref();
      this.congested.set(dest, { since: Date.now(), timer });
      if (!wasPaused) {
        this.pauses++;
        this.log.info(`${label} cannot keep up: pausing the sources (router throttled, peers and sm links not read)`);
        for (const s of this.sources) s.pause();
      }
    } else {
      const c = this.congested.get(dest);
      if (!c) return;
      this.log.info(`${label} drained after ${Date.now() - c.since} ms`);
      this.release(dest);
    }
  }

  /** The destination is gone (closed): it no longer holds the sources. */
  release(dest: object): void {
    const c = this.congested.get(dest);
    if (!c) return;
    clearTimeout(c.timer);
    this.congested.delete(dest);
    if (!this.paused) for (const s of this.sources) s.resume();
  }
}
