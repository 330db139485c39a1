/**
 * Azure IoT Hub config node: holds the connection string as a credential and owns the
 * connections (see core/hub-session). In local mode it starts the built-in local hub.
 */
import * as path from 'node:path';
import { ConnectionInfo, parseConnectionString } from './core/connection-string';
import { FileAssignmentStore } from './core/dps-assignments';
import { DpsSession } from './core/dps-session';
import type { StatusEvent } from './core/state';
import type { DeviceCredentials } from './core/transport';
import { IotHubError, reasonOf } from './core/errors';
import { HubAdmin } from './core/hub-admin';
import { registerAdminApi } from './admin-api';
import { Capabilities, capabilitiesOf, DeviceLease, DeviceUser, HubSession, ServiceLease } from './core/hub-session';
import { Proxy, proxyFor } from './core/proxy';
import type { LocalHub } from './localhub/index';
import { acquireLocalHub, releaseLocalHub } from './localhub/shared-hub';
import { failureStatus, markLogged } from './node-lease';
import { connectionSettings, ConnectionSettings } from './node-settings';
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

/** Where DPS assignments persist: one file in the Node-RED user directory (see docs/ARCHITECTURE.md section 3). */
export const DPS_ASSIGNMENTS_FILE = 'iothub-dps-assignments.json';

const BASE64_KEY = /^[A-Za-z0-9+/]+={0,2}$/;

const VIA: Record<string, string> = { mqtt: 'MQTT', 'mqtt-ws': 'MQTT-WS', amqp: 'AMQP', 'amqp-ws': 'AMQP-WS' };

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

  /** A retry says why the last attempt failed, when that is known: "cannot resolve HOST · retry #2 in 4s". */
  function because(ev: StatusEvent, text: string): string {
    // A certificate's cause names the host or what is wrong with it (x509.ts); the others are a word or two.
    const reason = reasonOf(ev.error);
    return reason ? `${reason} · ${text}` : text;
  }

  function statusOf(ev: StatusEvent): NodeStatus {
    switch (ev.state) {
      case 'connected':
        // Transport auto says which one it took.
        return {
          fill: 'green',
          shape: 'dot',
          text: RED._('iothub-connection.status.connected') + (ev.via ? ` (${VIA[ev.via] ?? ev.via})` : ''),
        };
      case 'connecting':
        return {
          fill: 'yellow',
          shape: 'ring',
          text: because(
            ev,
            RED._(ev.provisioning ? 'iothub-connection.status.provisioning' : 'iothub-connection.status.connecting'),
          ),
        };
      case 'reconnecting':
        return {
          fill: 'yellow',
          shape: 'ring',
          text: because(
            ev,
            RED._('iothub-connection.status.reconnecting', {
              s: Math.ceil((ev.nextRetryMs ?? 0) / 1000),
              n: ev.attempt ?? 1,
            }),
          ),
        };
      case 'unauthorized':
        return {
          fill: 'red',
          shape: 'ring',
          // A refused certificate says why (its reason, x509.ts); any other refusal is the plain text.
          text: ev.provisioning
            ? RED._('iothub-connection.status.dpsUnauthorized', { s: Math.ceil((ev.nextRetryMs ?? 0) / 1000) })
            : ((ev.error instanceof IotHubError ? ev.error.reason : undefined) ??
              RED._('iothub-connection.status.unauthorized')),
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
    const {
      deviceTransport,
      serviceTransport,
      tokenLifetimeSec,
      keepAliveSec,
      sendQueueLimit,
      sendQueueTimeoutMs,
      retry,
    } = settings;
    const common = {
      retry,
      deviceTransport,
      serviceTransport,
      tokenLifetimeSec,
      keepAliveSec,
      sendQueueLimit,
      sendQueueTimeoutMs,
    };
    node.statusOf = statusOf;

    let session: Promise<HubSession | DpsSession>;
    const warnStore = (t: string) => node.warn(t);
    let stopWarning: (() => void) | undefined;
    let usingLocalHub = false;
    let acquiredLocal: Promise<LocalHub> | undefined;
    const badConfig = (err: unknown, fallback: IotHubError) => {
      node.configError = err instanceof IotHubError ? err : fallback;
      node.error(`${RED._('iothub-connection.errors.config')}: ${node.configError.message}`);
    };
    if (settings.mode === 'dps') {
      node.capabilities = { service: false, anyDevice: true };
      try {
        const key = dpsKey(node, settings);
        usingLocalHub = settings.dps.localHub;
        session = usingLocalHub
          ? acquireLocalHub(settings.localHub, RED.settings.userDir).then((hub) => localDpsSession(hub, key))
          : Promise.resolve(
              dpsSession(settings, key, {
                ...common,
                ports: settings.ports,
                ca: expandEnv(node, node.credentials?.ca) || undefined,
              }),
            );
      } catch (err) {
        badConfig(
          err,
          new IotHubError('INVALID_ARGUMENT', 'the provisioning settings cannot be read', { field: 'dpsKey' }),
        );
        session = Promise.reject(node.configError);
      }
    } else if (settings.mode === 'local') {
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
      let proxy: Proxy | undefined;
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
            { field: 'connectionString', reason: envName ? `env var ${envName} not set` : undefined },
          );
        }
        connection = parseConnectionString(text);
        // Where connections dial (a gateway, else the hub) decides whether NO_PROXY exempts them.
        proxy = proxyFor(settings.proxyMode, (connection.gatewayHostName ?? connection.hostName).replace(/:\d+$/, ''), {
          url: settings.proxyUrl,
          user: node.credentials?.proxyUser,
          password: node.credentials?.proxyPassword,
          env: process.env,
        });
        node.capabilities = capabilitiesOf(connection);
      } catch (err) {
        badConfig(
          err,
          new IotHubError('INVALID_CONNECTION_STRING', 'the connection string cannot be read', {
            field: 'connectionString',
          }),
        );
        markLogged(node.configError as IotHubError);
      }
      const ok = connection;
      session = ok
        ? Promise.resolve(
            new HubSession({
              connection: ok,
              ...common,
              ports: settings.ports,
              proxy,
              ca: expandEnv(node, node.credentials?.ca) || undefined,
              cert: expandEnv(node, node.credentials?.cert) || undefined,
              key: expandEnv(node, node.credentials?.key) || undefined,
              passphrase: expandEnv(node, node.credentials?.passphrase) || undefined,
            }),
          )
        : Promise.reject(node.configError);
    }
    /** The enrollment key: the credential (with ${ENV}), else the named environment variable; checked, never shown. */
    function dpsKey(n: ConnectionNode, cs: ConnectionSettings): string | undefined {
      const env = cs.dps.keyEnv;
      const key = (expandEnv(n, n.credentials?.dpsKey) || (env ? expandEnv(n, '${' + env + '}') : '') || '').trim();
      if (!cs.dps.localHub && !cs.dps.idScope)
        throw new IotHubError(
          'INVALID_ARGUMENT',
          'no ID scope: copy it from the DPS overview in the Azure portal (IoT Central: Permissions > Device connection groups)',
          { field: 'dpsIdScope' },
        );
      // The built-in hub makes a group key itself when none is given: the flow runs with nothing to set.
      if (!key && cs.dps.localHub && cs.dps.attestation === 'group') return undefined;
      if (!key) {
        throw new IotHubError(
          'INVALID_ARGUMENT',
          env
            ? `no enrollment key: the environment variable ${env} is not set; set it before starting Node-RED, or paste the key`
            : 'no enrollment key: paste the enrollment group key (or an individual enrollment key), or name an environment variable holding it',
          { field: 'dpsKey' },
        );
      }
      if (!BASE64_KEY.test(key) || Buffer.from(key, 'base64').length < 16)
        throw new IotHubError(
          'INVALID_ARGUMENT',
          'the enrollment key is not a base64 key: copy the primary key of the enrollment or enrollment group',
          { field: 'dpsKey' },
        );
      return key;
    }

    function dpsSession(
      cs: ConnectionSettings,
      key: string | undefined,
      hub: ConstructorParameters<typeof DpsSession>[0]['hub'],
      extra: Partial<ConstructorParameters<typeof DpsSession>[0]> = {},
    ): DpsSession {
      const file = path.join(RED.settings.userDir ?? process.cwd(), DPS_ASSIGNMENTS_FILE);
      const store = FileAssignmentStore.for(file, warnStore);
      stopWarning = () => store.off(warnStore);
      return new DpsSession({
        dps: {
          endpoint: cs.dps.endpoint,
          idScope: cs.dps.idScope,
          transport: cs.dps.transport,
          ca: hub.ca,
        },
        attestation: cs.dps.attestation,
        enrollmentKey: key,
        store,
        hub,
        log: (text, level) => (level === 'info' ? node.log(text) : node.trace(text)),
        ...extra,
      });
    }

    /**
     * The built-in local hub's DPS: its scope, port and CA. It enrolls this config's group (with the key given, or one it
     * makes and keeps in its data directory) or each individual device on first use, as local mode registers devices.
     */
    async function localDpsSession(hub: LocalHub, given: string | undefined): Promise<DpsSession> {
      if (!hub.idScope || !hub.ports.dps)
        throw new IotHubError('INVALID_ARGUMENT', 'this local hub has no Device Provisioning Service', {
          field: 'dpsLocalHub',
        });
      const cs: ConnectionSettings = {
        ...settings,
        dps: { ...settings.dps, endpoint: `${hub.hostName}:${hub.ports.dps}`, idScope: hub.idScope },
      };
      const group = settings.dps.attestation === 'group';
      const key = group
        ? (
            await hub.addEnrollmentGroup({
              groupId: `node-red-${node.id.replace(/[^A-Za-z0-9._:-]/g, '-')}`,
              ...(given ? { primaryKey: given } : {}),
            })
          ).primaryKey
        : given;
      return dpsSession(
        cs,
        key,
        {
          ...common,
          connectHost: '127.0.0.1',
          ports: { mqtt: hub.ports.mqtts, amqp: hub.ports.amqps, ws: hub.ports.https },
          ca: hub.caPem,
        },
        {
          dps: {
            endpoint: cs.dps.endpoint,
            idScope: cs.dps.idScope,
            transport: cs.dps.transport,
            ca: hub.caPem,
            connectHost: '127.0.0.1',
          },
          beforeRegister: group
            ? undefined
            : async (registrationId, deviceKey) => {
                await hub.addEnrollment({ registrationId, primaryKey: deviceKey });
              },
        },
      );
    }

    // Users see the failure through their own calls; this keeps an unused rejection quiet.
    session.catch(() => undefined);
    // The hub view needs a hub connection; a DPS config only learns its hubs device by device.
    const hubSession = session as Promise<HubSession>;
    node.admin =
      settings.mode === 'dps'
        ? Promise.reject(
            new IotHubError('INVALID_ARGUMENT', 'a Device Provisioning Service config has no hub view', {
              field: 'mode',
            }),
          )
        : acquiredLocal
          ? Promise.all([hubSession, acquiredLocal]).then(([s, hub]) => new HubAdmin(s, hub))
          : hubSession.then((s) => new HubAdmin(s));
    node.admin.catch(() => undefined);

    node.useDevice = async (deviceId, user, settle, credentials) =>
      (await session).acquireDevice(deviceId, user, settle, credentials);
    node.useService = async (onStatus) => (await session).acquireService(onStatus);

    node.on('close', (removed, done) => {
      stopWarning?.();
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
      dpsKey: { type: 'password' },
      ca: { type: 'text' },
      cert: { type: 'text' },
      key: { type: 'password' },
      proxyUser: { type: 'text' },
      proxyPassword: { type: 'password' },
      passphrase: { type: 'password' },
    },
  });
};
