/**
 * The local hub's HTTPS port: the registry and purge REST API (docs/PROTOCOL.md section 8) and the
 * WebSocket transports (`/$iothub/websocket` for MQTT and AMQP, `/$servicebus/websocket` for AMQP).
 */
import * as https from 'node:https';
import * as net from 'node:net';
import type { TLSSocket } from 'node:tls';
import { IncomingMessage, ServerResponse } from 'node:http';
import { randomUUID } from 'node:crypto';
import { createWebSocketStream, WebSocketServer } from 'ws';
import { IotHubError } from '../core/errors';
import { AmqpEndpoint } from './amqp-endpoint';
import { HubContext } from './context';
import { ServerSockets } from './server-sockets';
import { MqttEndpoint } from './mqtt-endpoint';
import { DpsEndpoint } from './dps-mqtt';
import { handleDpsRequest, isDpsPath } from './dps-rest';
import { authTypeOf, Device, Permission } from './registry';

function deviceJson(hub: HubContext, d: Device): object {
  return {
    deviceId: d.deviceId,
    moduleId: null,
    generationId: d.generationId,
    etag: d.etag,
    status: d.status,
    statusReason: null,
    connectionState: hub.isDeviceConnected(d.deviceId) ? 'Connected' : 'Disconnected',
    lastActivityTime: '0001-01-01T00:00:00Z',
    cloudToDeviceMessageCount: hub.queues.length(d.deviceId),
    authentication:
      authTypeOf(d) !== 'sas'
        ? {
            type: authTypeOf(d),
            symmetricKey: { primaryKey: null, secondaryKey: null },
            x509Thumbprint: {
              primaryThumbprint: d.x509Thumbprint ?? null,
              secondaryThumbprint: d.x509SecondaryThumbprint ?? null,
            },
          }
        : {
            type: 'sas',
            symmetricKey: { primaryKey: d.primaryKey, secondaryKey: d.secondaryKey },
            x509Thumbprint: { primaryThumbprint: null, secondaryThumbprint: null },
          },
    capabilities: { iotEdge: false },
  };
}

class HttpError extends Error {
  constructor(
    readonly status: number,
    readonly errorCode: string,
    message: string,
  ) {
    super(message);
  }
}

function send(res: ServerResponse, status: number, body?: object): void {
  const text = body === undefined ? '' : JSON.stringify(body);
  const headers: Record<string, string | number> = {
    'Content-Type': 'application/json; charset=utf-8',
    'Content-Length': Buffer.byteLength(text),
  };
  const code = (body as { errorCode?: string } | undefined)?.errorCode;
  if (status >= 400 && code) headers['iothub-errorcode'] = code;
  res.writeHead(status, headers);
  res.end(text);
}

function readBody(req: IncomingMessage): Promise<Record<string, unknown>> {
  return new Promise((resolve, reject) => {
    const chunks: Buffer[] = [];
    let size = 0;
    req.on('data', (c: Buffer) => {
      size += c.length;
      if (size > 1 << 20) reject(new HttpError(413, 'MessageTooLarge', 'request body too large'));
      else chunks.push(c);
    });
    req.on('end', () => {
      const text = Buffer.concat(chunks).toString('utf8');
      if (!text) return resolve({});
      try {
        resolve(JSON.parse(text) as Record<string, unknown>);
      } catch {
        reject(new HttpError(400, 'ArgumentInvalid', 'the body is not JSON'));
      }
    });
    req.on('error', reject);
  });
}

export function createHttpsEndpoint(
  hub: HubContext,
  amqp: AmqpEndpoint,
  mqtt: MqttEndpoint,
  key: string,
  cert: string,
  dps?: DpsEndpoint,
) {
  const authorize = (req: IncomingMessage, need: Permission) => {
    const auth = req.headers.authorization;
    if (!auth) throw new HttpError(401, 'IotHubUnauthorizedAccess', 'Authorization header missing');
    try {
      hub.registry.authenticateService(auth, need);
    } catch (err) {
      throw new HttpError(401, 'IotHubUnauthorizedAccess', (err as Error).message);
    }
  };

  async function route(req: IncomingMessage, res: ServerResponse): Promise<void> {
    // DPS's REST paths too: its HTTP transport always dials port 443, where this port usually is
    // (docs/PROTOCOL.md, DPS section, the fact on the provisioning host).
    if (dps && isDpsPath(req.url)) return handleDpsRequest(dps.provisioning, req, res);
    const url = new URL(req.url ?? '/', 'https://local');
    if (/^\/devices\/?$/.test(url.pathname)) {
      // The registry's list (Registry.list in azure-iothub): GET /devices?top=N, at most 1000 as IoT Hub.
      if (req.method !== 'GET') throw new HttpError(405, 'MethodNotAllowed', 'use GET to list devices');
      authorize(req, 'registryRead');
      const top = Math.min(1000, Math.max(1, Number(url.searchParams.get('top')) || 1000));
      return send(
        res,
        200,
        [...hub.registry.devices.values()].slice(0, top).map((d) => deviceJson(hub, d)),
      );
    }
    const m = /^\/devices\/([^/]+)(\/commands)?\/?$/.exec(url.pathname);
    if (!m) throw new HttpError(404, 'NotFound', `no such resource: ${url.pathname}`);
    const deviceId = decodeURIComponent(m[1]);
    const existing = hub.registry.devices.get(deviceId);
    if (m[2]) {
      if (req.method !== 'DELETE') throw new HttpError(405, 'MethodNotAllowed', 'use DELETE to purge');
      authorize(req, 'serviceConnect');
      if (!existing) throw new HttpError(404, 'DeviceNotFound', `Device ${deviceId} not found`);
      const totalMessagesPurged = hub.queues.purge(deviceId);
      return send(res, 200, { totalMessagesPurged, deviceId, moduleId: null });
    }
    switch (req.method) {
      case 'GET':
        authorize(req, 'registryRead');
        if (!existing) throw new HttpError(404, 'DeviceNotFound', `Device ${deviceId} not found`);
        return send(res, 200, deviceJson(hub, existing));
      case 'PUT': {
        authorize(req, 'registryWrite');
        const body = await readBody(req);
        const auth = (body.authentication ?? {}) as {
          type?: string;
          symmetricKey?: { primaryKey?: string; secondaryKey?: string };
          x509Thumbprint?: { primaryThumbprint?: string; secondaryThumbprint?: string };
        };
        const status = body.status === 'disabled' ? 'disabled' : 'enabled';
        if (existing) {
          const ifMatch = req.headers['if-match'];
          if (!ifMatch)
            throw new HttpError(409, 'DeviceAlreadyExists', `A device with ID '${deviceId}' is already registered.`);
          if (ifMatch !== '*' && ifMatch.replace(/"/g, '') !== existing.etag)
            throw new HttpError(412, 'InvalidEtag', 'the etag does not match');
          const d = hub.registry.update(deviceId, {
            status,
            primaryKey: auth.symmetricKey?.primaryKey || undefined,
            secondaryKey: auth.symmetricKey?.secondaryKey || undefined,
          });
          return send(res, 200, deviceJson(hub, d));
        }
        const d = hub.registry.create(deviceId, {
          status,
          authType: auth.type === 'selfSigned' || auth.type === 'certificateAuthority' ? auth.type : undefined,
          x509Thumbprint: auth.x509Thumbprint?.primaryThumbprint || undefined,
          x509SecondaryThumbprint: auth.x509Thumbprint?.secondaryThumbprint || undefined,
          primaryKey: auth.symmetricKey?.primaryKey || undefined,
          secondaryKey: auth.symmetricKey?.secondaryKey || undefined,
        });
        return send(res, 200, deviceJson(hub, d));
      }
      case 'DELETE':
        authorize(req, 'registryWrite');
        if (!existing) throw new HttpError(404, 'DeviceNotFound', `Device ${deviceId} not found`);
        hub.queues.purge(deviceId);
        hub.registry.remove(deviceId);
        hub.queues.forget(deviceId);
        return send(res, 204);
      default:
        throw new HttpError(405, 'MethodNotAllowed', `${req.method} is not supported here`);
    }
  }

  // Client certificates are asked for (X.509 devices over MQTT on WebSockets) and checked by the MQTT endpoint.
  const server = https.createServer({ key, cert, requestCert: true, rejectUnauthorized: false }, (req, res) => {
    route(req, res).catch((err: unknown) => {
      const e =
        err instanceof HttpError
          ? err
          : err instanceof IotHubError
            ? new HttpError(400, 'ArgumentInvalid', err.message)
            : new HttpError(500, 'ServerError', 'internal error');
      send(res, e.status, {
        Message: `ErrorCode:${e.errorCode};${e.message}`,
        ExceptionMessage: `Tracking ID:${randomUUID().replace(/-/g, '')}-G:0-TimeStamp:${new Date().toISOString()}`,
        errorCode: e.errorCode,
      });
    });
  });
  const servers = new ServerSockets();
  servers.add(server);
  server.on('connection', (s: net.Socket) => s.setNoDelay(true));

  const wss = new WebSocketServer({
    noServer: true,
    handleProtocols: (protocols: Set<string>) => [...protocols].find((p) => /^(amqpwsb10|mqtt)$/i.test(p)) ?? false,
  });
  server.on('upgrade', (req: IncomingMessage, socket: net.Socket, head: Buffer) => {
    const p = (req.url ?? '').split('?')[0].toLowerCase();
    if (p !== '/$iothub/websocket' && p !== '/$servicebus/websocket') {
      socket.destroy();
      return;
    }
    socket.setNoDelay(true);
    wss.handleUpgrade(req, socket, head, (ws) => {
      if (/^amqpwsb10$/i.test(ws.protocol)) amqp.acceptWebSocket(ws, req.socket);
      else if (/^mqtt$/i.test(ws.protocol) && p === '/$iothub/websocket') {
        // The stream answers for the TLS connection under it: its client certificate (see x509-auth peerChain).
        const tlsSocket = req.socket as TLSSocket;
        const stream = Object.assign(createWebSocketStream(ws), {
          getPeerCertificate: (detailed: boolean) => tlsSocket.getPeerCertificate(detailed),
        });
        // DPS's MQTT over WebSockets dials this same path on 443: its CONNECT's user name tells it from a device's.
        if (dps) dps.handleMqttStream(stream, (s) => mqtt.handleStream(s));
        else mqtt.handleStream(stream);
      } else ws.close(1002, 'unsupported subprotocol');
    });
  });

  return {
    listen(port: number, host: string): Promise<number> {
      return new Promise((resolve, reject) => {
        server.once('error', reject);
        server.listen(port, host, () => {
          server.off('error', reject);
          resolve((server.address() as net.AddressInfo).port);
        });
      });
    },
    async close(): Promise<void> {
      for (const c of wss.clients) c.terminate();
      await servers.close();
      wss.close();
    },
  };
}
