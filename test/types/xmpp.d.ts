// Minimal type declarations for the parts of xmpp.js (@xmpp/client 0.14, @xmpp/xml 0.14) the
// tests use. The packages ship no types.

declare module '@xmpp/xml' {
  export type XmlChild = Element | string | number | null | undefined | false | XmlChild[];
  export type XmlAttrs = Record<string, string | number | undefined>;

  /** ltx Element */
  export class Element {
    constructor(name: string, attrs?: XmlAttrs);
    name: string;
    attrs: Record<string, string | undefined>;
    children: Array<Element | string>;
    parent: Element | null;
    is(name: string, xmlns?: string): boolean;
    getName(): string;
    getNS(): string | undefined;
    getChild(name: string, xmlns?: string): Element | undefined;
    getChildren(name: string, xmlns?: string): Element[];
    getChildElements(): Element[];
    getChildText(name: string, xmlns?: string): string | null;
    getText(): string;
    text(): string;
    attr(name: string): string | undefined;
    append(...nodes: Array<Element | string>): Element;
    toString(): string;
  }

  export interface XmlFunction {
    (name: string, attrs?: XmlAttrs | null, ...children: XmlChild[]): Element;
    Element: typeof Element;
  }

  const xml: XmlFunction;
  export default xml;
  export { xml };
}

declare module '@xmpp/client' {
  import type { Element, XmlFunction } from '@xmpp/xml';
  import type { EventEmitter } from 'node:events';

  export const xml: XmlFunction;

  export interface XmppJid {
    local: string;
    domain: string;
    resource: string;
    bare(): XmppJid;
    toString(): string;
  }
  export function jid(...args: string[]): XmppJid;

  export type SaslAuthenticate = (credentials: { username: string; password: string }, mechanism: string, userAgent?: Element) => Promise<void>;
  export type CredentialsFunction = (authenticate: SaslAuthenticate, mechanisms: string[], fast?: unknown, entity?: unknown) => Promise<void>;

  export interface ClientOptions {
    service?: string;
    domain?: string;
    resource?: string | (() => Promise<string> | string);
    username?: string;
    password?: string;
    credentials?: CredentialsFunction | { username?: string; password?: string };
    lang?: string;
    timeout?: number;
  }

  export interface IqCaller {
    request(stanza: Element, timeoutMs?: number): Promise<Element>;
    get(child: Element, to?: string, timeoutMs?: number): Promise<Element>;
    set(child: Element, to?: string, timeoutMs?: number): Promise<Element>;
  }

  export interface IqCalleeContext {
    stanza: Element;
    element: Element;
    from: XmppJid | null;
    to: XmppJid | null;
  }
  export type IqCalleeHandler = (ctx: IqCalleeContext, next: () => Promise<unknown>) => Element | object | boolean | undefined | Promise<Element | object | boolean | undefined>;

  export interface IqCallee {
    get(ns: string, name: string, handler: IqCalleeHandler): void;
    set(ns: string, name: string, handler: IqCalleeHandler): void;
  }

  export interface Client extends EventEmitter {
    jid: XmppJid | null;
    status: string;
    timeout: number;
    socket: { destroy(): void } | null;
    options: ClientOptions;
    iqCaller: IqCaller;
    iqCallee: IqCallee;
    reconnect: { stop(): void; start(): void };
    start(): Promise<XmppJid>;
    stop(): Promise<unknown>;
    disconnect(): Promise<unknown>;
    send(element: Element): Promise<void>;
    write(raw: string): Promise<void>;
  }

  export function client(options?: ClientOptions): Client;
}

declare module '@xmpp/component' {
  import type { Element } from '@xmpp/xml';
  interface Component {
    on(event: 'stanza', cb: (stanza: Element) => void): void;
    on(event: 'error' | 'online' | 'offline', cb: (arg: unknown) => void): void;
    start(): Promise<unknown>;
    stop(): Promise<unknown>;
    send(el: Element): Promise<void>;
    headerElement(): { attrs: Record<string, string | undefined> };
  }
  export function component(opts: { service: string; domain: string; password: string }): Component;
}
