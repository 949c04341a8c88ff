/** Loopback servers for scripted peers in tests. */
import { createServer, type Server, type Socket } from 'node:net';

/** A TCP server on 127.0.0.1 and a free port. */
export function listenLoopback(onConnection: (socket: Socket) => void): Promise<{ server: Server; port: number }> {
  return new Promise((resolve, reject) => {
    const server = createServer(onConnection);
    server.once('error', reject);
    server.listen(0, '127.0.0.1', () => {
      server.off('error', reject);
      const a = server.address();
      resolve({ server, port: typeof a === 'object' && a ? a.port : 0 });
    });
  });
}
