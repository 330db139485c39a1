/**
 * The local hub's AMQP 1.0 endpoint (rhea in listen mode): CBS put-token, the service's C2D sender and
 * feedback receiver links, and the device's C2D receiver link (docs/PROTOCOL.md sections 4 to 6).
 */
import * as net from 'node:net';
import {
  Connection,
  create_container,
  Delivery,
  EventContext,
  Message,
  message as rheaMessage,
  Receiver,
  Sender,
  string_to_uuid,
  types,
} from 'rhea';
import { DispositionQueue } from '../core/disposition-queue';
import { deviceIdOfC2dAddress } from '../core/amqp-address';
import { fromAmqpMessage, toAmqpMessage } from '../core/amqp-codec';
import { AMQP_CONDITIONS, IotHubError } from '../core/errors';
import { encodeFeedbackBody, FEEDBACK_CONTENT_TYPE } from '../core/feedback';
import { writeFramesPooled } from '../core/amqp-frames';
import { HubContext } from './context';
import { ServerSockets } from './server-sockets';
import { QueuedMessage } from './c2d-queues';
import { FeedbackBatch } from './feedback-queue';
import { Identity } from './registry';
import { peerChain } from './x509-auth';

/** An open link: whose token keeps it open (a device id, or '' for the back end) and what it holds (a queue, the feedback). */
interface LinkState {
  owner: string;
  release?: () => void;
}

interface ConnState {
  links: Map<Sender | Receiver, LinkState>;
  /** Until when each device's token, and the back end's, is valid (seconds). */
  devices: Map<string, number>;
  service?: { se: number };
  cbsSender?: Sender;
  settle: DispositionQueue;
}

class SaslMechanism {
  outcome: boolean | undefined;
  username: string | undefined;
  constructor(
    private readonly check: (response: Buffer | undefined, m: SaslMechanism) => boolean,
    readonly name = '',
  ) {}
  start(response?: Buffer): void {
    this.outcome = this.check(response, this);
  }
}

/** How a client came in: "none" (the AMQP header straight after TLS) or the SASL mechanism it chose. */
function saslOf(conn: Connection): string {
  const t = (conn as unknown as { sasl_transport?: SaslTransportView }).sasl_transport;
  if (!t || t.header_received?.protocol_id === 0) return 'none';
  const m = (t.selected ?? t).mechanism;
  return m ? m.name || m.constructor.name.replace(/Server$/, '').toUpperCase() : 'unknown';
}
interface SaslTransportView {
  header_received?: { protocol_id: number };
  selected?: SaslTransportView;
  mechanism?: { name?: string; constructor: { name: string } };
}

const path = (address: string | undefined): string => (address ?? '').replace(/^amqps?:\/\/[^/]+/i, '').toLowerCase();

function unauthorizedLink(link: Sender | Receiver, text: string): void {
  link.close({ condition: AMQP_CONDITIONS.unauthorized, description: text });
}

/**
 * Refuses a link at its attach as AMQP says to (1.0 section 2.6.3): the answering attach carries no terminus (null
 * source for a sender, null target for a receiver), then the detach says why. A client then never takes the link for
 * open: echoing the terminus made ours report "connected" before each refusal, which reset its backoff.
 */
function refuseAttach(link: Sender | Receiver, text: string): void {
  const attach = (link as unknown as { local: { attach: { source?: unknown; target?: unknown } } }).local.attach;
  if (link.is_sender()) attach.source = null;
  else attach.target = null;
  unauthorizedLink(link, text);
}

export interface AmqpEndpoint {
  listenTls(port: number, host: string, key: string, cert: string): Promise<number>;
  listenPlain(port: number, host: string): Promise<number>;
  /** tlsSocket: the TLS connection under the WebSocket, whose client certificate identifies X.509 devices. */
  acceptWebSocket(ws: unknown, tlsSocket?: unknown): void;
  close(): Promise<void>;
}

export function createAmqpEndpoint(hub: HubContext): AmqpEndpoint {
  const container = create_container({ id: `iothub-local-${hub.hubName}` });
  const states = new WeakMap<Connection, ConnState>();
  const connections = new Set<Connection>();
  const servers = new ServerSockets();
  const serverOptions = { autoaccept: false, autosettle: false, tcp_no_delay: true };

  const mechanisms = container.sasl_server_mechanisms as unknown as Record<string, () => SaslMechanism>;
  (container.sasl_server_mechanisms as unknown as { enable_anonymous(): void }).enable_anonymous();
  // MSSBCBS: "I will authenticate over $cbs". Accept and wait for put-token.
  mechanisms.MSSBCBS = () => new SaslMechanism(() => true, 'MSSBCBS');
  // EXTERNAL: "I am who my TLS client certificate says" (X.509 devices of other SDKs). The certificate is checked
  // against the device the link names, when it attaches.
  mechanisms.EXTERNAL = () => new SaslMechanism(() => true, 'EXTERNAL');
  // PLAIN (C service SDK): user `{policy}@sas.root.{hub}` or `{device}@sas.{hub}`, password = SAS token.
  mechanisms.PLAIN = () =>
    new SaslMechanism((response, m) => {
      const parts = (response ?? Buffer.alloc(0)).toString('utf8').split('\u0000');
      const user = parts[1] ?? '';
      const token = parts[2] ?? '';
      try {
        const u = /^(.*)@sas\.(root\.)?[^@]+$/.exec(user);
        if (!u) throw new IotHubError('UNAUTHORIZED', 'unexpected SASL PLAIN user name');
        const id = u[2] ? hub.registry.authenticateService(token) : hub.registry.authenticateDevice(token, u[1]);
        m.username = JSON.stringify(id);
        return true;
      } catch (err) {
        hub.log('warn', `AMQP SASL PLAIN refused: ${(err as Error).message}`);
        return false;
      }
    }, 'PLAIN');

  function state(conn: Connection): ConnState {
    let s = states.get(conn);
    if (!s) {
      s = { links: new Map(), devices: new Map(), settle: new DispositionQueue() };
      states.set(conn, s);
      // Identity from SASL PLAIN, if that is how the client came in.
      const sasl = (conn as unknown as { sasl_transport?: { username?: string; selected?: { username?: string } } })
        .sasl_transport;
      const user = sasl?.username ?? sasl?.selected?.username;
      if (user && user.startsWith('{')) {
        try {
          grant(s, JSON.parse(user) as Identity);
        } catch {
          // Not ours.
        }
      }
    }
    return s;
  }

  function grant(s: ConnState, id: Identity): void {
    if (id.kind === 'device') s.devices.set(id.deviceId, id.expiresAt);
    else s.service = { se: id.expiresAt };
  }

  const nowSec = () => Date.now() / 1000;
  const deviceAllowed = (s: ConnState, deviceId: string) => (s.devices.get(deviceId) ?? 0) > nowSec();
  const serviceAllowed = (s: ConnState) => !!s.service && s.service.se > nowSec();

  function onCbsRequest(ctx: EventContext): void {
    const conn = ctx.connection;
    const s = state(conn);
    const req = ctx.message as Message;
    const props = (req.application_properties ?? {}) as Record<string, unknown>;
    ctx.delivery?.accept();
    let status = 200;
    let description = 'OK';
    try {
      if (props.operation !== 'put-token')
        throw new IotHubError('INVALID_ARGUMENT', `unsupported CBS operation ${String(props.operation)}`);
      const token =
        typeof req.body === 'string'
          ? req.body
          : Buffer.isBuffer(req.body)
            ? req.body.toString('utf8')
            : String((req.body as { content?: unknown })?.content ?? '');
      const audience = String(props.name ?? '');
      const id = hub.registry.authenticateAudience(token, audience);
      grant(s, id);
    } catch (err) {
      const e = err as IotHubError;
      status =
        e.code === 'UNAUTHORIZED' || e.code === 'INVALID_TOKEN' ? 401 : e.code === 'DEVICE_NOT_FOUND' ? 404 : 400;
      description = e.message;
      hub.log('info', `CBS put-token refused: ${description}`);
    }
    const reply: Message = {
      body: undefined,
      to: req.reply_to,
      correlation_id: req.message_id,
      application_properties: { 'status-code': types.wrap_int(status), 'status-description': description },
    };
    const sender = s.cbsSender;
    if (sender && sender.is_open()) sender.send(reply);
    else hub.log('warn', 'CBS request without a $cbs receiver link to answer on');
  }

  container.on('connection_open', (ctx: EventContext) => {
    // The hub writes frames as our clients do: rhea's writer allocates a zeroed 1 KB buffer per frame (amqp-frames.ts).
    writeFramesPooled(ctx.connection);
    connections.add(ctx.connection);
    state(ctx.connection);
  });
  const dropConnection = (ctx: EventContext) => {
    connections.delete(ctx.connection);
  };
  container.on('connection_close', dropConnection);
  container.on('disconnected', dropConnection);
  container.on('error', (ctx: EventContext) => hub.log('debug', `AMQP connection error: ${String(ctx.error)}`));

  container.on('receiver_open', (ctx: EventContext) => {
    const r = ctx.receiver as Receiver;
    r.set_target(r.target);
    r.set_source(r.source);
    const addr = path(r.target?.address);
    const s = state(ctx.connection);
    if (addr === '$cbs') return;
    if (addr === '/messages/devicebound') {
      if (!serviceAllowed(s)) refuseAttach(r, 'this connection has no valid token with ServiceConnect');
      else s.links.set(r, { owner: '' });
      return;
    }
    r.close({ condition: AMQP_CONDITIONS.notFound, description: `no such node: ${r.target?.address ?? ''}` });
  });

  container.on('sender_open', (ctx: EventContext) => {
    const snd = ctx.sender as Sender;
    snd.set_source(snd.source);
    snd.set_target(snd.target);
    const addr = path(snd.source?.address);
    const s = state(ctx.connection);
    if (addr === '$cbs') {
      s.cbsSender = snd;
      return;
    }
    if (addr === '/messages/servicebound/feedback') {
      if (!serviceAllowed(s)) return refuseAttach(snd, 'this connection has no valid token with ServiceConnect');
      const detach = hub.feedback.attach({
        deliver: (batch: FeedbackBatch) => {
          if (!snd.is_open() || !snd.sendable()) return false;
          const d = snd.send({
            body: rheaMessage.data_section(encodeFeedbackBody(batch.records)),
            content_type: FEEDBACK_CONTENT_TYPE,
            user_id: Buffer.from(hub.hubName) as unknown as string,
            message_id: batch.id,
            message_annotations: { 'iothub-enqueuedtime': new Date(batch.enqueuedTime) },
          });
          (d as unknown as { batch: FeedbackBatch }).batch = batch;
          return true;
        },
      });
      s.links.set(snd, { owner: '', release: detach });
      return;
    }
    const deviceId = deviceIdOfC2dAddress(snd.source?.address);
    if (deviceId !== undefined) {
      if (!deviceAllowed(s, deviceId)) {
        // No token for it: an X.509 device, which puts no token on $cbs; its TLS client certificate says who it is.
        const chain = peerChain(tlsSocketOf(ctx.connection));
        if (!chain.length) return refuseAttach(snd, `this connection has no valid token for device ${deviceId}`);
        try {
          grant(s, hub.registry.authenticateCertificate(deviceId, chain));
          hub.log(
            'info',
            `AMQP device ${deviceId} authenticated by its client certificate (SASL: ${saslOf(ctx.connection)})`,
          );
        } catch (err) {
          hub.log('info', `AMQP device ${deviceId} refused: ${(err as Error).message}`);
          return refuseAttach(snd, (err as Error).message);
        }
      }
      const release = hub.claimDevice(deviceId, () =>
        snd.close({
          condition: AMQP_CONDITIONS.detachForced,
          description: 'another connection opened for this device (400027 ConnectionForcefullyClosedOnNewConnection)',
        }),
      );
      const detachQueue = hub.queues.attach(deviceId, {
        describe: () =>
          `amqp open=${snd.is_open()} credit=${(snd as unknown as { credit: number }).credit} sendable=${snd.sendable()}`,
        deliver: (entry: QueuedMessage) => {
          if (!snd.is_open() || !snd.sendable()) return false;
          const msg = toAmqpMessage(deviceId, entry.message);
          msg.message_annotations = {
            'x-opt-lock-token': types.wrap_uuid(string_to_uuid(entry.lockToken)),
            'x-opt-sequence-number': types.wrap_long(entry.seq),
            'iothub-enqueuedtime': new Date(entry.enqueuedTime),
            'iothub-deliverycount': types.wrap_int(entry.deliveryCount),
          };
          const d = snd.send(msg);
          (d as unknown as { c2d: { deviceId: string; lockToken: string } }).c2d = {
            deviceId,
            lockToken: entry.lockToken,
          };
          return true;
        },
      });
      s.links.set(snd, {
        owner: deviceId,
        release: () => {
          detachQueue();
          release();
        },
      });
      return;
    }
    snd.close({ condition: AMQP_CONDITIONS.notFound, description: `no such node: ${snd.source?.address ?? ''}` });
  });

  container.on('sendable', (ctx: EventContext) => {
    const addr = path(ctx.sender?.source?.address);
    if (addr === '/messages/servicebound/feedback') hub.feedback.pump();
    // Device ids are case-sensitive: take the id from the address as sent, not the lower-cased path.
    const deviceId = deviceIdOfC2dAddress(ctx.sender?.source?.address);
    if (deviceId !== undefined) hub.queues.pump(deviceId);
  });

  /** Forgets a link and lets go of the queue or feedback it held (their locked messages are redelivered at once). */
  function releaseLink(st: ConnState, link: Sender | Receiver): void {
    const held = st.links.get(link);
    st.links.delete(link);
    held?.release?.();
  }
  const detachLink = (ctx: EventContext) => {
    const link = (ctx.sender ?? ctx.receiver) as Sender | Receiver | undefined;
    const st = states.get(ctx.connection);
    if (link && st) releaseLink(st, link);
  };
  container.on('sender_close', detachLink);
  container.on('receiver_close', detachLink);
  const dropLinks = (ctx: EventContext) => {
    const st = states.get(ctx.connection);
    if (st) for (const link of [...st.links.keys()]) releaseLink(st, link);
  };
  container.on('disconnected', dropLinks);
  container.on('connection_close', dropLinks);

  // Settlements of what the hub sent.
  const onOutcome = (kind: 'accepted' | 'rejected' | 'released' | 'modified') => (ctx: EventContext) => {
    const d = ctx.delivery as Delivery & { c2d?: { deviceId: string; lockToken: string }; batch?: FeedbackBatch };
    // Our links do not autosettle (the hub rejects with conditions), so settle our side too: an unsettled
    // delivery keeps its slot in the session window, and after 2,048 of them the link stops sending.
    if (!d.settled) d.update(true);
    if (d.c2d) {
      const { deviceId, lockToken } = d.c2d;
      try {
        if (kind === 'accepted') hub.queues.complete(deviceId, lockToken);
        else if (kind === 'rejected') hub.queues.reject(deviceId, lockToken);
        else hub.queues.abandon(deviceId, lockToken);
      } catch (err) {
        hub.log('debug', `settlement ignored: ${(err as Error).message}`);
      }
    } else if (d.batch) {
      hub.feedback.settle(d.batch, kind === 'accepted' || kind === 'rejected');
    }
  };
  container.on('accepted', onOutcome('accepted'));
  container.on('rejected', onOutcome('rejected'));
  container.on('released', onOutcome('released'));
  container.on('modified', onOutcome('modified'));

  container.on('message', (ctx: EventContext) => {
    const r = ctx.receiver as Receiver;
    const addr = path(r.target?.address);
    if (addr === '$cbs') return onCbsRequest(ctx);
    if (addr !== '/messages/devicebound') return;
    const s = state(ctx.connection);
    const delivery = ctx.delivery as Delivery;
    const msg = ctx.message as Message;
    let outcome: { ok: true } | { ok: false; condition: string; description: string };
    try {
      if (!serviceAllowed(s))
        throw new IotHubError('UNAUTHORIZED', 'the token has expired: renew it with put-token', {
          amqpCondition: AMQP_CONDITIONS.unauthorized,
        });
      const deviceId = deviceIdOfC2dAddress(String(msg.to ?? ''));
      if (!deviceId)
        throw new IotHubError('INVALID_ARGUMENT', 'the message "to" must be /devices/{deviceId}/messages/devicebound', {
          amqpCondition: AMQP_CONDITIONS.argumentError,
        });
      if (!hub.registry.devices.has(deviceId)) {
        throw new IotHubError(
          'DEVICE_NOT_FOUND',
          JSON.stringify({
            errorCode: 404001,
            message: `Device ${deviceId} not registered`,
            timestampUtc: new Date().toISOString(),
          }),
          { amqpCondition: AMQP_CONDITIONS.notFound },
        );
      }
      const model = fromAmqpMessage(msg);
      // The tier's throttle counts sends the hub takes: one the queue refuses gives its slot back.
      hub.c2dThrottle?.take();
      try {
        hub.queues.enqueue(deviceId, {
          body: model.body,
          messageId: model.messageId,
          correlationId: model.correlationId,
          userId: model.userId,
          to: model.to,
          expiryTimeUtc: model.expiryTimeUtc,
          contentType: model.contentType,
          contentEncoding: model.contentEncoding,
          ack: model.ack,
          properties: model.properties,
        });
      } catch (err) {
        hub.c2dThrottle?.refund();
        throw err;
      }
      outcome = { ok: true };
    } catch (err) {
      const e = err as IotHubError;
      outcome = { ok: false, condition: e.amqpCondition ?? AMQP_CONDITIONS.internalError, description: e.message };
    }
    if (outcome.ok) s.settle.settle('accepted', () => delivery.accept());
    else {
      const o = outcome;
      s.settle.settle(`rejected:${o.condition}`, () =>
        delivery.reject({ condition: o.condition, description: o.description }),
      );
    }
  });

  // IoT Hub detaches what a token opened once it expires unless a put-token renewed it (401003 IoTHubUnauthorized).
  // Checked each second: renewal bugs show here, not an hour into a user's deployment.
  const expirySweep = setInterval(() => {
    for (const conn of connections) {
      const st = states.get(conn);
      if (!st) continue;
      for (const [link, { owner }] of [...st.links]) {
        if (owner === '' ? serviceAllowed(st) : deviceAllowed(st, owner)) continue;
        releaseLink(st, link);
        const who = owner === '' ? 'the back-end token' : `the token for device ${owner}`;
        hub.log(
          'info',
          `AMQP: ${who} expired without renewal; detaching ${link.is_sender() ? link.source?.address : link.target?.address}`,
        );
        unauthorizedLink(
          link,
          `${who} has expired (401003 IoTHubUnauthorized): put a new token on $cbs before the old one expires`,
        );
      }
    }
  }, 1000);
  expirySweep.unref();

  const wsPeers = new Map<string, unknown>();
  let wsPeerCount = 0;
  /** The TLS socket a connection came in on: its own, or the one under its WebSocket. */
  function tlsSocketOf(conn: Connection): unknown {
    const s = (conn as unknown as { socket?: { get_id_string?: () => string } }).socket;
    const key = typeof s?.get_id_string === 'function' ? s.get_id_string() : undefined;
    return key !== undefined && wsPeers.has(key) ? wsPeers.get(key) : s;
  }

  function listen(options: object, port: number, host: string): Promise<number> {
    return new Promise((resolve, reject) => {
      const server = container.listen({ ...serverOptions, ...options, port, host } as never) as unknown as net.Server;
      servers.add(server);
      server.on('connection', (socket: net.Socket) => socket.setNoDelay(true));
      server.once('error', reject);
      server.once('listening', () => {
        server.off('error', reject);
        resolve((server.address() as net.AddressInfo).port);
      });
    });
  }

  return {
    listenTls(port, host, key, cert) {
      // Client certificates are asked for (X.509 devices) and checked against the registry when a device link attaches.
      return listen({ transport: 'tls', key, cert, requestCert: true, rejectUnauthorized: false }, port, host);
    },
    listenPlain(port, host) {
      return listen({}, port, host);
    },
    acceptWebSocket(ws, tlsSocket) {
      // rhea wraps the WebSocket in an object of its own and keeps no way back to it but the id string it logs (the
      // WebSocket's url, unset on a server): set it to a key that finds the TLS socket.
      if (tlsSocket) {
        const key = `wss-peer-${++wsPeerCount}`;
        wsPeers.set(key, tlsSocket);
        Object.defineProperty(ws, 'url', { value: key });
        (ws as { once(e: 'close', f: () => void): void }).once('close', () => wsPeers.delete(key));
      }
      container.websocket_accept(ws as never, serverOptions as never);
    },
    async close() {
      clearInterval(expirySweep);
      for (const c of connections) {
        try {
          c.close();
        } catch {
          // Already gone.
        }
      }
      await servers.close();
    },
  };
}
