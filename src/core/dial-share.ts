/**
 * What the TLS connections of many devices to one hub share (one node acting as 10,000 devices dials 10,000 times):
 * - one SecureContext per trust setting: building one per connection (parsing the CA into a new OpenSSL context) was
 *   15 % of a fleet's connect CPU and a context's memory per device;
 * - the hub's last TLS session, offered by the next connection: a hub that resumes it (the local hub) skips the
 *   certificate, its signature and its check. IoT Hub does not resume sessions (Azure/azure-c-shared-utility#64,
 *   nrfconnect/sdk-nrf#3962) and answers with a full handshake, as if none were offered;
 * - the host's address, looked up once for connections that dial within a few seconds of each other.
 * Never for a connection with a client certificate: a resumed session carries the certificate it was made with, and
 * that certificate is a device's identity.
 */
import * as dns from 'node:dns';
import type { LookupFunction } from 'node:net';
import * as tls from 'node:tls';
import type { ResolvedEndpoint } from './endpoint';

/** A looked-up address serves the connections that dial within this long. */
const LOOKUP_REUSE_MS = 5000;
/** Hubs (trust settings, hosts) remembered at once: a few in practice; the oldest goes first. */
const MAX_ENTRIES = 32;

export interface DialShare {
  secureContext: tls.SecureContext;
  /** The session to offer, if the hub gave one. */
  session: Buffer | undefined;
  lookup: LookupFunction;
  /** Keeps the sessions this socket is given for the next connection; drops an offered one that did not work. */
  watch(socket: tls.TLSSocket): void;
}

const contexts = new Map<string, tls.SecureContext>();
const shares = new Map<string, DialShare>();

function remember<V>(map: Map<string, V>, key: string, make: () => V): V {
  let v = map.get(key);
  if (v === undefined) {
    if (map.size >= MAX_ENTRIES) map.delete(map.keys().next().value as string);
    v = make();
    map.set(key, v);
  }
  return v;
}

/** dns.lookup, with concurrent lookups of one host made once and the answer reused for LOOKUP_REUSE_MS. */
function sharedLookup(): LookupFunction {
  let answer: { key: string; at: number; args: unknown[] } | undefined;
  const waiting = new Map<string, Array<(...args: unknown[]) => void>>();
  return ((hostname: string, options: dns.LookupOptions, callback: (...args: unknown[]) => void) => {
    const key = `${hostname} ${options.family ?? 0} ${options.all === true} ${options.hints ?? 0}`;
    if (answer && answer.key === key && Date.now() - answer.at < LOOKUP_REUSE_MS) {
      const args = answer.args;
      process.nextTick(() => callback(null, ...args));
      return;
    }
    const line = waiting.get(key);
    if (line) {
      line.push(callback);
      return;
    }
    waiting.set(key, [callback]);
    dns.lookup(hostname, options, (err: NodeJS.ErrnoException | null, ...args: unknown[]) => {
      const callbacks = waiting.get(key) ?? [];
      waiting.delete(key);
      // A failure is not kept: the next connection asks again.
      answer = err ? undefined : { key, at: Date.now(), args };
      for (const cb of callbacks) cb(err, ...args);
    });
  }) as LookupFunction;
}

/** The share for connections to e without a client certificate. */
export function dialShare(e: ResolvedEndpoint): DialShare {
  const ca = e.ca ?? '';
  const key = `${e.host}:${e.port} ${e.servername} ${e.rejectUnauthorized} ${ca}`;
  return remember(shares, key, () => {
    const share: DialShare = {
      secureContext: remember(contexts, ca, () => tls.createSecureContext(e.ca ? { ca: e.ca } : {})),
      session: undefined,
      lookup: sharedLookup(),
      watch(socket) {
        const offered = share.session;
        socket.on('session', (s: Buffer) => {
          share.session = s;
        });
        // A connection that failed before its handshake ended may have failed on the session it offered.
        socket.once('error', () => {
          if (!socket.authorized && share.session === offered) share.session = undefined;
        });
      },
    };
    return share;
  });
}
