/**
 * Choosing one of several components bound to one name, exactly as jabberd2's router does
 * (router/router.c:497-560): the key is the inner element's `to` (or `target`) for multi='to'
 * routes; without a node part the choice is random; otherwise SHA-1 of the bare JID read as
 * five native-endian uint32 words w0..w4 gives ((w1 ^ w2 ^ w3) >> 2) % n (an off-by-one in
 * jabberd2's XOR loop drops w0 and w4; verified live on x86-64).
 */
import { createHash } from 'node:crypto';
import { parseJid } from '../protocol/jid.ts';

export function jabberd2HashIndex(bareJid: string, n: number): number {
  const h = createHash('sha1').update(bareJid, 'utf8').digest();
  const w1 = h.readUInt32LE(4);
  const w2 = h.readUInt32LE(8);
  const w3 = h.readUInt32LE(12);
  return ((w1 ^ w2 ^ w3) >>> 2) % n;
}

/** Index of the component that gets a route whose routing key is `key` among `n` binders. */
export function selectIndex(key: string | undefined, n: number, random: () => number = Math.random): number {
  if (n <= 1) return 0;
  const j = parseJid(key);
  if (j === null || j.node === '') return Math.floor(random() * n);
  return jabberd2HashIndex(`${j.node}@${j.domain}`, n);
}
