/** The MQTT 3.1.1 device transport (mqtt.js), as IoT Hub wants it (docs/PROTOCOL.md section 3). */
import type { Duplex } from 'node:stream';
import type { TLSSocket } from 'node:tls';
import { connect, IClientOptions, MqttClient } from 'mqtt';
import type { ResolvedEndpoint } from './endpoint';
import type { DeviceClientOptions, DeviceSession, TransportEvents } from './transport';
import { fromConnackCode, fromSocketError, IotHubError } from './errors';
import { c2dSubscription, decodeC2DPublish } from './property-bag';
import { dialShare } from './dial-share';
import { openTunnel, wsThroughProxy } from './proxy';
import { untrustedServer } from './x509';

const API_VERSION = '2021-04-12';
// mqtt.js logs every packet through `debug` (a call and a check per line, even when off: ~4 % of a receive's CPU). Only
// when DEBUG asks for mqtt.js's lines does it get its logger.
const MQTTJS_DEBUG = /mqttjs|^\*$/.test(process.env.DEBUG ?? '');
const noLog = (): void => undefined;
const SERVER_BOUND = new Set(['connect', 'subscribe', 'unsubscribe', 'pingreq', 'disconnect']);
const CLIENT_TYPE = encodeURIComponent(
  `iothub-c2d-node-red/0.1 (node ${process.version}; ${process.platform}; ${process.arch})`,
);

export function connectMqtt(
  o: DeviceClientOptions,
  e: ResolvedEndpoint,
  token: string | undefined,
  events: TransportEvents,
): DeviceSession {
  const ws = o.transport === 'mqtt-ws';
  const creds = o.credentials;
  // Devices of one hub share a TLS context, session and lookup (see dial-share.ts); not with a client certificate.
  const share = !ws && e.tls && !('cert' in creds) ? dialShare(e) : undefined;
  const options: IClientOptions = {
    clientId: o.deviceId,
    username: `${e.hostName}/${o.deviceId}/?api-version=${API_VERSION}&DeviceClientType=${CLIENT_TYPE}`,
    password: token,
    protocolVersion: 4,
    clean: false,
    keepalive: e.keepAliveSec,
    reconnectPeriod: 0,
    ...(MQTTJS_DEBUG ? {} : { log: noLog }),
    // The client's own timer (DeviceClient) gives up on the attempt and says why; mqtt.js's, a moment later, is a backstop
    // that would otherwise win the race and report a mere "connection closed".
    connectTimeout: e.connectTimeoutMs + 5000,
    ca: e.ca,
    servername: e.servername,
    rejectUnauthorized: e.rejectUnauthorized,
    ...('cert' in creds ? { cert: creds.cert, key: creds.key, passphrase: creds.passphrase } : {}),
    ...(share ? { secureContext: share.secureContext, session: share.session, lookup: share.lookup } : {}),
  };
  // Through an HTTP proxy: TLS (ours, or the WebSocket's) over a CONNECT tunnel (proxy.ts).
  if (e.proxy && ws) options.wsOptions = { createConnection: wsThroughProxy(e.proxy, e.connectTimeoutMs) } as never;
  // mqtt.js hands its options to tls.connect, which takes the tunnel for its socket.
  else if (e.proxy && e.tls)
    (options as { socket?: unknown }).socket = openTunnel(e.proxy, e.host, e.port, e.connectTimeoutMs);
  // Without WebSockets, no URL: mqtt.js would parse one and then delete its `path` from the options, which turns them
  // (shared with its parser and client) into a dictionary of 1.6 KB per device (seen in heap snapshots of 1,000 and 2,000).
  const client: MqttClient = ws
    ? connect(`wss://${e.host}:${e.port}/$iothub/websocket`, options)
    : connect({ ...options, protocol: e.tls ? 'mqtts' : 'mqtt', host: e.host, port: e.port });
  if (share && client.stream) share.watch(client.stream as TLSSocket);
  if (!ws && client.stream) coalesceWritesPerRead(client.stream);
  let ended = false;
  let lastError: IotHubError | undefined;

  // PUBACK completes the message on the hub: send it only once the message was handed over.
  // Until then mqtt.js reads nothing more from this connection, which is the back-pressure a held message wants.
  client.handleMessage = (packet, callback) => {
    let m;
    try {
      m = decodeC2DPublish(packet.topic, packet.payload as Buffer);
    } catch (err) {
      // A publish we cannot read is still acknowledged (the hub would only resend it forever), and reported with what
      // came: it was dropped without a word, and its error was later given as the reason the connection closed.
      callback();
      events.unreadable(
        err instanceof IotHubError ? err : new IotHubError('PROTOCOL_ERROR', 'unreadable C2D message'),
        { topic: packet.topic, body: packet.payload },
      );
      return;
    }
    events.message(m, () => callback());
  };
  client.on('connect', () => {
    (client.stream as unknown as { setNoDelay?: (v: boolean) => void }).setNoDelay?.(true);
    client.subscribe(c2dSubscription(o.deviceId), { qos: 1 }, (err, granted) => {
      if (err || !granted || granted.some((g) => g.qos > 1)) {
        lastError = new IotHubError('PROTOCOL_ERROR', 'the hub refused the C2D subscription');
        client.end(true);
        return;
      }
      events.connected();
    });
  });
  client.on('error', (err: Error & { code?: number | string }) => {
    lastError =
      typeof err.code === 'number'
        ? fromConnackCode(err.code)
        : /not authori[sz]ed|bad user ?name or password/i.test(err.message)
          ? new IotHubError(
              'UNAUTHORIZED',
              "not authorized: check the key, the token's expiry and that the device is enabled",
            )
          : (fromSocketError(err, e) ??
            new IotHubError('CONNECTION_LOST', `connection failed: ${err.message}`, { cause: err }));
    // A server certificate we do not trust (a gateway whose CA is not given) says so, with the fix.
    lastError = untrustedServer(err, e.servername) ?? lastError;
    // mqtt.js reports a packet it cannot parse (reserved flag bits, both QoS bits, a bad length) and goes on reading the
    // stream out of step. MQTT says to close the connection on a protocol violation [MQTT-4.8.0-1]: do, and connect again.
    if (!ended) client.end(true);
  });
  // Packets only a server may receive: mqtt.js skips them silently; they are a protocol violation all the same.
  client.on('packetreceive', (packet) => {
    if (ended || !SERVER_BOUND.has(packet.cmd)) return;
    lastError = new IotHubError(
      'PROTOCOL_ERROR',
      `the hub sent a ${packet.cmd.toUpperCase()} packet, which only a server may receive`,
    );
    client.end(true);
  });
  client.on('close', () => {
    if (ended) return;
    ended = true;
    const err = lastError ?? new IotHubError('CONNECTION_LOST', 'the connection closed');
    client.end(true);
    events.closed(err);
  });

  return {
    settle: (_lockToken, outcome) =>
      Promise.reject(
        new IotHubError(
          'INVALID_ARGUMENT',
          outcome === 'complete'
            ? 'MQTT devices complete messages automatically'
            : 'MQTT devices cannot reject or abandon: use an AMQP device transport',
        ),
      ),
    end: () =>
      new Promise<void>((resolve) => {
        if (ended) return resolve();
        ended = true;
        // mqtt.js's graceful end waits until every packet it sent is answered, and returns at once from any later end(),
        // forced or not: a SUBSCRIBE the hub never answered kept the socket open for ever. End such a one by force, and
        // if a graceful end is stuck (a stalled link), destroy the stream under it.
        const pending =
          !client.connected || Object.keys((client as unknown as { outgoing: object }).outgoing ?? {}).length > 0;
        client.end(pending, {}, () => resolve());
        setTimeout(() => {
          client.stream?.destroy();
          resolve();
        }, 2000).unref();
      }),
  };
}

/**
 * The PUBACKs of what one turn of the event loop read leave in one write. mqtt-packet corks the socket for each packet it
 * writes and uncorks it on the next tick, so PUBACKs left in a write (a TLS record, a system call, a TCP segment) per
 * tick that handed publishes over: 377 writes for 10,000 messages in the bench's receive case. Corked from a read until
 * setImmediate, 140; each PUBACK leaves a moment later than it is made, within the same turn.
 */
function coalesceWritesPerRead(stream: Duplex): void {
  let corked = false;
  const flush = (): void => {
    corked = false;
    stream.uncork();
  };
  // Before mqtt.js's own 'data' listener (the pipe into its parser), which handles the read's first packet at once.
  stream.prependListener('data', () => {
    if (corked) return;
    corked = true;
    stream.cork();
    setImmediate(flush);
  });
}
