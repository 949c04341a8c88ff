/**
 * jabberd2 component protocol (router <-> component): prebuilt stream texts and element
 * builders. Pure. See docs/protocol/component.md and ../shared/docs/jabberd2-protocol.md.
 */
import { randomBytes } from 'node:crypto';
import { NS_COMPONENT, NS_SASL, NS_STREAM, NS_STREAMS_ERR } from './ns.ts';
import { escapeAttr, escapeText } from '../xml/node.ts';

/** What every jabberd2 component sends to open its stream: no default namespace, no `to`. */
export const CLIENT_STREAM_HEADER = `<?xml version='1.0'?><stream:stream xmlns:stream='${NS_STREAM}' version='1.0'>`;
export const STREAM_FOOTER = '</stream:stream>';

export function newStreamId(): string {
  // jabberd2 uses 40 random [a-z0-9] characters
  const alphabet = 'abcdefghijklmnopqrstuvwxyz0123456789';
  const bytes = randomBytes(40);
  let s = '';
  for (const b of bytes) s += alphabet[b % 36];
  return s;
}

/** The router's answer to a component's stream header (before or after SASL). */
export function serverStreamHeader(id: string, from?: string): string {
  const f = from !== undefined ? ` from='${escapeAttr(from)}'` : '';
  return `<?xml version='1.0'?><stream:stream xmlns:stream='${NS_STREAM}' version='1.0'${f} id='${id}'>`;
}

export const FEATURES_DIGEST_MD5 =
  `<stream:features xmlns:stream='${NS_STREAM}'><mechanisms xmlns='${NS_SASL}'><mechanism>DIGEST-MD5</mechanism></mechanisms></stream:features>`;
export const FEATURES_EMPTY = `<stream:features xmlns:stream='${NS_STREAM}'></stream:features>`;

export function saslAuth(mechanism: string): string {
  return `<auth xmlns='${NS_SASL}' mechanism='${escapeAttr(mechanism)}'></auth>`;
}
export function saslElement(name: 'challenge' | 'response' | 'success', base64: string): string {
  return `<${name} xmlns='${NS_SASL}'>${base64}</${name}>`;
}
export type SaslFailureCondition = 'not-authorized' | 'invalid-mechanism' | 'aborted' | 'malformed-request' | 'temporary-auth-failure';
export function saslFailure(cond: SaslFailureCondition, textMsg?: string): string {
  const t = textMsg !== undefined ? `<text>${escapeText(textMsg)}</text>` : '';
  return `<failure xmlns='${NS_SASL}'><${cond}/>${t}</failure>`;
}

export interface BindFlags {
  multi?: string | undefined;
  default?: boolean | undefined;
  log?: boolean | undefined;
}

export function bindElement(name: string, flags: BindFlags = {}): string {
  const multi = flags.multi !== undefined ? ` multi='${escapeAttr(flags.multi)}'` : '';
  const kids = (flags.default ? '<default/>' : '') + (flags.log ? '<log/>' : '');
  return `<bind xmlns='${NS_COMPONENT}' name='${escapeAttr(name)}'${multi}>${kids}</bind>`;
}

/** The router's reply to a bind: the request echoed without `name`, plus `error` on failure. */
export function bindReply(flags: BindFlags, error?: string): string {
  const multi = flags.multi !== undefined ? ` multi='${escapeAttr(flags.multi)}'` : '';
  const err = error !== undefined ? ` error='${error}'` : '';
  const kids = (flags.default ? `<default/>` : '') + (flags.log ? `<log/>` : '');
  return `<bind xmlns='${NS_COMPONENT}'${multi}${err}>${kids}</bind>`;
}

export function unbindElement(name: string): string {
  return `<unbind xmlns='${NS_COMPONENT}' name='${escapeAttr(name)}'></unbind>`;
}

export function unbindReply(error?: string): string {
  const err = error !== undefined ? ` error='${error}'` : '';
  return `<unbind xmlns='${NS_COMPONENT}'${err}></unbind>`;
}

/** A router advertisement: a name became available or unavailable. */
export function advertisement(name: string, available: boolean): string {
  const t = available ? '' : ` type='unavailable'`;
  return `<presence xmlns='${NS_COMPONENT}' from='${escapeAttr(name)}'${t}></presence>`;
}

export const THROTTLE = `<throttle xmlns='${NS_COMPONENT}'></throttle>`;

export type StreamErrorName =
  | 'not-well-formed' | 'restricted-xml' | 'policy-violation' | 'invalid-namespace' | 'bad-format'
  | 'not-authorized' | 'connection-timeout' | 'system-shutdown' | 'internal-server-error' | 'host-gone'
  | 'resource-constraint' | 'invalid-xml' | 'conflict' | 'unsupported-stanza-type';

export function streamError(cond: StreamErrorName, textMsg?: string): string {
  const t = textMsg !== undefined ? `<text xmlns='${NS_STREAMS_ERR}'>${escapeText(textMsg)}</text>` : '';
  return `<stream:error xmlns:stream='${NS_STREAM}'><${cond} xmlns='${NS_STREAMS_ERR}'/>${t}</stream:error>`;
}

/** Route error codes the router uses, and what they mean (for logs). */
export const ROUTE_ERRORS: Readonly<Record<string, string>> = {
  '400': 'bad request (missing or invalid name/address)',
  '401': "not authorized (route 'from' is not a name this component bound)",
  '403': 'forbidden (ACL refuses this bind)',
  '404': 'not found (no such name bound)',
  '409': 'conflict (name already bound, an alias, or a default route exists)',
};
