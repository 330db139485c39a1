/**
 * The Device Provisioning Service (DPS) device client: registers one registration id with a symmetric key and follows
 * the operation until the device is assigned to a hub (docs/PROTOCOL.md, "Device Provisioning Service"). Over MQTT (core/dps-mqtt.ts) or
 * HTTPS (here, node's https). No Node-RED import; the key is used to sign and never leaves this file in a message.
 */
import * as https from 'node:https';
import { IotHubError, redact } from './errors';
import { openDpsMqtt } from './dps-mqtt';
import { createSasToken } from './sas';

/** The one home of group key derivation is core/dps-key.ts (the local DPS verifies with it too). */
export { deriveDeviceKey } from './dps-key';

export const DPS_GLOBAL_ENDPOINT = 'global.azure-devices-provisioning.net';
/** The api-version the official SDKs (azure-iot-provisioning-device 1.9) speak. */
export const DPS_API_VERSION = '2019-03-31';
export const DPS_USER_AGENT = 'iothub-c2d-node-red/0.1';
/** The SDKs' wait between polls when DPS names none. */
const DEFAULT_POLL_MS = 2000;
const MIN_POLL_MS = 100;

export type DpsTransportKind = 'mqtt' | 'https';

const REGISTRATION_ID = /^[A-Za-z0-9._:-]{0,127}[A-Za-z0-9-]$/;

/** DPS's rule for a registration id: 1-128 letters, digits and - . _ :, ending in a letter, digit or -. */
export function checkRegistrationId(id: string, field = 'deviceId'): string {
  if (REGISTRATION_ID.test(id)) return id;
  const shown = JSON.stringify(id.length > 40 ? `${id.slice(0, 40)}…` : id);
  throw new IotHubError(
    'INVALID_ARGUMENT',
    `registration id ${shown} is not one DPS accepts: 1 to 128 letters, digits and - . _ : ending in a letter, digit or -`,
    { field },
  );
}

export interface DpsEndpoint {
  /** The global endpoint or a DPS host, host[:port] (the local DPS names its port). */
  endpoint: string;
  /** Where to dial instead of the endpoint's host (127.0.0.1 for the local hub). */
  connectHost?: string;
  ca?: string;
  rejectUnauthorized?: boolean;
}

export interface DpsRegistrationOptions extends DpsEndpoint {
  idScope: string;
  registrationId: string;
  /** The individual enrollment key, or the key derived from a group's (deriveDeviceKey). */
  symmetricKey: string;
  transport: DpsTransportKind;
  /** Everything (dialling, registering, polling) must be done in this time. Default 60 s. */
  timeoutMs?: number;
  tokenLifetimeSec?: number;
  /** Custom allocation data, sent as `payload`. */
  payload?: unknown;
  /** Aborts the registration (the node closed). */
  signal?: AbortSignal;
}

export interface DpsAssignment {
  assignedHub: string;
  deviceId: string;
}

/** One DPS answer: the HTTP status (or the MQTT response topic's), retry-after in seconds, the JSON body. */
export interface DpsResponse {
  status: number;
  retryAfterSec?: number;
  body: unknown;
}

/** What a registration transport offers the operation loop below. */
export interface DpsTransport {
  register(body: object): Promise<DpsResponse>;
  operationStatus(operationId: string): Promise<DpsResponse>;
  close(): Promise<void>;
}

export interface DpsConnectOptions {
  host: string;
  port: number;
  servername: string;
  ca?: string;
  rejectUnauthorized: boolean;
  idScope: string;
  registrationId: string;
  sasToken: string;
  timeoutMs: number;
}

/** host[:port] split; the port defaults by transport (MQTT 8883, HTTPS 443), as the SDKs dial. */
export function parseDpsEndpoint(
  e: DpsEndpoint,
  transport: DpsTransportKind,
): Omit<DpsConnectOptions, 'idScope' | 'registrationId' | 'sasToken' | 'timeoutMs'> {
  const m = /^([A-Za-z0-9.-]+)(?::(\d{1,5}))?$/.exec(e.endpoint.trim());
  if (!m)
    throw new IotHubError(
      'INVALID_ARGUMENT',
      `the DPS endpoint ${JSON.stringify(e.endpoint.slice(0, 60))} is not host[:port]: use ${DPS_GLOBAL_ENDPOINT}`,
      { field: 'dpsEndpoint' },
    );
  return {
    host: e.connectHost || m[1],
    port: m[2] ? Number(m[2]) : transport === 'mqtt' ? 8883 : 443,
    servername: m[1],
    ca: e.ca,
    rejectUnauthorized: e.rejectUnauthorized !== false,
  };
}

/**
 * The token DPS wants: resource `{idScope}/registrations/{registrationId}` (not url-encoded: byte for byte the token of
 * azure-iot-security-symmetric-key), key name `registration`.
 */
export function registrationToken(idScope: string, registrationId: string, key: string, expiresAt: number): string {
  return createSasToken({
    resourceUri: `${idScope}/registrations/${registrationId}`,
    key,
    keyName: 'registration',
    expiresAt,
    rawResource: true,
  });
}

interface DpsErrorBody {
  errorCode?: unknown;
  message?: unknown;
}

/** DPS's own words, redacted and short, for the end of a message. */
function detail(body: unknown): string {
  const b = (body && typeof body === 'object' ? body : {}) as DpsErrorBody;
  const text = typeof b.message === 'string' ? b.message : '';
  const code = typeof b.errorCode === 'number' || typeof b.errorCode === 'string' ? String(b.errorCode) : '';
  const both = [code, redact(text).slice(0, 200)].filter(Boolean).join(' ');
  return both ? ` (${both})` : '';
}

/** A refusal by status code, as a cause a user can act on. */
export function dpsError(status: number, body: unknown, registrationId: string): IotHubError {
  const d = detail(body);
  switch (status) {
    case 400:
      return new IotHubError('INVALID_ARGUMENT', `DPS refused the registration request (400): check the ID scope${d}`, {
        field: 'dpsIdScope',
      });
    case 401:
      return new IotHubError(
        'UNAUTHORIZED',
        `DPS: unauthorized for registration id "${registrationId}": check the ID scope, the enrollment (group) key, and that the enrollment exists and is enabled${d}`,
      );
    case 403:
      return new IotHubError('QUOTA_EXCEEDED', `DPS refused the registration (403): a quota is used up${d}`);
    case 404:
      return new IotHubError(
        'DEVICE_NOT_FOUND',
        `DPS knows no enrollment or operation for registration id "${registrationId}" (404)${d}`,
      );
    case 412:
      return new IotHubError('PRECONDITION_FAILED', `DPS: a precondition failed (412)${d}`);
    default:
      return new IotHubError('PROTOCOL_ERROR', `DPS answered ${status}${d}`);
  }
}

interface RegistrationBody {
  operationId?: unknown;
  status?: unknown;
  registrationState?: {
    assignedHub?: unknown;
    deviceId?: unknown;
    status?: unknown;
    errorCode?: unknown;
    errorMessage?: unknown;
  };
}

function delay(ms: number, signal: AbortSignal | undefined): Promise<void> {
  return new Promise((resolve, reject) => {
    if (signal?.aborted) return reject(aborted());
    const timer = setTimeout(() => {
      signal?.removeEventListener('abort', onAbort);
      resolve();
    }, ms);
    const onAbort = () => {
      clearTimeout(timer);
      reject(aborted());
    };
    signal?.addEventListener('abort', onAbort, { once: true });
  });
}

const aborted = () => new IotHubError('NOT_CONNECTED', 'the registration was cancelled (the node closed)');

/**
 * Registers and follows the operation until assigned: polls with the operation id, waiting what DPS says in retry-after
 * (2 s when it says nothing), and repeats a request DPS throttled (429) or failed on its side (5xx) after retry-after,
 * as the SDKs do. Fails with an IotHubError: UNAUTHORIZED (401, a disabled enrollment), TIMEOUT, or the refusal mapped.
 */
export async function registerDevice(o: DpsRegistrationOptions): Promise<DpsAssignment> {
  checkRegistrationId(o.registrationId);
  if (!o.idScope.trim())
    throw new IotHubError('INVALID_ARGUMENT', 'no ID scope: copy it from the DPS overview (or IoT Central)', {
      field: 'dpsIdScope',
    });
  const timeoutMs = o.timeoutMs ?? 60_000;
  const endpoint = parseDpsEndpoint(o, o.transport);
  const expiresAt = Math.floor(Date.now() / 1000) + (o.tokenLifetimeSec ?? 3600);
  const sasToken = registrationToken(o.idScope, o.registrationId, o.symmetricKey, expiresAt);
  const connect: DpsConnectOptions = {
    ...endpoint,
    idScope: o.idScope,
    registrationId: o.registrationId,
    sasToken,
    timeoutMs,
  };

  const deadline = new AbortController();
  const timer = setTimeout(() => deadline.abort(), timeoutMs);
  const onAbort = () => deadline.abort();
  o.signal?.addEventListener('abort', onAbort, { once: true });
  const transport = o.transport === 'mqtt' ? openDpsMqtt(connect) : openDpsHttps(connect);
  // Either way out (the node closed, the time is up) ends the transport, which fails the request under way.
  const ended = new Promise<never>((_resolve, reject) => {
    deadline.signal.addEventListener(
      'abort',
      () =>
        reject(
          o.signal?.aborted
            ? aborted()
            : new IotHubError(
                'TIMEOUT',
                `DPS did not assign registration id "${o.registrationId}" in ${Math.round(timeoutMs / 1000)} s`,
              ),
        ),
      { once: true },
    );
  });
  ended.catch(() => undefined);
  const step = <T>(p: Promise<T>) => Promise.race([p, ended]);
  try {
    const body: Record<string, unknown> = { registrationId: o.registrationId };
    if (o.payload !== undefined) body.payload = o.payload;
    let operationId: string | undefined;
    for (;;) {
      const res = await step(operationId ? transport.operationStatus(operationId) : transport.register(body));
      // What DPS says, but never a hot loop on a 0 (the deadline bounds a long one).
      const waitMs =
        res.retryAfterSec !== undefined && res.retryAfterSec >= 0
          ? Math.max(MIN_POLL_MS, res.retryAfterSec * 1000)
          : DEFAULT_POLL_MS;
      if (res.status === 429 || res.status >= 500) {
        await step(delay(waitMs, deadline.signal));
        continue;
      }
      if (res.status >= 300) throw dpsError(res.status, res.body, o.registrationId);
      const r = (res.body && typeof res.body === 'object' ? res.body : {}) as RegistrationBody;
      const status = typeof r.status === 'string' ? r.status.toLowerCase() : '';
      if (status === 'assigned') {
        const s = r.registrationState ?? {};
        if (typeof s.assignedHub !== 'string' || !s.assignedHub || typeof s.deviceId !== 'string' || !s.deviceId)
          throw new IotHubError('PROTOCOL_ERROR', 'DPS said assigned but named no hub or device id');
        return { assignedHub: s.assignedHub, deviceId: s.deviceId };
      }
      if (status === 'assigning' || status === 'unassigned' || status === 'registering') {
        if (typeof r.operationId === 'string' && r.operationId) operationId = r.operationId;
        await step(delay(waitMs, deadline.signal));
        continue;
      }
      const s = r.registrationState ?? {};
      const why = typeof s.errorMessage === 'string' ? ` (${redact(s.errorMessage).slice(0, 200)})` : '';
      if (status === 'disabled')
        throw new IotHubError('UNAUTHORIZED', `DPS: the enrollment for "${o.registrationId}" is disabled${why}`);
      if (status === 'failed') {
        const code = Number(s.errorCode);
        throw new IotHubError(
          code >= 401000 && code < 402000 ? 'UNAUTHORIZED' : 'PROTOCOL_ERROR',
          `DPS: the registration of "${o.registrationId}" failed${why}`,
        );
      }
      throw new IotHubError(
        'PROTOCOL_ERROR',
        `DPS answered an unknown status ${JSON.stringify(String(r.status).slice(0, 40))}`,
      );
    }
  } finally {
    clearTimeout(timer);
    o.signal?.removeEventListener('abort', onAbort);
    await transport.close();
  }
}

/** The HTTPS transport: PUT .../register, GET .../operations/{id}, on one keep-alive agent closed at the end. */
export function openDpsHttps(o: DpsConnectOptions): DpsTransport {
  const agent = new https.Agent({ keepAlive: true, maxSockets: 1 });
  const requests = new Set<import('node:http').ClientRequest>();
  const base = `/${encodeURIComponent(o.idScope)}/registrations/${encodeURIComponent(o.registrationId)}`;
  const call = (method: 'PUT' | 'GET', path: string, body?: object) =>
    new Promise<DpsResponse>((resolve, reject) => {
      const data = body ? JSON.stringify(body) : undefined;
      const req = https.request(
        {
          host: o.host,
          port: o.port,
          servername: o.servername,
          ca: o.ca,
          rejectUnauthorized: o.rejectUnauthorized,
          agent,
          method,
          path: `${path}${path.includes('?') ? '&' : '?'}api-version=${DPS_API_VERSION}`,
          timeout: o.timeoutMs,
          headers: {
            Accept: 'application/json',
            'Content-Type': 'application/json; charset=utf-8',
            'User-Agent': DPS_USER_AGENT,
            Authorization: o.sasToken,
            ...(data ? { 'Content-Length': Buffer.byteLength(data) } : {}),
          },
        },
        (res) => {
          const chunks: Buffer[] = [];
          let size = 0;
          res.on('data', (c: Buffer) => {
            size += c.length;
            // An answer is a few hundred bytes: a peer that sends more is not DPS.
            if (size > 256 * 1024) req.destroy(new Error('the answer is too large'));
            else chunks.push(c);
          });
          res.on('end', () => {
            requests.delete(req);
            const text = Buffer.concat(chunks).toString('utf8');
            let json: unknown;
            try {
              json = text ? JSON.parse(text) : undefined;
            } catch {
              json = undefined;
            }
            const ra = Number(res.headers['retry-after']);
            resolve({
              status: res.statusCode ?? 0,
              retryAfterSec: Number.isFinite(ra) ? ra : undefined,
              body: json,
            });
          });
        },
      );
      requests.add(req);
      req.on('timeout', () => req.destroy(new Error('no answer in time')));
      req.on('error', (err) => {
        requests.delete(req);
        reject(new IotHubError('CONNECTION_LOST', `DPS over HTTPS: ${err.message}`, { cause: err }));
      });
      req.end(data);
    });
  return {
    register: (body) => call('PUT', `${base}/register`, body),
    operationStatus: (id) => call('GET', `${base}/operations/${encodeURIComponent(id)}`),
    close: async () => {
      for (const r of requests) r.destroy();
      requests.clear();
      agent.destroy();
    },
  };
}
