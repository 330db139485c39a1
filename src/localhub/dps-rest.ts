/**
 * DPS's device REST API (docs/PROTOCOL.md, section "Device Provisioning Service"), as azure-iot-provisioning-device-http
 * uses it: `PUT /{idScope}/registrations/{registrationId}/register` and
 * `GET /{idScope}/registrations/{registrationId}/operations/{operationId}`, authorized by a `SharedAccessSignature`
 * header. Served on the DPS port and on the hub's HTTPS port.
 */
import { randomUUID } from 'node:crypto';
import { IncomingMessage, ServerResponse } from 'node:http';
import { DpsAnswer, Provisioning } from './dps';

const REGISTER = /^\/([^/]+)\/registrations\/([^/]+)\/register\/?$/;
const OPERATION = /^\/([^/]+)\/registrations\/([^/]+)\/operations\/([^/]+)\/?$/;

/** True when the path is one of DPS's device paths (the hub's HTTPS port hands those here). */
export function isDpsPath(url: string | undefined): boolean {
  const p = (url ?? '/').split('?')[0];
  return REGISTER.test(p) || OPERATION.test(p);
}

function decode(s: string): string {
  try {
    return decodeURIComponent(s);
  } catch {
    return s;
  }
}

function reply(res: ServerResponse, a: DpsAnswer): void {
  const text = JSON.stringify(a.body);
  const headers: Record<string, string | number> = {
    'Content-Type': 'application/json; charset=utf-8',
    'Content-Length': Buffer.byteLength(text),
  };
  if (a.retryAfter !== undefined) headers['retry-after'] = a.retryAfter;
  const code = (a.body as { errorCode?: number }).errorCode;
  if (a.status >= 400 && code !== undefined) headers['x-ms-error-code'] = String(code);
  res.writeHead(a.status, headers);
  res.end(text);
}

function readJson(req: IncomingMessage): Promise<unknown> {
  return new Promise((resolve) => {
    const chunks: Buffer[] = [];
    let size = 0;
    req.on('data', (c: Buffer) => {
      size += c.length;
      if (size <= 64 * 1024) chunks.push(c);
    });
    req.on('end', () => {
      if (size > 64 * 1024) return resolve(null);
      const text = Buffer.concat(chunks).toString('utf8');
      try {
        resolve(text ? JSON.parse(text) : {});
      } catch {
        resolve(null);
      }
    });
    req.on('error', () => resolve(null));
  });
}

const bad = (reason: string): DpsAnswer => ({
  status: 400,
  body: {
    errorCode: 400004,
    trackingId: randomUUID(),
    message: 'Bad request',
    timestampUtc: new Date().toISOString(),
    info: { reason },
  },
});

export async function handleDpsRequest(dps: Provisioning, req: IncomingMessage, res: ServerResponse): Promise<void> {
  const path = (req.url ?? '/').split('?')[0];
  const auth = req.headers.authorization;
  const reg = REGISTER.exec(path);
  if (reg) {
    if (req.method !== 'PUT') return reply(res, bad(`use PUT for ${path}`));
    const body = await readJson(req);
    if (body === null) return reply(res, bad('the body must be JSON of at most 64 KiB: {"registrationId": "..."}'));
    return reply(res, dps.register(decode(reg[1]), decode(reg[2]), auth, body));
  }
  const op = OPERATION.exec(path);
  if (op) {
    if (req.method !== 'GET') return reply(res, bad(`use GET for ${path}`));
    req.resume();
    return reply(res, dps.operationStatus(decode(op[1]), decode(op[2]), auth, decode(op[3])));
  }
  req.resume();
  reply(res, {
    status: 404,
    body: { errorCode: 404000, message: 'Not found', info: { reason: `no DPS resource ${path}` } },
  });
}
