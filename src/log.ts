/**
 * Levelled logger. Lines are `<ISO time> <level> [<area>] <message>` on stderr (or a file).
 * Secrets must never be passed to it.
 */
import { appendFileSync } from 'node:fs';

export const LogLevel = { error: 0, warn: 1, notice: 2, info: 3, debug: 4 } as const;
export type LogLevelName = keyof typeof LogLevel;

export interface Logger {
  error(msg: string): void;
  warn(msg: string): void;
  notice(msg: string): void;
  info(msg: string): void;
  debug(msg: string): void;
  child(area: string): Logger;
  readonly level: LogLevelName;
}

export interface LogSink {
  write(line: string): void;
}

export const stderrSink: LogSink = { write: (line) => process.stderr.write(line + '\n') };

export function fileSink(path: string): LogSink {
  return { write: (line) => appendFileSync(path, line + '\n') };
}

export function createLogger(level: LogLevelName = 'notice', sink: LogSink = stderrSink, area = 'cluster'): Logger {
  const max = LogLevel[level];
  const emit = (l: LogLevelName, msg: string): void => {
    if (LogLevel[l] <= max) sink.write(`${new Date().toISOString()} ${l} [${area}] ${msg}`);
  };
  return {
    level,
    error: (m) => emit('error', m),
    warn: (m) => emit('warn', m),
    notice: (m) => emit('notice', m),
    info: (m) => emit('info', m),
    debug: (m) => emit('debug', m),
    child: (a) => createLogger(level, sink, a),
  };
}

/** A logger that records lines in memory; for tests. */
export function memoryLogger(level: LogLevelName = 'debug'): Logger & { lines: string[] } {
  const lines: string[] = [];
  const l = createLogger(level, { write: (line) => lines.push(line) });
  return Object.assign(l, { lines });
}
