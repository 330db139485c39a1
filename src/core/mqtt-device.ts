/** The MQTT 3.1.1 device transport (mqtt.js), as IoT Hub wants it (docs/PROTOCOL.md section 3). */
import { connect, IClientOptions, MqttClient } from 'mqtt';
import type { ResolvedEndpoint } from './endpoint';
import type { DeviceClientOptions, DeviceSession, TransportEvents } from './transport';
import { fromConnackCode, IotHubError } from './errors';
import { c2dSubscription, decodeC2DPublish } from './property-bag';

const API_VERSION = '2021-04-12';
const CLIENT_TYPE = encodeURIComponent(`iothub-c2d-node-red/0.1 (node ${process.version}; ${process.platform}; ${process.arch})`);

export function connectMqtt(o: DeviceClientOptions, e: ResolvedEndpoint, token: string | undefined, events: TransportEvents): DeviceSession {
  const ws = o.transport === 'mqtt-ws';
  const creds = o.credentials;
  const options: IClientOptions = {
    clientId: o.deviceId,
    username: `${e.hostName}/${o.deviceId}/?api-version=${API_VERSION}&DeviceClientType=${CLIENT_TYPE}`,
    password: token,
    protocolVersion: 4,
    clean: false,
    keepalive: e.keepAliveSec,
    reconnectPeriod: 0,
    connectTimeout: 30_000,
    ca: e.ca,
    servername: e.servername,
    rejectUnauthorized: e.rejectUnauthorized,
    ...('cert' in creds ? { cert: creds.cert, key: creds.key } : {}),
  };
  const url = ws ? `wss://${e.host}:${e.port}/$iothub/websocket` : `${e.tls ? 'mqtts' : 'mqtt'}://${e.host}:${e.port}`;
  const client: MqttClient = connect(url, options);
  let ended = false;
  let lastError: IotHubError | undefined;

  // PUBACK completes the message on the hub: send it only once the message was handed over.
  // Until then mqtt.js reads nothing more from this connection, which is the back-pressure a held message wants.
  client.handleMessage = (packet, callback) => {
    let m;
    try {
      m = decodeC2DPublish(packet.topic, packet.payload as Buffer);
    } catch (err) {
      // A publish we cannot read is still acknowledged (the hub would only resend it forever).
      lastError = err instanceof IotHubError ? err : new IotHubError('PROTOCOL_ERROR', 'unreadable C2D message');
      callback();
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
    lastError = typeof err.code === 'number' ? fromConnackCode(err.code)
      : /not authori[sz]ed|bad user ?name or password/i.test(err.message) ? new IotHubError('UNAUTHORIZED', 'not authorized: check the key, the token\'s expiry and that the device is enabled')
        : new IotHubError('CONNECTION_LOST', `connection failed: ${err.message}`, { cause: err });
  });
  client.on('close', () => {
    if (ended) return;
    ended = true;
    const err = lastError ?? new IotHubError('CONNECTION_LOST', 'the connection closed');
    client.end(true);
    events.closed(err);
  });

  return {
    settle: (_lockToken, outcome) => Promise.reject(new IotHubError('INVALID_ARGUMENT',
      outcome === 'complete' ? 'MQTT devices complete messages automatically' : 'MQTT devices cannot reject or abandon: use an AMQP device transport')),
    end: () => new Promise<void>((resolve) => {
      if (ended) return resolve();
      ended = true;
      client.end(false, {}, () => resolve());
      setTimeout(() => {
        client.end(true);
        resolve();
      }, 2000).unref();
    }),
  };
}
