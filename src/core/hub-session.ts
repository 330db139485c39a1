/**
 * What a config node owns: one service connection and one connection per device identity
 * (IoT Hub allows one per device; a second one kicks the first off), shared by every
 * node that uses them, reference-counted, with status fanned out to each user.
 */
import { ConnectionInfo } from './connection-string';
import { ConnectGate } from './connect-gate';
import { chooserTarget, DeviceClient } from './device-client';
import { IotHubError } from './errors';
import { HubActivity } from './hub-activity';
import { HubRest, PurgeResult } from './hub-rest';
import { C2DMessage, checkDeviceId, FeedbackRecord, ReceivedC2DMessage } from './message';
import type { Proxy } from './proxy';
import { RetryOptions } from './retry';
import { ServiceClient, ServiceClientOptions, serviceChooserTarget } from './service-client';
import type { StatusEvent } from './state';
import type {
  DeviceClientOptions,
  DeviceCredentials,
  DeviceTransportChoice,
  SettleOutcome,
  UnreadableMessage,
} from './transport';
import { TransportChooser } from './transport-choice';
import { readClientCertificate } from './x509';

export interface HubSessionOptions {
  connection: ConnectionInfo;
  deviceTransport: DeviceTransportChoice;
  serviceTransport: 'amqp' | 'amqp-ws' | 'auto';
  /** Host to dial instead of HostName (the local hub, a gateway). */
  connectHost?: string;
  /** An HTTP proxy every connection tunnels through (proxy.ts). */
  proxy?: Proxy;
  ports?: { mqtt?: number; amqp?: number; ws?: number };
  tls?: boolean;
  ca?: string;
  cert?: string;
  key?: string;
  /** Of an encrypted client key. */
  passphrase?: string;
  tokenLifetimeSec?: number;
  keepAliveSec?: number;
  retry?: RetryOptions;
  /** Sends that may wait while the hub is unreachable, and for how long. */
  sendQueueLimit?: number;
  sendQueueTimeoutMs?: number;
  /** How long a connection outlives its last user on a mere restart (a redeploy re-acquires it). */
  lingerMs?: number;
  /** Device connection attempts under way at once, the others wait their turn (ConnectGate). Default 400. */
  connectConcurrency?: number;
}

export interface DeviceUser {
  onStatus(s: StatusEvent): void;
  onMessage(m: ReceivedC2DMessage): void;
  /** A message came that could not be read; it was acknowledged or dead-lettered, not delivered. */
  onUnreadable?(err: IotHubError, raw: UnreadableMessage): void;
}

export interface DeviceLease {
  readonly deviceId: string;
  settle(lockToken: string, outcome: SettleOutcome): Promise<void>;
  /** removed: the node was deleted (close now when unused); otherwise linger for a restart. */
  release(removed: boolean): Promise<void>;
}

export interface ServiceLease {
  send(deviceId: string, m: C2DMessage): Promise<void>;
  /** Empties the device's C2D queue (REST over HTTPS); feedback `Purged` follows for the messages that asked for it. */
  purge(deviceId: string): Promise<PurgeResult>;
  /** onError hears of feedback that could not be read (it is dead-lettered), with the body as it came. */
  addFeedbackListener(
    fn: (records: FeedbackRecord[]) => void | Promise<void>,
    onError?: (err: IotHubError, body: unknown) => void,
  ): () => void;
  release(removed: boolean): Promise<void>;
}

interface Shared<C> {
  client: C;
  users: Set<unknown>;
  linger?: NodeJS.Timeout;
  lastStatus?: StatusEvent;
}

/** What a connection string allows, for the editor and for clear runtime errors. */
export interface Capabilities {
  service: boolean;
  /** Any device id can be simulated (hub policy key signing device tokens). */
  anyDevice: boolean;
  /** The one device a device connection string serves. */
  deviceId?: string;
}

export function capabilitiesOf(c: ConnectionInfo): Capabilities {
  if (c.kind === 'device') return { service: false, anyDevice: false, deviceId: c.deviceId };
  return { service: true, anyDevice: true };
}

function withoutHostName(c: DeviceCredentials & { hostName?: string }): DeviceCredentials {
  const rest = { ...c };
  delete rest.hostName;
  return rest as DeviceCredentials;
}

export class HubSession {
  private readonly devices = new Map<string, Shared<DeviceClient>>();
  private service: Shared<ServiceClient> | undefined;
  private closed = false;
  /** Many devices (one node acting as a fleet) dial in turn, not all at once: see ConnectGate. */
  private readonly gate: ConnectGate;
  /** Sends and feedback of the back end, for the editor. */
  readonly activity = new HubActivity();
  private restClient: HubRest | undefined;

  constructor(private readonly o: HubSessionOptions) {
    this.gate = new ConnectGate(o.connectConcurrency ?? 400);
  }

  get capabilities(): Capabilities {
    return capabilitiesOf(this.o.connection);
  }

  /** Device ids with an open connection (tests and the editor). */
  get deviceIds(): string[] {
    return [...this.devices.keys()];
  }

  /** Whether a node of this config reads the hub's feedback (what the activity's counts come from). */
  get feedbackListening(): boolean {
    return !!this.service?.client.feedbackListening;
  }

  /** The service REST API (purge, registry): needs a hub policy connection string. */
  get rest(): HubRest {
    const c = this.o.connection;
    if (c.kind !== 'service' || !c.sharedAccessKeyName || !c.sharedAccessKey) {
      throw new IotHubError(
        'INVALID_CONNECTION_STRING',
        'purging and reading the registry need a hub policy connection string (e.g. "iothubowner"), not a device connection string',
        { field: 'connectionString' },
      );
    }
    this.restClient ??= new HubRest({
      hostName: c.hostName,
      connectHost: this.o.connectHost,
      // The REST API shares port 443 with the WebSocket transports.
      port: this.o.ports?.ws,
      tls: this.o.tls,
      ca: this.o.ca,
      sharedAccessKeyName: c.sharedAccessKeyName,
      sharedAccessKey: c.sharedAccessKey,
    });
    return this.restClient;
  }

  private deviceCredentials(deviceId: string): DeviceCredentials {
    const c = this.o.connection;
    if (c.kind === 'device') {
      if (c.deviceId !== deviceId) {
        throw new IotHubError(
          'INVALID_ARGUMENT',
          `this connection string is for device "${c.deviceId}" only; use a hub policy connection string (with DeviceConnect) to act as "${deviceId}"`,
          { field: 'deviceId' },
        );
      }
      if (c.x509) {
        if (!this.o.cert || !this.o.key) {
          throw new IotHubError('INVALID_ARGUMENT', 'x509=true needs a client certificate and key in the config node', {
            field: 'cert',
          });
        }
        return readClientCertificate({ cert: this.o.cert, key: this.o.key, passphrase: this.o.passphrase });
      }
      if (c.sharedAccessSignature) return { sharedAccessSignature: c.sharedAccessSignature };
      return { sharedAccessKey: c.sharedAccessKey as string, sharedAccessKeyName: c.sharedAccessKeyName };
    }
    return { sharedAccessKey: c.sharedAccessKey as string, sharedAccessKeyName: c.sharedAccessKeyName };
  }

  private devicePort(): number | undefined {
    const t = this.o.deviceTransport;
    if (t === 'mqtt' || t === 'auto') return this.o.ports?.mqtt;
    if (t === 'amqp' || t === 'amqp-auto') return this.o.ports?.amqp;
    return this.o.ports?.ws;
  }

  /**
   * Transport auto's memory, one per host and own port: what worked for one connection is tried first by the next,
   * and one look at the port serves a fleet. In memory only: a restart of Node-RED looks afresh.
   */
  private readonly choosers = new Map<string, TransportChooser>();

  private chooserFor(target: { host: string; port: number; servername: string }): TransportChooser {
    const key = `${target.host}:${target.port}`;
    let c = this.choosers.get(key);
    if (!c) {
      c = new TransportChooser({ ...target, proxy: this.o.proxy });
      this.choosers.set(key, c);
    }
    return c;
  }

  /**
   * A lease on the one connection of deviceId. credentials, when given (a device's own key or connection string from a
   * msg), are used instead of what the config node holds; a connection that is already open is shared as it is.
   */
  acquireDevice(
    deviceId: string,
    user: DeviceUser,
    settle: 'auto' | 'manual' = 'auto',
    credentials?: DeviceCredentials & { hostName?: string },
  ): DeviceLease {
    if (this.closed) throw new IotHubError('NOT_CONNECTED', 'the IoT Hub config node is closing');
    // The host, not the port: the local hub names its MQTT port in device strings and its AMQP port in hub strings.
    const bareHost = (h: string) => h.replace(/:\d+$/, '').toLowerCase();
    if (credentials?.hostName && bareHost(credentials.hostName) !== bareHost(this.o.connection.hostName)) {
      throw new IotHubError(
        'INVALID_ARGUMENT',
        `the connection string is for hub ${credentials.hostName}, but this config node connects to ${this.o.connection.hostName}: use a config node for that hub`,
        { field: 'connectionString' },
      );
    }
    if (!deviceId)
      throw new IotHubError('INVALID_ARGUMENT', 'no device id: set one in the node', { field: 'deviceId' });
    checkDeviceId(deviceId);
    if (/[#+]/.test(deviceId) && (this.o.deviceTransport.startsWith('mqtt') || this.o.deviceTransport === 'auto')) {
      // devices/{id}/messages/devicebound/# is the only filter IoT Hub takes, and MQTT reads # and + in it as wildcards.
      throw new IotHubError(
        'INVALID_ARGUMENT',
        `device id ${JSON.stringify(deviceId)} holds # or +, which an MQTT subscription cannot carry: choose the AMQP device transport for it`,
        { field: 'deviceId' },
      );
    }
    let shared = this.devices.get(deviceId);
    if (!shared) {
      const options: DeviceClientOptions = {
        hostName: this.o.connection.hostName,
        connectHost: this.o.connectHost,
        gatewayHostName: this.o.connection.gatewayHostName,
        port: this.devicePort(),
        tls: this.o.tls,
        ca: this.o.ca,
        proxy: this.o.proxy,
        deviceId,
        transport: this.o.deviceTransport,
        credentials: credentials ? withoutHostName(credentials) : this.deviceCredentials(deviceId),
        tokenLifetimeSec: this.o.tokenLifetimeSec,
        keepAliveSec: this.o.keepAliveSec,
        retry: this.o.retry,
        settle,
        wsPort: this.o.ports?.ws,
      };
      const auto = options.transport === 'auto' || options.transport === 'amqp-auto';
      const client = new DeviceClient(options, this.gate, auto ? this.chooserFor(chooserTarget(options)) : undefined);
      const s: Shared<DeviceClient> = { client, users: new Set() };
      client.on('status', (ev: StatusEvent) => {
        s.lastStatus = ev;
        for (const u of s.users) (u as DeviceUser).onStatus(ev);
      });
      client.on('message', (m: ReceivedC2DMessage) => {
        for (const u of s.users) (u as DeviceUser).onMessage(m);
      });
      client.on('unreadable', (err: IotHubError, raw: UnreadableMessage) => {
        for (const u of s.users) (u as DeviceUser).onUnreadable?.(err, raw);
      });
      shared = s;
      this.devices.set(deviceId, s);
      client.open();
    }
    const s = shared;
    if (s.linger) {
      clearTimeout(s.linger);
      s.linger = undefined;
    }
    s.users.add(user);
    if (s.lastStatus) user.onStatus(s.lastStatus);
    s.client.resume();
    return {
      deviceId,
      settle: (lockToken, outcome) => s.client.settle(lockToken, outcome),
      // While lingering for a redeploy, messages wait for the node, unacknowledged, rather than go to no one.
      release: (removed) =>
        this.releaseShared(
          s,
          user,
          removed,
          () => {
            if (this.devices.get(deviceId) === s) this.devices.delete(deviceId);
          },
          () => s.client.hold(),
        ),
    };
  }

  acquireService(onStatus: (s: StatusEvent) => void): ServiceLease {
    if (this.closed) throw new IotHubError('NOT_CONNECTED', 'the IoT Hub config node is closing');
    const c = this.o.connection;
    if (c.kind !== 'service' || !c.sharedAccessKeyName || !c.sharedAccessKey) {
      throw new IotHubError(
        'INVALID_CONNECTION_STRING',
        'sending and feedback need a hub policy connection string with ServiceConnect (e.g. the "service" or "iothubowner" policy), not a device connection string',
        { field: 'connectionString' },
      );
    }
    if (!this.service) {
      const options: ServiceClientOptions = {
        hostName: c.hostName,
        connectHost: this.o.connectHost,
        port: this.o.serviceTransport === 'amqp-ws' ? this.o.ports?.ws : this.o.ports?.amqp,
        tls: this.o.tls,
        ca: this.o.ca,
        proxy: this.o.proxy,
        transport: this.o.serviceTransport,
        sharedAccessKeyName: c.sharedAccessKeyName,
        sharedAccessKey: c.sharedAccessKey,
        tokenLifetimeSec: this.o.tokenLifetimeSec,
        keepAliveSec: this.o.keepAliveSec,
        retry: this.o.retry,
        pendingLimit: this.o.sendQueueLimit,
        pendingTimeoutMs: this.o.sendQueueTimeoutMs,
        wsPort: this.o.ports?.ws,
      };
      const client = new ServiceClient(
        options,
        options.transport === 'auto' ? this.chooserFor(serviceChooserTarget(options)) : undefined,
      );
      const s: Shared<ServiceClient> = { client, users: new Set() };
      client.on('status', (ev: StatusEvent) => {
        s.lastStatus = ev;
        for (const u of s.users) (u as (e: StatusEvent) => void)(ev);
      });
      client.on('records', (records: FeedbackRecord[]) => this.activity.feedback(records));
      this.service = s;
      client.open();
    }
    const s = this.service;
    if (s.linger) {
      clearTimeout(s.linger);
      s.linger = undefined;
    }
    s.users.add(onStatus);
    if (s.lastStatus) onStatus(s.lastStatus);
    const removers = new Set<() => void>();
    return {
      send: (deviceId, m) => {
        const row = this.activity.sent(deviceId, m.messageId);
        const p = s.client.send(deviceId, m);
        p.then(
          () => this.activity.settled(row),
          (err: IotHubError) => this.activity.settled(row, err),
        );
        return p;
      },
      purge: (deviceId) => this.rest.purge(deviceId),
      addFeedbackListener: (fn, onError) => {
        const removeListener = s.client.addFeedbackListener(fn);
        if (onError) s.client.on('feedbackError', onError);
        const remove = () => {
          removeListener();
          if (onError) s.client.off('feedbackError', onError);
        };
        removers.add(remove);
        return () => {
          removers.delete(remove);
          remove();
        };
      },
      release: (removed) => {
        for (const r of removers) r();
        removers.clear();
        return this.releaseShared(s, onStatus, removed, () => {
          if (this.service === s) this.service = undefined;
        });
      },
    };
  }

  private async releaseShared<C extends DeviceClient | ServiceClient>(
    s: Shared<C>,
    user: unknown,
    removed: boolean,
    forget: () => void,
    onLinger?: () => void,
  ): Promise<void> {
    if (!s.users.delete(user) || s.users.size > 0) return;
    const lingerMs = this.o.lingerMs ?? 5000;
    if (removed || lingerMs <= 0 || this.closed) {
      forget();
      await s.client.close();
      return;
    }
    onLinger?.();
    s.linger = setTimeout(() => {
      s.linger = undefined;
      if (s.users.size === 0) {
        forget();
        void s.client.close();
      }
    }, lingerMs);
  }

  /** Closes every connection now (the config node itself is closing). */
  async close(): Promise<void> {
    this.closed = true;
    const all: Promise<void>[] = [];
    for (const s of this.devices.values()) {
      if (s.linger) clearTimeout(s.linger);
      all.push(s.client.close());
    }
    this.devices.clear();
    if (this.service) {
      if (this.service.linger) clearTimeout(this.service.linger);
      all.push(this.service.client.close());
      this.service = undefined;
    }
    await Promise.allSettled(all);
  }
}
