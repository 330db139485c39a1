/**
 * Azure IoT Hub config node: holds the connection string as a credential and owns the
 * connections (see core/hub-session). In local mode it starts the built-in local hub.
 */
import { ConnectionInfo, parseConnectionString } from './core/connection-string';
import type { StatusEvent } from './core/state';
import type { DeviceCredentials } from './core/transport';
import { IotHubError } from './core/errors';
import { HubAdmin } from './core/hub-admin';
import { registerAdminApi } from './admin-api';
import { Capabilities, capabilitiesOf, DeviceLease, DeviceUser, HubSession, ServiceLease } from './core/hub-session';
import type { LocalHub } from './localhub/index';
import { acquireLocalHub, releaseLocalHub } from './localhub/shared-hub';
import { failureStatus } from './node-lease';
import { certificateStatus } from './core/x509';
import { connectionSettings } from './node-settings';
import { Node, NodeAPI, NodeDef, NodeStatus } from './node-red';

export interface ConnectionNode extends Node {
  /** Why this config cannot connect, if it cannot (shown by every user). */
  configError?: IotHubError;
  capabilities?: Capabilities;
  useDevice(
    deviceId: string,
    user: DeviceUser,
    settle: 'auto' | 'manual',
    credentials?: DeviceCredentials & { hostName?: string },
  ): Promise<DeviceLease>;
  useService(onStatus: (s: StatusEvent) => void): Promise<ServiceLease>;
  statusOf(ev: StatusEvent): NodeStatus;
  /** The editor's view of this hub (src/admin-api.ts). */
  admin?: Promise<HubAdmin>;
}

module.exports = function (RED: NodeAPI) {
  /** `${NAME}` in a credential reads the environment, as Node-RED does for properties. */
  function expandEnv(node: Node, text: string | undefined): string | undefined {
    if (!text) return text;
    return text.replace(/\$\{([A-Za-z_][A-Za-z0-9_]*)\}/g, (_m, name: string) => {
      let v: unknown;
      RED.util.evaluateNodeProperty(name, 'env', node, {}, (_e, r) => {
        v = r;
      });
      return typeof v === 'string' ? v : '';
    });
  }

  function statusOf(ev: StatusEvent): NodeStatus {
    switch (ev.state) {
      case 'connected':
        return { fill: 'green', shape: 'dot', text: RED._('iothub-connection.status.connected') };
      case 'connecting':
        return { fill: 'yellow', shape: 'ring', text: RED._('iothub-connection.status.connecting') };
      case 'reconnecting':
        return {
          fill: 'yellow',
          shape: 'ring',
          text:
            certificateStatus(ev.error) ??
            RED._('iothub-connection.status.reconnecting', {
              s: Math.ceil((ev.nextRetryMs ?? 0) / 1000),
              n: ev.attempt ?? 1,
            }),
        };
      case 'unauthorized':
        return {
          fill: 'red',
          shape: 'ring',
          text: certificateStatus(ev.error) ?? RED._('iothub-connection.status.unauthorized'),
        };
      case 'error':
        return ev.error
          ? failureStatus(RED, ev.error)
          : { fill: 'red', shape: 'ring', text: RED._('iothub-connection.status.error') };
      default:
        return { fill: 'grey', shape: 'ring', text: RED._('iothub-connection.status.disconnected') };
    }
  }

  function IotHubConnectionNode(this: ConnectionNode, def: NodeDef) {
    RED.nodes.createNode(this, def);
    const node = this;
    const settings = connectionSettings(def);
    const { deviceTransport, serviceTransport, tokenLifetimeSec, keepAliveSec, sendQueueLimit, sendQueueTimeoutMs } =
      settings;
    const common = {
      deviceTransport,
      serviceTransport,
      tokenLifetimeSec,
      keepAliveSec,
      sendQueueLimit,
      sendQueueTimeoutMs,
    };
    node.statusOf = statusOf;

    let session: Promise<HubSession>;
    let usingLocalHub = false;
    let acquiredLocal: Promise<LocalHub> | undefined;
    if (settings.mode === 'local') {
      usingLocalHub = true;
      node.capabilities = { service: true, anyDevice: true };
      const local = acquireLocalHub(settings.localHub, RED.settings.userDir);
      acquiredLocal = local;
      session = local.then((hub) => {
        const connection = parseConnectionString(hub.hubConnectionString);
        return new HubSession({
          connection,
          ...common,
          connectHost: '127.0.0.1',
          ports: { mqtt: hub.ports.mqtts, amqp: hub.ports.amqps, ws: hub.ports.https },
          ca: hub.caPem,
        });
      });
    } else {
      let connection: ConnectionInfo | undefined;
      try {
        const envName = settings.connectionStringEnv;
        const text = (
          expandEnv(node, node.credentials?.connectionString) || (envName ? expandEnv(node, '${' + envName + '}') : '')
        )?.trim();
        if (!text) {
          throw new IotHubError(
            'INVALID_CONNECTION_STRING',
            envName
              ? `no connection string: the environment variable ${envName} is not set; set it before starting Node-RED, or paste a connection string`
              : 'no connection string: paste one from the Azure portal (hub policy or device), or choose "Local hub"',
            { field: 'connectionString' },
          );
        }
        connection = parseConnectionString(text);
        node.capabilities = capabilitiesOf(connection);
      } catch (err) {
        node.configError =
          err instanceof IotHubError
            ? err
            : new IotHubError('INVALID_CONNECTION_STRING', 'the connection string cannot be read', {
                field: 'connectionString',
              });
        node.error(`${RED._('iothub-connection.errors.config')}: ${node.configError.message}`);
      }
      const ok = connection;
      session = ok
        ? Promise.resolve(
            new HubSession({
              connection: ok,
              ...common,
              ports: settings.ports,
              ca: expandEnv(node, node.credentials?.ca) || undefined,
              cert: expandEnv(node, node.credentials?.cert) || undefined,
              key: expandEnv(node, node.credentials?.key) || undefined,
              passphrase: expandEnv(node, node.credentials?.passphrase) || undefined,
            }),
          )
        : Promise.reject(node.configError);
    }
    // Users see the failure through their own calls; this keeps an unused rejection quiet.
    session.catch(() => undefined);
    node.admin = usingLocalHub
      ? Promise.all([session, acquiredLocal]).then(([s, hub]) => new HubAdmin(s, hub))
      : session.then((s) => new HubAdmin(s));
    node.admin.catch(() => undefined);

    node.useDevice = async (deviceId, user, settle, credentials) =>
      (await session).acquireDevice(deviceId, user, settle, credentials);
    node.useService = async (onStatus) => (await session).acquireService(onStatus);

    node.on('close', (removed, done) => {
      session
        .then(
          (s) => s.close(),
          () => undefined,
        )
        .then(() => (usingLocalHub ? releaseLocalHub(removed ? 0 : 2000) : undefined))
        .then(
          () => done(),
          () => done(),
        );
    });
  }

  // Live validation for the editor: says what a pasted string is and allows, never echoes the key.
  RED.httpAdmin.post('/iothub-c2d/validate', RED.auth.needsPermission('iothub-connection.write'), (req, res) => {
    const text = typeof req.body?.connectionString === 'string' ? req.body.connectionString : '';
    try {
      const c = parseConnectionString(text.trim());
      const caps = capabilitiesOf(c);
      res.json({
        ok: true,
        kind: c.kind,
        hostName: c.hostName,
        deviceId: c.deviceId,
        policy: c.sharedAccessKeyName,
        auth: c.x509 ? 'x509' : c.sharedAccessSignature ? 'token' : 'key',
        service: caps.service,
        anyDevice: caps.anyDevice,
      });
    } catch (err) {
      const e = err instanceof IotHubError ? err : undefined;
      res.json({ ok: false, field: e?.field, message: e ? e.message : 'the connection string cannot be read' });
    }
  });

  registerAdminApi(RED);

  RED.nodes.registerType('iothub-connection', IotHubConnectionNode as unknown as (this: Node, def: NodeDef) => void, {
    credentials: {
      connectionString: { type: 'password' },
      ca: { type: 'text' },
      cert: { type: 'text' },
      key: { type: 'password' },
      passphrase: { type: 'password' },
    },
  });
};
