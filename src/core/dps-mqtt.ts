/**
 * DPS registration over MQTT 3.1.1 (mqtt.js), as azure-iot-provisioning-device-mqtt speaks it (docs/PROTOCOL.md,
 * "Device Provisioning Service"): client id = registration id, user name
 * `{idScope}/registrations/{registrationId}/api-version=…`, the SAS token as password, clean session; requests on
 * `$dps/registrations/PUT/iotdps-register/?$rid=` and `$dps/registrations/GET/iotdps-get-operationstatus/?$rid=&operationId=`,
 * answers on `$dps/registrations/res/{status}/?$rid=&retry-after=`.
 */
import { randomUUID } from 'node:crypto';
import { connect, IClientOptions, MqttClient } from 'mqtt';
import type { DpsConnectOptions, DpsResponse, DpsTransport } from './dps-client';
import { fromConnackCode, IotHubError } from './errors';

const API_VERSION = '2019-03-31';
const CLIENT_VERSION = encodeURIComponent('iothub-c2d-node-red/0.1');
const RESPONSES = '$dps/registrations/res/#';

/** The status and query of a response topic, or undefined for any other topic. */
export function parseResponseTopic(
  topic: string,
): { status: number; rid?: string; retryAfterSec?: number } | undefined {
  const m = /^\$dps\/registrations\/res\/(\d{3})\/\?(.*)$/.exec(topic);
  if (!m) return undefined;
  const q = new URLSearchParams(m[2]);
  const ra = q.get('retry-after');
  return {
    status: Number(m[1]),
    rid: q.get('$rid') ?? undefined,
    retryAfterSec: ra !== null && ra !== '' && Number.isFinite(Number(ra)) ? Number(ra) : undefined,
  };
}

export function openDpsMqtt(o: DpsConnectOptions): DpsTransport {
  const options: IClientOptions = {
    clientId: o.registrationId,
    username: `${o.idScope}/registrations/${o.registrationId}/api-version=${API_VERSION}&ClientVersion=${CLIENT_VERSION}`,
    password: o.sasToken,
    protocolVersion: 4,
    clean: true,
    keepalive: 60,
    reconnectPeriod: 0,
    connectTimeout: o.timeoutMs,
    ca: o.ca,
    servername: o.servername,
    rejectUnauthorized: o.rejectUnauthorized,
  };
  const client: MqttClient = connect(`mqtts://${o.host}:${o.port}`, options);
  const pending = new Map<string, { resolve: (r: DpsResponse) => void; reject: (e: IotHubError) => void }>();
  let failure: IotHubError | undefined;
  let closed = false;

  const fail = (err: IotHubError) => {
    failure ??= err;
    for (const p of pending.values()) p.reject(failure);
    pending.clear();
  };
  const ready = new Promise<void>((resolve, reject) => {
    client.once('connect', () => {
      client.subscribe(RESPONSES, { qos: 1 }, (err, granted) => {
        if (err || !granted || granted.some((g) => g.qos > 1)) {
          const e = new IotHubError('PROTOCOL_ERROR', 'DPS refused the response subscription');
          fail(e);
          reject(e);
          client.end(true);
          return;
        }
        resolve();
      });
    });
    client.on('error', (err: Error & { code?: number | string }) => {
      const e =
        typeof err.code === 'number'
          ? fromConnackCode(err.code)
          : /not authori[sz]ed|bad user ?name or password/i.test(err.message)
            ? new IotHubError('UNAUTHORIZED', 'DPS: not authorized: check the ID scope and the enrollment key')
            : new IotHubError('CONNECTION_LOST', `DPS over MQTT: ${err.message}`, { cause: err });
      const unauthorized =
        e.code === 'UNAUTHORIZED'
          ? new IotHubError(
              'UNAUTHORIZED',
              `DPS: unauthorized for registration id "${o.registrationId}": check the ID scope, the enrollment (group) key, and that the enrollment exists and is enabled`,
            )
          : e;
      fail(unauthorized);
      reject(unauthorized);
      client.end(true);
    });
    client.on('close', () => {
      const e = new IotHubError('CONNECTION_LOST', 'DPS closed the MQTT connection');
      fail(e);
      reject(failure ?? e);
    });
  });
  ready.catch(() => undefined);

  client.on('message', (topic, payload) => {
    const t = parseResponseTopic(topic);
    if (!t?.rid) return;
    const p = pending.get(t.rid);
    if (!p) return;
    pending.delete(t.rid);
    let body: unknown;
    try {
      body = payload.length ? JSON.parse(payload.toString('utf8')) : undefined;
    } catch {
      body = undefined;
    }
    p.resolve({ status: t.status, retryAfterSec: t.retryAfterSec, body });
  });

  const request = async (topic: (rid: string) => string, body: string): Promise<DpsResponse> => {
    await ready;
    if (failure) throw failure;
    const rid = randomUUID();
    return new Promise<DpsResponse>((resolve, reject) => {
      pending.set(rid, { resolve, reject });
      client.publish(topic(rid), body, { qos: 1 }, (err) => {
        if (err && pending.delete(rid))
          reject(new IotHubError('CONNECTION_LOST', `DPS over MQTT: ${err.message}`, { cause: err }));
      });
    });
  };

  return {
    register: (body) => request((rid) => `$dps/registrations/PUT/iotdps-register/?$rid=${rid}`, JSON.stringify(body)),
    operationStatus: (operationId) =>
      request(
        (rid) =>
          `$dps/registrations/GET/iotdps-get-operationstatus/?$rid=${rid}&operationId=${encodeURIComponent(operationId)}`,
        ' ',
      ),
    close: () =>
      new Promise<void>((resolve) => {
        if (closed) return resolve();
        closed = true;
        fail(new IotHubError('NOT_CONNECTED', 'the DPS connection was closed'));
        // Nothing is worth waiting for once the registration is over: end at once.
        client.end(true, {}, () => resolve());
        setTimeout(() => {
          client.stream?.destroy();
          resolve();
        }, 2000).unref();
      }),
  };
}
