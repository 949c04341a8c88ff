/**
 * Reader for the jabberd2 wire captures in /work/shared/fixtures/jabberd2 (see its README):
 *
 *     <UTC timestamp> #<conn> C>R|R>C <nbytes> <data>
 *
 * one TCP read per line; in <data> `\\`, `\n`, `\r` are escaped and bytes that are not valid UTF-8
 * appear as `\xNN`; lines starting with `#` are comments. Each read is unescaped to its exact
 * bytes and checked against <nbytes>.
 */
import { existsSync, readFileSync } from 'node:fs';
import { fileURLToPath } from 'node:url';
import { join } from 'node:path';

export type Direction = 'C>R' | 'R>C';

export interface CaptureRead {
  /** 1-based line number in the capture file */
  line: number;
  ts: string;
  conn: number;
  dir: Direction;
  data: Buffer;
}

export interface CaptureConnection {
  conn: number;
  /** reads of each direction, in order */
  reads: Record<Direction, Buffer[]>;
  /** the concatenated bytes of each direction */
  bytes: Record<Direction, Buffer>;
}

/**
 * The captures live in the project's shared folder, which sits beside the repository (CI lays a
 * copy of it next to its clone); JABBERD2_FIXTURES overrides.
 */
export const FIXTURES_DIR = ((): string => {
  const env = process.env['JABBERD2_FIXTURES'];
  if (env) return env;
  const beside = fileURLToPath(new URL('../../../shared/fixtures/jabberd2', import.meta.url));
  if (existsSync(beside)) return beside;
  return '/work/shared/fixtures/jabberd2';
})();

export function fixturePath(name: string): string {
  return name.startsWith('/') ? name : join(FIXTURES_DIR, name);
}

/** Unescapes the <data> field of one line into its exact bytes. */
export function unescapeData(s: string): Buffer {
  const out: Buffer[] = [];
  let start = 0;
  for (let i = 0; i < s.length; i++) {
    if (s.charCodeAt(i) !== 0x5c /* \ */) continue;
    if (i > start) out.push(Buffer.from(s.slice(start, i), 'utf8'));
    const c = s[i + 1];
    if (c === '\\') out.push(Buffer.from([0x5c]));
    else if (c === 'n') out.push(Buffer.from([0x0a]));
    else if (c === 'r') out.push(Buffer.from([0x0d]));
    else if (c === 'x' && /^[0-9a-fA-F]{2}$/.test(s.slice(i + 2, i + 4))) {
      out.push(Buffer.from([Number.parseInt(s.slice(i + 2, i + 4), 16)]));
      i += 2;
    } else throw new Error(`bad escape \\${c ?? ''} at column ${i}`);
    i += 1;
    start = i + 1;
  }
  if (start < s.length) out.push(Buffer.from(s.slice(start), 'utf8'));
  return Buffer.concat(out);
}

const LINE = /^(\S+) #(\d+) (C>R|R>C) (\d+) (.*)$/s;

/** Parses capture text into reads; throws on a malformed line or a byte-count mismatch. */
export function parseCapture(text: string): CaptureRead[] {
  const reads: CaptureRead[] = [];
  const lines = text.split('\n');
  for (let n = 0; n < lines.length; n++) {
    const l = lines[n]!;
    if (l === '' || l.startsWith('#')) continue;
    const m = LINE.exec(l);
    if (m === null) throw new Error(`capture line ${n + 1}: unrecognised: ${l.slice(0, 80)}`);
    const data = unescapeData(m[5]!);
    const want = Number(m[4]);
    if (data.length !== want) throw new Error(`capture line ${n + 1}: ${data.length} bytes, header says ${want}`);
    reads.push({ line: n + 1, ts: m[1]!, conn: Number(m[2]), dir: m[3] as Direction, data });
  }
  return reads;
}

export function loadCapture(name: string): CaptureRead[] {
  return parseCapture(readFileSync(fixturePath(name), 'utf8'));
}

/** Groups reads by connection (in order of first appearance) and direction. */
export function connections(reads: readonly CaptureRead[]): CaptureConnection[] {
  const byConn = new Map<number, Record<Direction, Buffer[]>>();
  for (const r of reads) {
    let c = byConn.get(r.conn);
    if (c === undefined) byConn.set(r.conn, (c = { 'C>R': [], 'R>C': [] }));
    c[r.dir].push(r.data);
  }
  return [...byConn].map(([conn, rd]) => ({
    conn,
    reads: rd,
    bytes: { 'C>R': Buffer.concat(rd['C>R']), 'R>C': Buffer.concat(rd['R>C']) },
  }));
}
