/**
 * IoT Hub's service REST API over HTTPS (docs/PROTOCOL.md section 8), the calls AMQP has no equivalent for: purging a
 * device's C2D queue and reading the registry. A back-end SAS token signs each request; answers are reduced to the
 * fields we use, so no device key that the registry returns ever leaves this file.
 */
import * as https from 'node:https';
import { Endpoint, resolveEndpoint } from './endpoint';
import { IotHubError, redact } from './errors';
import { checkDeviceId } from './message';
import { createSasToken } from './sas';

export const REST_API_VERSION = '2021-04-12';

export interface HubRestOptions extends Endpoint {
  sharedAccessKeyName: string;
  sharedAccessKey: string;
  /** One request's whole time. Default 30 s. */
  timeoutMs?: number;
}

export interface PurgeResult {
  totalMessagesPurged: number;
  deviceId: string;
}

/** A registry entry without its keys. */
export interface RegistryDevice {
  deviceId: string;
  status: string;
  connectionState: string;
  lastActivityTime?: string;
  /** Messages in the device's C2D queue (enqueued and locked). */
  cloudToDeviceMessageCount: number;
}

function errorFor(status: number, errorCode: string, text: string, what: string): IotHubError {
  const detail = text ? ` (${redact(text).slice(0, 200)})` : '';
  if (status === 401 || status === 403)
    return new IotHubError(
      'UNAUTHORIZED',
      `the hub refused to ${what}: the policy needs ${what.startsWith('purge') ? 'ServiceConnect' : 'RegistryRead (RegistryWrite to create)'}${detail}`,
    );
  if (status === 404) return new IotHubError('DEVICE_NOT_FOUND', `cannot ${what}: device not found${detail}`);
  if (status === 429) return new IotHubError('THROTTLED', `the hub is throttling requests to ${what}${detail}`);
  if (status === 409 || status === 412)
    return new IotHubError('PRECONDITION_FAILED', `cannot ${what}: ${errorCode || status}${detail}`);
  return new IotHubError(
    status >= 500 ? 'INTERNAL' : 'PROTOCOL_ERROR',
    `the hub answered ${status} ${errorCode} to ${what}${detail}`,
  );
}

export class HubRest {
  constructor(private readonly o: HubRestOptions) {}

  private request(method: string, path: string, what: string): Promise<unknown> {
    const e = resolveEndpoint(this.o, 443);
    const token = createSasToken({
      resourceUri: this.o.hostName,
      key: this.o.sharedAccessKey,
      keyName: this.o.sharedAccessKeyName,
      expiresAt: Math.floor(Date.now() / 1000) + 300,
    });
    const sep = path.includes('?') ? '&' : '?';
    return new Promise((resolve, reject) => {
      const req = https.request(
        {
          host: e.host,
          port: e.port,
          servername: e.servername,
          ca: e.ca,
          rejectUnauthorized: e.rejectUnauthorized,
          method,
          path: `${path}${sep}api-version=${REST_API_VERSION}`,
          headers: { authorization: token, accept: 'application/json', 'content-length': 0 },
          // One request, one socket: nothing kept alive after the answer.
          agent: false,
          timeout: this.o.timeoutMs ?? 30_000,
        },
        (res) => {
          const chunks: Buffer[] = [];
          let size = 0;
          res.on('data', (c: Buffer) => {
            size += c.length;
            if (size <= 8 << 20) chunks.push(c);
          });
          res.on('end', () => {
            const text = Buffer.concat(chunks).toString('utf8');
            const status = res.statusCode ?? 0;
            if (status < 200 || status >= 300) {
              const code = String(res.headers['iothub-errorcode'] ?? '');
              let message = '';
              try {
                message = String((JSON.parse(text) as { Message?: unknown }).Message ?? '');
              } catch {
                message = text.slice(0, 200);
              }
              return reject(errorFor(status, code, message, what));
            }
            if (!text) return resolve(undefined);
            try {
              resolve(JSON.parse(text));
            } catch {
              reject(new IotHubError('PROTOCOL_ERROR', `the hub's answer to ${what} is not JSON`));
            }
          });
          res.on('error', (err) => reject(new IotHubError('CONNECTION_LOST', `${what}: ${err.message}`)));
        },
      );
      req.on('timeout', () => req.destroy(new Error('no answer in time')));
      req.on('error', (err) =>
        reject(new IotHubError('NOT_CONNECTED', `cannot reach the hub's HTTPS endpoint to ${what}: ${err.message}`)),
      );
      req.end();
    });
  }

  /** Deletes every message waiting in the device's C2D queue; the hub sends feedback `Purged` for those that asked. */
  async purge(deviceId: string): Promise<PurgeResult> {
    checkDeviceId(deviceId);
    const body = (await this.request(
      'DELETE',
      `/devices/${encodeURIComponent(deviceId)}/commands`,
      `purge the queue of ${deviceId}`,
    )) as { totalMessagesPurged?: unknown } | undefined;
    const n = Number(body?.totalMessagesPurged ?? 0);
    return { totalMessagesPurged: Number.isFinite(n) ? n : 0, deviceId };
  }

  /** The registry (GET /devices, at most `top`), keys left out. */
  async listDevices(top = 1000): Promise<RegistryDevice[]> {
    const body = await this.request('GET', `/devices?top=${top}`, 'list the devices');
    if (!Array.isArray(body)) throw new IotHubError('PROTOCOL_ERROR', "the hub's device list is not an array");
    return body.map((d: Record<string, unknown>) => ({
      deviceId: String(d.deviceId ?? ''),
      status: String(d.status ?? ''),
      connectionState: String(d.connectionState ?? ''),
      lastActivityTime: typeof d.lastActivityTime === 'string' ? d.lastActivityTime : undefined,
      cloudToDeviceMessageCount: Number(d.cloudToDeviceMessageCount ?? 0) || 0,
    }));
  }
}
