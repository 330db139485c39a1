/** Opening an AMQP connection to IoT Hub (TLS or WebSockets) and claims-based auth on `$cbs` (docs/PROTOCOL.md section 5). */
import { randomUUID } from 'node:crypto';
import { Socket } from 'node:net';
import type { TLSSocket } from 'node:tls';
import {
  Connection,
  ConnectionOptions,
  create_container,
  EventContext,
  Message,
  Receiver,
  Sender,
  websocket_connect,
} from 'rhea';
import WebSocket from 'ws';
import { writeFramesPooled } from './amqp-frames';
import { dialShare } from './dial-share';
import type { ResolvedEndpoint } from './endpoint';
import { fromSocketError, IotHubError, peerText } from './errors';
import { tlsThroughProxy, wsThroughProxy } from './proxy';
import { untrustedServer } from './x509';

export interface AmqpTls {
  cert?: string;
  key?: string;
  passphrase?: string;
}

export function openAmqpConnection(e: ResolvedEndpoint, webSocket: boolean, extra: AmqpTls = {}): Connection {
  const container = create_container({ id: `iothub-c2d-${randomUUID()}` });
  // rhea drops a connection after twice its idle time out without a frame, and asks the peer for one every half of it.
  const common = {
    reconnect: false,
    idle_time_out: e.keepAliveSec * 500,
    tcp_no_delay: true,
    hostname: e.servername,
  } as Partial<ConnectionOptions>;
  let connection: Connection;
  if (webSocket) {
    const ws = websocket_connect(WebSocket as never);
    const details = ws(`wss://${e.host}:${e.port}/$iothub/websocket`, ['AMQPWSB10'], {
      ca: e.ca,
      rejectUnauthorized: e.rejectUnauthorized,
      servername: e.servername,
      cert: extra.cert,
      key: extra.key,
      // Through an HTTP proxy: the WebSocket's TLS over a CONNECT tunnel (proxy.ts).
      ...(e.proxy ? { createConnection: wsThroughProxy(e.proxy, e.connectTimeoutMs) } : {}),
      passphrase: extra.passphrase,
    } as never);
    connection = container.connect({ ...common, connection_details: details } as unknown as ConnectionOptions);
  } else if (e.proxy && e.tls) {
    const tlsOptions = {
      servername: e.servername,
      ca: e.ca,
      rejectUnauthorized: e.rejectUnauthorized,
      cert: extra.cert,
      key: extra.key,
    };
    const proxy = e.proxy;
    // rhea calls `connect` as it would tls.connect; the TLS runs over a CONNECT tunnel instead.
    connection = container.connect({
      ...common,
      host: e.host,
      port: e.port,
      transport: 'tls',
      connect: (port: number, host: string, _o: unknown, onSecure: () => void) =>
        tlsThroughProxy(proxy, host, port, tlsOptions, e.connectTimeoutMs, onSecure),
    } as unknown as ConnectionOptions);
  } else {
    // Connections of one hub share a TLS context, session and lookup, as MQTT devices do (dial-share.ts); not with a
    // client certificate. rhea hands these options to tls.connect as they are.
    const share = e.tls && !extra.cert ? dialShare(e) : undefined;
    connection = container.connect({
      ...common,
      host: e.host,
      port: e.port,
      ...(e.tls
        ? {
            transport: 'tls',
            servername: e.servername,
            ca: e.ca,
            rejectUnauthorized: e.rejectUnauthorized,
            cert: extra.cert,
            key: extra.key,
            passphrase: extra.passphrase,
            ...(share ? { secureContext: share.secureContext, session: share.session, lookup: share.lookup } : {}),
          }
        : {}),
    } as ConnectionOptions);
    // rhea dials at once: its socket is there now.
    const socket = (connection as unknown as { socket?: TLSSocket }).socket;
    if (share && socket) share.watch(socket);
  }
  targetOf.set(connection, { host: e.host, port: e.port });
  writeFramesPooled(connection);
  // rhea reports bytes it cannot decode (a hub's malformed frame or message) and anything thrown by a handler it runs
  // as 'protocol_error' or 'error', then half-closes the socket. With no listener, its container re-throws the 'error'
  // out of the socket's data handler: an uncaught exception that ended the Node-RED process (a hostile hub's garbage
  // frame was enough). Take either as the end of this connection instead, and say why.
  const broken = (err: Error) => {
    if (brokenBy.has(connection)) return;
    brokenBy.set(connection, err);
    const rhea = connection as unknown as RheaTransportHandle;
    const socket = rhea.socket;
    if (!socket || socket.destroyed) return;
    // The half-closed socket would wait for the hub's end (or twice the idle time-out): abort it; 'disconnected' follows.
    socket.on?.('error', () => undefined);
    rhea.abort_socket(socket);
    socket.on?.('error', () => undefined);
  };
  connection.on('error', broken);
  connection.on('protocol_error', broken);
  // rhea reads a frame of any announced size: a hub that announced 4 GB and then sent only its heartbeats kept the
  // connection at "connected" for ever, every byte (heartbeats included) taken as part of that frame, so no keep-alive
  // ever fired. A frame far over anything IoT Hub sends (a C2D message is at most 64 KB, feedback batches are small) is
  // taken as a framing error. (Advertising a max-frame-size in our open instead changed rhea's flow control: sends
  // stalled after a reconnect under load, test/nodes/restarts.test.js.)
  // (TCP and TLS only: rhea's WebSocket wrapper keeps one handler per event, and a second 'data' one replaced rhea's own.)
  const rheaState = connection as unknown as { socket?: unknown; frame_size?: number };
  if (rheaState.socket instanceof Socket) {
    rheaState.socket.on('data', () => {
      const size = rheaState.frame_size;
      if (size !== undefined && size > MAX_FRAME_SIZE)
        broken(new Error(`the hub announced a frame of ${size} bytes; at most ${MAX_FRAME_SIZE} are accepted`));
    });
  }
  return connection;
}

/** The largest frame we accept from a hub. */
const MAX_FRAME_SIZE = 16 * 1024 * 1024;

/** Where a connection dialled, for errors that do not say (a refused port). */
const targetOf = new WeakMap<Connection, { host: string; port: number }>();

/** Why a connection was given up locally (bytes rhea could not read): amqpConnectionError reports it. */
const brokenBy = new WeakMap<Connection, Error>();

/** The `$cbs` link pair: put-token requests matched to responses by correlation id. */
export class Cbs {
  private readonly sender: Sender;
  private readonly receiver: Receiver;
  private readonly pending = new Map<
    string,
    { resolve: () => void; reject: (e: IotHubError) => void; timer: NodeJS.Timeout }
  >();

  constructor(connection: Connection) {
    this.sender = connection.open_sender({ target: { address: '$cbs' } });
    this.receiver = connection.open_receiver({ source: { address: '$cbs' } });
    this.receiver.on('message', (ctx: EventContext) => {
      const m = ctx.message as Message;
      const id = peerText(m.correlation_id) ?? '';
      const p = this.pending.get(id);
      if (!p) return;
      this.pending.delete(id);
      clearTimeout(p.timer);
      const props = (m.application_properties ?? {}) as Record<string, unknown>;
      const status = Number(peerText(props['status-code']));
      if (status === 200 || status === 202) p.resolve();
      else {
        const text = peerText(props['status-description']) ?? `status ${status}`;
        p.reject(
          new IotHubError(
            status === 401 || status === 403 ? 'UNAUTHORIZED' : status === 404 ? 'DEVICE_NOT_FOUND' : 'PROTOCOL_ERROR',
            `the hub refused the token: ${text}`,
          ),
        );
      }
    });
  }

  private closed = false;

  putToken(audience: string, token: string, timeoutMs = 30_000): Promise<void> {
    const id = randomUUID();
    if (this.closed) return Promise.reject(new IotHubError('NOT_CONNECTED', 'the connection closed'));
    return new Promise((resolve, reject) => {
      const timer = setTimeout(() => {
        this.pending.delete(id);
        reject(new IotHubError('TIMEOUT', 'the hub did not answer the token request'));
      }, timeoutMs);
      this.pending.set(id, { resolve, reject, timer });
      this.sender.send({
        to: '$cbs',
        message_id: id,
        reply_to: 'cbs',
        body: token,
        application_properties: { operation: 'put-token', type: 'servicebus.windows.net:sastoken', name: audience },
      });
    });
  }

  close(): void {
    this.closed = true;
    for (const p of this.pending.values()) {
      clearTimeout(p.timer);
      p.reject(new IotHubError('NOT_CONNECTED', 'the connection closed before the hub answered the token request'));
    }
    this.pending.clear();
  }
}

/** rhea's own handle on a connection's transport, for closing what its public API leaves behind. */
interface RheaTransportHandle {
  socket?: { destroyed?: boolean; readableEnded?: boolean; on?(event: 'error', fn: () => void): void };
  abort_socket(socket: unknown): void;
}

/**
 * Closes a connection and leaves no socket or timer of rhea's behind. Only a connection the peer has opened gets the
 * AMQP close handshake (up to graceMs). rhea ends the socket of one the peer has not opened yet as soon as its close
 * is written, then answers the peer's late open on that ended socket and arms a timer of twice the idle time-out that
 * nothing clears: 3 min of a process kept alive per connection closed while connecting (seen on a busy machine, where
 * a redeploy often closes a connection still in its TLS handshake). That connection, and one whose peer does not
 * answer the close, is aborted instead: rhea's own abort destroys the socket and clears its timers.
 */
export async function closeAmqpConnection(connection: Connection, graceMs = 2000): Promise<void> {
  if (connection.is_remote_open()) {
    await new Promise<void>((resolve) => {
      const finish = () => {
        clearTimeout(timer);
        connection.removeListener('connection_close', finish);
        connection.removeListener('disconnected', finish);
        resolve();
      };
      const timer = setTimeout(finish, graceMs);
      connection.once('connection_close', finish);
      connection.once('disconnected', finish);
      connection.close();
    });
  }
  const rhea = connection as unknown as RheaTransportHandle;
  const socket = rhea.socket;
  // Gone already (the peer hung up): rhea cleared its timers when it saw the end.
  if (!socket || socket.destroyed || socket.readableEnded) return;
  // The socket is dead to us: an error it reports while being torn down must not become an uncaught 'error'.
  rhea.abort_socket(socket);
  socket.on?.('error', () => undefined);
}

/** Resolves when the connection opens; rejects with a typed error when it fails first. */
export function whenOpen(connection: Connection): Promise<void> {
  return new Promise((resolve, reject) => {
    connection.once('connection_open', () => resolve());
    connection.once('connection_error', (ctx: EventContext) => reject(amqpConnectionError(ctx)));
    connection.once('disconnected', (ctx: EventContext) => reject(amqpConnectionError(ctx)));
  });
}

export function amqpConnectionError(ctx: EventContext): IotHubError {
  const broken = ctx.connection ? brokenBy.get(ctx.connection) : undefined;
  if (broken)
    return new IotHubError(
      'PROTOCOL_ERROR',
      `the hub sent what AMQP cannot read: ${String(broken.message).slice(0, 200)}`,
      { cause: broken },
    );
  const err = ctx.error as { condition?: string; description?: string; message?: string } | undefined;
  const servername = (ctx.connection as unknown as { options?: { servername?: string } } | undefined)?.options
    ?.servername;
  const untrusted = untrustedServer(err, servername ?? 'the hub');
  if (untrusted) return untrusted;
  // A socket that failed (no such host, refused, a certificate, a proxy): say which, with the fix.
  const dialled = fromSocketError(err, ctx.connection ? targetOf.get(ctx.connection) : undefined);
  if (dialled) return dialled;
  const text = peerText(err?.description) ?? peerText(err?.message) ?? 'the connection closed';
  if (err?.condition === 'amqp:unauthorized-access') return new IotHubError('UNAUTHORIZED', `unauthorized: ${text}`);
  return new IotHubError('CONNECTION_LOST', `connection failed: ${text}`);
}
