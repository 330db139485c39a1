/**
 * The local hub's MQTT 3.1.1 device endpoint, on aedes. The hub owns the C2D queues: it writes the
 * QoS 1 PUBLISH packets itself and treats each PUBACK as a completion, so aedes never holds a copy.
 */
import * as net from 'node:net';
import * as tls from 'node:tls';
import { Duplex } from 'node:stream';
import { c2dSubscription, c2dTopic } from '../core/property-bag';
import { HubContext } from './context';
import { ServerSockets } from './server-sockets';
import { QueuedMessage } from './c2d-queues';
import { peerChain } from './x509-auth';

/** The slice of aedes' client this endpoint uses. */
interface AedesClient {
  id: string;
  conn: Duplex;
  close(cb?: () => void): void;
}

interface Session {
  deviceId: string;
  client: AedesClient;
  nextId: number;
  inflight: Map<number, string>;
  detach?: () => void;
  release: () => void;
  /** When the CONNECT token expires, in seconds; Infinity for X.509. */
  expiresAt: number;
  waitingDrain: boolean;
  corked: boolean;
}

/** PUBLISH, not retained, written by hand: QoS 1 with a message id (no copy stays in the broker), else QoS 0. */
export function publishPacket(topic: string, messageId: number | undefined, payload: Buffer): Buffer {
  const t = Buffer.from(topic, 'utf8');
  const idLength = messageId === undefined ? 0 : 2;
  const remaining = 2 + t.length + idLength + payload.length;
  const len: number[] = [];
  let x = remaining;
  do {
    let b = x % 128;
    x = Math.floor(x / 128);
    if (x > 0) b |= 0x80;
    len.push(b);
  } while (x > 0);
  const head = Buffer.alloc(1 + len.length + 2 + t.length + idLength);
  let o = 0;
  head[o++] = messageId === undefined ? 0x30 : 0x32;
  for (const b of len) head[o++] = b;
  head.writeUInt16BE(t.length, o);
  o += 2;
  t.copy(head, o);
  o += t.length;
  if (messageId !== undefined) head.writeUInt16BE(messageId, o);
  return Buffer.concat([head, payload]);
}

function connackError(text: string, returnCode: number): Error {
  return Object.assign(new Error(text), { returnCode });
}

function decodedOrSelf(text: string): string {
  try {
    return decodeURIComponent(text);
  } catch {
    return text;
  }
}
export interface MqttEndpoint {
  listenTls(port: number, host: string, key: string, cert: string): Promise<number>;
  handleStream(stream: Duplex): void;
  close(): Promise<void>;
}

export async function createMqttEndpoint(hub: HubContext, opts: { inflight?: number } = {}): Promise<MqttEndpoint> {
  const window = opts.inflight ?? 100;
  const { Aedes } = await import('aedes');
  const sessions = new Map<AedesClient, Session>();
  /** The same sessions by device id: a lookup per CONNECT, not a walk over every connection (10,000 at scale). */
  const byDevice = new Map<string, Session>();
  const tokenExpiry = new WeakMap<AedesClient, number>();

  const broker = await Aedes.createBroker({
    authenticate: (
      client: unknown,
      username: string | undefined,
      password: Buffer | undefined,
      done: (e: Error | null, ok: boolean | null) => void,
    ) => {
      const c = client as AedesClient;
      try {
        const m = /^[^/]+\/([^/]+)\/(?:api-version=|\?|$)/.exec(username ?? '');
        // The SDKs write the device id raw, and an id may hold %: decoding first turned "a%41b" into "aAb" and refused it.
        // A client that percent-encodes its id is still understood.
        const userDevice = m && (m[1] === c.id || decodedOrSelf(m[1]) === c.id) ? c.id : undefined;
        if (!userDevice)
          throw connackError(
            'the user name must be {hub}/{deviceId}/?api-version=... with the client id as device id',
            5,
          );
        if (password && password.length > 0) {
          tokenExpiry.set(c, hub.registry.authenticateDevice(password.toString('utf8'), c.id).expiresAt);
        } else {
          // X.509: user name and no password; the certificate from the TLS handshake says who it is.
          const chain = peerChain(c.conn);
          if (!chain.length) throw connackError('no password and no client certificate', 5);
          hub.registry.authenticateCertificate(c.id, chain);
        }
        done(null, true);
      } catch (err) {
        hub.log('info', `MQTT connect refused for ${c.id}: ${(err as Error).message}`);
        done(connackError((err as Error).message, 5), null);
      }
    },
    authorizeSubscribe: (
      client: unknown,
      sub: { topic: string; qos: number },
      done: (e: Error | null, s?: unknown) => void,
    ) => {
      const c = client as AedesClient;
      if (sub.topic !== c2dSubscription(c.id)) {
        done(new Error(`only ${c2dSubscription(c.id)} can be subscribed`));
        return;
      }
      done(null, { ...sub, qos: Math.min(sub.qos, 1) });
    },
    authorizePublish: (client: unknown, packet: { topic: string; qos: number }, done: (e?: Error | null) => void) => {
      const c = client as AedesClient;
      // D2C telemetry is accepted and dropped: this hub models C2D only. QoS 2 closes the connection, as IoT Hub does.
      if (packet.qos === 2 || !packet.topic.startsWith(`devices/${c.id}/messages/events/`)) {
        done(new Error('publishing there is not supported'));
        return;
      }
      done(null);
    },
    authorizeForward: (_client: unknown, packet: unknown) => packet as never,
  } as never);

  // PUBACKs reach us through the persistence call aedes makes for each one.
  const persistence = (
    broker as unknown as {
      persistence: { outgoingClearMessageId: (c: AedesClient, p: { messageId: number }) => Promise<unknown> };
    }
  ).persistence;
  const clear = persistence.outgoingClearMessageId.bind(persistence);
  persistence.outgoingClearMessageId = async (client, packet) => {
    const s = sessions.get(client);
    const lockToken = s?.inflight.get(packet.messageId);
    if (s && lockToken) {
      s.inflight.delete(packet.messageId);
      try {
        hub.queues.complete(s.deviceId, lockToken);
      } catch (err) {
        hub.log('debug', `PUBACK for a settled message: ${(err as Error).message}`);
      }
      return undefined;
    }
    return clear(client, packet);
  };

  const deliverTo =
    (s: Session) =>
    (entry: QueuedMessage): boolean => {
      if (s.inflight.size >= window || s.waitingDrain) return false;
      s.nextId = (s.nextId % 65535) + 1;
      s.inflight.set(s.nextId, entry.lockToken);
      const conn = s.client.conn;
      // Everything delivered in one turn goes out in one TLS write rather than a record and a syscall each.
      if (!s.corked) {
        s.corked = true;
        conn.cork();
        process.nextTick(() => {
          s.corked = false;
          conn.uncork();
        });
      }
      const ok = conn.write(publishPacket(c2dTopic(s.deviceId, entry.message), s.nextId, entry.message.body));
      if (!ok) {
        s.waitingDrain = true;
        s.client.conn.once('drain', () => {
          s.waitingDrain = false;
          hub.queues.pump(s.deviceId);
        });
      }
      return true;
    };

  broker.on('client', (client: unknown) => {
    const c = client as AedesClient;
    const old = byDevice.get(c.id);
    if (old) end(old.client);
    const s: Session = {
      deviceId: c.id,
      client: c,
      nextId: 0,
      inflight: new Map(),
      waitingDrain: false,
      corked: false,
      release: hub.claimDevice(c.id, () => c.close()),
      expiresAt: tokenExpiry.get(c) ?? Infinity,
    };
    sessions.set(c, s);
    byDevice.set(c.id, s);
  });
  const attachQueue = (s: Session) => {
    if (!s.detach)
      s.detach = hub.queues.attach(s.deviceId, {
        deliver: deliverTo(s),
        describe: () => `mqtt inflight=${s.inflight.size} drain=${s.waitingDrain}`,
      });
  };
  broker.on('subscribe', (subs: { topic: string }[], client: unknown) => {
    const s = sessions.get(client as AedesClient);
    if (s && subs.some((x) => x.topic === c2dSubscription(s.deviceId))) attachQueue(s);
  });
  // A persistent session (clean session 0) keeps its subscription: the device SDKs renew a token by reconnecting and do
  // not subscribe again, and IoT Hub goes on delivering. aedes restores the subscription without a 'subscribe' event.
  broker.on('clientReady', (client: unknown) => {
    const c = client as AedesClient & { subscriptions?: Record<string, unknown> };
    const s = sessions.get(c);
    if (s && c.subscriptions?.[c2dSubscription(s.deviceId)]) attachQueue(s);
  });
  const end = (client: unknown) => {
    const s = sessions.get(client as AedesClient);
    if (!s) return;
    sessions.delete(s.client);
    if (byDevice.get(s.deviceId) === s) byDevice.delete(s.deviceId);
    s.detach?.();
    s.release();
  };
  broker.on('clientDisconnect', end);
  broker.on('clientError', end);

  // IoT Hub closes an MQTT connection when its CONNECT token expires (401003 IoTHubUnauthorized): the device renews by
  // reconnecting with a new one. Checked each second.
  const expirySweep = setInterval(() => {
    const now = Date.now() / 1000;
    for (const s of sessions.values()) {
      if (s.expiresAt > now) continue;
      s.expiresAt = Infinity;
      hub.log('info', `MQTT: the token of device ${s.deviceId} expired; disconnecting it`);
      s.client.close();
    }
  }, 1000);
  expirySweep.unref();

  const servers = new ServerSockets();
  return {
    listenTls(port, host, key, cert) {
      return new Promise((resolve, reject) => {
        // Client certificates are asked for (X.509 devices) but checked against the registry, not a CA.
        const server = tls.createServer({ key, cert, requestCert: true, rejectUnauthorized: false }, (socket) => {
          socket.setNoDelay(true);
          broker.handle(socket as never);
        });
        servers.add(server);
        server.once('error', reject);
        server.listen(port, host, () => {
          server.off('error', reject);
          resolve((server.address() as net.AddressInfo).port);
        });
      });
    },
    handleStream(stream) {
      broker.handle(stream as never);
    },
    async close() {
      clearInterval(expirySweep);
      await servers.close();
      await new Promise<void>((r) => broker.close(() => r()));
    },
  };
}
