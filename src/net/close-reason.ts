/** Why a link was closed. Every close is logged once with one of these. */
export const CloseReason = {
  PeerClosed: 'peer-closed',
  SocketError: 'socket-error',
  StreamError: 'stream-error',
  ParseError: 'parse-error',
  AuthFailed: 'auth-failed',
  AuthTimeout: 'auth-timeout',
  SlowConsumer: 'slow-consumer',
  Shutdown: 'shutdown',
  RouterDown: 'router-down',
  TooManyConnections: 'too-many-connections',
  ProtocolError: 'protocol-error',
  Replaced: 'replaced',
  /** the worker thread framing the link's input failed (src/workers/pool.ts) */
  WorkerCrashed: 'worker-crashed',
} as const;
export type CloseReason = (typeof CloseReason)[keyof typeof CloseReason];
