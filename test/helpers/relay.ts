/**
 * A controllable TCP relay for fault injection between two nodes on loopback: `block()` cuts
 * every connection and refuses new ones (a partition), `freeze()` keeps connections open but
 * forwards nothing (a peer that hangs, as under SIGSTOP), `heal()` restores normal relaying.
 */
import { connect, type Server, type Socket } from 'node:net';
import { listenLoopback } from './net.ts';

export type RelayMode = 'pass' | 'block' | 'freeze';

export class Relay {
  private server: Server | null = null;
  private readonly pairs = new Set<[Socket, Socket]>();
  mode: RelayMode = 'pass';
  port = 0;

  constructor(private readonly targetPort: number, private readonly targetHost = '127.0.0.1') {}

  async start(): Promise<number> {
    const { server, port } = await listenLoopback((inbound) => {
      if (this.mode === 'block') return void inbound.destroy();
      const outbound = connect({ port: this.targetPort, host: this.targetHost });
      const pair: [Socket, Socket] = [inbound, outbound];
      this.pairs.add(pair);
      const forward = (from: Socket, to: Socket): void => {
        from.on('data', (d) => {
          if (this.mode === 'pass') to.write(d);
          // frozen: bytes are swallowed, as by a process that does not run
        });
      };
      forward(inbound, outbound);
      forward(outbound, inbound);
      const end = (): void => {
        this.pairs.delete(pair);
        inbound.destroy();
        outbound.destroy();
      };
      for (const s of pair) {
        s.on('error', end);
        s.on('close', end);
      }
    });
    this.port = port;
    this.server = server;
    return this.port;
  }

  /** Cut everything and refuse new connections. */
  block(): void {
    this.mode = 'block';
    for (const [a, b] of this.pairs) {
      a.destroy();
      b.destroy();
    }
    this.pairs.clear();
  }

  /** Keep connections, forward nothing. */
  freeze(): void {
    this.mode = 'freeze';
  }

  heal(): void {
    this.mode = 'pass';
  }

  async stop(): Promise<void> {
    this.block();
    const s = this.server;
    this.server = null;
    if (s) await new Promise<void>((r) => s.close(() => r()));
  }
}
