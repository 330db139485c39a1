/**
 * The editor's admin endpoints for the IoT Hub sidebar and the device pickers (the logic is core/hub-admin.ts). Every
 * route checks Node-RED's permissions: reading needs `iothub-connection.read`, purging and creating `.write`. Ids are
 * checked before use; no answer carries a key but the connection string of a device the user just created.
 */
import { IotHubError } from './core/errors';
import type { HubAdmin } from './core/hub-admin';
import { HttpHandler, HttpRequest, HttpResponse, NodeAPI } from './node-red';

/** What a config node offers the admin API (src/iothub-connection.ts). */
export interface AdminCapable {
  type: string;
  admin?: Promise<HubAdmin>;
}

const NODE_ID = /^[A-Za-z0-9._-]{1,64}$/;

const STATUS_OF: Partial<Record<string, number>> = {
  INVALID_ARGUMENT: 400,
  INVALID_CONNECTION_STRING: 409,
  DEVICE_NOT_FOUND: 404,
  PRECONDITION_FAILED: 409,
  THROTTLED: 429,
};

function fail(res: HttpResponse, status: number, code: string, message: string, field?: string): void {
  res.status(status).json({ error: { code, message, ...(field ? { field } : {}) } });
}

function failWith(res: HttpResponse, err: unknown): void {
  if (err instanceof IotHubError) fail(res, STATUS_OF[err.code] ?? 502, err.code, err.message, err.field);
  else fail(res, 500, 'INTERNAL', 'internal error');
}

/** A number from the query, within bounds. */
function bounded(v: unknown, min: number, max: number, fallback: number): number {
  const n = Number(v);
  return Number.isFinite(n) ? Math.min(max, Math.max(min, Math.floor(n))) : fallback;
}

export function registerAdminApi(RED: NodeAPI): void {
  const read = RED.auth.needsPermission('iothub-connection.read');
  const writeGuard = RED.auth.needsPermission('iothub-connection.write');
  // Node-RED answers 401 to a signed-in user who lacks the permission too; after `read` has signed the user in, a
  // refusal is a 403 (authenticated, not allowed), which the editor can tell from an expired session.
  const write: HttpHandler = (req, res, next) => {
    const r = res as HttpResponse & { status(n: number): unknown };
    const status = r.status.bind(r);
    r.status = ((n: number) => status(n === 401 && (req as { user?: unknown }).user ? 403 : n)) as typeof r.status;
    writeGuard(req, res, () => {
      r.status = status as typeof r.status;
      next();
    });
  };

  async function withAdmin(req: HttpRequest, res: HttpResponse, use: (a: HubAdmin) => Promise<void>): Promise<void> {
    const id = req.params.id;
    if (!NODE_ID.test(id ?? '')) return fail(res, 400, 'INVALID_ARGUMENT', 'the config node id is not valid', 'id');
    const node = RED.nodes.getNode(id) as unknown as AdminCapable | null;
    if (!node || node.type !== 'iothub-connection' || !node.admin)
      return fail(res, 404, 'NOT_DEPLOYED', 'no deployed IoT Hub config node with this id: deploy it first', 'id');
    let admin: HubAdmin;
    try {
      admin = await node.admin;
    } catch (err) {
      return failWith(res, err);
    }
    try {
      await use(admin);
    } catch (err) {
      failWith(res, err);
    }
  }

  const base = '/iothub-c2d/hub/:id';
  RED.httpAdmin.get(`${base}/devices`, read, (req, res) => {
    void withAdmin(req, res, async (a) => {
      const list = await a.devices();
      res.json({ ...list, canCreate: a.isLocal });
    });
  });
  RED.httpAdmin.get(`${base}/feedback`, read, (req, res) => {
    void withAdmin(req, res, async (a) => res.json(a.feedback(bounded(req.query?.minutes, 1, 15, 10))));
  });
  RED.httpAdmin.get(`${base}/sends`, read, (req, res) => {
    void withAdmin(req, res, async (a) => res.json({ sends: a.sends(bounded(req.query?.limit, 1, 200, 50)) }));
  });
  RED.httpAdmin.post(`${base}/devices/:deviceId/purge`, write, (req, res) => {
    void withAdmin(req, res, async (a) => res.json(await a.purge(req.params.deviceId ?? '')));
  });
  RED.httpAdmin.post(`${base}/devices`, write, (req, res) => {
    const deviceId = typeof req.body?.deviceId === 'string' ? req.body.deviceId.trim() : '';
    void withAdmin(req, res, async (a) => res.json(await a.createDevice(deviceId)));
  });
}
