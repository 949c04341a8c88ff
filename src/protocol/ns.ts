/** Namespace URIs of the protocols we speak. Match on these, never on prefixes. */
export const NS_STREAM = 'http://etherx.jabber.org/streams';
export const NS_COMPONENT = 'http://jabberd.jabberstudio.org/ns/component/1.0';
export const NS_SESSION = 'http://jabberd.jabberstudio.org/ns/session/1.0';
export const NS_SASL = 'urn:ietf:params:xml:ns:xmpp-sasl';
export const NS_STREAMS_ERR = 'urn:ietf:params:xml:ns:xmpp-streams';
export const NS_STANZAS_ERR = 'urn:ietf:params:xml:ns:xmpp-stanzas';
export const NS_CLIENT = 'jabber:client';
export const NS_COMPONENT_ACCEPT = 'jabber:component:accept';
